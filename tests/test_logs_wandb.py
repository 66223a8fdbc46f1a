"""wandb logs as users hold them: a chart's CSV export and an offline run (``check``).

The chart-export layout (``Step``, ``<run name> - <metric>``, ``__MIN``/``__MAX``
companions) is the one wandb's web app writes (wandb/wandb#5349, #6474; docs/logs.md).
The offline run in tests/fixtures/wandb was written by the wandb package itself
(tests/fixtures/make_wandb.py); the values below are the ones that script logged.
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trmbounds.cli import app
from trmbounds.logs.check import check_log

runner = CliRunner()
FIX = Path(__file__).parent / "fixtures" / "wandb"

#: make_wandb.py's STEPS: (step, rollout_corr/k3_kl, rollout_corr/rollout_rs_token_k2_max,
#: training/rollout_probs_diff_max, response_length/max)
LOGGED = [
    (1, 0.0009765625, 0.03125, 0.015625, 12),
    (2, 0.001953125, 0.0625, 0.03125, 17),
    (3, 0.00390625, 0.125, 0.0625, 24),
    (4, 0.0078125, 0.25, 0.125, 9),
    (5, 0.015625, 0.5, 0.25, 31),
]
METRICS = (
    "rollout_corr/rollout_rs_token_k2_max",
    "training/rollout_probs_diff_max",
    "response_length/max",
)


def run(*args):
    return runner.invoke(app, ["check", *map(str, args)])


def one_line_error(out, *needles):
    assert out.exit_code == 2, out.output
    lines = [x for x in out.output.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), out.output
    text = lines[0]
    for n in needles:
        assert n in text, text
    return text


def chart_csv(path: Path, runs: dict[str, list[tuple]], spread: float = 0.0) -> Path:
    """A wandb chart export: Step, then per run and metric the value, __MIN, __MAX."""
    head = ["Step"]
    for name in runs:
        for m in METRICS:
            head += [f"{name} - {m}", f"{name} - {m}__MIN", f"{name} - {m}__MAX"]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(head)
        for i, (step, *_rest) in enumerate(LOGGED):
            row = [step]
            for rows in runs.values():
                for v in rows[i][2:]:
                    row += [repr(v), repr(v - spread), repr(v + spread)]
            w.writerow(row)
    return path


def steps_of(out) -> list[dict]:
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)["steps"]


def scaled(k: float) -> list[tuple]:
    return [(s, a * k, b * k, c * k, t) for s, a, b, c, t in LOGGED]


# ------------------------------------------------------------------ chart export
def test_chart_export_one_run_reads_without_map(tmp_path):
    f = chart_csv(tmp_path / "wandb_export.csv", {"grpo-qwen-7": LOGGED})
    steps = steps_of(run(f, "--kl-max", "0.05", "--json", "--preset", "verl"))
    assert [s["step"] for s in steps] == [r[0] for r in LOGGED]
    assert [s["T"] for s in steps] == [r[4] for r in LOGGED]
    assert [s["stats"]["kl_max_proxy"]["value"] for s in steps] == [r[2] for r in LOGGED]
    assert [s["stats"]["tv_lower_bound"]["value"] for s in steps] == [r[3] for r in LOGGED]
    text = " ".join(run(f, "--kl-max", "0.05").stdout.split())
    assert "a wandb chart export, run 'grpo-qwen-7' read" in text
    assert "__MIN/__MAX companions are not read" in text
    assert "WARNING" not in text  # __MIN == __MAX: one logged step per row


def test_chart_export_auto_preset(tmp_path):
    f = chart_csv(tmp_path / "e.csv", {"r": LOGGED})
    out = run(f, "--kl-max", "0.05")
    assert out.exit_code == 0 and "preset verl" in out.stdout, out.output


def test_chart_export_bucketed_rows_warn(tmp_path):
    f = chart_csv(tmp_path / "e.csv", {"r": LOGGED}, spread=0.001)
    text = " ".join(run(f, "--kl-max", "0.05").stdout.split())
    # 5 rows x 3 metrics with __MIN < __MAX
    assert "WARNING" in text and "15 value(s) have __MIN < __MAX" in text


def test_chart_export_several_runs_names_them(tmp_path):
    f = chart_csv(tmp_path / "e.csv", {"run a - lr 1e-6": LOGGED, "run-b": scaled(2)})
    one_line_error(
        run(f, "--kl-max", "0.05"), "2 runs", "'run a - lr 1e-6'", "'run-b'", "--run NAME"
    )
    steps = steps_of(run(f, "--kl-max", "0.05", "--json", "--run", "run-b"))
    assert [s["stats"]["kl_max_proxy"]["value"] for s in steps] == [r[2] * 2 for r in LOGGED]
    steps = steps_of(run(f, "--kl-max", "0.05", "--json", "--run", "run a - lr 1e-6"))
    assert [s["stats"]["kl_max_proxy"]["value"] for s in steps] == [r[2] for r in LOGGED]
    one_line_error(run(f, "--kl-max", "0.05", "--run", "nope"), "no run 'nope'", "'run-b'")


def test_run_option_needs_a_chart_export(tmp_path):
    f = tmp_path / "m.csv"
    f.write_text("_step,rollout_corr/k3_kl\n1,0.001\n", encoding="utf-8")
    one_line_error(run(f, "--kl-max", "0.05", "--run", "x"), "--run x", "not a wandb chart export")


# ------------------------------------------------------------------- offline run
def test_offline_run_values_equal_what_wandb_logged():
    pytest.importorskip("wandb.proto.wandb_internal_pb2")  # not a fixtures dir named wandb
    for path in (FIX, next(FIX.glob("offline-run-*")), next(FIX.glob("*/run-*.wandb"))):
        r = check_log(path, preset="verl")
        assert r.step.tolist() == [x[0] for x in LOGGED]
        assert r.T.tolist() == [x[4] for x in LOGGED]
        assert r.stats["kl_max_proxy"].values.tolist() == [x[2] for x in LOGGED]
        assert r.stats["tv_lower_bound"].values.tolist() == [x[3] for x in LOGGED]
        assert any("5 history record(s) read" in n for n in r.notes)


def test_offline_run_through_cli():
    pytest.importorskip("wandb.proto.wandb_internal_pb2")  # not a fixtures dir named wandb
    steps = steps_of(run(FIX, "--kl-max", "0.05", "--json"))
    assert [s["stats"]["kl_max_proxy"]["value"] for s in steps] == [x[2] for x in LOGGED]


def test_offline_run_without_wandb_says_which_extra(monkeypatch):
    for name in [m for m in sys.modules if m == "wandb" or m.startswith("wandb.")] + ["wandb"]:
        monkeypatch.setitem(sys.modules, name, None)  # import wandb fails
    f = next(FIX.glob("*/run-*.wandb"))
    one_line_error(run(f, "--kl-max", "0.05"), "pip install wandb")
    one_line_error(run(FIX, "--kl-max", "0.05"), "pip install wandb")


def test_several_offline_runs_are_listed(tmp_path):
    src = next(FIX.glob("offline-run-*"))
    shutil.copytree(src, tmp_path / "wandb" / src.name)
    shutil.copytree(src, tmp_path / "wandb" / "offline-run-20270101_000000-zzzzzzzz")
    one_line_error(run(tmp_path / "wandb", "--kl-max", "0.05"), "2 logs", "wandb offline run")


def test_corrupt_and_truncated_offline_runs(tmp_path):
    pytest.importorskip("wandb.proto.wandb_internal_pb2")  # not a fixtures dir named wandb
    data = next(FIX.glob("*/run-*.wandb")).read_bytes()
    bad = bytearray(data)
    bad[40] ^= 0xFF  # a byte inside the first record: its CRC-32 no longer matches
    (tmp_path / "bad.wandb").write_bytes(bytes(bad))
    one_line_error(run(tmp_path / "bad.wandb", "--kl-max", "0.05"), "checksum mismatch")
    (tmp_path / "head.wandb").write_bytes(b"not a wandb file")
    one_line_error(run(tmp_path / "head.wandb", "--kl-max", "0.05"), "no ':W&B' header")
    (tmp_path / "cut.wandb").write_bytes(data[:-5])  # killed mid-write
    r = check_log(tmp_path / "cut.wandb", preset="verl")
    assert any("unfinished record" in n for n in r.notes)
    assert r.step.tolist() == [x[0] for x in LOGGED]  # the cut record is the run's exit
