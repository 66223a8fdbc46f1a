r"""Estimates of the paper's statistics from per-token dumps of sampled log-probabilities.

With responses :math:`y \sim \pi_{roll}` and :math:`\rho_t = \pi_\theta(y_t|c_t) /
\pi_{roll}(y_t|c_t)`, unbiased Monte Carlo estimates exist for the *average*
statistics (each reported with a normal-approximation 95 % confidence interval;
acceptance rates, proportions, with the Wilson score interval):

* :math:`\bar D_t = E[(1 - \rho_t)^+]` (because
  :math:`E_{y\sim q}[(1 - p(y)/q(y))^+] = \sum_y (q(y) - p(y))^+ = TV(q, p)` at every
  context), averaged over sequences at position ``t``; a sequence that ended before
  ``t`` contributes 0 (after the end both policies agree);
* :math:`D_{KL}^{seq} = E[\sum_t k3_t]`, :math:`k3 = \rho - 1 - \log\rho`;
* :math:`D_{TV}^{seq} = E[(1 - \prod_t \rho_t)^+]`, computed in log space.

Both TV identities hold **without** full support (mass :math:`\pi_\theta` puts where
:math:`\pi_{roll}` is 0 adds nothing to :math:`(q - p)^+`), so under top-k/top-p
rollouts they estimate the full TV; and every term lies in [0, 1], so the normal
interval behaves (``½|ρ - 1|`` has the same mean only under full support, and
:math:`\prod_t\rho_t` is heavy-tailed at long ``T``).

With a per-sequence ``reward`` column the surrogate
:math:`L = E_{roll}[R \sum_t (\rho_t - 1)]` is estimated with its CI and one-sided
95 % lower confidence bound, which the ``guaranteed`` state needs.

The *maxima* :math:`\delta` and :math:`\varepsilon` cannot be estimated from sampled
tokens. What a dump does give: :math:`\max |p_\theta(y) - p_{roll}(y)|` over sampled
tokens, a certified **lower bound** on :math:`\varepsilon` (because
:math:`|p(y) - q(y)| \le TV`), and :math:`\max_t k2_t`, a **proxy** (detector) for
:math:`\delta`. When the dump carries the exact per-token KL/TV of each context, their
means give lower-variance estimates and their maxima certified lower bounds.

Acceptance of the Trust Region Masking criteria (the paper) is computed per sequence:
TRM-Max (``max_t k2 <= thr``, or the exact KL), TRM-Avg (``mean_t k3 <= thr``, or the
exact KL), both combined, LN-TRM and SER, and by length bin against the length bias
:math:`(1-p)^T` of i.i.d. per-token violations.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import _io
from .. import ci as CI
from ..errors import InputFileError, TrmboundsError
from . import verdict as V
from .readers import _BLOCK, BadRecords, iter_log
from .result import (
    HEAVY_TAIL_ESS,
    T_SOURCES,
    Assumption,
    CheckResult,
    Stat,
    _list,
    effective_terms,
    length_value,
)

__all__ = [
    "TOKEN_COLUMNS",
    "is_token_dump",
    "segment_sum",
    "segment_max",
    "check_tokens",
]

#: Column names recognised in per-token dumps, first match wins (``--map`` overrides).
TOKEN_COLUMNS: dict[str, tuple[str, ...]] = {
    "logp_roll": (
        "inference_logprobs",
        "rollout_logprobs",
        "rollout_log_probs",
        "sampler_logprobs",
        "logp_roll",
    ),
    "logp_theta": (
        "trainer_logprobs",
        "training_logprobs",
        "old_log_probs",
        "old_logprobs",
        "logp_theta",
    ),
    "loss_mask": ("loss_mask", "response_mask", "mask"),
    "kl_token": ("kl_token", "token_kl", "exact_kl"),
    "tv_token": ("tv_token", "token_tv", "exact_tv"),
    # certified lower ends of per-token KL / TV (measure --rollouts --tokens)
    "kl_lo": ("kl_lo",),
    "tv_lo": ("tv_lo",),
    "step": ("step", "_step", "global_step"),
    # one number per sequence: R (an advantage R - b only through --map reward=COLUMN:
    # frameworks' per-token "advantages" are lists, and packed records mix samples)
    "reward": ("reward", "rewards", "score", "scores"),
    # responses to the same prompt are not independent: a prompt/group id (a number or a
    # string such as verl's uid)
    # (--map group=COLUMN, or one of these names) makes the bound on L use one mean per
    # group: the group is the unit
    "group": (
        "group",
        "group_id",
        "group_index",
        "prompt_id",
        "prompt_idx",
        "prompt_index",
        "uid",
    ),  # fmt: skip
}
_N_RELIABLE = 100  # below this many sequences a normal CI is flagged as unreliable
_SNIFF = _BLOCK  # bytes of a JSONL dump searched for its columns (the reader's block)
_LOGP_SLACK = 1e-6  # a log-probability above this is not a log-probability


def _columns_of(p: Path, fmt: str) -> list[str]:
    if fmt == "parquet":
        try:
            import pyarrow.parquet as pq

            with _io.open_input(p, "per-token dump") as fh:  # recorded: never an output
                return list(pq.ParquetFile(fh).schema_arrow.names)
        except ImportError:
            raise InputFileError(
                "reading Parquet needs pyarrow: pip install pyarrow (the logs extra)"
            ) from None
        except Exception as exc:  # noqa: BLE001 - any unreadable file
            raise InputFileError(f"{p}: not a readable Parquet file ({exc})") from None
    if fmt == "jsonl":
        # Every key of the first block (what the reader parses at once), not just the
        # first record's: an optional column may be missing from the first records.
        try:
            with _io.open_input(p, "per-token dump") as fh:  # recorded: never an output
                block = fh.read(_SNIFF)
        except OSError as exc:
            raise InputFileError(f"cannot read {p}: {exc.strerror or exc}") from None
        if len(block) == _SNIFF and b"\n" in block:
            block = block[: block.rfind(b"\n")]
        fast = _arrow_keys(block)
        if fast is not None:
            return fast
        keys: dict[str, None] = {}
        for raw in block.removeprefix(b"\xef\xbb\xbf").split(b"\n"):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except (ValueError, RecursionError):  # JSON, UTF-8, > 4,300 digits, too deep
                continue  # the reader reports it with its line
            if not isinstance(obj, dict):
                continue
            keys.update((k, None) for k in obj if k != "data")
            if isinstance(obj.get("data"), dict):
                keys.update((k, None) for k in obj["data"])
        return list(keys)
    return []


def _arrow_keys(block: bytes) -> list[str] | None:
    """The keys of a block of JSONL records (those under ``data`` too) parsed at once by
    pyarrow, ~20x faster than record by record; ``None`` when it cannot (pyarrow
    missing, a bad or non-object line, types that differ between lines, invalid UTF-8):
    the caller then reads the records one by one, skipping bad ones."""
    try:
        import pyarrow as pa
        import pyarrow.json as pj
    except ImportError:  # pragma: no cover - the [logs] extra is missing
        return None
    body = block.removeprefix(b"\xef\xbb\xbf")
    if not body.strip() or not _io.arrow_safe_jsonl(body):
        return None
    try:
        body.decode("utf-8")  # pyarrow accepts invalid UTF-8 in keys
        opts = pj.ReadOptions(block_size=len(body) + 2)
        schema = pj.read_json(io.BytesIO(body + b"\n"), read_options=opts).schema
    except (pa.ArrowException, *_io.DECODE_ERRORS):
        return None
    keys: dict[str, None] = {}
    for col in schema:
        if col.name == "data":
            if not pa.types.is_struct(col.type):
                return None  # "data" not an object everywhere: the slow path decides
            keys.update((f.name, None) for f in col.type)
        else:
            keys[col.name] = None
    return list(keys)


def _resolve(names, maps: Mapping[str, str]) -> dict[str, str]:
    present = set(names)
    out = {}
    for q, cands in TOKEN_COLUMNS.items():
        if q in maps:
            cands = (maps[q],)
        for c in cands:
            if c in present:
                out[q] = c
                break
    return out


def is_token_dump(p: Path, fmt: str, maps: Mapping[str, str] = {}) -> bool:  # noqa: B006
    """True when ``p`` holds per-token log-probabilities (one record per sequence)."""
    if fmt not in ("jsonl", "parquet") or not Path(p).is_file():
        return False
    return "logp_roll" in _resolve(_columns_of(Path(p), fmt), maps)


# --------------------------------------------------------------- ragged primitives
def segment_sum(x: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Sum of ``x[offsets[i]:offsets[i+1]]`` for every segment (0 for an empty one).

    Examples
    --------
    >>> segment_sum(np.array([1., 2., 3., 4.]), np.array([0, 2, 2, 4])).tolist()
    [3.0, 0.0, 7.0]
    """
    return _segment(np.add, x, offsets, 0.0)


