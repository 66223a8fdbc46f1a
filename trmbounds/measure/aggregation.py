"""Aggregation: per-token records into the statistics (with CIs) of a statistics file."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import ci
from ..errors import TrmboundsError
from ..stats import Stats
from ..trm import (
    k1,
    k2,
    k3,
    ln_trm_mask,
    ser_mask,
    trm_avg_mask,
    trm_combined_mask,
    trm_max_mask,
)
from .records import Records


def normal_ci(x: np.ndarray) -> tuple[float, float, float]:
    r"""Mean and normal 95 % interval :math:`\bar x \pm 1.96\, s/\sqrt n` (``s``: ddof 1).

    :func:`trmbounds.ci.normal` on the values' sum and sum of squares. With one value the
    interval is ``(nan, nan)``; a mean beyond float64 (infinite or NaN) has none either.

    Examples
    --------
    >>> m, lo, hi = normal_ci(np.array([1.0, 2.0, 3.0, 4.0]))
    >>> m, round(lo, 4), round(hi, 4)
    (2.5, 1.2348, 3.7652)
    """
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        raise TrmboundsError("no values to average")
    return _normal(x.sum(), _sumsq(x), x.size)


def _sumsq(x: np.ndarray) -> float:
    with np.errstate(over="ignore", invalid="ignore"):  # huge values: an infinite CI
        return float(np.square(x).sum())


def _normal(s: float, ss: float, n: int) -> tuple[float, float, float]:
    """Mean and normal interval from a sum, a sum of squares and a count (no interval
    when n < 2 or the mean is not finite)."""
    m, lo, hi = (float(v) for v in ci.normal(s, ss, n))
    if not math.isfinite(m):
        return m, math.nan, math.nan
    return m, lo, hi


BOUNDED_CI_METHOD = (
    "wilson: the Wilson score interval with variance mean * (1 - mean) (the largest a "
    "[0, 1] variable with that mean can have), clipped to [0, 1]"
)


def bounded_mean_ci(x: np.ndarray) -> tuple[float, float, float, str]:
    r"""Mean and 95 % interval of values in [0, 1], and the name of the method used.

    Always the Wilson score interval with :math:`\bar x(1-\bar x)` as the variance
    (:func:`trmbounds.ci.bounded`: the largest variance a [0, 1] variable with mean
    :math:`\bar x` can have, so at least the sample variance). The normal interval
    :math:`\bar x \pm 1.96\,s/\sqrt n` under-covers whenever a few rare values carry the
    mean — also far from 0 and 1: a constant floor plus one rare large value gave a
    near-zero sample variance and covered the exact value 42-65 % of the time at
    N = 100-1000 (tests/test_measure.py). The interval is clipped to [0, 1]; with one
    value it is ``(nan, nan)``.

    Examples
    --------
    Three zeros and a one (Wilson, ``(m + z^2/2n ± z sqrt(m(1-m)/n + z^2/4n^2)) /
    (1 + z^2/n)`` with z = 1.96):

    >>> m, lo, hi, how = bounded_mean_ci(np.array([0.0, 0.0, 0.0, 1.0]))
    >>> m, round(lo, 4), round(hi, 4), how.split(":")[0]
    (0.25, 0.0456, 0.6994, 'wilson')
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.size
    if n == 0:
        raise TrmboundsError("no values to average")
    mean = float(x.mean())
    if n < 2 or not math.isfinite(mean):
        return mean, math.nan, math.nan, "none"
    _, lo, hi = ci.bounded(mean, n)
    return mean, float(lo), float(hi), BOUNDED_CI_METHOD


