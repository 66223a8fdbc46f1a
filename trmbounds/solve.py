r"""Inverse questions about the unified bound: which TRM threshold, which length?

Two questions, each answered by root finding on a monotone function:

(a) :func:`max_kl_threshold` -- given a response length :math:`T` and an error
    budget :math:`\beta` (reward units), the largest TRM-Max threshold :math:`\delta`
    with :math:`B^*(\delta) \le \beta`; :func:`max_tv_threshold` answers the same
    question for a TV threshold :math:`\varepsilon` alone (the TV route).
(b) :func:`max_length` -- given :math:`\delta` and :math:`\beta`, the longest
    (integer) :math:`T` with :math:`B^*(T) \le \beta`.

The statistics the threshold does not fix are tied to it by stated assumptions
(:func:`threshold_bound`): :math:`\varepsilon = r\sqrt{\delta/2}` (:math:`r = 1` is
Pinsker's worst case), :math:`D_{KL}^{seq} = T\delta` (worst case) or
:math:`T\,\bar\delta` for a given mean per-token KL :math:`\bar\delta`, and
:math:`D_{TV}^{seq} = \min(1, \sqrt{D_{KL}^{seq}/2}, T\varepsilon)` (derived). Every
answer carries these assumptions in words.

Each answer ``x`` satisfies :math:`B^*(x) \le \beta < B^*(x(1 + 10^{-9}))` (for
:math:`T`: :math:`B^*(T) \le \beta < B^*(T+1)`), checked by substitution before it is
returned. ``scipy.optimize`` is imported only inside the solvers.

References
----------
Li, Liu, Xu, Tong, Li, Liu, Wang. *Trust Region Masking for Long-Horizon LLM
Reinforcement Learning*. arXiv:2512.23075 (ICML 2026), Sec. 5 (the unified bound) and
Sec. 6 (TRM-Max).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from . import bounds as B
from .errors import TrmboundsError
from .stats import UNIFIED_MEMBERS

__all__ = [
    "STATUSES",
    "KLThreshold",
    "TVThreshold",
    "MaxLength",
    "threshold_bound",
    "threshold_members",
    "tv_route_bound",
    "max_kl_threshold",
    "max_tv_threshold",
    "max_length",
    "assumptions",
]

#: ``ok``: a finite answer; ``none``: no value meets the budget; ``any``: every value
#: meets it (the bound saturates below the budget).
STATUSES = ("ok", "none", "any")

#: Relative width of the final bracket: the answer ``x`` has
#: ``B*(x) <= budget < B*(x * (1 + RTOL))``.
RTOL = 1e-9
#: Longest response length searched (float64 counts integers exactly up to 2^53).
T_LIMIT = 2**53


# ---------------------------------------------------------------- validation
def _positive(name: str, x, *, allow_none: bool = False) -> float | None:
    if x is None and allow_none:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise TrmboundsError(f"{name} must be a number, got {x!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise TrmboundsError(f"{name} must be a positive finite number, got {v:g}")
    return v


def _length(T) -> int:
    try:
        v = float(T)
    except (TypeError, ValueError):
        raise TrmboundsError(f"T must be an integer >= 1, got {T!r}") from None
    if not math.isfinite(v) or v != math.floor(v) or v < 1:
        raise TrmboundsError(f"T must be an integer >= 1, got {T!r}")
    if v > T_LIMIT:
        raise TrmboundsError(f"T must be at most 2^53, got {v:g}")
    return int(v)


_TINY = float(np.finfo(np.float64).tiny)  # the smallest positive normal float


def _ratio(tv_ratio) -> float:
    if tv_ratio is None:
        return 1.0
    r = _positive("tv_ratio", tv_ratio)
    if r < 1e-100:
        raise TrmboundsError(f"tv_ratio must be at least 1e-100, got {r:g}")
    if r > 1:
        raise TrmboundsError(
            f"tv_ratio must be in (0, 1], got {r:g}: Pinsker's inequality already gives "
            "epsilon <= sqrt(delta/2)"
        )
    return r


def _constants(constants: str) -> str:
    if constants not in B.CONSTANTS:
        raise TrmboundsError(f"unknown constants {constants!r}: choose 'paper' or 'sharp'")
    return constants


# ---------------------------------------------------------------- the tied bound
def _tied(T, kl_max, tv_ratio, kl_avg):
    """(eps, kl_seq, tv_seq) tied to (T, delta) by the solver's assumptions."""
    T = np.asarray(T, dtype=np.float64)
    d = np.asarray(kl_max, dtype=np.float64)
    eps = np.minimum(1.0, tv_ratio * np.sqrt(d / 2.0))
    kseq = T * d if kl_avg is None else T * kl_avg
    tseq = np.minimum(1.0, np.minimum(np.sqrt(kseq / 2.0), T * eps))
    return eps, kseq, tseq


