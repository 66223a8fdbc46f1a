"""What a notebook figure draws, as numbers: beside each PNG, a summary of its data.

``tests/test_notebook.py`` starts the kernel with :func:`install` (an ``exec_lines``
of the kernel, so no cell of the notebook changes and no execution count moves). Every
figure the notebook shows then carries, next to its ``image/png``, a
``application/vnd.trmbounds.figure+json`` output: per Axes its scales, limits, labels,
texts and shaded regions, and per line its label, colour, style and data at a few
points. Two runs on different CPUs draw the same summary up to round-off, whereas two
PNGs may differ in anti-aliasing; a change of what the code draws (a colour, a range, a
band, a curve) changes the summary. Jupyter and GitHub show the PNG and ignore the rest.
"""

from __future__ import annotations

import numpy as np

MIME = "application/vnd.trmbounds.figure+json"
#: Points of each line kept in the summary (evenly spaced over its data).
SAMPLES = 9


def _floats(values) -> list[float | None]:
    a = np.asarray(values, dtype=np.float64).ravel()
    return [float(v) if np.isfinite(v) else None for v in a]


def _sample(values) -> list[float | None]:
    a = np.asarray(values, dtype=np.float64).ravel()
    if a.size == 0:
        return []
    idx = np.unique(np.linspace(0, a.size - 1, min(SAMPLES, a.size)).round().astype(int))
    return _floats(a[idx])


def summary(fig) -> dict:
    """The figure's drawn content as JSON-able numbers and strings."""
    from matplotlib.colors import to_hex

    axes = []
    for ax in fig.axes:
        lines = []
        for ln in ax.get_lines():
            x, y = ln.get_xdata(), ln.get_ydata()
            lines.append(
                {
                    "label": ln.get_label(),
                    "color": to_hex(ln.get_color(), keep_alpha=True),
                    "style": str(ln.get_linestyle()),
                    "width": float(ln.get_linewidth()),
                    "n": int(np.size(x)),
                    "x": _sample(x),
                    "y": _sample(y),
                }
            )
        axes.append(
            {
                "title": ax.get_title(),
                "xlabel": ax.get_xlabel(),
                "ylabel": ax.get_ylabel(),
                "scale": [ax.get_xscale(), ax.get_yscale()],
                "xlim": _floats(ax.get_xlim()),
                "ylim": _floats(ax.get_ylim()),
                "lines": lines,
                "texts": sorted(t.get_text() for t in ax.texts),
                "legend": [t.get_text() for t in ax.get_legend().get_texts()]
                if ax.get_legend() is not None
                else [],
                "patches": sorted(
                    f"{type(p).__name__} {to_hex(p.get_facecolor(), keep_alpha=True)}"
                    for p in ax.patches
                ),
                "collections": sorted(type(c).__name__ for c in ax.collections),
            }
        )
    return {"axes": axes}


def install() -> None:
    """Make IPython show :func:`summary` beside every matplotlib figure (in this kernel).

    Through a method of :class:`~matplotlib.figure.Figure` that a formatter of its own
    mime type calls: ``%matplotlib inline`` drops every formatter's *type* printers of
    figures, not a print method.
    """
    from IPython import get_ipython
    from IPython.core.formatters import JSONFormatter
    from matplotlib.figure import Figure
    from traitlets import ObjectName, Unicode

    class FigureSummary(JSONFormatter):
        format_type = Unicode(MIME)
        print_method = ObjectName("_repr_trmbounds_summary_")

    Figure._repr_trmbounds_summary_ = summary
    ip = get_ipython()
    ip.display_formatter.formatters[MIME] = FigureSummary(parent=ip.display_formatter)
    if MIME not in ip.display_formatter.active_types:  # fixed when the shell started
        ip.display_formatter.active_types = [*ip.display_formatter.active_types, MIME]
