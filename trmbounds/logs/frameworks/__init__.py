r"""What each RL framework logs, mapped onto the paper's quantities, one module each.

Every framework's knowledge -- metric names (current and legacy), statuses, caveats,
the setting that turns its mismatch metric on, and the source (repository, file,
commit, version) it was read from -- lives in one small module of this package
(:mod:`.verl`, :mod:`.trl`, :mod:`.slime`, :mod:`.prime_rl`, :mod:`.skyrl`,
:mod:`.openrlhf`, :mod:`.areal`, :mod:`.nemo_rl`, :mod:`.roll`, :mod:`.ms_swift`,
:mod:`.miles`, :mod:`.tinker`, :mod:`.open_instruct`, :mod:`.generic`). A framework's
next rename touches its module and nothing else. ``docs/logs.md`` has a section per framework.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ...errors import TrmboundsError
from . import (
    areal,
    generic,
    miles,
    ms_swift,
    nemo_rl,
    open_instruct,
    openrlhf,
    prime_rl,
    roll,
    skyrl,
    slime,
    tinker,
    trl,
    verl,
)
from ._core import LENGTHS, NOT_METRICS, QUANTITIES, STEP_COLUMNS, Preset

__all__ = [
    "QUANTITIES",
    "PRESETS",
    "Preset",
    "parse_maps",
    "candidates",
    "resolve",
    "guess_preset",
    "status_of",
    "notes_for",
    "source_label",
    "no_metric_message",
    "LENGTHS",
    "NOT_METRICS",
    "STEP_COLUMNS",
]

#: Preset name -> :class:`Preset`, in the order auto-detection breaks ties.
PRESETS: dict[str, Preset] = {
    m.PRESET.name: m.PRESET
    for m in (
        verl, trl, slime, prime_rl, skyrl, openrlhf, areal, nemo_rl, roll, ms_swift, miles,
        tinker, open_instruct, generic,
    )
}  # fmt: skip


def parse_maps(maps: Iterable[str]) -> dict[str, str]:
    """Parse ``QUANTITY=COLUMN`` strings.

    Examples
    --------
    >>> parse_maps(["T_max=len/max", "surrogate=actor/pg_gain"])
    {'T_max': 'len/max', 'surrogate': 'actor/pg_gain'}
    >>> parse_maps(["kl=foo"])
    Traceback (most recent call last):
    ...
    trmbounds.errors.TrmboundsError: --map kl=foo: unknown quantity 'kl'; known: step, T, T_max, ...
    """
    out: dict[str, str] = {}
    for m in maps:
        q, sep, col = m.partition("=")
        q, col = q.strip(), col.strip()
        if not sep or not q or not col:
            raise TrmboundsError(f"--map {m!r}: expected QUANTITY=COLUMN")
        if q not in QUANTITIES:
            raise TrmboundsError(
                f"--map {m}: unknown quantity {q!r}; known: {', '.join(QUANTITIES)}"
            )
        out[q] = col
    return out


def candidates(preset: Preset, maps: Mapping[str, str]) -> dict[str, tuple[str, ...]]:
    """Candidate columns per quantity: ``--map`` first (and only), then the preset.

    Every name is tried with each of the preset's logger prefixes, prefix by prefix
    (HF Trainer frameworks: the raw name, then ``train/NAME``, then ``eval/NAME``).

    Examples
    --------
    >>> candidates(PRESETS["trl"], {})["T_max"]
    ('completions/max_length', 'train/completions/max_length', 'eval/completions/max_length')
    """
    out = {
        q: tuple(pre + c for pre in preset.prefixes for c in cs) for q, cs in preset.columns.items()
    }
    out["step"] = preset.step_columns
    for q, col in maps.items():
        out[q] = (col,)
    return out


def resolve(preset: Preset, maps: Mapping[str, str], columns: Iterable[str]) -> dict[str, str]:
    """Quantity -> the column it is read from, among ``columns`` present.

    Examples
    --------
    >>> r = resolve(PRESETS["verl"], {}, ["step", "response_length/max", "mismatch/mismatch_k3_kl"])
    >>> r == {"step": "step", "T_max": "response_length/max",
    ...       "kl_tok_mean": "mismatch/mismatch_k3_kl"}
    True
    """
    present = set(columns)
    out = {}
    for q, cands in candidates(preset, maps).items():
        for c in cands:
            if c in present:
                out[q] = c
                break
    return out


def _score(preset: Preset, columns: Iterable[str]) -> tuple[int, int, int]:
    """(mismatch metrics, lengths, step) columns the preset would actually read."""
    r = resolve(preset, {}, columns)
    metrics = {c for q, c in r.items() if q not in NOT_METRICS}
    lengths = {c for q, c in r.items() if q in LENGTHS}
    return len(metrics), len(lengths), int("step" in r)


def guess_preset(columns: Iterable[str]) -> Preset:
    """The preset that would read the most of ``columns`` (``generic`` if none reads any).

    Presets are scored on the columns :func:`resolve` would actually use -- mismatch
    metrics first, then response lengths, then the step column --; a tie goes to the
    earlier preset of :data:`PRESETS`.

    Examples
    --------
    >>> guess_preset(["_step", "train/mis_k3_kl"]).name
    'slime'
    >>> guess_preset(["train/global_step", "train/completions/max_length"]).name
    'trl'
    """
    cols = list(columns)
    best, score = PRESETS["generic"], (0, 0, 0)
    for name, p in PRESETS.items():
        s = _score(p, cols)
        if name == "generic" or s[:2] == (0, 0):
            continue
        if s > score:
            best, score = p, s
    if _score(PRESETS["generic"], cols)[:2] > score[:2]:
        best = PRESETS["generic"]
    return best


def status_of(preset: Preset, quantity: str, column: str | None = None) -> str:
    """The status of ``quantity`` read through ``preset`` (from ``column``, if given).

    Examples
    --------
    >>> status_of(PRESETS["prime-rl"], "kl_tok_mean", "mismatch_kl/all/mean")
    'estimate'
    >>> status_of(PRESETS["prime-rl"], "kl_tok_mean", "mismatch_kl/mean")  # before PR #2478
    'proxy'
    """
    if column is not None and column in preset.column_status:
        return preset.column_status[column]
    return preset.status.get(quantity, QUANTITIES[quantity][0])


def source_label(cols: Mapping[str, str], quantity: str) -> str:
    """Where a statistic comes from, with any transformation of the column spelled out.

    Examples
    --------
    >>> source_label({"logp_diff_max": "sampling/sampling_logp_difference/max"}, "k2_max")
    '½·(sampling/sampling_logp_difference/max)²'
    >>> source_label({"reject_frac": "rollout_corr/rollout_rs_seq_masked_fraction"}, "accept")
    '1 − rollout_corr/rollout_rs_seq_masked_fraction'
    >>> source_label({"kl_tok_mean": "k3", "T_mean": "len/mean"}, "kl_seq")
    'k3 × len/mean'
    """
    if quantity in cols:
        return cols[quantity]
    if quantity == "k2_max" and "logp_diff_max" in cols:
        return f"½·({cols['logp_diff_max']})²"
    if quantity == "accept" and "reject_frac" in cols:
        return f"1 − {cols['reject_frac']}"
    if quantity == "kl_seq" and "kl_tok_mean" in cols and "T_mean" in cols:
        return f"{cols['kl_tok_mean']} × {cols['T_mean']}"
    if quantity == "tv_lb" and "tv_max_seen" in cols:
        return cols["tv_max_seen"]
    return ""


def notes_for(preset: Preset, cols: Mapping[str, str]) -> list[str]:
    """The preset's notes and the caveats of the quantities read through it."""
    out = list(preset.notes)
    for q, text in preset.caveats.items():
        if (
            q in cols
            or (q == "k2_max" and "kl_proxy_max" in cols)
            or (q == "T_max" and "T_mean" in cols)
        ):
            if text not in out:
                out.append(text)
    return out


def no_metric_message(preset: Preset) -> str:
    """What to tell a user whose log has no mismatch metric for ``preset``.

    Examples
    --------
    >>> no_metric_message(PRESETS["tinker"])
    'tinker logged no mismatch metric'
    """
    what = (
        "no mismatch metric found"
        if preset.name == "generic"
        else (f"{preset.name} logged no mismatch metric")
    )
    return what + (f": {preset.enable}" if preset.enable else "")
