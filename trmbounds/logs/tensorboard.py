r"""A minimal reader of TensorBoard event files (scalars only), without TensorFlow.

An event file is a sequence of TFRecords -- ``uint64 length``, ``uint32`` masked
CRC-32C of the length, ``length`` bytes of data, ``uint32`` masked CRC-32C of the
data -- each holding a serialized ``tensorflow.Event`` protocol buffer. This module
decodes just what a scalar needs from the protobuf wire format:
``Event.step`` (field 2) and ``Event.summary`` (field 5) → ``Summary.value`` (1) →
``Value.tag`` (1) with either ``simple_value`` (2, float; PyTorch's ``SummaryWriter``,
tensorboardX) or a scalar ``tensor`` (8; TF2 ``tf.summary.scalar``): ``TensorProto``
``dtype`` (1), ``tensor_content`` (4), ``float_val`` (5), ``double_val`` (6),
``int_val`` (7), ``int64_val`` (10). Histograms, images, text and non-scalar tensors
are skipped.

The CRC of every length is checked (a corrupt length makes the rest of a file
unreadable); data CRCs are not (that would need a compiled CRC-32C to keep up).
Scalars are pivoted to one row per step (the last value wins for a repeated tag).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .. import _io
from ..errors import InputFileError

__all__ = [
    "crc32c",
    "masked_crc32c",
    "event_files",
    "find_runs",
    "run_dir",
    "other_runs",
    "iter_scalars",
]


def _table() -> list[int]:
    poly = 0x82F63B78  # CRC-32C (Castagnoli), reflected
    out = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        out.append(c)
    return out


_CRC = _table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of ``data``.

    Examples
    --------
    >>> hex(crc32c(b"123456789"))   # the standard check value
    '0xe3069283'
    """
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """The masked CRC TFRecord stores: rotate right by 15, add 0xA282EAD8."""
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _is_event_file(f: Path) -> bool:
    return "tfevents" in f.name and f.is_file()


def _event_order(f: Path) -> tuple[int, str]:
    """Sort key: the creation time in ``events.out.tfevents.<seconds>.<host>...``, then the name.

    Examples
    --------
    >>> names = ["events.out.tfevents.1700000100.h.1.0", "events.out.tfevents.999999999.h.2.0"]
    >>> [n.split(".")[3] for n in sorted(names, key=lambda n: _event_order(Path(n)))]
    ['999999999', '1700000100']
    """
    parts = f.name.split(".")
    for i, part in enumerate(parts[:-1]):
        # ASCII digits only: str.isdigit() accepts "①" and "²", which int() refuses
        if part == "tfevents" and parts[i + 1].isascii() and parts[i + 1].isdigit():
            return int(parts[i + 1]), f.name
    return 1 << 62, f.name


def find_runs(path: str | os.PathLike, too_deep: list[Path] | None = None) -> list[Path]:
    """Every directory at or below ``path`` that holds event files (one TensorBoard run
    each), down to :data:`trmbounds._io.MAX_DEPTH` levels; the first directory of each
    deeper subtree, not searched, is appended to ``too_deep``."""
    runs = []
    for d, _dirs, files in _io.walk(path, too_deep=too_deep):
        if any("tfevents" in f for f in files):  # regular files only (see _io.walk)
            runs.append(d)
    return runs


def run_dir(path: str | os.PathLike) -> Path:
    """The one run a TensorBoard path names: the file's run, the directory if it holds
    event files, or the single run below it.

    Several runs below a directory are never merged: the error lists them.
    """
    p = Path(path)
    if not p.is_dir():
        return p.parent
    if any(_is_event_file(f) for f in p.iterdir()):
        return p
    too_deep: list[Path] = []
    runs = find_runs(p, too_deep)
    if not runs:
        raise InputFileError(
            f"{p}: no TensorBoard event files (*tfevents*) in this directory or below"
            + (f" ({deep_note(too_deep)})" if too_deep else "")
        )
    if len(runs) > 1:
        names = [str(r.relative_to(p)) for r in runs]
        more = f" … (+{len(names) - 12} more)" if len(names) > 12 else ""
        raise InputFileError(
            f"{p}: {len(runs)} TensorBoard runs below this directory: "
            f"{', '.join(names[:12])}{more}; pass one run directory"
        )
    return runs[0]


def deep_note(too_deep: list[Path]) -> str:
    """What a bounded directory walk left out, in words."""
    more = f" and {len(too_deep) - 1:,} more" if len(too_deep) > 1 else ""
    return (
        f"directories more than {_io.MAX_DEPTH} levels deep were not searched: {too_deep[0]}{more}"
    )


def event_files(path: str | os.PathLike) -> list[Path]:
    """The event files of ``path``, in the order they were written.

    A file is itself; a directory holding event files is one run (restarts of a run
    write several files there: all are read, oldest first); a directory without
    event files is searched below for exactly one run (:func:`run_dir`).
    """
    p = Path(path)
    if p.is_dir():
        d = run_dir(p)
        return sorted((f for f in d.iterdir() if _is_event_file(f)), key=_event_order)
    return [p]


