"""SkyRL (NovaSky-AI/SkyRL, ``skyrl/`` package).

Read from NovaSky-AI/SkyRL @ tag skyrl-v0.3.0 = f5bc3b78dfddfb352870d5d7430cd226e5785838
(2026-07-16; the same at a9564572eb, 2026-08-21):

- ``skyrl/train/trainer.py``: ``policy/rollout_train_logprobs_abs_diff_{max,min,mean,
  std}`` = over the batch's loss-mask tokens, |rollout_logprobs - action_log_probs|
  (pi_old, the policy forward pass before the update; ``_max`` since PR #1707), only when
  that forward pass runs: ``_skip_policy_forward`` skips it for ``policy_loss_type``
  rollout_is / dppo (``LOSSES_WITHOUT_OLD_LOGPROBS``,
  ``skyrl/backends/skyrl_train/utils/ppo_utils.py``) with rollout log-probs, no KL in
  the reward and no off-policy correction;
- ``skyrl/backends/skyrl_train/workers/worker.py`` (training forward/backward) ->
  ``workers/worker_utils.py::compute_minibatch_rollout_logprob_diff_metrics``:
  ``minibatch_rollout_logprobs_abs_diff_{mean,max,min}`` per micro-batch =
  |action_log_probs - rollout_logprobs| over loss-mask tokens, where
  ``action_log_probs`` is the policy being trained at that mini-batch (after the
  optimizer steps of the earlier mini-batches of the step: mismatch + drift); logged
  whenever the batch has rollout log-probs. ``reduce_metrics`` / ``all_reduce_metrics``
  take the max of ``_max`` over micro-batches, mini-batches, epochs and DP ranks and
  the plain mean of ``_mean`` over micro-batches; ``trainer.py`` prefixes ``policy/``;
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
        "logp_diff_max": (
            "policy/rollout_train_logprobs_abs_diff_max",
            "policy/minibatch_rollout_logprobs_abs_diff_max",
        ),
        "logp_diff_mean": (
            "policy/rollout_train_logprobs_abs_diff_mean",
            "policy/minibatch_rollout_logprobs_abs_diff_mean",
        ),
    },
    source=(
        "NovaSky-AI/SkyRL @ f5bc3b78df (skyrl-v0.3.0, 2026-07-16): skyrl/train/trainer.py, "
        "skyrl/backends/skyrl_train/workers/worker.py, "
        "skyrl/backends/skyrl_train/workers/worker_utils.py, "
        "skyrl/train/generators/utils.py"
    ),
    caveats={
        "logp_diff_max": (
            "skyrl: max |log-prob difference| is a detector, not a bound on TV; "
            "policy/rollout_train_logprobs_abs_diff_* compares the rollout with pi_old (the "
            "forward pass before the update), policy/minibatch_rollout_logprobs_abs_diff_* "
            "(read when the former is absent: rollout_is/dppo losses skip that pass) with the "
            "policy being trained at each mini-batch, so it includes the drift of the step's "
            "earlier mini-batches; its _mean is a plain mean of micro-batch means"
        ),
        "T_max": (
            "skyrl: generate/max_num_tokens counts observation tokens too (conservative); "
            "generate/max_assistant_tokens only the loss-mask tokens"
        ),
    },
    enable=(
        "SkyRL logs policy/minibatch_rollout_logprobs_abs_diff_* (and, when the policy "
        "forward pass runs, policy/rollout_train_logprobs_abs_diff_*) only when the generator "
        "returns rollout log-probs (training_input rollout_logprobs)"
    ),
)