def threshold_bound(T, kl_max, *, tv_ratio=None, kl_avg=None, adv_range=1.0, constants="paper"):
    r"""The unified bound :math:`B^*` as a function of a TRM-Max threshold :math:`\delta`.

    The other statistics are tied to :math:`(T, \delta)`:

    .. math::

        \varepsilon = \min(1, r\sqrt{\delta/2}),\qquad
        D_{KL}^{seq} = T\delta \;\;(\text{or } T\bar\delta),\qquad
        D_{TV}^{seq} = \min\!\left(1, \sqrt{D_{KL}^{seq}/2}, T\varepsilon\right),

    and :math:`B^* = \min\{\text{PM-KL}, \text{PM-TV}, \text{Mix-KL}, \text{Mix-TV},
    \text{Coupling}, \text{Adaptive}\}` (:func:`trmbounds.bounds.unified`). Every member
    is non-decreasing in :math:`\delta` and in :math:`T`, hence so is :math:`B^*`.

    Parameters
    ----------
    T : int or array_like
        Response length.
    kl_max : float or array_like
        :math:`\delta`, the TRM-Max threshold on the token-level KL(roll ‖ θ).
    tv_ratio : float in (0, 1], optional
        :math:`r`; default 1 (Pinsker's worst case :math:`\varepsilon = \sqrt{\delta/2}`).
    kl_avg : float, optional
        :math:`\bar\delta`, the mean per-token KL: :math:`D_{KL}^{seq} = T\bar\delta`
        instead of the worst case :math:`T\delta`. Meaningful only for
        :math:`\delta \ge \bar\delta`.
    adv_range : float, default 1
        Advantage range :math:`a`; the bound is multiplied by it.
    constants : {"paper", "sharp"}
        Leading constants (``docs/theory.md``).

    Returns
    -------
    float or ndarray
        :math:`B^*`, broadcast over ``T`` and ``kl_max``.

    Examples
    --------
    At :math:`T = 4096,\ \delta = 10^{-4}` the worst-case ties make PM-KL the tightest
    member (the paper's 35.0):

    >>> round(threshold_bound(4096, 1e-4), 4)
    34.9461
    """
    r = _ratio(tv_ratio)
    if kl_avg is not None:
        kl_avg = _positive("kl_avg", kl_avg)
    eps, kseq, tseq = _tied(T, kl_max, r, kl_avg)
    return B.unified(
        T, kl_max, eps, kseq, tseq, adv_range=adv_range, constants=_constants(constants)
    )


def threshold_members(
    T, kl_max, *, tv_ratio=None, kl_avg=None, adv_range=1.0, constants="paper"
) -> dict[str, float]:
    r"""Each member of :math:`B^*` at a threshold, under the ties of :func:`threshold_bound`.

    Returns
    -------
    dict
        ``{name: value}`` for the names of :data:`trmbounds.stats.UNIFIED_MEMBERS`.

    Examples
    --------
    >>> m = threshold_members(4096, 1e-4)
    >>> min(m, key=m.get), round(m["mix_kl"], 3)   # Mix-KL = 2 T^{3/2} delta here
    ('pm_kl', 52.429)
    """
    r = _ratio(tv_ratio)
    if kl_avg is not None:
        kl_avg = _positive("kl_avg", kl_avg)
    eps, kseq, tseq = _tied(T, kl_max, r, kl_avg)
    kw = dict(adv_range=adv_range, constants=_constants(constants))
    values = {
        "pm_kl": B.pm_kl(T, kl_max, **kw),
        "pm_tv": B.pm_tv(T, kl_max, eps, **kw),
        "mix_kl": B.mix_kl(T, kl_max, kseq, **kw),
        "mix_tv": B.mix_tv(T, eps, tseq, **kw),
        "coupling": B.coupling(T, eps, **kw),
        "adaptive": B.adaptive(T, kl_max, eps, **kw),
    }
    return {k: values[k] for k in UNIFIED_MEMBERS}


