r"""Plots of the TRM error bounds: bound vs response length, the (T, δ) map, routes.

Every function draws on the Axes it is given (``ax``), or on a new pyplot figure when
``ax`` is ``None``, and returns the Axes. Nothing is saved or printed here;
matplotlib is imported only inside the functions, so ``import trmbounds`` stays light.

The numbers drawn come from :mod:`trmbounds.bounds` (:func:`curve_data`) and
:func:`trmbounds.solve.threshold_bound`; a line's data read back from the Axes are
the library's values.

References
----------
Li, Liu, Xu, Tong, Li, Liu, Wang. *Trust Region Masking for Long-Horizon LLM
Reinforcement Learning*. arXiv:2512.23075 (ICML 2026), Table 1 (the scalings).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from . import bounds as B
from .errors import TrmboundsError
from .solve import _positive
from .stats import BOUND_NAMES

#: The values a log axis can draw here: matplotlib fails on subnormal limits (1e-320)
#: and on ticks near the float64 maximum (a range reaching 1e300).
DRAWABLE = (1e-100, 1e100)


def _drawable(name: str, x) -> float:
    """``x`` positive and within :data:`DRAWABLE` (a one-line error naming the range)."""
    v = _positive(name, x)
    lo, hi = DRAWABLE
    if not lo <= v <= hi:
        raise TrmboundsError(
            f"{name} = {v:g} cannot be drawn: a plot takes values from {lo:g} to {hi:g}"
        )
    return v


__all__ = [
    "LABELS",
    "SCALINGS",
    "default_bounds",
    "length_grid",
    "curve_data",
    "curves",
    "heatmap_data",
    "heatmap",
    "adaptive_routes",
]

#: Display names of the bounds.
LABELS = {k: name for k, (name, _) in B.NAMES.items()} | {"unified": "Unified $B^*$ (min)"}

#: Growth in T of each bound in the small-divergence regime with fixed sequence
#: statistics (the paper's Table 1). With ``kl_avg`` the Mixed bounds grow like
#: :math:`T^{3/2}` instead, because :math:`D_{KL}^{seq} = T\bar\delta` grows too.
SCALINGS = {
    "classical_tv": "T^2",
    "classical_kl": "T^2",
    "linear": "T",
    "pm_kl": "T^{3/2}",
    "pm_tv": "T^{3/2}",
    "mix_kl": "T",
    "mix_tv": "T",
    "coupling": r"T^2 \to T",
    "adaptive_kl": "T^{3/2}",
    "adaptive_tv": r"T^2 \to T",
    "adaptive": "T^{3/2}",
    "unified": None,
}

#: TV variants are dashed, beside their KL variants' solid lines.
_DASHED = ("classical_tv", "pm_tv", "mix_tv", "adaptive_tv")

_COLORS = {
    "classical_tv": "#7f7f7f",
    "classical_kl": "#8c564b",
    "linear": "#bcbd22",
    "pm_kl": "#1f77b4",
    "pm_tv": "#0e8a96",
    "mix_kl": "#2ca02c",
    "mix_tv": "#1b5e20",  # dark: it runs on the pale band of B* (light green vanished)
    "coupling": "#ff7f0e",
    "adaptive_kl": "#9467bd",
    "adaptive_tv": "#e377c2",
    "adaptive": "#d62728",
    "unified": "black",
}


def default_bounds(tv_max=None) -> tuple[str, ...]:
    """The bounds drawn when none are named: the families, and the unified envelope.

    Without a TV maximum, :math:`\\varepsilon = \\sqrt{\\delta/2}` makes the TV variants
    equal to the KL ones, so only the KL variants are drawn.

    Examples
    --------
    >>> default_bounds()
    ('classical_kl', 'pm_kl', 'mix_kl', 'coupling', 'unified')
    """
    if tv_max is None:
        return ("classical_kl", "pm_kl", "mix_kl", "coupling", "unified")
    return ("classical_tv", "pm_kl", "pm_tv", "mix_kl", "mix_tv", "coupling", "unified")


def _names(bounds) -> tuple[str, ...]:
    if isinstance(bounds, str):
        bounds = [b for b in bounds.replace(",", " ").split() if b]
    names = tuple(bounds)
    if not names:
        raise TrmboundsError("no bounds to draw")
    for n in names:
        if n not in BOUND_NAMES:
            raise TrmboundsError(f"unknown bound {n!r}: choose from {', '.join(BOUND_NAMES)}")
    return names


def length_grid(T_min: int = 16, T_max: int = 2**20, points: int = 400) -> np.ndarray:
    """``points`` distinct integer lengths, log-spaced from ``T_min`` to ``T_max``.

    Both ends are included. Rounding a geometric grid to integers repeats lengths at
    the short end, so the grid is made as dense as needed for ``points`` distinct
    lengths (every integer when the range holds fewer than ``points``).

    Examples
    --------
    >>> length_grid(16, 1024, 7).tolist()
    [16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0]
    >>> len(length_grid(16, 2**20, 10_000)), len(length_grid(1, 50, 100))
    (10000, 50)
    """
    lo, hi = _int_length("T_min", T_min), _int_length("T_max", T_max)
    if lo >= hi:
        raise TrmboundsError(f"T_min must be below T_max, got T_min = {lo}, T_max = {hi}")
    n = _points("points", points, MAX_POINTS)
    if hi - lo + 1 <= n:
        return np.arange(lo, hi + 1, dtype=np.float64)

    def grid(m: int) -> np.ndarray:
        return np.unique(np.round(np.geomspace(lo, hi, m)))

    a, b = n, 2 * n  # smallest m with at least n distinct lengths, by bisection
    while grid(b).size < n:
        a, b = b, 2 * b
    while b - a > 1:
        mid = (a + b) // 2
        if grid(mid).size >= n:
            b = mid
        else:
            a = mid
    g = grid(b) if grid(a).size < n else grid(a)
    if g.size > n:  # drop the surplus from the interior, evenly
        drop = np.linspace(1, g.size - 2, g.size - n).round().astype(int)
        g = np.delete(g, np.unique(drop))
    return g


#: Longest response length a plot draws (2^40 tokens, about 10^12).
MAX_LENGTH = 2**40
#: Most points of a curve, and of a heatmap axis (bounded work and memory).
MAX_POINTS = 20_000
MAX_GRID = 2_000


def _int_length(name: str, T) -> int:
    try:
        v = float(T)
    except (TypeError, ValueError, OverflowError):
        raise TrmboundsError(f"{name} must be an integer >= 1, got {T!r}") from None
    if not math.isfinite(v) or v != math.floor(v) or v < 1:
        raise TrmboundsError(f"{name} must be an integer >= 1, got {T!r}")
    if v > MAX_LENGTH:
        raise TrmboundsError(f"{name} = {T} is beyond the longest length drawn, 2^40 tokens")
    return int(v)


def _points(name: str, points, most: int) -> int:
    try:
        n = int(points)
    except (TypeError, ValueError, OverflowError):
        raise TrmboundsError(f"{name} must be an integer, got {points!r}") from None
    if n < 2:
        raise TrmboundsError(f"{name} must be at least 2, got {points}")
    if n > most:
        raise TrmboundsError(f"{name} = {points} is more than the {most:,} drawn at most")
    return n


def curve_data(
    T,
    kl_max,
    tv_max=None,
    kl_seq=None,
    kl_avg=None,
    tv_seq=None,
    bounds: Sequence[str] | str | None = None,
    *,
    adv_range=1.0,
    constants="paper",
) -> dict[str, np.ndarray]:
    r"""Each requested bound at the lengths ``T``, for a fixed :math:`\delta` (and :math:`\varepsilon`).

    The sequence statistics at each length are

    .. math::

        D_{KL}^{seq}(T) = \begin{cases} \min(D, T\delta) & \text{fixed } D
        \text{ (} T\delta \text{ is always valid)} \\ T\bar\delta & \text{mean per-token
        KL } \bar\delta \\ T\delta & \text{neither (worst case)} \end{cases},\qquad
        D_{TV}^{seq}(T) = \min\!\left(1, \sqrt{D_{KL}^{seq}/2}, T\varepsilon\right)

    (a given ``tv_seq`` replaces the derived value where it is smaller) and
    :math:`\varepsilon = \min(1, \sqrt{\delta/2})` unless given.

    Parameters
    ----------
    T : array_like of int
        Lengths, e.g. :func:`length_grid`.
    kl_max : float
        :math:`\delta`.
    tv_max : float, optional
        :math:`\varepsilon` (at most :math:`\sqrt{\delta/2}`, Pinsker).
    kl_seq, kl_avg : float, optional
        A fixed :math:`D_{KL}^{seq}`, or the mean per-token KL :math:`\bar\delta \le \delta`
        (give at most one).
    tv_seq : float, optional
        A fixed :math:`D_{TV}^{seq}`.
    bounds : sequence of str, optional
        Names from :data:`trmbounds.stats.BOUND_NAMES`; default :func:`default_bounds`.
    adv_range, constants
        As in :mod:`trmbounds.bounds`.

    Returns
    -------
    dict
        ``{name: array of bound values}`` in the order requested.

    Examples
    --------
    >>> d = curve_data([4096], 1e-4, kl_seq=0.01, bounds=["pm_kl", "mix_kl", "unified"])
    >>> [round(float(v[0]), 3) for v in d.values()]   # the paper's column A: 35.0, 8.2, 8.2
    [34.946, 8.192, 8.192]
    """
    delta = _positive("kl_max", kl_max)
    T = np.asarray(T, dtype=np.float64)
    if T.size == 0 or np.any(T < 1) or np.any(T != np.floor(T)):
        raise TrmboundsError("T must hold integers >= 1")
    if tv_max is not None:
        eps = _positive("tv_max", tv_max)
        if eps > math.sqrt(delta / 2.0) * (1 + 1e-9):
            raise TrmboundsError(
                f"tv_max = {eps:g} exceeds sqrt(kl_max/2) = {math.sqrt(delta / 2):.4g}: "
                "Pinsker's inequality makes that impossible"
            )
    else:
        eps = min(1.0, math.sqrt(delta / 2.0))
    if kl_seq is not None and kl_avg is not None:
        raise TrmboundsError("give kl_seq (fixed) or kl_avg (mean per-token KL), not both")
    if kl_avg is not None:
        kbar = _positive("kl_avg", kl_avg)
        if kbar > delta * (1 + 1e-12):
            raise TrmboundsError(
                f"kl_avg = {kbar:g} exceeds kl_max = {delta:g}: the mean per-token KL "
                "cannot exceed its maximum"
            )
        kseq = T * kbar
    elif kl_seq is not None:
        kseq = np.minimum(_positive("kl_seq", kl_seq), T * delta)
    else:
        kseq = T * delta
    tseq = np.minimum(1.0, np.minimum(np.sqrt(kseq / 2.0), T * eps))
    if tv_seq is not None:
        tseq = np.minimum(tseq, _positive("tv_seq", tv_seq))
    names = default_bounds(tv_max) if bounds is None else _names(bounds)
    kw = dict(adv_range=_positive("adv_range", adv_range), constants=constants)
    make = {
        "classical_tv": lambda: B.classical_tv(T, eps, **kw),
        "classical_kl": lambda: B.classical_kl(T, delta, **kw),
        "linear": lambda: B.linear(T, eps, **kw),
        "pm_kl": lambda: B.pm_kl(T, delta, **kw),
        "pm_tv": lambda: B.pm_tv(T, delta, eps, **kw),
        "mix_kl": lambda: B.mix_kl(T, delta, kseq, **kw),
        "mix_tv": lambda: B.mix_tv(T, eps, tseq, **kw),
        "coupling": lambda: B.coupling(T, eps, **kw),
        "adaptive_kl": lambda: B.adaptive_kl(T, delta, **kw),
        "adaptive_tv": lambda: B.adaptive_tv(T, eps, **kw),
        "adaptive": lambda: B.adaptive(T, delta, eps, **kw),
        "unified": lambda: B.unified(T, delta, eps, kseq, tseq, **kw),
    }
    shape = T.shape
    return {n: np.broadcast_to(np.asarray(make[n](), dtype=np.float64), shape) for n in names}


def _new_axes(ax):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=(8, 5.5), layout="constrained")
    return ax


def _pow2_axis(axis, lo: float, hi: float) -> None:
    """Log axis in base 2, labelled at powers of two spaced for the Axes' width."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    ax = axis.axes
    width_in = ax.figure.get_size_inches()[0] * ax.get_position().width
    # About 0.65 in per label once a legend or colour bar has taken its share.
    most = max(3, int(width_in * 0.75 / 0.5))
    k0, k1 = math.ceil(math.log2(lo) - 1e-9), math.floor(math.log2(hi) + 1e-9)
    if k1 - k0 < 2:  # a short range: plain lengths read better than 1-2 powers of two
        raw = np.geomspace(lo, hi, min(most, 5))
        digits = 1 - np.floor(np.log10(raw)).astype(int)  # two significant figures
        ticks = np.unique(
            [round(float(x), min(int(n), 0)) for x, n in zip(raw, digits, strict=True)]
        )
        axis.set_major_locator(FixedLocator(ticks))
        axis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:,.0f}"))
        axis.set_minor_formatter(NullFormatter())
        return
    need = (k1 - k0 + 1) / most
    step = next((s for s in (1, 2, 4, 5, 10, 20, 50) if s >= need), math.ceil(need))
    first = math.ceil(k0 / step) * step  # multiples of the step: 2^4, 2^8, ... 2^20
    axis.set_major_locator(FixedLocator([2.0**k for k in range(first, k1 + 1, step)]))
    axis.set_minor_locator(FixedLocator([2.0**k for k in range(k0, k1 + 1)]))
    axis.set_major_formatter(FuncFormatter(lambda x, _: f"$2^{{{round(math.log2(x))}}}$"))
    axis.set_minor_formatter(NullFormatter())


