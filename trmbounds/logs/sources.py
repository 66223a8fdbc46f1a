r"""Row sources that keep every logged record, for merging by step (:mod:`.merge`).

:func:`tensorboard_rows` reads a TensorBoard run as one row per event, in the order
the events were written (files oldest first), so that a value logged twice at one
step -- a resumed run -- is seen and counted, not silently overwritten.
:func:`trainer_state_rows` reads the ``log_history`` of an HF Trainer
``trainer_state.json`` (TRL, ms-swift): one row per logged dict, raw metric names,
``step`` = the global step.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..errors import InputFileError
from .readers import BadRecords, Chunk, _chunk_from_records

__all__ = ["ROLLOUT_FLAG", "tensorboard_rows", "is_trainer_state", "trainer_state_rows"]

#: Synthetic column marking a TensorBoard row of tags logged at the rollout step.
ROLLOUT_FLAG = "__rollout_row__"
_BATCH = 65536


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
        with open(p, "rb") as fh:
            head = fh.read(1 << 16)
    except OSError:
        return False
    return b'"log_history"' in head or p.name == "trainer_state.json"


def trainer_state_rows(
    path: str | os.PathLike, want: set[str] | None, bad: BadRecords, seen: set[str]
) -> Iterator[Chunk]:
    """The ``log_history`` entries of a trainer_state.json, one row each (row = 1-based entry)."""
    p = Path(path)
    try:
        doc = json.loads(p.read_bytes())
    except OSError as exc:
        raise InputFileError(f"cannot read {p}: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputFileError(f"{p}: not a valid JSON document ({exc})") from None
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
                row[k] = float(v)
        recs.append(row)
        lines.append(i)
    if recs:
        yield _chunk_from_records(recs, lines, "entry", set())
