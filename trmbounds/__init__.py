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

import os as _os
import sys as _sys


def _interrupted_loading(signum, frame):  # pragma: no cover - exercised in a subprocess
    _os.write(2, b"Interrupted (Ctrl-C); no partial output was left.\n")
    _os._exit(130)


# The command line (the `trmbounds` script, `python -m trmbounds`): Ctrl-C while the
# modules load (numpy alone takes ~0.2 s) is one line and exit code 130, not a
# traceback. trmbounds.cli restores Python's own handler once loaded. A library import
# leaves the signal alone.
if _os.path.basename(_sys.argv[0] if _sys.argv else "") in ("trmbounds", "trmbounds.exe") or (
    getattr(_sys, "orig_argv", [])[1:3] == ["-m", "trmbounds"]
):
    import signal as _signal

    if _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:
        _signal.signal(_signal.SIGINT, _interrupted_loading)

from . import bounds  # noqa: E402
from .errors import InputFileError, StatsError, TrmboundsError  # noqa: E402
from .stats import Result, Stats, evaluate, load_per_position, load_stats  # noqa: E402

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
