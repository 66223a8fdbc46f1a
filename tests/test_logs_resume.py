"""A crashed and resumed training: tests/fixtures/hf_resume (make_hf_resume.py).

transformers' own Trainer wrote it: run 1 logged steps 1-5 and crashed after
checkpoint-4; run 2 resumed from checkpoint-4 and logged steps 5-8, each run in its own
``runs/<date>_<host>/``; ``trainer_state.json`` holds the whole history. The metric
``sampling/sampling_logp_difference/max`` is ``run + step / 100``, so the expected
values are known by construction and checked against the files transformers wrote.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from logfixtures import write_tfevents
from typer.testing import CliRunner

from trmbounds.cli import app
from trmbounds.errors import InputFileError, TrmboundsError
from trmbounds.logs.check import Assumption, check_log

FIX = Path(__file__).parent / "fixtures"
OUT = FIX / "hf_resume"
RUNS = sorted((OUT / "runs").iterdir())  # <date>_<host>: the crashed run first
A = Assumption(kl_max=1.0)


def _k2(xs):
    return np.float32(xs).astype(np.float64) ** 2 / 2  # TensorBoard keeps float32


def test_the_fixture_is_a_crash_and_a_resume():
    hist = json.loads((OUT / "trainer_state.json").read_text())["log_history"]
    got = [(e["step"], e["sampling/sampling_logp_difference/max"]) for e in hist if "loss" in e]
    assert got == [(s, (1 if s <= 4 else 2) + s / 100) for s in range(1, 9)]
    assert len(RUNS) == 2


def test_runs_dir_of_a_resumed_run_is_read_as_one_run_later_values_win():
    r = check_log(OUT / "runs", assumption=A)
    assert r.step.tolist() == list(range(1, 9))
    # step 5 logged by both runs: the resumed run's 2.05, not the crashed run's 1.05
    x = [1 + s / 100 for s in range(1, 5)] + [2 + s / 100 for s in range(5, 9)]
    np.testing.assert_allclose(r.stats["kl_max_proxy"].values, _k2(x), rtol=1e-12)
    assert any("read as one resumed run" in n and "steps 1–5" in n and "steps 5–8" in n
               for n in r.notes)  # fmt: skip
    assert r.summary()["merge"]["first_repeated"] == [5]


def test_output_dir_prefers_trainer_state_json_and_says_so():
    r = check_log(OUT, assumption=A)
    hist = json.loads((OUT / "trainer_state.json").read_text())["log_history"]
    x = [e["sampling/sampling_logp_difference/max"] for e in hist if "loss" in e]
    assert r.step.tolist() == list(range(1, 9))
    np.testing.assert_allclose(r.stats["kl_max_proxy"].values, np.array(x) ** 2 / 2)
    assert r.columns["logp_diff_max"] == "sampling/sampling_logp_difference/max"  # raw names
    assert any("trainer_state.json read" in n and "whole log history" in n for n in r.notes)


def test_cli_several_paths_read_in_the_order_given():
    base = ["check", "--kl-max", "1", "--json"]
    fwd = CliRunner().invoke(app, [*base[:1], str(RUNS[0]), str(RUNS[1]), *base[1:]])
    assert fwd.exit_code == 0, fwd.output
    steps = json.loads(fwd.stdout)["steps"]
    assert [s["step"] for s in steps] == list(range(1, 9))
    rev = CliRunner().invoke(app, [*base[:1], str(RUNS[1]), str(RUNS[0]), *base[1:]])
    assert rev.exit_code == 0, rev.output
    k2 = {s["step"]: s["stats"]["kl_max_proxy"]["value"] for s in json.loads(rev.stdout)["steps"]}
    fk2 = {s["step"]: s["stats"]["kl_max_proxy"]["value"] for s in steps}
    assert fk2[5] == pytest.approx(_k2([2.05])[0], rel=1e-12)  # run 2 given last: wins
    assert k2[5] == pytest.approx(_k2([1.05])[0], rel=1e-12)  # run 1 given last: wins
    assert json.loads(fwd.stdout)["summary"]["logs"] == [str(RUNS[0]), str(RUNS[1])]


def test_unrelated_runs_are_refused_with_the_remedies(tmp_path):
    def run(name, steps):
        d = tmp_path / "runs" / name
        d.mkdir(parents=True)
        rows = [{"step": s, "train/completions/max_length": 10.0} for s in steps]
        write_tfevents(d / f"events.out.tfevents.{1700000000 + len(name)}.h", rows)

    run("a", [1, 2, 3])
    run("bb", [10, 11, 12])  # starts long after the last step of "a": not its resume
    with pytest.raises(InputFileError, match=r"not one resumed run \(bb starts at step 10, "
                       r"long after step 3\).*pass one run directory, or several logs"):  # fmt: skip
        check_log(tmp_path / "runs", assumption=A)
    out = CliRunner().invoke(app, ["check", str(tmp_path / "runs"), "--kl-max", "1"])
    assert out.exit_code == 2 and "trainer_state.json" in " ".join(out.output.split())


def test_a_run_without_scalars_is_not_a_run():
    # NeMo-RL's add_hparams writes a sub-run without scalars (make_layouts.py)
    r = check_log(FIX / "nemo-rl" / "logs" / "exp_002", assumption=A)
    assert r.T.tolist() == [512, 1024]
    assert any("without scalars not read" in n for n in r.notes)


def test_a_token_dump_is_not_combined(tmp_path):
    dump = FIX / "nemo-rl" / "logs" / "exp_001" / "train_data_step3.jsonl"
    with pytest.raises(TrmboundsError, match="per-token dump cannot be combined"):
        check_log(RUNS[0], more=[dump], assumption=A)
    out = CliRunner().invoke(app, ["check", str(dump), str(RUNS[0]), "--kl-max", "1"])
    assert out.exit_code == 2 and "cannot be combined" in out.output
