"""A timeline plot of a check: the bound per step, the state of every step, acceptance.

matplotlib is imported inside :func:`plot_timeline` only. The states come from
:data:`trmbounds.logs.check.STATES`, so a new state is drawn (and in the legend)
without a change here.
"""

from __future__ import annotations

import numpy as np

from . import check as _check
from .check import ACCEPT_TARGET, CheckResult

__all__ = ["plot_timeline", "STATE_COLORS"]

#: Colour of each state in the state strip (others get a colour from FALLBACK).
STATE_COLORS = {
    "refuted": "#b2182b",
    "vacuous": "#f4a582",
    "guaranteed": "#1a9850",
    "estimated-gain": "#41b6c4",
    "non-vacuous": "#a6d96a",
    "unknown": "#cccccc",
}
_FALLBACK = ("#762a83", "#2166ac", "#fee08b", "#8c510a", "#c51b7d", "#01665e")


def state_colors() -> dict[str, str]:
    """A colour for every state of :data:`~trmbounds.logs.check.STATES`."""
    out, k = {}, 0
    for s in _check.STATES:
        if s in STATE_COLORS:
            out[s] = STATE_COLORS[s]
        else:
            out[s] = _FALLBACK[k % len(_FALLBACK)]
            k += 1
    return out


def plot_timeline(result: CheckResult, ax=None):
    r"""Plot :math:`B^*` per step against the budget :math:`a`, the states and acceptance.

    Three panels sharing the step axis (integer ticks): the unified bound under the
    assumption and under the estimates, the range :math:`a` (vacuous above it) and the
    surrogate estimate :math:`\hat L` and its one-sided 95 % lower bound when there are
    (improvement is guaranteed where the lower bound exceeds :math:`B^*`), on a log
    scale; a strip with the state of every step
    (every state of :data:`~trmbounds.logs.check.STATES` is in the legend, with its
    count); the acceptance rate and the paper's 70 % recommendation, when logged.

    Parameters
    ----------
    result : CheckResult
    ax : matplotlib Axes, optional
        The bound panel is drawn on it, and the other panels are added to its figure
        below it; by default a new 9 x 5.5 in figure (the size of the other plots).

    Returns
    -------
    matplotlib.axes.Axes
        The bound panel.
    """
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import FixedLocator, MaxNLocator

    acc = result.acceptance
    has_acc = acc is not None and bool(np.any(np.isfinite(acc)))
    if ax is None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(9, 5.5), layout="constrained")
        ax = fig.add_subplot()
    fig = ax.figure
    ratios = [5, 0.6] + ([2.2] if has_acc else [])
    gs = ax.get_subplotspec().subgridspec(len(ratios), 1, height_ratios=ratios, hspace=0.05)
    ax.set_subplotspec(gs[0])
    strip = fig.add_subplot(gs[1], sharex=ax)
    ax_acc = fig.add_subplot(gs[2], sharex=ax) if has_acc else None

    x = np.asarray(result.step, dtype=float)
    xlabel = "training step"
    if x.size and not (np.all(np.isfinite(x)) and np.all(np.diff(x) > 0)):
        x, xlabel = np.arange(1, x.size + 1, dtype=float), "record (steps not increasing)"
    a = result.assumption.adv_range
    # Small dots on short runs (a single step is otherwise invisible), none on long ones.
    dots = dict(marker="o", ms=3.5) if x.size <= 12 else {}
    if result.assumption.given:
        ax.plot(x, result.bound, color="C0", lw=1.6, label="$B^*$ under the assumption",
                zorder=3, **dots)  # fmt: skip
    ax.plot(x, result.bound_est, color="C1", lw=1.2, ls="--", zorder=3,
            label="$B^*$ under the estimates", **dots)  # fmt: skip
    sur = result.stats.get("surrogate")
    if sur is not None and np.any(np.isfinite(sur.values) & (sur.values > 0)):
        ax.plot(x, np.where(sur.values > 0, sur.values, np.nan), color="C4", lw=1.2, zorder=3,
                label=r"surrogate estimate $\hat L$")  # fmt: skip
        lcb = result.stats.get("surrogate_lcb")
        if lcb is not None and np.any(np.isfinite(lcb.values) & (lcb.values > 0)):
            ax.plot(x, np.where(lcb.values > 0, lcb.values, np.nan), color="C4", lw=1.0,
                    ls=":", zorder=3,
                    label="its 95 % lower bound (guaranteed where above $B^*$)")  # fmt: skip
    ax.axhline(
        a, color="0.35", lw=1.0, ls=":", zorder=2, label=f"range $a = {a:g}$ (vacuous above)"
    )
    ys = np.concatenate(
        [np.asarray(v, float) for v in (result.bound, result.bound_est)] + [np.array([a])]
    )
    ys = ys[np.isfinite(ys) & (ys > 0)]
    ax.set_yscale("log")
    if ys.size:
        ax.set_ylim(ys.min() / 3, ys.max() * 3)
        ax.axhspan(a, ys.max() * 3, color="0.94", zorder=0, lw=0)
    ax.set_ylabel("unified bound $B^*$\n(reward units)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ax.tick_params(labelbottom=False)

    # One cell per step, coloured by its state: nothing drawn over the lines.
    colors = state_colors()
    names = list(_check.STATES)
    cmap = ListedColormap([colors[s] for s in names])
    norm = BoundaryNorm(np.arange(len(names) + 1) - 0.5, len(names))
    edges = _edges(x)
    strip.pcolormesh(edges, [0, 1], np.asarray(result.state, float)[None, :], cmap=cmap,
                     norm=norm, shading="flat", rasterized=True)  # fmt: skip
    flag = getattr(result, "flag", None)
    flagged = np.zeros(x.size, bool) if flag is None else ~np.isnan(np.asarray(flag, float))
    if flagged.any():  # a detector far above the assumption: marked on the strip
        strip.scatter(x[flagged], np.full(flagged.sum(), 0.5), marker="v", s=14,
                      color="#c51b7d", edgecolors="white", linewidths=0.4, zorder=3)  # fmt: skip
    strip.set_ylim(0, 1)
    strip.set_yticks([])
    strip.set_ylabel("state", rotation=0, ha="right", va="center", fontsize=9)
    counts = result.counts()
    strip.legend(
        handles=[Patch(color=colors[s], label=f"{s} ({counts.get(s, 0):,})") for s in names]
        + (
            [
                Line2D(
                    [],
                    [],
                    ls="",
                    marker="v",
                    color="#c51b7d",
                    label=f"flagged ({int(flagged.sum()):,})",
                )
            ]
            if flagged.any()
            else []
        ),  # fmt: skip
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0 if not has_acc else 1.5),
        fontsize=8,
        frameon=False,
        ncol=2,  # short enough not to stretch the layout under the strip
        columnspacing=1.0,
        title="state of each step (▼ flagged: a detector doubts the assumption)",
        title_fontsize=8,
    )
    last = strip
    if ax_acc is not None:
        strip.tick_params(labelbottom=False)
        ax_acc.plot(x, acc, color="C2", lw=1.2, label="acceptance rate", **dots)
        ax_acc.axhline(ACCEPT_TARGET, color="0.15", lw=1.0, ls=":", zorder=4,
                       label=f"{ACCEPT_TARGET:.0%} recommended (paper)")  # fmt: skip
        ax_acc.set_ylim(0, 1.02)
        ax_acc.set_ylabel("acceptance")
        ax_acc.grid(True, alpha=0.3)
        ax_acc.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
        last = ax_acc
    ax.set_xlim(edges[0], edges[-1])
    ints = np.arange(np.ceil(edges[0]), np.floor(edges[-1]) + 1)
    for panel in (ax, strip, ax_acc):
        if panel is None:
            continue
        if ints.size <= 12:  # a short run: every step (MaxNLocator falls back to fractions)
            panel.xaxis.set_major_locator(FixedLocator(ints))
        else:
            panel.xaxis.set_major_locator(MaxNLocator(integer=True))
    last.set_xlabel(xlabel)
    ax.set_title(f"trmbounds check: {result.path}", fontsize=10)
    return ax


def _edges(x: np.ndarray) -> np.ndarray:
    """Cell edges around each step (half-way to the neighbours)."""
    if x.size == 0:
        return np.array([0.0, 1.0])
    if x.size == 1:
        return np.array([x[0] - 0.5, x[0] + 0.5])
    mid = (x[1:] + x[:-1]) / 2
    return np.concatenate([[x[0] - (mid[0] - x[0])], mid, [x[-1] + (x[-1] - mid[-1])]])
