r"""The verdict of a check: the assumption, the per-step result, and the rule of every state.

Shared by :mod:`.check` (per-step metric logs, statistics files) and :mod:`.tokens`
(per-token dumps); the verdict itself -- horizon, bound, state -- is made once, in
:mod:`.verdict`, with :func:`trmbounds.stats.bound_columns`, the function ``trmbounds
eval`` uses.

The states, in order of precedence (``docs/logs.md`` states each rule):

``refuted``
    A certified lower bound (``max |p_theta(y) - p_roll(y)|`` over sampled tokens, or an
    exact divergence at a logged context) exceeds the assumed threshold. The assumption
    is false at this step.
``vacuous``
    :math:`B^* \ge a` under the assumption: nothing can be guaranteed. (Bounds grow
    with ``T``, so this holds at any horizon at least the one used.)
``guaranteed``
    (a) :math:`B^*` rests only on assumed or certified inputs (the user's
    ``--kl-max``/``--tv-max``, a horizon that is the generation cap, a known or assumed
    missing mass), (b) a **distribution-free** one-sided lower confidence bound (level
    ``confidence``) on the **unmasked** surrogate :math:`L` exceeds :math:`B^*`, (c)
    computed over independent units (prompt groups where given). Only a per-token dump
    with a reward column gives such a bound (empirical Bernstein, :mod:`.tokens`); a
    metric log's ``L - z se`` is a normal approximation and never supports it.
``estimated-gain``
    The estimated surrogate :math:`\hat L` (or an approximate lower bound on it)
    exceeds :math:`B^*`, but not as above: a logged point estimate, with or without a
    standard error; a masked surrogate; a lower confidence bound that does not clear
    :math:`B^*`; or :math:`B^*` on an empirical horizon or an estimated missing mass.
    An estimate, not a guarantee.
``non-vacuous``
    :math:`B^* < a` under the assumption, and no surrogate estimate above it.
``unknown``
    No assumption was given (the estimate-based bound is only an estimate), or the
    step lacks ``T``.

Independently of the state, a step is **flagged** when a sampled-token detector of
:math:`\delta` (max k2, max k3, or :math:`\tfrac12\max|\Delta\log p|^2`) exceeds the
assumed :math:`\delta`: a detector is not a bound, so it cannot refute, but it says
the assumption is doubtful there.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import bounds as B
from ..errors import StatsError, TrmboundsError
from ..stats import bound_columns, check_divergence, check_maxima, check_reward_range
from .readers import BadRecords

__all__ = [
    "STATES",
    "ACCEPT_TARGET",
    "Z_ONE_SIDED",
    "Assumption",
    "Stat",
    "CheckResult",
    "unified_columns",
    "length_value",
]

#: The states of the guarantee at a step, in order of precedence.
STATES = ("refuted", "vacuous", "guaranteed", "estimated-gain", "non-vacuous", "unknown")
#: The paper's recommendation: keep the acceptance rate of the mask above 70 %.
ACCEPT_TARGET = 0.7
#: z of a one-sided 95 % lower confidence bound.
Z_ONE_SIDED = 1.6448536269514722
_TOL = 1e-9

#: What the headline bound of a step rests on (weakest first).
BASES = ("estimate", "empirical-horizon", "assumed")


@dataclass(frozen=True)
class Assumption:
    """The user's trust-region assumption (e.g. the TRM thresholds) and bound settings.

    ``reward_range`` (lo, hi) sets ``adv_range = hi - lo`` and keeps where the rewards
    lie, which matters without full support; ``missing_mass`` is an assumed
    :math:`m` (mass :math:`\\pi_\\theta` puts outside :math:`\\pi_{roll}`'s support,
    summed over positions: top-k/top-p rollouts).
    """

    kl_max: float | None = None
    tv_max: float | None = None
    adv_range: float = 1.0
    constants: str = "paper"
    reward_range: tuple[float, float] | None = None
    missing_mass: float | None = None
    #: The level of the one-sided lower confidence bound on the surrogate, per step.
    confidence: float = 0.95

    def __post_init__(self) -> None:
        # the same checks, and the same error class, as trmbounds.stats.Stats
        for k in ("kl_max", "tv_max", "missing_mass"):
            v = getattr(self, k)
            if v is not None:
                object.__setattr__(self, k, check_divergence(k, v))
        check_maxima(self.kl_max, self.tv_max)
        a, rr = check_reward_range(self.adv_range, self.reward_range)
        object.__setattr__(self, "adv_range", a)
        object.__setattr__(self, "reward_range", rr)
        c = self.confidence
        if isinstance(c, bool) or not (isinstance(c, (int, float)) and 0.5 <= c < 1):
            raise StatsError(f"confidence must be in [0.5, 1), got {c!r}")
        B._lead(self.constants)

    @property
    def z(self) -> float:
        """z of the one-sided normal lower bound at :attr:`confidence`."""
        from statistics import NormalDist

        return NormalDist().inv_cdf(self.confidence)

    @property
    def given(self) -> bool:
        return self.kl_max is not None or self.tv_max is not None

    @property
    def eps_eff(self) -> float:
        """The TV threshold the assumption implies: min(eps, sqrt(delta/2)) (Pinsker)."""
        e = math.inf if self.tv_max is None else self.tv_max
        if self.kl_max is not None:
            e = min(e, math.sqrt(self.kl_max / 2))
        return e

    def bound_kw(self) -> dict[str, Any]:
        """Keyword arguments of :func:`trmbounds.stats.bound_columns` for this setting."""
        return dict(
            adv_range=self.adv_range,
            reward_range=self.reward_range,
            missing_mass=self.missing_mass,
            constants=self.constants,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "kl_max": self.kl_max,
            "tv_max": self.tv_max,
            "adv_range": self.adv_range,
            "reward_range": None if self.reward_range is None else list(self.reward_range),
            "missing_mass": self.missing_mass,
            "constants": self.constants,
            "confidence": self.confidence,
        }


def unified_columns(
    T,
    kl_max=None,
    tv_max=None,
    kl_seq=None,
    tv_seq=None,
    per_position=None,
    *,
    assumption: Assumption | None = None,
    missing_mass=None,
) -> np.ndarray:
    r"""The unified bound :math:`B^*` per step, where NaN means "not known".

    :func:`trmbounds.stats.bound_columns` (the function ``trmbounds eval`` uses) with the
    reward range, missing mass and constants of ``assumption``; a ``missing_mass``
    argument (e.g. from a statistics file) overrides the assumption's.

    Examples
    --------
    >>> b = unified_columns([4096, 4096, 4096], [1e-4, np.nan, np.nan], [5e-3, 5e-3, np.nan],
    ...                     [0.01, np.nan, np.nan], [0.05, 0.05, np.nan])
    >>> [round(float(x), 3) for x in b[:2]], bool(np.isnan(b[2]))   # column B: 4.096
    ([4.096, 4.096], True)
    """
    a = assumption or Assumption()
    kw = a.bound_kw()
    if missing_mass is not None:
        kw["missing_mass"] = missing_mass
    return bound_columns(T, kl_max, tv_max, kl_seq, tv_seq, per_position, full=False, **kw)[0][
        "unified"
    ]


# --------------------------------------------------------------------- the result
@dataclass
class Stat:
    """One per-step statistic: values, status, where it came from, optional 95 % CI."""

    values: np.ndarray
    status: str
    source: str
    ci: tuple[np.ndarray, np.ndarray] | None = None
    #: Per step, the effective number of terms of the estimate where it is below
    #: :data:`HEAVY_TAIL_ESS` (NaN elsewhere): a heavy tail, its CI unreliable.
    heavy_tail: np.ndarray | None = None


#: An estimate whose per-sequence terms effectively number fewer than this
#: (:func:`effective_terms`) is flagged "heavy-tailed": its normal interval can miss the
#: truth far more often than 5 % (a rare token carrying most of E[k3] is sampled once or
#: twice, or not at all).
HEAVY_TAIL_ESS = 20.0


def effective_terms(terms: np.ndarray) -> float:
    r"""Kish's effective number of terms, :math:`(\sum_i |x_i|)^2 / \sum_i x_i^2`: ``n``
    when all terms are equal, about ``k`` when ``k`` equal terms carry the sum and the
    rest are negligible. Infinite terms are left out; no mass: NaN.

    Examples
    --------
    >>> effective_terms(np.ones(100))
    100.0
    >>> round(effective_terms(np.array([1e-3] * 999 + [94.4])), 3)   # one rare token
    1.021
    """
    a = np.abs(np.asarray(terms, dtype=np.float64))
    a = a[np.isfinite(a)]
    s2 = float(np.dot(a, a))
    if not len(a) or s2 <= 0:
        return math.nan
    return float(a.sum()) ** 2 / s2


@dataclass
class CheckResult:
    """Per-step results of a check (columnar), and the summary.

    Attributes
    ----------
    kind : str
        ``"metrics"``, ``"tokens"`` or ``"stats"``.
    step, line, T, bound, bound_est, state : ndarray
        Per step: the step number, where it is in the file, the horizon ``T``,
        :math:`B^*` under the assumption (NaN without one), :math:`B^*` under the
        estimates, and the state (index into :data:`STATES`).
    T_source : ndarray of str
        Per step, where ``T`` comes from: ``assumed`` (``--length``), ``logged cap``
        (the framework's generation cap) or ``empirical`` (the longest response seen:
        the bound holds only if no longer response is possible).
    sound : ndarray of bool
        Per step, whether :math:`B^*` rests only on assumed or certified inputs.
    flag : ndarray of float
        Per step, detector / :math:`\\delta` where a detector of :math:`\\delta` exceeds
        the assumed :math:`\\delta` (NaN: not flagged).
    stats : dict of str to Stat
        Per-step statistics with their statuses.
    notes : list of str
        What the user must know about these numbers (validity, mappings, data).
    """

    path: str
    kind: str
    preset: str
    assumption: Assumption
    step: np.ndarray
    line: np.ndarray
    T: np.ndarray
    bound: np.ndarray
    bound_est: np.ndarray
    state: np.ndarray
    stats: dict[str, Stat]
    columns: dict[str, str]
    bad: BadRecords
    invalid: dict[str, list] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    rows_without_metrics: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    # None: filled in __post_init__ (empirical horizons, sound where not empirical, no flag)
    T_source: np.ndarray = None  # type: ignore[assignment]
    sound: np.ndarray = None  # type: ignore[assignment]
    flag: np.ndarray = None  # type: ignore[assignment]
    detector: str = ""
    #: What a 'guaranteed' here rests on besides the assumption, said on the verdict line
    #: (e.g. "independent sequences": a dump without a prompt-group column).
    assumes: list[str] = field(default_factory=list)
    #: Why a step whose surrogate clears B* is not 'guaranteed' here (e.g. a normal
    #: approximation, a masked surrogate), said on the verdict line.
    not_guaranteed: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.step)
        if self.T_source is None:
            self.T_source = np.full(n, "empirical", dtype=object)
        if self.sound is None:
            self.sound = self.T_source != "empirical"
        if self.flag is None:
            self.flag = np.full(n, np.nan)

    def __len__(self) -> int:
        return len(self.step)

    def basis_of(self, i: int) -> str:
        """What the headline bound of step ``i`` rests on (:data:`BASES`)."""
        if not self.assumption.given:
            return "estimate"
        if bool(self.sound[i]):
            return "assumed"
        if self.T_source[i] == "empirical" and self._mm_sound:
            return "empirical-horizon"
        return "estimate"

    @property
    def _mm_sound(self) -> bool:
        return self.extra.get("missing_mass_status") in (None, "assumed", "certified")

    @property
    def basis(self) -> str:
        """The weakest basis over the steps (see :meth:`basis_of`)."""
        if not len(self):
            return "assumed" if self.assumption.given else "estimate"
        return min((self.basis_of(i) for i in range(len(self))), key=BASES.index)

    @property
    def unified(self) -> np.ndarray:
        """The headline bound per step: under the assumption if given, else the estimate."""
        return self.bound if self.assumption.given else self.bound_est

    @property
    def acceptance(self) -> np.ndarray | None:
        s = self.stats.get("acceptance")
        return None if s is None else s.values

    def counts(self) -> dict[str, int]:
        c = np.bincount(self.state, minlength=len(STATES))
        return {s: int(c[i]) for i, s in enumerate(STATES)}

    @property
    def n_flagged(self) -> int:
        return int(np.sum(~np.isnan(self.flag)))

    def worst(self, k: int = 5) -> list[int]:
        """Indices of the worst steps: refuted first, then flagged (by how far the detector
        exceeds the assumed delta), then the largest bound."""
        if not len(self):
            return []
        b = np.where(np.isnan(self.unified), -np.inf, self.unified)
        f = np.where(np.isnan(self.flag), 0.0, self.flag)
        ref = (self.state == 0).astype(float)
        order = np.lexsort((-b, -f, -ref))
        return [int(i) for i in order[:k]]

    def flagged_by(self, i: int) -> str:
        """Why step ``i`` is flagged: the detector and the assumed delta."""
        r = float(self.flag[i])
        if math.isnan(r):
            return ""
        d = self.assumption.kl_max
        if not d:
            return f"{self.detector} > 0 = the assumed δ"
        return f"{self.detector} = {r * d:.4g} is {r:.3g} × the assumed δ = {d:g}"

    def record(self, i: int) -> dict[str, Any]:
        """Step ``i`` as a JSON-ready dict."""
        a = self.assumption
        st = STATES[int(self.state[i])]
        u = self.unified[i]
        rec: dict[str, Any] = {
            "step": _int_or_float(self.step[i]),
            "T": None if np.isnan(self.T[i]) else int(self.T[i]),
            "T_source": str(self.T_source[i]),
            "unified": _f(u),
            "basis": self.basis_of(i),
            "unified_estimate": _f(self.bound_est[i]),
            "vacuous": None if np.isnan(u) else bool(u >= a.adv_range),
            "status": st,
            "stats": {},
        }
        if a.kl_max is not None:
            rec["stats"]["kl_max"] = {"value": a.kl_max, "status": "assumed"}
        if a.tv_max is not None:
            rec["stats"]["tv_max"] = {"value": a.tv_max, "status": "assumed"}
        for name, s in self.stats.items():
            v = s.values[i]
            if isinstance(v, np.ndarray):
                val: Any = [float(x) for x in v]
            else:
                if np.isnan(v):
                    continue
                val = float(v)
            d = {"value": val, "status": s.status, "source": s.source}
            if s.heavy_tail is not None and not np.isnan(s.heavy_tail[i]):
                d["heavy_tail"] = {
                    "effective_terms": float(s.heavy_tail[i]),
                    "warning": f"heavy-tailed: about {s.heavy_tail[i]:.3g} of its terms "
                    "carry the estimate; its confidence interval is unreliable",
                }
            if np.any(np.isinf(v)):
                d["infinite"] = True  # beyond float64 (JSON has no inf: the value shows as null)
            if s.ci is not None:
                lo, hi = s.ci[0][i], s.ci[1][i]
                d["ci95"] = (
                    [[float(x) for x in lo], [float(x) for x in hi]]
                    if isinstance(lo, np.ndarray)
                    else [float(lo), float(hi)]
                )
            rec["stats"][name] = d
        acc = self.acceptance
        if acc is not None and not np.isnan(acc[i]):
            rec["acceptance_ok"] = bool(acc[i] >= ACCEPT_TARGET)
        if st == "refuted":
            rec["refuted_by"] = self.refuted_by(i)
        if not np.isnan(self.flag[i]):
            rec["flagged"] = self.flagged_by(i)
        return rec

    def refuted_by(self, i: int) -> str:
        """Why step ``i`` is refuted: the certified lower bound that exceeds the assumption."""
        a = self.assumption
        out = []
        tv = self.stats.get("tv_lower_bound")
        if tv is not None and tv.values[i] > a.eps_eff * (1 + _TOL):
            what = "eps" if a.tv_max is not None and a.tv_max <= a.eps_eff else "sqrt(delta/2)"
            out.append(f"tv_lower_bound {tv.values[i]:.4g} > {what} = {a.eps_eff:.4g}")
        kl = self.stats.get("kl_lower_bound")
        if kl is not None and a.kl_max is not None and kl.values[i] > a.kl_max * (1 + _TOL):
            out.append(f"kl_lower_bound {kl.values[i]:.4g} > delta = {a.kl_max:.4g}")
        return "; ".join(out)

    def summary(self) -> dict[str, Any]:
        acc = self.acceptance
        src = sorted({str(s) for s in self.T_source})
        out: dict[str, Any] = {
            "file": self.path,
            "kind": self.kind,
            "preset": self.preset,
            "steps": len(self),
            "states": self.counts(),
            "flagged": self.n_flagged,
            "basis": self.basis,
            "horizon": ", ".join(src),
            "assumption": self.assumption.to_dict(),
            "columns": dict(self.columns),
            "statuses": {k: s.status for k, s in self.stats.items()},
            "worst_steps": [_int_or_float(self.step[i]) for i in self.worst()],
            "bad_records": {"count": self.bad.count, "first": list(self.bad.messages)},
            "invalid_values": {
                k: {"count": v[0], "first_step": v[1]} for k, v in self.invalid.items()
            },
            "rows_without_metrics": self.rows_without_metrics,
            "assumes": list(self.assumes),
            "not_guaranteed": list(self.not_guaranteed),
            "notes": list(self.notes),
        }
        if len(self):
            u = self.unified
            if np.any(~np.isnan(u)):
                out["unified_max"] = float(np.nanmax(u))
                out["unified_median"] = float(np.nanmedian(u))
        if acc is not None and np.any(~np.isnan(acc)):
            out["acceptance"] = {
                "mean": float(np.nanmean(acc)),
                "min": float(np.nanmin(acc)),
                "steps_below_target": int(np.sum(acc < ACCEPT_TARGET)),
                "target": ACCEPT_TARGET,
            }
        out.update({k: v for k, v in self.extra.items() if k != "missing_mass_status"})
        return out

    def to_dict(self) -> dict[str, Any]:
        """``{"steps": [...], "summary": {...}}`` (the ``--json`` object)."""
        return {"steps": [self.record(i) for i in range(len(self))], "summary": self.summary()}


def length_value(length: str | float | int | None) -> float | None:
    """``--length``: ``max`` (None: the logged cap, else the longest response seen) or the
    horizon ``T`` itself (the generation cap, ``max_new_tokens``), rounded up."""
    if length is None or length == "max":
        return None
    if length == "mean":
        raise TrmboundsError(
            "--length mean is no longer accepted: a bound at the mean response length has no "
            "theorem behind it; the horizon T is the longest response the policy can produce "
            "— pass --length MAX_NEW_TOKENS (the generation cap)"
        )
    try:
        v = float(length)
    except (TypeError, ValueError):
        raise TrmboundsError(
            f"--length must be max or a number (the generation cap), got {length!r}"
        ) from None
    if not (math.isfinite(v) and v >= 1):
        raise TrmboundsError(f"--length must be at least 1, got {length}")
    return float(math.ceil(v))


#: How T was found, per step (a float code inside the columnar blocks).
T_SOURCES = ("assumed", "logged cap", "empirical")


# ------------------------------------------------------------------ shared notes
def detector_flags(detector: np.ndarray, a: Assumption) -> np.ndarray:
    """detector / delta where a detector of delta exceeds the assumed delta, NaN elsewhere."""
    if a.kl_max is None:
        return np.full(np.shape(detector), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.asarray(detector, dtype=np.float64) / a.kl_max
        over = detector > a.kl_max * (1 + _TOL)
    return np.where(over, np.where(a.kl_max > 0, r, np.inf), np.nan)


def _f(x) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x


def _int_or_float(x) -> int | float:
    x = float(x)
    return int(x) if x.is_integer() else x


def _list(names: Iterable[str], k: int = 25) -> str:
    names = sorted(names)
    more = f" … (+{len(names) - k} more)" if len(names) > k else ""
    return ", ".join(names[:k]) + more