def aggregate(
    records: Records,
    *,
    trm_max: float = 0.05,
    trm_avg: float = 0.001,
    ser: float = 0.05,
    ln_trm: float | None = None,
    truncated: bool = False,
    adv_range: float | None = None,
    reward_range: tuple[float, float] | None = None,
    meta: dict[str, Any] | None = None,
) -> Stats:
    r"""Aggregate per-token records into :class:`~trmbounds.stats.Stats`.

    .. math::

        \hat\delta = \max_{i,t} KL(c_{i,t}),\quad
        \hat\varepsilon = \max_{i,t} TV(c_{i,t}),\quad
        \hat D_{KL}^{seq} = \frac1N\sum_i\sum_{t\le T_i} KL(c_{i,t}),

        \hat D_{TV}^{seq} = \frac1N\sum_i \Big(1 - \exp\Big(\sum_{t\le T_i}
        \log\rho_{i,t}\Big)\Big)^+,\qquad
        \hat{\bar D}_t = \frac1N\sum_i TV(c_{i,t})\,\mathbb 1[t \le T_i]

    :math:`T = \max_i T_i` (the longest response). **After a response's end** a
    finished response stays finished under both policies (EOS is an absorbing state:
    both emit padding with probability 1), so :math:`TV = KL = 0` there exactly, and
    :math:`\bar D_t` averages over all N responses with those zeros. This makes the
    length-T padded response distributions the objects the bounds are about, and
    keeps :math:`D_{TV}^{seq} \le \sum_t \bar D_t`. The ``tv_seq`` terms lie in [0, 1]
    (the identity :math:`TV(P, Q) = E_P[(1 - dQ/dP)^+]` over whole responses, exact
    without full support); its CI is :func:`bounded_mean_ci`.

    Parameters
    ----------
    records : Records
    trm_max, trm_avg, ser : float
        Thresholds at which the acceptance rates of TRM-Max, TRM-Avg, their
        combination and SER are reported (in ``meta["acceptance"]``).
    ln_trm : float, optional
        LN-TRM threshold :math:`\delta_W`; its weights use the measured
        :math:`\hat\varepsilon`, :math:`\hat\delta`.
    truncated : bool
        The rollouts were sampled with top-k / top-p: report ``missing_mass``.
    adv_range, reward_range
        Passed to :class:`~trmbounds.stats.Stats`.
    meta : dict, optional
        Provenance merged into ``Stats.meta``.

    Examples
    --------
    Two responses, of lengths 2 and 1; the second contributes TV 0 at t = 2. Their path
    ratios are 1.2 and 0.75, so ``tv_seq`` = ((1 - 1.2)⁺ + (1 - 0.75)⁺) / 2 = 0.125:

    >>> rec = Records.from_padded(kl=np.array([[0.02, 0.01], [0.04, 0.0]]),
    ...                           tv=np.array([[0.1, 0.05], [0.14, 0.0]]),
    ...                           logp_roll=np.log([[0.5, 0.5], [0.4, 1.0]]),
    ...                           logp_theta=np.log([[0.6, 0.5], [0.3, 1.0]]),
    ...                           mask=np.array([[True, True], [True, False]]))
    >>> s = aggregate(rec)
    >>> s.T, s.kl_max, s.tv_max, round(s.kl_seq, 6), round(s.tv_seq, 6)
    (2, 0.04, 0.14, 0.035, 0.125)
    >>> s.per_position.round(6).tolist(), s.status["kl_max"]
    ([0.12, 0.025], 'empirical')
    """
    thr = {}
    for name, v in (("trm_max", trm_max), ("trm_avg", trm_avg), ("ser", ser)):
        try:
            x = float(v)
        except (TypeError, ValueError):
            raise TrmboundsError(f"{name} threshold must be a number, got {v!r}") from None
        if not (math.isfinite(x) and x >= 0):
            raise TrmboundsError(f"{name} threshold must be a finite number >= 0, got {v!r}")
        thr[name] = x
    N, n_tok = records.n_sequences, records.n_tokens
    if N == 0 or n_tok == 0:
        raise TrmboundsError("no response tokens were measured")
    # packed records (one value per measured token): every array below is as long as
    # the tokens read, never (responses x longest response)
    L = records.lengths
    T = int(L.max())
    row, off = records.row, records.offsets
    kl = records.kl
    tv = np.clip(records.tv, 0.0, 1.0)
    mm = records.missing_mass
    lr = records.log_ratio

    def seq_sum(x: np.ndarray) -> np.ndarray:
        """Per response, the sum of ``x`` over its tokens (in order)."""
        return np.bincount(row, weights=x, minlength=N)

    def where(flat: int) -> dict[str, int]:
        i = int(np.searchsorted(off, flat, side="right")) - 1
        return {"sequence": i, "position": flat - int(off[i]) + 1}

    i_kl, i_tv = int(np.argmax(kl)), int(np.argmax(tv))
    kl_max, tv_max = float(kl[i_kl]), float(tv[i_tv])

    kl_seq, kl_lo, kl_hi = normal_ci(seq_sum(kl))
    # D_TV^seq = E_roll[(1 - prod_t rho_t)^+]: exact without full support, terms in
    # [0, 1] (no overflow: a huge ratio gives 0, a zero ratio 1)
    with np.errstate(over="ignore"):
        tv_path = np.maximum(0.0, -np.expm1(seq_sum(lr)))
    tv_seq, tv_lo, tv_hi, tv_method = bounded_mean_ci(tv_path)
    # D̄_t: sum over responses of TV at position t (a response over by t adds 0), / N
    dbar = np.bincount(records.position, weights=tv, minlength=T) / N
    # D̄_t is a mean of [0, 1] values: the same Wilson interval as tv_seq
    if N > 1:
        _, dbar_lo, dbar_hi = ci.bounded(np.clip(dbar, 0.0, 1.0), N)
    else:
        dbar_lo = dbar_hi = np.full(T, math.nan)
    mm_mean, mm_lo, mm_hi = normal_ci(seq_sum(mm))

    k1s, k1lo, k1hi = normal_ci(seq_sum(k1(lr)))
    k3tok = k3(lr)
    k3s, k3lo, k3hi = normal_ci(seq_sum(k3tok))
    k2tok = k2(lr)
    with np.errstate(over="ignore", invalid="ignore"):  # absurd log-probs: inf / NaN
        absdiff = np.abs(np.exp(records.logp_roll) - np.exp(records.logp_theta))
        tv_proxy = 0.5 * np.abs(np.expm1(lr))
        tv_est_mean = float(np.maximum(0.0, -np.expm1(lr)).sum() / n_tok)
        # log-perplexity gap (trmbounds.trm.log_ppl_gap): mean_i |mean_t log rho_t|
        ppl_gap = float(np.abs(np.where(L > 0, seq_sum(lr) / np.maximum(L, 1), 0.0)).mean())

    if ln_trm is not None:
        ln_thr = float(ln_trm)
        if not (math.isfinite(ln_thr) and ln_thr >= 0):
            raise TrmboundsError(f"ln_trm threshold must be a finite number >= 0, got {ln_trm!r}")
    # the masks of trmbounds.trm work on padded rows: apply them to groups of responses
    # of similar lengths (each group padded to its own longest, a bounded size)
    kept = dict.fromkeys(
        ("max_kl", "max_k2", "avg_kl", "avg_k3", "comb_kl", "comb_proxy", "ser", "ln_trm"), 0
    )
    for rows in records.row_groups():
        g_kl, gm = records.padded_rows(kl, rows)
        g_k2, _ = records.padded_rows(k2tok, rows)
        g_k3, _ = records.padded_rows(k3tok, rows)
        g_lr, _ = records.padded_rows(lr, rows)
        t_max, t_avg = thr["trm_max"], thr["trm_avg"]
        kept["max_kl"] += int(trm_max_mask(g_kl, t_max, gm).keep.sum())
        kept["max_k2"] += int(trm_max_mask(g_k2, t_max, gm).keep.sum())
        kept["avg_kl"] += int(trm_avg_mask(g_kl, t_avg, gm).keep.sum())
        kept["avg_k3"] += int(trm_avg_mask(g_k3, t_avg, gm).keep.sum())
        kept["comb_kl"] += int(trm_combined_mask(g_kl, t_max, t_avg, gm).keep.sum())
        kept["comb_proxy"] += int(trm_combined_mask(g_k2, t_max, t_avg, gm, kl_avg=g_k3).keep.sum())
        kept["ser"] += int(ser_mask(g_lr, thr["ser"], gm).keep.sum())
        if ln_trm is not None:
            kept["ln_trm"] += int(ln_trm_mask(g_lr, ln_thr, tv_max, kl_max, gm).keep.sum())

    def rate(name: str) -> float:
        return kept[name] / N

    acceptance: dict[str, Any] = {
        "trm_max": {
            "threshold": thr["trm_max"],
            "exact_kl": rate("max_kl"),
            "proxy_k2": rate("max_k2"),
        },
        "trm_avg": {
            "threshold": thr["trm_avg"],
            "exact_kl": rate("avg_kl"),
            "proxy_k3": rate("avg_k3"),
        },
        "combined": {
            "threshold_max": thr["trm_max"],
            "threshold_avg": thr["trm_avg"],
            "exact_kl": rate("comb_kl"),
            "proxy_k2_k3": rate("comb_proxy"),
        },
        "ser": {"threshold": thr["ser"], "rate": rate("ser")},
    }
    if ln_trm is not None:
        acceptance["ln_trm"] = {
            "threshold": ln_thr,
            "eps": tv_max,
            "delta": kl_max,
            "weights": "measured tv_max / kl_max",
            "rate": rate("ln_trm"),
        }

    def interval(lo, hi):
        return None if math.isnan(lo) else [lo, hi]

    info: dict[str, Any] = dict(meta or {})
    info.update(
        {
            "n_sequences": N,
            "n_tokens": n_tok,
            "mean_length": float(L.mean()),
            "maxima": (
                f"kl_max and tv_max are maxima over the {n_tok} measured contexts "
                "(empirical: lower estimates of the maxima over all reachable contexts)"
            ),
            "argmax": {
                "kl_max": where(i_kl),
                "tv_max": where(i_tv),
            },
            "ci_method": "normal: mean +- 1.96 sd / sqrt(n_sequences) (tv_seq and "
            "per_position: see ci_method_tv_seq, ci_method_per_position)",
            "ci95": {
                "kl_seq": interval(kl_lo, kl_hi),
                "tv_seq": interval(tv_lo, tv_hi),
                "missing_mass": interval(mm_lo, mm_hi) if truncated else None,
            },
            "per_position_definition": (
                "mean over all n_sequences of TV(c_t); a response that ended before t "
                "contributes 0 (EOS is absorbing under both policies)"
            ),
            "per_position_ci95": [
                None if math.isnan(a) else [float(a), float(b)]
                for a, b in zip(dbar_lo, dbar_hi, strict=True)
            ],
            "ci_method_per_position": BOUNDED_CI_METHOD,
            "estimators": {
                "kl_seq": "mean over responses of sum_t exact KL(c_t) along the sampled path",
                "tv_seq": "mean over responses of (1 - prod_t rho_t)^+ (log space; exact "
                "identity, no full-support assumption, terms in [0, 1])",
            },
            "proxies": {
                "k1_seq": {"mean": k1s, "ci95": interval(k1lo, k1hi)},
                "k3_seq": {"mean": k3s, "ci95": interval(k3lo, k3hi)},
                "k2_max": float(k2tok.max()),
                "k3_max": float(k3tok.max()),
                "tv_token_proxy_mean": float(tv_proxy.sum() / n_tok),
                "abs_p_minus_q_max": float(absdiff.max()),
                "abs_p_minus_q_mean": float(absdiff.sum() / n_tok),
                "log_ppl_gap": ppl_gap,
                "tv_token_estimate_mean": tv_est_mean,
                "note": "sample-based detectors from the sampled token (the paper, Sec. 4-5; "
                "docs/measure.md), not bounds; tv_token_estimate_mean is the mean of "
                "(1 - rho_t)^+, an unbiased estimate of the mean TV(c_t)",
            },
            "acceptance": acceptance,
            "support_fixups": int(records.support_fixups),
        }
    )
    info["ci_method_tv_seq"] = tv_method
    if records.source == "intervals":
        _interval_meta(info, records, acceptance)
    status = {
        "kl_max": "empirical",
        "tv_max": "empirical",
        "kl_seq": "estimate",
        "tv_seq": "estimate",
        "per_position": "estimate",
    }
    kw: dict[str, Any] = {}
    if truncated:
        kw["missing_mass"] = mm_mean
        status["missing_mass"] = "estimate"
    if reward_range is not None:
        kw["reward_range"] = reward_range
    elif adv_range is not None:
        kw["adv_range"] = adv_range
    return Stats(
        T=T,
        kl_max=kl_max,
        tv_max=tv_max,
        kl_seq=kl_seq,
        tv_seq=tv_seq,
        per_position=np.clip(dbar, 0.0, 1.0),
        status=status,
        meta=info,
        **kw,
    )


