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
    "coupling": ("Coupling", "T (capped)"),
    "adaptive_kl": ("Adaptive KL", "data"),
    "adaptive_tv": ("Adaptive TV", "data"),
    "adaptive": ("Adaptive hybrid", "data"),
    "unified": ("Unified B*", "min"),
}

SYMBOLS = {
    "kl_max": "δ (kl_max)",
    "tv_max": "ε (tv_max)",
    "kl_seq": "D_KL^seq (kl_seq)",
    "tv_seq": "D_TV^seq (tv_seq)",
    "per_position": "D̄_t (per_position)",
    "missing_mass": "m (missing_mass)",
}


def render_result(result: Result, con) -> None:
    """Print the bounds table of ``result`` and the lines under it on ``con``."""
    from rich.table import Table

    s = result.stats
    a = s.adv_range
    title = f"TRM error bounds  T = {s.T:,}   a = {a:g}   constants = {result.constants}"
    table = Table(title=title, title_justify="left", header_style="bold")
    table.add_column("bound")
    table.add_column("key", style="dim")
    table.add_column("value", justify="right")
    table.add_column("scaling")
    table.add_column("vacuous (≥ a)")
    table.add_column("")
    for key, (label, scaling) in LABELS.items():
        v = result.bounds[key]
        if key == "unified":
            table.add_section()
        mark = "← tightest" if key == result.tightest else ""
        vac = "—" if v is None else ("yes" if v >= a else "no")
        style = "bold" if key in ("unified", result.tightest) else None
        shown = label if key in UNIFIED_MEMBERS or key == "unified" else f"[dim]{label}[/dim]"
        table.add_row(shown, key, fmt(v), scaling, vac, mark, style=style)
    con.print(table)

    b = result.unified
    name = LABELS[result.tightest][0]
    basis = {
        "certified": "the inputs are certified",
        "assumed": "holds IF the assumed inputs hold",
        "estimate": "rests on ESTIMATED inputs: an estimate, not a guarantee",
    }[result.basis]
    if result.vacuous:
        con.print(
            f"[bold red]VACUOUS[/bold red]: B* = {fmt(b)} ≥ a = {a:g} ({name}); "
            "no improvement can be guaranteed at these divergences."
        )
    else:
        con.print(
            f"[bold green]non-vacuous[/bold green]: B* = {fmt(b)} < a = {a:g} ({name}); "
            f"an update whose surrogate gain exceeds {fmt(b)} improves J — {basis}."
        )
    given = [f"{SYMBOLS[k]} = {_show(getattr(s, k))} ({v})" for k, v in s.status.items()]
    con.print("inputs:  " + "; ".join(given))
    for k, d in result.derived.items():
        con.print(f"derived: {SYMBOLS[k]} ≤ {fmt(d.value)}  from {d.rule}")
    if result.closed_forms:
        cf = result.closed_forms
        con.print(
            "closed forms (small-divergence regime, as in the paper's table): "
            f"PM-KL ≈ (4/3)T^3/2 δ = {fmt(cf['pm_kl'])}, "
            f"PM-TV ≈ (8/3)T^3/2 ε√(δ/2) = {fmt(cf['pm_tv'])}"
            + ("  (halved: sharp)" if result.constants == "sharp" else "")
        )
    for n in result.notes:
        con.print(f"[yellow]validity[/yellow] {n}")


def _show(v) -> str:
    if v is None:
        return "—"
    if hasattr(v, "shape"):
        return f"array of {v.shape[0]}"
    return f"{v:g}"
