r"""Streaming readers for training logs: per-step metric logs and per-token dumps.

Every reader yields :class:`Chunk` objects, a few thousand to a few hundred thousand
records at a time, so memory stays flat in the file size. pyarrow (the ``[logs]``
extra) is imported inside the functions that need it, never at package import.

Formats
-------
``jsonl``
    One JSON object per line. verl's file logger writes
    ``{"step": N, "data": {"metric": value, ...}}``; flat ``{"step": N, "metric": value}``
    works too (the keys of ``data`` are merged into the top level).
``csv``
    A header line, then one row per step (a wandb export: ``_step`` or ``step`` column,
    one column per metric). Empty cells are "not logged at this step".
``parquet``
    One row per record; numeric columns (metrics) or list columns (per-token dumps).

A malformed record raises :class:`~trmbounds.errors.InputFileError` naming the file,
the line (``jsonl``, ``csv``; the header is line 1) or row (``parquet``, 1-based), the
column and the reason -- unless the caller passes a :class:`BadRecords` with
``skip=True``, which counts and keeps the first messages instead.
"""

from __future__ import annotations

import contextvars
import io
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import _io
from ..errors import InputFileError

__all__ = ["FORMATS", "Chunk", "BadRecords", "sniff_format", "iter_log", "read_log"]

#: Formats the readers understand, and the file extensions that select them.
FORMATS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".json": "json",
    ".wandb": "wandb",  # a wandb offline run's transaction log (.wandb: the [wandb] extra)
}

_BLOCK = 8 << 20  # bytes per JSONL block
_CSV_BLOCK = 2 << 20  # bytes per CSV block (pyarrow parses small blocks faster)
_BATCH = 65536  # rows per Parquet batch
_LIST_BATCH = 512  # rows per Parquet batch with per-token list columns (sequences)


@dataclass
class BadRecords:
    """Policy and tally for malformed records.

    With ``skip=False`` (the default) the first bad record raises
    :class:`~trmbounds.errors.InputFileError`; with ``skip=True`` it is counted and
    its message kept (the first ``keep`` of them).

    Examples
    --------
    >>> bad = BadRecords(skip=True)
    >>> bad.add("log.jsonl", "line 3", "invalid JSON")
    >>> bad.count, bad.messages
    (1, ['log.jsonl: line 3: invalid JSON'])
    """

    skip: bool = False
    keep: int = 20
    count: int = 0
    messages: list[str] = field(default_factory=list)

    def add(self, path: str | os.PathLike, where: str, reason: str) -> None:
        msg = f"{path}: {where}: {reason}"
        if not self.skip:
            raise InputFileError(msg)
        self.count += 1
        if len(self.messages) < self.keep:
            self.messages.append(msg)


@dataclass
class Chunk:
    """A block of records read from a log.

    Attributes
    ----------
    lines : ndarray of int64
        Where each record is: the line number (``jsonl``, ``csv``) or 1-based row
        (``parquet``).
    unit : str
        ``"line"`` or ``"row"``.
    columns : dict of str to ndarray of float64
        The requested numeric columns present in this block; NaN where a record did
        not log the column (see ``present``) -- and where it logged NaN.
    present : dict of str to ndarray of bool
        True where the record logged a value (possibly NaN or inf); for list columns,
        True where the record has the list (possibly empty), False where it is missing
        or null.
    lists : dict of str to (values, offsets)
        Requested list columns (per-token dumps): the flat float64 values and int64
        offsets (record ``i`` is ``values[offsets[i]:offsets[i+1]]``); a record
        without the column has an empty list.
    """

    lines: np.ndarray
    unit: str
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    present: dict[str, np.ndarray] = field(default_factory=dict)
    lists: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.lines)


