"""verl (verl-project/verl, formerly volcengine/verl).

Read from verl-project/verl @ 1dda039b9c6311889a9c9a26040677e1254814f9 (2026-08-22,
0.10.0.dev; same names in the v0.7.1, v0.8.0 and v0.9.0 tags):

- ``verl/trainer/ppo/rollout_corr_helper.py``: prefix ``rollout_corr/``; ``kl`` (token
  mean of k1 = log pi_roll - log pi_old), ``k3_kl`` (token mean of k3); per rejection
  option O (``rollout_rs``: token_k1..3, seq_sum_k1..3, seq_mean_k1..3, seq_max_k2,
  seq_max_k3; since 97eac9048, v0.7.1) ``rollout_rs_O_mean|max|seq_mean|...``:
  ``rollout_rs_seq_sum_k3_seq_mean`` = mean over sequences of sum_t k3,
  ``rollout_rs_seq_max_k2_max`` / ``rollout_rs_token_k2_max`` = max token k2,
  ``rollout_rs_seq_max_k3_max`` / ``rollout_rs_token_k3_max`` = max token k3;
  ``rollout_rs_seq_masked_fraction`` = fraction of sequences with a masked token
  (v0.6.1 - v0.7.0: masked by the IS-ratio rejection, ``rollout_rs`` token / sequence /
  geometric, ``compute_rollout_rejection_mask`` @ v0.7.0 = f9c855f7cf, lines 123, 179-188).
- ``verl/utils/debug/metrics.py::calculate_debug_metrics``:
  ``training/rollout_probs_diff_max|mean`` = max/mean |exp(old_log_probs) -
  exp(rollout_log_probs)| over response tokens (not logged in bypass mode).
- ``verl/trainer/ppo/metric_utils.py::compute_data_metrics``: ``response_length/max|mean``,
  ``response_length/clip_ratio`` = mean(response_length == max_response_length), the
  width the rollout pads responses to (the configured response length): where it is
  > 0, ``response_length/max`` is the generation cap.
- ``verl/utils/tracking.py``: file logger ``{"step": N, "data": {...}}``, opened "wb".

Legacy (v0.6.0, ``verl/trainer/ppo/mismatch_helper.py`` @ 4424616d7, 2025-10-27):
prefix ``mismatch/`` with ``mismatch_kl``, ``mismatch_k3_kl``,
``rollout_is_seq_masked_fraction`` (sequences masked by the IS mask); renamed by
418f964ab (PR #3984, 2025-11-07, v0.6.1).
"""

from ._core import Preset

_RC = "rollout_corr/"

PRESET = Preset(
    "verl",
    {
        "T_max": ("response_length/max",),
        "T_mean": ("response_length/mean",),
        # mean(response_length == responses.shape[-1]): > 0 means the longest response
        # reached the padded width, the configured data.max_response_length
        "T_clip": ("response_length/clip_ratio",),
        "kl_tok_mean": (
            _RC + "k3_kl",
            "mismatch/mismatch_k3_kl",  # v0.6.0
            # k1 = -log rho: also unbiased for the token-mean KL(pi_roll || pi_old)
            # (higher variance; a batch value can be negative)
            _RC + "kl",
            "mismatch/mismatch_kl",  # v0.6.0
        ),
        "kl_seq": (_RC + "rollout_rs_seq_sum_k3_seq_mean",),
        "tv_lb": ("training/rollout_probs_diff_max",),
        "prob_diff_mean": ("training/rollout_probs_diff_mean",),
        "k2_max": (_RC + "rollout_rs_seq_max_k2_max", _RC + "rollout_rs_token_k2_max"),
        "kl_proxy_max": (_RC + "rollout_rs_seq_max_k3_max", _RC + "rollout_rs_token_k3_max"),
        "reject_frac": (
            _RC + "rollout_rs_seq_masked_fraction",
            "mismatch/rollout_is_seq_masked_fraction",  # v0.6.0: the IS mask
        ),
    },
    source=(
        "verl-project/verl @ 1dda039b9c (0.10.0.dev, 2026-08-22; names unchanged since v0.7.1): "
        "verl/trainer/ppo/rollout_corr_helper.py, verl/utils/debug/metrics.py, "
        "verl/trainer/ppo/metric_utils.py, verl/utils/tracking.py; legacy v0.6.0 "
        "verl/trainer/ppo/mismatch_helper.py @ 4424616d7"
    ),
    caveats={
        "k2_max": (
            "verl: in bypass mode the rollout_corr/ metrics are computed per micro-batch with "
            "the current policy and averaged, so a '_max' column is a mean of micro-batch maxima"
        ),
        "kl_tok_mean": (
            "verl: decoupled mode compares pi_roll with pi_old (recomputed before the update), "
            "not with the updated policy; verl <= 2026-04 (legacy workers) averaged these "
            "metrics (rollout_corr/; mismatch/ in v0.6) over micro-batches"
        ),
        "T_max": (
            "verl: response_length counts the response part of the attention mask, so in "
            "multi-turn runs it includes tool/observation tokens (conservative for T)"
        ),
        "reject_frac": (
            "verl: the masked fraction is that of sequences with a token masked by any "
            "rollout_rs option (divergence-based options since v0.7.1); in v0.6.0 - v0.7.0 "
            "rollout_rs is ratio-based (token/sequence/geometric IS-ratio rejection; v0.6.0: "
            "mismatch/rollout_is_seq_masked_fraction)"
        ),
    },
    notes=(
        "verl's file logger opens its .jsonl with 'wb': a restarted run truncates the file, "
        "so steps before the restart are lost unless VERL_FILE_LOGGER_PATH changes",
    ),
    enable=(
        "verl logs rollout_corr/* when algorithm.rollout_correction is configured (rollout_is "
        "and/or rollout_rs) and the rollout returns log-probs "
        "(actor_rollout_ref.rollout.calculate_log_probs)"
    ),
)
