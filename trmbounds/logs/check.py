r"""The TRM guarantee, step by step, on saved training logs.

For every step of a per-step metric log (or every step group of a per-token dump, see
:mod:`.tokens`) :func:`check_log` computes the response length ``T``, the divergence
statistics the log supports -- each with its status (``assumed``, ``estimate``,
``proxy``, ``lower_bound``) -- the unified bound :math:`B^*` under the user's
trust-region assumption and under the estimates, and the state of the guarantee:

``refuted``
    A certified lower bound (``max |p_theta(y) - p_roll(y)|`` over sampled tokens, or
    an exact divergence at a logged context) exceeds the assumed threshold:
    :math:`\varepsilon_{lb} > \min(\varepsilon, \sqrt{\delta/2})` or
    :math:`\delta_{lb} > \delta`. The assumption is false at this step.
``vacuous``
    :math:`B^* \ge a` under the assumption: nothing can be guaranteed.
``guaranteed``
    The log has a surrogate column and :math:`L > B^*`: improvement is guaranteed,
    if the assumption holds.
``non-vacuous``
    :math:`B^* < a` under the assumption, no surrogate to compare with.
``unknown``
    No assumption was given (the estimate-based bound is only an estimate), or the
    step lacks ``T``.

Everything is columnar numpy over the steps of a block; no per-step Python objects
are created until the result is rendered.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import bounds as B
from ..errors import InputFileError, TrmboundsError
from . import presets as P
from .readers import BadRecords, iter_log, sniff_format

__all__ = [
    "STATES",
    "ACCEPT_TARGET",
    "Assumption",
    "CheckResult",
    "unified_columns",
    "LengthTable",
    "check_log",
    "states",
]

#: The states of the guarantee at a step, in order of precedence.
STATES = ("refuted", "vacuous", "guaranteed", "non-vacuous", "unknown")
#: The paper's recommendation: keep the acceptance rate of the mask above 70 %.
ACCEPT_TARGET = 0.7
_TOL = 1e-9


@dataclass(frozen=True)
class Assumption:
    """The user's trust-region assumption (e.g. the TRM thresholds) and bound settings."""

    kl_max: float | None = None
    tv_max: float | None = None
    adv_range: float = 1.0
    constants: str = "paper"

    def __post_init__(self) -> None:
        for k in ("kl_max", "tv_max"):
            v = getattr(self, k)
            if v is not None and not (math.isfinite(v) and v >= 0):
                raise TrmboundsError(f"{k} must be a finite non-negative number, got {v}")
        if not (math.isfinite(self.adv_range) and self.adv_range >= 0):
            raise TrmboundsError(f"adv_range must be finite and non-negative, got {self.adv_range}")
        B._lead(self.constants)

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


def _nan(x) -> np.ndarray:
    return np.asarray(np.nan if x is None else x, dtype=np.float64)


