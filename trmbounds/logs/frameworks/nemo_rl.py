"""NeMo-RL (NVIDIA-NeMo/RL).

Read from NVIDIA-NeMo/RL @ 7ea279abfbeb698b092856d0dab61e7cf39bc909 (2026-08-22):

- ``nemo_rl/algorithms/loss/loss_functions.py::ClippedPGLossFn``: ``gen_kl_error`` =
  token mean of ``calculate_kl(gen, prev, kl_type=reference_policy_kl_type)`` (k3 by
  default; k1/k2 if configured), ``token_mult_prob_error`` = token mean of
  exp(|log pi_gen - log pi_prev|), normalised over the batch's tokens;
- ``nemo_rl/experience/rollout_manager.py`` (``metric_utils.calculate_single_metric``):
  ``gen_tokens_per_sample/{mean,max,min,median}`` (assistant tokens) and
  ``mean_gen_tokens_per_sample`` (since v0.7.0);
- older releases: ``nemo_rl/experience/rollouts.py`` ``max_gen_tokens_per_sample`` and
  ``mean_gen_tokens_per_sample`` (v0.4.0 - v0.6.0: v0.6.0 = 5fb588932b, 2026-04-29;
  v0.3.0 has the mean only), logged as ``train/<key>`` like every GRPO metric;
- ``nemo_rl/algorithms/grpo.py``: ``logger.log_metrics(..., prefix="train")`` at step
  ``total_steps + 1`` (``nemo_rl/utils/logger.py``: ``train/<key>``).
"""

from ._core import Preset

PRESET = Preset(
    "nemo-rl",
    {
        "T_max": ("gen_tokens_per_sample/max", "max_gen_tokens_per_sample"),
        "T_mean": ("gen_tokens_per_sample/mean", "mean_gen_tokens_per_sample"),
        "kl_tok_mean": ("gen_kl_error",),
    },
    source=(
        "NVIDIA-NeMo/RL @ 7ea279abfb (2026-08-22): nemo_rl/algorithms/loss/loss_functions.py, "
        "nemo_rl/experience/rollout_manager.py, nemo_rl/algorithms/grpo.py, "
        "nemo_rl/utils/logger.py; legacy lengths v0.6.0 @ 5fb588932b "
        "nemo_rl/experience/rollouts.py"
    ),
    prefixes=("train/", ""),
    caveats={
        "kl_tok_mean": (
            "nemo-rl: gen_kl_error uses loss_fn.reference_policy_kl_type (k3 by default; "
            "k1/k2 if configured -- k2 is biased) between the generation and pi_prev"
        ),
    },
    enable="NeMo-RL logs gen_kl_error whenever generation log-probs are returned (GRPO)",
)
