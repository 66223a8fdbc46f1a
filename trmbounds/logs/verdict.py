r"""The verdict stage: every input of ``check`` (and ``eval --stats``) ends here.

Readers only read: a per-step metric log (:mod:`.check`), a per-token dump
(:mod:`.tokens`) and a statistics file each turn what they read into per-step columns
-- the longest response seen, a logged cap, the divergence estimates, the certified
lower bounds, the detectors, the surrogate and its lower confidence bound -- and hand
them to :func:`judge`. This module owns, once:

* the horizon ``T`` and where it came from (:func:`horizon`);
* the estimate of :math:`\delta` when none is assumed, from every certified lower
  bound present (:func:`delta_estimate`);
* the call to :func:`trmbounds.stats.bound_columns` (the function ``trmbounds eval``
  uses), under the assumption and under the estimates;
* the state of every step (:func:`states`), with the guarantee rule of
  ``docs/logs.md``: *guaranteed* needs (a) :math:`B^*` on assumed or certified inputs
  at the cap horizon, (b) a **distribution-free** one-sided lower confidence bound on
  the **unmasked** surrogate :math:`L` above :math:`B^*`, (c) computed over
  independent units (prompt groups where responses share a prompt);
* the validity notes every output carries (:func:`common_notes`);
* statistics files, for ``check FILE`` and ``eval --stats FILE`` alike
  (:func:`stats_file_verdict`), so that both give the same :math:`B^*` by construction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import TrmboundsError
from .result import _TOL, STATES, T_SOURCES, Assumption, detector_flags, unified_columns  # noqa: F401

__all__ = [
    "LCB_KINDS",
    "horizon",
    "delta_estimate",
    "states",
    "judge",
    "common_notes",
    "StatsVerdict",
    "stats_file_verdict",
]

#: How a lower confidence bound on the surrogate was computed. Only ``bernstein``
#: (distribution-free, over the unmasked surrogate and independent units) can support
#: *guaranteed*; ``normal`` (a logged standard error) and ``masked`` (a surrogate from
#: which a mask removed generated tokens) reach *estimated-gain* at most.
LCB_KINDS = ("bernstein", "normal", "masked", "none")


def horizon(
    seen: np.ndarray, cap: np.ndarray | float, length: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """The horizon ``T`` of every step and where it comes from (an index into
    :data:`.result.T_SOURCES`).

    ``seen`` is the longest response observed at the step, ``cap`` a generation cap the
    input records (NaN: none), ``length`` the ``--length`` given (None: none). The rule
    (docs/logs.md, "The horizon T"): ``--length`` wins; else the recorded cap; else the
    longest response seen, an *empirical* horizon. A response longer than the cap shows
    the cap is wrong: ``T`` is then that length, empirical. Rounded up to an integer.

    Examples
    --------
    >>> T, src = horizon(np.array([10., 20., 5.]), np.array([np.nan, 16., 16.]), None)
    >>> T.tolist(), [T_SOURCES[int(i)] for i in src]
    ([10.0, 20.0, 16.0], ['empirical', 'empirical', 'logged cap'])
    >>> T, src = horizon(np.array([10., 20.]), np.nan, 16.0)
    >>> T.tolist(), [T_SOURCES[int(i)] for i in src]
    ([16.0, 20.0], ['assumed', 'empirical'])
    """
    seen = np.ceil(np.asarray(seen, dtype=np.float64))
    cap = np.ceil(np.broadcast_to(np.asarray(cap, dtype=np.float64), seen.shape))
    with np.errstate(invalid="ignore"):
        if length is not None:
            T = np.fmax(np.full(seen.shape, float(length)), seen)
            src = np.where(seen > length, 2.0, 0.0)
        else:
            T = np.where(np.isnan(cap), seen, np.fmax(cap, seen))
            src = np.where(~np.isnan(cap) & ~(seen > cap), 1.0, 2.0)
        T = np.where(T >= 1, T, np.nan)
    return T, src


def delta_estimate(
    a: Assumption,
    det: np.ndarray,
    eps_lb: np.ndarray | None = None,
    kl_lb: np.ndarray | None = None,
) -> np.ndarray:
    r"""The :math:`\delta` of the estimate-based bound, per step.

    The assumed ``--kl-max`` when given; NaN (the TV route alone) with only
    ``--tv-max``; with no assumption, the detector of :math:`\delta` (max k2, or the
    exact maximum), but never below what the certified lower bounds force:
    :math:`\delta \ge 2\varepsilon_{lb}^2` (Pinsker) and :math:`\delta \ge` a certified
    lower bound on :math:`\delta` itself (an exact maximum over logged contexts, a
    certified ``kl_lo``, a logged ``kl_max_seen``). An infinite value (a logged
    overflow) stays infinite: it is the strongest evidence there is.

    Examples
    --------
    >>> delta_estimate(Assumption(), np.array([1e-6]), np.array([np.nan]), np.array([1e-2]))
    array([0.01])
    """
    det = np.asarray(det, dtype=np.float64)
    if a.kl_max is not None:
        return np.full(det.shape, a.kl_max)
    if a.tv_max is not None:
        return np.full(det.shape, np.nan)
    d = det.copy()
    if eps_lb is not None:
        d = np.fmax(d, 2.0 * np.asarray(eps_lb, dtype=np.float64) ** 2)
    if kl_lb is not None:
        d = np.fmax(d, np.asarray(kl_lb, dtype=np.float64))
    return d


def states(
    T: np.ndarray,
    bound: np.ndarray,
    assumption: Assumption,
    eps_lb: np.ndarray,
    kl_lb: np.ndarray,
    surrogate: np.ndarray,
    surrogate_lcb: np.ndarray | None = None,
    sound: np.ndarray | bool = True,
    lcb_ok: np.ndarray | bool = True,
) -> np.ndarray:
    """The state of every step as an index into :data:`.result.STATES` (int8).

    ``bound`` is :math:`B^*` under the assumption; ``surrogate`` the estimate
    :math:`\\hat L` and ``surrogate_lcb`` its one-sided lower confidence bound (NaN:
    none); ``sound`` whether :math:`B^*` rests only on assumed or certified inputs (a
    horizon that is the generation cap, no estimated missing mass); ``lcb_ok`` whether
    that lower bound is distribution-free, on the unmasked surrogate, over independent
    units (else it reaches *estimated-gain* at most). NaN entries of the other arrays
    mean "not logged".

    Examples
    --------
    >>> a = Assumption(kl_max=1e-4)            # eps <= sqrt(1e-4/2) = 7.07e-3
    >>> s = states(np.full(6, 64.), np.array([0.5, 0.5, 2.0, 0.5, 0.5, 0.5]), a,
    ...            np.array([8e-3, 1e-3, np.nan, np.nan, np.nan, np.nan]), np.full(6, np.nan),
    ...            np.array([np.nan, np.nan, np.nan, 0.9, 0.9, 0.9]),
    ...            np.array([np.nan, np.nan, np.nan, 0.6, np.nan, 0.6]),
    ...            lcb_ok=np.array([True, True, True, True, True, False]))
    >>> [STATES[i] for i in s]
    ['refuted', 'non-vacuous', 'vacuous', 'guaranteed', 'estimated-gain', 'estimated-gain']
    """
    n = len(T)
    out = np.full(n, STATES.index("unknown"), dtype=np.int8)
    if not assumption.given:
        return out
    if surrogate_lcb is None:
        surrogate_lcb = np.full(n, np.nan)
    ok = ~np.isnan(T) & ~np.isnan(bound)
    e = assumption.eps_eff
    with np.errstate(invalid="ignore"):
        refuted = eps_lb > e * (1 + _TOL)
        if assumption.kl_max is not None:
            refuted |= kl_lb > assumption.kl_max * (1 + _TOL)
        vac = bound >= assumption.adv_range
        est = (surrogate > bound) | (surrogate_lcb > bound)
        guar = (
            (surrogate_lcb > bound) & np.asarray(sound, dtype=bool) & np.asarray(lcb_ok, dtype=bool)
        )
    out[ok] = STATES.index("non-vacuous")
    out[ok & est] = STATES.index("estimated-gain")
    out[ok & guar] = STATES.index("guaranteed")
    out[ok & vac] = STATES.index("vacuous")
    out[refuted] = STATES.index("refuted")
    return out


def judge(
    c: dict[str, np.ndarray],
    a: Assumption,
    *,
    per_position: list[np.ndarray] | None = None,
    lcb_ok: np.ndarray | bool = False,
    sound: np.ndarray | bool = True,
) -> None:
    r"""B* under the assumption and under the estimates, the state and the flag of every
    step, into ``c``.

    ``c`` holds per-step columns (NaN: not known): ``T`` and ``T_source`` (from
    :func:`horizon`), ``kl_seq``, ``tv_seq`` (estimates), ``tv_lower_bound``,
    ``kl_lower_bound`` (certified lower bounds on :math:`\varepsilon`, :math:`\delta`),
    ``det`` (a detector of :math:`\delta`; +inf where a logged value overflowed),
    ``surrogate`` and ``surrogate_lcb``. ``per_position``: one :math:`\bar D_t` estimate
    per step (positions beyond it are filled with the bound that holds there).
    ``lcb_ok``: whether ``surrogate_lcb`` may support *guaranteed* (see :func:`states`);
    ``sound``: whatever else :math:`B^*` rests on besides the horizon (e.g. an estimated
    missing mass). Adds ``bound``, ``bound_est``, ``sound``, ``state``, ``flag``.
    """
    T = c["T"]
    m = len(T)
    nan = np.full(m, np.nan)
    g = lambda k: c.get(k, nan)  # noqa: E731
    c["bound"] = (
        unified_columns(T, a.kl_max, a.tv_max, assumption=a) if a.given else np.full(m, np.nan)
    )
    d_est = delta_estimate(a, g("det"), g("tv_lower_bound"), g("kl_lower_bound"))
    with np.errstate(invalid="ignore"):
        kseq = g("kl_seq")
        kseq = np.where((kseq < 0) | np.isinf(kseq), np.nan, kseq)  # unknown: T delta
    c["bound_est"] = unified_columns(T, d_est, a.tv_max, kseq, g("tv_seq"), per_position,
                                     assumption=a)  # fmt: skip
    c["sound"] = (c["T_source"] < 2) & np.asarray(sound, dtype=bool)
    c["state"] = states(T, c["bound"], a, g("tv_lower_bound"), g("kl_lower_bound"),
                        g("surrogate"), g("surrogate_lcb"), c["sound"], lcb_ok)  # fmt: skip
    c["flag"] = detector_flags(g("det"), a)


# ------------------------------------------------------------------------ notes
def horizon_note(T_source: np.ndarray) -> str | None:
    """Tell the user when ``T`` is the longest response seen, not the generation cap."""
    if np.any(np.asarray(T_source) == "empirical"):
        return (
            "horizon: T is the longest response in the log (an empirical horizon): the bounds "
            "need T = the longest response the policy CAN produce; B* holds only if no longer "
            "response is possible, and 'guaranteed' is not given — pass --length "
            "MAX_NEW_TOKENS (the generation cap)"
        )
    return None


def support_note(a: Assumption, mm_status: str | None = None, m: float | None = None) -> str:
    """The full-support condition, stated in every check output."""
    m = a.missing_mass if m is None else m
    if m is not None and m > 0:
        st = mm_status or "assumed"
        return (
            f"support: the rollouts do not have full support (missing mass m, {st}); the "
            "PDI-family bounds include + max|R|·m and the Adaptive bound is dropped "
            "(docs/theory.md §6)"
            + ("; an estimated m makes the bound an estimate" if st == "estimate" else "")
        )
    return (
        "support: B* assumes full support, π_roll(v|c) > 0 wherever π_θ(v|c) > 0; rollouts "
        "sampled with top-k/top-p truncation break it: pass --missing-mass M (the expected "
        "mass π_θ puts outside the rollout support, summed over positions)"
    )


def common_notes(
    a: Assumption,
    T_src: np.ndarray | None,
    n: int,
    mm_status: str | None = None,
    m: float | None = None,
    *,
    stats_file: bool = False,
    proxy: str = "logged proxies",
) -> list[str]:
    """Notes every check output carries: horizon, support, assumption, reachability.

    ``stats_file``: the input is a statistics file (``trmbounds measure``), whose values
    are full-vocabulary divergences or certified interval ends, not logged proxies over
    sampled tokens; the notes about logged proxies are left out.
    """
    notes = []
    if n and T_src is not None:
        h = horizon_note(T_src)
        if h:
            notes.append(h)
    notes.append(support_note(a, mm_status, m))
    if not a.given:
        notes.append(
            "no --kl-max/--tv-max: nothing is guaranteed (state 'unknown')"
            if stats_file
            else "no --kl-max/--tv-max: nothing is guaranteed; 'unified' is an ESTIMATE "
            f"from {proxy} (state 'unknown')"
        )
    notes.append(
        "the guarantee needs delta/eps to hold over ALL reachable contexts (docs/theory.md)"
        + ("" if stats_file else "; a logged maximum is over sampled tokens only")
    )
    return notes


# ------------------------------------------------------------------- statistics files
@dataclass
class StatsVerdict:
    """A statistics file judged at its horizon: what ``check FILE`` and ``eval --stats
    FILE`` both show."""

    stats: Any  # trmbounds.stats.Stats, at the horizon
    result: Any  # trmbounds.stats.Result of the estimate (eval's table)
    T: int
    T_source: str
    bound: float  # B* under the assumption (NaN without one)
    assumption: Assumption
    kl_lb: float
    tv_lb: float
    lb_source: dict[str, str]
    mm: float | None
    mm_status: str | None
    notes: list[str] = field(default_factory=list)
    horizon_note: str | None = None


def stats_at_horizon(s: Any, length: float | None) -> tuple[Any, str, str | None]:
    """A statistics file's horizon: ``--length`` (``eval --T``) if given, else the
    generation cap the file records (``meta.sampling.max_new_tokens``), else its ``T``
    -- assumed when every statistic is assumed or certified, empirical (the longest
    measured response) otherwise. Never below the file's ``T``: longer responses were
    measured. Returns the statistics at that horizon, its source and a note."""
    from ..stats import stats_cap

    measured = any(v not in ("assumed", "certified") for v in s.status.values())
    cap = stats_cap(s)
    note = None
    if length is not None and not measured:
        # every statistic assumed or certified: the file's T is a setting, not a measured
        # length, and the one given replaces it
        return s.replace(T=int(length)), "assumed", None
    if length is not None:
        T = max(int(length), s.T)
        src = "assumed" if length >= s.T else "empirical"
        if length < s.T:
            note = (
                f"horizon T = {s.T:,}: the file's longest measured response; the given "
                f"{int(length):,} is shorter, so it cannot be the generation cap"
            )
    elif cap is not None:
        T, src = max(cap, s.T), "logged cap"
        if cap > s.T:
            note = (
                f"horizon T = {cap:,}: the generation cap the statistics file records "
                f"(meta.sampling.max_new_tokens); its longest measured response is {s.T:,}"
            )
    else:
        T, src = s.T, "empirical" if measured else "assumed"
    return s.at_horizon(T), src, note


def stats_file_verdict(s: Any, a: Assumption, length: float | None) -> StatsVerdict:
    """Judge a statistics file (``trmbounds measure``, docs/stats-file.md).

    Maxima with status ``empirical`` (exact divergences at measured contexts) or
    ``lower_bound`` are lower bounds on the true maxima: they refute an assumed threshold
    below them. A ``certified`` maximum is an upper bound (it holds for all reachable
    contexts): it never refutes, and without ``--kl-max``/``--tv-max`` it is the
    assumption. The estimate is :func:`trmbounds.stats.evaluate` of the file at the
    horizon -- exactly ``eval --stats`` -- with the assumed maxima in place of the file's
    where given; ``bound`` is :math:`B^*` under the assumption alone.
    """
    from ..stats import Stats, evaluate

    st = s.status
    if a.reward_range is None and a.adv_range == 1.0 and (s.reward_range or s.adv_range != 1.0):
        a = Assumption(a.kl_max, a.tv_max, s.adv_range, a.constants, s.reward_range,
                       a.missing_mass)  # fmt: skip
    mm, mm_status = a.missing_mass, "assumed" if a.missing_mass is not None else None
    if mm is None and s.missing_mass is not None:
        mm, mm_status = s.missing_mass, st.get("missing_mass", "assumed")
    notes: list[str] = []
    s_T, src, hnote = stats_at_horizon(s, length)
    T = s_T.T
    lb_ok = ("empirical", "lower_bound")
    kl_lb = s.kl_max if s.kl_max is not None and st.get("kl_max") in lb_ok else math.nan
    tv_lb = s.tv_max if s.tv_max is not None and st.get("tv_max") in lb_ok else math.nan
    lb_src = {k: f"{k} ({st.get(k)})" for k in ("kl_max", "tv_max")}
    meta = s.meta if isinstance(s.meta, Mapping) else {}
    ends = meta.get("interval_ends")
    if isinstance(ends, Mapping) and any(str(ends.get(k, "")).startswith("upper") for k in lb_src):
        # measure --rollouts: kl_max / tv_max are maxima of the UPPER ends of certified
        # intervals, not exact values: only the lower ends may refute.
        iv_raw = meta.get("intervals")
        iv: Mapping[str, Any] = iv_raw if isinstance(iv_raw, Mapping) else {}
        kl_lb, tv_lb = (
            float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan
            for v in (iv.get("kl_max_lower"), iv.get("tv_max_lower"))
        )
        lb_src = {k: f"meta.intervals.{k}_lower (certified lower ends)" for k in lb_src}
        notes.append(
            "the file's kl_max / tv_max are maxima of certified UPPER ends (engine top-k "
            "log-probs): they do not refute; the certified lower ends "
            "(meta.intervals.*_max_lower) do"
        )
    if not a.given and all(
        st.get(k) in ("assumed", "certified") for k in ("kl_max", "tv_max") if k in st
    ):
        a = Assumption(s.kl_max, s.tv_max, a.adv_range, a.constants, a.reward_range,
                       a.missing_mass)  # fmt: skip
        notes.append("the file's maxima are assumed/certified: they are the assumption")
    for k, mine in (("kl_max", a.kl_max), ("tv_max", a.tv_max)):
        v = getattr(s, k)
        if st.get(k) == "certified" and v is not None and mine is not None and v > mine:
            notes.append(
                f"the file's certified {k} = {v:g} exceeds the assumed {mine:g}: a weaker "
                "certificate, it neither confirms nor refutes the assumption"
            )
    base: dict[str, Any] = dict(T=T, adv_range=a.adv_range, missing_mass=mm)
    if a.reward_range is not None:
        base["reward_range"] = a.reward_range  # where the rewards lie matters without full support
    mm_st = {"missing_mass": mm_status or "assumed"} if mm is not None else {}
    bound = math.nan
    if a.given:
        bound = evaluate(
            Stats(kl_max=a.kl_max, tv_max=a.tv_max, status=mm_st, **base), constants=a.constants
        ).unified
    kl_e = a.kl_max if a.kl_max is not None else (None if a.tv_max is not None else s.kl_max)
    tv_e = a.tv_max if a.tv_max is not None else (None if a.kl_max is not None else s.tv_max)
    if kl_e is None and tv_e is None:
        raise TrmboundsError("the statistics file has neither kl_max nor tv_max")
    est_status = {k: ("assumed" if getattr(a, k) is not None else st.get(k, "estimate"))
                  for k, v in (("kl_max", kl_e), ("tv_max", tv_e)) if v is not None}  # fmt: skip
    for k in ("kl_seq", "tv_seq", "per_position"):
        if getattr(s, k) is not None:
            est_status[k] = st.get(k, "estimate")
    s_est = Stats(kl_max=kl_e, tv_max=tv_e, kl_seq=s.kl_seq, tv_seq=s.tv_seq,
                  per_position=s.per_position, status={**est_status, **mm_st},
                  meta=s.meta, **base)  # fmt: skip
    r_est = evaluate(s_est, constants=a.constants)
    return StatsVerdict(s_est, r_est, T, src, bound, a, kl_lb, tv_lb, lb_src, mm, mm_status,
                        notes, hnote)  # fmt: skip
