"""Per-token records of a measurement (packed: one flat array per quantity plus the
responses' offsets), and the per-token dump written from them."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputFileError, TrmboundsError
from ..stats import Stats

#: the per-token arrays of :class:`Records` (each of length ``n_tokens``, or ``None``)
TOKEN_FIELDS = (
    "kl",
    "tv",
    "missing_mass",
    "logp_roll",
    "logp_theta",
    "tokens",
    "kl_lo",
    "kl_hi",
    "tv_lo",
    "tv_hi",
    "reported_mass",
)


@dataclass
class Records:
    """Per-token measurements of N responses, **packed**: the tokens of response ``i``
    are entries ``offsets[i]:offsets[i + 1]`` of every per-token array (a CSR layout), so
    the records take memory in proportion to the tokens measured, whatever the spread of
    the lengths (N one-token responses and one T-token response hold N + T values, not
    N × T). ``T`` = :attr:`max_length` is only a number.

    ``kl``/``tv``/``missing_mass`` are exact full-vocabulary values at each context,
    ``logp_roll``/``logp_theta`` the sampled token's log-probabilities, ``tokens`` its id.

    From an engine's rollouts (``source == "intervals"``) the rollout distribution is
    known only on its top-k: ``kl_lo``/``kl_hi``/``tv_lo``/``tv_hi`` hold the certified
    per-token intervals, ``kl``/``tv`` their **upper ends** and ``missing_mass`` the
    upper end of the missing mass (:mod:`trmbounds.measure.intervals`), and
    ``reported_mass`` the probability the engine reported at each context.

    :meth:`from_padded` builds records from (N, T) arrays and a mask; :meth:`padded`
    gives such an array back (for small records: it is N × T).

    Examples
    --------
    >>> r = Records.from_padded(kl=np.array([[0.1, 0.2], [0.3, 9.0]]),
    ...                         mask=np.array([[True, True], [True, False]]))
    >>> r.kl.tolist(), r.offsets.tolist(), r.lengths.tolist(), r.max_length
    ([0.1, 0.2, 0.3], [0, 2, 3], [2, 1], 2)
    >>> r.seq("kl", 1).tolist(), r.padded("kl").tolist()
    ([0.3], [[0.1, 0.2], [0.3, 0.0]])
    """

    kl: np.ndarray
    tv: np.ndarray
    missing_mass: np.ndarray
    logp_roll: np.ndarray
    logp_theta: np.ndarray
    #: (N + 1,) int64: response ``i`` is ``[offsets[i], offsets[i + 1])``
    offsets: np.ndarray
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

    def __post_init__(self) -> None:
        off = np.asarray(self.offsets)
        if off.ndim != 1 or off.size < 1 or not np.issubdtype(off.dtype, np.integer):
            raise TrmboundsError("Records.offsets must be a 1-D integer array of N + 1 offsets")
        off = off.astype(np.int64, copy=False)
        if off[0] != 0 or (off.size > 1 and (np.diff(off) < 0).any()):
            raise TrmboundsError("Records.offsets must start at 0 and never decrease")
        self.offsets = off
        n = int(off[-1])
        for name in TOKEN_FIELDS:
            a = getattr(self, name)
            if a is None:
                continue
            a = np.asarray(a, dtype=np.int64 if name == "tokens" else np.float64)
            if a.shape != (n,):
                raise TrmboundsError(
                    f"Records.{name} must hold one value per token, shape ({n},); got {a.shape}"
                )
            setattr(self, name, a)
        self.prompt_index = np.asarray(self.prompt_index, dtype=np.int64)
        if self.prompt_index.shape != (off.size - 1,):
            raise TrmboundsError(
                f"Records.prompt_index must have shape ({off.size - 1},), "
                f"got {self.prompt_index.shape}"
            )

    # ------------------------------------------------------------------ layout
    @property
    def n_sequences(self) -> int:
        return int(self.offsets.size - 1)

    @property
    def n_tokens(self) -> int:
        return int(self.offsets[-1])

    @property
    def lengths(self) -> np.ndarray:
        """Each response's number of tokens (the EOS token included), shape (N,)."""
        return np.diff(self.offsets)

    @property
    def max_length(self) -> int:
        """T: the longest response (0 without responses)."""
        return int(self.lengths.max()) if self.n_sequences else 0

    @property
    def row(self) -> np.ndarray:
        """The response each token belongs to, shape (n_tokens,)."""
        return np.repeat(np.arange(self.n_sequences), self.lengths)

    @property
    def position(self) -> np.ndarray:
        """Each token's 0-based position in its response, shape (n_tokens,)."""
        return np.arange(self.n_tokens) - np.repeat(self.offsets[:-1], self.lengths)

    @property
    def log_ratio(self) -> np.ndarray:
        r""":math:`\log\rho_t = \log\pi_\theta(y_t|c_t) - \log\pi_{roll}(y_t|c_t)` per token."""
        return self.logp_theta - self.logp_roll

    def seq(self, name: str, i: int) -> np.ndarray:
        """The per-token values ``name`` of response ``i`` (a view)."""
        a = getattr(self, name)
        return a[self.offsets[i] : self.offsets[i + 1]]

    def padded(self, name: str, fill: float = 0.0) -> np.ndarray:
        """The per-token values ``name`` as an (N, T) array, ``fill`` after each response's
        end. It takes N × T values: for small records (tests, plots), not for aggregation."""
        a = getattr(self, name)
        out = np.full((self.n_sequences, self.max_length), fill, dtype=a.dtype)
        out[self.row, self.position] = a
        return out

    def padded_mask(self) -> np.ndarray:
        """(N, T) booleans: ``True`` on each response's tokens (see :meth:`padded`)."""
        return np.arange(self.max_length)[None, :] < self.lengths[:, None]

    def row_groups(self, max_values: int = 1 << 20) -> Iterator[np.ndarray]:
        """Indices of the responses in groups sorted by length, each at most
        ``max_values`` values once padded to its longest (a longer response alone), for
        the per-response rules that work on padded rows (:mod:`trmbounds.trm`)."""
        lengths = self.lengths
        order = np.argsort(lengths, kind="stable")
        start = 0
        n = order.size
        while start < n:
            end = start + 1
            # sorted by length: the group grows while (members) x (the newest) fits
            while end < n and (end + 1 - start) * max(int(lengths[order[end]]), 1) <= max_values:
                end += 1
            yield order[start:end]
            start = end

    def padded_rows(
        self, name: str | np.ndarray, rows: np.ndarray, fill: float = 0.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """``name`` (a field, or a per-token array) for responses ``rows`` as a
        (len(rows), their longest) array, and its mask."""
        a = getattr(self, name) if isinstance(name, str) else name
        L = self.lengths[rows]
        width = int(L.max()) if L.size else 0
        mask = np.arange(width)[None, :] < L[:, None]
        out = np.full((len(rows), width), fill, dtype=a.dtype)
        idx = np.repeat(self.offsets[rows], L) + (
            np.arange(int(L.sum())) - np.repeat(np.cumsum(L) - L, L)
        )
        out[mask] = a[idx]
        return out, mask

    @classmethod
    def from_padded(
        cls,
        kl: Any = None,
        tv: Any = None,
        missing_mass: Any = None,
        logp_roll: Any = None,
        logp_theta: Any = None,
        mask: Any = None,
        prompt_index: Any = None,
        tokens: Any = None,
        **kw: Any,
    ) -> Records:
        """Records from (N, T) arrays and their (N, T) ``mask`` (``True`` on a response's
        tokens, which come first in each row). Arrays left out are zeros (``tokens``: -1),
        ``prompt_index`` defaults to ``0..N-1``; other keywords (``source``, ``kl_lo``, ...)
        are passed on, their arrays (N, T) too."""
        given = [a for a in (kl, tv, missing_mass, logp_roll, logp_theta, tokens) if a is not None]
        shape = np.shape(mask) if mask is not None else np.shape(given[0])
        m = np.ones(shape, bool) if mask is None else np.asarray(mask, dtype=bool)
        if m.ndim != 2:
            raise TrmboundsError(f"mask must have shape (N, T), got {m.shape}")
        L = m.sum(1)
        if not np.array_equal(m, np.arange(m.shape[1])[None, :] < L[:, None]):
            raise TrmboundsError("mask: each response's tokens must come first in its row")

        def pack(a, fill=0.0, dtype=np.float64):
            if a is None:
                return np.full(int(L.sum()), fill, dtype=dtype)
            a = np.asarray(a, dtype=dtype)
            if a.shape != m.shape:
                raise TrmboundsError(f"array shape {a.shape} does not match mask {m.shape}")
            return a[m]

        extra = {k: pack(v) if k in TOKEN_FIELDS and v is not None else v for k, v in kw.items()}
        return cls(
            kl=pack(kl),
            tv=pack(tv),
            missing_mass=pack(missing_mass),
            logp_roll=pack(logp_roll),
            logp_theta=pack(logp_theta),
            offsets=np.concatenate([[0], np.cumsum(L)]).astype(np.int64),
            prompt_index=np.arange(m.shape[0]) if prompt_index is None else prompt_index,
            tokens=pack(tokens, -1, np.int64),
            **extra,
        )


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
            off = records.offsets
            for i in range(records.n_sequences):
                a, b = int(off[i]), int(off[i + 1])
                rec: dict[str, Any] = {
                    "prompt_index": int(records.prompt_index[i]),
                    "token_ids": records.tokens[a:b].tolist(),
                }
                for k, v in cols.items():
                    rec[k] = v[a:b].tolist()
                fh.write(json.dumps(rec) + "\n")
    except OSError as exc:
        raise InputFileError(f"cannot write {path}: {exc.strerror or exc}") from None
