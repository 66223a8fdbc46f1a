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
from ..errors import InputFileError
from . import frameworks as F
from .readers import BadRecords, Chunk, _chunk_from_records, iter_log

__all__ = [
    "ROLLOUT_FLAG",
    "read_rows",
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
) -> tuple[list[Chunk], list[str], dict[str, Any]]:
    """Every row of a per-step metric log, restricted to the columns ``presets`` could read.

    Returns the chunks (file order), notes on what was read (the TensorBoard run, its
    event files, runs not read) and summary entries (``tensorboard_run``).
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
    if fmt == "tensorboard":
        from . import tensorboard as TB

        files = TB.event_files(path)
        run = TB.run_dir(path)
        extra["tensorboard_run"] = str(run)
        if path.is_dir() and run != path:
            notes.append(f"TensorBoard run read: {run}")
        if len(files) > 1:
            notes.append(
                f"{len(files)} event files in the run read in order, oldest first "
                "(restarts); steps logged again are counted below"
            )
        too_deep: list[Path] = []
        others = (
            [str(o.relative_to(run)) for o in TB.other_runs(run, too_deep)] if path.is_dir() else []
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
    elif fmt == "json":
        rows = trainer_state_rows(path, want, bad, seen)
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
    return chunks, notes, extra


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
    path: str | os.PathLike, want: set[str] | None, bad: BadRecords, seen: set[str]
) -> Iterator[Chunk]:
    """The ``log_history`` entries of a trainer_state.json, one row each (row = 1-based entry)."""
    p = Path(path)
    doc = _io.load_json(p, "trainer state file")  # one-line errors: UTF-8, depth, digits
    hist = doc.get("log_history") if isinstance(doc, dict) else None
    if not isinstance(hist, list):
        raise InputFileError(f"{p}: no 'log_history' list (not an HF trainer_state.json)")
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
