r"""The guarantee of Li et al. (arXiv:2512.23075), live: ``check``'s verdict one step at a time.

:class:`Monitor` takes the metrics a training framework logs at a step -- the dict it
hands its loggers, under its own names (TRL's ``log_history`` entries, verl's ``data``
dict; ``train/``-prefixed or not) -- and returns the verdict ``trmbounds check`` gives
that step in a saved log: the state, :math:`B^*` under the assumption and under the
estimates, what :math:`B^*` rests on, the horizon and where it comes from, the flag and
the statistics used with their statuses (docs/logs.md states every rule). It goes
through the same code as ``check``: every step is one row of
:func:`trmbounds.logs.check.judge_rows`. Pure: no file, no printing.

Where a streaming monitor and a check of the finished log can differ:

* **Rows of one step.** ``check`` merges every row logged at a step (the last value of
  a column wins, :mod:`trmbounds.logs.merge`). :meth:`Monitor.update` does the same:
  metrics given again for a step already seen are merged into it and the step is
  judged again; the verdict returned is that of the merged row.
* **The preset.** ``check`` guesses the framework from every column of the file;
  the monitor from the columns seen up to the first update that carries a column a
  preset reads (give ``preset=`` to fix it).
* **The generation cap** (``length=None``). ``check`` applies the largest cap the run
  shows (a logged cap, or a response cut at it) to every step whose horizon is
  otherwise the longest response seen; the monitor applies the largest cap shown *so
  far*, from the first step that shows one on. A step judged before any cap was shown
  keeps its empirical horizon. With ``length=`` given (the generation cap, as it
  should be) both are the same at every step.

Examples
--------
>>> m = Monitor(kl_max=1e-6, length=256)
>>> v = m.update(1, {"sampling/sampling_logp_difference/max": 0.002,
...                  "completions/max_length": 200})
>>> v.state, round(v.unified, 6), v.basis, v.preset   # PM-KL: 4 u sum_t s_t = 0.005445
('non-vacuous', 0.005445, 'assumed', 'trl')
>>> v.flagged          # max k2 = 0.002**2 / 2 = 2e-6 > delta: a detector, not a bound
'max k2 = 2e-06 is 2 × the assumed δ = 1e-06'
>>> m.summary()["states"]["non-vacuous"], m.summary()["flagged"]
(1, 1)
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import TrmboundsError

__all__ = ["Monitor", "StepVerdict"]

#: The column that carries the step given to :meth:`Monitor.update`.
_STEP = "\x00step"


@dataclass(frozen=True)
class StepVerdict:
    """The verdict of one step, as ``trmbounds check`` gives it.

    Attributes
    ----------
    step : int or float
    state : str
        One of ``refuted``, ``vacuous``, ``guaranteed``, ``estimated-gain``,
        ``non-vacuous``, ``unknown`` (docs/logs.md).
    unified : float
        :math:`B^*`: under the assumption if one is given, else under the estimates;
        NaN when unknown.
    unified_estimate : float
        :math:`B^*` with the logged estimates plugged in (NaN: unknown).
    basis : str
        What ``unified`` rests on: ``assumed``, ``empirical-horizon`` or ``estimate``.
    T : int or None
        The horizon; ``T_source`` where it comes from (``assumed``, ``logged cap``,
        ``empirical``).
    flagged : str or None
        Why a detector of :math:`\\delta` exceeds the assumed :math:`\\delta`, or None.
    refuted_by : str or None
        The certified lower bound that refutes the assumption, or None.
    stats : mapping
        The statistics used: name -> ``{"value", "status", "source"}`` (as ``check
        --json``).
    preset : str
        The framework preset that read the metrics.
    """

    step: int | float
    state: str
    unified: float
    unified_estimate: float
    basis: str
    T: int | None
    T_source: str
    flagged: str | None
    refuted_by: str | None
    stats: Mapping[str, Any]
    preset: str
    _record: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    _flag: float = field(default=math.nan, repr=False, compare=False)

    @property
    def vacuous(self) -> bool | None:
        """Whether :math:`B^*` reaches the advantage range (None: unknown)."""
        return self._record.get("vacuous")

    def to_dict(self) -> dict[str, Any]:
        """The step as ``trmbounds check --json`` lists it."""
        import copy

        return copy.deepcopy(dict(self._record))


class Monitor:
    """``trmbounds check``, fed one step at a time (see the module docstring).

    Parameters
    ----------
    kl_max, tv_max : float, optional
        The trust-region assumption :math:`\\delta`, :math:`\\varepsilon` (``--kl-max``,
        ``--tv-max``); without either, nothing is guaranteed (state ``unknown``).
    length : int, optional
        The horizon ``T``: the generation cap (``max_new_tokens``). None: the cap the
        framework logs, else the longest response of the step (empirical).
    reward_range : (float, float)
        Where rewards lie; its width is the advantage range ``a``.
    constants : str
        ``paper`` or ``sharp`` (docs/theory.md).
    preset : str
        ``auto`` or a framework preset (:data:`trmbounds.logs.frameworks.PRESETS`).
    confidence : float
        Level of the one-sided lower confidence bound on the surrogate.
    maps : mapping of quantity to metric name, optional
        Overrides, as ``check --map`` (the step is always the one given to
        :meth:`update`).
    missing_mass : float, optional
        As ``check --missing-mass``.
    source : str
        What to name in error messages (e.g. the log file followed).
    assumption : trmbounds.logs.result.Assumption, optional
        The whole setting at once (as ``check`` builds it from its flags); replaces
        ``kl_max``, ``tv_max``, ``reward_range``, ``constants``, ``confidence`` and
        ``missing_mass``.
    """

    def __init__(
        self,
        kl_max: float | None = None,
        tv_max: float | None = None,
        length: int | float | None = None,
        reward_range: tuple[float, float] | None = (0, 1),
        constants: str = "paper",
        preset: str = "auto",
        confidence: float = 0.95,
        *,
        maps: Mapping[str, str] | None = None,
        missing_mass: float | None = None,
        source: str = "metrics",
        assumption: Any = None,
    ) -> None:
        from .logs import frameworks as P
        from .logs.result import Assumption, length_value

        if assumption is not None:  # check's own Assumption (the command line's flags)
            if not isinstance(assumption, Assumption):
                raise TrmboundsError("assumption must be a trmbounds.logs.result.Assumption")
            self.assumption = assumption
        else:
            self.assumption = Assumption(
                kl_max=kl_max,
                tv_max=tv_max,
                constants=constants,
                reward_range=None if reward_range is None else tuple(reward_range),  # type: ignore[arg-type]
                missing_mass=missing_mass,
                confidence=confidence,
            )
        self.length = length_value(length)
        if preset != "auto" and preset not in P.PRESETS:
            raise TrmboundsError(f"unknown preset {preset!r}; choose auto, {', '.join(P.PRESETS)}")
        self._maps = dict(maps or {})
        for q in self._maps:
            if q not in P.QUANTITIES:
                raise TrmboundsError(
                    f"maps: unknown quantity {q!r}; known: {', '.join(P.QUANTITIES)}"
                )
        self._maps.pop("step", None)
        self._preset = None if preset == "auto" else P.PRESETS[preset]
        self._source = source
        self._seen: set[str] = set()
        self._rows: dict[float, dict[str, float]] = {}
        self._verdicts: dict[float, StepVerdict] = {}
        self._cap = math.nan  # the largest generation cap shown so far
        self._n = 0
        self._k2 = False  # a max-k2 detector was seen
        self._want = self._wanted()

    # ------------------------------------------------------------------ public
    @property
    def preset(self) -> str | None:
        """The preset reading the metrics (None until one is guessed)."""
        return None if self._preset is None else self._preset.name

    def update(self, step: int | float, metrics: Mapping[str, Any]) -> StepVerdict | None:
        """Judge ``step`` with the metrics logged at it.

        Non-numeric values (strings, lists) and None are ignored; NaN and infinite
        values count as logged (an overflowed divergence flags the step, as in
        ``check``). Returns None while no column any preset reads has been seen, or
        when ``metrics`` carries no column of interest (``check`` does not count such
        a row as a step); else the verdict of the step, merged with any metrics given
        for it before.
        """
        from .logs import check as C
        from .logs import frameworks as P
        from .logs.readers import BadRecords, Chunk
        from .logs.result import T_SOURCES, CheckResult

        s = _step(step)
        if not isinstance(metrics, Mapping):
            raise TrmboundsError(
                f"metrics must be a mapping of name to value, got {type(metrics).__name__}"
            )
        new = _numbers(metrics)
        self._n += 1
        self._seen.update(new)
        row = self._rows.setdefault(s, {})
        row.update((k, v) for k, v in new.items() if k in self._want)
        a = self.assumption
        maps = {**self._maps, "step": _STEP}
        if self._preset is None:
            guess = P.guess_preset(self._seen)
            if not set(P.resolve(guess, self._maps, self._seen)) - {"step"}:
                return None  # nothing any preset reads yet
            self._preset = guess
            self._want = self._wanted()
        preset = self._preset
        if not set(P.resolve(preset, maps, row)) - {"step"}:
            return None  # no column of interest at this step (yet): not a step for check
        lengths = {"T", "T_max", "T_cap"} & set(P.resolve(preset, maps, self._seen))
        if self.length is None and not lengths:
            # no response length seen yet: a framework may write it in another row of the
            # step (prime-rl's orchestrator), so the step waits for it
            return None
        if not self._verdicts:  # check's checks on the columns, at the first step
            seen = self._seen | {_STEP}
            C._check_columns(self._source, preset, {q: c for q, c in maps.items() if c in seen},
                             seen, self.length, a.given)  # fmt: skip
        chunk = Chunk(lines=np.array([self._n]), unit="update")
        for k, x in row.items():
            chunk.columns[k], chunk.present[k] = np.array([x]), np.ones(1, bool)
        chunk.columns[_STEP], chunk.present[_STEP] = np.array([s]), np.ones(1, bool)
        got = C.judge_rows(chunk, preset, maps, self.length, a, path=self._source,
                           bad=BadRecords(), invalid={})  # fmt: skip
        if got is None:
            return None
        col = got[0]
        if self.length is None:
            src = col["T_source"][0]
            if src == 1:
                self._cap = float(np.fmax(self._cap, col["T"][0]))
            elif src == 2 and not math.isnan(self._cap):
                C.use_cap(col, a, self._cap)
        cols = P.resolve(preset, maps, self._seen | {_STEP})
        stats = C.step_stats(col, cols, preset, a)
        res = CheckResult(
            path=self._source,
            kind="metrics",
            preset=preset.name,
            assumption=a,
            step=col["step"],
            line=col["line"].astype(np.int64),
            T=col["T"],
            bound=col["bound"],
            bound_est=col["bound_est"],
            state=col["state"].astype(np.int8),
            stats=stats,
            columns={q: c for q, c in cols.items() if q != "step"},
            bad=BadRecords(),
            T_source=np.array([T_SOURCES[int(col["T_source"][0])]], dtype=object),
            flag=col["flag"],
            detector=self._detector(cols, stats),
        )
        rec = res.record(0)
        v = StepVerdict(
            step=rec["step"],
            state=rec["status"],
            unified=float(res.unified[0]),
            unified_estimate=float(res.bound_est[0]),
            basis=rec["basis"],
            T=rec["T"],
            T_source=rec["T_source"],
            flagged=rec.get("flagged"),
            refuted_by=rec.get("refuted_by"),
            stats=rec["stats"],
            preset=preset.name,
            _record=rec,
            _flag=float(col["flag"][0]),
        )
        self._verdicts[s] = v
        return v

    def summary(self) -> dict[str, Any]:
        """Counts per state over the steps judged, the flagged steps and the worst step
        (refuted first, then the most flagged, then the largest :math:`B^*`: the order of
        ``check``'s worst steps)."""
        from .logs.result import STATES

        counts = {st: 0 for st in STATES}
        worst, key = None, None
        for v in self._verdicts.values():
            counts[v.state] += 1
            u = -math.inf if math.isnan(v.unified) else v.unified
            f = 0.0 if math.isnan(v._flag) else v._flag
            k = (v.state == "refuted", f, u)
            if key is None or k > key:
                worst, key = v, k
        us = [v.unified for v in self._verdicts.values() if not math.isnan(v.unified)]
        return {
            "preset": self.preset,
            "steps": len(self._verdicts),
            "states": counts,
            "flagged": sum(v.flagged is not None for v in self._verdicts.values()),
            "worst_step": None if worst is None else worst.step,
            "worst": worst,
            "unified_max": max(us) if us else None,
            "assumption": self.assumption.to_dict(),
        }

    # ----------------------------------------------------------------- private
    def _detector(self, cols: Mapping[str, str], stats: Mapping[str, Any]) -> str:
        """check's name of the detector of delta: max k2 where the log has it (at this
        step, or any step before), else max k3."""
        self._k2 |= "kl_max_proxy" in stats
        self._k2 |= bool({"k2_max", "logp_diff_max"} & set(cols))
        return "max k2" if self._k2 else "max k3"

    def _wanted(self) -> set[str]:
        """The metric names any candidate preset could read (the rest is not kept)."""
        from .logs import frameworks as P

        pool = list(P.PRESETS.values()) if self._preset is None else [self._preset]
        want: set[str] = set()
        for pr in pool:
            for cs in P.candidates(pr, self._maps).values():
                want.update(cs)
        return want


def _step(step: Any) -> float:
    if isinstance(step, bool) or not isinstance(step, numbers.Real):
        raise TrmboundsError(f"step must be a number, got {step!r}")
    s = float(step)
    if not math.isfinite(s):
        raise TrmboundsError(f"step must be finite, got {step!r}")
    return s


def _numbers(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The numeric values of ``metrics`` as floats (0-d arrays and tensors included)."""
    out: dict[str, float] = {}
    for k, v in metrics.items():
        if v is None or isinstance(v, (bool, str, bytes)) or not isinstance(k, str):
            continue
        if not isinstance(v, numbers.Real):
            item = getattr(v, "item", None)
            if item is None or getattr(v, "ndim", None) != 0:
                continue
            v = item()
            if isinstance(v, bool) or not isinstance(v, numbers.Real):
                continue
        try:
            out[k] = float(v)
        except OverflowError:  # an integer beyond the doubles
            out[k] = math.copysign(math.inf, v)
    return out
