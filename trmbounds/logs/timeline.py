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
#: Colour of the flagged steps' lane (a detector of delta above the assumed delta).
FLAG_COLOR = "#c51b7d"
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

    Three panels sharing the step axis (integer ticks), each with its legend above it:

    - the unified bound under the assumption and under the estimates, the range
      :math:`a` (vacuous above it, shaded) and, when logged, the surrogate estimate
      :math:`\hat L` and its one-sided 95 % lower bound (improvement is guaranteed
      where the lower bound exceeds :math:`B^*`), on a log scale in reward units;
    - a strip with the state of every step (every state of
      :data:`~trmbounds.logs.check.STATES` is in the legend, with its count) and,
      when a detector exceeds the assumed :math:`\delta` somewhere, a lane above it
      marking the flagged steps (cells, legible at any number of steps);
    - the acceptance rate and the paper's 70 % recommendation, when logged.

    Parameters
    ----------
    result : CheckResult
    ax : matplotlib Axes, optional
        The bound panel is drawn on it, and the other panels are added to its figure
        below it; by default a new 9 x 5.5 in figure (the size of the other plots),
        titled with the file checked.

    Returns
    -------
    matplotlib.axes.Axes
        The bound panel.
    """
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.patches import Patch
    from matplotlib.ticker import FixedLocator, MaxNLocator

    acc = result.acceptance
    has_acc = acc is not None and bool(np.any(np.isfinite(acc)))
    own = ax is None
    if own:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(9, 5.5), layout="constrained")
        ax = fig.add_subplot()
    fig = ax.figure
    ratios = [5, 0.7] + ([1.8] if has_acc else [])
    gs = ax.get_subplotspec().subgridspec(len(ratios), 1, height_ratios=ratios, hspace=0.02)
    ax.set_subplotspec(gs[0])
    strip = fig.add_subplot(gs[1], sharex=ax)
    ax_acc = fig.add_subplot(gs[2], sharex=ax) if has_acc else None
    legend = dict(loc="lower left", bbox_to_anchor=(0.0, 1.0), fontsize=8, frameon=False,
                  borderaxespad=0.2, handlelength=1.8, columnspacing=1.2)  # fmt: skip

    x = np.asarray(result.step, dtype=float)
    xlabel = "training step"
    if x.size and not (np.all(np.isfinite(x)) and np.all(np.diff(x) > 0)):
        x, xlabel = np.arange(1, x.size + 1, dtype=float), "record (steps not increasing)"
    a = result.assumption.adv_range
    # Small dots on short runs (a single step is otherwise invisible), none on long ones.
    dots = dict(marker="o", ms=3.5) if x.size <= 12 else {}
    lw = 1.6 if x.size <= 100 else 1.0  # thinner on long runs: the steps stay apart
    drawn = [np.asarray(result.bound_est, float)]
    if result.assumption.given:
        ax.plot(x, result.bound, color="C0", lw=lw, label="$B^*$ under the assumption",
                zorder=3, **dots)  # fmt: skip
        drawn.append(np.asarray(result.bound, float))
    ax.plot(x, result.bound_est, color="C1", lw=lw * 0.8, ls="--", zorder=3,
            label="$B^*$ under the estimates", **dots)  # fmt: skip
    sur = result.stats.get("surrogate")
    has_sur = sur is not None and bool(np.any(np.isfinite(sur.values) & (sur.values > 0)))
    if has_sur:
        assert sur is not None
        s = np.where(sur.values > 0, sur.values, np.nan)
        ax.plot(x, s, color="C4", lw=lw * 0.8, zorder=3, label=r"surrogate estimate $\hat L$",
                **dots)  # fmt: skip
        drawn.append(s)
        lcb = result.stats.get("surrogate_lcb")
        if lcb is not None and np.any(np.isfinite(lcb.values) & (lcb.values > 0)):
            v = np.where(lcb.values > 0, lcb.values, np.nan)
            ax.plot(x, v, color="C4", lw=lw * 0.7, ls=":", zorder=3,
                    label=r"95 % lower bound on $L$ (guaranteed above $B^*$)")  # fmt: skip
            drawn.append(v)
    ax.axhline(
        a, color="0.25", lw=1.0, ls=":", zorder=2, label=f"range $a = {a:g}$ (vacuous above)"
    )
    ys = np.concatenate(drawn + [np.array([a])])
    ys = ys[np.isfinite(ys) & (ys > 0)]
    ax.set_yscale("log")
    if ys.size:
        hi = ys.max() * 3
        lo = max(ys.min() / 3, hi * 1e-7)  # a stray tiny value does not flatten the rest
        ax.set_ylim(lo, hi)
        ax.axhspan(a, hi, color="0.93", zorder=0, lw=0)
    ax.set_ylabel(
        ("bound $B^*$, surrogate $\\hat L$" if has_sur else "unified bound $B^*$")
        + "\n(reward units)"
    )
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(ncol=3, **legend)
    ax.tick_params(labelbottom=False)

    # One cell per step, coloured by its state: nothing drawn over the lines. Flagged
    # steps get cells of their own in a lane above the states (markers smear on long runs).
    colors = state_colors()
    names = list(_check.STATES)
    cmap = ListedColormap([colors[s] for s in names])
    norm = BoundaryNorm(np.arange(len(names) + 1) - 0.5, len(names))
    edges = _edges(x)
    strip.pcolormesh(edges, [0, 1], np.asarray(result.state, float)[None, :], cmap=cmap,
                     norm=norm, shading="flat", rasterized=True)  # fmt: skip
    flag = getattr(result, "flag", None)
    flagged = np.zeros(x.size, bool) if flag is None else ~np.isnan(np.asarray(flag, float))
    counts = result.counts()
    handles = [Patch(color=colors[s], label=f"{s} ({counts.get(s, 0):,})") for s in names]
    top = 1.0
    if flagged.any():
        top = 1.6
        strip.pcolormesh(edges, [1.1, top], np.where(flagged, 1.0, np.nan)[None, :],
                         cmap=ListedColormap([FLAG_COLOR]), shading="flat",
                         rasterized=True)  # fmt: skip
        handles.append(
            Patch(color=FLAG_COLOR, label=f"flagged ({int(flagged.sum()):,}): a detector > δ")
        )
        strip.set_yticks([0.5, 1.35], ["state", "flagged"], fontsize=8)
    else:
        strip.set_yticks([0.5], ["state"], fontsize=8)
    strip.tick_params(axis="y", length=0)
    strip.set_ylim(0, top)
    for side in ("left", "right", "top"):
        strip.spines[side].set_visible(False)
    strip.legend(handles=handles, ncol=4, **legend)
    last = strip
    if ax_acc is not None:
        strip.tick_params(labelbottom=False)
        ax_acc.plot(x, acc, color="C2", lw=lw * 0.8, label="acceptance rate", clip_on=False,
                    **dots)  # fmt: skip
        ax_acc.axhline(ACCEPT_TARGET, color="0.15", lw=1.0, ls=":", zorder=4,
                       label=f"{ACCEPT_TARGET:.0%} recommended (paper)")  # fmt: skip
        ax_acc.set_ylim(-0.05, 1.05)  # 0 and 100 % stay inside the frame
        ax_acc.set_yticks([0, 0.5, 1], ["0", "50%", "100%"])
        ax_acc.set_ylabel("acceptance")
        ax_acc.grid(True, alpha=0.3)
        ax_acc.legend(ncol=2, **legend)
        last = ax_acc
    ax.set_xlim(edges[0], edges[-1])
    ints = np.arange(np.ceil(edges[0]), np.floor(edges[-1]) + 1)
    for panel in (ax, strip, ax_acc):
        if panel is None:
            continue
        if ints.size <= 12:  # a short run: every step (MaxNLocator falls back to fractions)
            panel.xaxis.set_major_locator(FixedLocator(ints.tolist()))
        else:
            panel.xaxis.set_major_locator(MaxNLocator(integer=True))
    last.set_xlabel(xlabel)
    if own:  # above the legends (an Axes title would sit on the first legend)
        fig.suptitle(f"trmbounds check: {result.path}", fontsize=10)
    return ax


def _edges(x: np.ndarray) -> np.ndarray:
    """Cell edges around each step (half-way to the neighbours)."""
    if x.size == 0:
        return np.array([0.0, 1.0])
    if x.size == 1:
        return np.array([x[0] - 0.5, x[0] + 0.5])
    mid = (x[1:] + x[:-1]) / 2
    return np.concatenate([[x[0] - (mid[0] - x[0])], mid, [x[-1] + (x[-1] - mid[-1])]])
