r"""The TRM guarantee, step by step, on saved training logs.

For every step of a per-step metric log (or every step group of a per-token dump, see
:mod:`.tokens`, or a statistics file) :func:`check_log` computes the horizon ``T``, the
divergence statistics the log supports -- each with its status (``assumed``,
``estimate``, ``proxy``, ``lower_bound``) -- the unified bound :math:`B^*` under the
user's trust-region assumption and under the estimates (both through
:func:`trmbounds.stats.bound_columns`, as ``trmbounds eval``), and the state of the
guarantee (:data:`.result.STATES`; the rule of each is in :mod:`.result`).

Everything is columnar numpy over the steps of a block; no per-step Python objects
are created until the result is rendered.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .. import ci as CI
from ..errors import InputFileError, TrmboundsError
from . import frameworks as P
from . import tokens as TK
from . import verdict as V
from .readers import BadRecords, Chunk, sniff_format
from .result import (
    ACCEPT_TARGET,
    STATES,
    T_SOURCES,
    Assumption,
    CheckResult,
    Stat,
    _int_or_float,
    _list,
    length_value,
    unified_columns,
)
from .verdict import states

__all__ = [
    "STATES",
    "ACCEPT_TARGET",
    "Assumption",
    "CheckResult",
    "Stat",
    "unified_columns",
    "check_log",
    "judge_rows",
    "step_stats",
    "use_cap",
    "states",
]

# --------------------------------------------------------------- per-step metric logs
# kl_tok_mean and kl_seq may be negative: k1 can be, k3 by float round-off (kept, noted).
_NONNEG = {
    "T", "T_max", "T_mean", "T_cap", "T_clip", "tv_seq", "tv_lb", "tv_max_seen", "kl_max_seen",
    "k2_max", "kl_proxy_max", "logp_diff_max", "logp_diff_mean", "prob_diff_mean",
    "surrogate_se",
}  # fmt: skip
_ALWAYS = ("step", "line", "T", "T_source", "bound", "bound_est", "state", "flag")
_UNIT = {"T_clip", "reject_frac", "accept", "tv_seq", "tv_lb", "tv_max_seen", "prob_diff_mean"}
#: Estimators and detectors of a KL: +inf (or NaN) where a log-ratio overflowed -- verl's
#: file logger writes Python's json ``Infinity`` / ``NaN`` as they come -- flags the step.
_OVERFLOW = {"kl_tok_mean", "kl_seq", "k2_max", "kl_proxy_max", "logp_diff_max"}
#: Certified lower bounds on delta: +inf refutes every finite assumption.
_LOWER_BOUNDS = {"kl_max_seen"}


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
    steps_per_rollout: int = 1,
    more: Iterable[str | os.PathLike] = (),
    run: str | None = None,
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
        ``auto`` (the preset that would read the most columns), or one of
        :data:`.frameworks.PRESETS`.
    maps : mapping or iterable of "QUANTITY=COLUMN"
        Column overrides.
    length : str
        The horizon ``T``: a number (the generation cap, ``max_new_tokens``), or
        ``max``: the framework's logged cap where the preset finds one, else the longest
        response of the step (an *empirical* horizon: the bound then holds only if no
        longer response is possible, and ``guaranteed`` is never given).
    assumption : Assumption, optional
        The trust-region assumption (``--kl-max``, ``--tv-max``) and bound settings.
    skip_bad : bool
        Skip (and count) malformed records instead of stopping at the first.
    progress : callable, optional
        Called with the number of records processed so far.
    steps_per_rollout : int
        slime/miles: train steps per rollout (``num_steps_per_rollout``), to align rows
        logged at ``rollout/step`` with ``train/step`` (:mod:`.merge`).
    more : iterable of path-like
        Further per-step metric logs of the same training, read after ``path`` in order
        (a resumed run: the later file's values win at a step logged twice).
    run : str, optional
        The run to read from a wandb chart export holding several (its run names).
    **token_options
        Acceptance thresholds for per-token dumps (:func:`.tokens.check_tokens`).

    Returns
    -------
    CheckResult
    """
    assumption = assumption or Assumption()
    if not isinstance(maps, Mapping):
        maps = P.parse_maps(maps)
    Tvalue = length_value(length)
    p = Path(path)
    paths = [p, *map(Path, more)]
    from .dumps import open_dump  # frameworks' own per-token dump layouts

    dump = open_dump(p) if format in (None, "jsonl") else None
    if len(paths) > 1:  # several logs of one training: per-step metric logs only
        from .sources import check_combinable

        check_combinable(paths, format, maps, first_is_dump=dump is not None)
    if dump is not None:
        res = TK.check_tokens(
            p,
            maps={**dump.maps, **maps},
            length=length,
            assumption=assumption,
            skip_bad=skip_bad,
            progress=progress,
            source=dump,
            **token_options,
        )
        res.preset = dump.framework  # the preset name; kind "tokens" says it is a dump
        res.extra["dump"] = dump.framework
        res.notes.extend(dump.notes)
        return res
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
        flags = [f"--{k.replace('_', '-')}" for k in sorted(token_options)]
        raise TrmboundsError(
            f"{p}: {', '.join(flags)} {'applies' if len(flags) == 1 else 'apply'} to per-token "
            "dumps only; this is a per-step metric log"
        )
    from . import sources as SRC
    from .merge import merge_rows

    trainer_state = fmt == "json" and SRC.is_trainer_state(p)
    if fmt == "json" and not trainer_state:
        return _check_stats_file(p, assumption, Tvalue)
    if isinstance(steps_per_rollout, bool) or not (
        isinstance(steps_per_rollout, int) and steps_per_rollout >= 1
    ):
        raise TrmboundsError(
            f"--steps-per-rollout must be an integer >= 1, got {steps_per_rollout}"
        )
    bad = BadRecords(skip=skip_bad)
    seen: set[str] = set()
    chosen: P.Preset | None = None if preset == "auto" else P.PRESETS[preset]
    pool = list(P.PRESETS.values()) if chosen is None else [chosen]
    chunks, src_notes, src_extra = SRC.read_rows_many(
        paths, fmt, pool, maps, bad, seen, progress, format, run
    )
    if not chunks:
        raise InputFileError(
            f"{p}: no records with any known column"
            + (f"; columns present: {_list(seen)}" if seen else " (empty file)")
        )
    if chosen is None:
        chosen = P.guess_preset(seen)
    cols = _check_columns(p, chosen, maps, seen, Tvalue, assumption.given)
    aligned = "step" not in maps and chosen.rollout_step is not None
    merged, merge_report = merge_rows(
        p,
        chunks,
        step=cols["step"],
        columns=set(cols.values()) - {cols["step"]},
        rollout_step=chosen.rollout_step if aligned else None,
        rollout_flag=SRC.ROLLOUT_FLAG if aligned else None,
        steps_per_rollout=steps_per_rollout,
        bad=bad,
    )
    del chunks
    parts: dict[str, dict[int, np.ndarray]] = {}
    sizes: list[int] = []
    invalid: dict[str, list] = {}
    no_metrics = 0
    for chunk in _blocks(merged):
        res = _metric_block(p, chunk, chosen, maps, Tvalue, assumption, bad, invalid)
        if res is not None:
            block, nm = res
            no_metrics += nm
            b = len(sizes)
            sizes.append(len(block["step"]))
            for k, v in block.items():
                if k in _ALWAYS or not np.isnan(v).all():  # keep memory to what was logged
                    parts.setdefault(k, {})[b] = v
    assert chosen is not None
    cat = {
        k: np.concatenate([v.get(b, np.full(n_b, np.nan)) for b, n_b in enumerate(sizes)])
        for k, v in parts.items()
    }
    n = len(cat.get("step", ()))
    if not n:
        what = f"{bad.count:,} malformed record(s) skipped" if bad.count else "no record"
        raise InputFileError(
            f"{p}: nothing could be checked: {what}, and no record with a valid step and a "
            "known column" + (f"; first: {bad.messages[0]}" if bad.messages else "")
        )
    cap_notes: list[str] = []
    if n and Tvalue is None:
        _run_cap(cat, assumption, cap_notes)
    empty = np.zeros(0)
    get = lambda k: cat.get(k, empty)  # noqa: E731
    stats = step_stats(cat, cols, chosen, assumption)
    T_src = np.array(T_SOURCES, dtype=object)[get("T_source").astype(np.int64)]
    notes = (
        P.notes_for(chosen, cols) + src_notes + merge_report.notes(per_event=fmt == "tensorboard")
    )
    if not set(cols) - set(P.NOT_METRICS):
        notes.append(P.no_metric_message(chosen) + "; the bound rests on --kl-max/--tv-max alone")
    if "kl_seq" in stats and "kl_seq" not in cols:
        notes.append(
            "kl_seq = token-mean KL estimate x mean response length: the batch estimate of "
            "E[sum_t k_t] (no confidence interval: the log keeps only the batch mean)"
        )
    nan_n = np.full(n, np.nan)
    with np.errstate(invalid="ignore"):
        neg = int(np.sum((cat.get("kl_seq", nan_n) < 0) | (cat.get("kl_tok_mean", nan_n) < 0)))
    if neg:
        notes.append(
            f"{neg:,} step(s) logged a negative token-mean KL estimate (kept as logged: k1 can "
            "be negative, k3 only by float round-off); the estimate-based bound treats it as "
            "unknown (a KL is non-negative) and uses T·δ"
        )
    if "kl_max_proxy" in stats or "kl_max_proxy_k3" in stats:
        notes.append(
            "kl_max_proxy (max k2, or ½ max|Δlog p|², over sampled tokens) is a detector of "
            "delta, neither an estimate nor a bound: a step whose detector exceeds the assumed "
            "delta is flagged; with no --kl-max it stands in for delta in the estimate"
        )
    if "tv_lower_bound" in stats:
        notes.append(
            "tv_lower_bound = max |p_theta(y) - p_roll(y)| over sampled tokens <= eps "
            "(|p(y) - q(y)| <= TV): it can refute an assumed eps, never certify one"
        )
    if "surrogate_lcb" in stats:
        notes.append(
            "surrogate_lcb = L - z se from the logged standard error: a normal "
            "approximation, which rare events make optimistic (a log cannot show them), so "
            "it reaches 'estimated-gain' at most, never 'guaranteed'. A guarantee needs a "
            "distribution-free bound on L: check a per-token dump with a per-sequence reward "
            "(and prompt-group) column instead (docs/logs.md)"
        )
    if "surrogate" in stats and "surrogate_lcb" not in stats:
        notes.append(
            "the logged surrogate is a batch estimate without a standard error: at most "
            "'estimated-gain', never 'guaranteed' (pass --map surrogate_se=COLUMN)"
        )
    notes.extend(cap_notes)
    ov = int(np.sum(get("overflow") > 0))  # n > 0: an empty log was refused above
    if ov:
        notes.append(
            f"{ov:,} step(s) logged an infinite or NaN KL estimate or detector (a log-ratio "
            "overflowed float): evidence against any finite delta, not noise — flagged "
            "under --kl-max, and the estimate-based bound there is infinite"
        )
    if Tvalue is not None and n and np.any(get("T_source") == 2):
        k = int(np.sum(get("T_source") == 2))
        notes.append(
            f"--length {Tvalue:g} is below the longest response logged at {k:,} step(s) (up to "
            f"{np.nanmax(get('T')):,.0f}): the cap given is wrong there, so T = that length "
            "(an empirical horizon)"
        )
    notes.extend(V.common_notes(assumption, T_src, n))
    why_not = []
    if "surrogate" in stats:
        why_not.append(
            "a metric log's bound on L is a normal approximation"
            if "surrogate_lcb" in stats
            else "a logged L has no lower confidence bound"
        )
    res = CheckResult(
        not_guaranteed=why_not,
        path=str(p),
        kind="metrics",
        preset=chosen.name,
        assumption=assumption,
        step=get("step"),
        line=get("line").astype(np.int64),
        T=get("T"),
        bound=get("bound"),
        bound_est=get("bound_est"),
        state=get("state").astype(np.int8),
        stats=stats,
        columns=cols,
        bad=bad,
        invalid=invalid,
        notes=notes,
        rows_without_metrics=no_metrics,
        T_source=T_src,
        flag=get("flag"),
        detector="max k2" if "kl_max_proxy" in stats else "max k3",
        extra={
            "merge": merge_report.to_dict(),
            "preset_source": chosen.source,
            **src_extra,
            "length": Tvalue,
        },  # fmt: skip
    )
    return res


