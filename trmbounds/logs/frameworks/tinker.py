"""tinker-cookbook (thinking-machines-lab/tinker-cookbook).

Read from thinking-machines-lab/tinker-cookbook @ 9dfcc3a2cf44432d621a01005073dc6d76a1e87a
(2026-08-19):

- ``tinker_cookbook/rl/metrics.py::compute_kl_sample_train``:
  ``optim/kl_sample_train_v1`` = token mean of (sampling logprob - training logprob)
  (k1), ``optim/kl_sample_train_v2`` = token mean of k2 (biased; not used);
- ``tinker_cookbook/rl/metric_util.py``: ``env/all/ac_tokens_per_turn`` (action tokens
  per turn), ``env/all/total_ac_tokens``; no maximum length;
- ``metrics.jsonl``: flat ``{"step": i, ...}`` rows.
"""

from ._core import Preset

PRESET = Preset(
    "tinker",
    {
        "T_mean": ("env/all/ac_tokens_per_turn",),
        "kl_tok_mean": ("optim/kl_sample_train_v1",),
    },
    source=(
        "thinking-machines-lab/tinker-cookbook @ 9dfcc3a2cf (2026-08-19): "
        "tinker_cookbook/rl/metrics.py, tinker_cookbook/rl/metric_util.py"
    ),
    caveats={
        "T_mean": (
            "tinker: env/all/ac_tokens_per_turn is the mean response length only for "
            "single-turn environments"
        ),
        "kl_tok_mean": (
            "tinker: kl_sample_train_v1 is the token mean of k1 (unbiased, can be negative)"
        ),
    },
    notes=(
        "tinker logs no maximum response length: pass --length MAX_TOKENS (the generation "
        "cap, the horizon of the bounds)",
    ),
)
