"""``trmbounds plot curves|heatmap``: the bounds as figures (PNG, SVG or PDF)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import TrmboundsError
from ._common import (
    ADV_RANGE_OPT,
    CONSTANTS_OPT,
    FORCE_OPT,
    Constants,
    atomic_output,
    check_output,
)

CURVES_EPILOG = """
Examples:

  trmbounds plot curves --kl-max 1e-4 --kl-avg 1e-6 --mark-T 4096

  trmbounds plot curves --kl-max 1e-4 --tv-max 5e-3 --kl-seq 0.01 -o paper.svg

  trmbounds plot curves --kl-max 1e-5 --bounds pm_kl,mix_kl,unified \\
      --T-max 65536 --constants sharp
"""

HEATMAP_EPILOG = """
Examples:

  trmbounds plot heatmap --budget 0.1 --budget 0.01

  trmbounds plot heatmap --kl-avg 1e-7 --budget-frac 0.05 -o map.pdf

  trmbounds plot heatmap --T-min 1024 --T-max 65536 --kl-range 1e-9 1e-3 \\
      --points 300
"""

PLOT_EPILOG = """
Examples:

  trmbounds plot curves --kl-max 1e-4 --kl-avg 1e-6 --mark-T 4096

  trmbounds plot heatmap --budget 0.1 -o map.svg