def step_stats(
    cat: Mapping[str, np.ndarray], cols: Mapping[str, str], chosen: P.Preset, assumption: Assumption
) -> dict[str, Stat]:
    """The per-step statistics of judged metric-log steps (the columns of
    :func:`judge_rows`), each with its status and source, as ``check`` reports them."""
    empty = np.zeros(0)
    get = lambda k: cat.get(k, empty)  # noqa: E731
    stats: dict[str, Stat] = {}

    def add(name: str, q: str, src: str | None = None, status_: str | None = None, ci=None):
        v = get(name)
        if len(v) and np.any(~np.isnan(v)):
            st = status_ or P.status_of(chosen, q, cols.get(q))
            stats[name] = Stat(v, st, src or cols.get(q, q), ci)

    kq = "kl_seq" if "kl_seq" in cols else "kl_tok_mean"
    kseq_status = P.status_of(chosen, kq, cols.get(kq))
    kseq_src = P.source_label(cols, "kl_seq")
    add("kl_seq", "kl_seq", kseq_src, kseq_status)
    add("tv_seq", "tv_seq")
    add("tv_lower_bound", "tv_lb", _src(cols, "tv_lb", "tv_max_seen"), "lower_bound")
    add("kl_lower_bound", "kl_max_seen", None, "lower_bound")
    add("kl_max_proxy", "k2_max", P.source_label(cols, "k2_max"), "proxy")
    add("kl_max_proxy_k3", "kl_proxy_max", None, "proxy")
    add("logp_diff_mean", "logp_diff_mean", None, "proxy")
    add("prob_diff_mean", "prob_diff_mean", None, "proxy")
    add("acceptance", "accept", P.source_label(cols, "accept"), "logged")
    add("kl_tok_mean", "kl_tok_mean", None, None)  # as logged, also without T_mean
    se = get("surrogate_se")
    sur = get("surrogate")
    ci = None
    if len(se) and np.any(~np.isnan(se)):
        ci = (sur - CI.Z95 * se, sur + CI.Z95 * se)
    add("surrogate", "surrogate", None, "estimate", ci)
    if ci is not None:
        add("surrogate_lcb", "surrogate_lcb", f"{cols['surrogate']} - {assumption.z:.3f} x "
            f"{cols['surrogate_se']} (one-sided {assumption.confidence:.0%}, normal "
            "approximation: approximate)", "estimate")  # fmt: skip
    return stats