def sniff_format(path: str | os.PathLike, format: str | None = None) -> str:
    """The format of ``path``: ``format`` if given, else from its extension.

    Examples
    --------
    >>> sniff_format("run/metrics.jsonl"), sniff_format("export.CSV")
    ('jsonl', 'csv')
    >>> sniff_format("dump.bin", "parquet")
    'parquet'
    """
    if format is not None:
        f = format.lower()
        if f not in (*FORMATS.values(), "tensorboard"):
            raise InputFileError(
                f"unknown format {format!r}; choose one of jsonl, csv, parquet, json, tensorboard"
            )
        return f
    if ".tfevents." in Path(path).name or Path(path).is_dir():
        return "tensorboard"
    ext = Path(path).suffix.lower()
    if ext == ".gz":
        raise InputFileError(f"{path}: compressed logs are not supported; decompress it first")
    if ext not in FORMATS:
        raise InputFileError(
            f"{path}: cannot tell the format from the extension {ext or '(none)'!r}; "
            "pass --format jsonl|csv|parquet"
        )
    return FORMATS[ext]


def iter_log(
    path: str | os.PathLike,
    format: str | None = None,
    *,
    columns: Iterable[str] | None = None,
    lists: Iterable[str] = (),
    bad: BadRecords | None = None,
    seen: set[str] | None = None,
    labels: Iterable[str] = (),
) -> Iterator[Chunk]:
    """Stream the records of a log file as :class:`Chunk` blocks.

    Parameters
    ----------
    path : path-like
    format : {"jsonl", "csv", "parquet"}, optional
        Default: from the extension (:func:`sniff_format`).
    columns : iterable of str, optional
        Numeric columns to return (those absent from a block are left out of it).
        ``None`` returns every numeric column.
    lists : iterable of str
        List-of-numbers columns to return (per-token dumps).
    bad : BadRecords, optional
        What to do with malformed records (default: raise).
    seen : set, optional
        Filled with the name of every column met, for error messages.
    labels : iterable of str
        Columns of ``columns`` that are identifiers (a prompt or group id): a string
        value is read as a number by :func:`label_value` (the same string, the same
        number), not refused.

    Raises
    ------
    InputFileError
        For a missing or unreadable file or a malformed record.
    """
    p = Path(path)
    if not p.exists():
        raise InputFileError(f"log file not found: {p}")
    fmt = sniff_format(p, format)
    if p.is_dir() and fmt != "tensorboard":
        raise InputFileError(f"{p} is a directory; only a TensorBoard log directory can be read")
    bad = bad if bad is not None else BadRecords()
    seen = seen if seen is not None else set()
    want = None if columns is None else set(columns)
    lists = set(lists)
    token = _LABELS.set(frozenset(labels))
    try:
        if fmt == "jsonl":
            yield from _iter_jsonl(p, want, lists, bad, seen)
        elif fmt == "csv":
            if lists:
                raise InputFileError(f"{p}: per-token (list) columns cannot be read from CSV")
            yield from _iter_csv(p, want, bad, seen)
        elif fmt == "parquet":
            yield from _iter_parquet(p, want, lists, bad, seen)
        elif fmt == "tensorboard":
            if lists:
                raise InputFileError(
                    f"{p}: per-token (list) columns cannot be read from TensorBoard"
                )
            yield from _iter_tensorboard(p, want, bad, seen)
        elif fmt == "wandb":
            from .wandb import history_rows

            yield from history_rows(p, want, bad, seen)
        else:
            raise InputFileError(f"{p}: a .json file is a statistics file, not a log")
    finally:
        try:
            _LABELS.reset(token)
        except ValueError:  # closed from another context (garbage collection): harmless
            pass


