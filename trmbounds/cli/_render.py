"""Rich rendering of an evaluation result, shared by eval, measure and check."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from ..bounds import NAMES
from ..errors import TrmboundsError
from ..stats import UNIFIED_MEMBERS, Result
from ._common import fmt


@contextmanager
def in_flags(flags: Mapping[str, str], phrases: Mapping[str, str] | None = None) -> Iterator[None]:
    """Say a library error in the command's terms: each parameter name becomes its flag.

    The library speaks of ``kl_max`` and ``mark_T``; the user typed ``--kl-max`` and
    ``--mark-T``. A name is replaced where it is a whole word (not ``sqrt(kl_max/2)``,
    not part of ``kl_max_proxy``), and each of ``phrases`` by its text (e.g. what limits
    a range). Give only the names whose values came from flags.

    >>> try:
    ...     with in_flags({"kl_max": "--kl-max"}):
    ...         raise TrmboundsError("kl_max must be non-negative, got -1")
    ... except TrmboundsError as e:
    ...     print(e)
    --kl-max must be non-negative, got -1
    """
    try:
        yield
    except TrmboundsError as exc:
        msg = str(exc)
        for name, flag in flags.items():
            msg = re.sub(rf"(?<![\w./-]){re.escape(name)}(?![\w/])", flag, msg)
            msg = msg.replace(f"{flag} = ", f"{flag} ")  # "--mark-T 10", as typed
        for phrase, text in (phrases or {}).items():
            msg = msg.replace(phrase, text)
        exc.args = (msg,)
        raise


#: growth in T of each bound, as the table shows it
_SCALING = {"classical_tv": "T²", "classical_kl": "T²", "linear": "T", "pm_kl": "T^3/2",
            "pm_tv": "T^3/2", "mix_kl": "T", "mix_tv": "T", "coupling": "T, capped",
            "adaptive_kl": "data", "adaptive_tv": "data", "adaptive": "data",
            "unified": "min"}  # fmt: skip
LABELS = {k: (name, _SCALING[k]) for k, (name, _) in NAMES.items()}

SYMBOLS = {
    "kl_max": "δ",
    "tv_max": "ε",
    "kl_seq": "D_KL^seq",
    "tv_seq": "D_TV^seq",
    "per_position": "D̄_t",
    "missing_mass": "m",
}


def _width(con, table) -> int:
    """The width ``table`` takes when nothing in it is wrapped or cut."""
    from rich.measure import Measurement

    return Measurement.get(con, con.options.update(width=1 << 14), table).maximum


def _sub_table(table, cols, title):
    """A copy of ``table`` with only the columns ``cols`` (same rows, styles, sections)."""
    from rich.table import Table

    t = Table(
        title=title,
        title_justify=table.title_justify,
        header_style=table.header_style,
        box=table.box,
        pad_edge=table.pad_edge,
        show_header=table.show_header,
        show_edge=table.show_edge,
    )
    for c in cols:
        t.add_column(
            c.header, justify=c.justify, style=c.style, no_wrap=c.no_wrap, overflow=c.overflow
        )
    for i, row in enumerate(table.rows):
        t.add_row(*(c._cells[i] for c in cols), style=row.style, end_section=row.end_section)
    return t


def print_table(con, table, keep: tuple[str, ...] = (), drop_empty: bool = False) -> None:
    """Print ``table`` so that no cell is ever cut or wrapped mid-number.

    If the table is wider than the console (80 columns in a pipe), its columns are
    split over several tables, each repeating the first (key) column and the columns
    named in ``keep``, instead of letting rich shrink them (which cuts numbers to
    ``6.00…``). With ``drop_empty``, columns holding nothing but "—" are left out first.
    """
    if drop_empty and table.rows:  # a column of "—" only says nothing: leave it out
        cols = [c for c in table.columns if not all(str(x) == "—" for x in c._cells)]
        if len(cols) < len(table.columns):
            table = _sub_table(table, cols, table.title)
    width = con.width
    if _width(con, table) <= width or len(table.columns) < 3:
        con.print(table)
        return
    key, *rest = table.columns
    tail = [c for c in rest if c.header in keep]
    rest = [c for c in rest if c.header not in keep]
    groups: list[list] = [[]]
    for c in rest:
        trial = _sub_table(table, [key, *groups[-1], c, *tail], None)
        if groups[-1] and _width(con, trial) > width:
            groups.append([c])
        else:
            groups[-1].append(c)
    title = table.title
    for k, g in enumerate(groups):
        shown = title if k == 0 else (f"{title} (continued)" if title else None)
        con.print(_sub_table(table, [key, *g, *tail], shown))


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
    print_table(con, table)

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
        print_bullet(con, n)


def print_bullet(con, note: str, style: str | None = None) -> None:
    """``  • note`` with a hanging indent: wrapped lines stay under the text, not under
    the bullet (a number or a path is never cut: wrapping is at spaces)."""
    import textwrap

    width = max(20, con.width - 1)
    text = textwrap.fill(
        note, width, initial_indent="  • ", subsequent_indent="    ", break_on_hyphens=False
    )
    con.print(text, markup=False, highlight=False, soft_wrap=True, style=style)


def _show(v) -> str:
    if v is None:
        return "—"
    if hasattr(v, "shape"):
        return f"[{v.shape[0]} values]"
    return f"{v:g}"
