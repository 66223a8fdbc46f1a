"""AReaL (areal-project/AReaL, formerly inclusionAI/AReaL).

Read from areal-project/AReaL @ cbff54d645d2cd8ee1f1c358a82f3f473588433d (2026-08-22,
2.0.0), ``areal/trainer/ppo/actor.py`` (keys from ``areal/utils/stats_tracker.py``:
scope ``ppo_actor``, then ``update``; a stat is logged as ``/avg``, ``/min``, ``/max``
over its denominator mask):

- ``_log_proximal_approximation_stats`` (scope ``compute_logp``):
  ``kl_div_direct`` (k1), ``kl_div_taylor`` (k2), ``kl_div_dual`` (k3) with log rho =
  logprobs (current policy) - old_logp, only when per-token ``versions`` are present;
- ``rs_filtered_fraction``: token fraction filtered by the decoupled loss' rejection
  sampling;
- ``seq_len`` = prompt + response length (no response-length metric).

old_logp is the inference log-prob unless ``recompute_logprob=True`` without the
decoupled loss (then these compare with pi_old: policy drift, not mismatch).
"""

from ._core import Preset

_U = "ppo_actor/update/"
_C = _U + "compute_logp/"

PRESET = Preset(
    "areal",
    {
        "T_max": ("ppo_actor/seq_len/max",),
        "kl_tok_mean": (_C + "kl_div_dual/avg", _C + "kl_div_direct/avg"),
        "k2_max": (_C + "kl_div_taylor/max",),
        "kl_proxy_max": (_C + "kl_div_dual/max",),
        "reject_frac": (_U + "rs_filtered_fraction",),
    },
    source=(
        "areal-project/AReaL @ cbff54d645 (2.0.0, 2026-08-22): areal/trainer/ppo/actor.py, "
        "areal/utils/stats_tracker.py"
    ),
    caveats={
        "T_max": (
            "areal: ppo_actor/seq_len counts prompt + response tokens: an upper bound on the "
            "response length (conservative for T); --length VALUE gives a tighter T"
        ),
        "kl_tok_mean": (
            "areal: compute_logp/kl_div_* compare the current policy with old_logp; with "
            "recompute_logprob and no decoupled loss old_logp is pi_old (drift, not mismatch)"
        ),
    },
    enable=(
        "AReaL logs ppo_actor/update/compute_logp/kl_div_* when per-token policy versions "
        "are present (asynchronous rollouts)"
    ),
)