def _src(cols: Mapping[str, str], *qs: str) -> str:
    return " | ".join(cols[q] for q in qs if q in cols)


_BLOCK_ROWS = 1 << 16


def _blocks(c):
    """The merged rows in blocks of :data:`_BLOCK_ROWS` (bounded temporaries)."""
    for a in range(0, len(c), _BLOCK_ROWS):
        b = a + _BLOCK_ROWS
        yield type(c)(
            lines=c.lines[a:b],
            unit=c.unit,
            columns={k: v[a:b] for k, v in c.columns.items()},
            present={k: v[a:b] for k, v in c.present.items()},
        )


def _check_columns(p, preset, maps, seen, Tvalue, assumed=False) -> dict[str, str]:
    cols = P.resolve(preset, maps, seen)
    for q, c in maps.items():
        if c not in seen:
            raise InputFileError(
                f"{p}: column {c!r} (--map {q}={c}) not found; columns present: {_list(seen)}"
            )
    tried = f"preset {preset.name}"
    if "surrogate_se" in cols and "surrogate" not in cols:
        raise InputFileError(
            f"{p}: a standard error of the surrogate ({cols['surrogate_se']!r}) without the "
            "surrogate itself: pass --map surrogate=COLUMN too"
        )
    if "step" not in cols:
        raise InputFileError(
            f"{p}: no step column (tried {', '.join(P.candidates(preset, maps)['step'])}; "
            f"pass --map step=COLUMN); columns present: {_list(seen)}"
        )
    if Tvalue is None and not ({"T", "T_max", "T_cap"} & set(cols)):
        cands = [c for q in ("T_cap", "T_max", "T") for c in P.candidates(preset, maps).get(q, ())]
        raise InputFileError(
            f"{p}: no response-length column (tried {tried}: {', '.join(cands) or 'none known'}); "
            "pass --length MAX_NEW_TOKENS (the generation cap: the horizon of the bounds) or "
            f"--map T_max=COLUMN; columns present: {_list(seen)}"
        )
    stats_q = set(cols) - set(P.NOT_METRICS)
    if not stats_q and not assumed:
        cand = sorted(
            {
                c
                for q, cs in P.candidates(preset, maps).items()
                for c in cs
                if q not in P.NOT_METRICS
            }
        )
        raise InputFileError(
            f"{p}: {P.no_metric_message(preset)} (tried {tried}: {_list(cand, 12)}). "
            "Pass --preset or --map QUANTITY=COLUMN, or --kl-max/--tv-max for the bound "
            f"under that assumption alone; columns present: {_list(seen)}"
        )
    return cols