def unified_columns(
    T,
    kl_max=None,
    tv_max=None,
    kl_seq=None,
    tv_seq=None,
    per_position=None,
    *,
    adv_range=1.0,
    constants="paper",
    table: LengthTable | None = None,
):
    r"""The unified bound :math:`B^*`, broadcasting, where NaN means "not known".

    Like :func:`trmbounds.bounds.unified`, but any of ``kl_max``, ``tv_max``,
    ``kl_seq``, ``tv_seq`` may be ``None`` or hold NaN entries: missing values are
    filled with the conservative relations of SPEC §2
    (:math:`\varepsilon \le \min(1,\sqrt{\delta/2})`, :math:`D_{KL}^{seq} \le T\delta`,
    :math:`D_{TV}^{seq} \le \min(1, \sqrt{D_{KL}^{seq}/2}, T\varepsilon)`), members that
    need an unknown :math:`\delta` are dropped, and the result is NaN only where
    neither :math:`\delta` nor :math:`\varepsilon` is known. ``table`` (a
    :class:`LengthTable` for the same scalar ``kl_max``/``tv_max``) evaluates the members
    that depend on ``T`` alone by look-up.

    Examples
    --------
    >>> b = unified_columns([4096, 4096, 4096], [1e-4, np.nan, np.nan], [5e-3, 5e-3, np.nan],
    ...                     [0.01, np.nan, np.nan], [0.05, 0.05, np.nan])
    >>> [round(float(x), 3) for x in b[:2]], bool(np.isnan(b[2]))   # column B: 4.096
    ([4.096, 4.096], True)
    """
    T = _nan(T)
    kl = _nan(kl_max)
    eps_in = _nan(tv_max)
    kw = dict(adv_range=adv_range, constants=constants)
    pp = per_position if per_position is not None and np.ndim(per_position) > 0 else None
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        T, kl, eps_in = np.broadcast_arrays(T, kl, eps_in)
        eps = np.where(np.isnan(eps_in), np.minimum(1.0, np.sqrt(kl / 2.0)), eps_in)
        kseq = _nan(kl_seq) * np.ones_like(T)
        kseq = np.where(np.isnan(kseq), T * kl, kseq)
        tseq = _nan(tv_seq) * np.ones_like(T)
        fill = np.fmin(np.fmin(1.0, np.sqrt(kseq / 2.0)), T * eps)
        if pp is not None:
            fill = np.fmin(fill, np.sum(_nan(pp), axis=-1))
        tseq = np.where(np.isnan(tseq), fill, tseq)
        Ts = np.where(np.isnan(T), 1.0, T)  # keep the closed forms quiet; masked below
        mix = np.fmin(B.mix_kl(Ts, kl, kseq, **kw), B.mix_tv(Ts, eps, tseq, **kw))
        if table is not None and pp is None:
            rest = table(T)
        elif pp is None and T.ndim == 1 and len(T) > 64 and _scalar(kl) and _scalar(eps):
            # The other members depend on T alone here: evaluate them once per distinct T.
            uT, inv = np.unique(Ts, return_inverse=True)
            rest = _length_members(uT, kl[:1], eps[:1], None, kw)[inv.reshape(-1)]
        else:
            rest = _length_members(Ts, kl, eps, pp, kw)
        out = np.fmin(mix, rest)
        out = np.where(np.isnan(eps) | np.isnan(T), np.nan, out)
    return out


class LengthTable:
    """PM-KL, PM-TV, Coupling and the Adaptive hybrid, tabulated over T = 1, 2, ...

    For scalar ``kl_max``/``tv_max`` (None: unknown) these members of :math:`B^*`
    depend on ``T`` alone; a log has few distinct lengths, so they are computed once.

    Examples
    --------
    >>> t = LengthTable(None, 0.1)
    >>> [round(float(x), 6) for x in t(np.array([2.0, 100.0]))]   # Coupling: 0.04, 37.8
    [0.04, 37.8]
    """

    _MAX = 1 << 22

    def __init__(self, kl_max, tv_max, adv_range=1.0, constants="paper"):
        self.kl = np.asarray([np.nan if kl_max is None else kl_max], dtype=np.float64)
        e = np.nan if tv_max is None else tv_max
        with np.errstate(invalid="ignore"):
            pins = np.minimum(1.0, np.sqrt(self.kl / 2.0))
        self.eps = np.where(np.isnan(e), pins, e)
        self.kw = dict(adv_range=adv_range, constants=constants)
        self.values = np.zeros(0)

    def __call__(self, T: np.ndarray) -> np.ndarray:
        T = np.asarray(T, dtype=np.float64)
        ok = T >= 1
        out = np.full(T.shape, np.nan)
        if not ok.any():
            return out
        need = int(T[ok].max())
        if need > self._MAX:
            with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                out[ok] = _length_members(T[ok], self.kl, self.eps, None, self.kw)
            return out
        if need > len(self.values):
            n = max(need, 2 * len(self.values), 1024)
            with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                self.values = _length_members(
                    np.arange(1, n + 1, dtype=np.float64), self.kl, self.eps, None, self.kw
                )
        out[ok] = self.values[T[ok].astype(np.int64) - 1]
        return out


def _scalar(x: np.ndarray) -> bool:
    """All entries equal (NaN counts as equal to NaN)."""
    return bool(np.all(x == x[0])) or bool(np.all(np.isnan(x)))