def _sci(x: float) -> str:
    """A number for a label: 1e-4 as '10^{-4}' in mathtext, others with 3 digits.

    Never in code notation: 2580 is '2.58\\times 10^{3}'.
    """
    if x == 0:
        return "0"
    m, e = f"{x:.2e}".split("e")
    e = int(e)
    if -2 <= e <= 2:  # three digits never turn into code notation (2.58e+03) here
        return f"{x:.3g}"
    m = m.rstrip("0").rstrip(".")
    return rf"10^{{{e}}}" if m == "1" else rf"{m}\times 10^{{{e}}}"


def curves(
    kl_max,
    *,
    tv_max=None,
    kl_seq=None,
    kl_avg=None,
    tv_seq=None,
    T_min: int = 16,
    T_max: int = 2**20,
    points: int = 400,
    bounds: Sequence[str] | str | None = None,
    mark_T: int | None = None,
    adv_range=1.0,
    constants="paper",
    title: str | None = None,
    ax=None,
):
    r"""Bound vs response length on log-log axes, one line per bound and the envelope.

    Draws every bound of :func:`curve_data` over :func:`length_grid` ``(T_min, T_max,
    points)``, labels each with its growth in :math:`T` (:data:`SCALINGS`), draws the
    vacuity line :math:`B = a` (a bound at or above the advantage range guarantees
    nothing) with the vacuous region shaded, and marks ``mark_T`` with the value of
    every curve there.

    Parameters
    ----------
    kl_max, tv_max, kl_seq, kl_avg, tv_seq, bounds, adv_range, constants
        As in :func:`curve_data`.
    T_min, T_max : int
        Range of lengths (default :math:`2^4 \dots 2^{20}`).
    points : int
        Points per curve (log-spaced, distinct integers).
    mark_T : int, optional
        A length to mark (a vertical line and the value of each curve there).
    title : str, optional
        Axes title; default names the statistics.
    ax : matplotlib Axes, optional
        Where to draw; a new pyplot figure when ``None``.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> from matplotlib.figure import Figure
    >>> ax = curves(1e-4, kl_seq=0.01, T_max=4096, points=50, ax=Figure().add_subplot())
    >>> [line.get_label() for line in ax.get_lines()][:2]
    ['Classical (KL)  $\\propto T^2$', 'Pinsker-Marginal KL  $\\propto T^{3/2}$']
    >>> round(float(ax.get_lines()[1].get_ydata()[-1]), 4)   # PM-KL at T = 4096
    34.9461
    """
    Ts = length_grid(T_min, T_max, points)
    if mark_T is not None:
        mark_T = _int_length("mark_T", mark_T)
        if not Ts[0] <= mark_T <= Ts[-1]:
            raise TrmboundsError(
                f"mark_T = {mark_T} is outside the lengths drawn, {int(Ts[0])} to {int(Ts[-1])}"
            )
    data = curve_data(
        Ts, kl_max, tv_max, kl_seq, kl_avg, tv_seq, bounds, adv_range=adv_range, constants=constants
    )
    a = _drawable("adv_range", adv_range)
    ax = _new_axes(ax)
    growing = kl_seq is None and tv_seq is None
    for name, y in data.items():
        scaling = SCALINGS[name]
        if growing and name in ("mix_kl", "mix_tv"):
            scaling = "T^{3/2}"  # D_KL^seq grows like T
        label = LABELS[name] + (f"  $\\propto {scaling}$" if scaling else "")
        if name == "unified":
            # A wide pale band UNDER the members: the tightest member stays visible on it.
            ax.plot(Ts, y, label=label + ": the lowest curve", color="0.15", lw=7.0,
                    alpha=0.22, solid_capstyle="butt", zorder=2)  # fmt: skip
        else:
            ax.plot(Ts, y, label=label, color=_COLORS[name], lw=1.6, zorder=3,
                    ls=(0, (5, 1.5)) if name in _DASHED else "-")  # fmt: skip
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ylo, yhi = _y_window(data, a, _mark_value(mark_T, data, Ts))
    ax.set_ylim(ylo, yhi)
    xhi = _x_end(Ts, data, yhi, mark_T)
    ax.set_xlim(Ts[0], xhi)
    _pow2_axis(ax.xaxis, Ts[0], xhi)
    # Vacuity: B >= a guarantees nothing (a light band; the curves matter below it).
    ax.axhspan(a, yhi, color="0.94", zorder=0, lw=0)
    ax.axhline(a, color="0.35", lw=1.0, ls=":", zorder=2)
    fx, ha, above = _vacuity_label_spot(Ts, data, a, ylo, yhi, xhi, mark_T)
    ax.annotate(
        f"vacuous above $B = a = {_sci(a)}$",
        xy=(fx, a),
        xycoords=("axes fraction", "data"),
        xytext=(0, 3 if above else -3),
        textcoords="offset points",
        fontsize=8,
        color="0.3",
        ha=ha,
        va="bottom" if above else "top",
        # The region's own colour behind it: a line crossing it (the mark) stays under
        # it, and the curves (above it) stay on top.
        bbox=dict(facecolor="0.94" if above else "white", edgecolor="none", pad=0.5),
        zorder=2.5,
    )
    if mark_T is not None:
        ax.axvline(mark_T, color="0.45", lw=1.0, ls="-.", zorder=2)
        at = curve_data(
            [mark_T],
            kl_max,
            tv_max,
            kl_seq,
            kl_avg,
            tv_seq,
            tuple(data),
            adv_range=adv_range,
            constants=constants,
        )
        for name, v in at.items():
            ax.plot([mark_T], [float(v[0])], "o", ms=4.5, color=_COLORS[name], zorder=5,
                    markeredgecolor="white", markeredgewidth=0.6)  # fmt: skip
        u = at.get("unified")
        y0 = float(u[0]) if u is not None else min(float(v[0]) for v in at.values())
        text = f"$T = {mark_T:,}$".replace(",", "{,}") + (
            f"\n$B^* = {_sci(y0)}$" if u is not None else ""
        )
        # Beside the marked point (left of it when it is near the right edge).
        right = math.log(mark_T / Ts[0]) / math.log(xhi / Ts[0]) < 0.8
        ax.annotate(
            text,
            xy=(mark_T, min(max(y0, ylo), yhi)),
            xytext=(7 if right else -7, -4),
            textcoords="offset points",
            fontsize=8,
            va="top",
            ha="left" if right else "right",
            color="0.15",
            zorder=6,
            bbox=dict(boxstyle="round,pad=0.2", facecolor="white", edgecolor="none", alpha=0.85),
        )
    ax.set_xlabel("response length $T$ (tokens)")
    ax.set_ylabel("bound on |Error| (reward units)")
    if title is None:
        title = _title(kl_max, tv_max, kl_seq, kl_avg, tv_seq, constants)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    # Outside the axes: inside, a legend always covers some of the curves or the line.
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return ax


