r"""Readers for the per-token dumps that RL frameworks write in their own layouts.

Each reader turns a framework's dump into the :class:`~.readers.Chunk` blocks that the
per-token check (:func:`.tokens.check_tokens`) consumes: list columns of rollout and
trainer log-probabilities of the sampled tokens, a 0/1 loss mask and a step column.
:func:`open_dump` recognises a dump by its name and layout and returns a
:class:`DumpSource`, or ``None`` for anything else (a metric log, a plain JSONL or
Parquet dump, a TensorBoard directory).

=========  ====================================================  ============================
framework  what is read                                          source (repository, commit)
=========  ====================================================  ============================
NeMo-RL    ``train_data_step{N}.jsonl`` (or a directory of        NVIDIA-NeMo/RL 7ea279ab:
           them): each field a one-element list; rollout          ``nemo_rl/algorithms/grpo.py``
           ``generation_logprobs``, trainer ``prev_logprobs``,    (``log_data``),
           mask ``token_loss_mask`` x ``sample_loss_mask``,       ``nemo_rl/utils/logger.py``
           position 0 dropped as the loss does; step ``N``        (``log_batched_dict_as_jsonl``)
prime-rl   ``token_exports/step_{N}/rank_{R}.jsonl`` (a           PrimeIntellect-ai/prime-rl
           ``token_exports`` or ``step_{N}`` directory): all      559b4477:
           ranks of a step together; ``inference_logprobs``,      ``src/prime_rl/trainer/rl/
           ``trainer_logprobs``, ``loss_mask``, ``step``          token_export.py``
slime      ``train_data/{rollout_id}.pt`` (or a directory of      THUDM/slime 624b824a:
           them) through ``torch.load(weights_only=True)``        ``slime/observability/
           only: ``samples[i]`` with ``rollout_log_probs``,       train_data_utils.py``
           ``log_probs``, ``loss_masks``; step ``rollout_id``
SkyRL      ``dumped_data/global_step_{N}_training_input.pkl``:    NovaSky-AI/SkyRL a9564572
           **refused** -- a pickle runs code when loaded
=========  ====================================================  ============================

Nothing here unpickles: slime's ``.pt`` files are read by ``torch.load`` with
``weights_only=True`` (tensors, dicts, lists, numbers, strings), and any other
content is refused with a one-line message.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import _io
from ..errors import InputFileError
from .readers import _BLOCK, BadRecords, Chunk, iter_log

__all__ = ["DumpSource", "open_dump", "FRAMEWORK_DUMPS"]

#: Per-token dump layouts recognised by :func:`open_dump` (framework -> file pattern).
FRAMEWORK_DUMPS = {
    "nemo-rl": "train_data_step{N}.jsonl",
    "prime-rl": "token_exports/step_{N}/rank_{R}.jsonl",
    "slime": "train_data/{rollout_id}.pt",
    "skyrl": "dumped_data/global_step_{N}_training_input.pkl (refused: pickle)",
}

_NEMO_RE = re.compile(r"^train_data_step(\d+)\.jsonl$")
_PRIME_STEP_RE = re.compile(r"^step_(\d+)$")
_PRIME_RANK_RE = re.compile(r"^rank_(\d+)\.jsonl$")
_SLIME_RE = re.compile(r"^\d+\.pt$")  # {rollout_id}.pt
_SKYRL_RE = re.compile(r"^global_step_\d+_training_input\.pkl$")
_PICKLE_EXT = (".pkl", ".pickle")
_RECORDS = 256  # records (sequences) per chunk (slime)

# Column names as the sources show them (the "from" of the check's output).
_NEMO_COLS = {
    "logp_roll": "generation_logprobs",
    "logp_theta": "prev_logprobs",
    "loss_mask": "token_loss_mask*sample_loss_mask",
    "step": "N of train_data_step{N}",
}
_SLIME_COLS = {
    "logp_roll": "rollout_log_probs",
    "logp_theta": "log_probs",
    "loss_mask": "loss_masks",
    "step": "rollout_id",
}


@dataclass
class DumpSource:
    """A framework's per-token dump, read as :class:`~.readers.Chunk` blocks.

    Attributes
    ----------
    path : Path
        What the user named (a file or a directory).
    framework : str
        ``nemo-rl``, ``prime-rl`` or ``slime``.
    files : list of Path
        The files read, in order (steps ascending, ranks ascending).
    names : list of str
        The columns the chunks carry.
    maps : dict
        Which column is which quantity (``logp_roll``, ``logp_theta``, ``loss_mask``,
        ``step``): the defaults :func:`.tokens.check_tokens` uses unless ``--map`` says
        otherwise.
    notes : list of str
        What the reader did that the output should say.
    """

    path: Path
    framework: str
    files: list[Path]
    names: list[str]
    maps: dict[str, str]
    notes: list[str] = field(default_factory=list)
    skip: set[str] = field(default_factory=set)  # columns left unread
    _reader: Callable[..., Iterator[Chunk]] | None = None

    def chunks(
        self,
        *,
        columns: Iterable[str] | None = None,
        lists: Iterable[str] = (),
        bad: BadRecords | None = None,
        seen: set[str] | None = None,
    ) -> Iterator[Chunk]:
        """Stream the dump's records, like :func:`.readers.iter_log` (same arguments)."""
        bad = bad if bad is not None else BadRecords()
        seen = seen if seen is not None else set()
        assert self._reader is not None
        yield from self._reader(self, columns, set(lists), bad, seen)

    def where(self, f: Path) -> str:
        """How a record's file is named in messages (relative to :attr:`path`)."""
        if f == self.path:
            return ""
        try:
            return f.relative_to(self.path).as_posix() + " "
        except ValueError:
            return f.name + " "


