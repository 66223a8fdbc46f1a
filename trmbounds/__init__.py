"""trmbounds: error bounds of Trust Region Masking for long-horizon LLM RL.

Evaluate every bound of Li et al., *Trust Region Masking for Long-Horizon LLM
Reinforcement Learning* (arXiv:2512.23075), from divergence statistics between the
rollout policy and the trained policy.

>>> import trmbounds
>>> r = trmbounds.evaluate(trmbounds.Stats(T=4096, kl_max=1e-4, tv_max=5e-3,
...                                        kl_seq=0.01, tv_seq=0.05))
>>> r.tightest, round(r.unified, 3)
('mix_tv', 4.096)
"""

from . import bounds
from .errors import InputFileError, StatsError, TrmboundsError
from .stats import Result, Stats, evaluate, load_per_position, load_stats

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "bounds",
    "Stats",
    "Result",
    "evaluate",
    "load_stats",
    "load_per_position",
    "TrmboundsError",
    "StatsError",
    "InputFileError",
]