def _mark_value(mark_T, data, Ts) -> float | None:
    """The unified bound (or the lowest curve) at ``mark_T``, interpolated on the grid."""
    if mark_T is None:
        return None
    y = data.get("unified")
    if y is None:
        y = np.min(np.vstack(list(data.values())), axis=0)
    return float(np.exp(np.interp(math.log(mark_T), np.log(Ts), np.log(np.maximum(y, 1e-300)))))


def _y_window(data, a: float, keep: float | None = None) -> tuple[float, float]:
    """The y-range of the curves plot: around the vacuity line, at most 8 decades.

    From a third of the lowest value to three times the highest, cut to at most
    :math:`10^2 a` above (deep in the vacuous region nothing more is learnt) and to 8
    decades in all; the line :math:`B = a` is always inside, with room above it.
    """
    ys = np.concatenate([v[np.isfinite(v) & (v > 0)] for v in data.values()] + [np.array([a])])
    lo, hi = float(ys.min()) / 3.0, float(ys.max()) * 3.0
    top = max(min(hi, 1e2 * a), 10.0 * a)
    if keep is not None and math.isfinite(keep) and keep > 0:  # the marked point is shown
        top = max(top, min(hi, 2.0 * keep))
    bottom = min(max(lo, top * 1e-8), a / 10.0)
    return bottom, top