def read_log(path: str | os.PathLike, format: str | None = None, **kw) -> Chunk:
    """Read a whole (small) log into one :class:`Chunk` (tests, notebooks).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "m.jsonl").write_text('{"step": 1, "data": {"a": 0.5}}\\n{"step": 2, "a": 2}\\n')
    >>> c = read_log(d / "m.jsonl")
    >>> c.lines.tolist(), c.columns["step"].tolist(), c.columns["a"].tolist()
    ([1, 2], [1.0, 2.0], [0.5, 2.0])
    """
    chunks = list(iter_log(path, format, **kw))
    lines = np.concatenate([c.lines for c in chunks]) if chunks else np.zeros(0, np.int64)
    unit = chunks[0].unit if chunks else "line"
    out = Chunk(lines=lines, unit=unit)
    names = {k for c in chunks for k in c.columns}
    for k in sorted(names):
        vals, pres = [], []
        for c in chunks:
            n = len(c)
            vals.append(c.columns.get(k, np.full(n, np.nan)))
            pres.append(c.present.get(k, np.zeros(n, bool)))
        out.columns[k] = np.concatenate(vals)
        out.present[k] = np.concatenate(pres)
    lnames = {k for c in chunks for k in c.lists}
    for k in sorted(lnames):
        vs, offs, base = [], [np.zeros(1, np.int64)], 0
        for c in chunks:
            if k in c.lists:
                v, o = c.lists[k]
            else:
                v, o = np.zeros(0), np.zeros(len(c) + 1, np.int64)
            vs.append(v)
            offs.append(o[1:] + base)
            base += len(v)
        out.lists[k] = (np.concatenate(vs), np.concatenate(offs))
    return out


# ------------------------------------------------------------------------ helpers
def _num(value, what: str) -> float:
    """A JSON / CSV value as a float; raises ValueError with the reason."""
    if value is None:
        return math.nan
    if isinstance(value, bool):
        raise ValueError(f"{what}: {value!r} is a boolean, expected a number")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"{what}: {value!r} is not a number") from None
    raise ValueError(f"{what}: {type(value).__name__} value, expected a number")


def label_value(v: str) -> float:
    """A string identifier as a number: 48 bits of its BLAKE2b hash, exact in a float64
    (the same string, the same number; two of a batch's ids collide with probability
    about n^2 / 2^49).

    Examples
    --------
    >>> label_value("a") == label_value("a") != label_value("b")
    True
    """
    import hashlib

    return float(int.from_bytes(hashlib.blake2b(v.encode("utf-8", "surrogatepass"),
                                                 digest_size=6).digest(), "big"))  # fmt: skip


#: Label columns of the read in progress (set by :func:`iter_log`).
_LABELS: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar(
    "labels", default=frozenset()
)


def _arrow_numeric(arr, name: str):
    """(float64 values with NaN for null, present mask) of a pyarrow numeric array (or of
    a string array, for a label column: :func:`label_value`)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    t = arr.type
    if (pa.types.is_string(t) or pa.types.is_large_string(t)) and name in _LABELS.get():
        vals = arr.to_pylist()
        present = np.array([v is not None for v in vals], bool)
        return np.array([math.nan if v is None else label_value(v) for v in vals]), present
    if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_null(t)):
        return None
    present = arr.is_valid().to_numpy(zero_copy_only=False)
    if pa.types.is_null(t):
        return np.full(len(arr), np.nan), present
    # safe=False: integers beyond 2**53 round to the nearest double (as JSON parsers do)
    vals = pc.cast(arr, pa.float64(), safe=False).to_numpy(zero_copy_only=False)
    return np.asarray(vals, dtype=np.float64), present


def _arrow_list(arr):
    """(flat float64 values, offsets) of a pyarrow list-of-numbers array, or None."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    t = arr.type
    if pa.types.is_null(t):
        return np.zeros(0), np.zeros(len(arr) + 1, np.int64)
    if not (pa.types.is_list(t) or pa.types.is_large_list(t)):
        return None
    vt = t.value_type
    if not (
        pa.types.is_integer(vt)
        or pa.types.is_floating(vt)
        or pa.types.is_boolean(vt)
        or pa.types.is_null(vt)
    ):
        return None
    if arr.null_count:
        arr = pc.fill_null(arr, pa.scalar([], type=t))
    if arr.offset or arr.values.null_count:
        # normalise: a sliced array, or null elements inside lists (kept as NaN)
        flat = pc.list_flatten(arr)
        offsets = np.zeros(len(arr) + 1, np.int64)
        np.cumsum(pc.list_value_length(arr).to_numpy(zero_copy_only=False), out=offsets[1:])
    else:
        flat = arr.values
        offsets = np.asarray(arr.offsets.to_numpy(zero_copy_only=False), dtype=np.int64)
        if offsets[0] != 0:
            flat = flat.slice(offsets[0], offsets[-1] - offsets[0])
            offsets = offsets - offsets[0]
    if pa.types.is_null(flat.type):
        vals = np.full(len(flat), np.nan)
    else:
        vals = pc.cast(flat, pa.float64(), safe=False).to_numpy(zero_copy_only=False)
    return np.asarray(vals, dtype=np.float64), offsets