def _interval_meta(info, records: Records, acceptance) -> None:
    """Say which interval ends the statistics rest on, and summarise the intervals."""
    n_tok = records.n_tokens
    kl_lo, kl_hi, tv_lo, tv_hi = records.kl_lo, records.kl_hi, records.tv_lo, records.tv_hi
    rep = records.reported_mass
    if kl_lo is None or kl_hi is None or tv_lo is None or tv_hi is None or rep is None:
        raise TrmboundsError("records from rollouts need kl_lo, kl_hi, tv_lo, tv_hi, reported_mass")
    width_kl = kl_hi - kl_lo
    width_tv = tv_hi - tv_lo
    info["interval_ends"] = {
        "kl_max": "upper: max over measured contexts of kl_hi (certified at each measured "
        "context; empirical with respect to all reachable contexts)",
        "tv_max": "upper: max over measured contexts of tv_hi (same)",
        "kl_seq": "upper: mean over responses of sum_t kl_hi (an estimate of an upper bound)",
        "per_position": "upper: mean over responses of tv_hi at t (an estimate of an upper bound)",
        "tv_seq": "none: the bounded estimator (1 - prod_t rho_t)^+ from the engine's and "
        "the trainer's log-probs of the sampled tokens (an estimate of the value)",
        "missing_mass": "upper: trainer mass outside the reported tokens plus on reported "
        "tokens of engine probability 0 (an estimate of an upper bound)",
    }
    info["intervals"] = {
        "kl_max_lower": float(kl_lo.max()),
        "tv_max_lower": float(tv_lo.max()),
        "kl_max_lower_note": "max over measured contexts of kl_lo / tv_lo: certified lower "
        "bounds of the true maxima",
        "kl_width_max": float(width_kl.max()),
        "kl_width_mean": float(width_kl.sum() / n_tok),
        "tv_width_max": float(width_tv.max()),
        "tv_width_mean": float(width_tv.sum() / n_tok),
        "reported_mass_min": float(rep.min()),
        "reported_mass_mean": float(rep.sum() / n_tok),
    }
    info["maxima"] = (
        f"kl_max and tv_max are maxima of the certified upper ends kl_hi / tv_hi over the "
        f"{n_tok} measured contexts (empirical with respect to all reachable contexts; "
        "not lower estimates of the true maxima: the certified lower bounds are "
        "intervals.kl_max_lower / tv_max_lower)"
    )
    info["estimators"]["kl_seq"] = "mean over responses of sum_t kl_hi(c_t) (upper ends)"
    info["per_position_definition"] = (
        "mean over all n_sequences of tv_hi(c_t) (upper ends); a response that ended "
        "before t contributes 0"
    )
    for k in ("trm_max", "trm_avg", "combined"):
        acceptance[k]["kl_hi"] = acceptance[k].pop("exact_kl")
    acceptance["note"] = "kl_hi: masks applied to the certified upper ends of the token KL"
