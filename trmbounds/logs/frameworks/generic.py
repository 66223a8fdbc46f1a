"""``generic``: every quantity from the column of the same name, for your own logging."""

from ._core import QUANTITIES, Preset

_SKIP = (
    "step",
    "logp_roll",
    "logp_theta",
    "loss_mask",
    "kl_token",
    "tv_token",
    "kl_lo",
    "tv_lo",
    "reward",
    "group",
)  # per-token dump columns: not metric-log quantities

PRESET = Preset(
    "generic",
    {q: (q,) for q in QUANTITIES if q not in _SKIP} | {"T_max": ("T_max", "T")},
    source="trmbounds' own quantity names (docs/logs.md)",
)