def _num_group(rx, name: str) -> int:
    """The number a file-name pattern captured (its first group); names were matched."""
    m = rx.match(name)
    assert m is not None
    return int(m.group(1))


def open_dump(path: str | os.PathLike) -> DumpSource | None:
    """The framework dump at ``path``, or None when ``path`` is not one.

    Raises
    ------
    InputFileError
        For a SkyRL pickle (never unpickled), a slime ``.pt`` file that
        ``torch.load(weights_only=True)`` cannot read, or a malformed dump.

    Examples
    --------
    >>> open_dump("metrics.jsonl") is None
    True
    """
    p = Path(path)
    if p.is_dir():
        return _open_dir(p)
    name = p.name
    if p.suffix.lower() in _PICKLE_EXT:
        raise InputFileError(_pickle_message(p))
    if p.suffix.lower() == ".pt":
        return _slime(p, [p])
    if p.suffix.lower() in (".jsonl", ".ndjson") and p.is_file():
        if _PRIME_RANK_RE.match(name) and _PRIME_STEP_RE.match(p.parent.name):
            return _prime(p, [p.parent], only=p)
        m = _NEMO_RE.match(name)
        if m or _looks_nemo(p):
            return _nemo(p, [p])
    return None


def _open_dir(p: Path) -> DumpSource | None:
    try:
        kids = sorted(p.iterdir())
    except OSError as exc:
        raise InputFileError(f"cannot read {p}: {exc.strerror or exc}") from None
    files = [k for k in kids if k.is_file()]
    nemo = [k for k in files if _NEMO_RE.match(k.name)]
    if nemo:
        return _nemo(p, sorted(nemo, key=lambda k: _num_group(_NEMO_RE, k.name)))
    pts = [k for k in files if _SLIME_RE.match(k.name)]
    if pts:
        return _slime(p, sorted(pts, key=lambda k: int(k.stem)))
    pkl = [k for k in files if _SKYRL_RE.match(k.name)]
    if pkl:
        raise InputFileError(_pickle_message(pkl[0], directory=p))
    ranks = [k for k in files if _PRIME_RANK_RE.match(k.name)]
    if ranks and _PRIME_STEP_RE.match(p.name):  # one step_N directory
        return _prime(p, [p])
    steps = [k for k in kids if k.is_dir() and _PRIME_STEP_RE.match(k.name)]
    if steps and any(_PRIME_RANK_RE.match(f.name) for s in steps for f in s.iterdir()):
        return _prime(p, sorted(steps, key=lambda k: _num_group(_PRIME_STEP_RE, k.name)))
    return None