def _length_members(T, kl, eps, pp, kw) -> np.ndarray:
    """min of PM-KL, PM-TV, Coupling and the Adaptive hybrid (NaN-aware)."""
    T, kl, eps = np.broadcast_arrays(T, kl, eps)
    has_kl = ~np.isnan(kl)
    eps0 = np.where(np.isnan(eps), 0.0, eps)
    members = [B.pm_kl(T, kl, **kw), B.pm_tv(T, kl, eps, **kw), B.coupling(T, eps, **kw)]
    if pp is not None and not (has_kl.all() or not has_kl.any()):
        raise TrmboundsError("a per-position array needs kl_max known everywhere or nowhere")
    if pp is not None and np.shape(pp)[-1] < np.max(T, initial=0):
        members.append(_adaptive_prefix(T, kl if has_kl.any() else None, eps0, pp, kw))
    elif pp is not None:
        members.append(B.adaptive(T, kl if has_kl.all() else None, eps0, pp, **kw))
    else:
        a_h = B.adaptive(T, np.where(has_kl, kl, 0.0), eps0, None, **kw)
        if has_kl.all():
            members.append(a_h)
        else:
            members.append(np.where(has_kl, a_h, B.adaptive(T, None, eps0, None, **kw)))
    return np.fmin.reduce(np.broadcast_arrays(*[np.asarray(m, float) for m in members]))


def _adaptive_prefix(T, kl, eps, pp, kw) -> np.ndarray:
    r"""The Adaptive hybrid :math:`a\,c\sum_{t\le L}\bar D_t\min(1,(T-t)\varepsilon,
    \sqrt{(T-t)\delta/2})` for a per-position array of length :math:`L < T`.

    :math:`\bar D_t = 0` for :math:`t > L` (no sequence is that long), so the sum over
    the first :math:`L` positions is the whole sum: no array of length :math:`T` is
    built (``--length`` may be huge). ``T`` must hold one value.
    """
    Tu = np.unique(T)
    if Tu.size != 1:
        raise TrmboundsError(f"per-position array has length {np.shape(pp)[-1]}, T varies")
    d = np.asarray(pp, dtype=np.float64)
    e = np.asarray(eps, dtype=np.float64).reshape(-1)[0]
    k = None if kl is None else float(np.asarray(kl, dtype=np.float64).reshape(-1)[0])
    w = B.position_weights(Tu[0], kl_max=k, tv_max=e, n=d.shape[-1])
    res = kw["adv_range"] * B._lead(kw["constants"]) * np.sum(d * w, axis=-1)
    return np.broadcast_to(res, np.shape(T)).astype(np.float64)


def states(
    T: np.ndarray,
    bound: np.ndarray,
    assumption: Assumption,
    eps_lb: np.ndarray,
    kl_lb: np.ndarray,
    surrogate: np.ndarray,
) -> np.ndarray:
    """The state of every step as an index into :data:`STATES` (int8).

    ``bound`` is :math:`B^*` under the assumption; NaN entries of the other arrays
    mean "not logged".

    Examples
    --------
    >>> a = Assumption(kl_max=1e-4)            # eps <= sqrt(1e-4/2) = 7.07e-3
    >>> s = states(np.array([64, 64, 64, 64]), np.array([0.5, 0.5, 2.0, 0.5]), a,
    ...            np.array([8e-3, 1e-3, np.nan, np.nan]), np.full(4, np.nan),
    ...            np.array([np.nan, np.nan, np.nan, 0.9]))
    >>> [STATES[i] for i in s]
    ['refuted', 'non-vacuous', 'vacuous', 'guaranteed']
    """
    n = len(T)
    out = np.full(n, STATES.index("unknown"), dtype=np.int8)
    if not assumption.given:
        return out
    ok = ~np.isnan(T) & ~np.isnan(bound)
    e = assumption.eps_eff
    with np.errstate(invalid="ignore"):
        refuted = eps_lb > e * (1 + _TOL)
        if assumption.kl_max is not None:
            refuted |= kl_lb > assumption.kl_max * (1 + _TOL)
        vac = bound >= assumption.adv_range
        guar = surrogate > bound
    out[ok] = STATES.index("non-vacuous")
    out[ok & guar] = STATES.index("guaranteed")
    out[ok & vac] = STATES.index("vacuous")
    out[refuted] = STATES.index("refuted")
    return out


# --------------------------------------------------------------------- the result
@dataclass
class Stat:
    """One per-step statistic: values, status, where it came from, optional 95 % CI."""

    values: np.ndarray
    status: str
    source: str
    ci: tuple[np.ndarray, np.ndarray] | None = None