def tv_route_bound(T, tv_max, *, kl_avg=None, adv_range=1.0, constants="paper"):
    r"""The unified bound when only a TV threshold :math:`\varepsilon` is known (TV route).

    Without a KL threshold the members that remain are Coupling and Mixed-TV
    (Adaptive-TV with the uniform fill equals Coupling):

    .. math::

        B_{TV} = \min\{\text{Coupling}(\varepsilon),\;
                 \text{Mix-TV}(\varepsilon, D_{TV}^{seq})\},\qquad
        D_{TV}^{seq} = \min\!\left(1, T\varepsilon, \sqrt{T\bar\delta/2}\right)

    (the last term only when a mean per-token KL :math:`\bar\delta` is given).

    Examples
    --------
    For :math:`T\varepsilon \le 1` Coupling is :math:`2T(T-1)\varepsilon^2`:

    >>> round(tv_route_bound(100, 1e-3), 6)   # 2 * 100 * 99 * 1e-6
    0.0198
    """
    kw = dict(adv_range=adv_range, constants=_constants(constants))
    T = np.asarray(T, dtype=np.float64)
    e = np.asarray(tv_max, dtype=np.float64)
    tseq = np.minimum(1.0, T * e)
    if kl_avg is not None:
        tseq = np.minimum(tseq, np.sqrt(T * _positive("kl_avg", kl_avg) / 2.0))
    out = np.minimum(B.coupling(T, e, **kw), B.mix_tv(T, e, tseq, **kw))
    return float(out) if out.ndim == 0 else out


def assumptions(*, tv_ratio=None, kl_avg=None, route: str = "kl") -> dict[str, str]:
    r"""The assumptions a solver answer rests on, in words (one entry per statistic).

    Examples
    --------
    >>> assumptions()["kl_seq"]
    'D_KL^seq = T·δ (worst case)'
    """
    if route == "tv":
        seq = "min(1, T·ε)" if kl_avg is None else f"min(1, T·ε, √(T·{kl_avg:g}/2))"
        return {
            "tv_max": "ε is the TV threshold (no KL threshold: TV route alone)",
            "tv_seq": f"D_TV^seq = {seq} (derived)",
            "members": "min(Coupling, Mixed TV)",
        }
    r = _ratio(tv_ratio)
    return {
        "tv_max": "ε = √(δ/2) (Pinsker, worst case)"
        if r == 1.0
        else f"ε = {r:g}·√(δ/2) (given ratio)",
        "kl_seq": "D_KL^seq = T·δ (worst case)"
        if kl_avg is None
        else f"D_KL^seq = T·{kl_avg:g} (given mean per-token KL; needs δ ≥ {kl_avg:g})",
        "tv_seq": "D_TV^seq = min(1, √(D_KL^seq/2), T·ε) (derived)",
        "members": "min(PM-KL, PM-TV, Mixed KL, Mixed TV, Coupling, Adaptive)",
    }


# ---------------------------------------------------------------- results
@dataclass(frozen=True)
class TVThreshold:
    """Largest TV threshold ε with the TV-route bound within the budget."""

    T: int
    budget: float
    status: str
    tv_max: float | None
    bound: float | None
    assumptions: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class KLThreshold:
    """Largest TRM-Max threshold δ with ``B*(δ) <= budget`` at length ``T`` (question a).

    ``kl_max`` is ``None`` when ``status`` is ``"none"`` (no threshold meets the budget)
    or ``"any"`` (every threshold does); ``bound`` is ``B*`` at ``kl_max`` (at its
    smallest allowed value for ``"none"``, its supremum for ``"any"``).
    """

    T: int
    budget: float
    status: str
    kl_max: float | None
    bound: float | None
    tv_max: float | None
    kl_seq: float | None
    tv_seq: float | None
    tightest: str | None
    tv_route: TVThreshold
    constants: str
    adv_range: float
    assumptions: dict = field(default_factory=dict)
    message: str = ""

    @property
    def vacuous_budget(self) -> bool:
        """The budget is at least the advantage range: every bound below it is vacuous."""
        return self.budget >= self.adv_range

    def to_dict(self) -> dict:
        d = asdict(self)
        d["question"] = "max_kl"
        d["vacuous_budget"] = self.vacuous_budget
        return d