def judge_rows(
    chunk: Chunk,
    preset: P.Preset,
    maps: Mapping[str, str],
    length: float | None,
    assumption: Assumption,
    *,
    path: str | os.PathLike = "",
    bad: BadRecords | None = None,
    invalid: dict[str, list] | None = None,
) -> tuple[dict[str, np.ndarray], int] | None:
    """The verdict of every step of a block of metric-log rows, one row per step (rows
    merged by step, :mod:`.merge`): what ``check`` does to each block of a log, and
    :class:`trmbounds.monitor.Monitor` to each step. ``length`` is the horizon given
    (:func:`.result.length_value`; None: from the log). Returns per-step columns
    (``step``, ``T``, ``T_source``, ``bound``, ``bound_est``, ``state``, ``flag``, the
    statistics) and the number of rows without any column of interest, or None when no
    row is a step. Rows without a valid step go to ``bad``; NaN, infinite or
    out-of-range values (not used) are counted in ``invalid`` (column -> [count, first
    step]). The run-level rule of the generation cap is :func:`use_cap`."""
    bad = bad if bad is not None else BadRecords()
    invalid = invalid if invalid is not None else {}
    return _metric_block(path, chunk, preset, maps, length, assumption, bad, invalid)


def _metric_block(p, chunk, preset, maps, Tvalue, a: Assumption, bad, invalid):
    cols = P.resolve(preset, maps, chunk.columns)
    n = len(chunk)
    q: dict[str, np.ndarray] = {}
    over = np.zeros(n, bool)
    for name, c in cols.items():
        v = chunk.columns[c].copy()
        pres = chunk.present[c]
        v[~pres] = np.nan
        if name != "step":
            with np.errstate(invalid="ignore"):
                if name in _OVERFLOW:
                    # +inf (or NaN) written for an overflow: evidence, not noise
                    over |= pres & (np.isnan(v) | (v == np.inf))
                badv = pres & ~np.isfinite(v)
                if name in _LOWER_BOUNDS:
                    badv &= v != np.inf  # +inf refutes any finite delta: kept
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
        for j in np.flatnonzero(nostep):
            bad.add(p, f"{chunk.unit} {chunk.lines[j]}", f"no valid step value ({step[j]})")
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
    over = over[keep]
    m = int(keep.sum())
    nan = np.full(m, np.nan)
    g = lambda k: q.get(k, nan)  # noqa: E731
    with np.errstate(invalid="ignore"):
        seen_T = np.ceil(np.fmax(g("T_max"), g("T")))  # the longest response seen
        cap = np.ceil(g("T_cap"))
        # a response cut at the cap (verl's clip_ratio > 0): the longest one IS the cap
        cap = np.where(np.isnan(cap) & (g("T_clip") > 0), seen_T, cap)
    T, src = V.horizon(seen_T, cap, Tvalue)
    kseq = g("kl_seq")
    kseq = np.where(np.isnan(kseq), g("kl_tok_mean") * g("T_mean"), kseq)
    eps_lb = np.fmax(g("tv_lb"), g("tv_max_seen"))
    k2 = g("k2_max")
    k2 = np.where(np.isnan(k2), 0.5 * g("logp_diff_max") ** 2, k2)
    det = np.where(np.isnan(k2), g("kl_proxy_max"), k2)  # a detector of delta
    det = np.where(over, np.inf, det)  # an overflowed divergence: the detector is infinite
    acc = g("accept")
    acc = np.where(np.isnan(acc), 1.0 - g("reject_frac"), acc)
    sur = g("surrogate")
    lcb = sur - a.z * g("surrogate_se")
    col = {"T": T, "T_source": src, "kl_seq": kseq, "tv_seq": g("tv_seq"),
           "tv_lower_bound": eps_lb, "kl_lower_bound": g("kl_max_seen"), "surrogate": sur,
           "surrogate_lcb": lcb, "det": det}  # fmt: skip
    _verdicts(col, a)
    col["overflow"] = over.astype(np.float64)
    return (
        {
            "step": q["step"],
            "line": chunk.lines[keep].astype(np.float64),
            "T": T,
            "T_source": src,
            "bound": col["bound"],
            "bound_est": col["bound_est"],
            "state": col["state"].astype(np.float64),
            "flag": col["flag"],
            "det": det,
            "overflow": col["overflow"],
            "kl_seq": kseq,
            "kl_tok_mean": g("kl_tok_mean"),
            "tv_seq": g("tv_seq"),
            "tv_lower_bound": eps_lb,
            "kl_lower_bound": g("kl_max_seen"),
            "kl_max_proxy": k2,
            "kl_max_proxy_k3": g("kl_proxy_max"),
            "logp_diff_mean": g("logp_diff_mean"),
            "prob_diff_mean": g("prob_diff_mean"),
            "acceptance": acc,
            "surrogate": sur,
            "surrogate_se": g("surrogate_se"),
            "surrogate_lcb": lcb,
        },
        no_metrics,
    )


