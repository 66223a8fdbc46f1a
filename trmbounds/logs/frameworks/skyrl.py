"""SkyRL (NovaSky-AI/SkyRL, ``skyrl/`` package).

Read from NovaSky-AI/SkyRL @ a9564572eb8e91076be43c1bd5e4615e3de17265 (2026-08-21):

- ``skyrl/train/trainer.py``: ``policy/rollout_train_logprobs_abs_diff_{max,min,mean,
  std}`` = over the batch's loss-mask tokens, |rollout_logprobs - action_log_probs|
  (pi_old forward; ``_max`` since PR #1707, 2026-05-27), only when the policy forward
  pass is not skipped;
- ``skyrl/train/generators/utils.py::get_rollout_metrics``: ``generate/max_num_tokens``,
  ``generate/avg_num_tokens`` (len(response): includes observation tokens; the batch
  maximum, not the generation cap) and with loss masks ``generate/max_assistant_tokens``,
  ``generate/avg_assistant_tokens`` (sum(loss_mask)).

No KL estimator of the mismatch is logged.
"""

from ._core import Preset

PRESET = Preset(
    "skyrl",
    {
        "T_max": ("generate/max_assistant_tokens", "generate/max_num_tokens"),
        "T_mean": ("generate/avg_assistant_tokens", "generate/avg_num_tokens"),
        "logp_diff_max": ("policy/rollout_train_logprobs_abs_diff_max",),
        "logp_diff_mean": ("policy/rollout_train_logprobs_abs_diff_mean",),
    },
    source=(
        "NovaSky-AI/SkyRL @ a9564572eb (2026-08-21): skyrl/train/trainer.py, "
        "skyrl/train/generators/utils.py"
    ),
    caveats={
        "logp_diff_max": (
            "skyrl: max |log-prob difference| compares the rollout with pi_old (a detector, "
            "not a bound on TV)"
        ),
        "T_max": (
            "skyrl: generate/max_num_tokens counts observation tokens too (conservative); "
            "generate/max_assistant_tokens only the loss-mask tokens"
        ),
    },
    enable=(
        "SkyRL logs policy/rollout_train_logprobs_abs_diff_* only when the generator returns "
        "rollout log-probs (training_input rollout_logprobs) and the policy forward pass runs"
    ),
)
