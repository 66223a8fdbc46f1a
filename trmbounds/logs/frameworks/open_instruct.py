r"""open-instruct (allenai/open-instruct) ``grpo_fast.py``.

Read from allenai/open-instruct @ e6c3044aa6201c8bfa4573c1b03142af599e730d (2026-08-20):

- ``open_instruct/grpo_utils.py::compute_vllm_local_debug_metrics``, called in
  ``open_instruct/grpo_fast.py`` for every micro-batch of the training loop with
  ``local_logprobs`` = the policy being trained (its forward pass for the loss, after
  the optimizer steps of the step's earlier mini-batches) and ``vllm_logprobs`` = the
  rollout engine's, both masked to response tokens:
  ``debug/vllm_vs_local_logprob_diff_{mean,max,std}`` = token mean / max / std of
  |log pi_local(y) - log pi_vllm(y)| over the sampled response tokens, and
  ``debug/vllm_local_reverse_kl`` = token mean of
  p_vllm(y) * (log p_vllm(y) - log pi_local(y)): k1 of KL(pi_vllm || pi_local) weighted
  once more by p_vllm(y) -- not an estimator of that KL (the token is already drawn from
  pi_vllm), so it is not read;
- ``open_instruct/utils.py::MetricsTracker.update`` overwrites: each rank reports the
  values of the LAST micro-batch it processed; ``grpo_fast.py`` averages them over ranks
  and calls ``wandb.log(metrics, step=training_step)`` (wandb only, with
  ``--with_tracking``); ``global_step`` there counts episodes, not steps;
- ``open_instruct/data_loader.py``: ``val/sequence_lengths`` (mean) and
  ``val/sequence_lengths_max`` = len of each generated response (tokens).
"""

from ._core import Preset

PRESET = Preset(
    "open-instruct",
    {
        "T_max": ("val/sequence_lengths_max",),
        "T_mean": ("val/sequence_lengths",),
        "logp_diff_max": ("debug/vllm_vs_local_logprob_diff_max",),
        "logp_diff_mean": ("debug/vllm_vs_local_logprob_diff_mean",),
    },
    source=(
        "allenai/open-instruct @ e6c3044aa6 (2026-08-20): open_instruct/grpo_fast.py, "
        "open_instruct/grpo_utils.py, open_instruct/utils.py, open_instruct/data_loader.py"
    ),
    # global_step counts episodes (grpo_fast.py); wandb's step is training_step
    step_columns=("training_step", "_step", "step"),
    caveats={
        "logp_diff_max": (
            "open-instruct: debug/vllm_vs_local_logprob_diff_* is |log pi_trained - log "
            "pi_vllm| of the last micro-batch each rank trained on in the step (drift of the "
            "step's earlier mini-batches included), averaged over ranks: the _max is not the "
            "step's maximum, and a detector, not a bound on TV"
        ),
    },
    notes=(
        "open-instruct's debug/vllm_local_reverse_kl (token mean of p_vllm(y)·(log p_vllm(y) "
        "- log pi(y))) is not a KL estimate and is not read (docs/logs.md)",
    ),
    enable=(
        "open-instruct's grpo_fast.py logs debug/vllm_vs_local_logprob_diff_* at every "
        "training step, to wandb only (--with_tracking)"
    ),
)