def other_runs(path: str | os.PathLike, too_deep: list[Path] | None = None) -> list[Path]:
    """Runs in sub-directories of a run directory ``path`` (not read with it)."""
    p = Path(path)
    if not p.is_dir():
        return []
    return [r for r in find_runs(p, too_deep) if r != p]


# ----------------------------------------------------------------- protobuf wire format
def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(buf):
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(buf: bytes):
    """(field number, wire type, value) of every field of a message."""
    i, n = 0, len(buf)
    while i < n:
        key, i = _varint(buf, i)
        f, wt = key >> 3, key & 7
        v: int | bytes
        if wt == 0:
            v, i = _varint(buf, i)
        elif wt == 1:
            v, i = buf[i : i + 8], i + 8
        elif wt == 2:
            ln, i = _varint(buf, i)
            v, i = buf[i : i + ln], i + ln
        elif wt == 5:
            v, i = buf[i : i + 4], i + 4
        else:
            raise ValueError(f"unsupported wire type {wt}")
        if i > n:
            raise ValueError("truncated field")
        yield f, wt, v


_DTYPES = {1: "<f4", 2: "<f8", 3: "<i4", 9: "<i8", 19: "<f2"}


def _tensor_scalar(buf: bytes) -> float | None:
    dtype, content, vals = None, None, []
    for f, wt, v in _fields(buf):
        if f == 1 and wt == 0:
            dtype = v
        elif f == 4 and wt == 2:
            content = v
        elif f == 5:  # float_val: packed (wt 2) or not (wt 5)
            vals += (
                list(struct.unpack(f"<{len(v) // 4}f", v))
                if wt == 2
                else [struct.unpack("<f", v)[0]]
            )
        elif f == 6:
            vals += (
                list(struct.unpack(f"<{len(v) // 8}d", v))
                if wt == 2
                else [struct.unpack("<d", v)[0]]
            )
        elif f in (7, 10):
            if wt == 0:
                vals.append(float(v - (1 << 64) if v >= 1 << 63 else v))
            elif wt == 2:
                j = 0
                while j < len(v):
                    x, j = _varint(v, j)
                    vals.append(float(x - (1 << 64) if x >= 1 << 63 else x))
    if content is not None and dtype in _DTYPES:
        arr = np.frombuffer(content, dtype=_DTYPES[dtype])
        return float(arr[0]) if arr.size == 1 else None
    return float(vals[0]) if len(vals) == 1 else None


def _event_scalars(buf: bytes) -> tuple[int | None, list[tuple[str, float]]]:
    step, out = None, []
    for f, wt, v in _fields(buf):
        if f == 2 and wt == 0:
            step = v - (1 << 64) if v >= 1 << 63 else v
        elif f == 5 and wt == 2:
            for g, wt2, val in _fields(v):
                if g != 1 or wt2 != 2:
                    continue
                tag, x = None, None
                for h, wt3, w in _fields(val):
                    if h == 1 and wt3 == 2:
                        tag = w.decode("utf-8", "replace")
                    elif h == 2 and wt3 == 5:
                        x = struct.unpack("<f", w)[0]
                    elif h == 8 and wt3 == 2:
                        x = _tensor_scalar(w)
                if tag is not None and x is not None:
                    out.append((tag, x))
    return step, out


def iter_scalars(path: str | os.PathLike, bad, seen: set[str]) -> Iterator[tuple[int, int, list]]:
    """(record number, step, [(tag, value), ...]) for every event holding scalars."""
    for f in event_files(path):
        with _io.open_input(f, "TensorBoard event file") as fh:
            rec = 0
            while True:
                head = fh.read(12)
                if not head:
                    break
                rec += 1
                if len(head) < 12:
                    bad.add(f, f"record {rec}", "truncated record header")
                    break
                (n,) = struct.unpack("<Q", head[:8])
                (crc,) = struct.unpack("<I", head[8:])
                if masked_crc32c(head[:8]) != crc:
                    bad.add(f, f"record {rec}", "corrupt record length (CRC mismatch); "
                            "the rest of this file cannot be read")  # fmt: skip
                    break
                left = os.fstat(fh.fileno()).st_size - fh.tell() - 4
                if n > left or n > _io.MAX_RECORD:  # never allocate what the file lacks
                    bad.add(f, f"record {rec}", f"truncated record (its length field claims "
                            f"{n:,} bytes, {max(left, 0):,} are left)")  # fmt: skip
                    break
                data = fh.read(n)
                tail = fh.read(4)
                if len(data) < n or len(tail) < 4:
                    bad.add(f, f"record {rec}", "truncated record")
                    break
                try:
                    step, scalars = _event_scalars(data)
                except _io.DECODE_ERRORS as exc:
                    bad.add(f, f"record {rec}", f"malformed event ({_io.decode_reason(exc)})")
                    continue
                if not scalars:
                    continue
                seen.update(t for t, _ in scalars)
                if step is None:
                    step = 0  # proto3 default: a step of 0 is not written
                yield rec, step, scalars
