"""``trmbounds check --follow``: a growing log followed as it is written.

A writer appends verl file-logger lines (one of them in two pieces), truncates the file
as a restarted verl run does (``open(path, "wb")``), and re-creates it, while ``check
--follow`` runs in a subprocess; every verdict line must arrive within a few seconds and
equal the record ``check --json`` gives that step in a file holding the same lines.
Every subprocess is killed after 20 s at most.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trmbounds.cli import app
from trmbounds.logs.check import Assumption, check_log

sys.path.insert(0, str(Path(__file__).parent))
from logfixtures import metric_rows  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WAIT = 5.0  # seconds a verdict may take to show up (the poll interval is 0.05 s)


def line(row: dict) -> bytes:
    return (json.dumps({"step": row["step"], "data": {k: v for k, v in row.items()
                                                      if k != "step"}}) + "\n").encode()  # fmt: skip


class Proc:
    """``trmbounds check --follow`` in a subprocess, its output lines in queues."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        self.p = subprocess.Popen(
            [sys.executable, "-m", "trmbounds", "check", "--follow", "--interval", "0.05", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT,
        )  # fmt: skip
        self.out: queue.Queue = queue.Queue()
        self.err: queue.Queue = queue.Queue()
        for stream, q in ((self.p.stdout, self.out), (self.p.stderr, self.err)):
            threading.Thread(target=self._pump, args=(stream, q), daemon=True).start()
        self.killer = threading.Timer(20.0, self.p.kill)
        self.killer.start()

    @staticmethod
    def _pump(stream, q) -> None:
        for raw in stream:
            q.put(raw.decode("utf-8").rstrip("\n"))

    def next(self, q=None, timeout: float = WAIT) -> str:
        try:
            return (q or self.out).get(timeout=timeout)
        except queue.Empty:
            self.close()
            raise AssertionError(f"no line within {timeout} s") from None

    def nothing(self, seconds: float) -> bool:
        time.sleep(seconds)
        return self.out.empty()

    def wait(self, timeout: float = WAIT) -> int:
        try:
            return self.p.wait(timeout)
        finally:
            self.close()

    def close(self) -> None:
        self.killer.cancel()
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def reference(tmp_path: Path, name: str, rows: list[dict], **kw) -> list[dict]:
    """check --json's records of a file holding ``rows`` (the independent reference)."""
    p = tmp_path / name
    p.write_bytes(b"".join(line(r) for r in rows))
    res = check_log(p, assumption=Assumption(kl_max=1e-3), length="64", **kw)
    return [res.record(i) for i in range(len(res))]


def test_follow_appends_partial_lines_truncation_recreation_and_fail_on(tmp_path):
    first = metric_rows("verl")  # steps 1-4
    later = [dict(r, step=r["step"] + 10) for r in metric_rows("verl")]
    later[-1]["training/rollout_probs_diff_max"] = 0.5  # > sqrt(1e-3 / 2): refuted
    for r in later:  # long lines: the file rewritten is longer than the file it replaces
        r.update({f"timing_s/stage_{i}": 1.0 + i for i in range(40)})
    ref1 = reference(tmp_path, "ref1.jsonl", first)
    ref2 = reference(tmp_path, "ref2.jsonl", later[:2])
    ref3 = reference(tmp_path, "ref3.jsonl", later)
    log = tmp_path / "metrics.jsonl"
    one, two = line(first[0]), line(first[1])
    log.write_bytes(one + two[:17])  # step 2 cut mid-line: not a step yet
    pr = Proc(str(log), "--kl-max", "1e-3", "--length", "64", "--json", "--fail-on", "refuted")
    try:
        assert json.loads(pr.next()) == ref1[0]
        assert pr.nothing(0.5)  # the partial line waits for its newline
        with open(log, "ab") as fh:
            fh.write(two[17:])
        assert json.loads(pr.next()) == ref1[1]
        with open(log, "ab") as fh:
            fh.write(line(first[2]) + line(first[3]))
        assert [json.loads(pr.next()) for _ in range(2)] == ref1[2:4]
        # a restarted verl run: its file logger opens the file with "wb" (same inode),
        # here written longer than before between two polls (only its head shows it)
        size = log.stat().st_size
        with open(log, "wb") as fh:
            fh.write(line(later[0]) + line(later[1]))
        assert log.stat().st_size > size
        assert "truncated or re-created" in pr.next(pr.err)
        assert [json.loads(pr.next()) for _ in range(2)] == ref2
        # re-created: a new file (another inode) longer than the old one
        new = tmp_path / "metrics.jsonl.new"
        new.write_bytes(b"".join(line(r) for r in later[:3]))
        os.replace(new, log)
        assert "truncated or re-created" in pr.next(pr.err)
        assert [json.loads(pr.next()) for _ in range(3)] == ref3[:3]
        with open(log, "ab") as fh:
            fh.write(line(later[3]))
        assert json.loads(pr.next()) == ref3[3] and ref3[3]["status"] == "refuted"
        assert pr.wait() == 1  # the first --fail-on state stops the watchdog
        assert "step 14 is refuted" in pr.next(pr.err)
    finally:
        pr.close()


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
def test_follow_csv_text_lines_and_ctrl_c(tmp_path):
    rows = metric_rows("verl")
    log = tmp_path / "export.csv"
    cols = sorted(k for k in rows[0] if k != "step")
    log.write_text("_step," + ",".join(cols) + "\n", encoding="utf-8")
    ref = check_log(
        _csv(tmp_path / "ref.csv", cols, rows), assumption=Assumption(kl_max=1e-3), length="1000"
    )
    pr = Proc(str(log), "--kl-max", "1e-3", "--length", "1000")
    try:
        assert pr.nothing(0.4)  # a header alone: no step yet
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(_csv_rows(cols, rows))
        got = [pr.next() for _ in range(4)]
        for i, text in enumerate(got):
            rec = ref.record(i)
            assert text.startswith(f"step {rec['step']}  T 1,000 (assumed)  B* ")
            assert f"({rec['basis']})  {rec['status']}" in text
            assert ("⚑ flagged" in text) == ("flagged" in rec)
        pr.p.send_signal(signal.SIGINT)
        assert pr.wait() == 130
        assert "stopped (Ctrl-C) after 4 verdict(s)" in pr.next(pr.err)
    finally:
        pr.close()


