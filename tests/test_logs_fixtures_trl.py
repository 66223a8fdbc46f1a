"""``trmbounds check`` on logs written by TRL's own GRPOTrainer (tests/fixtures/trl, make_trl.py).

TRL 1.16.0 ran on CPU without vLLM, so -- like any TRL run without vLLM importance
sampling -- its logs hold the completion lengths but no rollout/training mismatch metric
(``trl/trainer/grpo_trainer.py`` logs ``sampling/sampling_logp_difference/*`` only with
``use_vllm`` and ``vllm_importance_sampling_correction``). transformers'
``TensorBoardCallback`` wrote the event files through ``rewrite_logs`` (``train/`` +
name, step = global_step); ``Trainer.save_state`` wrote ``trainer_state.json`` (raw
names, ``step``). Expected names come from those sources; expected bounds from
``bstar_direct`` (the bound summed term by term).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from test_logs_check import bstar_direct
from typer.testing import CliRunner

from trmbounds.cli import app
from trmbounds.errors import InputFileError
from trmbounds.logs.check import Assumption, check_log

FIX = Path(__file__).parent / "fixtures" / "trl"
SETTING = "GRPOConfig(use_vllm=True, vllm_importance_sampling_correction=True)"


def _history(path):
    """(step, completions/max_length, completions/mean_length) from log_history."""
    hist = json.loads(path.read_text())["log_history"]
    return [(e["step"], e["completions/max_length"], e["completions/mean_length"])
            for e in hist if "completions/max_length" in e]  # fmt: skip


def test_trl_tensorboard_run_found_under_runs_and_no_mismatch_metric_said():
    runs = FIX / "grpo" / "runs"
    with pytest.raises(InputFileError, match=r"trl logged no mismatch metric: .*"
                       + re.escape(SETTING)):  # fmt: skip
        check_log(runs)
    out = CliRunner().invoke(app, ["check", str(runs)])
    assert out.exit_code == 2 and SETTING in " ".join(out.output.split())


def test_trl_tensorboard_with_an_assumption_gives_the_bound_per_step():
    r = check_log(FIX / "grpo" / "runs", assumption=Assumption(kl_max=1e-3))
    assert r.preset == "trl"
    assert r.columns == {"step": "step", "T_max": "train/completions/max_length",
                         "T_mean": "train/completions/mean_length"}  # fmt: skip
    hist = _history(FIX / "grpo" / "trainer_state.json")
    assert r.step.tolist() == [h[0] for h in hist] == [1, 2, 3, 4]
    T = [float(np.ceil(h[1])) for h in hist]
    assert r.T.tolist() == T
    np.testing.assert_allclose(r.bound, [bstar_direct(int(t), 1e-3) for t in T], rtol=1e-9)
    assert any(SETTING in n and "--kl-max/--tv-max alone" in n for n in r.notes)
    run = next((FIX / "grpo" / "runs").iterdir())
    assert r.summary()["tensorboard_run"] == str(run)


def test_trl_trainer_state_json_has_the_raw_names():
    p = FIX / "grpo" / "trainer_state.json"
    r = check_log(p, assumption=Assumption(kl_max=1e-3))
    assert r.preset == "trl"
    assert r.columns == {"step": "step", "T_max": "completions/max_length",
                         "T_mean": "completions/mean_length"}  # fmt: skip
    hist = _history(p)
    assert r.step.tolist() == [h[0] for h in hist]
    assert r.T.tolist() == [float(np.ceil(h[1])) for h in hist]
    # the same numbers as the TensorBoard run of the same training (float32 there)
    tb = check_log(FIX / "grpo" / "runs", assumption=Assumption(kl_max=1e-3))
    np.testing.assert_array_equal(tb.T, r.T)
    np.testing.assert_allclose(tb.bound, r.bound, rtol=1e-12)


def test_trl_rerun_in_the_same_directory_is_two_runs_never_merged():
    runs = FIX / "grpo_rerun" / "runs"
    names = sorted(d.name for d in runs.iterdir())
    # the second run starts again at its first logging interval (step 2): a new training
    with pytest.raises(InputFileError, match=re.escape(
            "2 TensorBoard runs below this directory that are not one resumed run "
            f"({names[1]} starts again at step 2 (a new training)): {', '.join(names)}; "
            "pass one run directory, or several logs in the order")):  # fmt: skip
        check_log(runs, assumption=Assumption(kl_max=1e-3))
    first = check_log(runs / names[0], assumption=Assumption(kl_max=1e-3))
    second = check_log(runs / names[1], assumption=Assumption(kl_max=1e-3))
    assert first.step.tolist() == [1, 2, 3, 4]  # logging_steps=1
    # logging_steps=2: the second run's trainer_state.json is the one left in the directory
    hist = _history(FIX / "grpo_rerun" / "trainer_state.json")
    assert second.step.tolist() == [h[0] for h in hist] == [2, 4]
    for r in (first, second):
        assert r.summary()["merge"]["steps_repeated"] == 0


def test_trainer_state_logging_steps_above_one_states_the_understatement_factor():
    # grpo_rerun's trainer_state.json: TRL's second run, logging_steps recorded by
    # transformers' TrainerState; a mean of k maxima >= 0 is >= max / k
    p = FIX / "grpo_rerun" / "trainer_state.json"
    k = json.loads(p.read_text())["logging_steps"]
    assert k == 2
    r = check_log(p, assumption=Assumption(kl_max=1e-3))
    note = next(n for n in r.notes if "logging_steps = " in n)
    assert f"logging_steps = {k}" in note and f"up to {k} x" in note and f"{k * k} x" in note
    assert "logging_steps=1" in note
    one = check_log(FIX / "grpo" / "trainer_state.json", assumption=Assumption(kl_max=1e-3))
    assert not any("logging_steps = " in n for n in one.notes)  # logging_steps=1: no note
