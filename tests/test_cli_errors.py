"""Errors speak in flags and name the right cause (issue 19, point 2), through the CLI.

Each case is a mistake a user makes; the message must be one ``Error:`` line naming
the flag as typed (not the library's parameter name) and what is actually wrong.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from trmbounds.cli import app

runner = CliRunner()


def fail(*args) -> str:
    r = runner.invoke(app, [str(a) for a in args])
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.stderr
    return lines[0]


@pytest.mark.parametrize(
    "args, named, internal",
    [
        (["eval", "--T", "10", "--kl-max", "-1"], "--kl-max", "kl_max"),
        (["check", "m.jsonl", "--kl-max", "-1"], "--kl-max", "kl_max"),
        (["solve", "--kl-max", "-1", "--budget", "0.1"], "--kl-max", "kl_max"),
        (["plot", "curves", "--kl-max", "-1", "-o", "x.png"], "--kl-max", "kl_max"),
        (["plot", "curves", "--kl-max", "1e-4", "--mark-T", "10", "-o", "x.png"], "--mark-T",
         "mark_T"),
        (["plot", "heatmap", "--kl-range", "1e-2", "1e-4", "-o", "x.png"], "--kl-range",
         "kl_range"),
    ],
)  # fmt: skip
def test_library_names_become_flags(tmp_path, monkeypatch, args, named, internal):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.jsonl").write_text('{"step": 1, "data": {"response_length/max": 8}}\n')
    msg = fail(*args)
    assert named in msg
    assert f"{internal} " not in msg.replace(named, "")  # the internal name is gone
    if named == "--mark-T":  # and what limits it
        assert "--T-min" in msg and "--T-max" in msg


def test_eval_stats_directory(tmp_path):
    msg = fail("eval", "--stats", tmp_path)
    assert "--stats" in msg and "is a directory" in msg and "not found" not in msg


@pytest.mark.parametrize("name", ["metrics.jsonl", "metrics.json"])
def test_eval_stats_metric_log_points_to_check(tmp_path, name):
    log = tmp_path / name
    rows = [{"step": s, "data": {"response_length/max": 8}} for s in (1, 2)]
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    msg = fail("eval", "--stats", log)
    assert "metric log" in msg and "trmbounds check" in msg and "Extra data" not in msg


def test_plot_output_directory(tmp_path):
    msg = fail("plot", "curves", "--kl-max", "1e-4", "-o", tmp_path)
    assert "-o/--output" in msg and "is a directory" in msg and "format" not in msg


def test_check_directory_without_event_files_names_what_it_holds(tmp_path):
    d = tmp_path / "verl"
    d.mkdir()
    (d / "run.jsonl").write_text('{"step": 1, "data": {"response_length/max": 8}}\n')
    # the only log of a directory is read, and the output says which (never a guess)
    r = runner.invoke(app, ["check", str(d), "--kl-max", "1e-4"], env={"COLUMNS": "4000"})
    assert r.exit_code == 0, r.output
    assert "run.jsonl read: the only log in" in r.output
    # a directory with nothing to read says what it holds
    e = tmp_path / "empty"
    e.mkdir()
    (e / "notes.txt").write_text("hello\n")
    msg = fail("check", e, "--kl-max", "1e-4")
    assert "TensorBoard" in msg