def _pickle_message(f: Path, directory: Path | None = None) -> str:
    where = f"{directory}: holds {f.name}" if directory is not None else f"{f}"
    return (
        f"{where}: a Python pickle (SkyRL's dumped_data/*.pkl is a pickled TrainingInputBatch); "
        "trmbounds never unpickles files (loading one runs arbitrary code) -- export "
        "rollout_logprobs, action_log_probs and loss_mask to JSONL or Parquet list columns "
        "and check that file"
    )


# ------------------------------------------------------------------------ NeMo-RL
def _looks_nemo(p: Path) -> bool:
    """A JSONL whose first record has NeMo-RL's wrapped log-prob fields."""
    try:
        with _io.open_input(p, "log file") as fh:
            first = fh.readline(1 << 26)
        if b'"generation_logprobs"' not in first:
            return False
        obj = json.loads(first)
    except (OSError, ValueError, RecursionError, InputFileError):  # the reader reports it
        return False
    return (
        isinstance(obj, dict)
        and isinstance(obj.get("generation_logprobs"), list)
        and isinstance(obj.get("prev_logprobs"), list)
        and len(obj["generation_logprobs"]) == 1
        and isinstance(obj["generation_logprobs"][0], list)
    )


def _nemo(p: Path, files: list[Path]) -> DumpSource:
    src = DumpSource(
        p, "nemo-rl", files, list(_NEMO_COLS.values()), dict(_NEMO_COLS), _reader=_read_nemo
    )
    if not all(_NEMO_RE.match(f.name) for f in files):
        src.names.remove(_NEMO_COLS["step"])
        del src.maps["step"]
        src.notes.append(f"{p.name} is not named train_data_step{{N}}.jsonl: its step is unknown")
    src.notes.append(
        "NeMo-RL dump: generation_logprobs (rollout) vs prev_logprobs (recomputed pi_old), "
        "tokens where token_loss_mask and sample_loss_mask are 1, position 0 dropped as in "
        "NeMo-RL's loss"
    )
    return src


def _unwrap(obj: dict, key: str, what: str):
    """NeMo-RL wraps every field in a one-element list (a batch slice of size 1)."""
    if key not in obj:
        raise ValueError(f"no {key!r} field")
    v = obj[key]
    if not (isinstance(v, list) and len(v) == 1):
        raise ValueError(f"field {key!r}: expected a one-element list around the {what}")
    return v[0]


def _floats(v, key: str) -> np.ndarray:
    if not isinstance(v, list):
        raise ValueError(f"field {key!r}: expected a list of numbers")
    try:
        a = np.array([np.nan if x is None else x for x in v], dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"field {key!r}: expected a list of numbers") from None
    if a.ndim != 1:
        raise ValueError(f"field {key!r}: expected a flat list of numbers")
    return a


def _read_nemo(src: DumpSource, columns, lists, bad, seen) -> Iterator[Chunk]:
    seen.update(src.names)
    for f in src.files:
        m = _NEMO_RE.match(f.name)
        step = float(m.group(1)) if m else math.nan
        unit = src.where(f) + "line"
        counts = [0, 0]  # trained tokens, those with prev_logprobs != 0
        for line0, body in _line_blocks(f):
            ch = _nemo_fast(body, line0, unit, src.maps.get("step"), step, counts)
            if ch is None:  # the slow path finds and reports the bad line
                ch = _nemo_slow(src, body, line0, unit, step, bad, counts)
            if len(ch):
                yield ch
        trained, real_prev = counts
        if trained and not real_prev:
            raise InputFileError(
                f"{f}: prev_logprobs is 0 on all {trained:,} trained tokens: NeMo-RL skipped "
                "the trainer's log-probs (loss_fn.force_on_policy_ratio=True), so this dump "
                "has nothing to compare the rollout log-probs with"
            )


