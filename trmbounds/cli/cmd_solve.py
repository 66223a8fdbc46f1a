"""``trmbounds solve``: the TRM threshold (or the length) that keeps B* within a budget."""

from __future__ import annotations

from typing import Annotated

import typer

from ..bounds import NAMES
from ..errors import TrmboundsError
from ._common import (
    ADV_RANGE_OPT,
    CONSTANTS_OPT,
    JSON_OPT,
    Constants,
    console,
    fmt,
    print_json,
)

EPILOG = """
Examples:

  trmbounds solve --T 4096 --budget-frac 0.1

  trmbounds solve --T 4096,8192,32768 --budget 0.05 --kl-avg 1e-8

  trmbounds solve --kl-max 1e-6 --budget-frac 0.1 --tv-ratio 0.5

  trmbounds solve --T 8192 --budget 0.1 --constants sharp --json
"""

_MEMBER_NAMES: dict[str | None, str] = {k: short for k, (_, short) in NAMES.items()} | {None: "—"}


def _lengths(values: list[str]) -> list[str]:
    """Split repeated and comma-separated --T values (validated by the library)."""
    out = []
    for v in values:
        parts = [t.strip() for t in v.split(",")]
        if any(not t for t in parts):
            raise TrmboundsError(f"--T {v!r}: an empty length between commas")
        out += [tok for t in parts for tok in t.split()]
    if not out:
        raise TrmboundsError("--T needs at least one length")
    return out


def _budget(budget: float | None, budget_frac: float | None, adv_range: float) -> float:
    if (budget is None) == (budget_frac is None):
        raise TrmboundsError("give --budget (reward units) or --budget-frac (of the range), one")
    if budget_frac is not None:
        if not budget_frac > 0:
            raise TrmboundsError(f"--budget-frac must be positive, got {budget_frac:g}")
        return budget_frac * adv_range
    if not budget > 0:
        raise TrmboundsError(f"--budget must be positive, got {budget:g}")
    return budget


# Loaded lazily by the root group (``Group.lazy_commands``): this module's own app.
app = typer.Typer(add_completion=False)


@app.command(
    "solve", epilog=EPILOG, short_help="The largest TRM threshold, or longest T, within a budget."
)
def solve_cmd(
    T: Annotated[
        list[str] | None,
        typer.Option(
            "--T",
            "-T",
            help="Response length(s): the largest TRM-Max threshold delta for each. Repeat "
            "the option or separate with commas.",
            show_default=False,
        ),
    ] = None,
    kl_max: Annotated[
        float | None,
        typer.Option(
            "--kl-max",
            help="A TRM-Max threshold delta: the longest response length it keeps within "
            "the budget.",
            show_default=False,
        ),
    ] = None,
    budget: Annotated[
        float | None,
        typer.Option(
            "--budget", help="Error budget beta in reward units (B* <= beta).", show_default=False
        ),
    ] = None,
    budget_frac: Annotated[
        float | None,
        typer.Option(
            "--budget-frac",
            help="Error budget as a fraction of the advantage range (beta = f * a).",
            show_default=False,
        ),
    ] = None,
    tv_ratio: Annotated[
        float | None,
        typer.Option(
            "--tv-ratio",
            help="Assume epsilon = r * sqrt(delta/2) with r in (0, 1] [default: 1, Pinsker's "
            "worst case].",
            show_default=False,
        ),
    ] = None,
    kl_avg: Annotated[
        float | None,
        typer.Option(
            "--kl-avg",
            help="Mean per-token KL: D_KL^seq = T * kl_avg instead of the worst case T * delta "
            "(needs delta >= kl_avg).",
            show_default=False,
        ),
    ] = None,
    adv_range: ADV_RANGE_OPT = None,
    constants: CONSTANTS_OPT = Constants.paper,
    json: JSON_OPT = False,
) -> None:
    """Solve for the TRM threshold, or the response length, that keeps B* within a budget.

    With --T: the largest TRM-Max threshold delta with B*(delta) <= beta at each length
    (and the largest TV threshold epsilon for the TV route alone). With --kl-max: the
    longest response length T with B*(T) <= beta. Every answer states the assumptions
    it rests on. --json prints one JSON document: with --T, {"results": [one object
    per length]}; with --kl-max, one object.
    """
    from .. import solve as S
    from ._render import in_flags

    if (T is None) == (kl_max is None):
        raise TrmboundsError(
            "give --T (for the largest threshold) or --kl-max (for the longest length), one"
        )
    a = 1.0 if adv_range is None else adv_range
    if not a > 0:
        raise TrmboundsError(f"--adv-range must be positive, got {a:g}")
    beta = _budget(budget, budget_frac, a)
    kw = dict(tv_ratio=tv_ratio, kl_avg=kl_avg, adv_range=a, constants=constants.value)
    flags = {"kl_max": "--kl-max", "kl_avg": "--kl-avg", "tv_ratio": "--tv-ratio"}
    if kl_max is not None:
        with in_flags(flags):
            res = S.max_length(kl_max, beta, **kw)
        if json:
            print_json(res.to_dict())
        else:
            _render_length(res, budget_frac)
        return
    with in_flags(flags):
        results = [S.max_kl_threshold(t, beta, **kw) for t in _lengths(T)]
    if json:
        print_json({"results": [r.to_dict() for r in results]})
        return
    _render_thresholds(results, budget_frac)


