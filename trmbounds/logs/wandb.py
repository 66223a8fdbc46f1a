r"""Weights & Biases logs as users hold them: a chart's CSV export, an offline run.

**Chart export** (a line plot's menu, *Export* → CSV, in the wandb web app). The first
column is the chart's x-axis (``Step`` by default: wandb's ``_step``), then one column
per line, named ``<run name> - <metric>`` (an un-prefixed ``<metric>`` also occurs),
each followed by ``<metric>__MIN`` and ``<metric>__MAX`` companions
(wandb/wandb#5349, #6474). With the default *full fidelity* point aggregation the
chart cuts the x-axis into buckets and draws, per bucket, the last value (the line) and
the minimum and maximum (the shading) -- docs.wandb.ai, "Point aggregation"
(models/app/features/panels/line-plot/sampling). So where ``__MIN`` < ``__MAX`` a row
stands for several logged steps. :func:`chart_export` recognises the layout,
:func:`chart_columns` maps one run's columns to metric names.

**Offline run** (``WANDB_MODE=offline``): ``wandb/offline-run-<date>-<id>/run-<id>.wandb``,
wandb's transaction log. Read from wandb/wandb @ b6e29505884e (2026-08-21):
``core/pkg/leveldb/record.go`` (the LevelDB log format -- 32 KiB blocks of chunks,
each ``crc32 (uint32 LE), length (uint16 LE), type (FULL/FIRST/MIDDLE/LAST)`` -- after
a 7-byte header ``":W&B"``, magic ``0xBEE1`` (uint16 LE), version 0) and
``core/internal/transactionlog/writer.go`` (``CRCAlgoIEEE``: a zlib CRC-32 of the type
byte and the payload; each record one protobuf ``Record``). The records are decoded with
the wandb package's own definition, ``wandb.proto.wandb_internal_pb2.Record`` (the
``[wandb]`` extra): only ``history`` records are read, each item a key (``key``, or
the path ``nested_key`` that wandb-core writes) and a JSON-encoded ``value_json``.
The Python ``DataStore`` that once scanned these files is gone from wandb 0.31.0; the
file format (store version 0) and the ``Record`` message are what stays.
"""

from __future__ import annotations

import json
import math
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputFileError
from .readers import BadRecords, Chunk, _chunk_from_records

__all__ = ["ChartExport", "chart_export", "chart_columns", "history_rows", "offline_runs"]

INSTALL = "reading a wandb offline run needs the wandb package: pip install wandb (the wandb extra)"
_SEP = " - "
_COMPANIONS = ("__MIN", "__MAX")
_BATCH = 65536


# ------------------------------------------------------------------- chart export
@dataclass
class ChartExport:
    """The layout of a wandb chart export: its x column and, per run, metric -> column.

    ``runs`` maps a run name ('' for un-prefixed columns) to ``{metric: column}``;
    ``companions`` maps a column to its ``(__MIN, __MAX)`` columns.
    """

    x: str
    runs: dict[str, dict[str, str]]
    companions: dict[str, tuple[str, str]]


def chart_export(header: list[str]) -> ChartExport | None:
    """The layout of a wandb chart export CSV, or None for any other header.

    A chart export has, for some column ``c``, both ``c__MIN`` and ``c__MAX``; every
    column after the first is a value column or such a companion.

    Examples
    --------
    >>> e = chart_export(["Step", "grpo-1 - kl", "grpo-1 - kl__MIN", "grpo-1 - kl__MAX"])
    >>> e.x, e.runs, e.companions
    ('Step', {'grpo-1': {'kl': 'grpo-1 - kl'}}, {'grpo-1 - kl': ('grpo-1 - kl__MIN', 'grpo-1 - kl__MAX')})
    >>> chart_export(["_step", "kl"]) is None
    True
    """
    if len(header) < 2:
        return None
    cols = set(header)
    comp = {
        h: (h + "__MIN", h + "__MAX")
        for h in header[1:]
        if h + "__MIN" in cols and h + "__MAX" in cols
    }
    if not comp:
        return None
    runs: dict[str, dict[str, str]] = {}
    for h in header[1:]:
        if h.endswith(_COMPANIONS) and h[:-5] in comp:
            continue
        # "<run name> - <metric>": a run name may hold " - " (a group name, a date),
        # a metric key rarely does, so the last separator splits them
        run, sep, metric = h.rpartition(_SEP)
        runs.setdefault(run if sep else "", {})[metric if sep else h] = h
    return ChartExport(header[0], runs, comp)


def chart_columns(layout: ChartExport, path: Path, run: str | None) -> tuple[str, dict[str, str]]:
    """``(run name, {column: metric name})`` of the run to read from a chart export.

    The x column becomes ``step`` when it is wandb's ``Step``; a run's own ``_step``
    column (present when the chart's x-axis is another metric) is kept as ``_step``.

    Raises
    ------
    InputFileError
        Several runs and no ``run``, or a ``run`` the file does not hold.
    """
    names = list(layout.runs)
    if run is None and len(names) > 1:
        raise InputFileError(
            f"{path}: a wandb chart export with {len(names)} runs ({_names(names)}); "
            "pick one with --run NAME"
        )
    if run is not None and run not in layout.runs:
        raise InputFileError(
            f"{path}: no run {run!r} in this wandb chart export; its runs: {_names(names)}"
        )
    name = names[0] if run is None else run
    out = {col: metric for metric, col in layout.runs[name].items()}
    x = "step" if layout.x == "Step" else layout.x
    if x not in out.values():
        out[layout.x] = x
    return name, out


