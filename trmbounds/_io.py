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
    so an interrupted run never leaves a partial file under the final name; right
    before that rename it checks the output against every file actually opened as an
    input (:func:`recording_inputs`), so that no input is ever replaced, however it
    was found (a file named inside another, one of many in a directory).

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
import io
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
    "recording_inputs",
    "was_read",
    "regular_file_reason",
    "walk",
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
#: Largest text (bytes) read whole from a pipe, whose size is unknown beforehand.
MAX_STREAM = 256 << 20
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


def _kind(mode: int) -> str:
    """What a file that is not a regular file is, for a message."""
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO or pipe"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a file"


def regular_file_reason(path: str | os.PathLike) -> str | None:
    """None for a regular file (symlinks followed), else why it is not one (a message)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "not found" + (" (a broken symbolic link)" if os.path.lexists(path) else "")
    except OSError as exc:
        return f"cannot read it ({exc.strerror or exc})"
    return None if stat.S_ISREG(mode) else f"not a regular file ({_kind(mode)})"


def open_input(path: str | os.PathLike, what: str = "file", stream: bool = False):
    """Open ``path`` for reading bytes, recorded as an input (:func:`recording_inputs`).

    A regular file is opened; a missing, unreadable or non-regular file (a directory,
    a FIFO, a device, a socket) is an :class:`InputFileError` naming the reason --
    never a blocking open: a FIFO without a writer would wait forever. With
    ``stream=True`` a FIFO or pipe (``/dev/stdin`` fed by ``|``) is read too, for a
    reader that reads its input once from start to end.
    """
    p = Path(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(p, flags)
    except FileNotFoundError:
        broken = " (a broken symbolic link)" if os.path.lexists(p) else ""
        raise InputFileError(f"{what} not found: {p}{broken}") from None
    except IsADirectoryError:
        raise InputFileError(f"{p} is a directory, expected a {what}") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the name
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise InputFileError(f"cannot read {p}: {reason}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise InputFileError(f"{p} is a directory, expected a {what}")
        if not stat.S_ISREG(st.st_mode):
            if not (stream and stat.S_ISFIFO(st.st_mode)):
                hint = "; save it to a file first" if stat.S_ISFIFO(st.st_mode) else ""
                raise InputFileError(
                    f"{p}: not a regular file ({_kind(st.st_mode)}), expected a {what}{hint}"
                )
            if hasattr(os, "set_blocking"):
                os.set_blocking(fd, True)  # a writer may still be writing: wait for it
        _note(p, st)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


# ------------------------------------------------------------ the inputs a command read
class _Record:
    """The files opened as inputs while :func:`recording_inputs` is active."""

    def __init__(self) -> None:
        self.ids: dict[tuple[int, int], str] = {}  # (device, inode) -> the path opened
        self.paths: dict[str, str] = {}  # real path -> the path as it was opened


_RECORD: _Record | None = None


def _note(p: Path, st: os.stat_result) -> None:
    rec = _RECORD
    if rec is not None:
        rec.ids.setdefault((st.st_dev, st.st_ino), os.fspath(p))
        rec.paths.setdefault(os.path.realpath(p), os.fspath(p))


@contextlib.contextmanager
def recording_inputs() -> Iterator[_Record]:
    """Record every file opened by :func:`open_input` (and the readers built on it)
    until the block ends; :func:`atomic_output` refuses to replace one of them.

    The command line runs every command inside this block: whatever a reader opens
    -- the per-position file a statistics file names, an event file deep in a
    directory -- an output can never replace it, however it was found.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "in.json"
    >>> _ = f.write_text("{}")
    >>> with recording_inputs():
    ...     _ = load_json(f)
    ...     with atomic_output(f) as tmp:
    ...         _ = tmp.write_text("[]")
    Traceback (most recent call last):
    ...
    trmbounds.errors.TrmboundsError: ...in.json was read as an input of this command: ...
    >>> f.read_text()
    '{}'
    """
    global _RECORD
    prev, _RECORD = _RECORD, _Record()
    try:
        yield _RECORD
    finally:
        _RECORD = prev


def was_read(path: str | os.PathLike) -> str | None:
    """The path under which ``path`` (the same file: real path or device/inode, so
    symbolic and hard links count) was opened as an input, or None."""
    rec = _RECORD
    if rec is None:
        return None
    real = os.path.realpath(path)
    if real in rec.paths:
        return rec.paths[real]
    try:
        st = os.stat(path)
    except OSError:
        return None
    return rec.ids.get((st.st_dev, st.st_ino))


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
    """The UTF-8 text of ``path`` (a BOM dropped); binary or invalid UTF-8 refused.

    A pipe (``/dev/stdin`` fed by ``|``) is read too, up to :data:`MAX_STREAM` bytes.
    """
    with open_input(path, what, stream=True) as fh:
        try:
            if stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                data = fh.read()
            else:
                data = fh.read(MAX_STREAM + 1)
                if len(data) > MAX_STREAM:
                    raise InputFileError(
                        f"{path}: more than {MAX_STREAM >> 20:,} MiB from a pipe; "
                        "save it to a file first"
                    )
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


#: Deepest nesting (``[`` / ``{``) of a JSONL line handed to pyarrow. pyarrow's JSON
#: parser recurses on the C stack and crashes the process (a segfault) somewhere between
#: 10,000 and 50,000 levels; the logs trmbounds reads nest a few levels.
ARROW_MAX_DEPTH = 64
_NOT_OPENER = bytes(c for c in range(256) if c not in b"[{\n")
_TOO_DEEP = re.compile(rb"[^\n]{%d}" % (ARROW_MAX_DEPTH + 1))


def arrow_safe_jsonl(body: bytes) -> bool:
    r"""True when a JSONL block may go to pyarrow's JSON reader: every line starts an
    object (``{``) or is blank, and no line nests deeper than :data:`ARROW_MAX_DEPTH`.

    The depth test is a byte count (every ``[`` and ``{`` of a line, in strings too):
    an upper bound, so a block it refuses goes to the record-by-record reader, which
    names a line nested too deeply.

    Examples
    --------
    >>> arrow_safe_jsonl(b'{"a": [1, 2]}\n{"a": []}\n')
    True
    >>> arrow_safe_jsonl(b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n")
    False
    >>> arrow_safe_jsonl(b"null\n")
    False
    """
    b = body.removeprefix(b"\xef\xbb\xbf")
    openers = b.translate(None, _NOT_OPENER)  # "[", "{" and newlines only
    n_lines = openers.count(b"\n")
    if len(openers) - n_lines > ARROW_MAX_DEPTH and _TOO_DEEP.search(openers):
        return False
    lines = n_lines + (0 if b.endswith(b"\n") else 1)
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
    return io.TextIOWrapper(fh, encoding="utf-8-sig", errors="surrogateescape", newline="")


def _has_surrogate(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


# ------------------------------------------------------------------------ directories
#: Deepest level below a directory argument that is searched (runs, dumps).
MAX_DEPTH = 32


def walk(
    root: str | os.PathLike, max_depth: int = MAX_DEPTH, too_deep: list[Path] | None = None
) -> Iterator[tuple[Path, list[str], list[str]]]:
    """``(directory, sub-directory names, regular file names)`` of ``root`` and every
    directory below it, sorted by name, without recursion (a tree 1,000 levels deep is
    no error).

    Symbolic links to directories are not followed (no cycles); FIFOs, sockets and
    devices are neither files nor directories here, so nothing ever opens them.
    Directories more than ``max_depth`` levels below ``root`` are not listed: the
    first of each is appended to ``too_deep`` (for a note). An unreadable directory is
    skipped, as :func:`os.walk` does.
    """
    stack = [(Path(root), 0)]
    while stack:
        d, depth = stack.pop()
        try:
            with os.scandir(d) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            continue
        dirs, files = [], []
        for e in entries:
            try:
                if e.is_dir(follow_symlinks=False):
                    dirs.append(e.name)
                elif e.is_file():
                    files.append(e.name)
            except OSError:
                continue
        yield d, dirs, files
        if depth >= max_depth:
            if dirs and too_deep is not None:
                too_deep.append(d / dirs[0])
            continue
        stack.extend((d / n, depth + 1) for n in reversed(dirs))


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
    as it was. The file gets the permissions a newly created file would get. Right
    before the rename, ``path`` is compared with every file opened as an input
    (:func:`recording_inputs`): an input is never replaced.

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
        src = was_read(p)
        if src is not None:  # the last word: whatever the early checks could foresee
            same = "" if os.path.realpath(src) == os.path.realpath(p) else f" (as {src})"
            raise TrmboundsError(
                f"{p} was read as an input of this command{same}: choose another output "
                "name (--force never overwrites an input); it was left as it was"
            )
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