def _valid(arr) -> np.ndarray:
    """True where a pyarrow array is not null."""
    return np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), dtype=bool)


def _lists_from_py(rows: list[list[float] | None]):
    lens = np.fromiter((0 if r is None else len(r) for r in rows), np.int64, len(rows))
    offsets = np.zeros(len(rows) + 1, np.int64)
    np.cumsum(lens, out=offsets[1:])
    vals = np.fromiter((x for r in rows if r is not None for x in r), np.float64, int(offsets[-1]))
    return vals, offsets


# -------------------------------------------------------------------------- JSONL
def _iter_jsonl(p: Path, want, lists, bad, seen) -> Iterator[Chunk]:
    try:
        import pyarrow  # noqa: F401

        fast = True
    except ImportError:  # pragma: no cover - the [logs] extra is missing
        fast = False
    line0 = 1  # line number of the block's first line
    fh = _io.open_input(p, "log file", stream=True)  # read once, start to end: a pipe too
    with fh:
        tail = b""
        while True:
            data = fh.read(_BLOCK)
            if len(tail) > _io.MAX_RECORD:  # one line of more than 1 GiB: never decoded
                bad.add(p, f"line {line0}", f"a line longer than {_io.MAX_RECORD >> 20:,} MiB")
                nl = data.find(b"\n")
                while data and nl < 0:
                    data = fh.read(_BLOCK)
                    nl = data.find(b"\n")
                tail, data = b"", data[nl + 1 :] if data else b""
                line0 += 1
                if not data:
                    data = fh.read(_BLOCK)
            block = tail + data
            if not data:
                if not block:
                    break
                cut = len(block)
                if not block.endswith(b"\n"):
                    block += b"\n"
                    cut = len(block)
            else:
                cut = block.rfind(b"\n") + 1
                if cut == 0:  # one line longer than the block: read on
                    tail = block
                    continue
            body, tail = block[:cut], block[cut:]
            nlines = body.count(b"\n")
            chunk = _jsonl_fast(body, line0, want, lists, seen) if fast else None
            if chunk is None:
                chunk = _jsonl_slow(p, body, line0, want, lists, bad, seen)
            if len(chunk):
                yield chunk
            line0 += nlines
            if not data:
                break


def _jsonl_fast(body: bytes, line0: int, want, lists, seen) -> Chunk | None:
    """Parse a block with pyarrow; None when the slow path must find a bad line."""
    import pyarrow as pa

    try:
        body.decode("utf-8")  # pyarrow accepts invalid UTF-8 in keys, then fails on them
    except UnicodeDecodeError:
        return None
    try:
        return _jsonl_arrow(body, line0, want, lists, seen)
    except (pa.ArrowException, *_io.DECODE_ERRORS):
        return None


