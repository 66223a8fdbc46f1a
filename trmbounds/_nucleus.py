"""Top-k / top-p (nucleus) sets of logit rows without sorting the vocabulary.

The kept set of a row is always ``{v : x_v >= t}`` for one threshold ``t``: top-k
keeps every token at least the k-th largest (ties kept), top-p the smallest set of
most likely tokens whose probability reaches ``top_p`` (ties with the last kept token
kept too; Hugging Face semantics), and top-k then top-p keeps a threshold set of the
top-k set. This module finds ``t``.

On CPU (:func:`cpu_cut`) the search works on one row at a time with numpy and a few
passes over the vocabulary; the elements it sorts are only those near the threshold.
On other devices (:func:`keep_torch`) a binned search in torch is used. Both give the
same sets; ``tests/test_trm.py`` checks them against a full sort.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

#: Bins of the torch top-p threshold search: logits within :data:`TOP_P_RANGE` nats of
#: the row's maximum are binned by :data:`TOP_P_BINS` equal widths (lower ones share
#: the last). Tokens more than TOP_P_RANGE nats below the maximum count with weight
#: ``exp(-TOP_P_RANGE)`` (4e-18 each), in the CPU search too.
TOP_P_BINS = 1024
TOP_P_RANGE = 40.0
#: Torch search: tokens within TOP_P_NEAR nats of the maximum are ranked first when they
#: hold top_p of the mass and are at most TOP_P_NEAR_MAX (language-model rows).
TOP_P_NEAR = 8.0
TOP_P_NEAR_MAX = 4096
#: CPU search: a kept set of at most SMALL_KEPT tokens is returned with its indices.
SMALL_KEPT = 4096
#: Stride of the subsample that places the CPU search's bracket around the threshold.
SUBSAMPLE = 32
#: Use the CPU search on CPU tensors (tests switch it off to compare with the torch one).
CPU_SEARCH = True


class Cut(NamedTuple):
    """The kept set ``{v : x_v >= t}`` of one row.

    ``mass`` is ``sum over the kept set of exp(x_v - m)`` (float64) with ``m`` the row's
    maximum; ``idx`` the ascending kept indices when there are at most
    :data:`SMALL_KEPT` of them (else ``None``); ``n`` the number of kept tokens.
    """

    t: float
    mass: float
    m: float
    idx: Any
    n: int = 0  # tokens kept (exact with idx, else estimated from the subsample)


def _rank(
    xn, cidx, m: float, prev: float, tot: float | None, top_p: float, complete: bool, n_prev=0
):
    """The cut among candidates ``cidx`` of row ``xn``.

    Every token above the candidates (larger logits) is kept and has mass ``prev``
    (relative to ``exp(m)``); ``tot`` is the row's mass (``None``: the candidates' own,
    as for top-k then top-p); ``n_prev`` the (estimated) number of them. Returns ``None`` when the threshold is not among the
    candidates (above them, or below them unless ``complete``).
    """
    vals = xn[cidx]
    if vals.size == 0:
        return None  # the bracket collapsed (ties at its ends): nothing to rank
    s = np.sort(vals)[::-1]
    ec = np.exp(s.astype(np.float64) - m)
    cum = np.cumsum(ec)
    if tot is None:
        tot = float(cum[-1])
    goal = top_p * tot
    above = prev + cum - ec  # mass of the tokens ranked above each candidate
    j = int(np.count_nonzero(above < goal))
    if j == 0:
        if prev > 0:
            return None  # the threshold is above the candidates
        j = 1  # the most likely token is always kept
    if j == s.size and not complete:
        return None  # the last candidate is kept: the threshold may be lower
    t = s[j - 1]
    k = int(np.count_nonzero(s >= t))  # ties with the last kept token are kept
    idx = cidx[vals >= t] if prev == 0 and k <= SMALL_KEPT else None
    return Cut(float(t), prev + float(cum[k - 1]), m, idx, n_prev + k)


def cpu_cut(x: Any, top_k: int, top_p: float, work: Any = None) -> Cut | None:
    """The kept set of one CPU row ``x`` (1-D float tensor); ``None`` for a row whose
    maximum is not finite (NaN, +inf, all -inf: left to the caller).

    Top-k: the k-th largest by a partition (``numpy.partition``), then top-p among
    those tokens. Top-p alone: (1) a bracket of the logit around the threshold, placed
    from a strided subsample's estimate of the tail mass (``1 - top_p``) ± 4 standard
    deviations of that estimate, the mass above it summed exactly; only the tokens in
    the bracket are sorted; (2) if the threshold is not in it, the bracket opened to the
    top; (3) else the whole row. Each step checks that the threshold lies among its
    candidates, so the result is exact whatever the estimate. ``work``: two scratch
    rows like ``x`` (no allocation of vocabulary-sized tensors per row).
    """
    import torch

    xn = x.numpy()
    x_min, x_max = torch.aminmax(x)
    m = float(x_max)
    if not math.isfinite(m):
        return None
    V = xn.size
    if top_k >= V:
        top_k = 0  # keeps the whole vocabulary: no top-k
    if not top_k and top_p >= 1:  # nothing truncated
        e = np.exp(xn.astype(np.float64) - m)
        return Cut(-math.inf, float(e.sum()), m, None, V)
    if top_k:
        kth = np.partition(xn, V - top_k)[V - top_k]
        cidx = np.flatnonzero(xn >= kth)
        if top_p >= 1:
            mass = float(np.exp(xn[cidx].astype(np.float64) - m).sum())
            small = cidx.size <= SMALL_KEPT
            return Cut(float(kth), mass, m, cidx if small else None, cidx.size)
        return _rank(xn, cidx, m, 0.0, None, top_p, True)
    if work is None:
        work = (torch.empty_like(x), torch.empty_like(x))
    # exp of clamped logits: no exp of values that underflow (a slow path of the exp)
    e = torch.sub(x, m, out=work[0])
    if not float(x_min) - m >= -TOP_P_RANGE:
        e.clamp_min_(-TOP_P_RANGE)
    e.exp_()
    tot = float(e.sum())
    goal = top_p * tot
    en = e.numpy()
    # (1) a bracket (e_lo, e_hi] of exp(x - m) placed from a subsample's estimate of the
    # tail mass, +- 4 sd of the estimate (from the subsample's elements below the
    # crossing: a heavy token picked above it does not widen the bracket). When few
    # tokens (by the estimate) lie above the bracket, it extends to the top.
    sub = np.sort(en[::SUBSAMPLE])
    tail = np.cumsum(sub, dtype=np.float64)  # est. mass of the tokens <= sub[i] / SUBSAMPLE
    target = (tot - goal) / SUBSAMPLE
    i = int(np.searchsorted(tail, target))
    s2 = float(np.dot(sub[:i], sub[:i]))
    sd4 = 4.0 * math.sqrt(s2 * (SUBSAMPLE - 1) / SUBSAMPLE)
    i_lo = int(np.searchsorted(tail, target - sd4, side="right")) - 1
    if i_lo < 0 and i > 0:
        # the sd is dominated by heavy tokens below the crossing: per-level sd instead
        sd4s = 4.0 * np.sqrt(np.cumsum(sub[:i].astype(np.float64) ** 2) * (1 - 1 / SUBSAMPLE))
        i_lo = int(np.searchsorted(tail[:i] + sd4s, target, side="right")) - 1
    i_hi = int(np.searchsorted(tail, target + sd4, side="right"))
    e_lo = float(sub[i_lo]) if i_lo >= 0 else -1.0
    n_prev = SUBSAMPLE * (sub.size - i_hi - 1)
    e_hi = float(sub[i_hi]) if i_hi < sub.size and n_prev > SMALL_KEPT else math.inf
    for lo, hi in ((e_lo, e_hi), (e_lo, math.inf)):
        prev, sel = 0.0, en > lo
        if hi < math.inf:
            prev = float(torch.threshold(e, hi, 0.0, out=work[1]).sum())
            sel &= en <= hi
        cut = _rank(xn, np.flatnonzero(sel), m, prev, tot, top_p, lo < 0, n_prev if prev else 0)
        if cut is not None:
            return cut
        if hi == math.inf:
            break
    # (3) the whole row
    return _rank(xn, np.arange(V), m, 0.0, tot, top_p, True)


def prev_float(t: float, dtype: Any) -> float:
    """The largest value of ``dtype`` (a torch float dtype) below ``t``: ``x > it``
    is ``x >= t`` for values of that dtype."""
    import torch

    f = np.float64 if dtype == torch.float64 else np.float32  # the CPU search's dtypes
    return float(np.nextafter(f(t), f(-np.inf)))


def cuts(x: Any, top_k: int, top_p: float, work: Any = None) -> list:
    """:func:`cpu_cut` for every row of ``x`` (B, V) on CPU; ``None`` entries elsewhere
    (other devices, non-finite rows) are for :func:`keep_torch`."""
    import torch

    B = x.shape[0]
    if not CPU_SEARCH or x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return [None] * B
    x = x.detach()  # the threshold carries no gradient (.numpy() refuses grad tensors)
    if work is None:
        work = (torch.empty_like(x[0]), torch.empty_like(x[0]))
    return [cpu_cut(x[i], top_k, top_p, work) for i in range(B)]


def keep_mask(x: Any, top_k: int, top_p: float) -> Any:
    """Boolean mask of the top-k / top-p set of torch logits ``x`` (B, V)."""
    import torch

    if x.shape[0] == 0:
        return torch.ones_like(x, dtype=torch.bool)
    cs = cuts(x, top_k, top_p)
    if all(c is not None for c in cs):
        thr = torch.tensor([c.t for c in cs], dtype=x.dtype, device=x.device)
        return x >= thr[:, None]
    keep = keep_torch(x, top_k, top_p)
    for i, c in enumerate(cs):
        if c is not None:
            keep[i] = x[i] >= c.t
    return keep


# --------------------------------------------------------------- torch search
def keep_torch(x: Any, top_k: int, top_p: float) -> Any:
    """Boolean mask of the top-k / top-p set of torch logits (B, V), in torch only."""
    import torch

    V = x.shape[-1]
    keep = None
    if top_k and top_k < V:
        kth = torch.topk(x, top_k, dim=-1).values[..., -1:]
        keep = x >= kth
    if top_p < 1:
        keep = top_p_keep(x, top_p, keep)
    if keep is None:
        keep = torch.ones_like(x, dtype=torch.bool)
    return keep


def top_p_keep(x: Any, top_p: float, keep: Any = None, near_first: bool = True) -> Any:
    """The top-p set of torch logits ``x`` (B, V) as a boolean mask: a token is kept iff
    the mass of the tokens ranked above it is < top_p (the most likely token always).

    Equivalent to Hugging Face's ``TopPLogitsWarper`` (sort ascending, drop tokens whose
    cumulative probability is <= 1 - top_p; tokens tied with the last kept one are kept
    too), without a sort of the vocabulary. Fast path (language-model-like rows): when
    the tokens within :data:`TOP_P_NEAR` nats of the maximum hold ``top_p`` of the mass
    and are at most :data:`TOP_P_NEAR_MAX`, only they are ranked. Otherwise the mass is
    accumulated in :data:`TOP_P_BINS` bins of the logit (one scatter pass), the bin where
    the cumulative mass from the top reaches ``top_p`` is found, and only the logits of
    that bin are ranked. ``keep`` (a top-k mask) restricts the distribution first
    (Hugging Face order: top-k, then top-p of the renormalised rest).
    """
    import torch

    B, V = x.shape
    m = x.amax(-1, keepdim=True)
    fin = torch.isfinite(m)[:, 0]
    mz = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    # exp of clamped logits: no exp(-inf) (a slow path of the vectorised exp)
    e = (x - mz).clamp_min_(-TOP_P_RANGE).exp_()
    if keep is not None:
        e.masked_fill_(~keep, 0.0)
    tot = e.sum(-1)
    thr = torch.full((B,), -math.inf, dtype=x.dtype, device=x.device)
    todo = []
    near = e >= math.exp(-TOP_P_NEAR) if near_first else None
    n_near = near.sum(-1) if near_first else None
    for i in range(B):
        if not bool(fin[i]):
            continue  # NaN / +inf / all -inf rows: left to the caller
        if not near_first or int(n_near[i]) > TOP_P_NEAR_MAX:
            todo.append(i)
            continue
        cols = near[i].nonzero()[:, 0]
        if float(e[i, cols].sum()) < top_p * float(tot[i]):
            todo.append(i)
            continue
        thr[i] = _rank_threshold(x[i, cols], mz[i], tot[i], 0.0, top_p)
    for i in todo:
        thr[i] = _bin_threshold(x[i], e[i], mz[i], tot[i], top_p, None if keep is None else keep[i])
    out = x >= thr[:, None]
    return out if keep is None else out & keep


def _rank_threshold(vals, mz, tot, prev: float, top_p: float):
    """The smallest kept logit among ``vals`` (mass ``prev`` above them)."""
    import torch

    vals = torch.sort(vals, descending=True).values
    pr = (vals - mz).exp() / tot
    above = prev + pr.cumsum(0) - pr
    return vals[max(int((above < top_p).sum()), 1) - 1]


def _bin_threshold(x, e, mz, tot, top_p: float, keep):
    """:func:`top_p_keep` for one row by :data:`TOP_P_BINS` bins of the logit."""
    import torch

    nb = TOP_P_BINS
    rel = (mz - x).clamp_max_(TOP_P_RANGE).mul_(nb / TOP_P_RANGE).clamp_(max=nb - 1).long()
    mass = torch.zeros(nb, dtype=e.dtype, device=x.device).scatter_add_(0, rel, e)
    cum = mass.cumsum(0) / tot
    b = min(int((cum < top_p).sum()), nb - 1)  # the first bin reaching top_p
    prev = float(cum[b - 1]) if b > 0 else 0.0
    sel = rel == b
    if keep is not None:
        sel &= keep
    return _rank_threshold(x[sel], mz, tot, prev, top_p)