def _line_blocks(f: Path) -> Iterator[tuple[int, bytes]]:
    """Blocks of whole lines (about ``_BLOCK`` bytes) and the number of their first line."""
    fh = _io.open_input(f, "dump file")
    line0 = 1
    with fh:
        tail = b""
        while True:
            data = fh.read(_BLOCK)
            block = tail + data
            if not data:
                if block.strip():
                    yield line0, block if block.endswith(b"\n") else block + b"\n"
                return
            cut = block.rfind(b"\n") + 1
            if cut == 0:  # a line longer than the block: read on
                tail = block
                continue
            body, tail = block[:cut], block[cut:]
            yield line0, body
            line0 += body.count(b"\n")


_NEMO_LISTS = ("generation_logprobs", "prev_logprobs", "token_loss_mask")


def _nemo_fast(body: bytes, line0: int, unit, step_c, step, counts) -> Chunk | None:
    """A block parsed by pyarrow, all in columns; None when the slow path is needed
    (no pyarrow, a blank or bad line, booleans, an unexpected shape or value)."""
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.json as pj
    except ImportError:  # pragma: no cover - the [logs] extra is missing
        return None
    if body.startswith(b"\n") or b"\n\n" in body or b"\r" in body:
        return None  # blank lines would shift the line numbers
    if not _io.arrow_safe_jsonl(body):
        return None  # a non-object or a line nested deeper than pyarrow survives
    try:
        body.decode("utf-8")  # pyarrow accepts invalid UTF-8, then fails on it later
    except UnicodeDecodeError:
        return None
    wrapped = pa.list_(pa.list_(pa.float64()))
    schema = pa.schema([(k, wrapped) for k in _NEMO_LISTS] + [("sample_loss_mask",
                       pa.list_(pa.float64()))])  # fmt: skip
    opts = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    try:
        t = pj.read_json(io.BytesIO(body), parse_options=opts,
                         read_options=pj.ReadOptions(block_size=1 << 24))  # fmt: skip
    except (pa.ArrowException, *_io.DECODE_ERRORS):
        return None
    n = t.num_rows
    if n != body.count(b"\n"):
        return None
    flat: dict[str, np.ndarray] = {}
    lens: np.ndarray | None = None
    smask: np.ndarray | None = None
    for k in (*_NEMO_LISTS, "sample_loss_mask"):
        col = t.column(k).combine_chunks()
        if col.null_count or pc.any(pc.not_equal(pc.list_value_length(col), 1)).as_py():
            return None  # a missing field, or not a one-element list
        inner = pc.list_flatten(col)
        if k == "sample_loss_mask":
            if inner.null_count:
                return None
            smask = inner.to_numpy(zero_copy_only=False)
            continue
        if inner.null_count or inner.values.null_count:
            return None
        ln = pc.list_value_length(inner).to_numpy(zero_copy_only=False).astype(np.int64)
        if lens is None:
            lens = ln
        elif not np.array_equal(lens, ln):
            return None
        flat[k] = pc.list_flatten(inner).to_numpy(zero_copy_only=False)
    if smask is None or lens is None or not np.isin(smask, (0.0, 1.0)).all() or (lens < 1).any():
        return None
    # NeMo-RL's loss uses [:, 1:] of the log-probs and token mask, times the sample mask.
    off = np.zeros(n + 1, np.int64)
    np.cumsum(lens, out=off[1:])
    keep = np.ones(int(off[-1]), bool)
    keep[off[:-1]] = False
    out = np.zeros(n + 1, np.int64)
    np.cumsum(lens - 1, out=out[1:])
    mask = flat["token_loss_mask"][keep] * np.repeat(smask, lens - 1)
    theta = flat["prev_logprobs"][keep]
    kept = mask != 0
    counts[0] += int(kept.sum())
    counts[1] += int(np.count_nonzero(theta[kept]))
    ch = Chunk(lines=np.arange(line0, line0 + n, dtype=np.int64), unit=unit)
    cols = (_NEMO_COLS["logp_roll"], _NEMO_COLS["logp_theta"], _NEMO_COLS["loss_mask"])
    for c, v in zip(cols, (flat["generation_logprobs"][keep], theta, mask)):
        ch.lists[c] = (np.ascontiguousarray(v, dtype=np.float64), out)
        ch.present[c] = np.ones(n, bool)
    if step_c is not None:
        ch.columns[step_c] = np.full(n, step)
        ch.present[step_c] = np.full(n, np.isfinite(step))
    return ch


