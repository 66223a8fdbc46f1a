"""Rich rendering of an evaluation result, shared by eval, measure and check."""

from __future__ import annotations

from ..stats import UNIFIED_MEMBERS, Result
from ._common import fmt

LABELS = {
    "classical_tv": ("Classical (TV)", "T²"),
    "classical_kl": ("Classical (KL)", "T²"),
    "linear": ("Linear", "T"),
    "pm_kl": ("Pinsker-Marginal KL", "T^3/2"),
    "pm_tv": ("Pinsker-Marginal TV", "T^3/2"),
    "mix_kl": ("Mixed KL", "T"),
    "mix_tv": ("Mixed TV", "T"),
    "coupling": ("Coupling", "T, capped"),
    "adaptive_kl": ("Adaptive KL", "data"),
    "adaptive_tv": ("Adaptive TV", "data"),
    "adaptive": ("Adaptive hybrid", "data"),
    "unified": ("Unified B*", "min"),
}

SYMBOLS = {
    "kl_max": "δ",
    "tv_max": "ε",
    "kl_seq": "D_KL^seq",
    "tv_seq": "D_TV^seq",
    "per_position": "D̄_t",
    "missing_mass": "m",
}


def render_result(result: Result, con) -> None:
    """Print the bounds table of ``result`` and the lines under it on ``con``."""
    from rich.table import Table

    s = result.stats
    a = s.adv_range
    title = f"TRM error bounds   T = {s.T:,}   a = {a:g}   constants = {result.constants}"
    table = Table(title=title, title_justify="left", header_style="bold")
    table.add_column("bound")
    table.add_column("key", style="dim")
    table.add_column("value", justify="right")
    table.add_column("scaling")
    table.add_column("vacuous")
    for key, (label, scaling) in LABELS.items():
        v = result.bounds[key]
        if key == "unified":
            table.add_section()
        vac = "—" if v is None else ("yes" if v >= a else "no")
        if key == result.tightest:
            vac += " ← tightest"
        style = "bold" if key in ("unified", result.tightest) else None
        shown = label if key in UNIFIED_MEMBERS or key == "unified" else f"[dim]{label}[/dim]"
        table.add_row(shown, key, fmt(v), scaling, vac, style=style)
    con.print(table)

    b = result.unified
    name = LABELS[result.tightest][0]
    basis = {
        "certified": "the inputs are certified",
        "assumed": "if the assumed inputs hold",
        "estimate": "an ESTIMATE: the inputs are estimated",
    }[result.basis]
    if result.vacuous:
        con.print(
            f"B* = {fmt(b)} ({name}) ≥ a = {a:g}: [bold red]VACUOUS[/bold red] — "
            "no improvement can be guaranteed."
        )
    else:
        con.print(
            f"B* = {fmt(b)} ({name}) < a = {a:g}: [bold green]non-vacuous[/bold green] — "
            f"a surrogate gain L > {fmt(b)} guarantees J(θ) > J(roll), {basis}."
        )
    given = [f"{SYMBOLS[k]} = {_show(getattr(s, k))}" for k in s.status]
    kinds = sorted(set(s.status.values()))
    if len(kinds) == 1:
        con.print(f"inputs   {', '.join(given)} ({'all ' if len(given) > 1 else ''}{kinds[0]})")
    else:
        con.print("inputs   " + ", ".join(f"{g} ({s.status[k]})" for g, k in zip(given, s.status)))
    for k, d in result.derived.items():
        con.print(f"derived  {SYMBOLS[k]} ≤ {fmt(d.value)}: {d.rule}")
    if result.closed_forms:
        cf = result.closed_forms
        con.print(
            "paper's closed forms (small-divergence regime): "
            f"PM-KL ≈ {fmt(cf['pm_kl'])}, PM-TV ≈ {fmt(cf['pm_tv'])}"
        )
    con.print("validity")
    for n in result.notes:
        con.print(f"  • {n}", markup=False)


def _show(v) -> str:
    if v is None:
        return "—"
    if hasattr(v, "shape"):
        return f"[{v.shape[0]} values]"
    return f"{v:g}"
