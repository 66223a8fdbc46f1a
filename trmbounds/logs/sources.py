r"""Row sources that keep every logged record, for merging by step (:mod:`.merge`).

:func:`tensorboard_rows` reads a TensorBoard run as one row per event, in the order
the events were written (files oldest first), so that a value logged twice at one
step -- a resumed run -- is seen and counted, not silently overwritten.
:func:`trainer_state_rows` reads the ``log_history`` of an HF Trainer
``trainer_state.json`` (TRL, ms-swift): one row per logged dict, raw metric names,
``step`` = the global step.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from .. import _io
from ..errors import InputFileError, TrmboundsError
from . import frameworks as F
from .readers import BadRecords, Chunk, _chunk_from_records, iter_log

__all__ = [
    "ROLLOUT_FLAG",
    "read_rows",
    "read_rows_many",
    "tensorboard_plan",
    "tensorboard_rows",
    "is_trainer_state",
    "trainer_state_rows",
]

#: Synthetic column marking a TensorBoard row of tags logged at the rollout step.
ROLLOUT_FLAG = "__rollout_row__"
_BATCH = 65536


def read_rows(
    path: Path,
    fmt: str,
    presets: Iterable[F.Preset],
    maps: Mapping[str, str],
    bad: BadRecords,
    seen: set[str],
    progress: Callable[[int], None] | None = None,
    *,
    format: str | None = None,
    run: str | None = None,
) -> tuple[list[Chunk], list[str], dict[str, Any]]:
    """Every row of a per-step metric log, restricted to the columns ``presets`` could read.

    Returns the chunks (file order), notes on what was read (the TensorBoard run, its
    event files, runs not read) and summary entries (``tensorboard_run``). A directory
    (``format`` not given) is searched for logs of every kind (:func:`directory_logs`):
    one kind is read, several are refused with the list. ``run`` picks a run of a wandb
    chart export (``extra["wandb_run"]`` says which was read).
    """
    presets = list(presets)
    want = {ROLLOUT_FLAG}
    for pr in presets:
        for c in F.candidates(pr, maps).values():
            want.update(c)
        if pr.rollout_step:
            want.add(pr.rollout_step)
    notes: list[str] = []
    extra: dict[str, Any] = {}
    if fmt == "tensorboard" and format is None and Path(path).is_dir():
        path, fmt, dir_notes = choose_in_directory(Path(path), maps)
        notes.extend(dir_notes)
    state = _output_dir_state(path) if fmt == "tensorboard" else None
    if state is not None:  # an HF Trainer output directory: its own whole history
        notes.append(
            f"{state} read: the Trainer's whole log history, a resume included (the "
            f"TensorBoard runs below {path} were not read; pass them to read them instead)"
        )
        notes.extend(_stale_state_note(state, path))
        path, fmt = state, "json"
    if fmt == "wandb" and path.is_dir():
        (path,) = _one_wandb_run(path)
    rows: Iterator[Chunk]
    runs, plan_notes = tensorboard_plan(path) if fmt == "tensorboard" else ([], [])
    if len(runs) > 1:  # one run, crashed and resumed: its runs in the order written
        notes.extend(plan_notes)
        extra["tensorboard_run"] = str(runs[0])
        extra["tensorboard_runs"] = [str(r) for r in runs]
        groups = sorted({g for pr in presets for g in pr.rollout_groups})
        rows = (c for r in runs for c in tensorboard_rows(r, want, bad, seen, groups))
    elif fmt == "tensorboard":
        from . import tensorboard as TB

        notes.extend(plan_notes)
        if runs and runs[0] != path:
            path = runs[0]  # the one run with scalars below the directory
            notes.append(f"TensorBoard run read: {path}")
        files = TB.event_files(path)
        tb_run = TB.run_dir(path)
        extra["tensorboard_run"] = str(tb_run)
        if path.is_dir() and tb_run != path:
            notes.append(f"TensorBoard run read: {tb_run}")
        if len(files) > 1:
            notes.append(
                f"{len(files)} event files in the run read in order, oldest first "
                "(restarts); steps logged again are counted below"
            )
        too_deep: list[Path] = []
        others = (
            [str(o.relative_to(tb_run)) for o in TB.other_runs(tb_run, too_deep)]
            if path.is_dir()
            else []
        )
        if too_deep:
            notes.append(TB.deep_note(too_deep))
        if others:
            more = f" … (+{len(others) - 8} more)" if len(others) > 8 else ""
            notes.append(
                f"{len(others)} other TensorBoard runs in sub-directories NOT read: "
                + ", ".join(others[:8])
                + more
            )
        groups = sorted({g for pr in presets for g in pr.rollout_groups})
        rows = tensorboard_rows(path, want, bad, seen, groups)
    info: dict[str, Any] = {}
    if fmt == "tensorboard":
        pass
    elif fmt == "json":
        rows = trainer_state_rows(path, want, bad, seen, info)
    elif fmt == "wandb":
        from .wandb import history_rows

        rows = history_rows(path, want, bad, seen, info)
        extra["wandb_run"] = str(path)
    elif fmt == "csv" and (export := _chart_export(path)) is not None:
        rows = _chart_rows(path, export, want, bad, seen, run, notes, extra)
    else:
        rows = iter_log(path, fmt, columns=want, bad=bad, seen=seen)
    chunks = []
    n_done = 0
    for chunk in rows:
        chunks.append(chunk)
        n_done += len(chunk)
        if progress is not None:
            progress(n_done)
    seen.discard(ROLLOUT_FLAG)
    if fmt == "json":
        notes.extend(logging_steps_note(info.get("logging_steps")))
    if fmt == "wandb":
        notes.append(
            f"wandb offline run {path}: {info.get('records', 0)} history record(s) read "
            "(wandb's _step is the step)"
        )
        if info.get("truncated"):
            notes.append(
                f"WARNING {path}: the last {info['truncated']} byte(s) are an unfinished "
                "record (the run was killed mid-write, or is still running): not read"
            )
    return chunks, notes, extra


def logging_steps_note(logging_steps: Any) -> list[str]:
    """What a ``logging_steps`` > 1 recorded in trainer_state.json does to a logged maximum.

    TRL's ``GRPOTrainer.log`` (ms-swift's too) averages every metric over the generation
    batches of the window: a logged "max" is a mean of k non-negative maxima, which is at
    least their maximum / k (k = ``logging_steps`` with TRL's defaults).

    Examples
    --------
    >>> logging_steps_note(1), logging_steps_note(None)
    ([], [])
    >>> "up to 4 x" in logging_steps_note(4)[0] and "16 x" in logging_steps_note(4)[0]
    True
    """
    if isinstance(logging_steps, bool) or not isinstance(logging_steps, int) or logging_steps <= 1:
        return []
    k = logging_steps
    return [
        f"trainer_state.json: logging_steps = {k}: TRL and ms-swift log every metric as the "
        f"mean over the generation batches of {k} steps (k = {k} batches with TRL's defaults), "
        f"so a logged maximum such as sampling/sampling_logp_difference/max can be up to {k} x "
        f"below the window's maximum (the mean of k maxima >= 0 is >= their maximum / k), its "
        f"k2 up to {k * k} x; train with logging_steps=1 where the mismatch matters"
    ]


def tensorboard_rows(
    path: str | os.PathLike,
    want: set[str] | None,
    bad: BadRecords,
    seen: set[str],
    rollout_groups: Iterable[str] = (),
) -> Iterator[Chunk]:
    """One row per event (``step`` = the event's step), in file order.

    Tags that start with one of ``rollout_groups`` go to a separate row flagged by
    :data:`ROLLOUT_FLAG` (slime and miles log them at the rollout step).
    """
    from .tensorboard import iter_scalars

    groups = tuple(rollout_groups)
    recs: list[dict] = []
    lines: list[int] = []
    for rec, step, scalars in iter_scalars(path, bad, seen):
        main: dict = {}
        roll: dict = {}
        for tag, x in scalars:
            if want is not None and tag not in want:
                continue
            (roll if groups and tag.startswith(groups) else main)[tag] = x
        for row, flag in ((main, False), (roll, True)):
            if row:
                row["step"] = float(step)
                if flag:
                    row[ROLLOUT_FLAG] = 1.0
                recs.append(row)
                lines.append(rec)
        if len(recs) >= _BATCH:
            yield _chunk_from_records(recs, lines, "record", set())
            recs, lines = [], []
    seen.add("step")
    if recs:
        yield _chunk_from_records(recs, lines, "record", set())


def is_trainer_state(path: str | os.PathLike) -> bool:
    """True for a JSON document with a ``log_history`` list (HF Trainer's trainer_state.json)."""
    p = Path(path)
    try:
        with _io.open_input(p, "log file") as fh:
            head = fh.read(1 << 16)
    except (OSError, InputFileError):  # a pipe is read once, as a statistics file
        return False
    return b'"log_history"' in head or p.name == "trainer_state.json"


def trainer_state_rows(
    path: str | os.PathLike,
    want: set[str] | None,
    bad: BadRecords,
    seen: set[str],
    info: dict[str, Any] | None = None,
) -> Iterator[Chunk]:
    """The ``log_history`` entries of a trainer_state.json, one row each (row = 1-based entry).

    ``info``, if given, receives the state's ``logging_steps`` and ``global_step``.
    """
    p = Path(path)
    doc = _io.load_json(p, "trainer state file")  # one-line errors: UTF-8, depth, digits
    hist = doc.get("log_history") if isinstance(doc, dict) else None
    if not isinstance(hist, list):
        raise InputFileError(f"{p}: no 'log_history' list (not an HF trainer_state.json)")
    if info is not None:
        info.update({k: doc.get(k) for k in ("logging_steps", "global_step")})
    recs, lines = [], []
    for i, entry in enumerate(hist, start=1):
        if not isinstance(entry, dict):
            bad.add(p, f"log_history entry {i}", "not an object")
            continue
        row = {}
        for k, v in entry.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            seen.add(k)
            if want is None or k in want:
                try:
                    row[k] = float(v)
                except OverflowError:  # an integer beyond the doubles: infinite, not used
                    row[k] = math.copysign(math.inf, v)
        recs.append(row)
        lines.append(i)
    if recs:
        yield _chunk_from_records(recs, lines, "entry", set())


# ------------------------------------------------------ several runs, several files
def read_rows_many(
    paths: list[Path],
    fmt: str,
    presets: Iterable[F.Preset],
    maps: Mapping[str, str],
    bad: BadRecords,
    seen: set[str],
    progress: Callable[[int], None] | None = None,
    format: str | None = None,
    run: str | None = None,
) -> tuple[list[Chunk], list[str], dict[str, Any]]:
    """:func:`read_rows` of every path in order: rows of a later file come later, so at a
    step logged in several files the later file's value wins (as in a resume).

    ``fmt`` is the first path's format; the others' come from their own names (or
    ``format``). Token dumps and statistics files cannot be combined. ``run``: the run
    to read from wandb chart exports (an error if no log is one).
    """
    from .readers import sniff_format

    presets = list(presets)
    kw = dict(format=format, run=run)
    chunks, notes, extra = read_rows(paths[0], fmt, presets, maps, bad, seen, progress, **kw)
    if len(paths) == 1:
        _check_run_used(run, extra, paths)
        return chunks, notes, extra
    for q in paths[1:]:
        c, n, e = read_rows(q, sniff_format(q, format), presets, maps, bad, seen, progress, **kw)
        chunks += c
        notes += [f"{q}: {x}" for x in n]
        for k, v in e.items():
            extra.setdefault(k, v)
    notes.insert(
        0,
        f"{len(paths)} logs read in the order given ({', '.join(str(q) for q in paths)}): "
        "at a step logged in several, the later file's values win",
    )
    extra["logs"] = [str(q) for q in paths]
    _check_run_used(run, extra, paths)
    return chunks, notes, extra


def _check_run_used(run: str | None, extra: dict[str, Any], paths: list[Path]) -> None:
    if run is not None and "wandb_chart_run" not in extra:
        raise InputFileError(
            f"--run {run}: {', '.join(map(str, paths))} is not a wandb chart export (a CSV "
            "with 'Step' and '<run name> - <metric>' columns); --run picks one of its runs"
        )


# ------------------------------------------------------------------ wandb exports
def _chart_export(path: Path):
    """The wandb chart-export layout of a CSV file, or None (any other CSV)."""
    from .readers import _csv_header
    from .wandb import chart_export

    return chart_export(_csv_header(path))


def _chart_rows(path, export, want, bad, seen, run, notes, extra) -> Iterator[Chunk]:
    """The rows of one run of a wandb chart export, its columns renamed to metric names
    (``<run> - kl`` -> ``kl``, ``Step`` -> ``step``); ``__MIN``/``__MAX`` compared, not read."""
    from .wandb import chart_columns

    name, rename = chart_columns(export, path, run)
    seen.update(rename.values())
    cols = {c for c, m in rename.items() if want is None or m in want}
    comp = {c: export.companions[c] for c in cols if c in export.companions}
    read = cols | {x for pair in comp.values() for x in pair}
    bucketed, rows = 0, 0
    for chunk in iter_log(path, "csv", columns=read, bad=bad, seen=set()):
        for lo, hi in comp.values():
            if lo in chunk.columns and hi in chunk.columns:
                a, b = chunk.columns[lo], chunk.columns[hi]
                bucketed += int(((a != b) & chunk.present[lo] & chunk.present[hi]).sum())
        rows += len(chunk)
        out = Chunk(lines=chunk.lines, unit=chunk.unit)
        for c in cols:
            if c in chunk.columns:
                out.columns[rename[c]] = chunk.columns[c]
                out.present[rename[c]] = chunk.present[c]
        yield out
    extra["wandb_chart_run"] = name
    who = f"run {name!r}" if name else "its one run"
    notes.append(
        f"{path}: a wandb chart export, {who} read ('<run> - <metric>' columns; the x "
        f"column {export.x!r} is the step); the __MIN/__MAX companions are not read"
    )
    if bucketed:
        notes.append(
            f"WARNING {path}: {bucketed} value(s) have __MIN < __MAX: the chart merged several "
            "logged steps into one point (wandb's point aggregation keeps each bucket's last "
            "value), so a spike between them is missed; export the full history instead "
            "(docs/logs.md, wandb)"
        )


def _one_wandb_run(path: Path) -> list[Path]:
    from .wandb import offline_runs

    runs = offline_runs(path)
    if len(runs) != 1:
        raise InputFileError(
            f"{path}: {len(runs)} wandb offline runs below this directory; pass one run "
            f"directory: {', '.join(str(r.parent) for r in runs[:8])}"
            if runs
            else f"{path}: no wandb offline run (run-*.wandb) below this directory"
        )
    return runs


# -------------------------------------------------------- what a directory holds
_LOG_EXT = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet",
            ".pq": "parquet"}  # fmt: skip
_PRUNE = ("checkpoint-", ".", "__pycache__", "node_modules", "global_step")
_MAX_FILES = 20000

#: The kinds of log a directory may hold, as the listing names them.
KINDS = {
    "tensorboard": "TensorBoard run",
    "trainer_state": "HF Trainer log history",
    "wandb": "wandb offline run",
    "metrics": "per-step metric log",
    "tokens": "per-token dump",
    "stats": "statistics file",
}


def directory_logs(path: Path, maps: Mapping[str, str] = {}) -> list[tuple[Path, str]]:  # noqa: B006
    """Every log at or below ``path``, with its kind (a key of :data:`KINDS`).

    A TensorBoard run is a directory of event files; TensorBoard runs below a directory
    that holds a ``trainer_state.json`` (an HF Trainer output) belong to it. JSONL, CSV
    and Parquet files count when they hold per-token log-probabilities or a metric some
    preset reads (a prompts file does not); a ``.json`` counts when it is a statistics
    file (``T`` and ``kl_max``/``tv_max``). HF ``checkpoint-*`` directories (partial
    copies of the state) and hidden directories are not searched.
    """
    from . import tensorboard as TB

    found: list[tuple[Path, str]] = []
    outputs: list[Path] = []
    wandb_runs: dict[Path, Path] = {}
    n = 0
    for d, dirs, files in _io.walk(path):  # iterative, bounded depth, regular files only
        dirs[:] = sorted(x for x in dirs if not x.startswith(_PRUNE))
        for f in sorted(files):
            n += 1
            if n > _MAX_FILES:
                return found
            q = Path(d, f)
            if not q.is_file():  # a FIFO, a socket, a device, a dangling link: never opened
                continue
            ext = q.suffix.lower()
            if f == "trainer_state.json":
                outputs.append(q.parent)
                found.append((q, "trainer_state"))
            elif ext == ".wandb":
                wandb_runs.setdefault(q.resolve(), q)
            elif ext == ".json":
                if _is_stats_file(q):
                    found.append((q, "stats"))
            elif ext in _LOG_EXT:
                kind = _log_kind(q, _LOG_EXT[ext], maps)
                if kind is not None:
                    found.append((q, kind))
    for r in TB.find_runs(path):
        if not any(r == o or o in r.parents for o in outputs):
            found.append((r, "tensorboard"))
    found.extend((q.parent, "wandb") for q in wandb_runs.values())
    return found


def choose_in_directory(path: Path, maps: Mapping[str, str]) -> tuple[Path, str, list[str]]:
    """The log to read in directory ``path``, its format and notes on the choice.

    An HF Trainer output directory (``trainer_state.json`` at its top) keeps its
    established reading (the state's whole history); other logs found are named. Else
    one kind of per-step log is read (TensorBoard runs below: as one run or a resume,
    :func:`tensorboard_plan`); several kinds, several metric files, or only a dump or a
    statistics file are refused with the list.
    """
    found = directory_logs(path, maps)
    rel = lambda q: str(q.relative_to(path)) or "."  # noqa: E731
    listing = "; ".join(f"{rel(q)} ({KINDS[k]})" for q, k in found[:12])
    listing += f" … (+{len(found) - 12} more)" if len(found) > 12 else ""
    state = path / "trainer_state.json"
    if state.is_file() and _output_dir_state(path) is not None:
        others = [(q, k) for q, k in found if q != state]
        if others:
            return (
                path,
                "tensorboard",
                [
                    f"{path} holds other logs, NOT read: "
                    + "; ".join(f"{rel(q)} ({KINDS[k]})" for q, k in others[:12])
                    + " (pass one to read it instead)"
                ],
            )
        return path, "tensorboard", []
    kinds = {k for _, k in found}
    if not found or kinds == {"tensorboard"}:
        return path, "tensorboard", []  # the TensorBoard plan: one run, a resume, or refused
    remedy = (
        "pass the one to check (trmbounds check PATH), or several logs of one training in "
        "the order written (later values win)"
    )
    if len(kinds) > 1:
        raise InputFileError(
            f"{path}: {len(found)} logs of {len(kinds)} kinds: {listing}; {remedy}"
        )
    (q, kind), n = found[0], len(found)
    if kind in ("tokens", "stats"):
        raise InputFileError(
            f"{path}: holds {listing}, not a per-step log; check {'it' if n == 1 else 'one'} "
            f"by its file name (trmbounds check {q})"
        )
    if n > 1:
        raise InputFileError(f"{path}: {n} logs: {listing}; {remedy}")
    fmt = {"trainer_state": "json", "wandb": "wandb"}.get(kind)
    if fmt is None:
        from .readers import sniff_format

        fmt = sniff_format(q)
    return q, fmt, [f"{q} read: the only log in {path} ({KINDS[kind]})"]


def _is_stats_file(q: Path) -> bool:
    try:
        with _io.open_input(q, "statistics file") as fh:
            head = fh.read(1 << 16)
    except (OSError, TrmboundsError):
        return False
    return b'"T"' in head and (b'"kl_max"' in head or b'"tv_max"' in head)


def _log_kind(q: Path, fmt: str, maps: Mapping[str, str]) -> str | None:
    """'tokens', 'metrics' or None (no column any preset reads) for one tabular file."""
    from . import tokens as TK
    from .dumps import open_dump

    try:
        if fmt == "jsonl" and open_dump(q) is not None:
            return "tokens"
        if fmt != "csv" and TK.is_token_dump(q, fmt, maps):
            return "tokens"
        if fmt == "csv":
            from .readers import _csv_header
            from .wandb import chart_export

            cols = _csv_header(q)
            export = chart_export(cols)
            if export is not None:
                cols = [m for r in export.runs.values() for m in r]
        else:
            cols = TK._columns_of(q, fmt)
    except TrmboundsError:
        return None
    known = set(maps.values())
    for pr in F.PRESETS.values():
        for quantity, names in F.candidates(pr, maps).items():
            if quantity != "step":
                known.update(names)
    return "metrics" if known.intersection(cols) else None


def check_combinable(
    paths: list[Path], format: str | None, maps: Mapping[str, str], first_is_dump: bool = False
) -> None:
    """Refuse, naming the file, a token dump or statistics file among several logs."""
    from . import tokens as TK
    from .dumps import open_dump
    from .readers import sniff_format

    for i, q in enumerate(paths):
        if not q.exists():
            raise InputFileError(f"log file not found: {q}")
        f = sniff_format(q, format)
        dump = first_is_dump if i == 0 else (format in (None, "jsonl") and open_dump(q))
        if dump or (f in ("jsonl", "parquet") and TK.is_token_dump(q, f, maps)):
            raise InputFileError(
                f"{q}: a per-token dump cannot be combined with other logs; check it alone"
            )
        if f == "json" and not is_trainer_state(q):
            raise InputFileError(
                f"{q}: a statistics file cannot be combined with other logs; check it alone"
            )


def _output_dir_state(path: Path) -> Path | None:
    """``DIR/trainer_state.json`` when ``DIR`` (no event files of its own) holds one."""
    if not path.is_dir():
        return None
    state = path / "trainer_state.json"
    if not state.is_file() or any("tfevents" in f.name for f in path.iterdir() if f.is_file()):
        return None
    return state


def _stale_state_note(state: Path, path: Path) -> list[str]:
    """A warning when an event file below ``path`` was written after ``state``."""
    from . import tensorboard as TB

    try:
        t_state = state.stat().st_mtime
        newer = [
            f
            for r in TB.find_runs(path)
            for f in r.iterdir()
            if "tfevents" in f.name and f.stat().st_mtime > t_state + 60
        ]
    except OSError:
        return []
    if not newer:
        return []
    return [
        f"WARNING {state} is older than {len(newer)} TensorBoard event file(s) below {path} "
        f"(e.g. {newer[0]}): a later run may not have saved its state; pass its run to check it"
    ]


def _run_span(run: Path) -> tuple[int, int, int] | None:
    """(first step, last step, logging stride) of the scalars of one run; None without any."""
    from .tensorboard import iter_scalars

    steps: set[int] = set()
    for _, step, _ in iter_scalars(run, BadRecords(skip=True), set()):
        steps.add(step)
    if not steps:
        return None
    s = sorted(steps)
    gaps = sorted(b - a for a, b in zip(s, s[1:]))
    return s[0], s[-1], gaps[len(gaps) // 2] if gaps else 0


def tensorboard_plan(path: str | os.PathLike) -> tuple[list[Path], list[str]]:
    """The TensorBoard runs to read for ``path``, in order, and notes on the choice.

    A file or a directory holding event files is one run (``[path]``). Below a
    directory, runs without scalars (``add_hparams`` writes one) are left out; several
    runs are read as ONE run only when the files say it was resumed: ordered by the
    time their first event file was created, each later run starts after the earlier
    one's first step and after its own first logging interval (a fresh training logs
    first at step ``logging_steps``, or 1), no later than
    one logging interval after its last step (a checkpoint is at or before the last
    logged step), with the same logging interval where both show one. Otherwise the
    error names the runs and the remedies; unrelated runs are never merged.

    Examples
    --------
    >>> tensorboard_plan("runs/events.out.tfevents.1.host")
    ([PosixPath('runs/events.out.tfevents.1.host')], [])
    """
    from . import tensorboard as TB

    p = Path(path)
    if not p.is_dir() or any("tfevents" in f.name for f in p.iterdir() if f.is_file()):
        return [p], []
    found = TB.find_runs(p)
    if len(found) <= 1:
        return found, []
    spans = {r: _run_span(r) for r in found}
    runs = [r for r in found if spans[r] is not None]
    notes = []
    if len(runs) < len(found):
        skipped = [str(r.relative_to(p)) for r in found if spans[r] is None]
        notes.append(f"TensorBoard run(s) without scalars not read: {', '.join(skipped)}")
    if len(runs) <= 1:
        return runs or found[:1], notes

    def first_file(r: Path):
        return min(TB._event_order(f) for f in r.iterdir() if "tfevents" in f.name)

    runs.sort(key=first_file)
    names = [str(r.relative_to(p)) for r in runs]
    for a, b in zip(runs, runs[1:]):
        (a0, a1, da), (b0, _, db) = spans[a], spans[b]  # type: ignore[misc]
        why = ""
        if b0 <= a0 or b0 <= max(db, 1):  # its first log is its first interval: step 0 on
            why = f"{b.relative_to(p)} starts again at step {b0} (a new training)"
        elif b0 > a1 + max(da, db, 1):
            why = f"{b.relative_to(p)} starts at step {b0}, long after step {a1}"
        elif da and db and da != db:
            why = f"logging intervals differ ({da} vs {db} steps)"
        if why:
            more = f" … (+{len(names) - 12} more)" if len(names) > 12 else ""
            raise InputFileError(
                f"{p}: {len(runs)} TensorBoard runs below this directory that are not one "
                f"resumed run ({why}): {', '.join(names[:12])}{more}; pass one run "
                "directory, or several logs in the order they were written (trmbounds check "
                "RUN1 RUN2: later values win), or the output directory's trainer_state.json "
                "(HF Trainer: the whole history)"
            )
    desc = ", ".join(f"{n} (steps {spans[r][0]}–{spans[r][1]})" for n, r in zip(names, runs))  # type: ignore[index]
    notes.append(
        f"{len(runs)} TensorBoard runs below {p} read as one resumed run, in the order "
        f"written: {desc}; each later run starts where a checkpoint of the earlier one "
        "left off, and its values win at steps logged twice"
    )
    return runs, notes