@dataclass(frozen=True)
class MaxLength:
    """Longest response length ``T`` with ``B*(T) <= budget`` at threshold δ (question b).

    ``bound`` is ``B*(T_max)`` and ``bound_next`` is ``B*(T_max + 1)`` (above the budget).
    """

    kl_max: float
    budget: float
    status: str
    T_max: int | None
    bound: float | None
    bound_next: float | None
    tightest: str | None
    constants: str
    adv_range: float
    assumptions: dict = field(default_factory=dict)
    message: str = ""

    @property
    def vacuous_budget(self) -> bool:
        """The budget is at least the advantage range: every bound below it is vacuous."""
        return self.budget >= self.adv_range

    def to_dict(self) -> dict:
        d = asdict(self)
        d["question"] = "max_length"
        d["vacuous_budget"] = self.vacuous_budget
        return d


# ---------------------------------------------------------------- root finding
def _largest_leq(f: Callable[[float], float], budget: float, lo: float, hi: float) -> float:
    """Largest x in [lo, hi] with f(x) <= budget, to relative RTOL.

    ``f`` is non-decreasing with ``f(lo) <= budget < f(hi)``. Brent's method on
    ``log x`` locates the crossing; a geometric bisection then keeps the bracket
    ``f(lo) <= budget < f(hi)`` (true by evaluation, not by assumption) until
    ``hi <= lo (1 + RTOL)``. Flat stretches or rounding ripples of ``f`` can only
    make the bisection run longer.
    """
    from scipy.optimize import brentq

    y = brentq(
        lambda t: f(math.exp(t)) - budget,
        math.log(lo),
        math.log(hi),
        xtol=1e-13,
        rtol=1e-13,
        maxiter=200,
    )
    x = math.exp(y)
    for probe in (x, x * (1.0 - RTOL / 4), x * (1.0 + RTOL / 4)):
        if lo < probe < hi:
            if f(probe) <= budget:
                lo = probe
            else:
                hi = probe
    while hi > lo * (1.0 + RTOL):
        mid = math.sqrt(lo * hi)
        if not lo < mid < hi:  # pragma: no cover - float spacing reached
            break
        if f(mid) <= budget:
            lo = mid
        else:
            hi = mid
    return lo


def _argmin(members: dict[str, float]) -> str:
    return min(members, key=lambda k: float(members[k]))