def _budget_text(beta: float, a: float, frac: float | None) -> str:
    share = (beta / a if frac is None else frac) * 100
    return f"β = {beta:g} ({share:.4g}% of the advantage range a = {a:g})"


def _vacuous_note(beta: float, a: float) -> str:
    return (
        f"Note: β = {beta:g} is at least the advantage range a = {a:g}, and a bound that "
        "large is vacuous: it guarantees nothing (docs/explore.md), so neither does an "
        "answer for this budget. Choose β < a, e.g. --budget-frac 0.1."
    )


def _distinct(x: float, y: float, beta: float) -> tuple[str, str]:
    """``x <= beta < y`` with as many significant digits as it takes for the text to say so.

    >>> _distinct(0.09999999983, 0.10000000012, 0.1)
    ('0.09999999983', '0.1000000001')
    >>> _distinct(0.0991, 0.1002, 0.1)
    ('0.0991', '0.1002')
    """
    for n in range(4, 18):
        a, b = f"{x:.{n}g}", f"{y:.{n}g}"
        if float(a) <= beta < float(b):
            return a, b
    return repr(x), repr(y)


def _render_thresholds(results, frac) -> None:
    from rich.table import Table

    from ._render import print_table

    r0 = results[0]
    con = console()  # prose wraps at the terminal's width (80 columns in a pipe)
    con.print(
        f"Largest TRM-Max threshold δ with B* ≤ {_budget_text(r0.budget, r0.adv_range, frac)}, "
        f"{r0.constants} constants"
    )
    if r0.vacuous_budget:
        con.print(_vacuous_note(r0.budget, r0.adv_range))
    table = Table(box=None, pad_edge=False)
    for col in ("T", "δ_max (KL)", "B* at δ_max", "tightest", "ε_max (TV route alone)"):
        table.add_column(col, justify="left" if col == "tightest" else "right")
    notes = []
    for r in results:
        tv = r.tv_route
        tv_text = fmt(tv.tv_max) if tv.status == "ok" else tv.status
        if r.status == "ok":
            table.add_row(str(r.T), fmt(r.kl_max), fmt(r.bound), _MEMBER_NAMES[r.tightest], tv_text)
        else:
            table.add_row(str(r.T), r.status, "—", "—", tv_text)
            notes.append(r.message)
        if tv.status == "any":
            notes.append(f"at T = {r.T} every ε meets the budget on the TV route")
    print_table(con, table)
    for n in notes:
        con.print(n)
    con.print("Assumptions (KL threshold):")
    for key in ("tv_max", "kl_seq", "tv_seq", "members"):
        con.print(f"  {r0.assumptions[key]}")
    tva = r0.tv_route.assumptions
    con.print(f"TV route alone: B_TV = {tva['members']}, {tva['tv_seq']}")
    con.print(
        "δ and ε must hold over all reachable contexts; a maximum measured on samples is "
        "only an empirical estimate of them."
    )


def _render_length(res, frac) -> None:
    con = console()  # prose wraps at the terminal's width (80 columns in a pipe)
    head = (
        f"Longest response length with B* ≤ {_budget_text(res.budget, res.adv_range, frac)} "
        f"at δ = {res.kl_max:g}, {res.constants} constants"
    )
    con.print(head)
    if res.vacuous_budget:
        con.print(_vacuous_note(res.budget, res.adv_range))
    if res.status == "ok":
        # enough digits to see the step from T_max to T_max + 1 across the budget
        b, b_next = _distinct(res.bound, res.bound_next, res.budget)
        con.print(
            f"  T_max = {res.T_max:,}   (B*({res.T_max:,}) = {b}, "
            f"B*({res.T_max + 1:,}) = {b_next} > β; tightest: "
            f"{_MEMBER_NAMES[res.tightest]})"
        )
    else:
        con.print(f"  {res.message}")
    con.print("Assumptions:")
    for key in ("tv_max", "kl_seq", "tv_seq", "members"):
        con.print(f"  {res.assumptions[key]}")