@dataclass
class CheckResult:
    """Per-step results of a check (columnar), and the summary.

    Attributes
    ----------
    kind : str
        ``"metrics"`` or ``"tokens"``.
    step, line, T, bound, bound_est, state : ndarray
        Per step: the step number, where it is in the file, ``T``, :math:`B^*` under
        the assumption (NaN without one), :math:`B^*` under the estimates, and the
        state (index into :data:`STATES`).
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

    def __len__(self) -> int:
        return len(self.step)

    @property
    def basis(self) -> str:
        """``assumed`` when :attr:`bound` rests on the user's assumption, else ``estimate``."""
        return "assumed" if self.assumption.given else "estimate"

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

    def worst(self, k: int = 5) -> list[int]:
        """Indices of the worst steps: refuted first, then the largest bound."""
        if not len(self):
            return []
        b = np.where(np.isnan(self.unified), -np.inf, self.unified)
        key = np.where(self.state == 0, np.inf, b)
        order = np.argsort(-key, kind="stable")
        return [int(i) for i in order[:k]]

    def record(self, i: int) -> dict[str, Any]:
        """Step ``i`` as a JSON-ready dict."""
        a = self.assumption
        st = STATES[int(self.state[i])]
        u = self.unified[i]
        rec: dict[str, Any] = {
            "step": _int_or_float(self.step[i]),
            "T": None if np.isnan(self.T[i]) else int(self.T[i]),
            "unified": _f(u),
            "basis": self.basis,
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
        out: dict[str, Any] = {
            "file": self.path,
            "kind": self.kind,
            "preset": self.preset,
            "steps": len(self),
            "states": self.counts(),
            "basis": self.basis,
            "assumption": {
                "kl_max": self.assumption.kl_max,
                "tv_max": self.assumption.tv_max,
                "adv_range": self.assumption.adv_range,
                "constants": self.assumption.constants,
            },
            "columns": dict(self.columns),
            "statuses": {k: s.status for k, s in self.stats.items()},
            "worst_steps": [_int_or_float(self.step[i]) for i in self.worst()],
            "bad_records": {"count": self.bad.count, "first": list(self.bad.messages)},
            "invalid_values": {
                k: {"count": v[0], "first_step": v[1]} for k, v in self.invalid.items()
            },
            "rows_without_metrics": self.rows_without_metrics,
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
        out.update(self.extra)
        return out

    def to_dict(self) -> dict[str, Any]:
        """``{"steps": [...], "summary": {...}}`` (the ``--json`` object)."""
        return {"steps": [self.record(i) for i in range(len(self))], "summary": self.summary()}


def _f(x) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x


def _int_or_float(x) -> int | float:
    x = float(x)
    return int(x) if x.is_integer() else x


# --------------------------------------------------------------- per-step metric logs
_NONNEG = {
    "T", "T_max", "T_mean", "kl_tok_mean", "kl_seq", "tv_seq", "tv_lb", "tv_max_seen",
    "kl_max_seen", "k2_max", "logp_diff_max", "logp_diff_mean", "prob_diff_mean",
}  # fmt: skip
_ALWAYS = ("step", "line", "T", "bound", "bound_est", "state")
_UNIT = {"reject_frac", "accept", "tv_seq", "tv_lb", "tv_max_seen", "prob_diff_mean"}


def _length_mode(length: str) -> tuple[str, float | None]:
    if length in ("max", "mean"):
        return length, None
    try:
        v = float(length)
    except ValueError:
        raise TrmboundsError(f"--length must be max, mean or a number, got {length!r}") from None
    if not (math.isfinite(v) and v >= 1):
        raise TrmboundsError(f"--length must be at least 1, got {length}")
    return "value", float(math.ceil(v))


def check_log(
    path: str | os.PathLike,
    *,
    format: str | None = None,
    preset: str = "auto",
    maps: Mapping[str, str] | Iterable[str] = (),
    length: str = "max",
    assumption: Assumption | None = None,
    skip_bad: bool = False,
    progress: Callable[[int], None] | None = None,
    **token_options: Any,
) -> CheckResult:
    """Check the TRM guarantee at every step of a training log.

    Parameters
    ----------
    path : path-like
        Per-step metric log (JSONL, CSV, Parquet) or per-token dump (JSONL, Parquet
        with list columns; recognised by its log-prob columns).
    format : str, optional
        ``jsonl``, ``csv`` or ``parquet``; default from the extension.
    preset : str
        ``auto`` (the preset matching most columns), or one of :data:`.presets.PRESETS`.
    maps : mapping or iterable of "QUANTITY=COLUMN"
        Column overrides.
    length : str
        ``max``, ``mean`` or a number: which response length is ``T``.
    assumption : Assumption, optional
        The trust-region assumption (``--kl-max``, ``--tv-max``) and bound settings.
    skip_bad : bool
        Skip (and count) malformed records instead of stopping at the first.
    progress : callable, optional
        Called with the number of records processed so far.
    **token_options
        Acceptance thresholds for per-token dumps (:func:`.tokens.check_tokens`).

    Returns
    -------
    CheckResult
    """
    from . import tokens as TK

    assumption = assumption or Assumption()
    if not isinstance(maps, Mapping):
        maps = P.parse_maps(maps)
    mode, Tvalue = _length_mode(length)
    p = Path(path)
    fmt = sniff_format(p, format)
    if preset != "auto" and preset not in P.PRESETS:
        raise TrmboundsError(f"unknown preset {preset!r}; choose auto, {', '.join(P.PRESETS)}")
    if TK.is_token_dump(p, fmt, maps):
        return TK.check_tokens(
            p,
            format=fmt,
            maps=maps,
            length=length,
            assumption=assumption,
            skip_bad=skip_bad,
            progress=progress,
            **token_options,
        )
    if token_options:
        raise TrmboundsError(
            f"{p}: {', '.join(sorted(token_options))} apply to per-token dumps only; "
            "this is a per-step metric log"
        )
    if fmt == "json":
        return _check_stats_file(p, assumption, Tvalue)
    bad = BadRecords(skip=skip_bad)
    seen: set[str] = set()
    all_cands = set()
    for pr in P.PRESETS.values():
        for c in P.candidates(pr, maps).values():
            all_cands.update(c)
    chosen: P.Preset | None = None if preset == "auto" else P.PRESETS[preset]
    cols: dict[str, str] = {}
    parts: dict[str, dict[int, np.ndarray]] = {}
    sizes: list[int] = []
    invalid: dict[str, list] = {}
    n_done = 0
    no_metrics = 0
    first = True
    table = LengthTable(
        assumption.kl_max, assumption.tv_max, assumption.adv_range, assumption.constants
    )
    for chunk in iter_log(p, fmt, columns=all_cands, bad=bad, seen=seen):
        if first:
            first = False
            if chosen is None:
                chosen = P.guess_preset(seen)
            cols = _check_columns(p, chosen, maps, seen, mode)
        res = _metric_block(p, chunk, chosen, maps, mode, Tvalue, assumption, bad, invalid, table)
        if res is not None:
            block, nm = res
            no_metrics += nm
            b = len(sizes)
            sizes.append(len(block["step"]))
            for k, v in block.items():
                if k in _ALWAYS or not np.isnan(v).all():  # keep memory to what was logged
                    parts.setdefault(k, {})[b] = v
        n_done += len(chunk)
        if progress is not None:
            progress(n_done)
    if first:
        raise InputFileError(
            f"{p}: no records with any known column"
            + (f"; columns present: {_list(seen)}" if seen else " (empty file)")
        )
    assert chosen is not None
    cat = {
        k: np.concatenate([v.get(b, np.full(n_b, np.nan)) for b, n_b in enumerate(sizes)])
        for k, v in parts.items()
    }
    n = len(cat.get("step", ()))
    empty = np.zeros(0)
    get = lambda k: cat.get(k, empty)  # noqa: E731
    stats: dict[str, Stat] = {}

    def add(name: str, q: str, src: str | None = None, status_: str | None = None):
        v = get(name)
        if len(v) and np.any(~np.isnan(v)):
            stats[name] = Stat(v, status_ or P.status_of(chosen, q), src or cols.get(q, q))

    kseq_status = P.status_of(chosen, "kl_seq" if "kl_seq" in cols else "kl_tok_mean")
    kseq_src = cols.get("kl_seq") or (
        f"{cols['kl_tok_mean']} x {cols['T_mean']}"
        if "kl_tok_mean" in cols and "T_mean" in cols
        else ""
    )
    add("kl_seq", "kl_seq", kseq_src, kseq_status)
    add("tv_seq", "tv_seq")
    add("tv_lower_bound", "tv_lb", _src(cols, "tv_lb", "tv_max_seen"), "lower_bound")
    add("kl_lower_bound", "kl_max_seen", None, "lower_bound")
    add("kl_max_proxy", "k2_max", _src(cols, "k2_max", "logp_diff_max"), "proxy")
    add("kl_max_proxy_k3", "kl_proxy_max", None, "proxy")
    add("logp_diff_mean", "logp_diff_mean", None, "proxy")
    add("prob_diff_mean", "prob_diff_mean", None, "proxy")
    add("acceptance", "accept", _src(cols, "accept", "reject_frac"), "logged")
    add("surrogate", "surrogate", None, "estimate")
    notes = list(chosen.notes)
    if "kl_seq" in stats and "kl_seq" not in cols:
        notes.append(
            "kl_seq = token-mean k3 x mean response length: the batch estimate of "
            "E[sum_t k3_t] (no confidence interval: the log keeps only the batch mean)"
        )
    if "kl_max_proxy" in stats:
        notes.append(
            "kl_max_proxy (max k2 over sampled tokens) is a detector of delta, neither an "
            "estimate nor a bound; with no --kl-max it stands in for delta in the estimate"
        )
    if "tv_lower_bound" in stats:
        notes.append(
            "tv_lower_bound = max |p_theta(y) - p_roll(y)| over sampled tokens <= eps "
            "(|p(y) - q(y)| <= TV): it can refute an assumed eps, never certify one"
        )
    if not assumption.given:
        notes.append(
            "no --kl-max/--tv-max: nothing is guaranteed; 'unified' is an ESTIMATE from "
            "logged proxies (state 'unknown')"
        )
    notes.append(
        "the guarantee needs delta/eps to hold over ALL reachable contexts (SPEC §5.1); "
        "a logged maximum is over sampled tokens only"
    )
    return CheckResult(
        path=str(p),
        kind="metrics",
        preset=chosen.name,
        assumption=assumption,
        step=get("step"),
        line=get("line").astype(np.int64) if n else np.zeros(0, np.int64),
        T=get("T"),
        bound=get("bound"),
        bound_est=get("bound_est"),
        state=get("state").astype(np.int8) if n else np.zeros(0, np.int8),
        stats=stats,
        columns=cols,
        bad=bad,
        invalid=invalid,
        notes=notes,
        rows_without_metrics=no_metrics,
    )


def _src(cols: Mapping[str, str], *qs: str) -> str:
    return " | ".join(cols[q] for q in qs if q in cols)


def _list(names: Iterable[str], k: int = 25) -> str:
    names = sorted(names)
    more = f" … (+{len(names) - k} more)" if len(names) > k else ""
    return ", ".join(names[:k]) + more


def _check_columns(p, preset, maps, seen, mode) -> dict[str, str]:
    cols = P.resolve(preset, maps, seen)
    for q, c in maps.items():
        if c not in seen:
            raise InputFileError(
                f"{p}: column {c!r} (--map {q}={c}) not found; columns present: {_list(seen)}"
            )
    tried = f"preset {preset.name}"
    if "step" not in cols:
        raise InputFileError(
            f"{p}: no step column (tried {', '.join(P.candidates(preset, maps)['step'])}; "
            f"pass --map step=COLUMN); columns present: {_list(seen)}"
        )
    if mode != "value" and "T" not in cols:
        need = "T_max" if mode == "max" else "T_mean"
        if need not in cols:
            cands = P.candidates(preset, maps).get(need, ())
            raise InputFileError(
                f"{p}: no response-length column for --length {mode} (tried {tried}: "
                f"{', '.join(cands) or 'none known'}); pass --map {need}=COLUMN or --length VALUE; "
                f"columns present: {_list(seen)}"
            )
    stats_q = set(cols) - {"step", "T", "T_max", "T_mean"}
    if not stats_q:
        cand = sorted(
            {
                c
                for q, cs in P.candidates(preset, maps).items()
                for c in cs
                if q not in ("step", "T", "T_max", "T_mean")
            }
        )
        raise InputFileError(
            f"{p}: no mismatch metric found (tried {tried}: {_list(cand, 12)}); "
            f"pass --preset or --map QUANTITY=COLUMN; columns present: {_list(seen)}"
        )
    return cols


def _metric_block(p, chunk, preset, maps, mode, Tvalue, a: Assumption, bad, invalid, table):
    cols = P.resolve(preset, maps, chunk.columns)
    n = len(chunk)
    q: dict[str, np.ndarray] = {}
    for name, c in cols.items():
        v = chunk.columns[c].copy()
        pres = chunk.present[c]
        v[~pres] = np.nan
        if name != "step":
            with np.errstate(invalid="ignore"):
                badv = pres & ~np.isfinite(v)
                if name in _NONNEG:
                    badv |= pres & (v < 0)
                if name in _UNIT:
                    badv |= pres & (v > 1)
            if badv.any():
                i = int(np.argmax(badv))
                rec = invalid.setdefault(c, [0, None])
                if rec[1] is None and "step" in cols:
                    rec[1] = _int_or_float(chunk.columns[cols["step"]][i])
                rec[0] += int(badv.sum())
                v[badv] = np.nan
        q[name] = v
    step = q.get("step")
    keep = np.ones(n, bool)
    if step is None:
        for i in range(n):
            bad.add(p, f"{chunk.unit} {chunk.lines[i]}", "no step value")
        return None
    nostep = ~np.isfinite(step)
    if nostep.any():
        for i in np.flatnonzero(nostep):
            bad.add(p, f"{chunk.unit} {chunk.lines[i]}", f"no valid step value ({step[i]})")
        keep &= ~nostep
    relevant = np.zeros(n, bool)
    for name in q:
        if name != "step":
            relevant |= chunk.present[cols[name]]
    no_metrics = int(np.sum(keep & ~relevant))
    keep &= relevant
    if not keep.any():
        return None
    q = {k: v[keep] for k, v in q.items()}
    m = int(keep.sum())
    nan = np.full(m, np.nan)
    g = lambda k: q.get(k, nan)  # noqa: E731
    if mode == "value":
        T = np.full(m, Tvalue)
    else:
        T = g("T") if "T" in q else g("T_max" if mode == "max" else "T_mean")
    with np.errstate(invalid="ignore"):
        T = np.where(T >= 1, np.ceil(T), np.nan)
    kseq = g("kl_seq")
    kseq = np.where(np.isnan(kseq), g("kl_tok_mean") * g("T_mean"), kseq)
    eps_lb = np.fmax(g("tv_lb"), g("tv_max_seen"))
    k2 = g("k2_max")
    k2 = np.where(np.isnan(k2), 0.5 * g("logp_diff_max") ** 2, k2)
    acc = g("accept")
    acc = np.where(np.isnan(acc), 1.0 - g("reject_frac"), acc)
    kw = dict(adv_range=a.adv_range, constants=a.constants)
    bound = (
        unified_columns(T, a.kl_max, a.tv_max, table=table, **kw) if a.given else np.full(m, np.nan)
    )
    d_est = np.full(m, np.nan)
    if a.kl_max is not None:
        d_est[:] = a.kl_max
    elif not a.given:
        d_est = np.where(np.isnan(k2), g("kl_proxy_max"), k2)
    bound_est = unified_columns(
        T, d_est, a.tv_max, kseq, g("tv_seq"), table=table if a.given else None, **kw
    )
    state = states(T, bound, a, eps_lb, g("kl_max_seen"), g("surrogate"))
    return (
        {
            "step": q["step"],
            "line": chunk.lines[keep].astype(np.float64),
            "T": T,
            "bound": bound,
            "bound_est": bound_est,
            "state": state.astype(np.float64),
            "kl_seq": kseq,
            "tv_seq": g("tv_seq"),
            "tv_lower_bound": eps_lb,
            "kl_lower_bound": g("kl_max_seen"),
            "kl_max_proxy": k2,
            "kl_max_proxy_k3": g("kl_proxy_max"),
            "logp_diff_mean": g("logp_diff_mean"),
            "prob_diff_mean": g("prob_diff_mean"),
            "acceptance": acc,
            "surrogate": g("surrogate"),
        },
        no_metrics,
    )


# ------------------------------------------------------------------- statistics files
def _check_stats_file(p: Path, a: Assumption, Tvalue: float | None) -> CheckResult:
    """One "step" from a statistics file (``trmbounds measure``, docs/stats-file.md).

    Maxima with status ``empirical`` (exact divergences at measured contexts) or
    ``lower_bound`` are lower bounds on the true maxima: they refute an assumed threshold
    below them. A ``certified`` maximum is an upper bound (it holds for all reachable
    contexts): it never refutes, and without ``--kl-max``/``--tv-max`` it is the
    assumption. The file's averages are plugged into the estimate.
    """
    from ..stats import Stats, evaluate, load_stats

    s = load_stats(p)
    if a.adv_range == 1.0 and s.adv_range != 1.0:  # no range on the command line
        a = Assumption(a.kl_max, a.tv_max, s.adv_range, a.constants)
    T = float(Tvalue) if Tvalue is not None else float(s.T)
    st = s.status
    notes: list[str] = []
    # A certified maximum holds over all reachable contexts: an UPPER bound on the true
    # maximum, so it can never refute an assumption (only a weaker certificate if larger).
    lb_ok = ("empirical", "lower_bound")
    kl_lb = s.kl_max if s.kl_max is not None and st.get("kl_max") in lb_ok else math.nan
    tv_lb = s.tv_max if s.tv_max is not None and st.get("tv_max") in lb_ok else math.nan
    if not a.given and all(v in ("assumed", "certified") for v in st.values()):
        a = Assumption(s.kl_max, s.tv_max, a.adv_range, a.constants)
        notes.append("the file's maxima are assumed/certified: they are the assumption")
    for k, mine in (("kl_max", a.kl_max), ("tv_max", a.tv_max)):
        v = getattr(s, k)
        if st.get(k) == "certified" and v is not None and mine is not None and v > mine:
            notes.append(
                f"the file's certified {k} = {v:g} exceeds the assumed {mine:g}: a weaker "
                "certificate, it neither confirms nor refutes the assumption"
            )
    pp = s.per_position
    if pp is not None and Tvalue is not None and len(pp) != int(T):
        pp = np.pad(pp, (0, max(0, int(T) - len(pp))))[: int(T)]
        notes.append(f"per_position padded/truncated to --length {int(T)}")
    base = dict(T=int(T), adv_range=a.adv_range, missing_mass=s.missing_mass)
    if s.reward_range is not None and a.adv_range == s.adv_range:
        # Keep where the rewards lie: with missing mass the bound depends on it.
        base = dict(T=int(T), reward_range=s.reward_range, missing_mass=s.missing_mass)
    mm_status = {"missing_mass": st["missing_mass"]} if s.missing_mass is not None else {}
    bound = math.nan
    if a.given:
        r = evaluate(
            Stats(kl_max=a.kl_max, tv_max=a.tv_max, status=mm_status, **base),
            constants=a.constants,
        )
        bound = r.unified
    kl_e = a.kl_max if a.kl_max is not None else (None if a.tv_max is not None else s.kl_max)
    tv_e = a.tv_max if a.tv_max is not None else (None if a.kl_max is not None else s.tv_max)
    est_status = {k: ("assumed" if getattr(a, k) is not None else st.get(k, "estimate"))
                  for k, v in (("kl_max", kl_e), ("tv_max", tv_e)) if v is not None}  # fmt: skip
    for k in ("kl_seq", "tv_seq", "per_position"):
        if getattr(s, k) is not None:
            est_status[k] = st.get(k, "estimate")
    if kl_e is None and tv_e is None:
        raise InputFileError(f"{p}: the statistics file has neither kl_max nor tv_max")
    r_est = evaluate(
        Stats(kl_max=kl_e, tv_max=tv_e, kl_seq=s.kl_seq, tv_seq=s.tv_seq, per_position=pp,
              status={**est_status, **mm_status}, **base),
        constants=a.constants,
    )  # fmt: skip
    notes.extend(r_est.notes)
    one = lambda x: np.array([np.nan if x is None else float(x)])  # noqa: E731
    stats: dict[str, Stat] = {}
    if not math.isnan(kl_lb):
        stats["kl_lower_bound"] = Stat(one(kl_lb), "lower_bound", f"kl_max ({st['kl_max']})")
    if not math.isnan(tv_lb):
        stats["tv_lower_bound"] = Stat(one(tv_lb), "lower_bound", f"tv_max ({st['tv_max']})")
    for k in ("kl_seq", "tv_seq", "missing_mass"):
        if getattr(s, k) is not None:
            stats[k] = Stat(one(getattr(s, k)), st.get(k, "estimate"), k)
    if pp is not None:
        arr = np.empty(1, dtype=object)
        arr[0] = np.asarray(pp, dtype=float)
        stats["per_position"] = Stat(arr, st.get("per_position", "estimate"), "per_position")
    Ta = np.array([T])
    state = states(Ta, np.array([bound]), a, np.array([tv_lb]), np.array([kl_lb]), one(None))
    if not a.given:
        notes.append(
            "no --kl-max/--tv-max: the file's maxima are over measured contexts only, so "
            "'unified' is an ESTIMATE (state 'unknown')"
        )
    return CheckResult(
        path=str(p),
        kind="stats",
        preset="statistics file",
        assumption=a,
        step=np.array([0.0]),
        line=np.array([1], dtype=np.int64),
        T=Ta,
        bound=np.array([bound]),
        bound_est=np.array([r_est.unified]),
        state=state,
        stats=stats,
        columns={},
        bad=BadRecords(),
        notes=notes,
    )