def _verdicts(c: dict[str, np.ndarray], a: Assumption) -> None:
    """The verdict stage (:func:`.verdict.judge`) on a block of metric-log steps. A
    metric log's lower confidence bound on L comes from a logged standard error (a
    normal approximation): it never supports 'guaranteed'."""
    V.judge(c, a, lcb_ok=False)


def _run_cap(cat: dict[str, np.ndarray], a: Assumption, notes: list[str]) -> None:
    """The generation cap is a run's setting: once some step shows it (a logged cap, or a
    response cut at it), steps without that evidence use it too (the largest shown)."""
    src = cat.get("T_source")
    if src is None or not np.any(src == 1) or not np.any(src == 2):
        return
    cap = float(np.nanmax(np.where(src == 1, cat["T"], np.nan)))
    k = use_cap(cat, a, cap)
    if k:
        notes.append(
            f"horizon: the log shows the generation cap {cap:,.0f} at some steps (a logged cap "
            f"or a response cut at it); the {k:,} other step(s) use it too"
        )


def use_cap(cat: dict[str, np.ndarray], a: Assumption, cap: float) -> int:
    """Judge again, at the horizon ``cap`` (a generation cap the run showed), the steps of
    ``cat`` (columns of :func:`judge_rows`) whose horizon is empirical and no longer
    than ``cap``; returns how many."""
    src = cat["T_source"]
    with np.errstate(invalid="ignore"):
        fix = (src == 2) & ~(cat["T"] > cap)  # no longer response than the cap there
    if not fix.any():
        return 0
    nan = np.full(len(src), np.nan)
    c = {k: cat.get(k, nan)[fix] for k in ("T", "T_source", "kl_seq", "tv_seq",
         "tv_lower_bound", "kl_lower_bound", "surrogate", "surrogate_lcb", "det")}  # fmt: skip
    c["T"] = np.full(int(fix.sum()), cap)
    c["T_source"] = np.ones(int(fix.sum()))
    _verdicts(c, a)
    for k in ("T", "T_source", "bound", "bound_est", "state", "flag"):
        cat[k] = cat[k].copy()
        cat[k][fix] = c[k]
    return int(fix.sum())


