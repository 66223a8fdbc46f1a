"""No input overwritten, no hang, no crash, no traceback at the edges of the process
(issue 17, points 3 and 5): outputs checked against the files actually opened, FIFOs
and devices, deep JSON and deep directories, odd file names, plot ranges, legacy
console encodings, a closed stdout, Ctrl-C while the modules load."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from logfixtures import metric_rows, write_jsonl, write_tfevents
from typer.testing import CliRunner

from trmbounds.cli import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()
posix = pytest.mark.skipif(os.name != "posix", reason="FIFOs, /dev/zero, signals: POSIX")


def run(*args):
    return runner.invoke(app, [*map(str, args)])


def cli(*args, timeout=60, **kw):
    """The real process (`python -m trmbounds`), with this checkout first on the path."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), **kw.pop("env", {}))
    return subprocess.run(
        [sys.executable, "-m", "trmbounds", *map(str, args)],
        capture_output=True,
        timeout=timeout,
        env=env,
        **kw,
    )


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), stderr[-800:]
    assert "Traceback" not in stderr
    return lines[0]


# ------------------------------------------------------------ point 3: no input replaced
def test_a_big_statistics_file_never_loses_its_per_position_file(tmp_path):
    # >= 64 MiB (the old pre-scan skipped such a file): JSON whitespace pads it
    pp = tmp_path / "pp.csv"
    pp.write_text("0.001\n0.002\n")
    head = json.dumps({"T": 2, "kl_max": 0.01, "per_position": "pp.csv"}).encode()
    big = tmp_path / "big.json"
    with open(big, "wb") as fh:
        fh.write(head[:-1])
        fh.write(b" " * (64 << 20))
        fh.write(b"}")
    before = sha(pp)
    r = run("check", big, "-o", pp, "--force")
    assert r.exit_code == 2, r.output
    assert "is an input file" in one_error_line(r.stderr)
    assert sha(pp) == before


def _tb_dir(tmp_path: Path, others: int) -> tuple[Path, Path]:
    d = tmp_path / "runs"
    (d / "run").mkdir(parents=True)
    ev = write_tfevents(d / "run" / "events.out.tfevents.1700000000.host.csv", metric_rows("trl"))
    junk = d / "junk"
    junk.mkdir()
    for i in range(others):
        os.close(os.open(junk / f"f{i:05d}", os.O_CREAT | os.O_WRONLY, 0o644))
    return d, ev


def test_an_event_file_among_10000_files_is_never_replaced(tmp_path):
    d, ev = _tb_dir(tmp_path, 10_000)
    before = sha(ev)
    r = run("check", d, "--kl-max", "0.05", "-o", ev, "--force")
    assert r.exit_code == 2, r.output
    assert "input" in one_error_line(r.stderr)
    assert sha(ev) == before


def test_a_hard_link_to_a_file_read_is_caught_when_replacing(tmp_path):
    # Not foreseeable before reading (outside the directory, 10,000 files in it):
    # only the record of the files opened catches it, right before the rename.
    if not hasattr(os, "link"):
        pytest.skip("no hard links")
    d, ev = _tb_dir(tmp_path, 10_000)
    out = tmp_path / "out"
    out.mkdir()
    link = out / "steps.csv"
    os.link(ev, link)
    before = sha(ev)
    r = run("check", d, "--kl-max", "0.05", "-o", link, "--force")
    assert r.exit_code == 2, r.output
    line = one_error_line(r.stderr)
    assert "was read as an input of this command" in line and "events.out" in line
    assert sha(ev) == before and sha(link) == before
    assert not [f for f in out.iterdir() if f.name.startswith(".trmbounds-")]


def test_the_record_catches_what_the_early_check_missed(tmp_path, monkeypatch):
    # The early check is a forecast; make it see nothing: the per-position file that
    # the statistics file names is still protected by the record of the files opened.
    from trmbounds.cli import cmd_check

    pp = tmp_path / "pp.csv"
    pp.write_text("0.001\n0.002\n")
    s = tmp_path / "s.json"
    s.write_text(json.dumps({"T": 2, "kl_max": 0.01, "per_position": "pp.csv"}))
    monkeypatch.setattr(cmd_check, "_inputs", lambda log, outputs: [log])
    r = run("check", s, "-o", pp, "--force")
    assert r.exit_code == 2, r.output
    assert "pp.csv was read as an input of this command" in one_error_line(r.stderr)
    assert pp.read_text() == "0.001\n0.002\n"
    # and a file that was not read is replaced as asked
    other = tmp_path / "other.csv"
    other.write_text("old")
    assert run("check", s, "-o", other, "--force").exit_code == 0
    assert other.read_text().startswith("step,")