def segment_max(x: np.ndarray, offsets: np.ndarray, empty: float = -np.inf) -> np.ndarray:
    """Maximum of every segment (``empty`` for an empty one).

    Examples
    --------
    >>> segment_max(np.array([1., 5., 3.]), np.array([0, 2, 2, 3]), 0.0).tolist()
    [5.0, 0.0, 3.0]
    """
    return _segment(np.fmax, x, offsets, empty)  # NaN-safe


def _segment(ufunc, x, offsets, empty) -> np.ndarray:
    starts, ends = offsets[:-1], offsets[1:]
    out = np.full(len(starts), empty, dtype=np.float64)
    ne = ends > starts
    if ne.any():
        out[ne] = ufunc.reduceat(x, starts[ne])
    return out


def _unit(m, lo, hi, top):
    """An estimate of a quantity in [0, top] and its CI, clipped to that range; an
    infinite estimate (float overflow) says nothing: value ``top``, CI [0, top]."""
    inf = np.isinf(m)
    top = np.broadcast_to(top, np.shape(m))
    m = np.where(inf, top, np.clip(m, 0.0, top))
    lo = np.where(inf, 0.0, np.clip(lo, 0.0, top))
    hi = np.where(inf, top, np.clip(hi, 0.0, top))
    return m, lo, hi


def _weights_ln(rem: np.ndarray, eps: float | None, delta: float | None) -> np.ndarray:
    """LN-TRM weight min(1, (T-t) eps, sqrt((T-t) delta/2)) from rem = T - t."""
    w = np.ones_like(rem)
    if eps is not None:
        w = np.minimum(w, rem * eps)
    if delta is not None:
        w = np.minimum(w, np.sqrt(rem * (delta / 2.0)))
    return w


# ------------------------------------------------------------------- accumulators
_CRITERIA = ("trm_max", "trm_avg", "combined", "ln_trm", "ser")


@dataclass
class _Acc:
    """Running sums for one step group."""

    n: int = 0
    n_empty: int = 0
    n_tok: int = 0
    n_viol: int = 0
    n_masked: int = 0  # generated tokens a loss mask zeroed (the surrogate is then masked)
    Lmax: int = 0
    sums: dict[str, float] = field(default_factory=dict)
    maxs: dict[str, float] = field(default_factory=dict)
    accept: dict[str, int] = field(default_factory=dict)
    pos_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    pos_ss: np.ndarray = field(default_factory=lambda: np.zeros(0))
    # the surrogate: n, sum x, sum x^2, sum z, sum z^2 over sequences (empty ones count 0);
    # per group (--map group=COLUMN): group -> [sum x, sum z, count]
    sur: np.ndarray = field(default_factory=lambda: np.zeros(5))
    # per-sequence terms of the unbounded estimates (sum_t k3, and x), for the heavy-tail
    # check: one float each per sequence
    terms: dict[str, list[np.ndarray]] = field(default_factory=dict)
    groups: dict[float, list[float]] = field(default_factory=dict)

    def grow(self, L: int) -> None:
        if L > len(self.pos_s):
            k = max(L, 2 * len(self.pos_s))
            for name in ("pos_s", "pos_ss"):
                a = np.zeros(k)
                old = getattr(self, name)
                a[: len(old)] = old
                setattr(self, name, a)


@dataclass
class _Options:
    trm_max: float
    trm_avg: float
    ser: float | None
    ln_trm: float | None
    assumption: Assumption
    horizon: float | None = None  # --length: the cap, for the distribution-free bound on L
    # --loss-mask-zeros not-generated: a 0 in the loss mask marks a token the policy did not
    # generate (tool / environment output, padding), not a generated token a mask removed
    mask_not_generated: bool = False