# ------------------------------------------------------------------- statistics files
def _check_stats_file(p: Path, a: Assumption, Tvalue: float | None) -> CheckResult:
    """One "step" from a statistics file (``trmbounds measure``, docs/stats-file.md),
    judged by :func:`.verdict.stats_file_verdict` -- the function ``trmbounds eval
    --stats`` uses, so both give the same :math:`B^*`."""
    from ..stats import load_stats

    v = V.stats_file_verdict(load_stats(p), a, Tvalue)
    a, s, r_est = v.assumption, v.stats, v.result
    T, src, bound, kl_lb, tv_lb = float(v.T), v.T_source, v.bound, v.kl_lb, v.tv_lb
    mm, mm_status, lb_src, st = v.mm, v.mm_status, v.lb_source, s.status
    pp = s.per_position
    notes = list(v.notes)
    if v.horizon_note:
        notes.append(v.horizon_note)
    notes.extend(x for x in r_est.notes if not x.startswith(("maxima:", "exact:", "support:")))
    notes.extend(f"derived: {k} {d.rule}" for k, d in r_est.derived.items()
                 if k == "per_position" and pp is not None)  # fmt: skip
    one = lambda x: np.array([np.nan if x is None else float(x)])  # noqa: E731
    stats: dict[str, Stat] = {}
    if not math.isnan(kl_lb):
        stats["kl_lower_bound"] = Stat(one(kl_lb), "lower_bound", lb_src["kl_max"])
    if not math.isnan(tv_lb):
        stats["tv_lower_bound"] = Stat(one(tv_lb), "lower_bound", lb_src["tv_max"])
    for k in ("kl_seq", "tv_seq"):
        if getattr(s, k) is not None:
            stats[k] = Stat(one(getattr(s, k)), st.get(k, "estimate"), k)
    if mm is not None:
        stats["missing_mass"] = Stat(one(mm), mm_status or "assumed", "missing_mass")
    if pp is not None:
        arr = np.empty(1, dtype=object)
        arr[0] = np.asarray(pp, dtype=float)
        stats["per_position"] = Stat(arr, st.get("per_position", "estimate"), "per_position")
    Ta = np.array([T])
    T_src = np.array([src], dtype=object)
    sound = np.array([src != "empirical" and mm_status in (None, "assumed", "certified")])
    nan1 = one(None)
    state = V.states(Ta, np.array([bound]), a, np.array([tv_lb]), np.array([kl_lb]), nan1, nan1)
    notes.extend(V.common_notes(a, T_src, 1, mm_status, mm, stats_file=True))
    if not a.given:
        notes.append(
            "the file's maxima are over measured contexts only, so 'unified' is an ESTIMATE"
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
        T_source=T_src,
        sound=sound,
        extra={"length": Tvalue, **({"missing_mass_status": mm_status} if mm_status else {})},
    )
