"""Files in and out: the one place where input files are opened and decoded, and
where output paths are validated and written.

Inputs
    Every reader of trmbounds opens its file here (:func:`open_input`,
    :func:`read_text`, :func:`load_json`, :func:`load_npy`) or decodes a record here
    (:func:`json_record`, :func:`decode_reason`). Whatever the bytes are -- binary,
    invalid UTF-8, JSON nested thousands deep, a 5,000-digit integer, a CSV cell
    beyond the ``csv`` module's limit, an ``.npy`` header claiming 10¹² elements --
    the result is an :class:`~trmbounds.errors.InputFileError` with one line naming
    the file (and the line), never another exception, and nothing is allocated
    beyond the size of the file.

Outputs
    :func:`check_outputs` validates every output path of a command before any work
    (a missing or non-directory parent, an unwritable place, a name longer than the
    file system allows, a directory, an existing file without ``force``, and -- even
    with ``force`` -- an output that is one of the inputs, compared by real path and
    by inode so that symlinks and hard links are caught). :func:`atomic_output`
    writes through a temporary file in the same directory and renames it into place,
    so an interrupted run never leaves a partial file under the final name.

Examples
--------
>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "s.json").write_bytes(b'{"T": ' + b"[" * 5000 + b"]" * 5000 + b"}")
>>> load_json(d / "s.json", "statistics file")
Traceback (most recent call last):
...
trmbounds.errors.InputFileError: ...s.json: line 1: JSON nested too deeply
>>> check_outputs([("--report", d / "s.json")], inputs=[d / "s.json"], force=True)
Traceback (most recent call last):
...
trmbounds.errors.TrmboundsError: --report ...s.json is an input file ...
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import stat
import struct
import tempfile
import tokenize
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputFileError, TrmboundsError

__all__ = [
    "DECODE_ERRORS",
    "decode_reason",
    "open_input",
    "read_text",
    "json_record",
    "load_json",
    "load_npy",
    "csv_rows",
    "check_outputs",
    "atomic_output",
]

#: Exceptions a decoder may raise on malformed bytes (turned into InputFileError).
DECODE_ERRORS = (
    ValueError,  # JSONDecodeError, UnicodeDecodeError, int > 4,300 digits, numpy
    RecursionError,  # JSON nested thousands deep
    csv.Error,  # field larger than the field limit, NUL byte
    struct.error,
    TypeError,
    OverflowError,
    IndexError,
    KeyError,
    EOFError,
    MemoryError,
    SyntaxError,  # numpy parses an .npy header with ast.literal_eval
    tokenize.TokenError,
)

#: Largest size (bytes) of one record a decoder allocates (a TFRecord, a JSONL line).
MAX_RECORD = 1 << 30
_NPY_MAX = 1 << 34  # elements: refuse an .npy header claiming more (16 G elements)


def decode_reason(exc: BaseException) -> str:
    """A short, one-line reason for a decoding exception (no traceback needed)."""
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})"
    if isinstance(exc, json.JSONDecodeError):
        return f"invalid JSON ({exc.msg} at column {exc.colno})"
    if isinstance(exc, RecursionError):
        return "JSON nested too deeply"
    if isinstance(exc, MemoryError):
        return "too large to decode"
    msg = " ".join(str(exc).split())
    if "integer string conversion" in msg or "int_max_str_digits" in msg:
        return "a number with more than 4,300 digits"
    if isinstance(exc, csv.Error) and "field limit" in msg:
        return f"a field longer than {csv.field_size_limit():,} characters"
    if isinstance(exc, csv.Error) and "NUL" in msg:
        return "binary content (a NUL byte)"
    return msg[:200] or type(exc).__name__


def _where(path: str | os.PathLike, line: int | None) -> str:
    return f"{path}: line {line}" if line is not None else f"{path}"


def open_input(path: str | os.PathLike, what: str = "file"):
    """Open ``path`` for reading bytes; a missing or unreadable file is an InputFileError."""
    p = Path(path)
    if not p.exists():
        raise InputFileError(f"{what} not found: {p}")
    if p.is_dir():
        raise InputFileError(f"{p} is a directory, expected a {what}")
    try:
        return open(p, "rb")
    except OSError as exc:
        raise InputFileError(f"cannot read {p}: {exc.strerror or exc}") from None


def _decode_text(data: bytes, path) -> str:
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise InputFileError(f"{path}: UTF-16 text; save it as UTF-8")
    if b"\x00" in data[:8192]:
        raise InputFileError(f"{path}: binary content, expected a text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputFileError(f"{_where(path, line)}: {decode_reason(exc)}") from None


def read_text(path: str | os.PathLike, what: str = "file") -> str:
    """The UTF-8 text of ``path`` (a BOM dropped); binary or invalid UTF-8 refused."""
    with open_input(path, what) as fh:
        try:
            data = fh.read()
        except OSError as exc:
            raise InputFileError(f"cannot read {path}: {exc.strerror or exc}") from None
        except MemoryError:
            raise InputFileError(f"{path}: too large to read into memory") from None
    return _decode_text(data, path)


#: A JSONL record that is not an object (null, a number, a string, a list) at the start
#: of a line. pyarrow's JSON reader crashes the process on a top-level null (pyarrow 26,
#: cf. apache/arrow#47409) and reads other non-objects as empty rows: such blocks go to
#: the record-by-record reader, which names the line.
_NOT_OBJECT = re.compile(rb"(?:^|\n)[ \t]*[^{ \t\n]")


def arrow_safe_jsonl(body: bytes) -> bool:
    """True when every line of a JSONL block starts an object (``{``) or is blank."""
    b = body.removeprefix(b"\xef\xbb\xbf")
    lines = b.count(b"\n") + (0 if b.endswith(b"\n") else 1)
    if b.count(b"\n{") + b.startswith(b"{") == lines:  # the usual case: two byte counts
        return True
    return _NOT_OBJECT.search(b) is None


def json_record(raw: bytes | str) -> Any:
    """Decode one JSON value (a JSONL line); raises ValueError with a one-line reason.

    Bytes must be UTF-8 (the JSON standard): the json module would otherwise guess
    UTF-16 or UTF-32 from NUL bytes.
    """
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        return json.loads(text)
    except DECODE_ERRORS as exc:
        raise ValueError(decode_reason(exc)) from None


def load_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """Read a whole JSON document, errors naming the file and the line."""
    text = read_text(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputFileError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
    except DECODE_ERRORS as exc:
        raise InputFileError(f"{path}: line 1: {decode_reason(exc)}") from None


def load_npy(path: str | os.PathLike) -> np.ndarray:
    """A numeric array from an ``.npy`` file: never unpickled, the header checked first.

    The shape and dtype in the header are checked against the file size before any
    allocation, so a header claiming 10¹² elements, an empty file or a truncated one
    is an InputFileError.
    """
    from numpy.lib import format as npf

    p = Path(path)
    with open_input(p, ".npy file") as fh:
        try:
            size = os.fstat(fh.fileno()).st_size
            version = npf.read_magic(fh)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if version == (1, 0):
                    shape, fortran, dtype = npf.read_array_header_1_0(fh)
                elif version in ((2, 0), (3, 0)):
                    shape, fortran, dtype = npf.read_array_header_2_0(fh)
                else:
                    raise ValueError(f"unsupported .npy version {version}")
        except DECODE_ERRORS as exc:
            raise InputFileError(f"{p}: not a readable .npy file ({decode_reason(exc)})") from None
        if dtype.hasobject or dtype.kind not in "biuf":
            raise InputFileError(f"{p}: not a numeric .npy array (dtype {dtype})")
        n = 1
        for d in shape:
            n *= int(d)
        if n > _NPY_MAX or n * dtype.itemsize > size - fh.tell():
            raise InputFileError(
                f"{p}: the header claims shape {tuple(shape)} ({n:,} values), more than the "
                "file holds"
            )
        try:
            fh.seek(0)
            with warnings.catch_warnings():  # e.g. "created on Python 2": not the user's concern
                warnings.simplefilter("ignore")
                arr = np.load(fh, allow_pickle=False)
        except DECODE_ERRORS as exc:
            raise InputFileError(f"{p}: not a readable .npy file ({decode_reason(exc)})") from None
        except OSError as exc:
            raise InputFileError(f"cannot read {p}: {exc.strerror or exc}") from None
    return np.asarray(arr)


def csv_rows(fh, path) -> Iterator[tuple[int, list[str] | None, str | None]]:
    """``(line, row, reason)`` for every row of a CSV text stream.

    ``fh`` is opened with ``errors="surrogateescape"`` (see :func:`open_csv`): a row
    with invalid UTF-8, a NUL byte or a field beyond the csv module's limit gives
    ``row=None`` and the reason, and reading goes on at the next row.
    """
    reader = csv.reader(fh)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield reader.line_num, None, decode_reason(exc)
            continue
        bad = next((c for c in row if _has_surrogate(c)), None)
        if bad is not None:
            yield reader.line_num, None, "not UTF-8 text"
            continue
        yield reader.line_num, row, None


def open_csv(path: str | os.PathLike, what: str = "CSV file"):
    """Open a CSV file as text for :func:`csv_rows` (BOM dropped, bad bytes kept apart)."""
    fh = open_input(path, what)
    fh.close()
    try:
        return open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")
    except OSError as exc:
        raise InputFileError(f"cannot read {path}: {exc.strerror or exc}") from None


def _has_surrogate(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


# ------------------------------------------------------------------------- outputs
def _name_max(directory: Path) -> int:
    try:
        return int(os.pathconf(directory, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return 255


def _identity(p: Path) -> tuple[str, tuple[int, int] | None]:
    real = os.path.realpath(p)
    try:
        st = os.stat(p)
        return real, (st.st_dev, st.st_ino)
    except OSError:
        return real, None


def check_outputs(
    outputs: Sequence[tuple[str, str | os.PathLike | None]],
    inputs: Iterable[str | os.PathLike | None] = (),
    force: bool = False,
    input_dirs: Iterable[str | os.PathLike | None] = (),
) -> list[Path]:
    """Validate every output path of a command before any work is done.

    Parameters
    ----------
    outputs : sequence of (option, path)
        The option that names each output (for the message) and its path; ``None``
        paths are skipped.
    inputs : iterable of path
        The command's input files: an output may never be one of them, ``force`` or
        not (compared by real path and by device/inode, so symlinks and hard links
        count).
    force : bool
        Allow replacing an existing output file.
    input_dirs : iterable of path
        Directories read as inputs (a model's weights and config): no output may be
        written inside one, ``force`` or not. Paths that are not directories are
        taken as input files.

    Returns
    -------
    list of Path
        The output paths (``None`` ones left out), in order.
    """
    dirs, files = [], list(inputs)
    for d in input_dirs:
        if d is None:
            continue
        d = Path(d).expanduser()  # as model references are resolved
        if d.is_dir():
            dirs.append(os.path.realpath(d))
        elif d.exists():
            files.append(d)
    ins = [_identity(Path(i)) for i in files if i is not None]
    seen: dict[str, str] = {}
    done: list[Path] = []
    for opt, raw in outputs:
        if raw is None:
            continue
        p = Path(raw)
        text = os.fspath(raw)
        if not text or "\x00" in text:
            raise TrmboundsError(f"{opt}: not a valid file name: {text!r}")
        parent = p.parent if str(p.parent) else Path(".")
        anc = parent
        while not anc.exists() and anc != anc.parent:
            anc = anc.parent
        if anc.exists() and not anc.is_dir():
            raise TrmboundsError(f"{opt} {p}: {anc} is a file, not a directory")
        if not parent.is_dir():
            raise TrmboundsError(f"{opt} {p}: directory {parent} does not exist")
        limit = _name_max(parent)
        if len(os.fsencode(p.name)) > limit:
            raise TrmboundsError(
                f"{opt}: the file name is {len(os.fsencode(p.name))} bytes long; the file "
                f"system allows {limit}"
            )
        if p.is_dir():
            raise TrmboundsError(f"{opt} {p} is a directory: give a file name for the output")
        real, ident = _identity(p)
        for r, i in ins:
            if real == r or (ident is not None and ident == i):
                raise TrmboundsError(
                    f"{opt} {p} is an input file of this command: choose another output name "
                    "(--force never overwrites an input)"
                )
        for d in dirs:
            if os.path.commonpath([real, d]) == d:
                raise TrmboundsError(
                    f"{opt} {p} is inside the input directory {d}: choose a place outside it "
                    "(--force never writes into an input)"
                )
        if real in seen:
            raise TrmboundsError(f"{opt} and {seen[real]} name the same file {p}")
        seen[real] = opt
        if os.path.lexists(p):
            if not force:
                raise TrmboundsError(f"{opt} {p} exists; pass --force to overwrite it")
            try:
                mode = os.stat(p).st_mode
            except OSError:
                mode = None  # a dangling symlink: replaced by the new file
            if mode is not None and not stat.S_ISREG(mode):
                raise TrmboundsError(f"{opt} {p} exists and is not a regular file")
        _probe(opt, p, parent)
        done.append(p)
    return done


def _probe(opt: str, p: Path, parent: Path) -> None:
    """Create and remove a temporary file next to ``p``: is the place writable?"""
    try:
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=".trmbounds-", suffix=".tmp")
    except OSError as exc:
        raise TrmboundsError(
            f"{opt} {p}: cannot write in {parent} ({exc.strerror or exc})"
        ) from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(tmp)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it to ``path``.

    On an exception (or Ctrl-C) the temporary file is removed and ``path`` is left
    as it was. The file gets the permissions a newly created file would get.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "r.txt"
    >>> with atomic_output(out) as tmp:
    ...     _ = tmp.write_text("done")
    >>> out.read_text()
    'done'
    """
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    try:
        fd, name = tempfile.mkstemp(dir=parent, prefix=".trmbounds-", suffix=".tmp")
    except OSError as exc:
        raise TrmboundsError(f"cannot write in {parent}: {exc.strerror or exc}") from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, p)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise TrmboundsError(f"cannot write {p}: {exc.strerror or exc}") from None
        raise
