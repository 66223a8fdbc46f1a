"""OpenRLHF (OpenRLHF/OpenRLHF).

Read from OpenRLHF/OpenRLHF @ 3c3be6234e0cb353e76bb8019947db9dfe99fca7 (2026-08-13, 0.11.0):

- ``openrlhf/models/loss.py::PolicyLoss.forward``: ``vllm_kl = masked_mean(
  rollout_log_probs - old_log_probs)`` (token mean of k1 per micro-batch,
  token-weighted over micro-batches in ``openrlhf/trainer/ray/ppo_actor.py``), only
  with the IS correction on (``openrlhf/cli/train_ppo_ray.py``): the flag was
  ``--enable_vllm_is_correction`` up to 0.10.1 (:255), ``--algo.advantage.is_correction_enable``
  in 0.10.2 - 0.11.1 (:257), and is ``--algo.advantage.is_correction_level {token,seq}``
  (default ``off``) since 0.11.2 (:261, PyPI wheel openrlhf 0.11.2; the loss is unchanged:
  ``vllm_kl = masked_mean(rollout_log_probs - old_log_probs)``, now with
  ``is_filter_ratio``, not read: a token or sequence fraction depending on the level);
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
        "openrlhf/utils/logging_utils.py; openrlhf/cli/train_ppo_ray.py at v0.10.1, v0.10.2 "
        "and the 0.11.1 / 0.11.2 wheels"
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
        "OpenRLHF logs vllm_kl only with the IS correction on and policy_loss_type ppo: "
        "--algo.advantage.is_correction_level token|seq (0.11.2+), "
        "--algo.advantage.is_correction_enable (0.10.2-0.11.1), "
        "--enable_vllm_is_correction (<= 0.10.1)"
    ),
)