def _names(names: list[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:8])
    return shown + (f" … (+{len(names) - 8} more)" if len(names) > 8 else "")


# -------------------------------------------------------------------- offline run
_HEADER = b":W&B" + struct.pack("<H", 0xBEE1)
_BLOCK = 32768
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def offline_runs(path: str | os.PathLike) -> list[Path]:
    """The ``.wandb`` transaction logs at or below ``path`` (each once, sorted).

    ``wandb/latest-run`` is a link to one of the runs: it is not counted twice.
    """
    p = Path(path)
    if p.is_file():
        return [p] if p.suffix == ".wandb" else []
    seen: dict[Path, Path] = {}
    from .._io import walk  # iterative, bounded depth; links to directories not followed

    for d, _, files in walk(p):
        for name in files:
            if name.endswith(".wandb"):
                f = d / name
                seen.setdefault(f.resolve(), f)
    return sorted(seen.values(), key=lambda f: (("latest-run" in f.parts), str(f)))


def _record_payloads(p: Path, info: dict[str, Any]) -> Iterator[tuple[int, bytes]]:
    """(record number, payload) of every record of a wandb transaction log."""
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise InputFileError(f"cannot read {p}: {exc.strerror or exc}") from None
    if data[:6] != _HEADER:
        raise InputFileError(f"{p}: not a wandb run file (no ':W&B' header)")
    if data[6] != 0:
        raise InputFileError(
            f"{p}: wandb run file format version {data[6]}, this reader knows version 0"
        )
    i, n, part = 7, 0, None
    while i < len(data):
        left = _BLOCK - i % _BLOCK
        if left < 7:  # a block's zero trailer
            i += left
            continue
        if i + 7 > len(data):
            info["truncated"] = len(data) - i
            break
        crc, size, kind = struct.unpack_from("<IHB", data, i)
        if crc == 0 and size == 0 and kind == 0:  # zero fill after the last record
            i += left
            continue
        payload = data[i + 7 : i + 7 + size]
        if len(payload) < size:
            info["truncated"] = len(data) - i
            break
        if zlib.crc32(payload, zlib.crc32(bytes([kind]))) != crc:
            raise InputFileError(
                f"{p}: byte {i}: record checksum mismatch (a corrupt file); "
                "try `wandb sync` and export the history (docs/logs.md)"
            )
        i += 7 + size
        if kind == _FULL:
            n += 1
            yield n, payload
        elif kind == _FIRST:
            part = payload
        elif kind == _MIDDLE and part is not None:
            part += payload
        elif kind == _LAST and part is not None:
            n += 1
            yield n, part + payload
            part = None


def history_rows(
    path: str | os.PathLike,
    want: set[str] | None,
    bad: BadRecords,
    seen: set[str],
    info: dict[str, Any] | None = None,
) -> Iterator[Chunk]:
    """The ``history`` records of a wandb offline run, one row each, in file order.

    Row keys: the logged metric names and ``_step``; values that are not finite-or-not
    numbers (strings, media, histograms) are left out. ``info`` receives
    ``truncated`` (bytes of an unfinished last record: a run killed mid-write) and
    ``records`` (history records read).
    """
    try:
        from wandb.proto import wandb_internal_pb2 as pb
    except ImportError:
        raise InputFileError(INSTALL) from None
    p = Path(path)
    info = info if info is not None else {}
    recs: list[dict] = []
    lines: list[int] = []
    count = 0
    for n, payload in _record_payloads(p, info):
        rec = pb.Record()  # type: ignore[attr-defined]  # generated code
        try:
            rec.ParseFromString(payload)
        except Exception:  # noqa: BLE001 - protobuf's DecodeError
            bad.add(p, f"record {n}", "not a wandb Record")
            continue
        if rec.WhichOneof("record_type") != "history":
            continue
        count += 1
        row: dict[str, float] = {}
        for item in rec.history.item:
            key = item.key or ".".join(item.nested_key)  # wandb shows a nested key as a.b
            try:
                v = json.loads(item.value_json)
            except ValueError:
                bad.add(p, f"record {n}", f"{key}: value is not JSON")
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            seen.add(key)
            if want is None or key in want:
                row[key] = _float(v)
        if "_step" not in row and rec.history.HasField("step"):
            row["_step"] = float(rec.history.step.num)
            seen.add("_step")
        recs.append(row)
        lines.append(n)
        if len(recs) >= _BATCH:
            yield _chunk_from_records(recs, lines, "record", set())
            recs, lines = [], []
    info["records"] = count
    if recs:
        yield _chunk_from_records(recs, lines, "record", set())


def _float(v: int | float) -> float:
    try:
        return float(v)
    except OverflowError:  # an integer beyond the doubles
        return math.copysign(math.inf, v)
