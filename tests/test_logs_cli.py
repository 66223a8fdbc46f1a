"""``trmbounds check`` as a user runs it (CliRunner, and the installed executable once)."""

from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
import sys

import pytest
from logfixtures import metric_rows, write_jsonl, write_token_dump
from typer.testing import CliRunner

from trmbounds.cli import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, ["check", *map(str, args)])


@pytest.fixture
def verl(tmp_path):
    return write_jsonl(tmp_path / "metrics.jsonl", metric_rows("verl"))


def test_help_has_examples():
    out = run("--help")
    assert out.exit_code == 0 and "Examples:" in out.stdout and "trmbounds check" in out.stdout


def test_rich_summary(verl):
    out = run(verl, "--kl-max", "1e-4")
    assert out.exit_code == 0, out.output
    text = " ".join(out.stdout.split())
    assert "preset verl" in text and "refuted 1" in text
    assert "lower_bound" in text and "estimate" in text and "proxy" in text
    assert "below the paper's 70% recommendation" in text


def test_json_object(verl):
    out = run(verl, "--kl-max", "1e-4", "--json")
    assert out.exit_code == 0
    data = json.loads(out.stdout)  # exactly one JSON object
    assert set(data) == {"steps", "summary"}
    s0 = data["steps"][0]
    assert {"step", "T", "unified", "status"} <= set(s0)
    # T is the longest response of the step: an empirical horizon, not the cap
    assert s0["step"] == 1 and s0["T"] == 100 and s0["basis"] == "empirical-horizon"
    assert s0["T_source"] == "empirical"
    assert s0["stats"]["kl_max"] == {"value": 1e-4, "status": "assumed"}
    assert [s["status"] for s in data["steps"]][-1] == "refuted"
    # 2e-2 > sqrt(1e-4 / 2) = 7.071e-3
    assert data["steps"][-1]["refuted_by"] == "tv_lower_bound 0.02 > sqrt(delta/2) = 0.007071"
    assert data["summary"]["states"]["refuted"] == 1
    assert data["summary"]["columns"]["tv_lb"] == "training/rollout_probs_diff_max"


def test_report_csv_json_and_force(tmp_path, verl):
    rep = tmp_path / "steps.csv"
    assert run(verl, "--kl-max", "1e-4", "--report", rep).exit_code == 0
    rows = list(csv.DictReader(rep.open()))
    assert [r["step"] for r in rows] == ["1", "2", "3", "4"]
    assert rows[3]["status"] == "refuted" and rows[0]["T"] == "100"
    assert float(rows[0]["kl_seq"]) == pytest.approx(5e-4)  # 1e-5 x 50
    assert rows[0]["kl_seq_status"] == "estimate"
    out = run(verl, "--kl-max", "1e-4", "--report", rep)
    assert out.exit_code == 2 and "exists; pass --force" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and out.stderr.startswith("Error: ")
    assert run(verl, "--report", rep, "--force").exit_code == 0
    rj = tmp_path / "steps.json"
    assert run(verl, "--kl-max", "1e-4", "--report", rj).exit_code == 0
    assert len(json.loads(rj.read_text())["steps"]) == 4
    out = run(verl, "--report", tmp_path / "steps.txt")
    assert out.exit_code == 2 and "use a .csv or .json" in out.stderr


def test_plot_written(tmp_path, verl):
    png = tmp_path / "t.png"
    out = run(verl, "--kl-max", "1e-4", "--plot", png)
    assert out.exit_code == 0 and png.stat().st_size > 1000
    assert run(verl, "--plot", png).exit_code == 2


def test_malformed_line_exit_2_and_skip_bad(tmp_path, verl):
    p = tmp_path / "bad.jsonl"
    p.write_text(verl.read_text() + '{"step": 5, "data": {oops}\n')
    out = run(p, "--kl-max", "1e-4")
    assert out.exit_code == 2
    assert f"Error: {p}: line 5: invalid JSON" in out.stderr
    out = run(p, "--kl-max", "1e-4", "--skip-bad")
    assert out.exit_code == 0 and "skipped 1 malformed record(s)" in out.stdout
    out = run(p, "--kl-max", "1e-4", "--skip-bad", "--json")
    assert json.loads(out.stdout)["summary"]["bad_records"]["count"] == 1