def _jsonl_arrow(body: bytes, line0: int, want, lists, seen) -> Chunk | None:
    import pyarrow as pa
    import pyarrow.json as pj

    if body.startswith(b"\n") or b"\n\n" in body or b"\r" in body:
        return None  # blank lines would shift the line numbers
    if not _io.arrow_safe_jsonl(body):
        return None  # a record that is not an object: named by the slow path
    try:
        table = pj.read_json(io.BytesIO(body), read_options=pj.ReadOptions(block_size=1 << 20))
    except (pa.ArrowException, *_io.DECODE_ERRORS):
        return None  # the slow path names the bad line
    if table.num_rows != body.count(b"\n"):
        return None
    cols: dict[str, object] = {}
    for name in table.column_names:
        col = table.column(name)
        if name == "data":
            if not pa.types.is_struct(col.type):
                return None
            flat = col.combine_chunks()
            for i in range(flat.type.num_fields):
                sub = flat.type.field(i).name
                child = flat.field(i)
                if flat.null_count:  # a line without "data": its metrics are absent
                    import pyarrow.compute as pc

                    child = pc.if_else(flat.is_valid(), child, pa.nulls(len(child), child.type))
                if sub in cols:
                    return None  # both flat and nested: let the slow path merge
                cols[sub] = child
        else:
            if name in cols:
                return None
            cols[name] = col
    seen.update(cols)
    n = table.num_rows
    chunk = Chunk(lines=np.arange(line0, line0 + n, dtype=np.int64), unit="line")
    for name, col in cols.items():
        if name in lists:
            got = _arrow_list(col)
            if got is None:
                return None
            chunk.lists[name] = got
            chunk.present[name] = _valid(col)
        elif want is None or name in want:
            got = _arrow_numeric(col, name)
            if got is None:
                if want is None:
                    continue
                return None
            chunk.columns[name], chunk.present[name] = got
    return chunk


def _jsonl_slow(p: Path, body: bytes, line0: int, want, lists, bad, seen) -> Chunk:
    """Parse a block line by line with the json module, reporting bad lines."""
    recs: list[dict] = []
    lines: list[int] = []
    for i, raw in enumerate(body.split(b"\n")[:-1]):
        lineno = line0 + i
        if not raw.strip():
            continue
        try:
            obj = _io.json_record(raw)
        except ValueError as exc:
            bad.add(p, f"line {lineno}", str(exc))
            continue
        if not isinstance(obj, dict):
            bad.add(p, f"line {lineno}", f"expected a JSON object, got {type(obj).__name__}")
            continue
        if "data" in obj and isinstance(obj["data"], dict):
            merged = {k: v for k, v in obj.items() if k != "data"}
            merged.update(obj["data"])
            obj = merged
        rec: dict = {}
        ok = True
        for k, v in obj.items():
            seen.add(k)
            if k in lists:
                if v is None:
                    continue
                if not isinstance(v, list):
                    bad.add(p, f"line {lineno}", f"column {k!r}: expected a list of numbers")
                    ok = False
                    break
                try:
                    rec[k] = [
                        float(x) if isinstance(x, bool) else _num(x, f"column {k!r}") for x in v
                    ]
                except ValueError as exc:
                    bad.add(p, f"line {lineno}", str(exc))
                    ok = False
                    break
            elif want is None or k in want:
                if want is None and not isinstance(v, (int, float)) and v is not None:
                    continue
                if isinstance(v, str) and k in _LABELS.get():
                    rec[k] = label_value(v)
                    continue
                try:
                    rec[k] = _num(v, f"column {k!r}") if v is not None else None
                except ValueError as exc:
                    bad.add(p, f"line {lineno}", str(exc))
                    ok = False
                    break
        if ok:
            recs.append(rec)
            lines.append(lineno)
    return _chunk_from_records(recs, lines, "line", lists)


def _chunk_from_records(recs, lines, unit, lists) -> Chunk:
    chunk = Chunk(lines=np.asarray(lines, dtype=np.int64), unit=unit)
    names = {k for r in recs for k in r}
    n = len(recs)
    for k in names:
        if k in lists:
            chunk.lists[k] = _lists_from_py([r.get(k) for r in recs])
            chunk.present[k] = np.fromiter((r.get(k) is not None for r in recs), bool, n)
            continue
        vals = np.full(n, np.nan)
        pres = np.zeros(n, bool)
        for i, r in enumerate(recs):
            v = r.get(k)
            if v is not None:
                vals[i] = v
                pres[i] = True
        chunk.columns[k] = vals
        chunk.present[k] = pres
    return chunk