def _x_end(Ts, data, yhi: float, mark_T: int | None) -> float:
    """Where the x-axis ends: soon after the last curve has left the window at the top.

    The first power of two at least 1.25 times the longest length at which some curve
    is still inside the window (and not before ``mark_T``), at most the last length.
    Nothing is left out: beyond it every curve is above the window.
    """
    inside = np.any(np.vstack(list(data.values())) <= yhi, axis=0)
    if not inside.any():
        return float(Ts[-1])
    last = float(Ts[np.flatnonzero(inside)[-1]])
    end = 2.0 ** math.ceil(math.log2(last * 1.25))
    if mark_T is not None:
        end = max(end, 2.0 ** math.ceil(math.log2(mark_T * 1.25)))
    return float(min(max(end, Ts[min(1, Ts.size - 1)]), Ts[-1]))


def _vacuity_label_spot(Ts, data, a, ylo, yhi, xhi=None, mark_T=None):
    """Where the vacuity label crosses no curve: (x axes-fraction, ha, above the line?).

    Tries the left and right ends of the window (which ends at ``xhi``), above and then
    below the line; the label spans about a third of the width and a twentieth of the
    (log) height, and a spot that the ``mark_T`` line crosses is not taken.
    """
    xhi = float(Ts[-1]) if xhi is None else xhi
    lx = np.log(Ts)
    # On a fine grid: a coarse one (few --points) steps over a crossing.
    fine = np.linspace(lx[0], math.log(xhi), 400)
    frac = (fine - lx[0]) / (math.log(xhi) - lx[0])
    fm = None if mark_T is None else (math.log(mark_T) - lx[0]) / (math.log(xhi) - lx[0])
    band = (yhi / ylo) ** 0.05
    ys = np.vstack(
        [np.exp(np.interp(fine, lx, np.log(np.maximum(v, 1e-300)))) for v in data.values()]
    )
    spots = ((0.01, "left", 0.0, 0.35), (0.99, "right", 0.65, 1.0))
    for above in (True, False):
        lo, hi = (a, a * band) if above else (a / band, a)
        for fx, ha, f0, f1 in spots:
            span = (frac >= f0) & (frac <= f1)
            if fm is not None and f0 - 0.02 <= fm <= f1 + 0.02:
                continue
            if not np.any((ys[:, span] >= lo) & (ys[:, span] <= hi)):
                return fx, ha, above
    return 0.99, "right", True


