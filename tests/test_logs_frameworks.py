"""Framework presets, logger conventions, merging by step, resumed runs, TensorBoard runs.

Column names below are copied from the frameworks' source (repository, file and commit
cited at each use; the snapshots are listed in trmbounds/logs/frameworks/*.py), not
from trmbounds' output. Expected values are computed here by hand from the rows
written (merging rules, k3 x mean length, ½x², 1 - x) or by ``bstar_direct`` (the
bound summed term by term, tests/test_logs_check.py).
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from logfixtures import write_jsonl, write_tfevents
from test_logs_check import bstar_direct
from typer.testing import CliRunner

from trmbounds.cli import app
from trmbounds.errors import InputFileError, TrmboundsError
from trmbounds.logs import frameworks as F
from trmbounds.logs import presets as P
from trmbounds.logs.check import Assumption, check_log

NAMES = ["verl", "trl", "slime", "prime-rl", "skyrl", "openrlhf", "areal", "nemo-rl", "roll",
         "ms-swift", "miles", "tinker", "open-instruct"]  # fmt: skip


# ------------------------------------------------------------------ the presets
def test_exactly_the_named_presets_each_with_its_source():
    assert list(F.PRESETS) == [*NAMES, "generic"]
    assert P.PRESETS is F.PRESETS and P.resolve is F.resolve  # the old module still works
    for name in NAMES:
        p = F.PRESETS[name]
        assert p.name == name
        assert re.search(r"@ [0-9a-f]{10}", p.source), name  # repo @ commit
        assert set(p.caveats) <= set(F.QUANTITIES)
        for cs in p.columns.values():
            assert len(set(cs)) == len(cs)


def test_cli_preset_choices_are_the_presets():
    from trmbounds.cli.cmd_check import Preset

    assert [p.value for p in Preset] == ["auto", *NAMES, "generic"]
    out = CliRunner().invoke(app, ["check", "x.jsonl", "--preset", "nonesuch"])
    assert out.exit_code == 2 and "ms-swift" in out.output


def test_new_quantities():
    assert F.QUANTITIES["T_cap"][0] == "logged" and "horizon T" in F.QUANTITIES["T_cap"][1]
    assert F.QUANTITIES["surrogate_se"] == ("estimate", "standard error of the logged surrogate L")
    assert P.parse_maps(["T_cap=gen/max_new_tokens"]) == {"T_cap": "gen/max_new_tokens"}


def test_verl_current_and_legacy_names():
    # verl 0.9 (rollout_corr_helper.py): token_k2/token_k3 options give the token maxima too
    cols = ["step", "response_length/max", "rollout_corr/rollout_rs_token_k2_max",
            "rollout_corr/rollout_rs_token_k3_max", "rollout_corr/kl"]  # fmt: skip
    r = F.resolve(F.PRESETS["verl"], {}, cols)
    assert r["k2_max"] == "rollout_corr/rollout_rs_token_k2_max"
    assert r["kl_proxy_max"] == "rollout_corr/rollout_rs_token_k3_max"
    assert r["kl_tok_mean"] == "rollout_corr/kl"  # k1 when k3 is not logged
    # verl 0.6.0 (mismatch_helper.py @ 4424616d7): mismatch/mismatch_* names
    legacy = ["step", "mismatch/mismatch_kl", "mismatch/mismatch_k3_kl",
              "mismatch/rollout_is_seq_masked_fraction"]  # fmt: skip
    r = F.resolve(F.PRESETS["verl"], {}, legacy)
    assert r["kl_tok_mean"] == "mismatch/mismatch_k3_kl"
    assert r["reject_frac"] == "mismatch/rollout_is_seq_masked_fraction"
    assert F.guess_preset(legacy).name == "verl"


def test_auto_detection_scores_the_names_it_would_use():
    # ms-swift and TRL share completions/*; only ms-swift reads rollout_correction/k3_kl
    cols = ["train/global_step", "train/completions/max_length", "train/rollout_correction/k3_kl"]
    assert F.guess_preset(cols).name == "ms-swift"
    # many columns of one framework that it would NOT read do not win over one it reads:
    # slime's rollout/response_len/* (lengths only) vs prime-rl's mismatch metric
    cols = ["step", "rollout/response_len/max", "rollout/response_len/mean",
            "rollout/response_len/min", "mismatch_kl/all/mean"]  # fmt: skip
    assert F.guess_preset(cols).name == "prime-rl"
    assert F.guess_preset(["step", "foo"]).name == "generic"
    assert F.guess_preset(["step", "T_max", "k2_max"]).name == "generic"


def test_per_column_status_prime_rl_legacy_mean():
    p = F.PRESETS["prime-rl"]
    # before 46653c1d7 (PR #2478) mismatch_kl/mean was a mean of per-sequence means
    assert F.status_of(p, "kl_tok_mean", "mismatch_kl/mean") == "proxy"
    assert F.status_of(p, "kl_tok_mean", "mismatch_kl/all/mean") == "estimate"
    assert F.status_of(F.PRESETS["slime"], "kl_tok_mean") == "proxy"
    assert F.status_of(F.PRESETS["miles"], "kl_tok_mean") == "proxy"


# ------------------------------------------------------- logger conventions
def test_trl_tensorboard_train_prefix_and_transform_in_from(tmp_path):
    # transformers rewrite_logs: every key -> "train/" + key; TensorBoard step = global_step
    rows = [{"step": s, "train/completions/max_length": t,
             "train/completions/mean_length": t / 2,
             "train/sampling/sampling_logp_difference/max": x,
             "train/sampling/sampling_logp_difference/mean": x / 10,
             "train/loss": 0.1} for s, t, x in ((10, 64, 0.2), (20, 128, 0.4))]  # fmt: skip
    d = tmp_path / "runs" / "Nov30_10-00-00_host"
    d.mkdir(parents=True)
    write_tfevents(d / "events.out.tfevents.1764496800.host.1.0", rows)
    r = check_log(tmp_path / "runs", assumption=Assumption(kl_max=0.05))
    assert r.preset == "trl" and r.step.tolist() == [10, 20] and r.T.tolist() == [64, 128]
    assert r.columns["logp_diff_max"] == "train/sampling/sampling_logp_difference/max"
    # k2 = ½ x²: 0.02, 0.08 (x stored as float32 by TensorBoard)
    x = np.float32([0.2, 0.4]).astype(np.float64)
    np.testing.assert_allclose(r.stats["kl_max_proxy"].values, x**2 / 2)
    assert r.stats["kl_max_proxy"].source == "½·(train/sampling/sampling_logp_difference/max)²"
    assert any("run read" in n for n in r.notes)
    assert r.summary()["tensorboard_run"] == str(d)


def test_wandb_export_uses_train_global_step_not_underscore_step(tmp_path):
    # wandb's own _step counts log calls; TRL's step metric is train/global_step
    p = tmp_path / "trl.csv"
    p.write_text(
        "_step,train/global_step,train/completions/max_length,"
        "train/sampling/sampling_logp_difference/max\n"
        "0,10,64,0.1\n1,20,128,0.2\n"
    )
    r = check_log(p, assumption=Assumption(kl_max=0.05))
    assert r.preset == "trl" and r.columns["step"] == "train/global_step"
    assert r.step.tolist() == [10, 20]


def test_trainer_state_json_log_history(tmp_path):
    # transformers trainer_callback.py TrainerState: {"log_history": [{..., "step": N}], ...}
    doc = {"global_step": 2, "log_history": [
        {"completions/max_length": 64.0, "completions/mean_length": 40.0,
         "sampling/sampling_logp_difference/max": 0.2, "epoch": 0.5, "step": 1},
        {"completions/max_length": 128.0, "completions/mean_length": 60.0,
         "sampling/sampling_logp_difference/max": 0.4, "epoch": 1.0, "step": 2},
        {"train_runtime": 3.5, "train_loss": 0.1, "epoch": 1.0, "step": 2}]}  # fmt: skip
    p = tmp_path / "trainer_state.json"
    p.write_text(json.dumps(doc))
    r = check_log(p, assumption=Assumption(kl_max=0.05))
    assert r.preset == "trl" and r.step.tolist() == [1, 2] and r.T.tolist() == [64, 128]
    np.testing.assert_allclose(r.stats["kl_max_proxy"].values, [0.02, 0.08])
    assert r.summary()["merge"]["steps_repeated"] == 0  # the final summary row adds new keys


# ------------------------------------------------------------- merging by step
def _prime_rows():
    # prime-rl metrics.jsonl (src/prime_rl/monitors/): flat rows, the orchestrator ahead of
    # the trainer (async), several trainer rows per step
    return [
        {"step": 1, "train/agg/effective/num_output_tokens/max": 100.0,
         "train/agg/effective/num_output_tokens/mean": 50.0},
        {"step": 2, "train/agg/effective/num_output_tokens/max": 200.0,
         "train/agg/effective/num_output_tokens/mean": 80.0},
        {"step": 1, "mismatch_kl/all/mean": 1e-5, "mismatch_kl/all/max": 0.01},
        {"step": 1, "optim/grad_norm": 0.5},
        {"step": 2, "mismatch_kl/all/mean": 2e-5, "mismatch_kl/all/max": 0.02},
    ]  # fmt: skip


def test_prime_rl_rows_of_one_step_are_merged(tmp_path):
    p = write_jsonl(tmp_path / "metrics.jsonl", _prime_rows(), nested=False)
    r = check_log(p, assumption=Assumption(kl_max=1e-4))
    assert r.preset == "prime-rl" and r.step.tolist() == [1, 2] and r.T.tolist() == [100, 200]
    # D_KL^seq = token-mean k3 x mean length: 1e-5 x 50, 2e-5 x 80
    np.testing.assert_allclose(r.stats["kl_seq"].values, [5e-4, 1.6e-3])
    assert r.stats["kl_seq"].status == "estimate"
    m = r.summary()["merge"]
    assert m["rows"] == 5 and m["steps"] == 2 and m["steps_repeated"] == 0
    assert m["step_went_back"] == 1  # row 3 (step 1 after step 2): interleaving, no repeat
    assert not any(n.startswith("WARNING") for n in r.notes)


def test_resumed_run_keeps_the_last_values_and_counts_them(tmp_path):
    def row(s, t, k):
        return {"step": s, "response_length/max": t, "response_length/mean": t / 2,
                "rollout_corr/k3_kl": k}  # fmt: skip

    rows = [row(1, 100, 1e-5), row(2, 200, 2e-5), row(3, 300, 3e-5),
            # resumed from the step-1 checkpoint: steps 2 and 3 again, then 4
            row(2, 220, 2e-5), row(3, 330, 4e-5), row(4, 400, 5e-5)]  # fmt: skip
    p = write_jsonl(tmp_path / "m.jsonl", rows)
    r = check_log(p, assumption=Assumption(kl_max=1e-4))
    assert r.step.tolist() == [1, 2, 3, 4] and r.T.tolist() == [100, 220, 330, 400]
    np.testing.assert_allclose(r.stats["kl_seq"].values, [1e-5 * 50, 2e-5 * 110, 4e-5 * 165,
                                                          5e-5 * 200])  # fmt: skip
    m = r.summary()["merge"]
    # steps 2, 3 repeated: 3 columns each replaced = 6; different: T_max, T_mean at 2 and 3,
    # k3 at 3 only -> 5
    assert (m["steps_repeated"], m["values_replaced"], m["values_conflicting"]) == (2, 6, 5)
    assert m["first_repeated"] == [2, 3] and m["step_went_back"] == 1
    assert r.line.tolist() == [1, 4, 5, 6]  # where the kept values are
    assert any(n.startswith("WARNING: 2 steps were logged more than once") for n in r.notes)
    out = CliRunner().invoke(app, ["check", str(p), "--kl-max", "1e-4"])
    assert out.exit_code == 0 and "WARNING: 2 steps were logged more than once" in " ".join(
        out.stdout.split()
    )


def test_row_without_step_but_with_metrics_is_bad_without_either_ignored(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text('{"step": 1, "T": 10, "k2_max": 0.1}\n{"eval/x": 1}\n{"T": 10, "k2_max": 0.1}\n')
    with pytest.raises(InputFileError, match=r"line 3: no valid step value"):
        check_log(p, preset="generic")
    r = check_log(p, preset="generic", skip_bad=True)
    assert len(r) == 1 and r.bad.count == 1 and r.summary()["merge"]["rows_ignored"] == 1


# -------------------------------------------------------- slime: two step keys
def _slime_csv(tmp_path, name="slime.csv"):
    # a wandb export of a slime run (slime/observability/wandb_utils.py: train/* on
    # train/step, rollout/* on rollout/step; separate log calls -> separate rows)
    p = tmp_path / name
    p.write_text(
        "_step,train/step,rollout/step,rollout/response_len/max,rollout/response_len/mean,"
        "train/mis_k3_kl,eval/step,eval/score\n"
        "0,,0,100,50,,,\n"
        "1,0,,,,1e-5,,\n"
        "2,1,,,,2e-5,,\n"
        "3,,1,200,80,,,\n"
        "4,2,,,,3e-5,,\n"
        "5,3,,,,4e-5,,\n"
        "6,,,,,,1,0.5\n"
    )
    return p


def test_slime_train_and_rollout_rows_aligned(tmp_path):
    p = _slime_csv(tmp_path)
    # two train steps per rollout: train/step = rollout_id * 2 + step_id
    r = check_log(p, steps_per_rollout=2, assumption=Assumption(kl_max=1e-4))
    assert r.preset == "slime" and r.step.tolist() == [0, 1, 2, 3]
    assert r.T.tolist() == [100, 100, 200, 200]
    np.testing.assert_allclose(r.stats["kl_seq"].values, [5e-4, 1e-3, 2.4e-3, 3.2e-3])
    assert r.stats["kl_seq"].status == "proxy"  # seq-mean-token-mean
    m = r.summary()["merge"]
    assert m["rollout_rows"] == 2 and m["steps_per_rollout"] == 2 and m["rows_ignored"] == 1
    # one train step per rollout (the default): rollout r is train step r
    r1 = check_log(p, assumption=Assumption(kl_max=1e-4))
    assert r1.step.tolist() == [0, 1, 2, 3] and r1.T.tolist()[:2] == [100, 200]
    assert np.isnan(r1.T[2]) and np.isnan(r1.T[3])  # rollouts 2, 3 not in the file
    with pytest.raises(TrmboundsError, match="--steps-per-rollout must be an integer >= 1"):
        check_log(p, steps_per_rollout=0)


def test_slime_tensorboard_groups_at_their_own_step(tmp_path):
    # slime logging_utils.log -> TensorBoard scalars at the group's step
    # (train/* at train/step, rollout/* at rollout/step)
    rows = [{"step": 0, "rollout/response_len/max": 100.0, "rollout/response_len/mean": 50.0},
            {"step": 0, "train/mis_k3_kl": 1e-5}, {"step": 1, "train/mis_k3_kl": 2e-5},
            {"step": 1, "rollout/response_len/max": 200.0, "rollout/response_len/mean": 80.0},
            {"step": 2, "train/mis_k3_kl": 3e-5}, {"step": 3, "train/mis_k3_kl": 4e-5}]  # fmt: skip
    write_tfevents(tmp_path / "events.out.tfevents.1764496800.h", rows, "tensor-double")
    r = check_log(tmp_path, preset="slime", steps_per_rollout=2, assumption=Assumption(kl_max=1e-4))
    assert r.step.tolist() == [0, 1, 2, 3] and r.T.tolist() == [100, 100, 200, 200]
    np.testing.assert_allclose(r.stats["kl_seq"].values, [5e-4, 1e-3, 2.4e-3, 3.2e-3])


# ------------------------------------------------------------ TensorBoard runs
def test_several_runs_are_listed_never_merged(tmp_path):
    row = [{"step": 1, "response_length/max": 10.0, "rollout_corr/k3_kl": 1e-5}]
    for run in ("exp_a", "exp_b/seed1"):
        (tmp_path / run).mkdir(parents=True)
        write_tfevents(tmp_path / run / "events.out.tfevents.1764496800.h", row)
    with pytest.raises(InputFileError, match=r"2 TensorBoard runs below this directory that "
                       r"are not one resumed run \(exp_b/seed1 starts again at step 1 \(a new "
                       r"training\)\): exp_a, exp_b/seed1; pass one run directory, or several "
                       r"logs in the order .* or the output directory's trainer_state.json"):  # fmt: skip
        check_log(tmp_path)
    r = check_log(tmp_path / "exp_b", assumption=Assumption(kl_max=1e-4))
    assert r.step.tolist() == [1]
    # a run directory that holds event files is read alone; the runs below it are named
    (tmp_path / "exp_a" / "sub").mkdir()
    write_tfevents(tmp_path / "exp_a" / "sub" / "events.out.tfevents.1764496801.h", row)
    r = check_log(tmp_path / "exp_a", assumption=Assumption(kl_max=1e-4))
    assert any("1 other TensorBoard runs in sub-directories NOT read: sub" in n for n in r.notes)
    cli = CliRunner().invoke(app, ["check", str(tmp_path)])
    assert cli.exit_code == 2 and "Error:" in cli.output and "exp_b/seed1" in cli.output


def test_restart_event_files_read_oldest_first(tmp_path):
    def rows(steps, t):
        return [{"step": s, "response_length/max": t, "rollout_corr/k3_kl": 1e-5} for s in steps]

    # a restart at step 2 writes a second file; its time stamp has one digit more, so
    # it sorts BEFORE the first file by name
    write_tfevents(tmp_path / "events.out.tfevents.999999999.h.1.0", rows([1, 2, 3], 100.0))
    write_tfevents(tmp_path / "events.out.tfevents.1000000000.h.2.0", rows([2, 3, 4], 400.0))
    r = check_log(tmp_path, assumption=Assumption(kl_max=1e-4))
    assert r.step.tolist() == [1, 2, 3, 4] and r.T.tolist() == [100, 400, 400, 400]
    m = r.summary()["merge"]
    assert m["steps_repeated"] == 2 and m["values_replaced"] == 4  # 2 tags x steps 2, 3
    assert m["values_conflicting"] == 2  # only the lengths differ
    assert any("2 event files in the run read in order" in n for n in r.notes)


# -------------------------------------------------------- no mismatch metric
@pytest.mark.parametrize(
    "preset,rows,setting",
    [
        ("trl", [{"step": s, "train/completions/max_length": t,
                  "train/completions/mean_length": t / 2} for s, t in ((1, 64), (2, 128))],
         "use_vllm=True, vllm_importance_sampling_correction=True"),
        ("openrlhf", [{"step": s, "train/response_length": t, "train/global_step": s}
                      for s, t in ((1, 64), (2, 128))],
         # the flag by version (openrlhf/cli/train_ppo_ray.py): 0.11.2 renamed it
         "--algo.advantage.is_correction_level token|seq (0.11.2+), "
         "--algo.advantage.is_correction_enable (0.10.2-0.11.1)"),
    ],
)  # fmt: skip
def test_no_mismatch_metric_says_which_setting_and_gives_the_assumed_bound(
    tmp_path, preset, rows, setting
):
    p = write_jsonl(tmp_path / "m.jsonl", rows, nested=False)
    length = "max" if preset == "trl" else "128"  # OpenRLHF logs no maximum length
    with pytest.raises(InputFileError, match=f"{preset} logged no mismatch metric: .*"
                       + re.escape(setting)):  # fmt: skip
        check_log(p, preset=preset, length=length)
    r = check_log(p, preset=preset, length=length, assumption=Assumption(kl_max=1e-4))
    T = [64, 128] if preset == "trl" else [128, 128]  # the longest response, or --length
    assert r.T.tolist() == T
    np.testing.assert_allclose(r.bound, [bstar_direct(t, 1e-4) for t in T])
    assert any(setting in n and "rests on --kl-max/--tv-max alone" in n for n in r.notes)
    cli = CliRunner().invoke(app, ["check", str(p), "--preset", preset, "--length", length])
    assert cli.exit_code == 2 and setting in " ".join(cli.output.split())


# ------------------------------------------------------- one log per framework
def _rows(names: dict[str, str], values: dict[str, list[float]], steps=(1, 2)):
    return [{"step": s, **{names[q]: values[q][i] for q in names}} for i, s in enumerate(steps)]


_V = {"T_max": [100.0, 200.0], "T_mean": [50.0, 80.0], "kl": [1e-5, 2e-5],
      "k2": [0.01, 0.02], "rej": [0.1, 0.3], "acc": [0.9, 0.7]}  # fmt: skip


@pytest.mark.parametrize(
    "preset,names,status,prefix",
    [
        # NVIDIA-NeMo/RL @ 7ea279abfb: loss_functions.py gen_kl_error, rollout_manager.py
        # gen_tokens_per_sample/*, grpo.py log_metrics(prefix="train")
        ("nemo-rl", {"T_max": "gen_tokens_per_sample/max", "T_mean": "gen_tokens_per_sample/mean",
                     "kl": "gen_kl_error"}, "estimate", "train/"),
        # areal-project/AReaL @ cbff54d645: actor.py, stats_tracker.py (scope/…/avg|max)
        ("areal", {"T_max": "ppo_actor/seq_len/max",
                   "kl": "ppo_actor/update/compute_logp/kl_div_dual/avg",
                   "k2": "ppo_actor/update/compute_logp/kl_div_taylor/max",
                   "rej": "ppo_actor/update/rs_filtered_fraction"}, None, ""),
        # alibaba/ROLL @ 8eb27cc2dc: metrics_manager.py add_token_metrics (prefix "token"),
        # train_infer_corrections.py
        ("roll", {"T_max": "token/response_length/max", "T_mean": "token/response_length/mean",
                  "acc": "actor/train_infer_final_mask_mean"}, None, ""),
        # modelscope/ms-swift @ 3602360a56: grpo_trainer.py; HF Trainer train/ prefix
        ("ms-swift", {"T_max": "completions/max_length", "T_mean": "completions/mean_length",
                      "kl": "rollout_correction/k3_kl"}, "estimate", "train/"),
        # radixark/miles @ 31f1ca961a: losses.py train_rollout_kl (seq-mean-token-mean)
        ("miles", {"T_max": "rollout/response_len/max", "T_mean": "rollout/response_len/mean",
                   "kl": "train/train_rollout_kl"}, "proxy", ""),
        # thinking-machines-lab/tinker-cookbook @ 9dfcc3a2cf: rl/metrics.py, rl/metric_util.py
        ("tinker", {"T_mean": "env/all/ac_tokens_per_turn", "kl": "optim/kl_sample_train_v1"},
         "estimate", ""),
        # NovaSky-AI/SkyRL @ a9564572eb: trainer.py, generators/utils.py
        ("skyrl", {"T_max": "generate/max_num_tokens", "T_mean": "generate/avg_num_tokens",
                   "k2": "policy/rollout_train_logprobs_abs_diff_max"}, None, ""),
        # OpenRLHF/OpenRLHF @ 3c3be6234e: loss.py vllm_kl, logging_utils.py train/ prefix
        ("openrlhf", {"T_mean": "response_length", "kl": "vllm_kl"}, "estimate", "train/"),
    ],
)  # fmt: skip
def test_each_framework_is_detected_and_read(tmp_path, preset, names, status, prefix):
    qs = {"T_max": "T_max", "T_mean": "T_mean", "kl": "kl_tok_mean", "k2": "k2_max",
          "rej": "reject_frac", "acc": "accept"}  # fmt: skip
    if preset == "skyrl":
        qs["k2"] = "logp_diff_max"
    full = {q: prefix + c for q, c in names.items()}
    p = write_jsonl(tmp_path / "m.jsonl", _rows(full, _V), nested=False)
    length = "max" if "T_max" in names else "300"  # no maximum logged: the cap by hand
    r = check_log(p, length=length, assumption=Assumption(kl_max=0.05))
    assert r.preset == preset
    assert {qs[q]: r.columns[qs[q]] for q in names} == {qs[q]: c for q, c in full.items()}
    T = _V["T_max"] if length == "max" else [300, 300]
    assert r.T.tolist() == T
    if "kl" in names and "T_mean" in names:
        np.testing.assert_allclose(r.stats["kl_seq"].values, [1e-5 * 50, 2e-5 * 80])
        assert r.stats["kl_seq"].status == status
    if "k2" in names:
        want = _V["k2"] if preset != "skyrl" else [x * x / 2 for x in _V["k2"]]
        np.testing.assert_allclose(r.stats["kl_max_proxy"].values, want)
    if "rej" in names:
        np.testing.assert_allclose(r.acceptance, [0.9, 0.7])
    if "acc" in names:
        np.testing.assert_allclose(r.acceptance, _V["acc"])
    for q, text in F.PRESETS[preset].caveats.items():
        if q in r.columns:
            assert text in r.notes


def test_docs_have_a_section_per_framework_with_every_column():
    from pathlib import Path

    doc = (Path(__file__).parents[1] / "docs" / "logs.md").read_text()
    for name in NAMES:
        p = F.PRESETS[name]
        sec = doc.split(f"### `{name}`\n", 1)[1].split("\n### ", 1)[0]
        assert p.source in sec, name
        for cs in p.columns.values():
            for c in cs:
                assert f"`{c}`" in sec, (name, c)
        if p.enable:
            assert p.enable in sec, name


def test_cli_steps_per_rollout_and_json_summary(tmp_path):
    p = _slime_csv(tmp_path)
    out = CliRunner().invoke(
        app, ["check", str(p), "--steps-per-rollout", "2", "--kl-max", "1e-4", "--json"]
    )
    assert out.exit_code == 0, out.output
    s = json.loads(out.stdout)["summary"]
    assert s["preset"] == "slime" and s["preset_source"].startswith("THUDM/slime @ ")
    assert s["merge"]["rollout_rows"] == 2 and s["merge"]["steps_per_rollout"] == 2
    assert [x["T"] for x in json.loads(out.stdout)["steps"]] == [100, 100, 200, 200]
    bad = CliRunner().invoke(app, ["check", str(p), "--steps-per-rollout", "0"])
    assert bad.exit_code == 2


def test_prefix_order_raw_then_train_then_eval():
    trl = F.PRESETS["trl"]
    both = ["train/global_step", "eval/completions/max_length", "train/completions/max_length"]
    assert F.resolve(trl, {}, both)["T_max"] == "train/completions/max_length"
    assert F.resolve(trl, {}, both)["step"] == "train/global_step"
    assert F.resolve(trl, {}, ["eval/completions/max_length"])["T_max"] == (
        "eval/completions/max_length"
    )  # an eval-only log (transformers rewrite_logs: eval_KEY -> eval/KEY)
    # NeMo-RL prefixes train/ itself (nemo_rl/utils/logger.py)
    r = F.resolve(F.PRESETS["nemo-rl"], {}, ["train/gen_kl_error", "gen_kl_error"])
    assert r["kl_tok_mean"] == "train/gen_kl_error"


# ------------------------------------------- frameworks' newest names (issue 18)
FIX = __import__("pathlib").Path(__file__).parent / "fixtures"


def test_skyrl_0_3_0_rollout_is_run_reads_the_minibatch_diff():
    # tests/fixtures/make_layouts.py: SkyRL 0.3.0's _TensorboardAdapter calls for a
    # policy_loss_type=rollout_is run (no policy forward pass, so no rollout_train_*)
    r = check_log(FIX / "skyrl" / "tensorboard_log", assumption=Assumption(kl_max=0.05))
    assert r.preset == "skyrl"
    assert r.columns["logp_diff_max"] == "policy/minibatch_rollout_logprobs_abs_diff_max"
    assert r.columns["logp_diff_mean"] == "policy/minibatch_rollout_logprobs_abs_diff_mean"
    assert r.T.tolist() == [256, 384]  # generate/max_assistant_tokens (loss-mask tokens)
    x = np.float32([0.25, 0.5]).astype(np.float64)  # TensorBoard stores float32
    np.testing.assert_allclose(r.stats["kl_max_proxy"].values, x**2 / 2)
    assert any("mini-batch" in n and "drift" in n for n in r.notes)
    # both logged (the forward pass ran): the comparison with pi_old is read first
    both = ["step", "policy/minibatch_rollout_logprobs_abs_diff_max",
            "policy/rollout_train_logprobs_abs_diff_max"]  # fmt: skip
    assert F.resolve(F.PRESETS["skyrl"], {}, both)["logp_diff_max"] == (
        "policy/rollout_train_logprobs_abs_diff_max"
    )


def test_nemo_rl_0_6_0_lengths_max_gen_tokens_per_sample():
    # tests/fixtures/make_layouts.py: NeMo-RL v0.6.0's TensorboardLogger calls
    # (train/ prefix; rollouts.py max_gen_tokens_per_sample / mean_gen_tokens_per_sample)
    run = FIX / "nemo-rl" / "logs" / "exp_002" / "tensorboard"
    r = check_log(run, assumption=Assumption(kl_max=0.05))
    assert r.preset == "nemo-rl"
    assert r.columns["T_max"] == "train/max_gen_tokens_per_sample"
    assert r.T.tolist() == [512, 1024]
    kl = np.float32([0.001, 0.002]).astype(np.float64)  # float32 in TensorBoard
    np.testing.assert_allclose(r.stats["kl_seq"].values, kl * [200, 300])


def test_open_instruct_debug_metrics_at_training_step(tmp_path):
    # allenai/open-instruct @ e6c3044aa6: grpo_fast.py wandb.log(metrics, step=training_step),
    # with global_step = episode (a wandb history export: _step = training_step)
    rows = [
        {
            "_step": s,
            "training_step": s,
            "global_step": 64 * s,
            "episode": 64 * s,
            "val/sequence_lengths": t / 2,
            "val/sequence_lengths_max": t,
            "debug/vllm_vs_local_logprob_diff_mean": x / 10,
            "debug/vllm_vs_local_logprob_diff_max": x,
            "debug/vllm_vs_local_logprob_diff_std": x / 5,
            "debug/vllm_local_reverse_kl": 0.3,
        }
        for s, t, x in ((1, 100, 0.2), (2, 200, 0.6))
    ]
    p = tmp_path / "history.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    r = check_log(p, assumption=Assumption(kl_max=0.05))
    assert r.preset == "open-instruct"
    assert r.step.tolist() == [1, 2] and r.T.tolist() == [100, 200]
    np.testing.assert_allclose(r.stats["kl_max_proxy"].values, [0.02, 0.18])  # ½ x²
    assert "debug/vllm_local_reverse_kl" not in r.columns.values()
    assert any("last micro-batch" in n for n in r.notes)
    assert any("reverse_kl" in n and "not a KL estimate" in n for n in r.notes)


def test_verl_caveat_ratio_based_rollout_rs_through_v0_7_0():
    # verl v0.7.0 (f9c855f7cf) rollout_corr_helper.py: valid_rs_levels = {"token",
    # "sequence", "geometric"} (IS-ratio rejection); divergence options from v0.7.1
    text = F.PRESETS["verl"].caveats["reject_frac"]
    assert "v0.6.0 - v0.7.0" in text and "v0.7.1" in text and "v0.6.0/v0.6.1" not in text


def test_trl_trm_acceptance_of_trmgrpotrainer(tmp_path):
    # trmbounds.integrations.trl.TRMGRPOTrainer appends trm/acceptance and
    # trm/masked_fraction to GRPOTrainer's metrics; a log_history entry as it writes one
    doc = {"global_step": 2, "logging_steps": 1, "log_history": [
        {"loss": 0.1, "completions/max_length": 12.0,
         "sampling/sampling_logp_difference/max": 0.02,
         "sampling/sampling_logp_difference/mean": 0.002, "trm/acceptance": 0.75,
         "trm/masked_fraction": 0.25, "epoch": 0.1, "step": 1},
        {"loss": 0.2, "completions/max_length": 16.0,
         "sampling/sampling_logp_difference/max": 0.05,
         "sampling/sampling_logp_difference/mean": 0.004, "trm/acceptance": 0.5,
         "trm/masked_fraction": 0.5, "epoch": 0.2, "step": 2}]}  # fmt: skip
    p = tmp_path / "trainer_state.json"
    p.write_text(json.dumps(doc))
    args = ["check", str(p), "--kl-max", "1e-3", "--length", "16"]
    r = CliRunner().invoke(app, [*args, "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["summary"]["preset"] == "trl"
    assert [s["stats"]["acceptance"] for s in out["steps"]] == [
        {"value": 0.75, "status": "logged", "source": "trm/acceptance"},
        {"value": 0.5, "status": "logged", "source": "trm/acceptance"},
    ]
    # the paper's recommendation: keep the acceptance rate above 70 %
    assert [s["acceptance_ok"] for s in out["steps"]] == [True, False]
    acc = out["summary"]["acceptance"]
    assert (acc["mean"], acc["min"], acc["steps_below_target"]) == (0.625, 0.5, 1)
    assert F.PRESETS["trl"].caveats["accept"] in out["summary"]["notes"]
    r = CliRunner().invoke(app, args)
    assert "acceptance: mean 62.5%, min 50.0%" in " ".join(r.output.split())
    # TensorBoard / wandb: transformers' rewrite_logs adds train/
    c = tmp_path / "wandb.csv"
    c.write_text(
        "train/global_step,train/sampling/sampling_logp_difference/max,train/trm/acceptance\n"
        "1,0.02,0.75\n2,0.05,0.5\n"
    )
    res = check_log(c, length="16", assumption=Assumption(kl_max=1e-3))
    assert res.columns["accept"] == "train/trm/acceptance"
    np.testing.assert_allclose(res.acceptance, [0.75, 0.5])
