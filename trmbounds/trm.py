r"""Trust Region Masking for trainers: exact token divergences, proxies and masks.

Everything here works on numpy arrays and, when given torch tensors, on torch
tensors (torch is never imported by this module; a tensor argument brings it).
Per-token quantities are arrays of shape ``(N, T)`` (sequences × positions) with an
optional boolean padding ``mask`` of the same shape (``True`` = a real response
token); masks return one boolean per sequence and the acceptance rate.

- :func:`token_divergences`: exact full-vocabulary :math:`KL(\pi_{roll}\|\pi_\theta)`
  and TV per token from two logit arrays, chunked, through a stable log-softmax;
  the missing mass of a truncated (top-k / top-p) rollout distribution.
- :func:`k1`, :func:`k2`, :func:`k3`: sample-based proxies from the sampled token's
  log-ratio :math:`\log\rho_t` (detectors, not bounds; the paper).
- :func:`trm_max_mask`, :func:`trm_avg_mask`, :func:`trm_combined_mask`,
  :func:`ln_trm_mask`, :func:`ser_mask`: the masking criteria of the paper (the paper).
- :func:`masked_surrogate`: :math:`E_{roll}[M\,A\sum_t\rho_t]` normalised by the
  **total** batch size, as the paper prescribes.

References
----------
Li, Liu, Xu, Tong, Li, Liu, Wang. *Trust Region Masking for Long-Horizon LLM
Reinforcement Learning*. arXiv:2512.23075 (ICML 2026), §4-§5.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from ._nucleus import Cut, cuts, keep_mask, keep_torch, prev_float
from .errors import TrmboundsError

__all__ = [
    "TokenDivergences",
    "TRMMask",
    "token_divergences",
    "truncate_logits",
    "k1",
    "k2",
    "k3",
    "trm_max_mask",
    "trm_avg_mask",
    "trm_combined_mask",
    "ln_trm_mask",
    "ser_mask",
    "ln_trm_weights",
    "masked_surrogate",
    "log_ppl_gap",
    "acceptance_probability",
]

#: Elements (rows × vocabulary) of one working block of :func:`token_divergences`:
#: 2**18 float32 values = 1 MiB (one row of a 150k vocabulary), small enough to stay
#: in cache between the passes over it (``benchmarks/bench_measure.py``).
BLOCK_ELEMENTS = 1 << 18

# A finite stand-in for -inf in truncated logits: exp() of it underflows to exactly 0,
# while 0 * (it) stays 0 (0 * -inf would be NaN).
_NEG = -1e30


def _is_torch(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


def _check_threshold(name: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TrmboundsError(f"{name} must be a number, got {value!r}") from None
    if math.isnan(v) or v < 0:
        raise TrmboundsError(f"{name} must be a non-negative number, got {v:g}")
    return v


# ----------------------------------------------------------------- token divergences
class TokenDivergences(NamedTuple):
    """Per-token exact divergences (arrays shaped like the logits without the last axis).

    Attributes
    ----------
    kl : :math:`KL(\\pi_{roll}(\\cdot|c)\\,\\|\\,\\pi_\\theta(\\cdot|c))` in nats.
    tv : :math:`\\tfrac12\\sum_v|\\pi_\\theta(v|c)-\\pi_{roll}(v|c)|`.
    missing_mass : :math:`\\pi_\\theta(\\text{outside supp}\\,\\pi_{roll}(\\cdot|c)\\mid c)`
        (0 without truncation).
    logp_roll, logp_theta : log-probabilities of ``tokens`` under each policy (``None``
        when no tokens were given).
    forced : booleans, ``True`` where the sampled token fell outside the recomputed
        top-k / top-p set and was kept in the rollout support (``None`` without tokens).
    """

    kl: Any
    tv: Any
    missing_mass: Any
    logp_roll: Any = None
    logp_theta: Any = None
    forced: Any = None


def token_divergences(
    logits_roll: Any,
    logits_theta: Any,
    tokens: Any = None,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    block_rows: int | None = None,
) -> TokenDivergences:
    r"""Exact per-token KL and TV between two next-token distributions given as logits.

    .. math::

        p = \mathrm{softmax}(\text{trunc}(x / \tau)),\quad
        q = \mathrm{softmax}(y / \tau),\qquad
        KL = \sum_v p_v(\log p_v - \log q_v),\quad
        TV = \tfrac12 \sum_v |p_v - q_v|,\quad
        m = \sum_{v:\,p_v = 0} q_v

    where :math:`x` are the rollout logits, :math:`y` the training logits, :math:`\tau`
    the sampling temperature (applied to both, as trainers score at the sampling
    temperature) and ``trunc`` the top-k / top-p truncation of the rollout sampler
    (Hugging Face semantics: temperature, then top-k, then top-p). Log-probabilities
    come from a max-shifted log-softmax, so no logit range overflows.

    KL is summed in the form :math:`\sum_v [p_v(\log p_v - \log q_v) - p_v + q_v]`
    (equal to KL as :math:`\sum p = \sum q = 1`; every term is non-negative). A
    rounding error :math:`e` in a log-normaliser shifts :math:`\sum_v p_v(\log p_v -
    \log q_v)` by :math:`e` but :math:`\sum_v (q_v - p_v)` by :math:`-e` too, so
    it cancels: float32 then resolves KLs near 1e-8, where the plain sum is off by
    the ~1e-7 error of a float32 log-sum-exp.

    The work is done in blocks of rows (``block_rows``; default about
    :data:`BLOCK_ELEMENTS` values per block) so that the float32 working copies never
    exceed one block: bfloat16 logits of a whole batch are never expanded to float32
    at once. Computation is in float32 (float64 for float64 input); KL is clipped at
    0 (rounding can give -1e-12). A token with a ``-inf`` logit in both arrays adds
    :math:`0\log(0/0) = 0`; only ``-inf`` rollout logits are outside the support,
    and NaN or ``+inf`` logits give NaN (numpy and torch alike).

    Parameters
    ----------
    logits_roll, logits_theta : array_like or torch.Tensor, shape (..., V)
        Next-token logits of the rollout and training policy at the same contexts.
    tokens : array_like of int, shape (...), optional
        Sampled tokens; their log-probabilities are returned. A sampled token is
        always kept in the rollout support (prefill and decode numerics can differ
        at the truncation boundary).
    temperature : float, default 1
    top_k : int, default 0 (off)
    top_p : float, default 1 (off)
    block_rows : int, optional
        Rows per block.

    Returns
    -------
    TokenDivergences
        numpy arrays for numpy input, tensors for torch input.

    Examples
    --------
    Two distributions over three tokens, ``p = (0.5, 0.25, 0.25)`` and ``q = (0.25,
    0.25, 0.5)``: KL = 0.5 log 2 - 0.25 log 2 = 0.25 log 2 and TV = 0.25.

    >>> import numpy as np
    >>> d = token_divergences(np.log([0.5, 0.25, 0.25]), np.log([0.25, 0.25, 0.5]))
    >>> round(float(d.kl), 6), round(0.25 * float(np.log(2)), 6), round(float(d.tv), 6)
    (0.173287, 0.173287, 0.25)

    Top-k = 1 keeps only token 0 in the rollout; the trained policy's mass elsewhere
    is missing:

    >>> d = token_divergences(np.log([0.5, 0.25, 0.25]), np.log([0.25, 0.25, 0.5]), top_k=1)
    >>> round(float(d.kl), 6), round(float(d.tv), 6), round(float(d.missing_mass), 6)
    (1.386294, 0.75, 0.75)
    """
    temperature = float(temperature)
    if not temperature > 0 or not math.isfinite(temperature):
        raise TrmboundsError(f"temperature must be a positive number, got {temperature:g}")
    if int(top_k) < 0:
        raise TrmboundsError(f"top_k must be >= 0, got {top_k}")
    top_p = float(top_p)
    if not 0 < top_p <= 1:
        raise TrmboundsError(f"top_p must be in (0, 1], got {top_p:g}")
    if _is_torch(logits_roll) or _is_torch(logits_theta):
        return _divergences_torch(
            logits_roll, logits_theta, tokens, temperature, int(top_k), top_p, block_rows
        )
    return _divergences_numpy(
        logits_roll, logits_theta, tokens, temperature, int(top_k), top_p, block_rows
    )


def _shapes(xs: tuple, ys: tuple, tok_shape: tuple | None) -> None:
    if xs != ys:
        raise TrmboundsError(f"logits shapes differ: {tuple(xs)} vs {tuple(ys)}")
    if len(xs) < 1 or xs[-1] < 1:
        raise TrmboundsError(f"logits need a vocabulary axis, got shape {tuple(xs)}")
    if tok_shape is not None and tuple(tok_shape) != tuple(xs[:-1]):
        raise TrmboundsError(
            f"tokens shape {tuple(tok_shape)} does not match logits {tuple(xs[:-1])}"
        )


def _rows_per_block(V: int, block_rows: int | None) -> int:
    if block_rows is not None:
        if int(block_rows) < 1:
            raise TrmboundsError(f"block_rows must be >= 1, got {block_rows}")
        return int(block_rows)
    return max(1, BLOCK_ELEMENTS // V)


def truncate_logits(logits: Any, top_k: int = 0, top_p: float = 1.0, keep: Any = None) -> Any:
    """Set logits outside the top-k / top-p set to -inf (Hugging Face semantics).

    top-k keeps every token whose logit is at least the k-th largest (ties kept);
    top-p keeps the smallest set of most likely tokens whose probability reaches
    ``top_p`` (at least one token). ``keep`` (an index per row) forces one token in.
    Works on numpy arrays and torch tensors of shape (..., V); returns a new array.

    Examples
    --------
    >>> import numpy as np
    >>> truncate_logits(np.log([0.5, 0.3, 0.2]), top_p=0.7)
    array([-0.69314718, -1.2039728 ,        -inf])
    """
    if _is_torch(logits):
        V = logits.shape[-1]
        if logits.numel() == 0:
            return logits.clone()
        if (top_k and top_k < V) or top_p < 1:
            x2 = logits.reshape(-1, V)
            x = x2.masked_fill(~keep_mask(x2, top_k, top_p), -math.inf).reshape(logits.shape)
        else:
            x = logits.clone()
        if keep is not None:
            k = keep.unsqueeze(-1)
            x = x.scatter(-1, k, logits.gather(-1, k))
        return x
    x = np.array(logits, dtype=np.float64)
    V = x.shape[-1]
    if top_k and top_k < V:
        kth = -np.partition(-x, top_k - 1, axis=-1)[..., top_k - 1 : top_k]
        x = np.where(x < kth, -np.inf, x)
    if top_p < 1:
        idx = np.argsort(x, axis=-1, kind="stable")
        srt = np.take_along_axis(x, idx, -1)
        e = np.exp(srt - srt[..., -1:])
        cum = np.cumsum(e / e.sum(-1, keepdims=True), axis=-1)
        remove = cum <= 1 - top_p
        remove[..., -1] = False
        rem = np.zeros_like(remove)
        np.put_along_axis(rem, idx, remove, -1)
        x = np.where(rem, -np.inf, x)
    if keep is not None:
        k = np.asarray(keep)[..., None]
        np.put_along_axis(x, k, np.take_along_axis(np.asarray(logits, x.dtype), k, -1), -1)
    return x


#: The whole-row (masked) path of a truncated row needs its smallest kept log-prob
#: above this, so that exp() of every value it forms stays a normal float32 (the
#: vectorised exp is slow on values that underflow); below it, the index path is used.
_MASKED_MIN_LOGP = -55.0


def _row_masked(a, b, tok, cut: Cut, work):
    """KL, TV, missing mass, both log-probs of the sampled token ``tok`` and whether it
    was forced in, for one row whose rollout distribution is ``softmax(a)`` on the
    kept set ``cut`` (``{a >= t}``, plus ``tok``), by whole-row passes into the four
    scratch rows ``work`` (no vocabulary-sized allocation per row).

    Tokens outside the set get a filler log-prob 30 nats below the smallest kept one
    (exp of it stays a normal float) and their p is then set to exactly 0, so that
    ``KL = sum_v [p (log p - log q) - p + q]`` (terms outside: q; an error of either
    log-normaliser cancels), ``TV = sum_v |p - q| / 2`` and the missing mass ``sum_v q
    [p = 0]`` are sums over the row. Returns ``None`` when the row needs the index path
    (a kept log-prob below :data:`_MASKED_MIN_LOGP`, or a non-finite result).
    """
    import torch

    mass, low = cut.mass, cut.t
    forced = False
    if tok is not None:
        at = float(a[tok])
        if not at >= cut.t:
            forced = True
            mass += math.exp(at - cut.m)
            low = at
    lse = cut.m + math.log(mass)
    lo_lp = low - lse
    if not lo_lp >= _MASKED_MIN_LOGP:
        return None
    w0, w1, w2, w3 = work
    fill = lo_lp - 30.0
    lp = torch.threshold(a, prev_float(cut.t, a.dtype), fill + lse, out=w0)  # a >= t kept
    if forced:
        lp[tok] = at
    lp.sub_(lse)
    p = torch.exp(lp, out=w1)
    torch.threshold(p, math.exp(lo_lp - 15.0), 0.0, out=p)  # exactly 0 outside
    # the training log-softmax by hand: torch's float32 log_softmax loses up to ~3e-5 of
    # the normaliser on large flat rows (its exps sum to 0.99997), which the KL form
    # cancels but the missing mass and TV would carry; torch's sum does not
    # (q = exp(lq) of the rounded lq, not q / sum: the KL form cancels only then)
    mb = float(b.max())
    lq = torch.sub(b, mb, out=w2)
    lq.sub_(math.log(float(torch.exp(lq, out=w3).sum())))
    q = torch.exp(lq, out=w3)
    lpr = float(lp[tok]) if tok is not None else None
    lpt = float(lq[tok]) if tok is not None else None
    pd = torch.linalg.vecdot(p, lp.sub_(lq))
    mm = -torch.linalg.vecdot(q, torch.sign(p, out=w0).sub_(1.0))  # sign(p) - 1 = -[p = 0]
    diff = p.sub_(q)
    kl = float(pd - diff.sum())
    if not math.isfinite(kl):
        return None
    # TV = sum_v (q - p)+ >= sum over p = 0 of q = m: keep it so through rounding
    tv = max(0.5 * float(diff.abs_().sum()), float(mm))
    return max(kl, 0.0), tv, float(mm), lpr, lpt, forced


#: A CPU row whose kept set holds more than this fraction of the vocabulary goes
#: through the whole-row path (:func:`_row_masked`); a smaller one through
#: :func:`_row_kept`. Measured at V = 151,936 (flat rows, top-p 0.3-0.99): the two cost
#: the same near 2,500 kept tokens (1.6 %).
MASKED_FRACTION = 0.015


def _row_kept(a, b, tok, cut: Cut):
    """:func:`_row_masked` by the kept tokens' indices (CPU rows): KL, TV, missing mass
    and both log-probs of the sampled token ``tok``, and whether it was forced in.

    One pass over the training row gives its maximum and ``S = sum_v exp(b_v - max)``
    (float64 sum of the float32 exponentials); everything over the kept set K is then
    float64: ``log q_K = b_K - max - log S``, the missing mass ``(S - sum_K exp(b_v -
    max)) / S`` from the same exponentials, ``KL = sum_K [p (log p - log q) - p + q] +
    m``, ``TV = (sum_K |p - q| + m) / 2``. A kept token with p = 0 (a -inf logit tied
    at -inf) counts as outside the support.
    """
    import torch

    an = a.numpy()
    idx = cut.idx if cut.idx is not None else np.flatnonzero(an >= cut.t)
    forced = False
    if tok is not None:
        j = int(np.searchsorted(idx, tok))
        if j >= idx.size or idx[j] != tok:
            forced = True
            idx = np.insert(idx, j, tok)
    mb = float(b.max())
    if not math.isfinite(mb):
        return None
    eb = (b - mb).exp_()
    S = float(eb.sum(dtype=torch.float64))
    ak = an[idx].astype(np.float64)
    mk = ak.max()
    lpk = ak - (mk + math.log(np.exp(ak - mk).sum()))
    lqk = b.numpy()[idx].astype(np.float64) - (mb + math.log(S))
    pk, qk = np.exp(lpk), np.exp(lqk)
    zero = pk == 0
    with np.errstate(invalid="ignore"):
        m_out = max((S - eb.numpy()[idx].sum(dtype=np.float64)) / S, 0.0)
        kl = float(np.where(zero, qk, pk * (lpk - lqk) - pk + qk).sum()) + m_out
        tv = 0.5 * (float(np.abs(pk - qk).sum()) + m_out)
        mm = m_out + float(qk[zero].sum())
    lpr = lpt = None
    if tok is not None:
        j = int(np.searchsorted(idx, tok))
        lpr, lpt = float(lpk[j]), float(lqk[j])
    return max(kl, 0.0), tv, mm, lpr, lpt, forced


def _block_truncated(a, b, tk, top_k: int, top_p: float, work=None):
    """KL, TV, missing mass (and the tokens' log-probs) of one block of rows whose
    rollout distribution is ``softmax(a)`` restricted to its top-k / top-p set.

    The kept set of each CPU row is found by :func:`trmbounds._nucleus.cuts`. A kept
    set larger than :data:`MASKED_FRACTION` of the vocabulary goes through
    :func:`_row_masked` (whole-row passes), a smaller one (language-model rows) through
    :func:`_row_kept` (its indices); a row either cannot take is handed to
    :func:`_block_truncated_generic`, as are all rows on other devices.

    Generic (index) path: only the kept tokens are normalised (no exp of -inf logits, a
    slow path of the vectorised exp): with K the kept set, p its renormalised rollout
    distribution and q
    the training distribution, KL = sum_K p (log p - log q) and
    TV = (sum_K |p - q| + m) / 2, where m = 1 - sum_K q is the missing mass (summed in
    float64; below 1e-3 it is summed over the complement instead, and KL takes the
    form sum_K [p (log p - log q) - p + q] + m, whose terms cancel an error of the
    training log-normaliser). The sampled token, when given, is always in K.
    """
    import torch

    B, V = a.shape
    if work is None and a.device.type == "cpu":
        work = [torch.empty_like(a[0]) for _ in range(4)]
    cs = cuts(a, top_k, top_p, work)
    if all(c is not None for c in cs):  # CPU rows: no log-softmax of the whole block
        out = [[math.nan] * B for _ in range(5)]
        forced = [False] * B
        redo = []
        tl = None if tk is None else tk.tolist()
        for i, c in enumerate(cs):
            t_i = None if tl is None else tl[i]
            if c.n > MASKED_FRACTION * V:
                r = _row_masked(a[i], b[i], t_i, c, work)
            else:
                r = _row_kept(a[i], b[i], t_i, c)
            if r is None:
                redo.append(i)
                continue
            for k in range(5):
                if r[k] is not None:
                    out[k][i] = r[k]
            forced[i] = r[5]
        res = [torch.tensor(o, dtype=a.dtype) for o in out]
        forced = torch.tensor(forced)
        if redo:
            ri = torch.tensor(redo)
            sub, f = _block_truncated_generic(
                a[ri], b[ri], None if tk is None else tk[ri], top_k, top_p, [cs[i] for i in redo]
            )
            for k in range(5):
                if sub[k] is not None:
                    res[k][ri] = sub[k]
            forced[ri] = f
        if tk is None:
            res[3] = res[4] = None
        return tuple(res), forced
    return _block_truncated_generic(a, b, tk, top_k, top_p, cs)


def _block_truncated_generic(a, b, tk, top_k: int, top_p: float, cs: list):
    """The index path of :func:`_block_truncated` in torch for a block of rows (any
    device); ``cs`` the rows' cuts (``None``: found here by the torch search)."""
    import torch

    B = a.shape[0]
    lq = torch.log_softmax(b, -1)
    kw = dict(dtype=a.dtype, device=a.device)
    kl, tv, mm = torch.empty(B, **kw), torch.empty(B, **kw), torch.empty(B, **kw)
    lpr = torch.empty(B, **kw) if tk is not None else None
    lpt = lq.gather(-1, tk[:, None])[:, 0] if tk is not None else None
    forced = torch.zeros(B, dtype=torch.bool, device=a.device)
    generic = None
    for i in range(B):
        c = cs[i]
        if c is not None:
            idx = c.idx if c.idx is not None else (a[i] >= c.t).nonzero()[:, 0]
            idx = torch.as_tensor(idx, device=a.device)
        else:
            if generic is None:
                generic = keep_torch(a, top_k, top_p)
            idx = generic[i].nonzero()[:, 0]
        if tk is not None:
            j = int(torch.searchsorted(idx, tk[i : i + 1])[0])
            if j >= idx.numel() or int(idx[j]) != int(tk[i]):
                forced[i] = True
                idx = torch.cat([idx[:j], tk[i : i + 1], idx[j:]])
        ak = a[i, idx]
        mk = ak.max()
        lpk = ak - (mk + (ak - mk).exp().sum().log())
        lqk = lq[i, idx]
        pk, qk = lpk.exp(), lqk.exp()
        zero = pk == 0  # -inf logits kept by a tie at -inf: outside the support too
        m_out = (1.0 - qk.double().sum()).clamp(min=0.0)
        if float(m_out) < 1e-3:
            # small missing mass: sum it directly and use the KL form whose terms cancel
            # an error of the training log-normaliser (see token_divergences)
            m_out = lq[i].exp().index_fill_(0, idx, 0.0).double().sum()
            kl_terms = torch.where(zero, qk, pk * (lpk - lqk) - pk + qk).double().sum()
            kl[i] = (kl_terms + m_out).clamp(min=0)
        else:
            kl[i] = torch.where(zero, 0.0, pk * (lpk - lqk)).double().sum().clamp(min=0)
        tv[i] = 0.5 * ((pk - qk).abs().double().sum() + m_out)
        mm[i] = m_out + torch.where(zero, qk, 0.0).double().sum()
        if tk is not None:
            lpr[i] = lpk[j]
    am = a.amax(-1)
    bad = torch.isnan(am) | torch.isposinf(am)
    if bool(bad.any()):  # NaN / +inf rollout logits give NaN, as in the plain path
        for r in (kl, tv, mm, lpr):
            if r is not None:
                r[bad] = math.nan
    return (kl, tv, mm, lpr, lpt), forced


def _divergences_numpy(x, y, tokens, temperature, top_k, top_p, block_rows):
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    tok = None if tokens is None else np.asarray(tokens)
    _shapes(x.shape, y.shape, None if tok is None else tok.shape)
    lead, V = x.shape[:-1], x.shape[-1]
    x2, y2 = x.reshape(-1, V), y.reshape(-1, V)
    t2 = None if tok is None else tok.reshape(-1).astype(np.int64)
    if t2 is not None and t2.size and (t2.min() < 0 or t2.max() >= V):
        raise TrmboundsError(f"tokens must be in [0, {V}), got {t2.min()}..{t2.max()}")
    n = x2.shape[0]
    kl, tv, mm = np.empty(n), np.empty(n), np.empty(n)
    lpr = np.empty(n) if t2 is not None else None
    lpt = np.empty(n) if t2 is not None else None
    forced = np.zeros(n, dtype=bool) if t2 is not None else None
    rows = _rows_per_block(V, block_rows)
    truncated = 0 < top_k < V or top_p < 1  # top_k >= V keeps everything
    for s in range(0, n, rows):
        a = x2[s : s + rows] / temperature
        b = y2[s : s + rows] / temperature
        tk = None if t2 is None else t2[s : s + rows]
        if truncated:
            a0, a = a, truncate_logits(a, top_k, top_p)
            if tk is not None:
                f = np.isneginf(np.take_along_axis(a, tk[:, None], -1)[:, 0])
                forced[s : s + rows] = f
                if f.any():
                    np.put_along_axis(a, tk[:, None], np.take_along_axis(a0, tk[:, None], -1), -1)
        # only -inf is outside the support: NaN / +inf logits give NaN, as in torch
        out = np.isneginf(a)
        a = np.where(out, _NEG, a)
        with np.errstate(invalid="ignore"):
            lp = a - a.max(-1, keepdims=True)
            lp -= np.log(np.exp(lp).sum(-1, keepdims=True))
            lq = b - b.max(-1, keepdims=True)
            lq -= np.log(np.exp(lq).sum(-1, keepdims=True))
            p, q = np.exp(lp), np.exp(lq)
            # 0 * log(0/0) = 0 where both policies exclude a token (0 * inf would be NaN);
            # p == 0 (not p > 0) so that a NaN p still propagates
            terms = np.where(p == 0, 0.0, p * (lp - lq))
        kl[s : s + rows] = np.maximum((terms - p + q).sum(-1), 0.0)
        tv[s : s + rows] = 0.5 * np.abs(p - q).sum(-1)
        mm[s : s + rows] = np.where(out, q, 0.0).sum(-1)
        if tk is not None:
            lpr[s : s + rows] = np.take_along_axis(lp, tk[:, None], -1)[:, 0]
            lpt[s : s + rows] = np.take_along_axis(lq, tk[:, None], -1)[:, 0]
    shape = lead
    return TokenDivergences(
        kl.reshape(shape),
        tv.reshape(shape),
        mm.reshape(shape),
        None if lpr is None else lpr.reshape(shape),
        None if lpt is None else lpt.reshape(shape),
        None if forced is None else forced.reshape(shape),
    )


def _block_torch(a, b, tk, masked: bool):
    """KL, TV, missing mass (and the tokens' log-probs) of one block of rows."""
    import torch

    if masked:
        out = torch.isneginf(a)
        a = a.masked_fill(out, _NEG)
    # p = exp(lp) of the rounded lp (not a separately normalised softmax): the KL form
    # below cancels the log-normaliser's rounding only if p and lp agree
    lp = torch.log_softmax(a, -1)
    lq = torch.log_softmax(b, -1)
    lpr = lpt = None
    if tk is not None:
        lpr = lp.gather(-1, tk[:, None])[:, 0]
        lpt = lq.gather(-1, tk[:, None])[:, 0]
    p = lp.exp()
    q = lq.exp()
    d = lp.sub_(lq)
    pd = torch.linalg.vecdot(p, d)
    if masked:
        # 0 * (log p - log q) = 0 where p = 0, also where q = 0 (a -inf training logit:
        # 0 * inf is NaN). Only NaN rows are redone (fast-path NaN rows come here too);
        # a NaN p (invalid logits) stays NaN.
        nan = pd.isnan()
        if bool(nan.any()):
            dn = d[nan].masked_fill_(p[nan] == 0, 0.0)
            pd[nan] = torch.linalg.vecdot(p[nan], dn)
    mm = (q * out).sum(-1) if masked else torch.zeros_like(pd)
    diff = p.sub_(q)
    # sum_v [p (log p - log q) - p + q]: each term >= 0, and an error in either
    # log-normaliser cancels to first order (see token_divergences)
    kl = pd.sub_(diff.sum(-1)).clamp_(min=0)
    tv = torch.linalg.vector_norm(diff, 1, dim=-1).mul_(0.5)
    return kl, tv, mm, lpr, lpt


def _divergences_torch(x, y, tokens, temperature, top_k, top_p, block_rows):
    import torch

    x = torch.as_tensor(x)
    y = torch.as_tensor(y, device=x.device)
    tok = None if tokens is None else torch.as_tensor(tokens, device=x.device)
    _shapes(tuple(x.shape), tuple(y.shape), None if tok is None else tuple(tok.shape))
    lead, V = tuple(x.shape[:-1]), x.shape[-1]
    work = torch.float64 if torch.float64 in (x.dtype, y.dtype) else torch.float32
    x2, y2 = x.reshape(-1, V), y.reshape(-1, V)
    t2 = None if tok is None else tok.reshape(-1).long()
    if t2 is not None and t2.numel() and (int(t2.min()) < 0 or int(t2.max()) >= V):
        raise TrmboundsError(f"tokens must be in [0, {V}), got {int(t2.min())}..{int(t2.max())}")
    n = x2.shape[0]
    kw = dict(dtype=work, device=x.device)
    kl, tv, mm = torch.empty(n, **kw), torch.empty(n, **kw), torch.zeros(n, **kw)
    lpr = torch.empty(n, **kw) if t2 is not None else None
    lpt = torch.empty(n, **kw) if t2 is not None else None
    forced = torch.zeros(n, dtype=torch.bool, device=x.device) if t2 is not None else None
    rows = _rows_per_block(V, block_rows)
    truncated = 0 < top_k < V or top_p < 1  # top_k >= V keeps everything
    work_rows = None  # scratch rows of the truncated CPU path, made once per call
    with torch.no_grad():
        for s in range(0, n, rows):
            # .to() may return a view of the caller's logits: nothing below writes to a or b
            a = x2[s : s + rows].to(work)
            b = y2[s : s + rows].to(work)
            tk = None if t2 is None else t2[s : s + rows]
            if temperature != 1.0:
                a = a / temperature
                b = b / temperature
            if truncated:
                if work_rows is None and x.device.type == "cpu":
                    work_rows = [torch.empty(V, dtype=work) for _ in range(4)]
                res, f = _block_truncated(a, b, tk, top_k, top_p, work_rows)
                if tk is not None:
                    forced[s : s + rows] = f
            else:
                # fast path without a support mask; rows with -inf rollout logits (the
                # caller's own masking) give NaN there and are redone with the mask
                res = _block_torch(a, b, tk, masked=False)
            bad = ~torch.isfinite(res[0]) if not truncated else None
            if bad is not None and bool(bad.any()):
                redo = _block_torch(a[bad], b[bad], None if tk is None else tk[bad], masked=True)
                for r, rr in zip(res, redo, strict=True):
                    if r is not None:
                        r[bad] = rr
            kl[s : s + rows], tv[s : s + rows], mm[s : s + rows] = res[0], res[1], res[2]
            if tk is not None:
                lpr[s : s + rows], lpt[s : s + rows] = res[3], res[4]
    return TokenDivergences(
        kl.reshape(lead),
        tv.reshape(lead),
        mm.reshape(lead),
        None if lpr is None else lpr.reshape(lead),
        None if lpt is None else lpt.reshape(lead),
        None if forced is None else forced.reshape(lead),
    )


# ----------------------------------------------------------------- proxies
def k1(log_ratio: Any) -> Any:
    r"""The k1 proxy :math:`-\log\rho_t` of the sampled token (the paper).

    .. math:: k_1 = -\log\rho_t = \log\pi_{roll}(y_t|c_t) - \log\pi_\theta(y_t|c_t)

    Its mean under :math:`y_t \sim \pi_{roll}` is :math:`KL(\pi_{roll}\|\pi_\theta)`,
    but single values can be negative.

    Examples
    --------
    >>> float(k1(np.log(2.0)))
    -0.6931471805599453
    """
    return -log_ratio


def k2(log_ratio: Any) -> Any:
    r"""The k2 proxy :math:`\tfrac12(\log\rho_t)^2`: symmetric, for the max criterion.

    .. math:: k_2 = \tfrac12 (\log\rho_t)^2

    Examples
    --------
    >>> float(k2(np.log(2.0)))
    0.2402265069591007
    """
    return 0.5 * log_ratio * log_ratio


def k3(log_ratio: Any) -> Any:
    r"""The k3 proxy :math:`\rho_t - 1 - \log\rho_t \ge 0`: for the average criterion.

    .. math:: k_3 = \rho_t - 1 - \log\rho_t

    Unbiased for :math:`KL(\pi_{roll}\|\pi_\theta)` when :math:`y_t \sim \pi_{roll}`
    (full support); computed as ``expm1(log_ratio) - log_ratio`` for accuracy near 0.

    Examples
    --------
    >>> round(float(k3(np.log(2.0))), 12), round(1 - float(np.log(2.0)), 12)
    (0.30685281944, 0.30685281944)
    """
    if _is_torch(log_ratio):
        import torch

        return torch.expm1(log_ratio) - log_ratio
    lr = np.asarray(log_ratio, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):  # ratio beyond float range: inf
        return np.expm1(lr) - lr


# ----------------------------------------------------------------- masks
class TRMMask(NamedTuple):
    """A per-sequence keep mask (``True`` = used in the update) and its acceptance rate."""

    keep: Any
    acceptance: float


def _prep(values: Any, mask: Any, name: str):
    """Validate a (N, T) per-token array and its padding mask; return (values, mask, lib)."""
    if _is_torch(values):
        import torch

        v = values
        m = torch.ones_like(v, dtype=torch.bool) if mask is None else torch.as_tensor(mask)
        m = m.to(device=v.device, dtype=torch.bool)
        lib = torch
    else:
        v = np.asarray(values, dtype=np.float64)
        m = np.ones(v.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        lib = np
    if v.ndim != 2:
        raise TrmboundsError(f"{name} must have shape (N, T), got {tuple(v.shape)}")
    if tuple(m.shape) != tuple(v.shape):
        raise TrmboundsError(f"mask shape {tuple(m.shape)} does not match {name} {tuple(v.shape)}")
    return v, m, lib


def _result(keep: Any, lib) -> TRMMask:
    n = keep.shape[0]
    rate = float(keep.sum()) / n if n else 1.0
    return TRMMask(keep, rate)


def _seq_max(v, m, lib):
    if lib is np:
        return np.where(m, v, -np.inf).max(axis=1, initial=-np.inf)
    return (
        v.masked_fill(~m, -math.inf).amax(dim=1)
        if v.shape[1]
        else v.new_full((v.shape[0],), -math.inf)
    )


def _seq_mean(v, m, lib):
    # where / masked_fill, not v * m: a NaN or inf at padding times 0 would be NaN
    n = m.sum(1)
    if lib is np:
        s = np.where(m, v, 0.0).sum(1)
        return np.where(n > 0, s / np.maximum(n, 1), 0.0)
    return v.masked_fill(~m, 0.0).sum(1) / n.clamp(min=1)


def trm_max_mask(kl: Any, threshold: float, mask: Any = None) -> TRMMask:
    r"""TRM-Max: keep a sequence iff its largest per-token divergence is at most δ.

    .. math:: M = \mathbb 1\big[\max_t KL(c_t) \le \delta\big]

    The threshold is length-invariant (the paper). Pass the exact per-token KL from
    :func:`token_divergences`, or a proxy (:func:`k2` is the paper's choice when full
    logits are unavailable). A sequence with no valid token is kept.

    Parameters
    ----------
    kl : array_like or torch.Tensor, shape (N, T)
    threshold : float
        δ (the paper's runs: 0.05).
    mask : bool array, shape (N, T), optional
        ``True`` for real response tokens; padding is ignored.

    Returns
    -------
    TRMMask
        ``keep`` (N,) booleans and the acceptance rate ``keep.mean()``.

    Examples
    --------
    >>> kl = np.array([[0.01, 0.02, 0.30], [0.01, 0.04, 0.0]])
    >>> trm_max_mask(kl, 0.05, mask=[[1, 1, 0], [1, 1, 1]])
    TRMMask(keep=array([ True,  True]), acceptance=1.0)
    >>> trm_max_mask(kl, 0.05).acceptance
    0.5
    """
    thr = _check_threshold("threshold", threshold)
    v, m, lib = _prep(kl, mask, "kl")
    return _result(_seq_max(v, m, lib) <= thr, lib)


def trm_avg_mask(kl: Any, threshold: float, mask: Any = None) -> TRMMask:
    r"""TRM-Avg: keep a sequence iff its mean per-token divergence is at most δ_avg.

    .. math:: M = \mathbb 1\Big[\tfrac{1}{T_i}\sum_{t \le T_i} KL(c_t) \le \delta_{avg}\Big]

    :math:`T_i` is the sequence's own number of valid tokens (padding excluded); an
    empty sequence is kept. The paper pairs it with the :func:`k3` proxy.

    Examples
    --------
    >>> kl = np.array([[0.001, 0.003, 9.0], [0.001, 0.002, 0.0]])
    >>> m = np.array([[1, 1, 0], [1, 1, 1]], dtype=bool)
    >>> trm_avg_mask(kl, 0.002, mask=m)
    TRMMask(keep=array([ True,  True]), acceptance=1.0)
    >>> trm_avg_mask(kl, 0.0019, mask=m).keep
    array([False,  True])
    """
    thr = _check_threshold("threshold", threshold)
    v, m, lib = _prep(kl, mask, "kl")
    return _result(_seq_mean(v, m, lib) <= thr, lib)


def trm_combined_mask(
    kl: Any,
    threshold_max: float,
    threshold_avg: float,
    mask: Any = None,
    kl_avg: Any = None,
) -> TRMMask:
    r"""TRM-Max and TRM-Avg together: keep iff both criteria hold.

    .. math:: M = \mathbb 1[\max_t KL(c_t) \le \delta]\;\mathbb 1[\tfrac1{T_i}\sum_t KL(c_t)
        \le \delta_{avg}]

    The paper's runs used δ = 0.05 and δ_avg = 0.001. ``kl_avg`` (same shape) feeds
    the average criterion with a different per-token statistic (e.g. :func:`k3`
    while :func:`k2` feeds the max).

    Examples
    --------
    >>> kl = np.array([[0.0, 0.06], [0.0005, 0.0005], [0.003, 0.003]])
    >>> trm_combined_mask(kl, 0.05, 0.001)
    TRMMask(keep=array([False,  True, False]), acceptance=0.3333333333333333)
    """
    mx = trm_max_mask(kl, threshold_max, mask)
    av = trm_avg_mask(kl if kl_avg is None else kl_avg, threshold_avg, mask)
    v, _, lib = _prep(kl, mask, "kl")
    return _result(mx.keep & av.keep, lib)


def ln_trm_weights(T: int, eps: float, delta: float) -> np.ndarray:
    r"""LN-TRM position weights :math:`w_t = \min(1, (T-t)\varepsilon, \sqrt{(T-t)\delta/2})`.

    Examples
    --------
    >>> ln_trm_weights(4, 0.1, 0.02)
    array([0.17320508, 0.14142136, 0.1       , 0.        ])
    """
    from .bounds import position_weights

    eps = _check_threshold("eps", eps)
    delta = _check_threshold("delta", delta)
    return position_weights(int(T), kl_max=delta, tv_max=eps)


def ln_trm_mask(
    log_ratio: Any, threshold: float, eps: float, delta: float, mask: Any = None
) -> TRMMask:
    r"""LN-TRM: keep iff the weighted ratio deviation, normalised by its weights, is small.

    .. math::

        W = \sum_{t=1}^{T_i} |\rho_t - 1|\, w_t,\quad
        w_t = \min\big(1, (T_i-t)\varepsilon, \sqrt{(T_i-t)\delta/2}\big),\quad
        Z(T_i) = \sum_t w_t,\qquad M = \mathbb 1[W / Z(T_i) \le \delta_W]

    :math:`T_i` is the sequence's own length (valid tokens, which must come first in
    each row). With :math:`\delta` holding globally, :math:`|Error| \le 2E_{roll}[W]`
    (the paper). A sequence with :math:`Z = 0` (one token) has :math:`W = 0` and is kept.

    Examples
    --------
    Two tokens, ρ = (1.5, 1): :math:`w = (\min(1, 0.1, \sqrt{0.01}), 0) = (0.1, 0)`,
    W = 0.05, Z = 0.1, W/Z = 0.5:

    >>> lr = np.log([[1.5, 1.0]])
    >>> ln_trm_mask(lr, 0.5, eps=0.1, delta=0.02).acceptance, ln_trm_mask(lr, 0.49, 0.1, 0.02).acceptance
    (1.0, 0.0)
    """
    thr = _check_threshold("threshold", threshold)
    eps = _check_threshold("eps", eps)
    delta = _check_threshold("delta", delta)
    v, m, lib = _prep(log_ratio, mask, "log_ratio")
    if lib is np:
        L = m.sum(1)
        t = np.arange(1, v.shape[1] + 1)[None, :]
        r = np.clip(L[:, None] - t, 0, None).astype(np.float64)
        w = np.minimum(np.minimum(1.0, r * eps), np.sqrt(r * delta / 2)) * m
        with np.errstate(over="ignore"):  # a ratio beyond float range: deviation inf
            dev = np.abs(np.expm1(np.where(m, v, 0.0)))
        W, Z = (dev * w).sum(1), w.sum(1)
        keep = np.where(Z > 0, W <= thr * Z, True)
    else:
        import torch

        L = m.sum(1)
        t = torch.arange(1, v.shape[1] + 1, device=v.device)[None, :]
        r = (L[:, None] - t).clamp(min=0).to(v.dtype)
        w = torch.minimum(torch.clamp(r * eps, max=1.0), torch.sqrt(r * delta / 2)) * m
        dev = torch.expm1(v.masked_fill(~m, 0.0)).abs()
        W, Z = (dev * w).sum(1), w.sum(1)
        keep = torch.where(Z > 0, W <= thr * Z, torch.ones_like(Z, dtype=torch.bool))
    return _result(keep, lib)


def ser_mask(log_ratio: Any, threshold: float, mask: Any = None) -> TRMMask:
    r"""SER: keep iff the mean absolute ratio deviation is at most δ_SER.

    .. math:: M = \mathbb 1\Big[\tfrac1{T_i}\sum_{t\le T_i} |\rho_t - 1| \le \delta_{SER}\Big]

    The suggested range is :math:`\delta_{SER} \in [0.03, 0.10]` (the paper).

    Examples
    --------
    >>> lr = np.log([[1.02, 0.98], [1.2, 1.0]])
    >>> ser_mask(lr, 0.05)
    TRMMask(keep=array([ True, False]), acceptance=0.5)
    """
    thr = _check_threshold("threshold", threshold)
    v, m, lib = _prep(log_ratio, mask, "log_ratio")
    if lib is np:
        with np.errstate(over="ignore"):  # a ratio beyond float range: deviation inf
            dev = np.abs(np.expm1(np.where(m, v, 0.0)))
    else:
        dev = v.masked_fill(~m, 0.0).expm1().abs()
    return _result(_seq_mean(dev, m, lib) <= thr, lib)


def masked_surrogate(
    log_ratio: Any,
    advantages: Any,
    keep: Any,
    mask: Any = None,
    normalize: str = "sequences",
) -> Any:
    r"""The masked surrogate, normalised by the total batch size (not the accepted count).

    .. math::

        L_{masked} = \frac1N \sum_{i=1}^N M_i \sum_{t} A_{i,t}\,\rho_{i,t}

    ``normalize="sequences"`` divides by the number of sequences :math:`N`
    (the paper); ``"tokens"`` divides by the number of valid tokens of the whole batch,
    rejected sequences included. Dividing by the accepted count instead would
    re-weight the kept sequences and bias the gradient. Padding and rejected
    sequences are selected away, not multiplied by 0: a NaN or overflowing
    log-ratio or advantage there changes neither the loss nor its gradient. With torch tensors the
    result is differentiable in ``log_ratio`` (:math:`\rho = e^{\log\rho}`).

    Parameters
    ----------
    log_ratio : (N, T)
        :math:`\log\rho_{i,t} = \log\pi_\theta(y_t|c_t) - \log\pi_{roll}(y_t|c_t)`.
    advantages : (N,) or (N, T)
        One advantage per sequence (broadcast over tokens) or per token.
    keep : (N,) booleans
        The mask of a TRM criterion (:attr:`TRMMask.keep`).
    mask : (N, T) booleans, optional
        Padding mask.
    normalize : {"sequences", "tokens"}

    Examples
    --------
    Two sequences, the second rejected: :math:`(1\cdot(1 + 2))/2 = 1.5`.

    >>> masked_surrogate(np.log([[1.0, 2.0], [3.0, 3.0]]), [1.0, 5.0], [True, False])
    1.5
    """
    v, m, lib = _prep(log_ratio, mask, "log_ratio")
    N = v.shape[0]
    if normalize not in ("sequences", "tokens"):
        raise TrmboundsError(f"normalize must be 'sequences' or 'tokens', got {normalize!r}")
    if lib is np:
        A = np.asarray(advantages, dtype=np.float64)
        k = np.asarray(keep, dtype=bool)
    else:
        A = lib.as_tensor(advantages, device=v.device).to(v.dtype)
        k = lib.as_tensor(keep, device=v.device).to(lib.bool)
    if tuple(k.shape) != (N,):
        raise TrmboundsError(f"keep must have shape ({N},), got {tuple(k.shape)}")
    if A.ndim == 1:
        if A.shape[0] != N:
            raise TrmboundsError(f"advantages must have shape ({N},) or {tuple(v.shape)}")
        A = A[:, None]
    elif tuple(A.shape) != tuple(v.shape):
        raise TrmboundsError(f"advantages must have shape ({N},) or {tuple(v.shape)}")
    # Excluded terms (padding, rejected sequences) are selected away, never multiplied
    # by 0: a NaN / overflowing log-ratio or advantage there (inf * 0 = NaN) must not
    # reach the loss or its gradient (masked_fill passes no gradient to those entries).
    used = m & k[:, None]
    if lib is np:
        total = (np.exp(np.where(used, v, 0.0)) * np.where(used, A, 0.0)).sum(1)
    else:
        zero = v.new_zeros(())
        total = (v.masked_fill(~used, 0.0).exp() * lib.where(used, A, zero)).sum(1)
    denom = N if normalize == "sequences" else m.sum()
    if lib is np:
        return float(total.sum() / max(int(denom), 1))
    return total.sum() / max(int(denom), 1)


def log_ppl_gap(logp_theta: Any, logp_roll: Any, mask: Any = None) -> float:
    r"""Log-perplexity gap :math:`\mathrm{mean}_i|\mathrm{mean}_t \log\pi_\theta - \mathrm{mean}_t\log\pi_{roll}|`.

    Examples
    --------
    >>> log_ppl_gap(np.log([[0.5, 0.5]]), np.log([[0.25, 0.5]]))
    0.34657359027997264
    """
    if _is_torch(logp_theta):
        logp_theta = logp_theta.detach().cpu().double().numpy()
        logp_roll = logp_roll.detach().cpu().double().numpy()
        mask = None if mask is None else np.asarray(mask.detach().cpu())
    lt, m, _ = _prep(logp_theta, mask, "logp_theta")
    lr, _, _ = _prep(logp_roll, mask, "logp_roll")
    gap = np.abs(_seq_mean(np.where(m, lt - lr, 0.0), m, np))
    return float(gap.mean()) if gap.size else 0.0


def acceptance_probability(p: Any, T: Any) -> Any:
    r"""Length bias of a per-token criterion: :math:`P(\text{accept}) = (1-p)^T`.

    With an i.i.d. per-token violation probability :math:`p`, long sequences are
    rejected more often (the paper); broadcasts like a ufunc.

    Examples
    --------
    >>> round(float(acceptance_probability(1e-4, 4096)), 4)
    0.6639
    """
    p = np.asarray(p, dtype=np.float64)
    if np.any((p < 0) | (p > 1)) or np.any(np.isnan(p)):
        raise TrmboundsError("p must be a probability in [0, 1]")
    out = np.exp(np.asarray(T, dtype=np.float64) * np.log1p(-p))
    return float(out) if out.ndim == 0 else out
