"""OpenRLHF (OpenRLHF/OpenRLHF).

Read from OpenRLHF/OpenRLHF @ 3c3be6234e0cb353e76bb8019947db9dfe99fca7 (2026-08-13, 0.11.0):

- ``openrlhf/models/loss.py::PolicyLoss.forward``: ``vllm_kl = masked_mean(
  rollout_log_probs - old_log_probs)`` (token mean of k1 per micro-batch,
  token-weighted over micro-batches in ``openrlhf/trainer/ray/ppo_actor.py``), only
  with ``--algo.advantage.is_correction_enable`` (``openrlhf/cli/train_ppo_ray.py``);
- ``response_length`` (mean over samples) and ``rollout/response_length_mean``
  (``openrlhf/trainer/ppo_trainer.py::_compute_rollout_stats``); no maximum length;
- ``openrlhf/utils/logging_utils.py``: wandb ``train/<key>`` with step metric
  ``train/global_step``; TensorBoard ``train/<key>`` at ``global_step``.
"""

from ._core import Preset

PRESET = Preset(
    "openrlhf",
    {
        "T_mean": ("response_length", "rollout/response_length_mean"),
        "kl_tok_mean": ("vllm_kl",),
    },
    source=(
        "OpenRLHF/OpenRLHF @ 3c3be6234e (0.11.0, 2026-08-13): openrlhf/models/loss.py, "
        "openrlhf/trainer/ppo_trainer.py, openrlhf/trainer/ray/ppo_actor.py, "
        "openrlhf/utils/logging_utils.py"
    ),
    prefixes=("", "train/"),
    step_columns=("train/global_step", "global_step", "step", "_step"),
    caveats={
        "kl_tok_mean": (
            "openrlhf: vllm_kl is the token mean of k1 = log pi_roll - log pi_old (unbiased "
            "for the token-mean KL, can be negative on a batch)"
        ),
    },
    notes=(
        "openrlhf logs no maximum response length: pass --length GENERATE_MAX_LEN (the "
        "generation cap, the horizon of the bounds)",
    ),
    enable=(
        "OpenRLHF logs vllm_kl only with --algo.advantage.is_correction_enable "
        "(policy_loss_type ppo)"
    ),
)
