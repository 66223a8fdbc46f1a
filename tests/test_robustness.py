"""No traceback on any input, nothing overwritten (issue 10).

The property: whatever the bytes of an input file or the values of the options, a
command ends with exit code 0, 1 (``check --fail-on``) or 2; on 2 it prints exactly
one line ``Error: …`` on stderr, never a traceback; input files are never modified;
an output is never an input and is written atomically.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from logfixtures import (
    _masked,
    _record,
    metric_rows,
    write_csv,
    write_jsonl,
    write_parquet,
    write_tfevents,
)
from typer.testing import CliRunner

from trmbounds import _io
from trmbounds.cli import app
from trmbounds.errors import InputFileError, TrmboundsError
from trmbounds.logs.readers import BadRecords, read_log

runner = CliRunner()
FIX = Path(__file__).parent / "fixtures"


def digest(paths) -> dict:
    return {p: hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths}


def assert_clean(r, allowed=(0, 2)):
    """Exit 0/2 and, on 2, one line `Error: …` on stderr; never a traceback."""
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert r.exit_code in allowed, (r.exit_code, r.stderr[-500:])
    assert "Traceback" not in r.stdout + r.stderr
    if r.exit_code == 2:
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), r.stderr[-500:]


# ---------------------------------------------------------------- inputs, by class
def _npy_header(shape: str) -> bytes:
    h = "{'descr': '<f8', 'fortran_order': False, 'shape': " + shape + ", }"
    h = h.ljust(117) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h.encode()


DEEP = b"[" * 100_000 + b"]" * 100_000
BAD_FILES = {
    # statistics files (eval --stats)
    "stats-latin1.json": (
        '{"T": 10, "kl_max": 0.01, "meta": {"x": "é"}}'.encode("latin-1"),
        "UTF-8",
    ),
    "stats-binary.json": (b"\x00\x01\xff\xfe" * 64, "binary"),
    "stats-deep.json": (b'{"T": ' + DEEP + b"}", "nested too deeply"),
    "stats-bigint.json": (b'{"T": 1' + b"0" * 5000 + b', "kl_max": 0.01}', "4,300 digits"),
    "stats-string.json": (b'{"T": 10, "kl_max": "0.01"}', "kl_max must be a number"),
    "stats-both-ranges.json": (
        b'{"T": 10, "kl_max": 0.01, "adv_range": 2, "reward_range": [0, 1]}',
        "disagrees with reward_range",
    ),
    # per-position files (eval --per-position)
    "pp-latin1.csv": (b"0.1\n\xe9\n", "line 2: not UTF-8"),
    "pp-binary.csv": (b"\x00\x01\xff\xfe", "binary"),
    "pp-utf16.csv": ("0.1\n0.2\n".encode("utf-16"), "UTF-16 text; save it as UTF-8"),
    "pp-deep.json": (DEEP, "nested too deeply"),
    "pp-bigint.json": (b"[1" + b"0" * 5000 + b"]", "4,300 digits"),
    "pp-strings.json": (b'["0.1", "0.1", "0.1"]', "array of numbers"),
    "pp-huge.npy": (_npy_header("(1000000000000,)"), "more than the file holds"),
    "pp-empty.npy": (b"", "not a readable .npy"),
    "pp-garbage.npy": (b"\x93NUMPY\x01\x00\xff\xff{{{", "not a readable .npy"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_input_file_is_one_line(tmp_path, name):
    data, message = BAD_FILES[name]
    p = tmp_path / name
    p.write_bytes(data)
    if name.startswith("stats"):
        args = ["eval", "--stats", str(p)]
    else:
        args = ["eval", "--T", "3", "--kl-max", "0.01", "--per-position", str(p)]
    before = digest([p])
    tracemalloc.start()
    r = runner.invoke(app, args)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert_clean(r)
    assert r.exit_code == 2 and message in r.stderr and name in r.stderr
    assert digest([p]) == before
    assert peak < 64 << 20  # never allocates what a header claims (10^12 float64s = 8 TB)


def _bad_jsonl(path: Path) -> Path:
    rows = metric_rows("verl")
    write_jsonl(path, rows)
    good = path.read_bytes().splitlines(keepends=True)
    bad = [
        b"\xff\xfe not utf-8\n",  # line 5
        b'{"a": ' * 5000 + b"1" + b"}" * 5000 + b"\n",  # line 6
        b'{"step": 9, "x": 1' + b"0" * 5000 + b"}\n",  # line 7
        b"\x00\x00\x00\n",  # line 8
    ]
    path.write_bytes(b"".join(good + bad))
    return path


def _bad_csv(path: Path) -> Path:
    write_csv(path, metric_rows("verl"))
    lines = path.read_bytes().splitlines(keepends=True)
    ncol = lines[0].count(b",")
    lines += [
        b"9," + b"\xff\xfe," * ncol + b"\n",  # line 6: not UTF-8
        b'10,"' + b"9" * 200_000 + b'"' + b",1" * (ncol - 1) + b"\n",  # line 7: field limit
        b"11" + b",0\x00" * ncol + b"\n",  # line 8: NUL bytes
    ]
    path.write_bytes(b"".join(lines))
    return path


@pytest.mark.parametrize("kind", ["jsonl", "csv"])
def test_bad_log_lines_fail_or_are_skipped_and_counted(tmp_path, kind):
    p = _bad_jsonl(tmp_path / "m.jsonl") if kind == "jsonl" else _bad_csv(tmp_path / "m.csv")
    before = digest([p])
    r = runner.invoke(app, ["check", str(p), "--kl-max", "0.05"])
    assert_clean(r)
    first_bad = "line 5" if kind == "jsonl" else "line 6"
    assert r.exit_code == 2 and first_bad in r.stderr, r.stderr
    r = runner.invoke(app, ["check", str(p), "--kl-max", "0.05", "--skip-bad", "--json"])
    assert_clean(r)
    assert r.exit_code == 0
    import json

    d = json.loads(r.stdout)
    bad = d["summary"]["bad_records"]
    assert bad["count"] == (4 if kind == "jsonl" else 3), bad
    assert len(d["steps"]) == 4  # the four good steps, nothing silently dropped
    assert digest([p]) == before


def test_bad_log_reasons(tmp_path):
    bad = BadRecords(skip=True)
    read_log(_bad_jsonl(tmp_path / "m.jsonl"), bad=bad)
    reasons = " | ".join(bad.messages)
    for want in ("line 5: not UTF-8", "line 6: JSON nested too deeply", "line 7: a number with"):
        assert want in reasons
    bad = BadRecords(skip=True)
    read_log(_bad_csv(tmp_path / "m.csv"), bad=bad)
    reasons = " | ".join(bad.messages)
    for want in ("line 6: not UTF-8", "line 7: a field longer than", "line 8: "):
        assert want in reasons


def _event(payload_fields: bytes) -> bytes:
    return _record(payload_fields)


def test_corrupt_tensorboard_records_never_allocate_or_trace(tmp_path):
    p = write_tfevents(tmp_path / "events.out.tfevents.1.h", metric_rows("verl"))
    good = p.read_bytes()

    def ld(field, payload):
        return bytes([field << 3 | 2]) + bytes([len(payload)]) + payload

    step = bytes([2 << 3]) + b"\x07"
    # a packed float_val of 3 bytes (struct.error) and a float_val as a varint (TypeError)
    odd = ld(1, b"k") + ld(8, ld(5, b"\x00\x00\x80"))
    typ = ld(1, b"k") + ld(8, bytes([5 << 3]) + b"\x07")
    head = struct.pack("<Q", 10**12)  # a length claiming a terabyte, with a valid CRC
    huge = head + struct.pack("<I", _masked(head)) + b"\x00" * 16
    p.write_bytes(good + _event(step + ld(5, ld(1, odd))) + _event(step + ld(5, ld(1, typ))) + huge)
    with pytest.raises(InputFileError, match="malformed event"):
        read_log(p)
    bad = BadRecords(skip=True)
    tracemalloc.start()
    c = read_log(p, bad=bad)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert bad.count == 3 and len(c) == 4
    assert "claims 1,000,000,000,000 bytes" in bad.messages[-1]
    assert peak < 64 << 20
    r = runner.invoke(app, ["check", str(p), "--kl-max", "0.05"])
    assert_clean(r)
    assert r.exit_code == 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["check", "{log}", "--tv-max", "1.5"], "--tv-max 1.5 exceeds 1"),
        (
            ["check", "{log}", "--kl-max", "0.05", "--adv-range", "0"],
            "--adv-range must be positive",
        ),
        (["solve", "--T", "4096,,8192", "--budget", "0.1"], "empty length"),
        (
            ["eval", "--T", "10", "--kl-max", "0.1", "--adv-range", "0"],
            "--adv-range must be positive",
        ),
        (["plot", "curves", "--kl-max", "1e-4", "--mark-T", "8"], "outside the lengths drawn"),
        (["plot", "curves", "--kl-max", "1e-4", "--T-max", "9" * 40], "beyond the longest"),
        (["plot", "curves", "--kl-max", "1e-4", "--mark-T", "9" * 40], "beyond the longest"),
        (["plot", "curves", "--kl-max", "1e-4", "--points", "9" * 12], "more than the"),
        (["plot", "heatmap", "--points", "100000"], "more than the"),
        (["check", "{log}", "--kl-max", "0.05", "--fail-on", "bogus"], "unknown state"),
    ],
)
def test_silently_accepted_inputs_are_refused(tmp_path, args, message):
    log = write_jsonl(tmp_path / "m.jsonl", metric_rows("verl"))
    args = [str(log) if a == "{log}" else a for a in args]
    os.chdir(tmp_path)
    r = runner.invoke(app, args)
    assert_clean(r)
    assert r.exit_code == 2 and message in r.stderr, r.stderr
    assert not list(tmp_path.glob("*.png"))


# ---------------------------------------------------------------- outputs
def test_output_paths_are_validated_before_any_work(tmp_path):
    log = write_jsonl(tmp_path / "m.jsonl", metric_rows("verl"))
    stats = tmp_path / "measured.json"
    stats.write_text('{"T": 100, "kl_max": 0.01, "status": {"kl_max": "empirical"}}')
    (tmp_path / "link.json").symlink_to(stats)
    os.link(stats, tmp_path / "hard.json")
    (tmp_path / "file").write_text("x")
    (tmp_path / "dir.csv").mkdir()
    before = digest([log, stats])
    cases = [
        (["check", stats, "-o", stats, "--force"], "is an input file"),
        (["check", stats, "--report", stats, "--force"], "is an input file"),  # the old name
        (["check", stats, "-o", tmp_path / "link.json", "--force"], "is an input file"),
        (["check", stats, "-o", tmp_path / "hard.json", "--force"], "is an input file"),
        (["check", stats, "-o", tmp_path / "." / "measured.json", "--force"], "is an input file"),
        (["check", log, "-o", tmp_path / "file" / "r.csv"], "is a file, not a directory"),
        (["check", log, "-o", "/proc/r.csv"], "cannot write in /proc"),
        (["check", log, "-o", tmp_path / ("a" * 300 + ".csv")], "file system allows"),
        (["check", log, "-o", tmp_path / "dir.csv"], "is a directory"),
        (["check", log, "-o", tmp_path / "no" / "r.csv"], "does not exist"),
        (["check", log, "-o", tmp_path / "file.csv", "--plot", tmp_path / "file.csv"], "csv"),
        (["check", log, "--plot", tmp_path / "p.png", "--report", tmp_path / "p.png"], "csv"),
        (["plot", "curves", "--kl-max", "1e-4", "-o", "/proc/c.png"], "cannot write in /proc"),
        (["plot", "heatmap", "-o", tmp_path / "file" / "h.png"], "is a file, not a directory"),
        (["plot", "heatmap", "--out", tmp_path / ("b" * 300 + ".png")], "file system allows"),
        (["plot", "curves", "--kl-max", "1e-4", "-o", tmp_path / "file.png"], None),
        (["plot", "curves", "--kl-max", "1e-4", "-o", tmp_path / "file.png"], "pass --force"),
        (["measure", "--roll", "x", "-o", tmp_path / "file" / "m.json"], "not a directory"),
        (["measure", "--roll", "x", "-o", "/proc/m.json"], "cannot write in /proc"),
        (
            ["measure", "--roll", "x", "-o", tmp_path / "t.json", "--tokens", tmp_path / "t.json"],
            "name the same file",
        ),  # fmt: skip
        (["measure", "--roll", "x", "--prompts", log, "--tokens", log, "--force"], "input file"),
        (["examples", "/proc/ex"], "cannot create a directory in /proc/ex"),
        (["examples", tmp_path / "file" / "ex"], "cannot create a directory"),
    ]
    for args, message in cases:
        r = runner.invoke(app, [str(a) for a in args])
        assert_clean(r)
        if message is None:
            assert r.exit_code == 0, r.stderr
            continue
        assert r.exit_code == 2 and message in r.stderr, (args, r.stderr)
    assert digest([log, stats]) == before
    assert (tmp_path / "file").read_text() == "x"
    assert not list(tmp_path.glob(".trmbounds-*"))  # no temporary file left behind


def test_atomic_write_and_ctrl_c(tmp_path, monkeypatch):
    out = tmp_path / "c.png"
    out.write_bytes(b"old")
    from matplotlib.figure import Figure

    def interrupted(self, fname, **kw):
        Path(fname).write_bytes(b"partial")  # half-written, then Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(Figure, "savefig", interrupted)
    r = runner.invoke(app, ["plot", "curves", "--kl-max", "1e-4", "-o", str(out), "--force"])
    assert r.exit_code == 130 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Interrupted" in r.stderr
    assert out.read_bytes() == b"old"  # the old file is intact, not a partial one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.png"]


def test_atomic_output_keeps_the_old_file_on_error(tmp_path):
    p = tmp_path / "r.txt"
    p.write_text("old")
    with pytest.raises(RuntimeError), _io.atomic_output(p) as tmp:
        tmp.write_text("new but broken")
        raise RuntimeError
    assert p.read_text() == "old" and [q.name for q in tmp_path.iterdir()] == ["r.txt"]
    with _io.atomic_output(p) as tmp:
        tmp.write_text("new")
    assert p.read_text() == "new" and oct(p.stat().st_mode & 0o777) != oct(0o600)


def test_check_outputs_library(tmp_path):
    a = tmp_path / "a.csv"
    with pytest.raises(TrmboundsError, match="same file"):
        _io.check_outputs([("-o", a), ("--plot", tmp_path / "." / "a.csv")], force=True)
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    with pytest.raises(TrmboundsError, match="not a regular file"):
        _io.check_outputs([("-o", fifo)], force=True)


# ---------------------------------------------------------------- the fuzz test
def _tfevents_bytes(tmp: Path) -> bytes:
    return write_tfevents(tmp / "events.out.tfevents.0", metric_rows("verl")).read_bytes()


def _seeds(tmp: Path) -> dict[str, bytes]:
    buf = io.BytesIO()
    np.save(buf, np.array([0.01, 0.02, 0.03]))
    return {
        "stats.json": b'{"T": 3, "kl_max": 0.01, "kl_seq": 0.02, "per_position": [0.01, 0.02,'
        b' 0.03], "status": {"kl_max": "empirical", "kl_seq": "estimate"}}',
        "pp.json": b"[0.01, 0.02, 0.03]",
        "pp.csv": b"dbar\n0.01\n0.02\n0.03\n",
        "pp.npy": buf.getvalue(),
        "m.jsonl": write_jsonl(tmp / "seed.jsonl", metric_rows("verl")).read_bytes(),
        "m.csv": write_csv(tmp / "seed.csv", metric_rows("verl")).read_bytes(),
        "events.out.tfevents.1": _tfevents_bytes(tmp),
        "m.parquet": write_parquet(tmp / "seed.parquet", metric_rows("verl")).read_bytes(),
        # per-token dumps in the frameworks' own layouts (tests/fixtures/make_dumps.py)
        "train_data_step3.jsonl": (
            FIX / "nemo-rl/logs/exp_001/train_data_step3.jsonl"
        ).read_bytes(),
        "rank_0.jsonl": (
            FIX / "prime-rl/outputs/run_default/token_exports/step_3/rank_0.jsonl"
        ).read_bytes(),
        "3.pt": (FIX / "slime/dump_details/train_data/3.pt").read_bytes(),
        "trainer_state.json": (FIX / "trl/grpo/trainer_state.json").read_bytes(),
    }


SPECIALS = [
    b"\xff\xfe",
    b"\x00",
    b"[" * 3000,
    b"{" * 3000,
    b"9" * 5000,
    b'"' + b"x" * 140_000 + b'"',
    b"\n",
    b",",
    b'"',
    b"NaN",
    b"-1e999",
    b"\r\n",
    struct.pack("<Q", 2**62),
]


@st.composite
def mutated(draw, seed: bytes) -> bytes:
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["truncate", "insert", "replace", "flip"]))
        i = draw(st.integers(0, len(data)))
        if op == "truncate":
            del data[i:]
        elif op == "insert":
            data[i:i] = draw(st.sampled_from(SPECIALS) | st.binary(max_size=16))
        elif op == "replace":
            data[i : i + draw(st.integers(1, 8))] = draw(st.binary(max_size=8))
        elif data:
            j = min(i, len(data) - 1)
            data[j] ^= 1 << draw(st.integers(0, 7))
    return bytes(data)


FILE_COMMANDS = {
    "stats.json": [["eval", "--stats", "{f}", "--json"], ["check", "{f}", "--kl-max", "0.01"]],
    "pp.json": [["eval", "--T", "3", "--kl-max", "0.01", "--per-position", "{f}"]],
    "pp.csv": [["eval", "--T", "3", "--kl-max", "0.01", "--per-position", "{f}"]],
    "pp.npy": [["eval", "--T", "3", "--kl-max", "0.01", "--per-position", "{f}"]],
    "m.jsonl": [["check", "{f}", "--kl-max", "0.05"], ["check", "{f}", "--skip-bad", "--json"]],
    "m.csv": [["check", "{f}", "--kl-max", "0.05"], ["check", "{f}", "--skip-bad", "--json"]],
    "events.out.tfevents.1": [["check", "{f}", "--skip-bad"], ["check", "{f}", "--tv-max", "0.1"]],
    "m.parquet": [["check", "{f}", "--kl-max", "0.05"]],
    "train_data_step3.jsonl": [
        ["check", "{f}", "--kl-max", "0.05"],
        ["check", "{f}", "--skip-bad"],
    ],
    "rank_0.jsonl": [["check", "{f}", "--kl-max", "0.05"], ["check", "{f}", "--skip-bad"]],
    "3.pt": [["check", "{f}", "--kl-max", "0.05"]],
    "trainer_state.json": [["check", "{f}", "--kl-max", "0.05"], ["check", "{f}", "--skip-bad"]],
}


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    return _seeds(tmp_path_factory.mktemp("seeds"))


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,  # the same examples on every run (CI), found by the strategies
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_fuzz_input_files(tmp_path, seeds, data):
    name = data.draw(st.sampled_from(sorted(FILE_COMMANDS)))
    content = data.draw(mutated(seeds[name]))
    d = tmp_path / hashlib.sha256(content + name.encode()).hexdigest()[:16]
    d.mkdir(exist_ok=True)
    f = d / name
    f.write_bytes(content)
    before = digest([f])
    cmd = data.draw(st.sampled_from(FILE_COMMANDS[name]))
    r = runner.invoke(app, [a.replace("{f}", str(f)) for a in cmd])
    assert_clean(r)
    assert digest([f]) == before


VALUES = ["0", "-1", "1", "0.5", "1e309", "-inf", "nan", "9" * 5000, "", ",", "1,,2", "abc",
          "1e-320", "99999999999999999999", "4096", "2"]  # fmt: skip
OPTION_COMMANDS = [
    ["eval", "--T", "{v}", "--kl-max", "{v}"],
    ["eval", "--T", "100", "--tv-max", "{v}", "--adv-range", "{v}"],
    ["eval", "--T", "100", "--kl-max", "0.01", "--reward-range", "{v}", "{v}"],
    ["solve", "--T", "{v}", "--budget", "{v}", "--json"],
    ["solve", "--kl-max", "{v}", "--budget-frac", "{v}", "--tv-ratio", "{v}"],
    ["plot", "curves", "--kl-max", "{v}", "--T-max", "{v}", "--points", "{v}", "-o", "{o}.svg"],
    ["plot", "curves", "--kl-max", "1e-4", "--mark-T", "{v}", "--T-min", "{v}", "-o", "{o}.svg"],
    [
        "plot",
        "heatmap",
        "--points",
        "{v}",
        "--kl-range",
        "{v}",
        "{v}",
        "-o",
        "{o}.svg",
        "--dpi",
        "40",
    ],  # fmt: skip
    ["plot", "heatmap", "--dpi", "{v}", "--size", "{v}", "{v}", "-o", "{o}.png"],
    ["check", "{log}", "--kl-max", "{v}", "--length", "{v}", "--adv-range", "{v}"],
    ["check", "{log}", "--tv-max", "{v}", "--fail-on", "{v}", "--trm-max", "{v}"],
    ["check", "{log}", "--kl-max", "{v}", "--missing-mass", "{v}", "--reward-range", "{v}", "{v}"],
    ["check", "{log}", "--kl-max", "0.01", "--map", "{v}", "--format", "{v}"],
]


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(data=st.data())
def test_fuzz_options(tmp_path, data):
    log = tmp_path / "m.jsonl"
    if not log.exists():
        write_jsonl(log, metric_rows("verl"))
    before = digest([log])
    cmd = data.draw(st.sampled_from(OPTION_COMMANDS))
    out = tmp_path / f"o{data.draw(st.integers(0, 10**9))}"
    args = []
    for a in cmd:
        if a == "{v}":
            a = data.draw(st.sampled_from(VALUES))
        args.append(a.replace("{log}", str(log)).replace("{o}", str(out)))
    r = runner.invoke(app, args)
    assert_clean(r, allowed=(0, 1, 2) if "--fail-on" in args else (0, 2))
    assert digest([log]) == before


@pytest.mark.parametrize(
    "data, message",
    [
        (b'{"prompt": ' + DEEP + b"}\n", "line 1: JSON nested too deeply"),
        (b'{"prompt": "a"}\n{"prompt": 1' + b"0" * 5000 + b"}\n", "line 2: a number with"),
        (b"\xff\xfe\x00", "not UTF-8"),
    ],
)
def test_bad_prompt_file_is_one_line_before_any_model_is_loaded(tmp_path, data, message):
    p = tmp_path / "prompts.jsonl"
    p.write_bytes(data)
    r = runner.invoke(app, ["measure", "--roll", "no-such-model", "--prompts", str(p),
                            "-o", str(tmp_path / "m.json")])  # fmt: skip
    assert_clean(r)
    assert r.exit_code == 2 and message in r.stderr
    assert not (tmp_path / "m.json").exists()


def test_a_line_longer_than_the_record_limit_is_never_decoded(tmp_path, monkeypatch):
    from trmbounds.logs import readers

    monkeypatch.setattr(readers, "_BLOCK", 64)
    monkeypatch.setattr(_io, "MAX_RECORD", 200)
    p = tmp_path / "m.jsonl"
    long = b'{"step": 2, "a": "' + b"x" * 1000 + b'"}\n'
    p.write_bytes(b'{"step": 1, "a": 1}\n' + long + b'{"step": 3, "a": 3}\n{"step": 4, "a": 4}\n')
    with pytest.raises(InputFileError, match="line 2: a line longer than"):
        read_log(p)
    bad = BadRecords(skip=True)
    c = read_log(p, bad=bad)
    assert bad.count == 1 and "line 2" in bad.messages[0]
    assert c.lines.tolist() == [1, 3, 4] and c.columns["a"].tolist() == [1.0, 3.0, 4.0]


# ------------------------------------------------------------------ directory trees
_TREE_NAMES = ["a", "run", "step_1", "step_2", "rank_0.jsonl", "rank_1.jsonl", "token_exports",
               "events.out.tfevents.1.h", "events.out.tfevents.①.h", "events.out.tfevents.²",
               "events.out.tfevents.9.h.csv", "0.pt", "train_data_step1.jsonl", "STABLE",
               "trainer_state.json", "m.jsonl", "é", " ", "x" * 200]  # fmt: skip
_TREE_LAYOUTS = [
    ["token_exports", "step_1", "rank_0.jsonl"],
    ["step_2", "rank_1.jsonl"],
    ["run", "events.out.tfevents.①.h"],
    ["events.out.tfevents.²"],
    ["events.out.tfevents.1.h"],
    ["train_data_step1.jsonl"],
    ["a", "run", "events.out.tfevents.9.h.csv"],
]
_TREE_KINDS = ["dir", "events", "jsonl", "empty", "junk", "fifo", "symlink", "deep"]


def _plant(base: Path, path: list[str], kind: str, depth: int) -> None:
    d = base
    for part in path[:-1]:
        d = d / part
        if d.exists() and not d.is_dir():
            return
        d.mkdir(exist_ok=True)
    f = d / path[-1]
    if os.path.lexists(f):
        return
    if kind == "dir":
        f.mkdir()
    elif kind == "events":
        write_tfevents(f, metric_rows("trl"))
    elif kind == "jsonl":
        write_jsonl(f, metric_rows("verl"))
    elif kind == "empty":
        f.touch()
    elif kind == "junk":
        f.write_bytes(b"\x00\xff{[" * 7)
    elif kind == "fifo" and hasattr(os, "mkfifo"):
        os.mkfifo(f)
    elif kind == "symlink":
        f.symlink_to(base)  # a cycle: never followed
    elif kind == "deep":
        f.mkdir()
        for _ in range(depth):  # deeper than the walk goes (one level at a time)
            f = f / "d"
            f.mkdir()
        write_tfevents(f / "events.out.tfevents.5.h", metric_rows("trl"))


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(
    tree=st.lists(
        st.tuples(
            st.one_of(
                st.lists(st.sampled_from(_TREE_NAMES), min_size=1, max_size=4),
                st.sampled_from(_TREE_LAYOUTS),  # what the readers look for
            ),
            st.sampled_from(_TREE_KINDS),
        ),
        min_size=1,
        max_size=8,
    ),
    depth=st.integers(min_value=1, max_value=60),
    preset=st.sampled_from(["auto", "trl", "prime-rl", "nemo-rl"]),
)
def test_fuzz_directory_trees(tmp_path_factory, tree, depth, preset):
    """`check DIR` on any tree (nesting, names, FIFOs, links, a deep subtree): exit 0
    or 2 with one line, never a traceback, never a hang, nothing modified."""
    base = tmp_path_factory.mktemp("tree")
    for path, kind in tree:
        _plant(base, path, kind, depth)
    files = [p for p in base.rglob("*") if p.is_file() and not p.is_symlink()] if depth < 40 else []
    before = digest(files)
    r = runner.invoke(app, ["check", str(base), "--kl-max", "0.05", "--preset", preset])
    assert_clean(r)
    assert digest(files) == before