def test_usage_errors_exit_2(tmp_path, verl):
    for args, msg in [
        ((tmp_path / "none.jsonl",), "log file not found"),
        ((verl, "--map", "T_max=nope"), "column 'nope' (--map T_max=nope) not found"),
        ((verl, "--map", "bogus"), "expected QUANTITY=COLUMN"),
        ((verl, "--trm-max", "0.1"), "applies to per-token dumps only"),
        ((verl, "--preset", "slime"), "--length MAX_NEW_TOKENS (the generation cap"),
        ((verl, "--adv-range", "1", "--reward-range", "0", "1"), "not both"),
    ]:
        out = run(*args)
        assert out.exit_code == 2, args
        assert msg in out.stderr and out.stderr.startswith("Error: "), (args, out.stderr)


def test_token_dump_via_cli(tmp_path):
    L = math.log
    p = write_token_dump(tmp_path / "tok.parquet", [[L(0.5), L(0.25)], [L(0.5)]],
                         [[L(0.4), L(0.5)], [L(0.5)]])  # fmt: skip
    out = run(p, "--kl-max", "0.1", "--trm-max", "0.3", "--json")
    assert out.exit_code == 0, out.output
    d = json.loads(out.stdout)
    st = d["steps"][0]["stats"]
    # TRM-Max 0.3: A's max k2 = (log 2)^2/2 = 0.240 <= 0.3 kept; B kept
    assert st["accept_trm_max"]["value"] == 1.0
    assert st["tv_lower_bound"]["value"] == pytest.approx(0.25)
    assert d["steps"][0]["status"] == "refuted"  # 0.25 > sqrt(0.1/2) = 0.2236
    out = run(p)
    assert out.exit_code == 0 and "acceptance by length" in out.stdout