def _csv_rows(cols, rows) -> str:
    return "".join(f"{r['step']}," + ",".join(repr(r[c]) for c in cols) + "\n" for r in rows)


def _csv(p: Path, cols, rows) -> Path:
    p.write_text("_step," + ",".join(cols) + "\n" + _csv_rows(cols, rows), encoding="utf-8")
    return p


@pytest.mark.parametrize(
    "args, match",
    [
        (["-o", "out.csv"], "-o/--output not allowed"),
        (["--plot", "t.png"], "--plot not allowed"),
        (["--trm-max", "0.1"], "--trm-max"),
        (["EXTRA"], "give one LOG"),
    ],
)
def test_follow_refuses_options_it_cannot_honour(tmp_path, args, match):
    log = tmp_path / "m.jsonl"
    log.write_bytes(line(metric_rows("verl")[0]))
    extra = [str(log) if a == "EXTRA" else a for a in args]
    r = CliRunner().invoke(app, ["check", "--follow", str(log), *extra, "--kl-max", "1e-3"])
    assert r.exit_code == 2 and match in r.output, r.output
    assert "Traceback" not in r.output


def test_follow_refuses_a_parquet_log(tmp_path):
    log = tmp_path / "m.parquet"
    log.write_bytes(b"PAR1")
    r = CliRunner().invoke(app, ["check", "--follow", str(log), "--kl-max", "1e-3"])
    assert r.exit_code == 2 and "JSONL or CSV" in r.output


def test_follow_a_tensorboard_run_record_by_record(tmp_path):
    from logfixtures import write_tfevents

    rows = metric_rows("verl")  # 4 steps, 6 scalars each: one event per scalar
    full = write_tfevents(tmp_path / "full.tfevents", rows).read_bytes()
    ref_dir = tmp_path / "ref"
    ref_dir.mkdir()
    write_tfevents(ref_dir / "events.out.tfevents.1700000000.host", rows)
    res = check_log(ref_dir, assumption=Assumption(kl_max=1e-3), length="1000")
    ref = [res.record(i) for i in range(len(res))]
    run = tmp_path / "run"
    run.mkdir()
    live = run / "events.out.tfevents.1700000000.host"
    two = len(write_tfevents(tmp_path / "two.tfevents", rows[:2]).read_bytes())
    assert full[:two] == (tmp_path / "two.tfevents").read_bytes()
    cut = two + 30  # inside the first record of step 3
    live.write_bytes(full[:cut])
    pr = Proc(str(run), "--kl-max", "1e-3", "--length", "1000", "--json")
    try:
        got = [json.loads(pr.next()) for _ in range(2)]
        assert got == ref[:2]
        assert pr.nothing(0.4)  # step 3's record is half written
        with open(live, "ab") as fh:
            fh.write(full[cut:])
        assert [json.loads(pr.next()) for _ in range(2)] == ref[2:]
    finally:
        pr.close()