def _title(kl_max, tv_max, kl_seq, kl_avg, tv_seq, constants) -> str:
    d = float(kl_max)
    parts = [rf"$\delta = {_sci(d)}$"]
    if tv_max is not None:
        parts.append(rf"$\varepsilon = {_sci(float(tv_max))}$")
    else:  # the TV maximum the bounds use: Pinsker's worst case, an assumption too
        parts.append(rf"$\varepsilon = \sqrt{{\delta/2}} = {_sci(math.sqrt(d / 2))}$")
    if kl_seq is not None:
        parts.append(rf"$D_{{KL}}^{{seq}} = {_sci(float(kl_seq))}$")
    elif kl_avg is not None:
        parts.append(rf"$D_{{KL}}^{{seq}} = T \cdot {_sci(float(kl_avg))}$")
    else:
        parts.append(r"$D_{KL}^{seq} = T\delta$")
    if tv_seq is not None:
        parts.append(rf"$D_{{TV}}^{{seq}} = {_sci(float(tv_seq))}$")
    return (
        "TRM error bounds vs response length, assuming\n"
        + ", ".join(parts)
        + f" ({constants} constants)"
    )


def heatmap_data(
    T_min: int = 16,
    T_max: int = 2**20,
    kl_range=(1e-8, 1e-1),
    *,
    points=(160, 120),
    tv_ratio=None,
    kl_avg=None,
    adv_range=1.0,
    constants="paper",
):
    r"""The unified bound over a log-spaced (T, δ) grid, with the solver's ties.

    Values are :func:`trmbounds.solve.threshold_bound` (:math:`\varepsilon = r\sqrt{\delta/2}`,
    :math:`D_{KL}^{seq} = T\delta` or :math:`T\bar\delta`, :math:`D_{TV}^{seq}` derived).
    With ``kl_avg``, cells with :math:`\delta < \bar\delta` are impossible and are NaN.

    Returns
    -------
    (T, delta, values)
        ``T`` of shape (nT,), ``delta`` of shape (nδ,), ``values`` of shape (nδ, nT).

    Examples
    --------
    >>> T, d, v = heatmap_data(16, 4096, (1e-6, 1e-2), points=(3, 3))
    >>> T.tolist(), d.tolist(), v.shape
    ([16.0, 256.0, 4096.0], [1e-06, 0.0001, 0.01], (3, 3))
    """
    from .solve import threshold_bound

    nT, nd = (points, points) if np.ndim(points) == 0 else points
    nT, nd = _points("points", nT, MAX_GRID), _points("points", nd, MAX_GRID)
    Ts = length_grid(T_min, T_max, nT)
    lo, hi = (_positive("kl_range", x) for x in kl_range)
    if lo >= hi:
        raise TrmboundsError(f"kl_range must be increasing, got ({lo:g}, {hi:g})")
    deltas = np.geomspace(lo, hi, nd)
    v = np.asarray(
        threshold_bound(
            Ts[None, :],
            deltas[:, None],
            tv_ratio=tv_ratio,
            kl_avg=kl_avg,
            adv_range=_positive("adv_range", adv_range),
            constants=constants,
        ),
        dtype=np.float64,
    )
    if kl_avg is not None:
        v = np.where(deltas[:, None] >= float(kl_avg), v, np.nan)
    return Ts, deltas, v


