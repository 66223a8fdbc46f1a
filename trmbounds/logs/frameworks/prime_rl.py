"""prime-rl (PrimeIntellect-ai/prime-rl).

Read from PrimeIntellect-ai/prime-rl @ 559b44772e471d1538537b8805cc77f3824a5e64
(2026-08-21, 0.8.0):

- ``src/prime_rl/trainer/rl/loss.py``: ``mismatch_kl = rho - log rho - 1`` (k3) per
  token; ``src/prime_rl/trainer/rl/train.py`` gathers the step's loss-mask tokens into
  ``mismatch_kl/all`` -> ``mismatch_kl/all/{mean,max,std}`` = token mean / token max
  of k3 over the step (since 46653c1d7, PR #2478, 2026-05-18; before it
  ``mismatch_kl/mean`` / ``/max`` were a mean / max over sequences of per-sequence
  means);
- ``is_masked/mean``: fraction of tokens masked by the DPPO probability-difference
  trust region (per sample, then mean over samples);
- orchestrator (``src/prime_rl/orchestrator/orchestrator.py``, ``metrics.py``):
  ``train/agg/{all,effective}/num_output_tokens/{mean,max,min,p10,p90}`` per episode;
- ``src/prime_rl/monitors/``: ``<output_dir>/metrics.jsonl``, flat rows
  ``{"step": N, ...}`` appended by the trainer (several rows per step) and the
  orchestrator -- rows that share a step are merged.
"""

from ._core import Preset

PRESET = Preset(
    "prime-rl",
    {
        "T_max": (
            "train/agg/effective/num_output_tokens/max",
            "train/agg/all/num_output_tokens/max",
        ),
        "T_mean": (
            "train/agg/effective/num_output_tokens/mean",
            "train/agg/all/num_output_tokens/mean",
        ),
        "kl_tok_mean": ("mismatch_kl/all/mean", "mismatch_kl/mean"),
        "kl_proxy_max": ("mismatch_kl/all/max", "mismatch_kl/max"),
        "reject_frac": ("is_masked/mean",),
    },
    column_status={"mismatch_kl/mean": "proxy"},  # before PR #2478: seq-mean-token-mean
    source=(
        "PrimeIntellect-ai/prime-rl @ 559b44772e (0.8.0, 2026-08-21): "
        "src/prime_rl/trainer/rl/loss.py, src/prime_rl/trainer/rl/train.py, "
        "src/prime_rl/orchestrator/orchestrator.py, src/prime_rl/monitors/"
    ),
    caveats={
        "kl_tok_mean": (
            "prime-rl: mismatch_kl is k3 with the trainer's weights before the step's update; "
            "with async inference it includes staleness. The legacy mismatch_kl/mean "
            "(before PR #2478) is a mean of per-sequence means: a proxy"
        ),
        "reject_frac": (
            "prime-rl: is_masked/mean is the mean over samples of the token fraction masked "
            "by the DPPO probability-difference trust region"
        ),
        "T_max": (
            "prime-rl: num_output_tokens is the episode's output tokens summed over turns "
            "(definition in the verifiers library)"
        ),
    },
)