# ---------------------------------------------------------------------------- CSV
def _csv_header(p: Path) -> list[str]:
    with _io.open_csv(p, "log file") as fh:
        header = None
        for lineno, row, reason in _io.csv_rows(fh, p):
            if reason is not None:
                raise InputFileError(f"{p}: line {lineno}: {reason}")
            header = row
            break
    if not header:
        raise InputFileError(f"{p}: empty CSV file (no header line)")
    return header


def _iter_csv(p: Path, want, bad, seen) -> Iterator[Chunk]:
    header = _csv_header(p)
    seen.update(header)
    if len(set(header)) != len(header):
        dup = sorted({h for h in header if header.count(h) > 1})
        raise InputFileError(f"{p}: line 1: duplicate column name(s) {', '.join(dup)}")
    names = [h for h in header if want is None or h in want]
    if not names:
        return
    cut = _csv_unterminated(p)
    if cut is not None:  # a last row with an open quote: the parsers would accept it
        yield from _csv_slow(p, header, names, 0, bad, cut)
        return
    done = 0
    try:
        import pyarrow as pa
        import pyarrow.csv as pcsv
    except ImportError:  # pragma: no cover
        pa = None
    if pa is not None:
        fh = _io.open_input(p, "log file")
        try:
            reader = pcsv.open_csv(
                fh,
                read_options=pcsv.ReadOptions(block_size=_CSV_BLOCK),
                parse_options=pcsv.ParseOptions(newlines_in_values=False),
                convert_options=pcsv.ConvertOptions(
                    include_columns=names,
                    column_types={h: pa.float64() for h in names},
                    null_values=[""],
                    strings_can_be_null=False,
                ),
            )
            for batch in reader:
                n = batch.num_rows
                chunk = Chunk(lines=np.arange(done + 2, done + 2 + n, dtype=np.int64), unit="line")
                for name in names:
                    chunk.columns[name], chunk.present[name] = _arrow_numeric(
                        batch.column(name), name
                    )
                done += n
                yield chunk
            return
        except (pa.ArrowException, *_io.DECODE_ERRORS):
            pass  # a bad row: find it with the csv module, from where we stopped
        finally:
            fh.close()
    yield from _csv_slow(p, header, names, done, bad)


def _csv_unterminated(p: Path) -> int | None:
    """The line number of the last line if it opens a quote it does not close, else None.

    Values may not contain newlines, so a quote still open at the end of the file is a
    truncated row (``2,100,"0.001``); pyarrow and the csv module both accept it silently.
    """
    try:
        with _io.open_input(p, "log file") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            back = min(size, 1 << 16)
            fh.seek(size - back)
            tail = fh.read(back)
            last = tail.rstrip(b"\r\n")
            start = last.rfind(b"\n") + 1
            if last[start:].count(b'"') % 2 == 0:
                return None
            pos = size - back + start  # where the last line starts
            fh.seek(0)
            n = 0
            while pos > 0 and (block := fh.read(min(pos, 1 << 20))):
                n += block.count(b"\n")
                pos -= len(block)
    except OSError:
        return None
    return n + 1


def _csv_slow(p: Path, header, names, skip_rows: int, bad, cut: int | None = None):
    idx = [header.index(h) for h in names]
    ncol = len(header)
    recs: list[dict] = []
    lines: list[int] = []
    with _io.open_csv(p, "log file") as fh:
        rows = _io.csv_rows(fh, p)
        next(rows)
        row_no = 0
        for lineno, row, reason in rows:
            row_no += 1
            if row_no <= skip_rows:
                continue
            if reason is not None:
                bad.add(p, f"line {lineno}", reason)
                continue
            if not row:
                continue
            if cut is not None and lineno >= cut:
                bad.add(p, f"line {lineno}", "unterminated quoted field (truncated row)")
                continue
            if len(row) != ncol:
                bad.add(p, f"line {lineno}", f"{len(row)} fields, the header has {ncol}")
                continue
            rec = {}
            try:
                for h, i in zip(names, idx):
                    cell = row[i].strip()
                    rec[h] = None if cell == "" else _num(cell, f"column {h!r}")
            except ValueError as exc:
                bad.add(p, f"line {lineno}", str(exc))
                continue
            recs.append(rec)
            lines.append(lineno)
            if len(recs) >= _BATCH:
                yield _chunk_from_records(recs, lines, "line", set())
                recs, lines = [], []
    if recs:
        yield _chunk_from_records(recs, lines, "line", set())