# ------------------------------------------------------------ point 5: crashes and hangs
def test_jsonl_nested_100000_deep_is_one_line_not_a_segfault(tmp_path):
    f = tmp_path / "deep.jsonl"
    f.write_bytes(b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n")
    r = cli("check", f)
    assert r.returncode == 2, (r.returncode, r.stderr[-500:])
    assert "line 1: JSON nested too deeply" in one_error_line(r.stderr.decode())


@pytest.mark.parametrize("odd", ["①", "²"])
def test_tensorboard_names_with_unicode_digits(tmp_path, odd):
    rows = metric_rows("trl")
    write_tfevents(tmp_path / f"events.out.tfevents.{odd}.host", rows[:2])
    write_tfevents(tmp_path / "events.out.tfevents.1700000000.host", rows[2:])
    r = run("check", tmp_path, "--kl-max", "0.05", "--json")
    assert r.exit_code == 0, r.output
    # the name without an ASCII creation time sorts last: its steps come after
    assert [s["step"] for s in json.loads(r.stdout)["steps"]] == [s["step"] for s in rows]


def test_a_directory_990_levels_deep(tmp_path):
    d = tmp_path / "runs"
    d.mkdir()
    write_tfevents(d / "events.out.tfevents.1.h", metric_rows("trl"))
    levels = [d]
    for _ in range(990):  # os.makedirs and shutil.rmtree recurse: one level at a time
        levels.append(levels[-1] / "a")
        levels[-1].mkdir()
    write_tfevents(levels[-1] / "events.out.tfevents.2.h", metric_rows("trl"))
    try:
        r = run("check", d, "--kl-max", "0.05")
        assert r.exit_code == 0, r.output
        assert "levels deep were not searched" in " ".join(r.stdout.split())
        # only a run below the depth searched: the error says so
        os.remove(d / "events.out.tfevents.1.h")
        r = run("check", d, "--kl-max", "0.05")
        assert r.exit_code == 2
        line = one_error_line(r.stderr)
        assert "no TensorBoard event files" in line and "levels deep were not searched" in line
    finally:
        os.remove(levels[-1] / "events.out.tfevents.2.h")
        for p in reversed(levels[1:]):
            p.rmdir()


@posix
def test_a_fifo_rank_file_is_named_not_opened(tmp_path):
    step = tmp_path / "token_exports" / "step_1"
    step.mkdir(parents=True)
    os.mkfifo(step / "rank_0.jsonl")
    r = cli("check", tmp_path / "token_exports", timeout=60)  # blocked for ever before
    assert r.returncode == 2
    line = one_error_line(r.stderr.decode())
    assert "rank_0.jsonl: not a regular file (a FIFO" in line


@posix
def test_a_fifo_log_without_writer_and_dev_zero(tmp_path):
    f = tmp_path / "log.jsonl"
    os.mkfifo(f)
    r = cli("check", f, timeout=60)  # read as a stream: no writer, an empty log
    assert r.returncode == 2 and "empty file" in one_error_line(r.stderr.decode())
    r = cli("check", "/dev/zero", "--format", "jsonl", timeout=60)
    assert r.returncode == 2
    assert "not a regular file (a character device)" in one_error_line(r.stderr.decode())
    r = run("check", "/dev/zero", "--format", "csv")
    assert r.exit_code == 2 and "character device" in one_error_line(r.stderr)


@posix
def test_a_metric_log_from_a_pipe_is_read(tmp_path):
    data = write_jsonl(tmp_path / "m.jsonl", metric_rows("verl")).read_bytes()
    r = cli("check", "/dev/stdin", "--format", "jsonl", "--kl-max", "1e-4", "--json", input=data)
    assert r.returncode == 0, r.stderr[-500:]
    assert [s["step"] for s in json.loads(r.stdout)["steps"]] == [1, 2, 3, 4]


@pytest.mark.parametrize(
    "args",
    [
        ("heatmap", "--kl-range", "1e-320", "1e-310"),
        ("heatmap", "--kl-range", "1e-10", "1e300"),
        ("curves", "--kl-max", "1e-4", "--adv-range", "1e308"),
        ("curves", "--kl-max", "1e-4", "--adv-range", "5e-324"),
    ],
)
def test_plot_ranges_beyond_what_can_be_drawn(tmp_path, args):
    r = run("plot", *args, "-o", tmp_path / "p.png")
    assert r.exit_code == 2, r.output
    assert "a plot takes values from 1e-100 to 1e+100" in one_error_line(r.stderr)
    assert not (tmp_path / "p.png").exists()


@pytest.mark.parametrize("encoding", ["cp1252", "ascii"])
def test_tables_on_a_legacy_console(tmp_path, encoding):
    m = write_jsonl(tmp_path / "m.jsonl", metric_rows("verl"))
    env = {"PYTHONIOENCODING": encoding}
    for args in (
        ("eval", "--T", "4096", "--kl-max", "1e-4"),
        ("solve", "--T", "4096", "--budget", "0.1"),
        ("check", m, "--kl-max", "1e-4", "-o", tmp_path / "r.csv", "--force"),
    ):
        r = cli(*args, env=env)
        err = r.stderr.decode(encoding)
        assert r.returncode == 0 and "Traceback" not in err, (args, err[-600:])
        out = r.stdout.decode(encoding)  # never raises: every byte is in the encoding
        if args[0] == "check":
            assert "delta = 0.0001 (assumed)" in out and "eps >=" in out
        if args[0] == "eval":
            # the stand-ins are measured by rich: every table row has the same width
            rows = [ln for ln in out.splitlines() if ln.startswith("|")]
            assert rows and len({len(ln) for ln in rows}) == 1, out


@posix
def test_a_closed_stdout_is_never_exit_code_1():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.Popen(
        [sys.executable, "-m", "trmbounds", "eval", "--T", "100", "--kl-max", "0.01"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    p.stdout.close()  # the reader went away before the first line (`| head -0`)
    err = p.stderr.read().decode()
    assert p.wait(timeout=60) in (0, 141), err
    assert "Traceback" not in err and "Exception ignored" not in err


@posix
@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc")
def test_ctrl_c_while_the_modules_load():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.Popen(
        [sys.executable, "-m", "trmbounds", "eval", "--T", "100", "--kl-max", "0.01"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    # wait until numpy's extension is being loaded (imported by trmbounds/__init__)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if "_multiarray_umath" in Path(f"/proc/{p.pid}/maps").read_text():
                break
        except OSError:
            break
        time.sleep(0.001)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, err.decode()[-600:]
    assert err.decode().strip() == "Interrupted (Ctrl-C); no partial output was left."
