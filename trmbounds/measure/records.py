"""Per-token records of a measurement, and the per-token dump written from them."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputFileError
from ..stats import Stats


@dataclass
class Records:
    """Per-token measurements of N responses, padded to the longest (shape (N, T)).

    ``mask`` is ``True`` on real response tokens (the EOS token included);
    ``kl``/``tv``/``missing_mass`` are exact full-vocabulary values at each context,
    ``logp_roll``/``logp_theta`` the sampled token's log-probabilities (0 on padding).

    From an engine's rollouts (``source == "intervals"``) the rollout distribution is
    known only on its top-k: ``kl_lo``/``kl_hi``/``tv_lo``/``tv_hi`` hold the certified
    per-token intervals, ``kl``/``tv`` their **upper ends** and ``missing_mass`` the
    upper end of the missing mass (:mod:`trmbounds.measure.intervals`), and
    ``reported_mass`` the probability the engine reported at each context.
    """

    kl: np.ndarray
    tv: np.ndarray
    missing_mass: np.ndarray
    logp_roll: np.ndarray
    logp_theta: np.ndarray
    mask: np.ndarray
    prompt_index: np.ndarray
    tokens: np.ndarray
    support_fixups: int = 0
    #: vocabulary size of the scored models (0 when unknown)
    vocab_size: int = 0
    #: ``"exact"`` (both full distributions) or ``"intervals"`` (an engine's top-k)
    source: str = "exact"
    kl_lo: np.ndarray | None = None
    kl_hi: np.ndarray | None = None
    tv_lo: np.ndarray | None = None
    tv_hi: np.ndarray | None = None
    reported_mass: np.ndarray | None = None
    #: rollouts sampled with top-k / top-p truncation (missing mass measured)
    truncated: bool = False

    @property
    def log_ratio(self) -> np.ndarray:
        r""":math:`\log\rho_t = \log\pi_\theta(y_t|c_t) - \log\pi_{roll}(y_t|c_t)` (0 on padding)."""
        return np.where(self.mask, self.logp_theta - self.logp_roll, 0.0)

    @property
    def lengths(self) -> np.ndarray:
        return self.mask.sum(1)


@dataclass
class Measurement:
    """What :func:`measure` returns: the statistics, the per-token records, warnings."""

    stats: Stats
    records: Records
    warnings: list[str] = field(default_factory=list)


def write_token_dump(records: Records, path: str | os.PathLike) -> None:
    """Write the per-token records as a JSONL per-token dump (one line per response).

    Each line holds the response's ``token_ids``, ``prompt_index`` and, per token,
    ``logp_roll`` / ``logp_theta`` (the sampled token's log-probabilities) and the
    exact ``kl_token`` / ``tv_token`` (and ``missing_mass_token``) of its context: the
    per-token dump format ``trmbounds check`` reads (``docs/logs.md``). The caller
    decides whether ``path`` may be overwritten.

    Records from an engine's rollouts carry no exact values: their lines hold the
    certified ``kl_lo``, ``kl_hi``, ``tv_lo``, ``tv_hi``, the ``reported_mass`` and,
    with truncated sampling, ``missing_mass_hi`` instead (``prompt_index`` is then the
    rollout's index in the file).
    """
    cols: dict[str, Any] = {
        "logp_roll": records.logp_roll,
        "logp_theta": records.logp_theta,
    }
    if records.source == "intervals":
        cols.update(
            kl_lo=records.kl_lo,
            kl_hi=records.kl_hi,
            tv_lo=records.tv_lo,
            tv_hi=records.tv_hi,
            reported_mass=records.reported_mass,
        )
        if records.truncated:
            cols["missing_mass_hi"] = records.missing_mass
    else:
        cols.update(
            kl_token=records.kl, tv_token=records.tv, missing_mass_token=records.missing_mass
        )
    try:
        with open(path, "w", encoding="utf-8") as fh:
            for i, L in enumerate(records.lengths):
                rec: dict[str, Any] = {
                    "prompt_index": int(records.prompt_index[i]),
                    "token_ids": [int(t) for t in records.tokens[i, :L]],
                }
                for k, v in cols.items():
                    rec[k] = [float(x) for x in v[i, :L]]
                fh.write(json.dumps(rec) + "\n")
    except OSError as exc:
        raise InputFileError(f"cannot write {path}: {exc.strerror or exc}") from None
