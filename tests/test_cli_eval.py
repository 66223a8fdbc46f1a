"""`trmbounds eval` as a user runs it."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from trmbounds import __version__
from trmbounds.cli import app

runner = CliRunner()
COL_B = [
    "--T",
    "4096",
    "--kl-max",
    "1e-4",
    "--tv-max",
    "5e-3",
    "--kl-seq",
    "0.01",
    "--tv-seq",
    "0.05",
]


def run(*args):
    return runner.invoke(app, list(args))


def run_json(*args):
    r = run(*args, "--json")
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_paper_column_b_table():
    r = run("eval", *COL_B)
    assert r.exit_code == 0
    out = r.stdout
    assert "Mixed TV" in out and "4.096" in out and "tightest" in out
    # Every bound family is listed, with the derived input and validity conditions.
    for label in (
        "Classical (TV)",
        "Pinsker-Marginal KL",
        "Coupling",
        "Adaptive hybrid",
        "Unified B*",
    ):
        assert label in out
    assert "derived  D̄_t" in out and "uniform" in out
    assert "ALL reachable contexts" in out and "assumed" in out


def test_paper_column_b_json():
    d = run_json("eval", *COL_B)
    # Source: the paper's table, column B (SPEC §3).
    assert d["tightest"] == "mix_tv" and d["bounds"]["unified"] == pytest.approx(4.096)
    assert d["bounds"]["pm_kl"] == pytest.approx(34.9461, abs=5e-5)
    assert d["bounds"]["pm_tv"] == pytest.approx(24.7106, abs=5e-5)
    assert d["bounds"]["coupling"] == pytest.approx(79.9, abs=0.05)
    assert d["bounds"]["classical_tv"] == pytest.approx(839, abs=0.5)
    assert d["bounds"]["mix_kl"] == pytest.approx(8.192)
    assert d["constants"] == "paper" and d["vacuous"] is True
    assert d["inputs"]["T"] == 4096 and d["inputs"]["status"]["kl_max"] == "assumed"


def test_paper_column_a_and_large_divergence_json():
    eps = repr(math.sqrt(1e-4 / 2))
    d = run_json("eval", "--T", "4096", "--kl-max", "1e-4", "--tv-max", eps, "--kl-seq", "0.01")
    assert d["bounds"]["classical_tv"] == pytest.approx(1677, abs=0.5)
    assert d["bounds"]["coupling"] == pytest.approx(113.8, abs=0.05)
    assert d["bounds"]["unified"] <= 8.2
    big = run_json("eval", "--T", "4096", "--kl-max", "1", "--kl-seq", "1")
    assert big["bounds"]["classical_kl"] == pytest.approx(1.68e7, rel=3e-3)
    assert big["bounds"]["linear"] == pytest.approx(11585, abs=0.5)
    assert big["bounds"]["pm_kl"] == pytest.approx(11582, abs=0.5)
    assert big["bounds"]["mix_kl"] == pytest.approx(8192)


def test_only_kl_max_derives_the_rest():
    d = run_json("eval", "--T", "8192", "--kl-max", "0.01")
    assert set(d["derived"]) == {"tv_max", "kl_seq", "tv_seq", "per_position"}
    assert d["derived"]["tv_max"]["value"] == pytest.approx(math.sqrt(0.005))
    assert all(v is not None for v in d["bounds"].values())


def test_only_tv_max_gives_null_kl_bounds():
    d = run_json("eval", "--T", "100", "--tv-max", "0.001")
    for k in ("classical_kl", "pm_kl", "pm_tv", "mix_kl", "adaptive_kl"):
        assert d["bounds"][k] is None
    assert d["bounds"]["coupling"] == pytest.approx(2 * 100 * 99 * 1e-6)


def test_sharp_constants_and_ranges():
    paper = run_json("eval", *COL_B)
    sharp = run_json("eval", *COL_B, "--constants", "sharp")
    assert sharp["constants"] == "sharp"
    assert sharp["bounds"]["pm_kl"] == pytest.approx(paper["bounds"]["pm_kl"] / 2)
    assert sharp["bounds"]["mix_tv"] == pytest.approx(2 * 4095 * 5e-3 * 0.05)
    a = run_json("eval", *COL_B, "--adv-range", "2")
    assert a["bounds"]["unified"] == pytest.approx(2 * 4.096)
    rr = run_json("eval", *COL_B, "--reward-range", "-1", "1")
    assert rr["bounds"]["unified"] == pytest.approx(2 * 4.096)
    assert rr["inputs"]["reward_range"] == [-1.0, 1.0]


def test_per_position_file(tmp_path):
    # All divergence at the last position: every later-token weight is 0, so Adaptive = 0.
    T = 64
    dbar = np.zeros(T)
    dbar[-1] = 0.005
    f = tmp_path / "dbar.npy"
    np.save(f, dbar)
    d = run_json(
        "eval", "--T", str(T), "--kl-max", "1e-4", "--tv-max", "5e-3", "--per-position", str(f)
    )
    assert d["bounds"]["adaptive"] == 0.0 and d["bounds"]["unified"] == 0.0
    assert d["tightest"] == "adaptive"
    # One position t = 1 with Dbar = eps: weight min(1, (T-1) eps, sqrt((T-1) delta/2)).
    dbar = np.zeros(T)
    dbar[0] = 0.005
    np.save(f, dbar)
    d = run_json(
        "eval", "--T", str(T), "--kl-max", "1e-4", "--tv-max", "5e-3", "--per-position", str(f)
    )
    w = min(1, 63 * 5e-3, math.sqrt(63 * 1e-4 / 2))
    assert d["bounds"]["adaptive"] == pytest.approx(4 * 0.005 * w)


def test_stats_file_round_trip(tmp_path):
    d = run_json("eval", *COL_B)
    f = tmp_path / "stats.json"
    f.write_text(json.dumps(d["inputs"]))
    d2 = run_json("eval", "--stats", str(f))
    assert d2["bounds"] == d["bounds"]
    # Command-line values override the file.
    d3 = run_json("eval", "--stats", str(f), "--T", "2048", "--kl-seq", "0.005")
    assert d3["inputs"]["T"] == 2048
    assert d3["bounds"]["mix_tv"] == pytest.approx(4 * 2048 * 5e-3 * 0.05)


BAD = [
    (["--T", "0", "--kl-max", "0.1"], "T must be a positive integer"),
    (["--T", "abc", "--kl-max", "0.1"], "--T"),
    (["--T", "10", "--kl-max", "-1"], "--kl-max must be non-negative"),
    (["--T", "10", "--kl-max", "nan"], "--kl-max must be finite"),
    (["--T", "10", "--kl-max", "inf"], "--kl-max must be finite"),
    (["--T", "10", "--tv-max", "2"], "exceeds 1"),
    (["--T", "10", "--kl-max", "1e-4", "--tv-max", "0.01"], "Pinsker"),
    (["--T", "10", "--kl-max", "1e-4", "--kl-seq", "1"], "T*--kl-max"),
    (["--T", "10"], "--kl-max or --tv-max"),
    (["--kl-max", "0.1"], "missing --T"),
    (["--T", "10", "--kl-max", "0.1", "--adv-range", "-1"], "--adv-range must be positive"),
    (["--T", "10", "--kl-max", "0.1", "--adv-range", "0"], "--adv-range must be positive"),
    (["--T", "10", "--kl-max", "0.1", "--adv-range", "1", "--reward-range", "0", "1"], "not both"),
    (["--T", "10", "--kl-max", "0.1", "--constants", "loose"], "--constants"),
    (["--T", "10", "--kl-max", "0.1", "--per-position", "missing.npy"], "not found"),
    (["--stats", "missing.json"], "not found"),
    (["--T", "10", "--kl-max", "0.1", "--bogus"], "No such option"),
]


@pytest.mark.parametrize("args, message", BAD)
def test_bad_input_is_one_line_exit_2(args, message):
    r = run("eval", *args)
    assert r.exit_code == 2, r.output
    err = r.stderr
    assert err.startswith("Error: ") and err.count("\n") == 1, err
    assert message in err
    assert "Traceback" not in r.output


def test_bad_per_position_file(tmp_path):
    f = tmp_path / "d.csv"
    f.write_text("0.001\n0.002\n0.001\n0.002\n")
    r = run("eval", "--T", "3", "--kl-max", "0.1", "--per-position", str(f))
    assert r.exit_code == 2 and "length 4, more than T = 3" in r.stderr
    f.write_text("0.001\nx\n0.1\n")
    r = run("eval", "--T", "3", "--kl-max", "0.1", "--per-position", str(f))
    assert r.exit_code == 2 and "line 2" in r.stderr


def test_input_file_is_not_modified(tmp_path):
    f = tmp_path / "stats.json"
    f.write_text(json.dumps({"T": 100, "kl_max": 0.001}))
    before = f.read_bytes(), f.stat().st_mtime_ns
    run_json("eval", "--stats", str(f))
    assert (f.read_bytes(), f.stat().st_mtime_ns) == before


def test_version_and_help():
    r = run("--version")
    assert r.exit_code == 0 and r.stdout.strip() == f"trmbounds {__version__}"
    r = run("--help")
    assert r.exit_code == 0 and "eval" in r.stdout
    r = run()
    assert r.exit_code == 0 and "Usage" in r.stdout


def _commands(cmd, ctx=None, prefix=()):
    import typer

    if ctx is None:
        cmd = typer.main.get_command(cmd)
        ctx = cmd.make_context("trmbounds", [], resilient_parsing=True)
    for name in cmd.list_commands(ctx):
        sub = cmd.get_command(ctx, name)
        if hasattr(sub, "list_commands"):
            yield from _commands(sub, ctx, (*prefix, name))
        else:
            yield (*prefix, name)


def test_every_command_has_help_ending_with_examples():
    cmds = list(_commands(app))
    assert ("eval",) in cmds
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for path in cmds:
        r = run(*path, "--help")
        assert r.exit_code == 0, path
        tail = r.stdout[r.stdout.rfind("Examples") :]
        assert "Examples" in r.stdout and f"trmbounds {' '.join(path)}" in tail, path
        assert f"trmbounds {' '.join(path)}" in readme, f"{path} not documented in README"


def _installed_executable():
    exe = Path(sys.executable).with_name("trmbounds")
    return str(exe) if exe.exists() else shutil.which("trmbounds")


@pytest.mark.skipif(
    _installed_executable() is None, reason="trmbounds is not installed as a script"
)
def test_installed_executable():
    exe = _installed_executable()
    p = subprocess.run([exe, "eval", *COL_B, "--json"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["bounds"]["unified"] == pytest.approx(4.096)
    p = subprocess.run(
        [exe, "eval", "--T", "-1", "--kl-max", "0.1"], capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 2 and p.stderr.startswith("Error: ") and "Traceback" not in p.stderr
    assert p.stderr.count("\n") == 1


def test_python_dash_m():
    p = subprocess.run(
        [sys.executable, "-m", "trmbounds", "eval", "--T", "10", "--kl-max", "0.1", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "100"},
    )
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["inputs"]["T"] == 10


def test_check_output_refuses_directories_and_missing_parents(tmp_path):
    from trmbounds.cli._common import check_output
    from trmbounds.errors import TrmboundsError

    with pytest.raises(TrmboundsError, match="is a directory"):
        check_output(tmp_path, force=True)
    with pytest.raises(TrmboundsError, match="does not exist"):
        check_output(tmp_path / "no" / "x.png", force=False)
    f = tmp_path / "x.png"
    f.write_text("")
    with pytest.raises(TrmboundsError, match="pass --force"):
        check_output(f, force=False)
    assert check_output(f, force=True) == f
