"""``trmbounds eval``: every bound, and their minimum, from divergence statistics."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import TrmboundsError
from ..stats import Stats, evaluate, load_per_position, load_stats
from ._common import (
    ADV_RANGE_OPT,
    CONSTANTS_OPT,
    JSON_OPT,
    KL_MAX_OPT,
    KL_SEQ_OPT,
    REWARD_RANGE_OPT,
    T_OPT,
    TV_MAX_OPT,
    TV_SEQ_OPT,
    Constants,
    console,
    print_json,
)
from ._render import in_flags

EPILOG = """
Examples:

  trmbounds eval --T 8192 --kl-max 0.01

  trmbounds eval --T 4096 --kl-max 1e-4 --tv-max 5e-3 \\
      --kl-seq 0.01 --tv-seq 0.05

  trmbounds eval --T 4096 --kl-max 1e-4 --per-position dbar.npy \\
      --constants sharp

  trmbounds eval --stats measured.json --json
"""


#: A per-step metric log (what `check` reads), not a statistics file.
_LOG_SUFFIXES = (".jsonl", ".csv", ".parquet")


def _load(path: Path) -> Stats:
    """``load_stats``, with the causes a user meets said in terms of --stats."""
    if path.is_dir():
        raise TrmboundsError(
            f"--stats {path} is a directory: give a statistics file (.json, "
            "docs/stats-file.md), e.g. one written by trmbounds measure"
        )
    log = f"use `trmbounds check {path}` for a training log"
    if path.exists() and (path.suffix.lower() in _LOG_SUFFIXES or "tfevents" in path.name):
        raise TrmboundsError(
            f"--stats {path} looks like a per-step metric log, not a statistics file: {log}"
        )
    try:
        return load_stats(path)
    except TrmboundsError as exc:
        # several JSON documents, one per line: a JSONL metric log with another name
        if "Extra data" in str(exc):
            raise TrmboundsError(
                f"--stats {path} holds one JSON record per line, like a per-step metric "
                f"log, not one statistics object: {log}"
            ) from None
        raise


def build_stats(
    stats_file: Path | None,
    T: int | None,
    kl_max: float | None,
    tv_max: float | None,
    kl_seq: float | None,
    tv_seq: float | None,
    per_position: Path | None,
    adv_range: float | None,
    reward_range: tuple[float, float] | None,
) -> tuple[Stats, str | None]:
    """Merge a statistics file with command-line values (the command line wins); also
    say where the horizon T comes from when it is not the file's own T."""
    if adv_range is not None and reward_range is not None:
        raise TrmboundsError("give --adv-range or --reward-range, not both")
    overrides: dict = {
        k: v
        for k, v in dict(T=T, kl_max=kl_max, tv_max=tv_max, kl_seq=kl_seq, tv_seq=tv_seq).items()
        if v is not None
    }
    if per_position is not None:
        overrides["per_position"] = load_per_position(per_position)
    if adv_range is not None:
        overrides["adv_range"] = adv_range
        overrides["reward_range"] = None
    if reward_range is not None:
        overrides["reward_range"] = reward_range
    if stats_file is not None:
        from ..logs.verdict import stats_at_horizon

        base = _load(stats_file)
        # The horizon, by the rule `check` uses on the same file (one function): --T,
        # else the generation cap the file records (trmbounds measure), else its T; never
        # below its longest measured response. Positions past the per-position array are
        # unknown, and the bounds fill them with the value that holds there.
        T_cli = overrides.pop("T", None)
        if overrides:
            with in_flags(_flags(overrides)):
                base = base.replace(**overrides)
        base, _src, note = stats_at_horizon(base, T_cli)
        return base, note
    if T is None:
        raise TrmboundsError("missing --T (the response length), or give --stats FILE")
    if kl_max is None and tv_max is None:
        raise TrmboundsError("give --kl-max or --tv-max (or --stats FILE): every bound needs one")
    with in_flags(_flags(overrides)):
        return Stats(**overrides), None


def _flags(overrides: dict) -> dict[str, str]:
    """The flags of the values given on the command line (errors name them)."""
    names = ("kl_max", "tv_max", "kl_seq", "tv_seq", "adv_range", "reward_range")
    return {k: "--" + k.replace("_", "-") for k in names if k in overrides}


app = typer.Typer(add_completion=False)


@app.command(
    "eval",
    epilog=EPILOG,
    short_help="Every TRM error bound, and their minimum B*, from statistics.",
)
def eval_cmd(
    T: T_OPT = None,
    kl_max: KL_MAX_OPT = None,
    tv_max: TV_MAX_OPT = None,
    kl_seq: KL_SEQ_OPT = None,
    tv_seq: TV_SEQ_OPT = None,
    per_position: Annotated[
        Path | None,
        typer.Option(
            "--per-position",
            help="File (.npy, .csv, .json) with D̄_t, t = 1..T, for the Adaptive bounds.",
            show_default=False,
        ),
    ] = None,
    stats: Annotated[
        Path | None,
        typer.Option(
            "--stats",
            help="Statistics JSON file (schema in docs/stats-file.md); flags override its values.",
            show_default=False,
        ),
    ] = None,
    adv_range: ADV_RANGE_OPT = None,
    reward_range: REWARD_RANGE_OPT = None,
    constants: CONSTANTS_OPT = Constants.paper,
    json: JSON_OPT = False,
) -> None:
    """Evaluate every TRM error bound, and the unified minimum B*, from divergence statistics.

    Missing statistics are filled only with conservative upper bounds, and the output
    says which. Values are in reward units (multiplied by the advantage range).
    """
    s, horizon = build_stats(
        stats, T, kl_max, tv_max, kl_seq, tv_seq, per_position, adv_range, reward_range
    )
    result = evaluate(s, constants=constants.value)
    if json:
        d = result.to_dict()
        if horizon:
            d["horizon"] = horizon
        print_json(d)
        return
    from ._render import render_result

    con = console()
    render_result(result, con)
    if horizon:
        con.print(horizon, markup=False)