def check_tokens(
    path: str | os.PathLike,
    *,
    format: str | None = None,
    maps: Mapping[str, str] = {},  # noqa: B006
    length: str = "max",
    assumption: Assumption | None = None,
    skip_bad: bool = False,
    progress: Callable[[int], None] | None = None,
    trm_max: float = 0.05,
    trm_avg: float = 0.001,
    ser: float | None = 0.05,
    ln_trm: float | None = None,
    loss_mask_zeros: str = "masked",
    source=None,
) -> CheckResult:
    """Check the TRM guarantee on a per-token dump, one result per step group.

    Parameters
    ----------
    path : path-like
        JSONL (prime-rl's token export) or Parquet with list columns, one record per
        sequence: rollout and trainer log-probs of the sampled tokens (required),
        ``loss_mask``, exact per-token ``kl_token``/``tv_token`` and ``step`` (optional;
        without it the dump is one group).
    format, maps, length, assumption, skip_bad, progress
        As in :func:`.check.check_log`. ``length``: the horizon, a number (the
        generation cap; :math:`\bar D_t = 0` past the longest sequence) or ``max``
        (default), the longest sequence of the group (an empirical horizon).
    trm_max, trm_avg : float
        TRM-Max threshold on :math:`\\max_t k2_t` (or the exact KL) and TRM-Avg
        threshold on the mean k3 (or the exact KL); the paper's 0.05 and 0.001.
    ser : float or None
        SER threshold on :math:`\\frac1T\\sum_t|\\rho_t-1|` (the paper suggests 0.03-0.10).
    ln_trm : float or None
        LN-TRM threshold :math:`\\delta_W`; needs ``--kl-max`` or ``--tv-max`` for the
        weights.
    loss_mask_zeros : {"masked", "not-generated"}
        What a 0 in the loss mask means. ``masked`` (default, the safe side): it may be a
        generated token that a TRM / importance-sampling mask removed, so the surrogate
        the dump gives is the *masked* one, whose error :math:`B^*` does not bound: no
        step with such a token is *guaranteed*. ``not-generated``: zeros mark tokens the
        policy did not generate (prompt, padding, tool or environment output in
        multi-turn rollouts), and the surrogate over the rest is the unmasked one.
    source : .dumps.DumpSource, optional
        A framework's own dump layout (:func:`.dumps.open_dump`): its columns and
        records replace those read from ``path``.
    """
    a = assumption or Assumption()
    p = Path(path)
    for name, v in (
        ("--trm-max", trm_max),
        ("--trm-avg", trm_avg),
        ("--ser", ser),
        ("--ln-trm", ln_trm),
    ):
        if v is not None and not (math.isfinite(v) and v >= 0):
            raise TrmboundsError(f"{name} must be a finite non-negative number, got {v}")
    if ln_trm is not None and not a.given:
        raise TrmboundsError("--ln-trm needs --kl-max or --tv-max (the LN-TRM weights use them)")
    if loss_mask_zeros not in ("masked", "not-generated"):
        raise TrmboundsError(
            f"--loss-mask-zeros must be masked or not-generated, got {loss_mask_zeros!r}"
        )
    opts = _Options(trm_max, trm_avg, ser, ln_trm, a, length_value(length),
                    loss_mask_zeros == "not-generated")  # fmt: skip
    names = source.names if source is not None else _columns_of(p, format or "")
    cols = _resolve(names, maps)
    for q in ("logp_roll", "logp_theta"):
        if q not in cols:
            tried = maps.get(q) or ", ".join(TOKEN_COLUMNS[q])
            raise InputFileError(
                f"{p}: per-token dump without a {q} column (tried {tried}; pass --map "
                f"{q}=COLUMN); columns present: {_list(names)}"
            )
    for q in ("logp_roll", "logp_theta"):
        if q in maps and maps[q] not in names:
            raise InputFileError(
                f"{p}: column {maps[q]!r} (--map {q}={maps[q]}) not found; columns present: "
                f"{_list(names)}"
            )
    # Optional columns not in the first block may still appear later: ask for every
    # candidate and resolve it where it first shows up (see _discover).
    wanted = {
        q: (cols[q],) if q in cols else ((maps[q],) if q in maps else TOKEN_COLUMNS[q])
        for q in _OPTIONAL
    }
    list_cols = {cols["logp_roll"], cols["logp_theta"]}
    list_cols.update(c for q in _OPTIONAL if q not in _SCALAR for c in wanted[q])
    bad = BadRecords(skip=skip_bad)
    accs: dict[float, _Acc] = {}
    bins: dict[int, np.ndarray] = {}  # log2 bin -> [n, sum L, acc max, acc combined, viol tok, tok]
    done = 0
    invalid: dict[str, list] = {}
    seen: set[str] = set()
    scalars = (*wanted["step"], *wanted["reward"], *wanted["group"])
    labels = wanted["group"]  # a prompt id may be a string (verl's uid): read as a label
    read = (
        source.chunks
        if source is not None
        else lambda **kw: iter_log(p, format, labels=labels, **kw)
    )
    for chunk in read(columns=scalars, lists=list_cols, bad=bad, seen=seen):
        _discover(p, chunk, cols, wanted, done)
        _token_block(p, chunk, cols, opts, accs, bins, bad, invalid)
        done += len(chunk)
        if progress is not None:
            progress(done)
    for q, c in maps.items():
        if q in _OPTIONAL and c not in seen:
            raise InputFileError(
                f"{p}: column {c!r} (--map {q}={c}) not found; columns present: {_list(seen)}"
            )
    res = _finish(p, cols, opts, accs, bins, bad, invalid, length, cols.get("step"))
    if {"kl_hi", "tv_hi"} & (set(names) | seen):
        res.notes.append(
            "this dump holds certified per-token interval ends (kl_lo/kl_hi, tv_lo/tv_hi: "
            "measure --rollouts): the lower bounds on delta and eps use the lower ends (a "
            "kl_lo above the assumed delta refutes it); the other values come from the "
            "sampled tokens' log-probs — the statistics file written with it (-o) has "
            "delta, eps and D_KL^seq from the upper ends"
        )
    return res


_OPTIONAL = ("loss_mask", "kl_token", "tv_token", "kl_lo", "tv_lo", "step", "reward", "group")
_SCALAR = ("step", "reward", "group")  # one number per record; the others are lists


def _discover(p, chunk, cols, wanted, done) -> None:
    """Resolve optional columns met for the first time in ``chunk``.

    A ``loss_mask`` that appears late is fine (a record without one keeps all its
    tokens). A ``step`` or exact ``kl_token``/``tv_token`` column that appears after
    records without it were already used cannot be honoured: that is an error.
    """
    for q in _OPTIONAL:
        if q in cols:
            continue
        have = chunk.columns if q in _SCALAR else chunk.lists
        found = [c for c in wanted[q] if c in have and chunk.present[c].any()]
        if not found:
            continue
        c = found[0]
        cols[q] = c
        if done and q != "loss_mask":
            i = int(np.argmax(chunk.present[c]))
            raise InputFileError(
                f"{p}: {chunk.unit} {chunk.lines[i]}: column {c!r} first appears here, but "
                f"the {done:,} records before it lack it; give every record a {c!r} value"
            )