def test_installed_executable(tmp_path, verl):
    import sys
    from pathlib import Path

    beside = Path(sys.executable).parent / "trmbounds"  # the venv's own, then PATH
    exe = str(beside) if beside.exists() else shutil.which("trmbounds")
    if exe is None:
        pytest.skip("trmbounds executable not installed")
    res = subprocess.run([exe, "check", str(verl), "--tv-max", "0.01", "--json"],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert len(json.loads(res.stdout)["steps"]) == 4


def test_logs_package_does_not_import_pyarrow():
    code = (
        "import sys, trmbounds.logs.check, trmbounds.logs.tokens, trmbounds.logs.timeline;"
        "bad = [m for m in ('pyarrow', 'matplotlib', 'typer') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_plot_extension_is_checked_first(tmp_path, verl):
    out = run(verl, "--kl-max", "1e-4", "--plot", tmp_path / "out.xyz")
    assert out.exit_code == 2
    assert "Error: --plot" in out.stderr and "use a .png, .svg, .pdf file name" in out.stderr
    assert "Traceback" not in out.output and not (tmp_path / "out.xyz").exists()


def test_big_integers_and_huge_length_are_not_tracebacks(tmp_path):
    p = tmp_path / "big.jsonl"
    p.write_text(
        '{"step": 1, "inference_logprobs": [-1, -2], "trainer_logprobs": [-1, -2], '
        '"loss_mask": [1, 1152921504606846977]}\n'
    )
    out = run(p, "--kl-max", "0.01")
    assert out.exit_code == 2 and "expected 0 or 1" in out.stderr
    assert "Traceback" not in out.output
    t = write_token_dump(tmp_path / "t.jsonl", [[-0.5, -0.6]], [[-0.4, -0.6]])
    out = run(t, "--kl-max", "0.01", "--length", "1e20", "--json")
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["steps"][0]["T"] == 10**20


@pytest.mark.filterwarnings("error")
def test_overflowing_estimate_renders_without_nan(tmp_path):
    p = tmp_path / "ovf.jsonl"
    p.write_text('{"step": 1, "inference_logprobs": [-800.0], "trainer_logprobs": [0.0]}\n')
    out = run(p, "--kl-max", "0.01")
    assert out.exit_code == 0 and "refuted" in out.stdout
    assert "nan" not in out.stdout and "RuntimeWarning" not in out.stderr


def test_timeline_plot_reads_as_a_figure(tmp_path):
    from logfixtures import STEPS

    from trmbounds.logs.check import STATES, Assumption, check_log
    from trmbounds.logs.timeline import plot_timeline

    extra = {"actor/pg_gain": [0.5, 0.5, 0.5, 0.5]}
    log = write_jsonl(tmp_path / "m.jsonl", metric_rows("verl", extra))
    r = check_log(log, assumption=Assumption(kl_max=1e-4), maps=["surrogate=actor/pg_gain"])
    ax = plot_timeline(r)
    fig = ax.figure
    fig.draw_without_rendering()
    # integer step ticks on a short run, inside the axes
    lo, hi = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
    assert ticks and all(float(t).is_integer() for t in ticks)
    assert lo < min(STEPS) and max(STEPS) < hi
    # no twin y-axis: every panel has its own place, one above the other
    boxes = [a.get_position() for a in fig.axes]
    assert len(boxes) == 3  # bound, states, acceptance
    assert all(b1.y0 >= b2.y1 - 1e-9 for b1, b2 in zip(boxes, boxes[1:]))
    # nothing drawn on top of the bound lines (the states are a strip of their own)
    assert not [c for c in ax.collections if c.__class__.__name__ == "PathCollection"]
    labels = [ln.get_label() for ln in ax.get_lines()]
    assert any(lab.startswith("surrogate estimate") for lab in labels)
    # every state is in the legend, with its count
    legend = fig.axes[1].get_legend()
    texts = [t.get_text() for t in legend.get_texts()]
    counts = r.counts()
    assert texts[: len(STATES)] == [f"{s} ({counts[s]:,})" for s in STATES]
    assert all(t.startswith("flagged") for t in texts[len(STATES) :])


def test_timeline_written_by_check(tmp_path, verl):
    from matplotlib.image import imread

    out = tmp_path / "t.png"
    r = run(verl, "--kl-max", "1e-4", "--plot", out)
    assert r.exit_code == 0
    h, w = imread(out).shape[:2]
    assert (w, h) == (1350, 825)  # 9 x 5.5 in at 150 dpi, as plot curves|heatmap


def test_timeline_of_one_step_has_an_integer_tick(tmp_path):
    from trmbounds.logs.check import Assumption, check_log
    from trmbounds.logs.timeline import plot_timeline

    p = tmp_path / "s.json"
    p.write_text('{"T": 100, "kl_max": 0.01, "status": {"kl_max": "empirical"}}')
    ax = plot_timeline(check_log(p, assumption=Assumption(kl_max=0.02)))
    ax.figure.draw_without_rendering()
    for panel in ax.figure.axes:
        lo, hi = panel.get_xlim()
        assert [t for t in panel.get_xticks() if lo <= t <= hi] == [0.0]
    assert all(len(ln.get_xdata()) == 1 and ln.get_marker() == "o" for ln in ax.get_lines()[:2])


def test_timeline_of_one_step_shows_its_acceptance(tmp_path):
    """One step of a per-token dump with --trm-max: the acceptance rate is a dot."""

    from trmbounds.logs.check import Assumption, check_log
    from trmbounds.logs.timeline import plot_timeline

    p = write_token_dump(tmp_path / "t.jsonl", [[-1.0, -2.0]] * 3, [[-1.1, -2.0]] * 3)
    res = check_log(p, assumption=Assumption(kl_max=0.05), trm_max=0.05)
    ax = plot_timeline(res)
    acc = ax.figure.axes[-1]
    lines = [ln for ln in acc.get_lines() if ln.get_label() == "acceptance rate"]
    assert len(lines) == 1 and lines[0].get_marker() == "o"


# ------------------------------------------- a directory holding several kinds of logs
def _wide(*args):  # no line wrapping inside long temporary paths
    out = runner.invoke(app, ["check", *map(str, args)], env={"COLUMNS": "4000"})
    return out, " ".join(out.stdout.split())


def _examples(tmp_path):
    out = runner.invoke(app, ["examples", str(tmp_path / "ex")])
    assert out.exit_code == 0, out.output
    return tmp_path / "ex"


def test_check_examples_directory_lists_every_kind(tmp_path):
    ex = _examples(tmp_path)
    out = run(ex, "--kl-max", "0.05")
    assert out.exit_code == 2, out.output
    lines = [x for x in out.output.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), out.output
    for item in (
        "metrics.jsonl (per-step metric log)",
        "verl/rs_token_k2_seq_max_k2.jsonl (per-step metric log)",
        "tokens.jsonl (per-token dump)",
        "measured.json (statistics file)",
        "trl/trainer_state.json (HF Trainer log history)",
        "pass the one to check",
    ):
        assert item in lines[0], lines[0]
    assert "prompts.jsonl" not in lines[0]  # prompts, not a log


def test_check_directory_with_one_log_reads_it_and_says_so(tmp_path):
    ex = _examples(tmp_path)
    out, text = _wide(ex / "verl", "--kl-max", "0.05")
    assert out.exit_code == 0, out.output
    assert "rs_token_k2_seq_max_k2.jsonl read: the only log in" in text
    only = tmp_path / "only"
    only.mkdir()
    shutil.copy(ex / "tokens.jsonl", only)
    shutil.copy(ex / "prompts.jsonl", only)
    out = run(only, "--kl-max", "0.05")
    assert out.exit_code == 2 and "not a per-step log" in out.output, out.output
    assert "trmbounds check" in out.output and "tokens.jsonl" in out.output


def test_check_output_directory_keeps_trainer_state_and_names_the_rest(tmp_path):
    ex = _examples(tmp_path)
    shutil.copy(ex / "metrics.jsonl", ex / "trl")
    out, text = _wide(ex / "trl", "--kl-max", "0.05")
    assert out.exit_code == 0, out.output
    assert "trainer_state.json read: the Trainer's whole log history" in text
    assert "holds other logs, NOT read: metrics.jsonl (per-step metric log)" in text
    # --format tensorboard keeps the TensorBoard reading of a directory, unasked
    out = run(ex, "--kl-max", "0.05", "--format", "tensorboard")
    assert out.exit_code == 0, out.output


def test_report_csv_plain_headers_and_no_float_noise(tmp_path):
    """Issue 19: header names without spaces or brackets, the status in its own column;
    an acceptance logged as 1 - 0.41 reads 0.59 (not 0.5900000000000001)."""
    rows = [{"step": 1, "response_length/max": 64,
             "rollout_corr/rollout_rs_seq_masked_fraction": 0.41}]  # fmt: skip
    log = write_jsonl(tmp_path / "m.jsonl", rows)
    rep = tmp_path / "r.csv"
    r = run(log, "--kl-max", "1e-4", "--preset", "verl", "-o", rep)
    assert r.exit_code == 0, r.output
    head = rep.read_text().splitlines()[0].split(",")
    assert all(" " not in h and "[" not in h for h in head), head
    row = next(csv.DictReader(rep.open()))
    assert row["acceptance"] == "0.59" and row["acceptance_status"] == "logged"


def test_ci_cell_never_reads_plus_minus_inf():
    """A confidence interval open on one side has no ± width: it is said as a bound."""
    from types import SimpleNamespace

    import numpy as np

    from trmbounds.cli.cmd_check import _ci

    inf = float("inf")
    s = SimpleNamespace(values=np.array([0.5, 0.5, 0.5]),
                        ci=(np.array([0.25, 0.25, -inf]), np.array([0.75, inf, inf])))  # fmt: skip
    assert _ci(s, 0) == "0.5 ± 0.25"
    assert _ci(s, 1) == "0.5 (CI ≥ 0.25)"
    assert _ci(s, 2) == "0.5"
    assert not any("inf" in _ci(s, i) for i in range(3))


def test_trm_max_says_it_only_computes_acceptance(tmp_path, verl):
    """Issue 19, point 3: --trm-max is not the bound's assumption; help and output say so."""
    help_text = " ".join(run("--help").stdout.split())
    i = help_text.index("--trm-max")
    assert "--kl-max" in help_text[i : i + 250] and "accept" in help_text[i : i + 250]
    dump = write_token_dump(tmp_path / "t.jsonl", [[-1.0, -2.0]] * 3, [[-1.1, -2.0]] * 3)
    r = run(dump, "--trm-max", "0.05")
    assert r.exit_code == 0, r.output
    line = " ".join(r.stdout.split("horizon T")[0].split())
    assert "assumption: none" in line and "--trm-max 0.05 only computes" in line
    assert "--kl-max" in line
    r = run(verl, "--trm-max", "0.05")  # a metric log: refused, and pointed to --kl-max
    assert r.exit_code == 2 and "--kl-max" in r.stderr


def test_length_below_the_responses_is_said_on_the_horizon_line(tmp_path):
    """Issue 19, point 4: --length 1 below 2-token responses: the horizon line says why."""
    dump = write_token_dump(tmp_path / "t.jsonl", [[-1.0, -2.0]] * 3, [[-1.1, -2.0]] * 3)
    r = run(dump, "--kl-max", "0.05", "--length", "1")
    assert r.exit_code == 0, r.output
    head = " ".join(r.stdout.split("B* rests on")[0].split())
    assert "horizon T:" in head and "--length 1 is below a response" in head