"""

# Loaded lazily by the root group (``Group.lazy_commands``) as the ``plot`` group.
app = typer.Typer(
    name="plot",
    add_completion=False,
    epilog=PLOT_EPILOG,
    help="Draw the bounds: bound vs response length (curves), or B* over (T, delta) (heatmap).",
    short_help="Plot bounds vs T (curves), or B* over (T, delta) (heatmap).",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

FORMATS = ("png", "svg", "pdf")
MAX_PIXELS = 20000  # per side
MIN_PIXELS = 200  # per side: matplotlib fails to set fonts on tiny canvases
MIN_DPI = 30
MIN_SIZE = (3.0, 2.0)  # inches

# ---------------------------------------------------------------- shared options
T_MIN_OPT = Annotated[int, typer.Option("--T-min", help="Shortest response length drawn.")]
T_MAX_OPT = Annotated[int, typer.Option("--T-max", help="Longest response length drawn.")]
OUT_OPT = Annotated[
    Path | None,
    typer.Option(
        "--output",
        "-o",
        help="Output file; .png, .svg or .pdf by extension [default: trmbounds-<plot>.png].",
        show_default=False,
        metavar="FILE",
    ),
]
OUT_OLD_OPT = Annotated[Path | None, typer.Option("--out", hidden=True, show_default=False)]
DPI_OPT = Annotated[int, typer.Option("--dpi", help="Resolution (dots per inch).")]
SIZE_OPT = Annotated[
    tuple[float, float],
    typer.Option("--size", help="Figure size in inches, WIDTH HEIGHT.", metavar="W H"),
]
TITLE_OPT = Annotated[
    str | None,
    typer.Option("--title", help="Plot title [default: the inputs].", show_default=False),
]
KL_AVG_HELP = (
    "Mean per-token KL: D_KL^seq = T * kl_avg grows with T (the realistic case); "
    "D_TV^seq is derived."
)


#: The library's parameter names, as the flags a user typed (errors speak in flags).
_COMMON_FLAGS = {"T_min": "--T-min", "T_max": "--T-max", "points": "--points",
                 "adv_range": "--adv-range", "kl_avg": "--kl-avg"}  # fmt: skip
_CURVE_FLAGS = {**_COMMON_FLAGS, "kl_max": "--kl-max", "tv_max": "--tv-max",
                "kl_seq": "--kl-seq", "tv_seq": "--tv-seq", "mark_T": "--mark-T"}  # fmt: skip
_HEATMAP_FLAGS = {**_COMMON_FLAGS, "kl_range": "--kl-range", "tv_ratio": "--tv-ratio",
                  "budget": "--budget"}  # fmt: skip


def _target(out: Path | None, out_old: Path | None, default: str, force: bool) -> tuple[Path, str]:
    """The output path and format, validated before any work."""
    if out is not None and out_old is not None:
        raise TrmboundsError("give -o/--output (--out is its old name), not both")
    out = out if out is not None else out_old
    path = Path(default) if out is None else out
    ext = path.suffix.lower().lstrip(".")
    try:
        is_dir = path.is_dir()
    except OSError:  # a name too long: check_output says so
        is_dir = False
    if is_dir:
        raise TrmboundsError(
            f"-o/--output {path} is a directory: give a file name, e.g. {path / default}"
        )
    if ext not in FORMATS:
        raise TrmboundsError(
            f"unsupported output format {path.suffix or '(none)'!r} for {path}: "
            "use .png, .svg or .pdf"
        )
    check_output(path, force, option="-o/--output")
    return path, ext


def _figure(size: tuple[float, float], dpi: int):
    w, h = size
    if not (w > 0 and h > 0):
        raise TrmboundsError(f"--size must be positive, got {w:g} {h:g}")
    if w < MIN_SIZE[0] or h < MIN_SIZE[1]:  # the labels and legend would not fit
        raise TrmboundsError(
            f"--size {w:g} {h:g} is too small: at least {MIN_SIZE[0]:g} x {MIN_SIZE[1]:g} in"
        )
    if not dpi > 0:
        raise TrmboundsError(f"--dpi must be positive, got {dpi}")
    if dpi < MIN_DPI:  # matplotlib cannot size its fonts below this
        raise TrmboundsError(f"--dpi must be at least {MIN_DPI}, got {dpi}")
    if min(w, h) * dpi < MIN_PIXELS:
        raise TrmboundsError(
            f"--size {w:g} {h:g} at --dpi {dpi} is below {MIN_PIXELS} pixels per side: too "
            "small to draw"
        )
    if max(w, h) * dpi > MAX_PIXELS:
        raise TrmboundsError(
            f"--size {w:g} {h:g} at --dpi {dpi} exceeds {MAX_PIXELS} pixels per side"
        )
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

    return Figure(figsize=(w, h), dpi=dpi, layout="constrained")


def _save(fig, path: Path, ext: str, dpi: int) -> None:
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format=ext, dpi=dpi, metadata=None)
    w, h = fig.get_size_inches()
    size = f"{round(w * dpi)}x{round(h * dpi)} px" if ext == "png" else f"{w:g}x{h:g} in"
    typer.echo(f"Wrote {path} ({ext.upper()}, {size})")


def _bounds(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [tok for v in values for tok in v.replace(",", " ").split()]


@app.command(
    "curves", epilog=CURVES_EPILOG, short_help="Every bound vs the response length T (log-log)."
)
def curves_cmd(
    kl_max: Annotated[
        float,
        typer.Option("--kl-max", help="delta: max token-level KL (e.g. the TRM-Max threshold)."),
    ],
    tv_max: Annotated[
        float | None,
        typer.Option(
            "--tv-max",
            help="epsilon: max token-level TV [default: sqrt(delta/2)].",
            show_default=False,
        ),
    ] = None,
    kl_seq: Annotated[
        float | None,
        typer.Option(
            "--kl-seq", help="A fixed D_KL^seq (the same at every T).", show_default=False
        ),
    ] = None,
    kl_avg: Annotated[
        float | None, typer.Option("--kl-avg", help=KL_AVG_HELP, show_default=False)
    ] = None,
    tv_seq: Annotated[
        float | None,
        typer.Option("--tv-seq", help="A fixed D_TV^seq [default: derived].", show_default=False),
    ] = None,
    T_min: T_MIN_OPT = 16,
    T_max: T_MAX_OPT = 2**20,
    points: Annotated[int, typer.Option("--points", help="Points per curve.")] = 400,
    bounds: Annotated[
        list[str] | None,
        typer.Option(
            "--bounds",
            help="Bounds to draw, comma-separated or repeated: classical_tv, classical_kl, "
            "linear, pm_kl, pm_tv, mix_kl, mix_tv, coupling, adaptive_kl, adaptive_tv, "
            "adaptive, unified [default: the families and unified].",
            show_default=False,
        ),
    ] = None,
    mark_T: Annotated[
        int | None,
        typer.Option(
            "--mark-T", help="Mark this length and every bound's value there.", show_default=False
        ),
    ] = None,
    adv_range: ADV_RANGE_OPT = None,
    constants: CONSTANTS_OPT = Constants.paper,
    title: TITLE_OPT = None,
    out: OUT_OPT = None,
    out_old: OUT_OLD_OPT = None,
    dpi: DPI_OPT = 150,
    size: SIZE_OPT = (9.0, 5.5),
    force: FORCE_OPT = False,
) -> None:
    """Plot every bound against the response length T (log-log), with the vacuity line.

    Each curve is labelled with how it grows in T; the unified bound B* is the pale
    band under them. Above the line B = a (the advantage range) a bound guarantees nothing.
    """
    path, ext = _target(out, out_old, "trmbounds-curves.png", force)
    fig = _figure(size, dpi)
    from ..plot import curves
    from ._render import in_flags

    with in_flags(_CURVE_FLAGS, {"the lengths drawn": "the lengths drawn (--T-min … --T-max)"}):
        curves(
            kl_max,
            tv_max=tv_max,
            kl_seq=kl_seq,
            kl_avg=kl_avg,
            tv_seq=tv_seq,
            T_min=T_min,
            T_max=T_max,
            points=points,
            bounds=_bounds(bounds),
            mark_T=mark_T,
            adv_range=1.0 if adv_range is None else adv_range,
            constants=constants.value,
            title=title,
            ax=fig.add_subplot(),
        )
    _save(fig, path, ext, dpi)


@app.command(
    "heatmap",
    epilog=HEATMAP_EPILOG,
    short_help="B* over (T, delta), with the vacuity and budget contours.",
)
def heatmap_cmd(
    T_min: T_MIN_OPT = 16,
    T_max: T_MAX_OPT = 2**20,
    kl_range: Annotated[
        tuple[float, float],
        typer.Option("--kl-range", help="Range of the threshold delta (y axis).", metavar="LO HI"),
    ] = (1e-8, 1e-1),
    budget: Annotated[
        list[float] | None,
        typer.Option(
            "--budget",
            help="Draw the contour B* = beta (reward units); repeatable.",
            show_default=False,
        ),
    ] = None,
    budget_frac: Annotated[
        list[float] | None,
        typer.Option(
            "--budget-frac",
            help="Draw the contour B* = f * a (fraction of the advantage range); repeatable.",
            show_default=False,
        ),
    ] = None,
    tv_ratio: Annotated[
        float | None,
        typer.Option(
            "--tv-ratio",
            help="Assume epsilon = r * sqrt(delta/2), r in (0, 1] [default: 1].",
            show_default=False,
        ),
    ] = None,
    kl_avg: Annotated[
        float | None, typer.Option("--kl-avg", help=KL_AVG_HELP, show_default=False)
    ] = None,
    points: Annotated[int, typer.Option("--points", help="Grid points per axis.")] = 200,
    adv_range: ADV_RANGE_OPT = None,
    constants: CONSTANTS_OPT = Constants.paper,
    title: TITLE_OPT = None,
    out: OUT_OPT = None,
    out_old: OUT_OLD_OPT = None,
    dpi: DPI_OPT = 150,
    size: SIZE_OPT = (9.0, 5.5),
    force: FORCE_OPT = False,
) -> None:
    """Plot the unified bound B* over (T, delta), with contours at B* = a and at budgets.

    epsilon = sqrt(delta/2) and D_KL^seq = T * delta (or T * kl_avg), as `trmbounds
    solve` assumes: a budget's contour is the largest threshold at each length.
    """
    path, ext = _target(out, out_old, "trmbounds-heatmap.png", force)
    a = 1.0 if adv_range is None else adv_range
    levels = list(budget or [])
    for f in budget_frac or []:
        if not f > 0:
            raise TrmboundsError(f"--budget-frac must be positive, got {f:g}")
        levels.append(f * a)
    for b in levels:
        if not b > 0:
            raise TrmboundsError(f"--budget must be positive, got {b:g}")
    fig = _figure(size, dpi)
    from ..plot import heatmap
    from ._render import in_flags

    with in_flags(_HEATMAP_FLAGS):
        heatmap(
            T_min,
            T_max,
            kl_range,
            budgets=levels,
            points=(points, points),
            tv_ratio=tv_ratio,
            kl_avg=kl_avg,
            adv_range=a,
            constants=constants.value,
            title=title,
            ax=fig.add_subplot(),
        )
    _save(fig, path, ext, dpi)
