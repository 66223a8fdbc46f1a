"""Compatibility module: the presets now live in :mod:`trmbounds.logs.frameworks`.

One module per framework there; this module re-exports the public API so that
``from trmbounds.logs import presets`` keeps working.
"""

from __future__ import annotations

from .frameworks import (
    PRESETS,
    QUANTITIES,
    Preset,
    candidates,
    guess_preset,
    no_metric_message,
    notes_for,
    parse_maps,
    resolve,
    source_label,
    status_of,
)

__all__ = [
    "QUANTITIES",
    "PRESETS",
    "Preset",
    "parse_maps",
    "resolve",
    "guess_preset",
    "candidates",
    "status_of",
    "notes_for",
    "source_label",
    "no_metric_message",
]