def _nemo_slow(src: DumpSource, body: bytes, line0: int, unit, step, bad, counts) -> Chunk:
    """A block line by line with the json module, reporting bad lines."""
    roll_c, theta_c, mask_c = (_NEMO_COLS[q] for q in ("logp_roll", "logp_theta", "loss_mask"))
    rows: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []
    for i, raw in enumerate(body.split(b"\n")[:-1]):
        lineno = line0 + i
        if not raw.strip():
            continue
        try:
            obj = _io.json_record(raw)  # one-line reasons: UTF-8, depth, > 4,300 digits
            if not isinstance(obj, dict):
                raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
            roll = _floats(_unwrap(obj, "generation_logprobs", "log-probs"), roll_c)
            theta = _floats(_unwrap(obj, "prev_logprobs", "log-probs"), theta_c)
            tmask = _floats(_unwrap(obj, "token_loss_mask", "mask"), "token_loss_mask")
            smask = _unwrap(obj, "sample_loss_mask", "sample mask")
            if not isinstance(smask, (int, float)):  # bool is an int
                raise ValueError("field 'sample_loss_mask': expected a number")
            smask = float(smask)
        except (ValueError, UnicodeDecodeError, RecursionError, TypeError, OverflowError) as exc:
            msg = str(exc)
            if isinstance(exc, json.JSONDecodeError):
                msg = f"invalid JSON ({exc.msg})"
            bad.add(src.path, f"{unit} {lineno}", msg)
            continue
        if not (len(roll) == len(theta) == len(tmask)):
            bad.add(src.path, f"{unit} {lineno}", f"generation_logprobs has {len(roll)} values, "
                    f"prev_logprobs {len(theta)}, token_loss_mask {len(tmask)}")  # fmt: skip
            continue
        if smask not in (0.0, 1.0):
            bad.add(src.path, f"{unit} {lineno}", f"sample_loss_mask is {smask!r}, expected 0 or 1")
            continue
        # NeMo-RL's loss (ClippedPGLossFn, compute_and_apply_seq_logprob_error_masking)
        # uses [:, 1:] of the log-probs and token mask, times the sample mask.
        rows.append((lineno, roll[1:], theta[1:], tmask[1:] * smask))
        kept = rows[-1][3] != 0
        counts[0] += int(kept.sum())
        counts[1] += int(np.count_nonzero(rows[-1][2][kept]))
    return _chunk(rows, unit, roll_c, theta_c, mask_c, src.maps.get("step"), step)


def _chunk(rows, unit, roll_c, theta_c, mask_c, step_c, step) -> Chunk:
    n = len(rows)
    lens = np.fromiter((len(r[1]) for r in rows), np.int64, n)
    off = np.zeros(n + 1, np.int64)
    np.cumsum(lens, out=off[1:])
    ch = Chunk(lines=np.fromiter((r[0] for r in rows), np.int64, n), unit=unit)
    for j, c in ((1, roll_c), (2, theta_c), (3, mask_c)):
        vals = np.concatenate([r[j] for r in rows]) if n else np.zeros(0)
        ch.lists[c] = (vals.astype(np.float64, copy=False), off)
        ch.present[c] = np.ones(n, bool)
    if step_c is not None:
        steps = np.asarray(step, dtype=np.float64)
        ch.columns[step_c] = np.broadcast_to(steps, (n,)).copy()
        ch.present[step_c] = np.isfinite(ch.columns[step_c])
    return ch


