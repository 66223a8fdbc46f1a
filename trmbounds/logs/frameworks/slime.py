"""slime (THUDM/slime).

Read from THUDM/slime @ 624b824a898ab0ec1fcb4d373004c7f3852bf515 (2026-08-21, 0.3.1):

- ``slime/backends/megatron_utils/loss.py``: ``train_rollout_logprob_abs_diff`` =
  |log pi_old - log pi_roll| over loss-mask tokens, per-rollout mean;
- with ``--custom-tis-function-path examples.train_infer_mismatch_helper.mis.
  compute_mis_weights_with_cp`` (``examples/train_infer_mismatch_helper/mis.py``):
  ``mis_kl`` (k1), ``mis_k3_kl`` (k3), ...;
- every train metric goes through ``sum_of_sample_mean`` (``cp_utils.py``): a
  per-sequence token mean, then a mean over sequences (seq-mean-token-mean) unless
  ``--calculate-per-token-loss``; logged as ``train/<key>`` at ``train/step =
  rollout_id * num_steps_per_rollout + step_id`` (``megatron_utils/model.py``);
- ``slime/observability/rollout_metrics.py``: ``rollout/response_len/{mean,median,max,
  min}`` over ``effective_response_length`` (= sum(loss_mask)), at ``rollout/step``
  (``metric_utils.py::compute_rollout_step``: the rollout id, or the train step with
  ``--wandb-always-use-train-step``);
- ``slime/observability/wandb_utils.py``: ``train/*`` on ``train/step``; ``rollout/*``,
  ``multi_turn/*``, ``passrate/*``, ``perf/*`` on ``rollout/step``. Train and rollout
  metrics are separate log calls (separate wandb rows; TensorBoard scalars at the
  group's own step).

``train/mis_rs_trust_region_reject_fraction`` exists only in the unmerged PR #1568
(``refs/pull/1568/head`` = 83b09a241, 2026-02-10).
"""

from ._core import Preset

#: Column prefixes slime logs at ``rollout/step`` (wandb_utils.py define_metric).
ROLLOUT_GROUPS = ("rollout/", "multi_turn/", "passrate/", "perf/")

PRESET = Preset(
    "slime",
    {
        "T_max": ("rollout/response_len/max",),
        "T_mean": ("rollout/response_len/mean",),
        "kl_tok_mean": ("train/mis_k3_kl", "train/mis_kl"),
        "logp_diff_mean": ("train/train_rollout_logprob_abs_diff",),
        "reject_frac": ("train/mis_rs_trust_region_reject_fraction",),  # unmerged PR #1568
    },
    status={"kl_tok_mean": "proxy"},
    source=(
        "THUDM/slime @ 624b824a89 (0.3.1, 2026-08-21): slime/backends/megatron_utils/loss.py, "
        "examples/train_infer_mismatch_helper/mis.py, slime/observability/rollout_metrics.py, "
        "slime/observability/wandb_utils.py"
    ),
    step_columns=("train/step", "step"),
    rollout_step="rollout/step",
    rollout_groups=ROLLOUT_GROUPS,
    caveats={
        "kl_tok_mean": (
            "slime: train/mis_k3_kl is a mean over sequences of per-sequence token means "
            "(not a batch token mean unless --calculate-per-token-loss): x T_mean is a proxy "
            "of D_KL^seq, not an estimate"
        ),
        "reject_frac": (
            "slime: train/mis_rs_trust_region_reject_fraction comes from the unmerged PR #1568"
        ),
    },
    notes=(
        "slime logs train/* at train/step and rollout/* at rollout/step: rollout rows are "
        "aligned as train/step = rollout_id x num_steps_per_rollout + step_id "
        "(--steps-per-rollout, default 1; use 1 with --wandb-always-use-train-step)",
    ),
    enable=(
        "slime logs a mismatch KL only with --use-tis/--get-mismatch-metrics and "
        "--custom-tis-function-path examples.train_infer_mismatch_helper.mis."
        "compute_mis_weights_with_cp (train/mis_k3_kl)"
    ),
)