# ------------------------------------------------------------------------ Parquet
def _iter_parquet(p: Path, want, lists, bad, seen) -> Iterator[Chunk]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise InputFileError(
            "reading Parquet needs pyarrow: pip install pyarrow (the logs extra)"
        ) from None
    with _io.open_input(p, "log file") as fh:
        try:
            pf = pq.ParquetFile(fh)
        except (pa.ArrowException, OSError, *_io.DECODE_ERRORS) as exc:
            raise InputFileError(f"{p}: not a readable Parquet file ({exc})") from None
        yield from _parquet_chunks(p, pf, want, lists, seen)


def _parquet_chunks(p: Path, pf, want, lists, seen) -> Iterator[Chunk]:
    import pyarrow as pa

    schema = pf.schema_arrow
    seen.update(schema.names)
    names = []
    for n in schema.names:
        if not (n in lists or want is None or n in want):
            continue
        t = schema.field(n).type
        if n in lists:
            ok = pa.types.is_null(t) or (
                (pa.types.is_list(t) or pa.types.is_large_list(t))
                and (
                    pa.types.is_integer(t.value_type)
                    or pa.types.is_floating(t.value_type)
                    or pa.types.is_boolean(t.value_type)
                )
            )
            if not ok:
                raise InputFileError(f"{p}: column {n!r} has type {t}, expected a list of numbers")
        elif not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_null(t)):
            if (pa.types.is_string(t) or pa.types.is_large_string(t)) and n in _LABELS.get():
                pass  # an identifier: read by label_value
            elif want is None:
                continue
            else:
                raise InputFileError(f"{p}: column {n!r} has type {t}, expected numbers")
        names.append(n)
    if not names:
        return
    done = 0
    size = _BATCH if not lists else _LIST_BATCH
    for batch in _parquet_batches(p, pf, size, names):
        n = batch.num_rows
        chunk = Chunk(lines=np.arange(done + 1, done + 1 + n, dtype=np.int64), unit="row")
        for name in names:
            col = batch.column(name)
            if name in lists:
                chunk.lists[name] = _arrow_list(col)
                chunk.present[name] = _valid(col)
            else:
                chunk.columns[name], chunk.present[name] = _arrow_numeric(col, name)
        done += n
        yield chunk


def _parquet_batches(p: Path, pf, size: int, names):
    """The record batches of a Parquet file; a corrupt page is an InputFileError."""
    import pyarrow as pa

    it = pf.iter_batches(batch_size=size, columns=names)
    while True:
        try:
            batch = next(it)
        except StopIteration:
            return
        except (pa.ArrowException, OSError, *_io.DECODE_ERRORS) as exc:
            raise InputFileError(
                f"{p}: not a readable Parquet file ({_io.decode_reason(exc)})"
            ) from None
        yield batch


# -------------------------------------------------------------------- TensorBoard
def _iter_tensorboard(p: Path, want, bad, seen) -> Iterator[Chunk]:
    """Scalars of event files pivoted to one record per step (sorted by step)."""
    from .tensorboard import iter_scalars

    rows: dict[int, dict[str, float]] = {}
    first: dict[int, int] = {}
    for rec, step, scalars in iter_scalars(p, bad, seen):
        row = rows.setdefault(step, {})
        first.setdefault(step, rec)
        for tag, x in scalars:
            if want is None or tag in want:
                row[tag] = x
    seen.add("step")
    steps = sorted(rows)
    for k in range(0, len(steps), _BATCH):
        part = steps[k : k + _BATCH]
        recs = [{"step": float(s), **rows[s]} for s in part]
        yield _chunk_from_records(recs, [first[s] for s in part], "record", set())