def max_kl_threshold(
    T, budget, *, tv_ratio=None, kl_avg=None, adv_range=1.0, constants="paper"
) -> KLThreshold:
    r"""The largest TRM-Max threshold :math:`\delta` with :math:`B^*(\delta) \le \beta`.

    .. math:: \delta_{max} = \max\{\delta \ge \bar\delta : B^*(T, \delta) \le \beta\}

    with the ties of :func:`threshold_bound`. :math:`B^*` is non-decreasing in
    :math:`\delta` and constant once :math:`\delta \ge \max(2, 2/r^2)` (every cap binds),
    so the answer is found by Brent's method on :math:`\log\delta` inside a bracket and
    verified by substitution: :math:`B^*(\delta_{max}) \le \beta <
    B^*(\delta_{max}(1 + 10^{-9}))`. The result also holds the largest TV threshold for
    the TV route alone (:func:`max_tv_threshold`).

    Parameters
    ----------
    T : int
        Response length, >= 1.
    budget : float
        :math:`\beta > 0`, the error budget in reward units.
    tv_ratio, kl_avg, adv_range, constants
        As in :func:`threshold_bound`.

    Returns
    -------
    KLThreshold
        ``status`` ``"ok"`` with ``kl_max``; ``"none"`` when even
        :math:`\delta = \bar\delta` exceeds the budget; ``"any"`` when the bound stays
        within the budget for every :math:`\delta`.

    Raises
    ------
    TrmboundsError
        For ``T < 1``, a non-positive budget, ``tv_ratio`` outside (0, 1], ...

    Examples
    --------
    In the small-divergence regime :math:`B^* = \text{PM-KL} = 2\delta\sum_{k<T}\sqrt k`,
    so :math:`\delta_{max} = \beta / (2 \sum_{k<T} \sqrt k)`:

    >>> r = max_kl_threshold(4096, 1.0)
    >>> r.status, f"{r.kl_max:.6e}", r.tightest
    ('ok', '2.861550e-06', 'pm_kl')
    >>> import math
    >>> f"{1.0 / (2 * math.fsum(math.sqrt(k) for k in range(4096))):.6e}"
    '2.861550e-06'
    """
    T = _length(T)
    beta = _positive("budget", budget)
    r = _ratio(tv_ratio)
    kbar = _positive("kl_avg", kl_avg, allow_none=True)
    a = _positive("adv_range", adv_range)
    constants = _constants(constants)
    kw = dict(tv_ratio=r, kl_avg=kbar, adv_range=a, constants=constants)

    def f(d: float) -> float:
        return float(threshold_bound(T, d, **kw))

    tv = max_tv_threshold(T, beta, kl_avg=kbar, adv_range=a, constants=constants)
    common = dict(
        T=T,
        budget=beta,
        tv_route=tv,
        constants=constants,
        adv_range=a,
        assumptions=assumptions(tv_ratio=r, kl_avg=kbar),
    )
    hi = 4.0 * max(2.0, 2.0 / (r * r))  # every cap binds beyond max(2, 2/r^2)
    if kbar is not None:
        hi = max(hi, 4.0 * kbar)
    sup = f(hi)
    if sup <= beta:
        return KLThreshold(
            status="any",
            kl_max=None,
            bound=sup,
            tv_max=None,
            kl_seq=None,
            tv_seq=None,
            tightest=None,
            message=(
                f"at T = {T} the surrogate is exact (B* = 0): every threshold meets the budget"
                if sup == 0
                else f"at T = {T} every threshold meets the budget: B* never exceeds {sup:.6g}"
            ),
            **common,
        )
    if kbar is not None:
        lo = kbar
        if f(lo) > beta:
            return KLThreshold(
                status="none",
                kl_max=None,
                bound=f(lo),
                tv_max=None,
                kl_seq=None,
                tv_seq=None,
                tightest=None,
                message=(
                    f"at T = {T} no threshold meets the budget: even δ = kl_avg = {kbar:g} gives "
                    f"B* = {f(lo):.6g} > {beta:g} (δ cannot be below the mean per-token KL)"
                ),
                **common,
            )
    else:
        lo = hi
        while f(lo) > beta:
            if lo == _TINY:  # pragma: no cover - B* -> 0 as delta -> 0
                raise TrmboundsError(f"no threshold found for budget {beta:g} at T = {T}")
            lo = max(lo * 1e-4, _TINY)
    d = _largest_leq(f, beta, lo, hi)
    if not (f(d) <= beta < f(d * (1.0 + 1e-6))):  # pragma: no cover - verification
        raise TrmboundsError(f"solver failed to verify delta = {d!r} at T = {T}")
    eps, kseq, tseq = _tied(T, d, r, kbar)
    members = threshold_members(T, d, **kw)
    return KLThreshold(
        status="ok",
        kl_max=d,
        bound=f(d),
        tv_max=float(eps),
        kl_seq=float(kseq),
        tv_seq=float(tseq),
        tightest=_argmin(members),
        **common,
    )