def _token_block(p, chunk, cols, o: _Options, accs, bins, bad: BadRecords, invalid) -> None:
    n = len(chunk)
    empty = (np.zeros(0), np.zeros(n + 1, np.int64))
    lr, off = chunk.lists.get(cols["logp_roll"], empty)
    lt, off_t = chunk.lists.get(cols["logp_theta"], empty)
    lens = np.diff(off)
    ok = np.ones(n, bool)

    def flag(mask: np.ndarray, reason: Callable[[int], str]) -> None:
        for i in np.flatnonzero(mask & ok):
            bad.add(p, f"{chunk.unit} {chunk.lines[i]}", reason(int(i)))
            ok[i] = False

    flag(np.diff(off_t) != lens, lambda i: f"{cols['logp_theta']} has {off_t[i + 1] - off_t[i]} "
         f"values, {cols['logp_roll']} has {lens[i]}")  # fmt: skip
    extra = {}
    for q in ("loss_mask", "kl_token", "tv_token", "kl_lo", "tv_lo"):
        if q not in cols:
            continue
        c = cols[q]
        v, o2 = chunk.lists.get(c, (np.zeros(0), np.zeros(n + 1, np.int64)))
        has = chunk.present.get(c, np.zeros(n, bool))
        if q != "loss_mask":  # exact statistics: every record needs them
            flag(~has, _says(f"no {c!r} values (other records have them)"))
        flag(has & (np.diff(o2) != lens), _count_says(c, o2, cols["logp_roll"], lens))
        extra[q] = (v, o2, has)
    if "step" in cols:
        sc = cols["step"]
        step = _scalar_column(chunk, sc)
        flag(~np.isfinite(step), lambda i: f"no valid {sc} value")
    else:
        step = np.zeros(n)
    reward = None
    if "reward" in cols:
        rc = cols["reward"]
        reward = _scalar_column(chunk, rc)
        flag(~np.isfinite(reward), lambda i: f"no valid {rc} value (other records have one)")
        lo, hi = _reward_range(o.assumption)
        with np.errstate(invalid="ignore"):
            out = ok & ((reward < lo - 1e-9 * (1 + abs(lo))) | (reward > hi + 1e-9 * (1 + abs(hi))))
        if out.any():
            i = int(np.argmax(out))
            raise InputFileError(
                f"{p}: {chunk.unit} {chunk.lines[i]}: {rc} = {reward[i]:g} is outside the reward "
                f"range [{lo:g}, {hi:g}] the bound assumes; pass --reward-range LO HI (or "
                "--adv-range A for rewards in [0, A])"
            )
    group = None
    if "group" in cols:
        gc = cols["group"]
        group = _scalar_column(chunk, gc)
        flag(~np.isfinite(group), lambda i: f"no valid {gc} value (other records have one)")
    # per-token validity, on records whose arrays line up
    tok_ok = np.repeat(ok, lens)
    lr_t = lr[: off[-1]] if len(lr) >= off[-1] else lr
    lt_t = lt if np.array_equal(off_t, off) else None
    if lt_t is None:  # misaligned records: rebuild theta aligned with roll for the good ones
        lt_t = np.full(len(lr_t), np.nan)
        for r in np.flatnonzero(ok):
            lt_t[off[r] : off[r + 1]] = lt[off_t[r] : off_t[r + 1]]
    if "loss_mask" in extra:
        mv, mo, has = extra["loss_mask"]
        mask = _aligned(mv, mo, off, ok & has, fill=1.0)  # no mask: every token counts
        with np.errstate(invalid="ignore"):
            badm = tok_ok & (mask != 0) & (mask != 1)  # NaN too
        if badm.any():
            seq_of = np.repeat(np.arange(n), lens)
            for j in np.flatnonzero(badm):
                i = int(seq_of[j])
                if ok[i]:
                    bad.add(p, f"{chunk.unit} {chunk.lines[i]}", f"column {cols['loss_mask']!r}: "
                            f"token {j - off[i]} is {float(mask[j])!r}, expected 0 or 1")  # fmt: skip
                    ok[i] = False
            tok_ok = np.repeat(ok, lens)
        keep_tok = tok_ok & (mask == 1)
        zeroed = tok_ok & (mask == 0)
        if zeroed.any():  # per step: a masked surrogate cannot support 'guaranteed'
            seq_of = np.repeat(np.arange(n), lens)
            for sv, k in zip(*np.unique(step[seq_of[zeroed]], return_counts=True)):
                _acc(accs, sv).n_masked += int(k)
    else:
        keep_tok = tok_ok
    all_valid = len(lr_t) == 0 or all(
        x.max() <= _LOGP_SLACK and x.min() > -np.inf for x in (lr_t, lt_t)
    )  # NaN fails "<=": one pass each, no temporaries, when everything is valid
    if not all_valid:
        with np.errstate(invalid="ignore"):
            badtok = keep_tok & ~(
                (lr_t <= _LOGP_SLACK) & (lr_t > -np.inf) & (lt_t <= _LOGP_SLACK) & (lt_t > -np.inf)
            )
    if not all_valid and badtok.any():
        seq_of = np.repeat(np.arange(n), lens)
        first_bad: dict[int, int] = {}
        for t in np.flatnonzero(badtok):
            first_bad.setdefault(int(seq_of[t]), int(t))
        for rec_i, tj in first_bad.items():
            which = (
                cols["logp_roll"]
                if not (np.isfinite(lr_t[tj]) and lr_t[tj] <= _LOGP_SLACK)
                else cols["logp_theta"]
            )
            val = lr_t[tj] if which == cols["logp_roll"] else lt_t[tj]
            if ok[rec_i]:
                bad.add(p, f"{chunk.unit} {chunk.lines[rec_i]}", f"column {which!r}: token "
                        f"{tj - off[rec_i]} is {float(val)!r}, not a log-probability")  # fmt: skip
                ok[rec_i] = False
        keep_tok &= np.repeat(ok, lens)
    ex_kl = _aligned(*extra["kl_token"][:2], off, ok) if "kl_token" in extra else None
    ex_tv = _aligned(*extra["tv_token"][:2], off, ok) if "tv_token" in extra else None
    lows = {q: _aligned(*extra[q][:2], off, ok) for q in ("kl_lo", "tv_lo") if q in extra}
    for name, arr in (("kl_token", ex_kl), ("tv_token", ex_tv), *lows.items()):
        if arr is not None:
            with np.errstate(invalid="ignore"):
                b = keep_tok & ~(np.isfinite(arr) & (arr >= 0))
            if b.any():
                seq_of = np.repeat(np.arange(n), lens)
                for i in np.unique(seq_of[b]):
                    if ok[i]:
                        bad.add(p, f"{chunk.unit} {chunk.lines[i]}", f"column {cols[name]!r}: "
                                "NaN, inf or negative value")  # fmt: skip
                        ok[i] = False
                keep_tok &= np.repeat(ok, lens)
    # keep the response tokens of good records
    if ok.all() and "loss_mask" not in extra and lens.min(initial=1) > 0:
        L, r, th, offs, keep_tok = lens, lr_t, lt_t, off, slice(None)  # nothing to drop
    else:
        csum = np.zeros(len(keep_tok) + 1, np.int64)
        np.cumsum(keep_tok, out=csum[1:])
        L = csum[off[1:]] - csum[off[:-1]]
        seq_good = ok & (L > 0)
        empty = ok & (L == 0)
        if empty.any():  # no response token: counted per step; 0 in the surrogate's mean
            for sv, k in zip(*np.unique(step[empty], return_counts=True)):
                _acc(accs, sv).n_empty += int(k)
            if reward is not None:
                _add_surrogate(o, accs, step[empty], np.zeros(int(empty.sum())), reward[empty],
                               None if group is None else group[empty])  # fmt: skip
        L = L[seq_good]
        keep_tok &= np.repeat(seq_good, lens)
        r = lr_t[keep_tok]
        th = lt_t[keep_tok]
        offs = np.zeros(len(L) + 1, np.int64)
        np.cumsum(L, out=offs[1:])
        step = step[seq_good]
        if reward is not None:
            reward = reward[seq_good]
        if group is not None:
            group = group[seq_good]
    if not len(L):
        return
    with np.errstate(over="ignore", invalid="ignore"):
        _token_stats(o, accs, bins, th, r, L, offs, step, keep_tok, ex_kl, ex_tv, reward, lows)
        if reward is not None:
            _add_surrogate(o, accs, step, segment_sum(np.expm1(th - r), offs), reward, group)


def _says(text: str) -> Callable[[int], str]:
    """A bad-record reason that does not depend on the record."""
    return lambda i: text


def _count_says(c: str, o2: np.ndarray, roll: str, lens: np.ndarray) -> Callable[[int], str]:
    """The reason for a list column whose length differs from the log-prob column's."""
    return lambda i: f"{c} has {o2[i + 1] - o2[i]} values, {roll} has {lens[i]}"