def heatmap(
    T_min: int = 16,
    T_max: int = 2**20,
    kl_range=(1e-8, 1e-1),
    *,
    budgets: Sequence[float] = (),
    points=(160, 120),
    tv_ratio=None,
    kl_avg=None,
    adv_range=1.0,
    constants="paper",
    title: str | None = None,
    ax=None,
):
    r"""The unified bound :math:`B^*` over (T, δ), with the vacuity and budget contours.

    Colours are :func:`heatmap_data` on a log scale (colour bar in reward units). A solid
    white contour marks :math:`B^* = a` (vacuous above it); dashed contours mark each
    budget :math:`\beta`: below a budget's line a TRM-Max threshold :math:`\delta` keeps
    :math:`B^* \le \beta` at that length (:func:`trmbounds.solve.max_kl_threshold`
    traces the same line).

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> from matplotlib.figure import Figure
    >>> ax = heatmap(16, 4096, (1e-6, 1e-2), budgets=[0.1], points=(20, 20),
    ...              ax=Figure().add_subplot())
    >>> ax.get_xscale(), ax.get_yscale()
    ('log', 'log')
    """
    from matplotlib.colors import LogNorm

    budgets = [_positive("budget", b) for b in budgets]
    for x in kl_range:
        _drawable("kl_range", x)
    _drawable("adv_range", adv_range)
    Ts, deltas, v = heatmap_data(
        T_min,
        T_max,
        kl_range,
        points=points,
        tv_ratio=tv_ratio,
        kl_avg=kl_avg,
        adv_range=adv_range,
        constants=constants,
    )
    a = _positive("adv_range", adv_range)
    ax = _new_axes(ax)
    finite = v[np.isfinite(v) & (v > 0)]
    if finite.size == 0:
        raise TrmboundsError("the bound is zero or undefined on the whole grid")
    vmin, vmax = float(finite.min()), float(finite.max())
    # Scales first: clabel places its labels in screen space.
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlim(Ts[0], Ts[-1])
    ax.set_ylim(deltas[0], deltas[-1])
    _pow2_axis(ax.xaxis, Ts[0], Ts[-1])
    # Non-vacuous cells in colour (how far below the range a), vacuous ones grey: the two
    # regions differ at a glance, not only by a contour label.
    good = np.where((v > 0) & (v < a), v, np.nan)
    top = min(vmax, a)
    mesh = ax.pcolormesh(
        Ts,
        deltas,
        np.ma.masked_invalid(good),
        norm=LogNorm(vmin=min(vmin, top / 10), vmax=top),
        cmap="viridis",
        shading="nearest",
        rasterized=True,
    )
    vac = np.isfinite(v) & (v >= a)
    if vac.any():
        from matplotlib.colors import ListedColormap

        ax.pcolormesh(Ts, deltas, np.ma.masked_where(~vac, np.ones_like(v)),
                      cmap=ListedColormap(["0.86"]), shading="nearest", rasterized=True)  # fmt: skip
        ax.text(0.98, 0.88, rf"VACUOUS: $B^* \geq a = {_sci(a)}$" + "\nno guarantee",
                transform=ax.transAxes, ha="right", va="top", fontsize=9, color="0.2",
                bbox=dict(facecolor="0.86", edgecolor="none", alpha=0.9))  # fmt: skip
    cb = ax.figure.colorbar(mesh, ax=ax, pad=0.02)
    cb.set_label("unified bound $B^*$ where non-vacuous (reward units)")
    levels = sorted({*budgets, a})
    levels = [lv for lv in levels if vmin < lv < vmax]
    if levels:
        cs = ax.contour(
            Ts,
            deltas,
            v,
            levels=levels,
            # A budget at or above a lies in the grey vacuous region: dark, not white.
            colors=["black" if lv == a else ("white" if lv < a else "0.15") for lv in levels],
            linestyles=["-" if lv == a else "--" for lv in levels],
            linewidths=[1.6 if lv == a else 1.3 for lv in levels],
        )
        names = {lv: (f"$B^*={_sci(lv)}$" if lv == a else rf"$\beta={_sci(lv)}$") for lv in levels}
        # Label each line on its longest piece (automatic placement can put a label
        # across the frame).
        spots = []
        for j, segs in enumerate(cs.allsegs):
            if segs:  # staggered along the lines so that the labels do not stack up
                seg = max(segs, key=len)
                x, y = seg[int(len(seg) * (j + 1) / (len(cs.allsegs) + 1))]
                spots.append((x, y))
        ax.clabel(cs, fmt=names, fontsize=8, inline=True, inline_spacing=6, manual=spots)
    _heatmap_marks(ax, Ts, deltas)
    ax.set_xlabel("response length $T$ (tokens)")
    ax.set_ylabel(r"TRM-Max threshold $\delta$ (max token KL)")
    if kl_avg is not None and float(kl_avg) > deltas[0]:
        ax.axhspan(deltas[0], float(kl_avg), facecolor="none", edgecolor="0.6", hatch="//", lw=0)
        ax.text(
            0.5,
            math.sqrt(deltas[0] * min(float(kl_avg), deltas[-1])),
            r"$\delta <$ mean per-token KL: impossible",
            transform=ax.get_yaxis_transform(),
            ha="center",
            va="center",
            fontsize=9,
            color="0.25",
            bbox=dict(facecolor="white", edgecolor="none", alpha=0.85),
        )
    if title is None:
        ties = (
            r"$\varepsilon = \sqrt{\delta/2}$"
            if tv_ratio is None
            else (rf"$\varepsilon = {float(tv_ratio):g}\sqrt{{\delta/2}}$")
        )
        seq = (
            r"$D_{KL}^{seq} = T\delta$"
            if kl_avg is None
            else rf"$D_{{KL}}^{{seq}} = T\cdot {_sci(float(kl_avg))}$"
        )
        title = f"Unified bound $B^*$ over $(T, \\delta)$\n{ties}, {seq} ({constants} constants)"
    ax.set_title(title, fontsize=10)
    return ax