# ------------------------------------------------------------------------ prime-rl
def _prime(p: Path, step_dirs: list[Path], only: Path | None = None) -> DumpSource:
    files: list[Path] = []
    unstable = []
    for d in step_dirs:
        ranks = sorted(
            (f for f in d.iterdir() if _PRIME_RANK_RE.match(f.name)),
            key=lambda f: _num_group(_PRIME_RANK_RE, f.name),
        )
        if only is not None:
            ranks = [only]
        for f in ranks:  # never open a FIFO or a device: a FIFO blocks for ever
            why = _io.regular_file_reason(f)
            if why is not None:
                raise InputFileError(f"{f}: {why}, expected a prime-rl rank file")
        files.extend(ranks)
        if ranks and not (d / "STABLE").exists():
            unstable.append(d.name)
    if not files:
        raise InputFileError(f"{p}: no token_exports/step_N/rank_R.jsonl files")
    from .tokens import _columns_of  # the per-token reader's column sniffing

    names = list(dict.fromkeys(_columns_of(files[0], "jsonl")))
    # prime-rl's advantages are per token (a list): not the per-sequence reward column.
    skip = {c for c in ("advantages",) if c in names}
    src = DumpSource(
        p,
        "prime-rl",
        files,
        [c for c in names if c not in skip],
        {},
        skip=skip,
        _reader=_read_prime,
    )
    if only is not None:
        src.notes.append(
            f"prime-rl token export: {only.name} of {only.parent.name} only; give the "
            "step_N or token_exports directory to check all ranks together"
        )
    else:
        src.notes.append(
            f"prime-rl token export: {len(step_dirs)} step(s), {len(files)} rank file(s); all "
            "ranks of a step are checked together"
        )
    if unstable:
        src.notes.append(
            f"{len(unstable)} step(s) without prime-rl's STABLE marker (still being written, "
            f"or the run stopped): {', '.join(unstable[:5])}"
            + (" ..." if len(unstable) > 5 else "")
        )
    if skip:
        src.notes.append(
            "prime-rl's per-token advantages are not read as a per-sequence reward: "
            "no surrogate L (pass a dump with a per-sequence reward column for one)"
        )
    return src


def _read_prime(src: DumpSource, columns, lists, bad, seen) -> Iterator[Chunk]:
    if columns is not None:
        columns = [c for c in columns if c not in src.skip]
    for f in src.files:
        prefix = src.where(f)
        for ch in iter_log(f, "jsonl", columns=columns, lists=lists, bad=bad, seen=seen):
            ch.unit = prefix + ch.unit
            yield ch
        seen.difference_update(src.skip)


# --------------------------------------------------------------------------- slime
def _slime(p: Path, files: list[Path]) -> DumpSource:
    src = DumpSource(
        p, "slime", files, list(_SLIME_COLS.values()), dict(_SLIME_COLS), _reader=_read_slime
    )
    src.notes.append(
        "slime dump: rollout_log_probs (rollout) vs log_probs (training forward), tokens where "
        "loss_masks is 1, step = rollout_id"
    )
    return src


