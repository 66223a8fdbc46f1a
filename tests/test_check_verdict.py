"""``check`` ends on its verdict (issue 19, point 1), at 80 columns and in a pipe.

The verdict is the last block of the text output: the count of every state, the worst
step and what the bound rests on, the same as the JSON output says; ``-q`` prints only
it; the notes are grouped, the long ones behind ``-v``.
"""

from __future__ import annotations

import json

import pytest
from logfixtures import metric_rows, write_jsonl, write_token_dump
from rich.cells import cell_len
from typer.testing import CliRunner

from trmbounds.cli import app

runner = CliRunner()
PIPE = {"COLUMNS": "80", "TERM": "dumb"}


def check(*args):
    r = runner.invoke(app, ["check", *map(str, args)], env=PIPE)
    assert r.exit_code == 0, r.output
    return r.stdout


def verdict_block(out: str) -> list[str]:
    lines = out.rstrip("\n").splitlines()
    start = max(i for i, ln in enumerate(lines) if ln.startswith("verdict: "))
    return lines[start:]


@pytest.fixture(params=["verl", "tokens", "stats"])
def log(request, tmp_path):
    if request.param == "verl":
        return write_jsonl(tmp_path / "metrics.jsonl", metric_rows("verl"))
    if request.param == "tokens":
        return write_token_dump(tmp_path / "t.jsonl", [[-1.0, -2.0]] * 3, [[-1.1, -2.0]] * 3)
    p = tmp_path / "s.json"
    p.write_text('{"T": 100, "kl_max": 0.01, "status": {"kl_max": "empirical"}}')
    return p


def test_last_lines_are_the_verdict(log):
    out = check(log, "--kl-max", "1e-3")
    block = verdict_block(out)
    # everything after the verdict's first line is its continuation (indented)
    assert all(ln.startswith("  ") for ln in block[1:]), block
    assert all(cell_len(ln) <= 80 for ln in out.splitlines())
    text = " ".join(" ".join(block).split())
    d = json.loads(runner.invoke(app, ["check", str(log), "--kl-max", "1e-3", "--json"]).stdout)
    for state, n in d["summary"]["states"].items():
        if n:
            assert f"{state} {n:,}" in text
    assert f"({d['summary']['steps']:,} step" in text
    assert f"B* rests on: {d['summary']['basis']}" in text
    worst = d["summary"]["worst_steps"][0]
    assert f"worst step {worst}:" in text


def test_quiet_prints_only_the_verdict(log):
    full = check(log, "--kl-max", "1e-3")
    quiet = check(log, "--kl-max", "1e-3", "-q")
    assert quiet.splitlines() == verdict_block(full)
    assert quiet == check(log, "--kl-max", "1e-3", "--quiet")


def test_notes_grouped_and_the_long_ones_behind_verbose(tmp_path):
    log = write_jsonl(tmp_path / "metrics.jsonl", metric_rows("verl"))
    notes = json.loads(
        runner.invoke(app, ["check", str(log), "--kl-max", "1e-3", "--json"]).stdout
    )["summary"]["notes"]
    framework = [n for n in notes if n.startswith(("verl:", "verl's"))]
    assert framework  # the verl preset has caveats
    short = " ".join(check(log, "--kl-max", "1e-3").split())
    full = " ".join(check(log, "--kl-max", "1e-3", "-v").split())
    assert len(full) > len(short)
    for n in framework:
        assert " ".join(n.split()) not in short  # counted, not printed
        assert " ".join(n.split()) in full
    assert f"{len(framework)} caveat(s) of how verl logs these metrics (-v shows them)" in short
    for n in notes:  # -v prints every note in full
        assert " ".join(n.split()) in full
    assert short.count("validity (docs/theory.md):") == 1