#: The paper's TRM-Max threshold (Li et al., Section 6), marked on the heatmap.
PAPER_TRM_MAX = 0.05
#: Common response lengths, marked on the heatmap.
COMMON_LENGTHS = (4096, 8192, 16384, 32768)


def _heatmap_marks(ax, Ts, deltas) -> None:
    """The paper's threshold delta = 0.05 and common lengths (where inside the map).

    The lengths are named on a secondary axis above the map (legible, and never under a
    contour); the threshold's label sits on the side of its line away from the frame.
    """
    if deltas[0] < PAPER_TRM_MAX < deltas[-1]:
        ax.axhline(PAPER_TRM_MAX, color="C3", lw=1.2, ls="--", zorder=4)
        frac = math.log(PAPER_TRM_MAX / deltas[0]) / math.log(deltas[-1] / deltas[0])
        above = frac < 0.85  # near the top frame: the label goes under the line
        ax.annotate(
            rf"paper's TRM-Max $\delta = {PAPER_TRM_MAX:g}$",
            xy=(0.01, PAPER_TRM_MAX),
            xycoords=("axes fraction", "data"),
            xytext=(0, 3 if above else -3),
            textcoords="offset points",
            fontsize=8,
            color="C3",
            va="bottom" if above else "top",
            bbox=dict(facecolor="white", edgecolor="none", alpha=0.8, pad=1),
        )
    inside = [T for T in COMMON_LENGTHS if Ts[0] < T < Ts[-1]]
    for T in inside:
        ax.axvline(T, color="white", lw=0.8, ls=":", alpha=0.9, zorder=4)
    if inside:
        from matplotlib.ticker import FixedLocator, NullLocator

        top = ax.secondary_xaxis("top")
        top.xaxis.set_major_locator(FixedLocator(inside))
        top.xaxis.set_minor_locator(NullLocator())
        top.set_xticks(inside, [f"{T // 1024}k" for T in inside])
        top.tick_params(labelsize=8, length=3, pad=1, colors="0.25")


