"""The one error family of trmbounds.

Library code raises these; the command line turns them into a one-line message
and exit code 2.
"""

from __future__ import annotations

__all__ = ["TrmboundsError", "StatsError", "InputFileError"]


class TrmboundsError(ValueError):
    """Base class of every error trmbounds raises for a user mistake."""


class StatsError(TrmboundsError):
    """Divergence statistics that are invalid or contradict each other."""


class InputFileError(TrmboundsError):
    """A file that cannot be read, or whose content is malformed."""