def _torch_load(f: Path):
    try:
        import torch
    except ImportError:
        raise InputFileError(
            f"{f}: reading slime .pt dumps needs torch: pip install torch (the model extra)"
        ) from None
    _check_inflated_size(f)
    try:
        with warnings.catch_warnings():  # e.g. a quantized tensor's deprecation notices
            warnings.simplefilter("ignore")
            return torch.load(f, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputFileError(f"log file not found: {f}") from None
    except Exception as exc:  # noqa: BLE001 - anything torch cannot load safely
        raise InputFileError(
            f"{f}: not readable with torch.load(weights_only=True) ({_reason(exc)}); "
            "trmbounds never unpickles other objects"
        ) from None


#: Uncompressed bytes a slime ``.pt`` may hold beyond its size on disk. torch.save stores
#: its entries uncompressed, so a real dump inflates to about its own size; a deflated
#: entry of a crafted file (a "zip bomb") could inflate a thousandfold in torch.load.
_INFLATE_SLACK = 64 * 2**20


def _check_inflated_size(f: Path) -> None:
    """Refuse a ``.pt`` (zip) file whose entries declare more uncompressed bytes than
    twice its size plus :data:`_INFLATE_SLACK` (torch.load allocates the declared size)."""
    import zipfile

    try:
        if not zipfile.is_zipfile(f):
            return  # torch's legacy format: not compressed
        with zipfile.ZipFile(f) as z:
            declared = sum(i.file_size for i in z.infolist())
        size = f.stat().st_size
    except (OSError, zipfile.BadZipFile, ValueError):
        return  # torch.load names what is wrong
    if declared > 2 * size + _INFLATE_SLACK:
        raise InputFileError(
            f"{f}: its zip entries inflate to {declared:,} bytes from {size:,} on disk; "
            "torch.save writes them uncompressed, so this is not a slime dump as written"
        )


def _reason(exc: Exception) -> str:
    """The gist of torch's (long, multi-line) refusal, e.g. "Unsupported global: GLOBAL
    argparse.Namespace was not an allowed global by default"."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    m = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\. |\n|$)", text)
    gist = m.group(1) if m else (text.strip().splitlines() or [type(exc).__name__])[0]
    return gist.strip()[:200]


def _as_array(v, key: str) -> np.ndarray:
    if hasattr(v, "detach"):  # a torch tensor
        if getattr(v, "is_meta", False):
            raise ValueError(f"field {key!r}: a meta-device tensor (no values)")
        if getattr(v, "is_quantized", False):
            raise ValueError(f"field {key!r}: a quantized tensor, not log-probabilities")
        if v.is_complex():
            raise ValueError(f"field {key!r}: a complex tensor, not log-probabilities")
        if getattr(v, "layout", None) is not None and str(v.layout) != "torch.strided":
            raise ValueError(f"field {key!r}: a {v.layout} tensor, expected a dense one")
        v = v.detach().to("cpu").double().numpy()
    elif isinstance(v, (list, tuple)):
        v = [float(x) for x in v]
    else:
        raise ValueError(f"field {key!r}: expected a tensor or list, got {type(v).__name__}")
    a = np.asarray(v, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"field {key!r}: expected one value per response token")
    return a


def _read_slime(src: DumpSource, columns, lists, bad, seen) -> Iterator[Chunk]:
    roll_c, theta_c, mask_c, step_c = (_SLIME_COLS[q] for q in ("logp_roll", "logp_theta",
                                                                "loss_mask", "step"))  # fmt: skip
    for f in src.files:
        obj = _torch_load(f)
        where = src.where(f)
        if not (isinstance(obj, dict) and isinstance(obj.get("samples"), list)):
            raise InputFileError(
                f"{f}: not a slime train-data dump (expected a dict with a 'samples' list, "
                "format_version 2: slime/observability/train_data_utils.py)"
            )
        rid = obj.get("rollout_id")
        try:
            step = float(rid)  # type: ignore[arg-type]  # anything else: refused below
            if not math.isfinite(step):
                raise ValueError
        except (TypeError, ValueError, OverflowError, RuntimeError, NotImplementedError):
            try:
                text = repr(rid)
            except ValueError:  # an int of more than 4,300 digits
                text = "an integer of more than 4,300 digits"
            text = text if len(text) <= 40 else text[:37] + "..."
            raise InputFileError(f"{f}: 'rollout_id' is {text}, expected a number") from None
        samples = obj["samples"]
        seen.update(src.names)
        seen.update(k for s in samples[:1] if isinstance(s, dict) for k in s)
        rows = []
        for i, s in enumerate(samples):
            try:
                if not isinstance(s, dict):
                    raise ValueError(f"expected a dict, got {type(s).__name__}")
                missing = [k for k in (roll_c, theta_c, mask_c) if k not in s]
                if missing:
                    raise ValueError(f"no {', '.join(repr(k) for k in missing)} field")
                roll = _as_array(s[roll_c], roll_c)
                theta = _as_array(s[theta_c], theta_c)
                mask = _as_array(s[mask_c], mask_c)
            except (ValueError, TypeError, OverflowError) as exc:
                bad.add(src.path, f"{where}sample {i}", str(exc))
                continue
            if not (len(roll) == len(theta) == len(mask)):
                bad.add(
                    src.path,
                    f"{where}sample {i}",
                    f"{roll_c} has {len(roll)} values, {theta_c} {len(theta)}, "
                    f"{mask_c} {len(mask)}",
                )
                continue
            rows.append((i, roll, theta, mask))
            if len(rows) >= _RECORDS:
                yield _chunk(rows, where + "sample", roll_c, theta_c, mask_c, step_c, step)
                rows = []
        if rows:
            yield _chunk(rows, where + "sample", roll_c, theta_c, mask_c, step_c, step)