def _scalar_column(chunk, c: str) -> np.ndarray:
    """A one-number-per-record column of ``chunk``, NaN where a record lacks it."""
    n = len(chunk)
    return np.where(
        chunk.present.get(c, np.zeros(n, bool)), chunk.columns.get(c, np.full(n, np.nan)), np.nan
    )


def _token_stats(
    o, accs, bins, th, r, L, offs, step, keep_tok, ex_kl, ex_tv, reward, lows=None
) -> None:
    """Per-sequence statistics of the kept tokens, accumulated per step group.

    A log-ratio ``log rho`` above ~709.78 makes ``rho`` (and k3, |rho - 1|) overflow to
    inf: the value really is beyond float64 and is reported as infinite. The certified
    lower bound ``|p_theta(y) - p_roll(y)|`` is taken from the probabilities themselves
    (both at most 1), so it never overflows.
    """
    d = th - r
    rm1 = np.expm1(d)  # rho - 1
    k3 = rm1 - d
    am1 = np.abs(rm1)
    tv_tok = np.maximum(-rm1, 0.0)  # (1 - rho)^+ in [0, 1]: its mean under pi_roll is TV(c)
    del rm1
    pq = np.exp(th)
    pq -= np.exp(r)
    np.abs(pq, out=pq)  # |p_theta(y) - p_roll(y)|
    t0 = np.arange(len(d)) - np.repeat(offs[:-1], L)
    Lf = L.astype(np.float64)
    seq: dict[str, np.ndarray] = {
        "klseq": segment_sum(k3, offs),
        # (1 - prod_t rho_t)^+ in [0, 1]: its mean under pi_roll is D_TV^seq (full support
        # or not); 1 - exp(x) for x = sum_t log rho_t, 0 when the product exceeds 1
        "tvseq": np.maximum(-np.expm1(segment_sum(d, offs)), 0.0),
        "pos_sum": segment_sum(tv_tok, offs),
        "ser_sum": segment_sum(am1, offs),
    }
    mx: dict[str, np.ndarray] = {
        "pq": segment_max(pq, offs),
        # max k2 = max (log rho)^2 / 2 from the extremes of log rho
        "k2": 0.5 * np.maximum(segment_max(d, offs), -_segment(np.minimum, d, offs, np.inf)) ** 2,
        "k3": segment_max(k3, offs),
    }
    pos_val = tv_tok
    kl_max_seq = mx["k2"]
    kl_mean_seq = seq["klseq"] / Lf
    viol_tok = np.abs(d) > math.sqrt(2.0 * o.trm_max)  # k2 > trm_max
    if ex_kl is not None:
        kx = ex_kl[keep_tok]
        seq["klseq_exact"] = segment_sum(kx, offs)
        mx["kl_exact"] = segment_max(kx, offs)
        kl_max_seq = mx["kl_exact"]
        kl_mean_seq = seq["klseq_exact"] / Lf
        viol_tok = kx > o.trm_max
    if ex_tv is not None:
        tx = ex_tv[keep_tok]
        mx["tv_exact"] = segment_max(tx, offs)
        seq["pos_sum_exact"] = segment_sum(tx, offs)
        pos_val = tx
    for q, arr in (lows or {}).items():  # certified lower ends: only their maxima are used
        mx[q] = segment_max(arr[keep_tok], offs)
    acc_max = kl_max_seq <= o.trm_max
    acc_avg = kl_mean_seq <= o.trm_avg
    crit = {"trm_max": acc_max, "trm_avg": acc_avg, "combined": acc_max & acc_avg}
    if o.ser is not None:
        crit["ser"] = seq["ser_sum"] / Lf <= o.ser  # mean |rho - 1|
    if o.ln_trm is not None:
        rem = (np.repeat(L, L) - 1 - t0).astype(np.float64)
        w = _weights_ln(rem, o.assumption.tv_max, o.assumption.kl_max)
        W = segment_sum(np.where(w > 0, am1 * w, 0.0), offs)  # inf * 0 -> 0
        Z = segment_sum(w, offs)
        with np.errstate(invalid="ignore", divide="ignore"):
            crit["ln_trm"] = np.where(Z > 0, W / np.where(Z > 0, Z, 1.0) <= o.ln_trm, True)
    viol_seq = segment_sum(viol_tok.astype(np.float64), offs)
    # length bins (whole dump)
    b = np.floor(np.log2(Lf)).astype(np.int64)
    for bi in np.unique(b):
        m = b == bi
        row = np.array([m.sum(), Lf[m].sum(), crit["trm_max"][m].sum(), crit["combined"][m].sum(),
                        viol_seq[m].sum(), Lf[m].sum()])  # fmt: skip
        bins[int(bi)] = bins.get(int(bi), 0) + row
    # per step group
    ustep, gi = np.unique(step, return_inverse=True)
    gi = gi.reshape(-1)
    G = len(ustep)
    # Per-position sums in a packed layout: step group g owns positions base[g] ..
    # base[g] + Lg[g] - 1, Lg[g] its own longest sequence -- memory is O(tokens), never
    # (steps x longest sequence of the block)
    Lg = np.zeros(G, np.int64)
    np.maximum.at(Lg, gi, L)
    base = np.zeros(G + 1, np.int64)
    np.cumsum(Lg, out=base[1:])
    # one step group (the usual block): positions are t0 itself, no per-token temporaries
    idx = t0 if G == 1 else base[gi][np.repeat(np.arange(len(L)), L)] + t0
    ps_all = np.bincount(idx, weights=pos_val, minlength=int(base[-1]))
    pss_all = np.bincount(idx, weights=pos_val * pos_val, minlength=int(base[-1]))
    # Per-group sums and maxima by segment reductions over the sequences sorted by group
    # (one pass each, whatever the number of step groups)
    order = np.argsort(gi, kind="stable")
    cnt = np.bincount(gi, minlength=G)
    soff = np.zeros(G + 1, np.int64)
    np.cumsum(cnt, out=soff[1:])
    ssum = lambda v: segment_sum(np.asarray(v, dtype=np.float64)[order], soff)  # noqa: E731
    smax = lambda v: segment_max(np.asarray(v, dtype=np.float64)[order], soff)  # noqa: E731
    n_tok, n_viol = ssum(L), ssum(viol_seq)
    sums = {k: (ssum(v), ssum(v * v)) for k, v in seq.items()}
    maxs = {k: smax(v) for k, v in mx.items()}
    acc = {k: ssum(v) for k, v in crit.items()}
    kterm = (seq["klseq_exact"] if "klseq_exact" in seq else seq["klseq"])[order]
    for g, sv in enumerate(ustep):
        Lb = int(Lg[g])
        A = _acc(accs, sv)
        A.terms.setdefault("kl_seq", []).append(kterm[soff[g] : soff[g + 1]])
        A.n += int(cnt[g])
        A.n_tok += int(n_tok[g])
        A.n_viol += int(n_viol[g])
        A.Lmax = max(A.Lmax, Lb)
        for k, (v1, v2) in sums.items():
            A.sums[k] = A.sums.get(k, 0.0) + float(v1[g])
            A.sums[k + "^2"] = A.sums.get(k + "^2", 0.0) + float(v2[g])
        for k, v in maxs.items():  # fmax: a NaN never hides the other values
            A.maxs[k] = float(np.fmax(A.maxs.get(k, -np.inf), v[g]))
        for k, v in acc.items():
            A.accept[k] = A.accept.get(k, 0) + int(v[g])
        A.grow(Lb)
        A.pos_s[:Lb] += ps_all[base[g] : base[g + 1]]
        A.pos_ss[:Lb] += pss_all[base[g] : base[g + 1]]


