"""TRL (huggingface/trl) GRPOTrainer.

Read from huggingface/trl @ f2cd57710ae345ea6428ae95363267fcf38a3dc8 (2026-07-24,
1.10.0.dev0), ``trl/trainer/grpo_trainer.py``:

- ``completions/{mean,min,max}_length`` (model-generated tokens; with a tool mask,
  tool tokens excluded), ``completions/clipped_ratio``;
- only with ``use_vllm=True`` and ``vllm_importance_sampling_correction=True``
  (``trl/trainer/grpo_config.py``, default True): ``sampling/sampling_logp_difference/
  mean`` (mean over processes of per-process token means of |old_logps - vLLM logps|)
  and ``/max`` (global token max);
- ``GRPOTrainer.log`` averages every metric list since the last log
  (``logging_steps``), so a "max" is a mean of per-generation-batch maxima; one entry per
  generation batch, and ``_prepare_inputs`` generates every ``steps_per_generation *
  num_iterations`` micro-batches (``steps_per_generation`` defaults to
  ``gradient_accumulation_steps``): k = logging_steps * gradient_accumulation_steps /
  (steps_per_generation * num_iterations) entries per log, logging_steps by default.

Not TRL's: ``trm/acceptance``, the fraction of sequences kept by the TRM masks of
``trmbounds.integrations.trl.TRMGRPOTrainer`` (averaged like TRL's metrics).

HF Trainer callbacks (transformers ``integrations/integration_utils.py::rewrite_logs``)
prefix every key with ``train/`` (``eval_`` keys become ``eval/``) for TensorBoard and
wandb; the wandb step is ``train/global_step``. ``trainer_state.json``'s
``log_history`` keeps the raw names with ``step``.
"""

from ._core import Preset

PRESET = Preset(
    "trl",
    {
        "T_max": ("completions/max_length",),
        "T_mean": ("completions/mean_length",),
        "logp_diff_max": ("sampling/sampling_logp_difference/max",),
        "logp_diff_mean": ("sampling/sampling_logp_difference/mean",),
        "accept": ("trm/acceptance",),  # trmbounds' TRMGRPOTrainer, not TRL
    },
    source=(
        "huggingface/trl @ f2cd57710a (1.10.0.dev0, 2026-07-24): trl/trainer/grpo_trainer.py, "
        "trl/trainer/grpo_config.py; transformers integration_utils.py::rewrite_logs"
    ),
    prefixes=("", "train/", "eval/"),
    step_columns=("train/global_step", "step", "global_step", "_step"),
    caveats={
        "logp_diff_max": (
            "trl: every metric is averaged over the k generation batches since the last log, "
            "so sampling_logp_difference/max is a mean of k per-batch maxima; maxima are >= 0, "
            "so their mean is >= their maximum / k: the window's maximum can be up to k x the "
            "logged value (its k2 up to k² x), k = logging_steps with TRL's defaults "
            "(steps_per_generation = gradient_accumulation_steps, num_iterations = 1). Train "
            "with logging_steps=1 where the mismatch matters; max |log ratio| is a detector, "
            "not a bound on TV"
        ),
        "T_max": "trl: completions/max_length is averaged over logging_steps like every metric",
        "accept": (
            "trl: trm/acceptance is logged by trmbounds' TRMGRPOTrainer, not by TRL: the "
            "fraction of sequences its TRM-Max/TRM-Avg masks keep, averaged over the generation "
            "batches since the last log like TRL's metrics; TRL's own "
            "vllm_importance_sampling_mode mask is not counted in it"
        ),
    },
    enable=(
        "TRL logs sampling/sampling_logp_difference/* only with GRPOConfig(use_vllm=True, "
        "vllm_importance_sampling_correction=True)"
    ),
)