def adaptive_routes(T: int, kl_max, tv_max, *, ax=None):
    r"""Per-position weights of the Adaptive bound's two routes, and their crossover.

    Plots, against the distance to the end :math:`k = T - t` (log axes), the TV-route
    weight :math:`\min(1, k\varepsilon)`, the KL-route weight
    :math:`\min(1, \sqrt{k\delta/2})` and the hybrid's :math:`\min` of both. The Adaptive
    bound is :math:`4\sum_t \bar D_t w_t`; the routes cross at
    :math:`k^* = \delta / (2\varepsilon^2)` (dotted line): positions within :math:`k^*`
    of the end take the TV route, earlier ones the KL route.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> from matplotlib.figure import Figure
    >>> ax = adaptive_routes(1024, 1e-4, 1e-3, ax=Figure().add_subplot())
    >>> float(ax.get_lines()[0].get_ydata()[9])   # TV route at k = 10: 10 * 1e-3
    0.01
    """
    T = _int_length("T", T)
    if T < 2:
        raise TrmboundsError(f"T must be at least 2 to have routes, got {T}")
    delta = _positive("kl_max", kl_max)
    eps = _positive("tv_max", tv_max)
    k = np.arange(1, T, dtype=np.float64)  # k = T - t for t = T-1 .. 1 (w = 0 at k = 0)
    w_tv = np.minimum(1.0, k * eps)
    w_kl = np.minimum(1.0, np.sqrt(k * delta / 2.0))
    ax = _new_axes(ax)
    ax.plot(
        k, w_tv, color=_COLORS["adaptive_tv"], lw=1.5, label=r"TV route $\min(1, k\varepsilon)$"
    )
    ax.plot(
        k,
        w_kl,
        color=_COLORS["adaptive_kl"],
        lw=1.5,
        label=r"KL route $\min(1, \sqrt{k\delta/2})$",
    )
    ax.plot(k, np.minimum(w_tv, w_kl), color="black", lw=2.2, ls="--", label="hybrid (min)")
    kstar = delta / (2.0 * eps * eps)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(1, max(T - 1, 2))
    if 1 <= kstar < T:
        ax.axvline(kstar, color="0.4", ls=":", lw=1)
        right = kstar > math.sqrt(T)
        ax.annotate(
            rf"$k^* = \delta/2\varepsilon^2 = {kstar:.4g}$",
            xy=(kstar, 0.03),
            xycoords=("data", "axes fraction"),
            xytext=(-4 if right else 4, 0),
            textcoords="offset points",
            ha="right" if right else "left",
            fontsize=8,
        )
    ax.set_xlabel("distance to the end $k = T - t$")
    ax.set_ylabel("weight $w_t$")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize=8, framealpha=0.92)
    return ax
