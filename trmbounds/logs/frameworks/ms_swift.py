"""ms-swift (modelscope/ms-swift) GRPO trainer.

Read from modelscope/ms-swift @ 3602360a562313afbf2ef6065fdf61f271a2c5b9 (2026-08-22,
4.6.0.dev0), ``swift/rlhf_trainers/grpo_trainer.py``:

- ``_compute_rollout_offpolicy_metrics`` -> ``rollout_correction/{kl, k3_kl, ...}``:
  ``kl`` = token mean of k1 = -log rho, ``k3_kl`` = token mean of k3 with log rho
  clamped to +-20 and k3 clamped to <= 10 (per process, then averaged over processes);
  only with ``rollout_importance_sampling_mode`` set or ``log_rollout_offpolicy_metrics``
  (``swift/rlhf_trainers/args_mixin.py``);
- ``completions/{mean,min,max}_length``.

An HF Trainer: ``train/`` (``eval/``) prefixes in TensorBoard and wandb.
"""

from ._core import Preset

PRESET = Preset(
    "ms-swift",
    {
        "T_max": ("completions/max_length",),
        "T_mean": ("completions/mean_length",),
        "kl_tok_mean": ("rollout_correction/k3_kl", "rollout_correction/kl"),
    },
    source=(
        "modelscope/ms-swift @ 3602360a56 (4.6.0.dev0, 2026-08-22): "
        "swift/rlhf_trainers/grpo_trainer.py, swift/rlhf_trainers/args_mixin.py"
    ),
    prefixes=("", "train/", "eval/"),
    step_columns=("train/global_step", "step", "global_step", "_step"),
    caveats={
        "kl_tok_mean": (
            "ms-swift: rollout_correction/k3_kl clamps each token's k3 to <= 10 and averages "
            "per-process token means; metrics are averaged over logging_steps"
        ),
    },
    enable=(
        "ms-swift logs rollout_correction/* only with --rollout_importance_sampling_mode "
        "or --log_rollout_offpolicy_metrics true"
    ),
)
