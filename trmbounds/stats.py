r"""Divergence statistics, their validation, and the evaluation of every bound.

:class:`Stats` holds what is known about the divergence between the rollout policy
and the trained policy; :func:`evaluate` fills what is missing with the conservative
relations of the paper (recording each one) and evaluates every bound of
:mod:`trmbounds.bounds`.

The statistics file (``trmbounds eval --stats FILE``, written by ``trmbounds
measure``) is a JSON object with the keys of :meth:`Stats.to_dict`; see
``docs/stats-file.md``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from . import bounds as B
from .errors import InputFileError, StatsError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "Stats",
    "Result",
    "evaluate",
    "bound_columns",
    "load_stats",
    "load_per_position",
    "STATUSES",
    "BOUND_NAMES",
    "UNIFIED_MEMBERS",
]

#: What a statistic's value rests on (docs/theory.md §6). ``assumed``: supplied by the user as
#: a hypothesis (e.g. a TRM threshold); ``certified``: proven for all reachable
#: contexts; ``empirical``: a maximum over measured contexts (a lower estimate of the
#: true maximum); ``estimate``: a Monte Carlo estimate; ``proxy``: a sample-based
#: detector (k1/k2/k3); ``lower_bound``: a certified lower bound.
STATUSES = ("assumed", "certified", "empirical", "estimate", "proxy", "lower_bound")

#: Every bound :func:`evaluate` reports, in display order.
BOUND_NAMES = (
    "classical_tv",
    "classical_kl",
    "linear",
    "pm_kl",
    "pm_tv",
    "mix_kl",
    "mix_tv",
    "coupling",
    "adaptive_kl",
    "adaptive_tv",
    "adaptive",
    "unified",
)

#: The bounds whose minimum is the unified bound.
UNIFIED_MEMBERS = ("pm_kl", "pm_tv", "mix_kl", "mix_tv", "coupling", "adaptive")

_DIVERGENCES = ("kl_max", "tv_max", "kl_seq", "tv_seq")
_KEYS = (
    "T",
    *_DIVERGENCES,
    "per_position",
    "adv_range",
    "reward_range",
    "missing_mass",
    "status",
    "meta",
)
_TOL = 1e-9  # relative slack for rounding when checking relations between statistics


def _finite(name: str, value: Any) -> float:
    """``value`` as a finite float, else a :class:`StatsError` naming ``name``."""
    if isinstance(value, (bool, str, bytes)):
        raise StatsError(f"{name} must be a number, got {value!r}")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise StatsError(f"{name} must be a number, got {value!r}") from None
    if math.isnan(x) or math.isinf(x):
        raise StatsError(f"{name} must be finite, got {x}")
    return x


def _num(name: str, value: Any) -> float:
    x = _finite(name, value)
    if x < 0:
        raise StatsError(f"{name} must be non-negative, got {x:g}")
    return x


def check_divergence(name: str, value: Any) -> float:
    """A divergence statistic (or a missing mass) as a float: finite and non-negative,
    else :class:`StatsError` naming it. The one check of ``Stats`` and of ``check``'s
    assumption (:class:`trmbounds.logs.result.Assumption`).

    Examples
    --------
    >>> check_divergence("kl_max", "0.1")
    Traceback (most recent call last):
    ...
    trmbounds.errors.StatsError: kl_max must be a number, got '0.1'
    """
    return _num(name, value)


def check_reward_range(
    adv_range: Any, reward_range: Any
) -> tuple[float, tuple[float, float] | None]:
    """``(a, (lo, hi))`` validated: ``reward_range`` two finite numbers with ``hi > lo``
    (it sets ``a = hi - lo``), else ``adv_range`` a finite positive number; a
    :class:`StatsError` naming the problem otherwise.

    Examples
    --------
    >>> check_reward_range(1.0, (-1, 1))
    (2.0, (-1.0, 1.0))
    """
    if reward_range is not None:
        if isinstance(reward_range, (str, bytes)) or len(reward_range) != 2:
            raise StatsError(f"reward_range must be two numbers lo, hi; got {reward_range!r}")
        try:
            lo, hi = (float(x) for x in reward_range)
        except (TypeError, ValueError):
            raise StatsError(
                f"reward_range must be two numbers lo, hi; got {reward_range!r}"
            ) from None
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise StatsError(f"reward_range must be finite, got {lo}, {hi}")
        if not hi > lo:
            raise StatsError(f"reward_range: hi = {hi:g} must exceed lo = {lo:g}")
        return hi - lo, (lo, hi)
    a = _finite("adv_range", adv_range)
    if not a > 0:
        raise StatsError(
            f"adv_range must be positive (the range r_max - r_min of the rewards), got {a:g}"
        )
    return a, None


def check_maxima(kl_max: float | None, tv_max: float | None, estimated: bool = False) -> None:
    """The relations between assumed maxima: a TV is at most 1, and Pinsker's inequality
    ``tv_max <= sqrt(kl_max / 2)``. Raises :class:`StatsError` (``estimated``: no check of
    Pinsker, which Monte Carlo noise may break)."""
    if tv_max is not None and tv_max > 1:
        raise StatsError(f"tv_max = {tv_max:g} exceeds 1: a total variation is at most 1")
    if not estimated and kl_max is not None and tv_max is not None:
        if _exceeds(tv_max, math.sqrt(kl_max / 2)):
            raise StatsError(
                f"tv_max = {tv_max:g} exceeds sqrt(kl_max/2) = {math.sqrt(kl_max / 2):g}: "
                "contradicts Pinsker's inequality TV <= sqrt(KL/2)"
            )


def _exceeds(x: float, limit: float) -> bool:
    return x > limit * (1 + _TOL) + 1e-300


@dataclass(frozen=True)
class Stats:
    r"""Divergence statistics of one rollout/training policy pair.

    Parameters
    ----------
    T : int
        Response length (the maximum, for a batch of responses).
    kl_max : float, optional
        :math:`\delta = \max_{t,c} KL(\pi_{roll}(\cdot|c) \| \pi_\theta(\cdot|c))`.
    tv_max : float, optional
        :math:`\varepsilon = \max_{t,c} TV(c)`.
    kl_seq : float, optional
        :math:`D_{KL}^{seq}`, the KL between the whole-response distributions.
    tv_seq : float, optional
        :math:`D_{TV}^{seq}`, the TV between the whole-response distributions.
    per_position : array_like of length L <= T, optional
        :math:`\bar D_t = E_{c_t \sim d_t^{roll}}[TV(c_t)]`, :math:`t = 1..L`. Positions
        beyond ``L`` (no measured response reached them) are *unknown*, not 0: every
        bound uses the value that holds there, :math:`\min(1, \varepsilon,
        \sqrt{\delta/2})` (docs/theory.md, "Unseen positions").
    adv_range : float, default 1
        :math:`a = r_{max} - r_{min}`; every bound is multiplied by it.
    reward_range : (float, float), optional
        ``(lo, hi)``; sets ``adv_range = hi - lo``.
    missing_mass : float, optional
        :math:`m`, the expected mass :math:`\pi_\theta` puts outside the support of
        :math:`\pi_{roll}`, summed over positions (docs/theory.md §6). ``None`` assumes full
        support; a positive value adds :math:`\max(|r_{min}|, |r_{max}|)\,m` to the
        PDI-family bounds (:math:`a\,m` when only ``adv_range`` is given: rewards are
        then taken to lie in :math:`[0, a]`) and drops the Adaptive bounds, which need
        full support. Without full support the error is not invariant under shifting
        the reward, so the reward range itself matters, not only its width.
    status : mapping, optional
        What each statistic rests on, one of :data:`STATUSES`; defaults to
        ``"assumed"`` for every statistic given.
    meta : mapping, optional
        Free-form provenance (e.g. what ``trmbounds measure`` measured); kept, not used.

    Raises
    ------
    StatsError
        With a message naming the problem, for a statistic that is invalid or
        contradicts another (e.g. :math:`\varepsilon > \sqrt{\delta/2}`, which
        Pinsker's inequality forbids).

    Examples
    --------
    >>> Stats(T=4096, kl_max=1e-4, tv_max=5e-3).tv_max
    0.005
    >>> Stats(T=4096, kl_max=1e-4, tv_max=0.01)
    Traceback (most recent call last):
    ...
    trmbounds.errors.StatsError: tv_max = 0.01 exceeds sqrt(kl_max/2) = 0.00707107: contradicts Pinsker's inequality TV <= sqrt(KL/2)
    """

    T: int
    kl_max: float | None = None
    tv_max: float | None = None
    kl_seq: float | None = None
    tv_seq: float | None = None
    per_position: np.ndarray | None = field(default=None, repr=False)
    adv_range: float = 1.0
    reward_range: tuple[float, float] | None = None
    missing_mass: float | None = None
    status: Mapping[str, str] = field(default_factory=dict)
    meta: Mapping[str, Any] = field(default_factory=dict, repr=False)
    #: Contradictions between statistics of which at least one is estimated
    #: (Monte Carlo noise, not a mistake): reported, not raised.
    warnings: tuple[str, ...] = field(default=(), init=False, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        T = self.T
        if isinstance(T, bool) or not isinstance(T, (int, np.integer, float, np.floating)):
            raise StatsError(f"T must be a positive integer, got {T!r}")
        if isinstance(T, (float, np.floating)) and not float(T).is_integer():
            raise StatsError(f"T must be a positive integer, got {T!r}")
        if not T >= 1:
            raise StatsError(f"T must be a positive integer, got {T!r}")
        set_(self, "T", int(T))
        for name in _DIVERGENCES:
            v = getattr(self, name)
            if v is not None:
                set_(self, name, _num(name, v))
        a, rr = check_reward_range(self.adv_range, self.reward_range)
        set_(self, "adv_range", a)
        set_(self, "reward_range", rr)
        if self.missing_mass is not None:
            set_(self, "missing_mass", _num("missing_mass", self.missing_mass))
        if self.per_position is not None:
            set_(self, "per_position", _check_per_position(self.per_position, self.T))
        status = dict(self.status)
        for k, v in status.items():
            if k not in (*_DIVERGENCES, "per_position", "missing_mass"):
                raise StatsError(f"status given for unknown statistic {k!r}")
            if v not in STATUSES:
                raise StatsError(f"status of {k} must be one of {', '.join(STATUSES)}; got {v!r}")
        for k in (*_DIVERGENCES, "per_position", "missing_mass"):
            if getattr(self, k) is not None:
                status.setdefault(k, "assumed")
            else:
                status.pop(k, None)
        set_(self, "status", status)
        set_(self, "meta", dict(self.meta))
        self._check_relations()

    def _contra(self, msg: str, *keys: str) -> None:
        """A contradiction: an error if every statistic involved is assumed or certified."""
        if all(self.status.get(k, "assumed") in ("assumed", "certified") for k in keys):
            raise StatsError(msg)
        object.__setattr__(self, "warnings", (*self.warnings, msg + " (estimated inputs)"))

    def _check_relations(self) -> None:
        T, d, e = self.T, self.kl_max, self.tv_max
        if e is not None and e > 1:
            raise StatsError(f"tv_max = {e:g} exceeds 1: a total variation is at most 1")
        if self.tv_seq is not None and self.tv_seq > 1:
            raise StatsError(f"tv_seq = {self.tv_seq:g} exceeds 1: a total variation is at most 1")
        if d is None and e is None:
            raise StatsError("need kl_max or tv_max: every bound depends on a token-level maximum")
        if d is not None and e is not None and _exceeds(e, math.sqrt(d / 2)):
            self._contra(
                f"tv_max = {e:g} exceeds sqrt(kl_max/2) = {math.sqrt(d / 2):g}: "
                "contradicts Pinsker's inequality TV <= sqrt(KL/2)",
                "tv_max",
                "kl_max",
            )
        if d is not None and self.kl_seq is not None and _exceeds(self.kl_seq, T * d):
            self._contra(
                f"kl_seq = {self.kl_seq:g} exceeds T*kl_max = {T * d:g}: "
                "a sequence KL is at most T times the largest token KL",
                "kl_seq",
                "kl_max",
            )
        if self.kl_seq is not None and self.tv_seq is not None:
            lim = math.sqrt(self.kl_seq / 2)
            if _exceeds(self.tv_seq, lim):
                self._contra(
                    f"tv_seq = {self.tv_seq:g} exceeds sqrt(kl_seq/2) = {lim:g}: "
                    "contradicts Pinsker's inequality",
                    "tv_seq",
                    "kl_seq",
                )
        if e is not None and self.tv_seq is not None and _exceeds(self.tv_seq, T * e):
            self._contra(
                f"tv_seq = {self.tv_seq:g} exceeds T*tv_max = {T * e:g}: "
                "a sequence TV is at most the sum of the token TVs",
                "tv_seq",
                "tv_max",
            )
        pp = self.per_position
        if pp is not None:
            if (pp > 1).any():
                t = int(np.argmax(pp > 1)) + 1
                raise StatsError(
                    f"per_position[t={t}] = {pp[t - 1]:g} exceeds 1: a TV is at most 1"
                )
            cap = min(e if e is not None else 1.0, math.sqrt(d / 2) if d is not None else 1.0)
            top = float(pp.max())
            if _exceeds(top, cap):
                t = int(pp.argmax()) + 1
                self._contra(
                    f"per_position[t={t}] = {top:g} exceeds min(tv_max, sqrt(kl_max/2)) "
                    f"= {cap:g}: a mean TV cannot exceed its maximum",
                    "per_position",
                    *(k for k in ("tv_max", "kl_max") if getattr(self, k) is not None),
                )
            # positions beyond the array are unknown: at most cap each
            total = float(pp.sum()) + (T - len(pp)) * cap
            if self.tv_seq is not None and _exceeds(self.tv_seq, total):
                self._contra(
                    f"tv_seq = {self.tv_seq:g} exceeds the sum of per_position = "
                    f"{total:g}: a sequence TV is at most the sum of the position TVs",
                    "tv_seq",
                    "per_position",
                )
        mm = self.missing_mass
        if mm is not None and mm > T:
            raise StatsError(f"missing_mass = {mm:g} exceeds T = {T}: it is at most 1 per position")

    # ------------------------------------------------------------------ I/O
    def to_dict(self) -> dict[str, Any]:
        """The statistics as a JSON-ready dict (the statistics-file schema)."""
        pp = self.per_position
        return {
            "T": self.T,
            "kl_max": self.kl_max,
            "tv_max": self.tv_max,
            "kl_seq": self.kl_seq,
            "tv_seq": self.tv_seq,
            "per_position": None if pp is None else [float(x) for x in pp],
            "adv_range": self.adv_range,
            "reward_range": None if self.reward_range is None else list(self.reward_range),
            "missing_mass": self.missing_mass,
            "status": dict(self.status),
            "meta": dict(self.meta),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base_dir: str | os.PathLike | None = None) -> Stats:
        """Build from a statistics-file dict; unknown keys are an error (they are typos).

        ``per_position`` may be a list of numbers or the path of an array file
        (.npy, .csv, .json), relative to ``base_dir``.
        """
        if not isinstance(data, Mapping):
            raise StatsError(f"statistics must be a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - set(_KEYS))
        if unknown:
            raise StatsError(f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(_KEYS)}")
        if "T" not in data or data["T"] is None:
            raise StatsError("statistics need 'T', the response length")
        kw = {k: data[k] for k in _KEYS if k in data and data[k] is not None}
        if "adv_range" in kw and "reward_range" in kw:
            # Stats.to_dict writes both (adv_range = hi - lo); a disagreement is a mistake.
            rr = cls(T=1, kl_max=0.0, reward_range=kw["reward_range"]).adv_range
            a = _num("adv_range", kw["adv_range"])
            if abs(a - rr) > 1e-9 * max(abs(a), abs(rr)):
                raise StatsError(
                    f"adv_range = {a:g} disagrees with reward_range {list(kw['reward_range'])} "
                    f"(hi - lo = {rr:g}); give one of them"
                )
        pp = kw.get("per_position")
        if isinstance(pp, (str, os.PathLike)):
            from pathlib import Path

            p = Path(pp)
            if base_dir is not None and not p.is_absolute():
                p = Path(base_dir) / p
            kw["per_position"] = load_per_position(p)
        elif pp is not None:
            kw["per_position"] = _as_array(pp, "per_position")
        if "status" in kw and not isinstance(kw["status"], Mapping):
            raise StatsError("status must be an object mapping statistic names to statuses")
        if "meta" in kw and not isinstance(kw["meta"], Mapping):
            raise StatsError("meta must be an object")
        return cls(**kw)

    def at_horizon(self, T: int) -> Stats:
        r"""The same statistics at a longer horizon ``T`` (e.g. the generation cap).

        Every bound grows with ``T``. A per-position array is kept as it is: the positions
        beyond it are unknown (no measured response reached them; a rare longer response
        may exist), and the bounds fill them with the value that holds there,
        :math:`\min(1, \varepsilon, \sqrt{\delta/2})` -- never with zeros. Nothing of
        length ``T`` is allocated, so a huge horizon costs what a small one does. A horizon
        shorter than the statistics' ``T`` is refused: longer responses exist.

        Examples
        --------
        >>> s = Stats(T=2, kl_max=1e-4, per_position=[1e-3, 2e-3]).at_horizon(10**9)
        >>> s.T, s.per_position.tolist()
        (1000000000, [0.001, 0.002])
        """
        T = int(T)
        if T < self.T:
            raise StatsError(
                f"horizon T = {T} is shorter than the statistics' T = {self.T}: responses of "
                f"length {self.T} were measured, so the horizon is at least that"
            )
        if T == self.T:
            return self
        return self.replace(T=T)

    def replace(self, **changes: Any) -> Stats:
        """A copy with some fields changed (validated again)."""
        d = {k: getattr(self, k) for k in _KEYS}
        if "reward_range" not in changes and "adv_range" in changes:
            d["reward_range"] = None
        d.update(changes)
        if "status" not in changes:
            d["status"] = {k: v for k, v in self.status.items() if k not in changes}
        return Stats(**d)


def _as_array(values: Any, what: str) -> np.ndarray:
    try:
        raw = np.asarray(values)
        if raw.dtype.kind not in "iuf":  # strings, booleans, objects: not numbers
            raise TypeError
        arr = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError, RecursionError):
        raise StatsError(f"{what} must be an array of numbers") from None
    return arr


def _check_per_position(values: Any, T: int) -> np.ndarray:
    arr = _as_array(values, "per_position")
    if arr.ndim != 1:
        raise StatsError(f"per_position must be one-dimensional, got shape {arr.shape}")
    if arr.size > T:
        raise StatsError(f"per_position has length {arr.size}, more than T = {T}")
    if arr.size == 0:
        raise StatsError("per_position is empty")
    bad = ~np.isfinite(arr)
    if bad.any():
        t = int(np.argmax(bad)) + 1
        raise StatsError(f"per_position[t={t}] is {arr[t - 1]}: values must be finite")
    if (arr < 0).any():
        t = int(np.argmax(arr < 0)) + 1
        raise StatsError(f"per_position[t={t}] = {arr[t - 1]:g} is negative")
    arr = arr.copy()
    arr.setflags(write=False)
    return arr


def load_per_position(path: str | os.PathLike) -> np.ndarray:
    """Read a per-position array :math:`\\bar D_t` from .npy, .csv or .json.

    ``.npy``: a 1-D float array (never unpickled). ``.csv``: numbers separated by
    commas or newlines, one optional header line. ``.json``: an array, or an object
    with a ``per_position`` array.
    """
    from pathlib import Path

    from . import _io

    p = Path(path)
    _exists(p, "per-position file")
    ext = p.suffix.lower()
    try:
        if ext == ".npy":
            arr = _io.load_npy(p)
        elif ext == ".json":
            data = _io.load_json(p, "per-position file")
            if isinstance(data, Mapping):
                if "per_position" not in data:
                    raise InputFileError(f"{p}: JSON object has no 'per_position' array")
                data = data["per_position"]
            if not isinstance(data, list) or not all(
                isinstance(x, (int, float)) and not isinstance(x, bool) for x in data
            ):
                raise InputFileError(f"{p}: per_position must be a JSON array of numbers")
            arr = _as_array(data, f"{p}")
        elif ext in (".csv", ".txt"):
            arr = _read_csv_numbers(p)
        else:
            raise InputFileError(
                f"{p}: unknown per-position format {ext!r}; use .npy, .csv or .json"
            )
    except StatsError as exc:
        raise InputFileError(f"{p}: {exc}") from None
    arr = np.asarray(arr)
    if arr.dtype.kind not in "fiu":
        raise InputFileError(f"{p}: expected numbers, got dtype {arr.dtype}")
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim == 2 and 1 in arr.shape:  # a single row or column
        arr = arr.reshape(-1)
    return arr


def _read_csv_numbers(p: Path) -> np.ndarray:
    from . import _io

    values: list[float] = []
    for lineno, line in enumerate(_io.read_text(p, "per-position file").splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        for cell in line.split(","):
            cell = cell.strip()
            if not cell:
                continue
            try:
                values.append(float(cell))
            except ValueError:
                if lineno == 1 and not values:
                    break  # a header line
                shown = cell if len(cell) <= 40 else cell[:37] + "..."
                raise InputFileError(f"{p}: line {lineno}: {shown!r} is not a number") from None
    return np.asarray(values, dtype=np.float64)


def _exists(p, what: str) -> None:
    """A missing path or a directory named as such; anything else (a FIFO, a device) is
    left to the reader, which names the reason (and reads a pipe)."""
    if p.is_dir():
        raise InputFileError(f"{what} {p} is a directory, not a file")
    if not p.exists():
        raise InputFileError(f"{what} not found: {p}")


def _first_line_is_object(p) -> bool:
    import json

    try:
        with open(p, "rb") as fh:
            line = fh.readline(1 << 20)
        return isinstance(json.loads(line), dict)
    except (OSError, ValueError, RecursionError):
        return False


def load_stats(path: str | os.PathLike) -> Stats:
    """Read a statistics file (JSON, schema of :meth:`Stats.to_dict`)."""
    from pathlib import Path

    from . import _io

    p = Path(path)
    _exists(p, "statistics file")
    try:
        data = _io.load_json(p, "statistics file")
    except InputFileError as exc:
        if "Extra data" in str(exc) and _first_line_is_object(p):
            raise InputFileError(
                f"{p} looks like a metric log (one JSON object per line), not a statistics "
                f"file: check it with `trmbounds check {p}`"
            ) from None
        raise
    try:
        return Stats.from_dict(data, base_dir=p.parent)
    except InputFileError:
        raise
    except StatsError as exc:
        raise StatsError(f"{p}: {exc}") from None


# ---------------------------------------------------------------------- evaluate
@dataclass(frozen=True)
class Derived:
    """A statistic filled in by a conservative relation (never an estimate)."""

    value: float
    rule: str

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "rule": self.rule}


@dataclass(frozen=True)
class Result:
    """Every bound for one :class:`Stats`, in reward units.

    Attributes
    ----------
    stats : Stats
    constants : str
    bounds : dict
        Bound name (:data:`BOUND_NAMES`) to value, or ``None`` when it cannot be
        computed from the statistics.
    derived : dict
        Statistic name to :class:`Derived`, for every input that was filled in.
    closed_forms : dict
        The paper's small-divergence closed forms of the Pinsker-Marginal bounds.
    tightest : str
        The member of the unified bound that attains it.
    notes : list of str
        Validity conditions that apply to these numbers (docs/theory.md §6).
    """

    stats: Stats
    constants: str
    bounds: dict[str, float | None]
    derived: dict[str, Derived]
    closed_forms: dict[str, float]
    tightest: str
    notes: tuple[str, ...]

    @property
    def unified(self) -> float:
        """The unified bound :math:`B^*`."""
        return self.bounds["unified"]  # type: ignore[return-value]

    @property
    def vacuous(self) -> bool:
        """True when :math:`B^* \\ge a`: the bound guarantees nothing."""
        return self.unified >= self.stats.adv_range

    @property
    def basis(self) -> str:
        """The weakest status among the statistics the bound used.

        ``certified`` only if every used statistic is; otherwise ``assumed`` (the
        guarantee holds if the assumptions do) or, weaker, ``estimate``.
        """
        statuses = set(self.stats.status.values())
        if statuses & {"empirical", "estimate", "proxy", "lower_bound"}:
            return "estimate"
        if "assumed" in statuses:
            return "assumed"
        return "certified"

    def to_dict(self) -> dict[str, Any]:
        """The ``trmbounds eval --json`` object."""
        return {
            "inputs": self.stats.to_dict(),
            "derived": {k: v.to_dict() for k, v in self.derived.items()},
            "constants": self.constants,
            "bounds": dict(self.bounds),
            "tightest": self.tightest,
            "unified": self.unified,
            "vacuous": self.vacuous,
            # certified / assumed / estimate: what the guarantee rests on (as in check)
            "basis": self.basis,
        }


def stats_cap(stats: Stats) -> int | None:
    """The generation cap a statistics file records, if any: ``meta.sampling.max_new_tokens``
    (what ``trmbounds measure`` writes) or ``meta.max_new_tokens``; ``None`` otherwise.

    Examples
    --------
    >>> stats_cap(Stats(T=10, kl_max=1e-4, meta={"sampling": {"max_new_tokens": 64}}))
    64
    """
    meta = stats.meta if isinstance(stats.meta, Mapping) else {}
    samp = meta.get("sampling")
    for v in (samp.get("max_new_tokens") if isinstance(samp, Mapping) else None,
              meta.get("max_new_tokens")):  # fmt: skip
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 1:
            return int(math.ceil(v))
    return None


def _nan(x) -> np.ndarray:
    return np.asarray(np.nan if x is None else x, dtype=np.float64)


#: The PDI-family bounds: with missing mass m they hold with + max|R|·m added.
_PDI = ("classical_tv", "classical_kl", "linear", "pm_kl", "pm_tv", "mix_kl", "mix_tv", "coupling")
_ADAPTIVE = ("adaptive_kl", "adaptive_tv", "adaptive")


def _same(x: np.ndarray) -> bool:
    """Every entry equal (all NaN counts as equal)."""
    x = np.asarray(x)
    return x.ndim == 0 or bool(np.all(x == x.flat[0])) or bool(np.all(np.isnan(x)))


#: T-only bounds on the grid T = 1..n, per (delta, eps, bounds, a, constants): the blocks
#: of one log (and its two bounds, under the assumption and under the estimates) share it.
_GRID_CACHE: dict[tuple, dict[str, np.ndarray]] = {}


def _grid(T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values of T to evaluate, and each row's index into them: 1..max T when every T is
    a whole number not far beyond the number of rows (no sort), else the distinct T."""
    top = float(T.max(initial=0.0))
    if 1 <= T.min(initial=1.0) and top <= max(4 * T.size, 1 << 16) and np.all(T == np.floor(T)):
        return np.arange(1.0, top + 1.0), T.astype(np.int64) - 1
    uT, inv = np.unique(T, return_inverse=True)
    return uT, inv.reshape(-1)


def _length_bounds(T, kl, eps, c, dbar, pp, need, adv_range, constants):
    """The bounds that depend on T, delta and eps only (and D̄_t for the Adaptive ones)."""
    kw = dict(adv_range=adv_range, constants=constants)
    lead = B._lead(constants)
    fns = {
        "classical_tv": lambda: B.classical_tv(T, eps, **kw),
        "classical_kl": lambda: B.classical_kl(T, kl, **kw),
        "linear": lambda: B.linear(T, eps, **kw),
        "pm_kl": lambda: B.pm_kl(T, kl, **kw),
        "pm_tv": lambda: B.pm_tv(T, kl, eps, **kw),
        "coupling": lambda: B.coupling(T, eps, **kw),
    }
    out = {k: np.asarray(f(), dtype=np.float64) for k, f in fns.items() if k in need}
    routes = {"adaptive_kl": (np.inf, c), "adaptive_tv": (eps, np.inf), "adaptive": (eps, c)}
    for name, (e_r, c_r) in routes.items():
        if name not in need:
            continue
        if pp is None:
            out[name] = dbar * B._adaptive(T, e_r, c_r, 1.0, adv_range, constants)
            continue
        Tu = np.unique(T)
        if Tu.size != 1 or pp.shape[-1] > Tu[0]:
            raise StatsError(
                f"per-position array of length {pp.shape[-1]} needs one T of at least "
                f"that length, got T = {Tu.tolist()[:5]}"
            )
        e1 = np.unique(np.broadcast_to(e_r, np.shape(T)))
        c1 = np.unique(np.broadcast_to(c_r, np.shape(T)))
        if e1.size != 1 or c1.size != 1:
            raise StatsError("a per-position array needs one kl_max and one tv_max")
        L = pp.shape[-1]
        w = B._weights(Tu[0], e1[0], c1[0], n=L)
        total = adv_range * lead * np.sum(pp * w)
        if L < Tu[0]:
            # positions L+1..T, unseen: D̄_t <= min(1, eps, sqrt(delta/2)); their weights
            # are those of a uniform Adaptive bound over the last T - L positions
            d_tail = float(np.minimum(1.0, np.minimum(np.asarray(eps).flat[0], c1[0])))
            total = total + B._adaptive(Tu[0] - L, e1[0], c1[0], d_tail, adv_range, constants)
        out[name] = np.broadcast_to(total, np.shape(T))
    return out


def _ragged_adaptive(T, eps, c, pps, need, adv_range, constants) -> dict[str, np.ndarray]:
    """The Adaptive bounds row by row, each row with its own D̄_t array (a log's steps);
    positions past a row's array take min(1, eps, sqrt(delta/2)) (see bound_columns)."""
    T, eps, c = np.broadcast_arrays(
        np.asarray(T, float), np.asarray(eps, float), np.asarray(c, float)
    )
    if len(pps) != T.size:
        raise StatsError(f"{len(pps)} per-position arrays for {T.size} rows")
    lead = B._lead(constants)
    routes = {"adaptive_kl": (True, False), "adaptive_tv": (False, True), "adaptive": (True, True)}
    out = {k: np.full(T.shape, np.nan) for k in routes if k in need}
    for i, (Ti, ei, ci, d) in enumerate(zip(T.flat, eps.flat, c.flat, pps)):
        if np.isnan(Ti) or np.isnan(ei):
            continue
        L = d.shape[-1]
        if L > Ti:
            raise StatsError(f"per-position array of length {L} is longer than T = {Ti:g}")
        d_tail = min(1.0, ei, ci)
        for name in out:
            use_c, use_e = routes[name]
            e_r = ei if use_e else np.inf
            c_r = ci if use_c else np.inf
            if np.isinf(e_r) and np.isinf(c_r):
                continue  # the KL route without delta: NaN
            w = B._weights(Ti, e_r, c_r, n=L)
            v = adv_range * lead * float(np.dot(d, w))
            if L < Ti:
                v += float(B._adaptive(Ti - L, e_r, c_r, d_tail, adv_range, constants))
            out[name].flat[i] = v
    return out


def _pp_total(pp: np.ndarray, T, eps, kl) -> np.ndarray:
    """An upper bound on sum_t D̄_t over t = 1..T from an array of the first L positions:
    its sum plus (T - L) min(1, eps, sqrt(delta/2)) for the positions no response reached."""
    tail = np.maximum(np.asarray(T, dtype=np.float64) - pp.shape[-1], 0.0)
    with np.errstate(invalid="ignore"):
        c = np.where(np.isnan(kl), np.inf, np.sqrt(np.asarray(kl, dtype=np.float64) / 2.0))
        d = np.minimum(1.0, np.minimum(eps, c))
        return np.sum(pp, axis=-1) + np.where(tail > 0, tail * d, 0.0)


def bound_columns(
    T,
    kl_max=None,
    tv_max=None,
    kl_seq=None,
    tv_seq=None,
    per_position=None,
    *,
    adv_range: float = 1.0,
    reward_range: tuple[float, float] | None = None,
    missing_mass=None,
    constants: str = "paper",
    full: bool = True,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    r"""Every bound, broadcasting over steps, where NaN (or ``None``) means "not known".

    The one evaluation path of trmbounds: :func:`evaluate` (``trmbounds eval``) and
    ``trmbounds check`` both call it. Missing statistics are filled only with valid upper
    bounds (:math:`\varepsilon \le \min(1,\sqrt{\delta/2})`,
    :math:`D_{KL}^{seq} \le T\delta`,
    :math:`D_{TV}^{seq} \le \min(1, \sqrt{D_{KL}^{seq}/2}, \sum_t \bar D_t, T\varepsilon)`,
    :math:`\bar D_t \le \min(1, \varepsilon, \sqrt{\delta/2})`); bounds that need an
    unknown :math:`\delta` are NaN. With ``missing_mass`` :math:`m > 0` (not full support,
    ``docs/theory.md`` §6) the PDI-family bounds get :math:`+\max(|r_{min}|, |r_{max}|)\,m`
    (:math:`a\,m` when only ``adv_range`` is given: rewards in :math:`[0, a]`) and the
    Adaptive bounds are NaN.

    ``per_position`` is one array of length :math:`L \le T`, for a ``T`` that holds one
    value. Positions :math:`L < t \le T` are unknown, not 0 (no measured response reached
    them, but a rare longer one may exist): they get the bound that holds there,
    :math:`\min(1, \varepsilon, \sqrt{\delta/2})`, summed in closed form (O(1) in ``T``).

    Returns
    -------
    bounds : dict
        :data:`BOUND_NAMES` to arrays (``unified``: the NaN-ignoring minimum of
        :data:`UNIFIED_MEMBERS`; NaN where neither :math:`\delta` nor :math:`\varepsilon`
        is known).
    filled : dict
        ``tv_max``, ``kl_seq``, ``tv_seq``, ``per_position`` (uniform fill; the array's sum
        when one was given) as used, after filling.

    Examples
    --------
    >>> b, _ = bound_columns([4096, 4096], [1e-4, np.nan], 5e-3, [0.01, np.nan], 0.05)
    >>> [round(float(x), 3) for x in b["unified"]]     # column B of the paper: 4.1
    [4.096, 4.096]
    >>> bool(np.isnan(b["pm_kl"][1]))                  # needs delta
    True
    """
    B._lead(constants)
    T0 = _nan(T)
    kl = _nan(kl_max)
    e_in = _nan(tv_max)
    pp = None
    ragged = None  # one D̄_t array per row (a log's steps): list of 1-d arrays
    if isinstance(per_position, (list, tuple)) or (
        isinstance(per_position, np.ndarray) and per_position.dtype == object
    ):
        ragged = [np.asarray(x, dtype=np.float64) for x in per_position]
        per_position = None
    if per_position is not None and np.ndim(per_position) > 0:
        pp = np.asarray(per_position, dtype=np.float64)
    kw = dict(adv_range=adv_range, constants=constants)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        shape = np.broadcast_shapes(T0.shape, kl.shape, e_in.shape)
        T0 = np.broadcast_to(T0, shape)
        # delta and eps stay scalars when they are (one assumption for a whole log)
        eps = np.where(np.isnan(e_in), np.minimum(1.0, np.sqrt(kl / 2.0)), e_in)
        ks_in = _nan(kl_seq)
        kseq = np.where(np.isnan(ks_in), T0 * kl, ks_in)
        Ts = np.where(np.isnan(T0), 1.0, T0)  # keeps the closed forms quiet; masked below
        ts_in = _nan(tv_seq)
        if np.ndim(ts_in) == 0 and not np.isnan(ts_in):
            tseq = np.broadcast_to(ts_in, shape)
        else:
            fill = np.fmin(np.fmin(1.0, np.sqrt(kseq / 2.0)), Ts * eps)
            if pp is not None:
                fill = np.fmin(fill, _pp_total(pp, Ts, eps, kl))
            if ragged is not None:
                tot = np.array([_pp_total(x, t, e, k) for x, t, e, k in zip(
                    ragged, *np.broadcast_arrays(Ts, eps, kl))])  # fmt: skip
                fill = np.fmin(fill, tot)
            tseq = np.where(np.isnan(ts_in), fill, ts_in)
        c = np.where(np.isnan(kl), np.inf, np.sqrt(kl / 2.0))  # KL route off without delta
        dbar = np.minimum(1.0, np.minimum(eps, c))  # uniform fill of D̄_t
        need = BOUND_NAMES if full else UNIFIED_MEMBERS
        v: dict[str, np.ndarray] = {}
        if "mix_kl" in need:
            v["mix_kl"] = B.mix_kl(Ts, kl, kseq, **kw)
        v["mix_tv"] = B.mix_tv(Ts, eps, tseq, **kw)
        # The other bounds depend on T, delta and eps alone: with one delta and one eps
        # (a log checked under one assumption) they are computed once per distinct T
        # (on a grid 1..max T when the lengths are whole numbers), then looked up.
        one = ragged is None and Ts.ndim == 1 and Ts.size > 64 and _same(kl) and _same(eps)
        idx = None
        if one:
            grid, idx = _grid(Ts)
            k1, e1, c1, d1 = (np.asarray(x).reshape(-1)[:1] for x in (kl, eps, c, dbar))
            key = None
            if pp is None and grid[0] == 1.0 and grid.size == grid[-1]:  # the 1..max grid
                key = (float(k1[0]), float(e1[0]), tuple(need), adv_range, constants)
            hit = _GRID_CACHE.get(key) if key is not None else None
            if hit is not None and len(next(iter(hit.values()))) >= grid.size:
                rest = hit
            else:
                if key is not None:  # grow geometrically: a log's blocks share the table
                    size = max(grid.size, 2 * len(next(iter(hit.values()))) if hit else 0)
                    grid = np.arange(1.0, size + 1.0)
                rest = _length_bounds(grid, k1, e1, c1, d1, pp, need, adv_range, constants)
                rest = {k: np.broadcast_to(x, grid.shape).copy() for k, x in rest.items()}
                if key is not None:
                    if len(_GRID_CACHE) >= 8:
                        _GRID_CACHE.clear()
                    _GRID_CACHE[key] = rest
            rest = dict(rest)  # entries are replaced below, never modified in place
        else:
            rest = _length_bounds(Ts, kl, eps, c, dbar, pp, need, adv_range, constants)
            if ragged is not None:
                rest.update(_ragged_adaptive(Ts, eps, c, ragged, need, adv_range, constants))
        for k in _ADAPTIVE:
            if k in rest:
                rest[k] = np.where(np.isnan(e1 if one else eps), np.nan, rest[k])
        if "adaptive_kl" in rest:
            rest["adaptive_kl"] = np.where(np.isnan(k1 if one else kl), np.nan,
                                           rest["adaptive_kl"])  # fmt: skip
        m = _nan(missing_mass)
        r_abs = adv_range
        if reward_range is not None:
            r_abs = max(abs(reward_range[0]), abs(reward_range[1]))
        if m.ndim == 0 or one is False:
            # a missing mass the same for every row (or rows evaluated one by one)
            mm = m if m.ndim == 0 else m * np.ones_like(T0)
            lost = ~np.isnan(mm) & (mm > 0)
            if np.any(lost):
                for name in _PDI:
                    if name in rest:
                        rest[name] = np.where(lost, rest[name] + r_abs * mm, rest[name])
                    if name in v:
                        v[name] = np.where(lost, v[name] + r_abs * mm, v[name])
                for name in _ADAPTIVE:
                    if name in rest:
                        rest[name] = np.where(lost, np.nan, rest[name])
            low = np.fmin.reduce(
                np.broadcast_arrays(*[rest[k] for k in UNIFIED_MEMBERS if k in rest])
            )
            low = low[idx] if one else low
            u = np.fmin(np.fmin(v.get("mix_kl", np.nan), v["mix_tv"]), low)
            if full:
                for k, x in rest.items():
                    v[k] = np.broadcast_to(x[idx] if one else x, shape)
        else:  # a per-row missing mass with the T-only bounds on a grid: expand, then correct
            for k, x in rest.items():
                v[k] = x[idx]
            mm = m * np.ones_like(T0)
            lost = ~np.isnan(mm) & (mm > 0)
            for name in _PDI:
                if name in v:
                    v[name] = np.where(lost, v[name] + r_abs * mm, v[name])
            for name in _ADAPTIVE:
                if name in v:
                    v[name] = np.where(lost, np.nan, v[name])
            u = np.fmin.reduce(np.broadcast_arrays(*[v[k] for k in UNIFIED_MEMBERS]))
        v["unified"] = np.where(np.isnan(eps) | np.isnan(T0), np.nan, u)
    out = {
        k: np.asarray(np.broadcast_to(v[k], shape), dtype=np.float64) for k in BOUND_NAMES if k in v
    }
    filled = {
        k: np.broadcast_to(x, shape)
        for k, x in (
            ("tv_max", eps),
            ("kl_seq", kseq),
            ("tv_seq", tseq),
            ("per_position", dbar if pp is None else _pp_total(pp, Ts, eps, kl)),
        )
    }
    return out, filled


def evaluate(stats: Stats, constants: str = "paper") -> Result:
    r"""Evaluate every bound of the paper for ``stats``.

    Missing statistics are filled only with valid upper bounds, each
    recorded in :attr:`Result.derived`:
    :math:`\varepsilon \le \min(1, \sqrt{\delta/2})`,
    :math:`D_{KL}^{seq} \le T\delta`,
    :math:`D_{TV}^{seq} \le \min(1, \sqrt{D_{KL}^{seq}/2}, \sum_t \bar D_t, T\varepsilon)`,
    :math:`\bar D_t \le \min(1, \varepsilon, \sqrt{\delta/2})` (uniform).
    Without ``kl_max`` the KL-based bounds (and PM-TV, which needs :math:`\delta`)
    are ``None``. The numbers come from :func:`bound_columns`, as in ``trmbounds check``.

    Parameters
    ----------
    stats : Stats
    constants : {"paper", "sharp"}
        ``"paper"`` reproduces the paper; ``"sharp"`` uses the halved constants
        proven in ``docs/theory.md``.

    Returns
    -------
    Result

    Examples
    --------
    The paper's Table, column B (T = 4096):

    >>> r = evaluate(Stats(T=4096, kl_max=1e-4, tv_max=5e-3, kl_seq=0.01, tv_seq=0.05))
    >>> r.tightest, round(r.unified, 3), r.vacuous   # vacuous: 4.096 >= a = 1
    ('mix_tv', 4.096, True)
    >>> round(r.bounds["pm_kl"], 4), round(r.bounds["coupling"], 1)
    (34.9461, 79.9)
    """
    B._lead(constants)
    s = stats
    T, d = s.T, s.kl_max
    cols, filled = bound_columns(
        T,
        d,
        s.tv_max,
        s.kl_seq,
        s.tv_seq,
        s.per_position,
        adv_range=s.adv_range,
        reward_range=s.reward_range,
        missing_mass=s.missing_mass,
        constants=constants,
    )
    derived: dict[str, Derived] = {}
    if s.tv_max is None:
        derived["tv_max"] = Derived(float(filled["tv_max"]), "min(1, sqrt(kl_max/2)) (Pinsker)")
    if s.kl_seq is None and d is not None:
        derived["kl_seq"] = Derived(float(filled["kl_seq"]), "T * kl_max (chain rule of KL)")
    if s.tv_seq is None:
        parts = ["1"]
        if s.kl_seq is not None or d is not None:
            parts.append("sqrt(kl_seq/2)")
        if s.per_position is not None:
            parts.append("sum_t per_position")
        parts.append("T * tv_max")
        derived["tv_seq"] = Derived(float(filled["tv_seq"]), "min(" + ", ".join(parts) + ")")
    rule = "min(1, tv_max, sqrt(kl_max/2))" if d is not None else "min(1, tv_max)"
    if s.per_position is None:
        derived["per_position"] = Derived(float(filled["per_position"]), rule + ", uniform over t")
    elif len(s.per_position) < T:
        L = len(s.per_position)
        c = math.sqrt(d / 2) if d is not None else math.inf
        derived["per_position"] = Derived(
            min(1.0, float(filled["tv_max"]), c),
            f"{rule} at t = {L + 1:,}..{T:,} (no measured response reached them: unknown, not 0)",
        )

    vals: dict[str, float | None] = {
        k: (None if np.isnan(x) else float(x)) for k, x in cols.items()
    }
    notes: list[str] = []
    m = s.missing_mass
    if m is not None and m > 0:
        if s.reward_range is not None:
            lo, hi = s.reward_range
            r_abs, where = max(abs(lo), abs(hi)), f"rewards in [{lo:g}, {hi:g}]"
        else:
            r_abs, where = s.adv_range, f"rewards assumed in [0, a = {s.adv_range:g}]"
        notes.append(
            f"support: π_θ puts mass m = {m:g} outside π_roll's support; the PDI-family "
            f"bounds include + max|R|·m = {r_abs * m:g} ({where}); the Adaptive bounds "
            "need full support and are dropped"
        )
    members = {k: vals[k] for k in UNIFIED_MEMBERS if vals[k] is not None}
    tightest = min(members, key=lambda k: members[k])  # type: ignore[arg-type, return-value]

    closed: dict[str, float] = {}
    kw = dict(adv_range=s.adv_range, constants=constants)
    if d is not None:
        with np.errstate(over="ignore", invalid="ignore"):  # T^{3/2} may overflow: inf
            closed["pm_kl"] = B.pm_kl_closed_form(T, d, **kw)
            closed["pm_tv"] = B.pm_tv_closed_form(T, d, float(filled["tv_max"]), **kw)

    notes.extend(f"inconsistent: {w}" for w in s.warnings)
    notes.extend(_validity_notes(s, m))
    return Result(s, constants, vals, derived, closed, tightest, tuple(notes))


def _validity_notes(s: Stats, m: float | None) -> list[str]:
    st = s.status
    kinds = " / ".join(sorted({st[k] for k in ("kl_max", "tv_max") if k in st}))
    out = [f"maxima: δ, ε must hold over ALL reachable contexts (here: {kinds})"]
    ends = s.meta.get("interval_ends") if isinstance(s.meta, Mapping) else None
    upper = isinstance(ends, Mapping) and any(
        str(ends.get(k, "")).startswith("upper") for k in ("kl_max", "tv_max")
    )
    if "empirical" in kinds and upper:
        out.append(
            "empirical: maxima of certified upper ends over the measured contexts (engine "
            "top-k log-probs); contexts never measured may exceed them"
        )
    elif "empirical" in kinds:
        out.append(
            "empirical: a max over measured contexts may fall below the max over all "
            "reachable contexts (contexts never measured can exceed it)"
        )
    out.append("exact: δ, ε must be full-vocabulary divergences; k1/k2/k3 are only proxies")
    if m is None:
        out.append("support: needs π_roll > 0 wherever π_θ > 0 (top-k/top-p break it)")
    return out