def _add_surrogate(o, accs, step, sum_rm1, reward, group) -> None:
    """Accumulate, per step (and per group), x = R * sum_t (rho_t - 1), whose mean under
    pi_roll is the surrogate L, and z in [0, 1] for its distribution-free lower bound:
    (R - r_min) sum_t (rho_t - 1) >= -a T, clipped above at a T (docs/logs.md)."""
    x = np.where(reward == 0, 0.0, reward * sum_rm1)  # 0 x inf (overflow) is 0
    z = np.full(len(x), np.nan)
    if o.horizon is not None:
        lo, hi = _reward_range(o.assumption)
        aT = (hi - lo) * o.horizon
        with np.errstate(invalid="ignore"):
            y = np.clip(np.where(reward == lo, 0.0, (reward - lo) * sum_rm1), -aT, aT)
        z = np.where(np.isnan(y), 0.0, (y + aT) / (2.0 * aT))
    ustep, gi = np.unique(step, return_inverse=True)
    gi = gi.reshape(-1)
    for g, sv in enumerate(ustep):
        m = gi == g
        A = _acc(accs, sv)
        xs, zs = x[m], z[m]
        A.sur += [m.sum(), xs.sum(), (xs * xs).sum(), zs.sum(), (zs * zs).sum()]
        A.terms.setdefault("surrogate", []).append(xs)
        if group is not None:
            ug, inv = np.unique(group[m], return_inverse=True)
            inv = inv.reshape(-1)
            sx = np.bincount(inv, weights=xs, minlength=len(ug))
            sz = np.bincount(inv, weights=zs, minlength=len(ug))
            cnt = np.bincount(inv, minlength=len(ug))
            for u, a_, b_, c_ in zip(ug.tolist(), sx, sz, cnt):
                e = A.groups.setdefault(u, [0.0, 0.0, 0])
                e[0] += a_
                e[1] += b_
                e[2] += int(c_)


def _acc(accs, step) -> _Acc:
    key = float(step)
    if key not in accs:
        accs[key] = _Acc()
    return accs[key]


def _aligned(v, o2, off, ok, fill=np.nan) -> np.ndarray:
    """Values of a list column laid out like the log-prob column (``fill`` elsewhere)."""
    if np.array_equal(o2, off):
        return v
    out = np.full(int(off[-1]), fill)
    for i in np.flatnonzero(ok):
        out[off[i] : off[i + 1]] = v[o2[i] : o2[i + 1]]
    return out


