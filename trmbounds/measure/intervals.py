r"""Certified per-token intervals for KL and TV from an engine's top-k log-probs.

At a context the engine reports :math:`p = \pi_{roll}(\cdot|c)` only on a set
:math:`S` (its top-k and the sampled token); every other token :math:`u \in U` has
:math:`p_u \le p_{min}`, the smallest top-k probability. The trainer's
:math:`q = \pi_\theta(\cdot|c)` is known in full. With :math:`r = 1 - \sum_S p` and
:math:`Q = 1 - \sum_S q` (``docs/measure.md``, "Certified intervals"):

.. math::

    \tfrac12\sum_S|p-q| + \tfrac12|r-Q| \;\le\; TV(c) \;\le\;
    \tfrac12\sum_S|p-q| + \tfrac12(r+Q),

    \sum_S p\log\frac pq + r\log\frac rQ \;\le\; KL(p\|q) \;\le\;
    \sum_S p\log\frac pq + \max_{0\le p_u\le p_{min},\ \sum_U p_u = r}
    \sum_U p_u\log\frac{p_u}{q_u}.

The KL lower end is the log-sum inequality (the KL of the pair coarsened to
:math:`S \cup \{U\}`). The maximum is convex in :math:`p_U`, so it sits at a vertex of
the constraint set: :math:`\lfloor r/p_{min}\rfloor` tokens at :math:`p_{min}` and one at
the remainder; by rearrangement the larger masses go to the smallest :math:`q_u`. The
:math:`m` smallest :math:`q_u` are found without sorting the vocabulary: the row is cut
into chunks of :data:`CHUNK` tokens, the :math:`m` chunks with the smallest minima hold
the :math:`m` smallest values (any other chunk's elements have :math:`m` values at most
as small), and only those are ranked. With :math:`S` the whole vocabulary both
intervals collapse to the exact values. Pinsker's inequality :math:`TV \le \sqrt{KL/2}`
then tightens each interval by the other (``tv_hi <= sqrt(kl_hi/2)``,
``kl_lo >= 2 tv_lo^2``).

**Round-off.** The trainer's logits are taken as given (float32 for float32/bfloat16
models) and the log-softmax — temperature division, max shift, the log-sum-exp over
the vocabulary, the subtraction — is computed in float64 (in float32 the normaliser
of a 151,936-token row was off by up to 3e-5, more than a float32 error bound of the
form below reliably covers); :math:`\log q_v = (y_v - m) - \log\sum e^{y - m}` is
formed only where it is used (the reported tokens, the sampled one, the selected
smallest logits — :math:`\log q` is increasing in :math:`y`), never over the whole
row. Each computed :math:`\log q_v` is then within
:math:`\delta_v = 16u(|\log q_v| + \log V + 1)` of the exact one (:math:`u = 2^{-53}`);
every end is moved outward by the resulting bound, so the intervals hold for the
trainer's logits as given, with a widening of about :math:`10^{-14}` (the logits
themselves carry the forward pass's rounding: in bfloat16 it depends on the batch
they were computed in, ``docs/measure.md``).

Functions take torch tensors; torch is imported only when they run.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from ..errors import TrmboundsError
from ..trm import BLOCK_ELEMENTS

__all__ = ["TokenIntervals", "token_intervals", "CHUNK"]

#: Tokens per chunk of the two-level selection of the smallest trainer probabilities.
CHUNK = 64
#: Smallest chunk (for many selected values, e.g. on flat rows).
MIN_CHUNK = 32

#: Values per working block (8 rows of a 150k vocabulary, 10 MB in float64): the
#: per-row work is a few dozen small tensor operations, so rows are batched.
INTERVAL_BLOCK_ELEMENTS = 8 * BLOCK_ELEMENTS


class TokenIntervals(NamedTuple):
    """Per-token certified intervals and companions (float64 tensors, one per row)."""

    kl_lo: Any
    kl_hi: Any
    tv_lo: Any
    tv_hi: Any
    #: :math:`1 - r = \sum_S p`, the probability the engine reported
    reported_mass: Any
    #: :math:`\log\pi_\theta(y_t|c_t)` of the sampled token
    logp_theta: Any
    #: upper end of the trainer's mass outside the engine's support: :math:`Q` plus
    #: :math:`q` of reported tokens with :math:`p = 0`
    missing_mass_hi: Any


def token_intervals(
    logits_theta: Any,
    s_ids: Any,
    s_logp: Any,
    s_valid: Any,
    p_min: Any,
    sampled: Any,
    *,
    temperature: float = 1.0,
    block_rows: int | None = None,
) -> TokenIntervals:
    r"""Certified KL / TV intervals at each row from the trainer's full logits.

    Parameters
    ----------
    logits_theta : torch.Tensor, shape (n, V)
        Trainer logits; :math:`q = \mathrm{softmax}(y/\tau)`.
    s_ids : torch.Tensor of int, shape (n, K)
        The reported tokens :math:`S` of each row (top-k and the sampled token), padded.
    s_logp : torch.Tensor, shape (n, K)
        Their engine log-probabilities (``-inf`` for probability 0 and for padding).
    s_valid : torch.Tensor of bool, shape (n, K)
        ``False`` on padding.
    p_min : torch.Tensor, shape (n,)
        The bound on every unreported probability (the smallest top-k probability; 1
        when no top-k list was reported).
    sampled : torch.Tensor of int, shape (n,)
        The sampled tokens (their trainer log-probs are returned).

    Examples
    --------
    Three tokens, the engine reports only its top-1 (p = 0.5, also the sampled token);
    the trainer has q = (0.25, 0.25, 0.5). So r = 0.5, Q = 0.75, and by hand
    TV in [0.125 + 0.125, 0.125 + 0.625] and KL in [0.5 log 2 + 0.5 log(2/3),
    0.5 log 2 + 0.5 log 2] (the vertex puts p_min = 0.5 on q = 0.25); Pinsker lowers
    the TV upper end to sqrt(log 2 / 2) = 0.5887. If the engine's
    whole p were (0.5, 0.25, 0.25), TV = 0.25 and KL = 0.25 log 2 = 0.1733: inside.

    >>> import torch
    >>> y = torch.log(torch.tensor([[0.25, 0.25, 0.5]], dtype=torch.float64))
    >>> iv = token_intervals(y, torch.tensor([[0]]), torch.log(torch.tensor([[0.5]],
    ...     dtype=torch.float64)), torch.tensor([[True]]), torch.tensor([0.5],
    ...     dtype=torch.float64), torch.tensor([0]))
    >>> [round(float(x), 4) for x in (iv.tv_lo, iv.tv_hi, iv.kl_lo, iv.kl_hi)]
    [0.25, 0.5887, 0.1438, 0.6931]
    """
    import torch

    if not temperature > 0 or not math.isfinite(temperature):
        raise TrmboundsError(f"temperature must be a positive number, got {temperature}")
    n, V = logits_theta.shape
    rows = max(1, INTERVAL_BLOCK_ELEMENTS // V) if block_rows is None else int(block_rows)
    # the normaliser (log-sum-exp) in float64 whatever the logits' dtype: in float32 that
    # of a large vocabulary is off by more than round-off bounds of its form can promise
    # (module docstring). Only it needs float64: log q = (y - m) - ls is formed at the few
    # reported tokens and at the selected smallest logits, never over the whole row.
    dev = logits_theta.device
    out = {k: torch.empty(n, dtype=torch.float64, device=dev) for k in TokenIntervals._fields}
    with torch.no_grad():
        for s in range(0, n, rows):
            e = min(n, s + rows)
            y = logits_theta[s:e]
            if temperature != 1.0:
                y = y.to(torch.float64) / temperature  # a new tensor
            elif y.dtype != torch.float64:
                # exact for bfloat16 / float16 / float32; a copy (the block masks S in it)
                y = y.to(torch.float32, copy=True)
            else:
                y = y.clone()
            res = _block(
                y,
                *_log_normaliser(y),
                s_ids[s:e],
                s_logp[s:e].double(),
                s_valid[s:e],
                p_min[s:e].double(),
                sampled[s:e],
            )
            for k, v in zip(TokenIntervals._fields, res, strict=True):
                out[k][s:e] = v
    return TokenIntervals(*(out[k] for k in TokenIntervals._fields))


def _log_normaliser(y):
    """Per row of ``y`` its maximum ``m`` (float64, 0 for a row without a finite one) and
    ``ls = log sum_v exp(y_v - m)`` computed in float64, so that log q = (y - m) - ls,
    the same operations as a max-shifted float64 log-softmax."""
    import torch

    y64 = y.to(torch.float64, copy=True)  # worked in place below: never y itself
    m = y64.amax(-1)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    return m, y64.sub_(m[:, None]).exp_().sum(-1).log_()


def _block(y, m, ls, ids, lp, valid, p_min, sampled):
    """One block: ``y`` (B, V) the (temperature-scaled) logits, a private copy (S is
    masked in it), exactly representable in float64; ``m``, ``ls`` (B,) from
    :func:`_log_normaliser`, so that log q = (y - m) - ls."""
    import torch

    B, V = y.shape
    ids = ids.long()
    # absolute round-off bound of each computed log q: the float64 log-sum-exp (the max
    # shift, the log of a sum of V terms) and the float64 subtractions (y - m) - ls, as
    # in a max-shifted float64 log-softmax
    u = torch.finfo(torch.float64).eps / 2
    logV = math.log(V) + 1.0
    lq_s = (y.gather(1, ids).double() - m[:, None]) - ls[:, None]
    logp_theta = (y.gather(1, sampled.long()[:, None])[:, 0].double() - m) - ls
    zero = torch.zeros((), dtype=torch.float64, device=y.device)
    p = torch.where(valid, lp.exp(), zero)
    q = torch.where(valid, lq_s.exp(), zero)
    d_s = torch.where(valid, 16 * u * (lq_s.abs().nan_to_num(0.0, 0.0, 0.0) + logV), zero)
    e_q = (q * d_s.expm1()).sum(1)  # bound on sum_S |error of q|
    e_k = (p * d_s).sum(1)  # bound on the error of sum_S p log q
    P, Qs = p.sum(1), q.sum(1)
    n_s = valid.sum(1)
    n_u = V - n_s
    empty = n_u == 0  # every token reported: r and Q are round-off, U adds nothing
    r = torch.where(empty, zero, (1.0 - P).clamp(min=0.0))
    Q = torch.where(empty, zero, (1.0 - Qs).clamp(min=0.0))
    tv_s = 0.5 * (p - q).abs().sum(1)
    tv_lo = (tv_s + 0.5 * (r - Q).abs() - e_q).clamp(0.0, 1.0)
    tv_hi = (tv_s + 0.5 * (r + Q) + e_q).clamp(0.0, 1.0)
    # sum_S p log(p/q): 0 where p = 0 (also when q = 0 there)
    kl_s = torch.where(p > 0, p * (lp - lq_s), zero).sum(1)
    Q_up = Q + e_q  # a larger Q only lowers r log(r/Q): the lower end stays a lower end
    kl_lo = (kl_s - e_k + torch.where(r > 0, r * (r.log() - Q_up.log()), zero)).clamp(min=0.0)
    missing = Q + e_q + torch.where(valid & (p == 0), q, zero).sum(1)

    # the vertex: m_full tokens at the cap, one at the remainder rho, on the smallest q_u.
    # The cap is p_min, raised to r / |U| when the reader's round-off tolerance let r
    # exceed |U| p_min (else the vertex would drop the excess mass: not an upper end)
    pm = torch.maximum(p_min.clamp(min=0.0), r / n_u.clamp(min=1).double())
    m_full = torch.where(pm > 0, torch.floor(r / torch.where(pm > 0, pm, 1.0)), zero)
    m_full = torch.minimum(m_full, n_u.double())
    rho = (r - m_full * pm).clamp(min=0.0)
    rho = torch.where(m_full >= n_u.double(), zero, torch.minimum(rho, pm))
    m_need = (m_full + (rho > 0).double()).long()
    m_max = int(m_need.max()) if B else 0
    upart = torch.zeros(B, dtype=torch.float64, device=y.device)
    if m_max > 0:
        # y is this block's own tensor and every gather from it is done: mask S in place.
        # log q = (y - m) - ls is increasing in y (rounded subtractions are monotone):
        # the smallest logits give the smallest log q
        yu = y.scatter_(1, ids, torch.full(ids.shape, math.inf, dtype=y.dtype, device=y.device))
        vals = (_smallest(yu, m_max).double() - m[:, None]) - ls[:, None]  # ascending
        i = torch.arange(m_max, device=y.device)[None, :]
        w = torch.where(i < m_full[:, None], pm[:, None], zero)
        w = torch.where(i == m_full[:, None], rho[:, None], w)
        d_u = 16 * u * (vals.abs() + logV)
        terms = torch.where(w > 0, w * (w.log() - vals + d_u), zero)
        upart = terms.sum(1)
    kl_hi = kl_s + e_k + upart
    # Pinsker, TV <= sqrt(KL/2), tightens each end by the other (still certified)
    tv_hi = torch.minimum(tv_hi, (kl_hi / 2).sqrt())
    kl_lo = torch.maximum(kl_lo, 2 * tv_lo**2)
    kl_hi = torch.maximum(kl_hi, kl_lo)
    return kl_lo, kl_hi, tv_lo, tv_hi, P.clamp(max=1.0), logp_theta, missing.clamp(0.0, 1.0)


def _smallest(x, m: int):
    """The ``m`` smallest values of each row of ``x``, ascending (two-level selection)."""
    import torch

    B, V = x.shape
    # chunks of CHUNK tokens, halved while the m chosen ones would exceed a quarter of
    # the chunks or hold over 4096 candidates (any chunk size gives the same exact m
    # smallest values; the sizes are speed choices measured at V = 151,936)
    c = CHUNK
    while c > MIN_CHUNK and (m * 4 > V // c or m * c > 4096):
        c //= 2
    nc = V // c
    if m * 4 > nc:  # a large share of the row: rank it whole
        return torch.topk(x, min(m, V), dim=1, largest=False, sorted=True).values
    V0 = nc * c
    body = x[:, :V0].reshape(B, nc, c)
    pick = torch.topk(body.amin(2), m, dim=1, largest=False, sorted=False).indices
    cand = body.gather(1, pick[:, :, None].expand(B, m, c)).reshape(B, m * c)
    if V0 < V:
        cand = torch.cat([cand, x[:, V0:]], 1)
    return torch.topk(cand, m, dim=1, largest=False, sorted=True).values