def max_tv_threshold(T, budget, *, kl_avg=None, adv_range=1.0, constants="paper") -> TVThreshold:
    r"""The largest TV threshold :math:`\varepsilon` for the TV route alone.

    .. math:: \varepsilon_{max} = \max\{\varepsilon : B_{TV}(T, \varepsilon) \le \beta\}

    with :math:`B_{TV}` of :func:`tv_route_bound` (non-decreasing in
    :math:`\varepsilon`, constant for :math:`\varepsilon \ge 1`).

    Examples
    --------
    With :math:`T\varepsilon \le 1` the TV route is Coupling,
    :math:`2T(T-1)\varepsilon^2`, so :math:`\varepsilon_{max} = \sqrt{\beta/(2T(T-1))}`:

    >>> r = max_tv_threshold(4096, 1.0)
    >>> f"{r.tv_max:.6e}", f"{(1.0 / (2 * 4096 * 4095)) ** 0.5:.6e}"
    ('1.726546e-04', '1.726546e-04')
    """
    T = _length(T)
    beta = _positive("budget", budget)
    kbar = _positive("kl_avg", kl_avg, allow_none=True)
    a = _positive("adv_range", adv_range)
    constants = _constants(constants)

    def f(e: float) -> float:
        return float(tv_route_bound(T, e, kl_avg=kbar, adv_range=a, constants=constants))

    info = assumptions(kl_avg=kbar, route="tv")
    hi = 2.0
    sup = f(hi)
    if sup <= beta:
        return TVThreshold(T, beta, "any", None, sup, info)
    lo = hi
    while f(lo) > beta:
        if lo == _TINY:  # pragma: no cover - B_TV -> 0 as eps -> 0
            raise TrmboundsError(f"no TV threshold found for budget {beta:g} at T = {T}")
        lo = max(lo * 1e-4, _TINY)
    e = _largest_leq(f, beta, lo, hi)
    return TVThreshold(T, beta, "ok", e, f(e), info)


def max_length(
    kl_max, budget, *, tv_ratio=None, kl_avg=None, adv_range=1.0, constants="paper"
) -> MaxLength:
    r"""The longest response length :math:`T` with :math:`B^*(T) \le \beta` (question b).

    .. math:: T_{max} = \max\{T \in \mathbb{N} : B^*(T, \delta) \le \beta\},
              \qquad B^*(T_{max}) \le \beta < B^*(T_{max} + 1)

    :math:`B^*` is non-decreasing in :math:`T` and :math:`B^*(1) = 0`. :math:`T` is an
    integer, so the answer is found exactly by doubling and then bisecting over the
    integers (a root of a continuous relaxation would only approximate it).

    Examples
    --------
    With :math:`\delta = 10^{-4}` and :math:`\beta = 1`, PM-KL
    :math:`= 2\delta\sum_{k<T}\sqrt k` is tightest; summing it directly:

    >>> r = max_length(1e-4, 1.0)
    >>> import math
    >>> pm = lambda T: 2e-4 * math.fsum(math.sqrt(k) for k in range(T))
    >>> r.T_max, pm(r.T_max) <= 1.0 < pm(r.T_max + 1)
    (383, True)
    """
    d = _positive("kl_max", kl_max)
    beta = _positive("budget", budget)
    r = _ratio(tv_ratio)
    kbar = _positive("kl_avg", kl_avg, allow_none=True)
    if kbar is not None and kbar > d:
        raise TrmboundsError(
            f"kl_avg = {kbar:g} exceeds kl_max = {d:g}: the mean per-token KL cannot exceed "
            "its maximum"
        )
    a = _positive("adv_range", adv_range)
    constants = _constants(constants)
    kw = dict(tv_ratio=r, kl_avg=kbar, adv_range=a, constants=constants)
    common = dict(
        kl_max=d,
        budget=beta,
        constants=constants,
        adv_range=a,
        assumptions=assumptions(tv_ratio=r, kl_avg=kbar),
    )

    def f(T: int) -> float:
        return float(threshold_bound(T, d, **kw))

    lo = 1  # B*(1) = 0 <= budget
    hi = 2
    while f(hi) <= beta:
        lo = hi
        if hi >= T_LIMIT:
            return MaxLength(
                status="any",
                T_max=None,
                bound=f(T_LIMIT),
                bound_next=None,
                tightest=None,
                message=f"every length up to 2^53 meets the budget at δ = {d:g}",
                **common,
            )
        hi = min(2 * hi, T_LIMIT)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if f(mid) <= beta:
            lo = mid
        else:
            hi = mid
    b, b_next = f(lo), f(lo + 1)
    if not (b <= beta < b_next):  # pragma: no cover - verification
        raise TrmboundsError(f"solver failed to verify T = {lo} at δ = {d:g}")
    members = threshold_members(lo, d, **kw)
    return MaxLength(
        status="ok",
        T_max=lo,
        bound=b,
        bound_next=b_next,
        tightest=_argmin(members),
        **common,
    )