def _finish(p, cols, o: _Options, accs, bins, bad, invalid, length, step_col) -> CheckResult:
    a = o.assumption
    empties = sum(A.n_empty for A in accs.values())
    items = [(k, A) for k, A in sorted(accs.items()) if A.n > 0]
    if not items:
        raise InputFileError(f"{p}: no sequences with response tokens")
    keys = [k for k, _ in items]
    accs = [A for _, A in items]
    G = len(accs)
    n = np.array([A.n for A in accs], dtype=np.float64)
    T_obs = np.array([A.Lmax for A in accs], dtype=np.float64)
    fixed = length_value(length)
    T, src_code = V.horizon(T_obs, np.nan, fixed)
    T_src = np.array(T_SOURCES, dtype=object)[src_code.astype(np.int64)]
    exact_kl = "klseq_exact" in accs[0].sums if accs else False
    exact_tv = "pos_sum_exact" in accs[0].sums if accs else False

    def est(key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s = np.array([A.sums[key] for A in accs])
        ss = np.array([A.sums[key + "^2"] for A in accs])
        return CI.normal(s, ss, n)

    stats: dict[str, Stat] = {}
    kseq = est("klseq_exact" if exact_kl else "klseq")
    with np.errstate(invalid="ignore"):  # a KL is >= 0: so is the lower end of its CI
        kseq = (kseq[0], np.where(kseq[1] < 0, 0.0, kseq[1]), kseq[2])
    stats["kl_seq"] = Stat(
        kseq[0],
        "estimate",
        "mean of sum_t " + ("exact KL" if exact_kl else "k3"),
        (kseq[1], kseq[2]),
        _heavy(accs, "kl_seq"),
    )
    # D_TV^seq <= 1 (a TV distance): the estimate and its CI are clipped to [0, 1]
    tseq = _unit(*CI.bounded(est("tvseq")[0], n), 1.0)
    stats["tv_seq"] = Stat(tseq[0], "estimate", "mean of (1 - prod_t rho_t)^+", (tseq[1], tseq[2]))
    psum = _unit(*est("pos_sum_exact" if exact_tv else "pos_sum"), T_obs)  # D̄_t <= 1
    stats["per_position_sum"] = Stat(psum[0], "estimate", "sum_t D̄_t", (psum[1], psum[2]))
    pp, pp_lo, pp_hi = [], [], []
    for A, Ti, ni in zip(accs, T, n):
        # Positions after the longest sequence have D̄_t = 0 (both policies agree after
        # the end): not materialised, so --length may be far beyond the data.
        k = int(min(Ti, A.Lmax))
        m, lo, hi = _unit(*CI.bounded(A.pos_s[:k] / ni, ni), 1.0)
        pp.append(m)
        pp_lo.append(lo)
        pp_hi.append(hi)
    pp_arr = np.empty(G, dtype=object)
    pp_arr[:] = pp
    lo_arr = np.empty(G, dtype=object)
    lo_arr[:] = pp_lo
    hi_arr = np.empty(G, dtype=object)
    hi_arr[:] = pp_hi
    stats["per_position"] = Stat(
        pp_arr,
        "estimate",
        "mean of " + ("exact TV" if exact_tv else "(1 - rho_t)^+") + " at position t",
        (lo_arr, hi_arr),
    )
    lo_tv = "tv_lo" in accs[0].maxs  # certified interval ends (measure --rollouts)
    lo_kl = "kl_lo" in accs[0].maxs
    eps_lb = np.array(
        [np.fmax(np.fmax(A.maxs["pq"], A.maxs.get("tv_exact", -np.inf)), A.maxs.get("tv_lo", -np.inf))
         for A in accs]
    )  # fmt: skip
    stats["tv_lower_bound"] = Stat(
        eps_lb,
        "lower_bound",
        "max |p_theta(y) - p_roll(y)| over sampled tokens"
        + (" and max exact TV" if exact_tv else "")
        + (" and max certified tv_lo" if lo_tv else ""),
    )
    kl_ex = np.array([A.maxs.get("kl_exact", np.nan) for A in accs])
    kl_lb = np.fmax(kl_ex, np.array([A.maxs.get("kl_lo", np.nan) for A in accs]))
    if exact_kl or lo_kl:
        what = " and ".join(
            w for w, on in (("max exact KL", exact_kl), ("max certified kl_lo", lo_kl)) if on
        )
        stats["kl_lower_bound"] = Stat(kl_lb, "lower_bound", what + " over sampled contexts")
    k2 = np.array([A.maxs["k2"] for A in accs])
    stats["kl_max_proxy"] = Stat(k2, "proxy", "max k2 over sampled tokens")
    stats["kl_max_proxy_k3"] = Stat(
        np.array([A.maxs["k3"] for A in accs]), "proxy", "max k3 over sampled tokens"
    )
    for c in _CRITERIA:
        if c in accs[0].accept:
            cnt = np.array([A.accept[c] for A in accs], dtype=np.float64)
            m, lo, hi = CI.wilson(cnt, n)
            stats["accept_" + c] = Stat(m, "estimate", _CRIT_SRC[c](o, exact_kl), (lo, hi))
    stats["acceptance"] = Stat(
        stats["accept_combined"].values,
        "estimate",
        "TRM-Max and TRM-Avg combined",
        stats["accept_combined"].ci,
    )
    sur = lcb = np.full(G, np.nan)
    grouped = "group" in cols
    if "reward" in cols:
        m_, lo_, hi_, zbar, zvar, nn = _surrogate_moments(accs, grouped)
        unit = "per group of " + cols["group"] if grouped else "over sequences"
        stats["surrogate"] = Stat(
            m_, "estimate", f"mean of {cols['reward']} x sum_t (rho_t - 1), CI {unit}", (lo_, hi_),
            _heavy(accs, "surrogate"),
        )  # fmt: skip
        sur = m_
        if fixed is not None:
            lcb = _surrogate_lcb(zbar, zvar, nn, a, fixed)
            stats["surrogate_lcb"] = Stat(
                lcb, "estimate", f"distribution-free one-sided {a.confidence:.0%} lower bound (empirical "
                f"Bernstein on (R - r_min) sum_t (rho_t - 1), range ±a T, {unit})",
            )  # fmt: skip
    # the estimate of D_TV^seq is at least that of D̄_1 (the first token's marginal: the
    # prompt is shared)
    ts_est = np.array([max(tseq[0][g], float(pp[g][0])) if len(pp[g]) else tseq[0][g]
                       for g in range(G)])  # fmt: skip
    # 'guaranteed' needs the distribution-free bound on the UNMASKED surrogate
    masked = np.array([A.n_masked > 0 and not o.mask_not_generated for A in accs])
    # records skipped as malformed (--skip-bad) may be exactly the ones that carry the
    # loss (e.g. a token pi_theta never emits, log-prob -inf): the bound on L is then over
    # a selected rest, and nothing is guaranteed
    lcb_ok = ~masked & ("surrogate_lcb" in stats) & (bad.count == 0)
    col = {
        "T": T, "T_source": src_code, "kl_seq": kseq[0], "tv_seq": ts_est,
        "tv_lower_bound": eps_lb, "kl_lower_bound": kl_lb,
        # the detector of delta, max k2; with the exact per-token KL it is superseded: its
        # maximum is a certified lower bound on delta, which refutes instead
        "det": np.full(G, np.nan) if exact_kl else k2,
        "surrogate": sur, "surrogate_lcb": lcb,
    }  # fmt: skip
    V.judge(col, a, per_position=pp, lcb_ok=lcb_ok)
    bound, bound_est, state, sound = col["bound"], col["bound_est"], col["state"], col["sound"]
    notes = [
        "kl_seq, tv_seq and D̄_t are Monte Carlo estimates under y ~ pi_roll (kl_seq ± 95 % "
        "normal CI); acceptance rates have 95 % Wilson score intervals",
        "delta and eps cannot be estimated from sampled tokens: kl_max_proxy (max k2) is a "
        "detector (a step where it exceeds the assumed delta is flagged), tv_lower_bound "
        "(max |p_theta - p_roll| over sampled tokens) a certified lower bound on eps",
        "D̄_t and tv_seq use E[(1 - rho)^+] = TV, exact with or without full support; "
        "a sequence shorter than t contributes 0 at t (both policies agree after the end); "
        "positions no sampled sequence reached are unknown, not 0: up to the horizon the "
        "bound takes min(1, eps, sqrt(delta/2)) there",
    ]
    notes.append(
        "tv_seq and D̄_t (means of values in [0, 1]) have Wilson score intervals with the "
        "largest variance m(1 - m) such a mean can have: conservative, and valid when a few "
        "rare sequences carry the mean"
    )
    few = int(np.sum(n < _N_RELIABLE))
    if few:
        notes.append(
            f"{few:,} step group(s) have fewer than {_N_RELIABLE} sequences: their normal "
            "confidence intervals are unreliable (coverage below 95 % is likely)"
        )
    if "surrogate" not in stats:
        notes.append(
            "no per-sequence reward column: the surrogate L is unknown, so 'guaranteed' cannot "
            "be given (pass --map reward=COLUMN)"
        )
    else:
        if "group" not in cols:
            notes.append(
                "the bound on L ASSUMES independent sequences: responses to the same prompt "
                "(GRPO groups) are not — pass --map group=COLUMN (a prompt id, number or string; "
                f"recognised without it: {', '.join(TOKEN_COLUMNS['group'])}) to make the "
                "prompt group the unit"
            )
        if masked.any():
            notes.append(
                f"the loss mask zeroes generated tokens at {int(masked.sum()):,} step "
                "group(s): the dump's surrogate is the MASKED one (a TRM / IS mask removed "
                "tokens or sequences), whose error B* does not bound, so those steps are "
                "never 'guaranteed'; the divergence estimates, over kept tokens only, then "
                "understate the divergence of what was sampled. If the zeros mark tokens "
                "the policy did not generate (tool or environment output, padding), pass "
                "--loss-mask-zeros not-generated"
            )
        notes.append(
            "surrogate L = mean of R x sum_t (rho_t - 1) with R the reward in the bound's "
            "reward units (± 95 % normal CI); 'guaranteed' needs a distribution-free one-sided "
            "95 % lower bound on L above B* (empirical Bernstein over the range ±a T: it needs "
            "--length, and many sequences at long T)"
        )
        if "adv" in cols["reward"].lower():
            notes.append(
                f"{cols['reward']!r} is used as R: an advantage R - b estimates the same L only "
                "if b does not depend on the response (a per-prompt baseline), and only in "
                "reward units (not divided by a standard deviation, as GRPO does)"
            )
    h = V.horizon_note(T_src)
    if h:
        notes.append(h)
    notes.append(V.support_note(a))
    notes.append(
        "the guarantee needs delta/eps to hold over ALL reachable contexts (docs/theory.md)"
    )
    huge = [k for k, st in stats.items() if st.values.dtype != object and np.isinf(st.values).any()]
    if huge:
        notes.append(
            f"{', '.join(huge)} infinite at some step: a log-ratio log rho above 709.78 makes "
            "rho overflow float64 (marked 'infinite', null in JSON); D̄_t and tv_seq are "
            "clipped to 1 (TV distances)"
        )
    if not step_col:
        notes.append("no step column: the whole dump is one group (step 0)")
    for key in ("kl_seq", "surrogate"):
        ht = stats[key].heavy_tail if key in stats else None
        if ht is not None and np.any(~np.isnan(ht)):
            notes.append(
                f"{key} is HEAVY-TAILED at {int(np.sum(~np.isnan(ht))):,} step group(s): "
                f"fewer than {HEAVY_TAIL_ESS:g} of its per-sequence terms effectively carry "
                "it ((sum |x|)^2 / sum x^2: a few rare tokens dominate), so its normal "
                "confidence interval is unreliable there — and a rare token that was not "
                "sampled at all cannot be seen (more sequences help)"
            )
    if fixed is not None and np.any(T_obs > fixed):
        notes.append(
            f"--length {length} is shorter than the longest sequence at "
            f"{int(np.sum(T_obs > fixed)):,} step group(s): a response longer than the "
            "cap was sampled, so T = that length there (empirical)"
        )
    if not a.given:
        notes.append(
            "no --kl-max/--tv-max: nothing is guaranteed; 'unified' is an ESTIMATE with the k2 "
            "proxy standing in for delta (state 'unknown')"
        )
    if empties:
        notes.append(
            f"{empties} sequence(s) without response tokens (every token masked): left out of the "
            "divergence estimates; 0 in the surrogate, which the paper normalises by the whole "
            "batch"
        )
    tot_tok = sum(A.n_tok for A in accs)
    tot_viol = sum(A.n_viol for A in accs)
    pv = tot_viol / tot_tok if tot_tok else float("nan")
    length_bins = []
    for bi in sorted(bins):
        nb, sL, am, ac, _v, _t = (float(x) for x in bins[bi])
        mL = sL / nb
        length_bins.append({
            "lengths": [2**bi, 2 ** (bi + 1) - 1],
            "sequences": int(nb),
            "mean_length": mL,
            "accept_trm_max": am / nb,
            "accept_combined": ac / nb,
            "predicted_iid": (1.0 - pv) ** mL,
        })  # fmt: skip
    extra = {
        "length": fixed,
        "sequences": int(n.sum()),
        "tokens": int(tot_tok),
        "thresholds": {
            "trm_max": o.trm_max,
            "trm_avg": o.trm_avg,
            "ser": o.ser,
            "ln_trm": o.ln_trm,
        },
        "per_token_violation_rate": pv,
        "length_bins": length_bins,
    }
    assumes = []
    if "surrogate_lcb" in stats and "group" not in cols:
        assumes.append("independent sequences (no prompt-group column)")
    if "surrogate_lcb" in stats and o.mask_not_generated and any(A.n_masked for A in accs):
        assumes.append("loss-mask zeros are tokens the policy did not generate")
    why_not = []
    if bad.count and "surrogate" in stats:
        why_not.append(f"{bad.count:,} malformed record(s) skipped (they may carry the loss)")
    if masked.any() and "surrogate" in stats:
        why_not.append("a loss mask removed generated tokens (the masked surrogate)")
    if "surrogate" in stats and fixed is None:
        why_not.append("no --length (the distribution-free bound needs the cap)")
    return CheckResult(
        assumes=assumes,
        not_guaranteed=why_not,
        path=str(p),
        kind="tokens",
        preset="per-token",
        assumption=a,
        step=np.array(keys, dtype=np.float64),
        line=np.zeros(G, np.int64),
        T=T,
        bound=bound,
        bound_est=bound_est,
        state=state,
        stats=stats,
        columns={q: c for q, c in cols.items()},
        bad=bad,
        invalid=invalid,
        notes=notes,
        extra=extra,
        T_source=T_src,
        sound=sound,
        # with the exact per-token KL the detector is superseded: its maximum is a certified
        # lower bound on delta, which refutes instead
        flag=col["flag"],
        detector="max k2",
    )


_HEAVY_MIN_N = 20  # below this many terms one term carries a large share anyway


def _heavy(accs, key: str) -> np.ndarray:
    """Per step, the effective number of terms (:func:`.result.effective_terms`) of the
    per-sequence terms of ``key`` where it is below :data:`.result.HEAVY_TAIL_ESS` (and
    there are enough terms to tell), else NaN."""
    out = np.full(len(accs), np.nan)
    for g, A in enumerate(accs):
        parts = A.terms.get(key)
        if not parts:
            continue
        t = np.concatenate(parts)
        if len(t) < _HEAVY_MIN_N:
            continue
        ess = effective_terms(t)
        if ess < HEAVY_TAIL_ESS:
            out[g] = ess
    return out


def _reward_range(a: Assumption) -> tuple[float, float]:
    """The reward range the bound assumes: --reward-range, else [0, a]."""
    return a.reward_range if a.reward_range is not None else (0.0, a.adv_range)


def _surrogate_moments(accs, grouped: bool):
    """Mean of x and its normal CI, and mean/variance of z, with their count: over
    sequences, or over group means (responses to one prompt are not independent)."""
    if grouped:
        rows = []
        for A in accs:
            g = np.array(list(A.groups.values()), dtype=np.float64).reshape(-1, 3)
            gx, gz = g[:, 0] / g[:, 2], g[:, 1] / g[:, 2]
            rows.append((gx.sum(), (gx * gx).sum(), gz.sum(), (gz * gz).sum(), len(g)))
        sx, sxx, sz, szz, nn = (np.array(c, dtype=np.float64) for c in zip(*rows))
    else:
        S = np.array([A.sur for A in accs])
        nn, sx, sxx, sz, szz = S.T
    m_, lo_, hi_ = CI.normal(sx, sxx, nn)
    with np.errstate(invalid="ignore", divide="ignore"):
        zbar = sz / nn
        zvar = np.maximum(szz / nn - zbar * zbar, 0.0) * nn / (nn - 1.0)
    return m_, lo_, hi_, zbar, zvar, nn


def _surrogate_lcb(zbar, var, n, a: Assumption, T: float) -> np.ndarray:
    r"""A distribution-free one-sided 95 % lower confidence bound on the surrogate L.

    Under full support :math:`E_{roll}[\sum_t(\rho_t - 1)] = -m` (0 without missing mass),
    so :math:`L = E[X] - r_{min} m` with :math:`X = (R - r_{min})\sum_t(\rho_t - 1) \ge
    -aT`. :math:`\min(X, aT)` lies in :math:`[-aT, aT]` and has a smaller mean; the
    empirical Bernstein bound of Maurer & Pontil (2009, Thm. 4) on its mean, scaled to
    that range, holds with probability 0.95 whatever the distribution -- unlike a normal
    interval, which a rare large negative term missing from the batch makes optimistic.
    """
    lo, hi = _reward_range(a)
    aT = (hi - lo) * T
    zlo = CI.bernstein_lower(zbar, var, n, a.confidence)
    # L = E[X] - r_min m with m the true missing mass, m in [0, m_assumed]
    m = a.missing_mass or 0.0
    return (2.0 * aT * zlo - aT) - max(lo, 0.0) * m


_CRIT_SRC: dict[str, Callable[[_Options, bool], str]] = {
    "trm_max": lambda o, ex: f"max_t {'exact KL' if ex else 'k2'} <= {o.trm_max:g}",
    "trm_avg": lambda o, ex: f"mean_t {'exact KL' if ex else 'k3'} <= {o.trm_avg:g}",
    "combined": lambda o, ex: "TRM-Max and TRM-Avg",
    "ln_trm": lambda o, ex: f"W/Z(T) <= {o.ln_trm:g}",
    "ser": lambda o, ex: f"mean_t |rho_t - 1| <= {o.ser:g}",
}
