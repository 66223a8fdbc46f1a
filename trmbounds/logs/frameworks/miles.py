"""miles (radixark/miles, a slime fork).

Read from radixark/miles @ 31f1ca961a94cb860cec3b2dea34ec332bfa8f76 (2026-08-21, 0.1.0):

- ``miles/backends/training_utils/loss_hub/losses.py``: ``train_rollout_kl`` = k3
  ("low_var_kl", log ratio and output clamped to +-10) through ``sum_of_sample_mean``
  (seq-mean-token-mean), ``train_rollout_logprob_abs_diff``;
- ``miles/ray/rollout/metrics.py``: ``rollout/response_len/{mean,median,max,min}``;
- ``miles/backends/training_utils/log_utils.py`` and ``miles/utils/tracking_utils/
  wandb_utils.py``: ``train/*`` at ``train/step`` (rollout_id * num_steps_per_rollout
  + step_id), ``rollout/*`` at ``rollout/step``.
"""

from ._core import Preset
from .slime import ROLLOUT_GROUPS

PRESET = Preset(
    "miles",
    {
        "T_max": ("rollout/response_len/max",),
        "T_mean": ("rollout/response_len/mean",),
        "kl_tok_mean": ("train/train_rollout_kl",),
        "logp_diff_mean": ("train/train_rollout_logprob_abs_diff",),
    },
    status={"kl_tok_mean": "proxy"},
    source=(
        "radixark/miles @ 31f1ca961a (0.1.0, 2026-08-21): "
        "miles/backends/training_utils/loss_hub/losses.py, miles/ray/rollout/metrics.py, "
        "miles/backends/training_utils/log_utils.py"
    ),
    step_columns=("train/step", "step"),
    rollout_step="rollout/step",
    rollout_groups=ROLLOUT_GROUPS,
    caveats={
        "kl_tok_mean": (
            "miles: train/train_rollout_kl is a clamped k3, averaged per sequence then over "
            "sequences: x T_mean is a proxy of D_KL^seq"
        ),
    },
    notes=(
        "miles logs train/* at train/step and rollout/* at rollout/step: rollout rows are "
        "aligned as train/step = rollout_id x num_steps_per_rollout + step_id "
        "(--steps-per-rollout, default 1)",
    ),
    enable="miles logs train/train_rollout_kl when rollout log-probs are in the batch",
)
