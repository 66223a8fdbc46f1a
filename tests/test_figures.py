"""What a reader of the figures sees: labels, legends and ranges of the timeline,
the curves and the heatmap (drawn without rendering to pixels, so the checks are fast)."""

from __future__ import annotations

import math

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")

from matplotlib.figure import Figure  # noqa: E402

from trmbounds import plot as P  # noqa: E402
from trmbounds.logs.check import Assumption, check_log  # noqa: E402
from trmbounds.logs.timeline import FLAG_COLOR, plot_timeline  # noqa: E402


def _metrics(tmp_path, n: int, k2_max: float = 5e-6):
    """A verl-like metric log of n steps: surrogate ~ 1e-3, acceptance 0 on every 3rd step."""
    import json

    p = tmp_path / "m.jsonl"
    with p.open("w") as f:
        for i in range(n):
            data = {
                "response_length/max": 1024,
                "rollout_corr/rollout_rs_seq_max_k2_max": k2_max * (1 + i % 2),
                "rollout_corr/rollout_rs_seq_masked_fraction": 1.0 if i % 3 == 0 else 0.2,
                "actor/surrogate_gain": 1e-3,
            }
            f.write(json.dumps({"step": i + 1, "data": data}) + "\n")
    return check_log(p, assumption=Assumption(kl_max=6e-6), maps=["surrogate=actor/surrogate_gain"])


def _draw(fig):
    """Lay the figure out on an Agg canvas; its renderer measures the artists."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig).draw()
    return fig.canvas.get_renderer()


def _inside(fig, artist, axes) -> bool:
    """The artist's box lies within the horizontal extent of ``axes`` (display units)."""
    r = fig.canvas.get_renderer()
    b, a = artist.get_window_extent(r), axes.get_window_extent(r)
    return b.x0 >= a.x0 - 1 and b.x1 <= a.x1 + 1


@pytest.mark.parametrize("n", [10, 300])
def test_timeline_reads_as_a_figure_at_10_and_300_steps(tmp_path, n):
    r = _metrics(tmp_path, n)
    ax = plot_timeline(r)
    fig = ax.figure
    _draw(fig)  # the layout, to measure the legends
    bound, strip, acc = fig.axes
    # The surrogate is drawn on the bound panel: its axis says so, and shows it.
    assert any(ln.get_label().startswith("surrogate") for ln in bound.get_lines())
    assert "surrogate" in bound.get_ylabel()
    lo, hi = bound.get_ylim()
    assert lo < 1e-3 < hi
    # Legends over the panels' width, not beside them (they took ~40 % of it).
    for panel in (bound, strip, acc):
        assert _inside(fig, panel.get_legend(), panel)
    assert bound.get_window_extent().width > 0.8 * fig.bbox.width
    # Flagged steps (k2 = 1e-5 > delta = 6e-6 on every other step) are cells of
    # their own lane, in the colour of their legend patch, not markers on the states.
    flagged = ~np.isnan(np.asarray(r.flag, float))
    assert flagged.sum() == n // 2
    assert not [c for c in strip.collections if c.__class__.__name__ == "PathCollection"]
    lane = strip.collections[-1]
    assert np.ma.count(lane.get_array()) == flagged.sum()
    patch = strip.get_legend().get_patches()[-1]
    assert matplotlib.colors.same_color(patch.get_facecolor(), FLAG_COLOR)
    assert matplotlib.colors.same_color(lane.get_cmap()(0.5), FLAG_COLOR)
    # An acceptance of 0 (every 3rd step) lies inside the frame, not on its edge.
    assert np.nanmin(r.acceptance) == 0
    assert acc.get_ylim()[0] < 0 and acc.get_ylim()[1] > 1


def test_curves_stop_soon_after_the_last_curve_leaves():
    """At delta = 1e-4, T*kl_avg = T*1e-6: every curve is above 100 a by T = 2^15."""
    ax = P.curves(1e-4, kl_avg=1e-6, ax=Figure().add_subplot())
    lo, hi = ax.get_xlim()
    assert hi < 2**20
    top = ax.get_ylim()[1]
    for ln in ax.get_lines():
        x, y = np.asarray(ln.get_xdata()), np.asarray(ln.get_ydata())
        if x.size > 2:  # a curve, not a mark
            assert np.all(y[x > hi] > top)  # nothing hidden beyond the end
    # and the end is within a factor 2.5 of the last length with a curve in the window
    last = max(
        np.asarray(ln.get_xdata())[np.asarray(ln.get_ydata()) <= top].max()
        for ln in ax.get_lines()
        if len(ln.get_xdata()) > 2
    )
    assert last < hi <= 2.5 * last


def test_labels_never_in_code_notation():
    # 2580 and 0.00123 read as mathtext powers of ten, not as 2.58e+03
    assert P._sci(2580.0) == r"2.58\times 10^{3}"
    assert "e" not in P._sci(999.0) and "e" not in P._sci(0.0123)
    ax = P.curves(1e-1, mark_T=4096, T_max=8192, ax=Figure().add_subplot())
    texts = [t.get_text() for t in ax.texts]
    assert not [t for t in texts if "e+" in t or "e-0" in t]


def test_mixed_tv_stands_out_from_the_band():
    """Mixed TV runs on the pale band of B*: its colour is dark (luminance well below it)."""
    from matplotlib.colors import to_rgb

    def lum(c):
        r, g, b = to_rgb(c)
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    ax = P.curves(1e-4, tv_max=5e-3, kl_seq=0.01, T_max=4096, ax=Figure().add_subplot())
    line = next(ln for ln in ax.get_lines() if ln.get_label().startswith("Mixed TV"))
    assert lum(line.get_color()) < 0.5 * lum("0.94")


def test_heatmap_lengths_on_their_own_axis_and_budget_above_a_is_dark():
    fig = Figure(figsize=(8.5, 5), layout="constrained")
    ax = P.heatmap(16, 2**20, (1e-10, 1e-1), budgets=[0.1, 3.0], points=(40, 40),
                   ax=fig.add_subplot())  # fmt: skip
    r = _draw(fig)
    # The lengths are tick labels of an axis above the map, at least 8 pt.
    tops = [c for c in ax.child_axes if c.__class__.__name__ == "SecondaryAxis"]
    assert len(tops) == 1
    labels = [t for t in tops[0].get_xticklabels() if t.get_text()]
    assert [t.get_text() for t in labels] == ["4k", "8k", "16k", "32k"]
    assert min(t.get_fontsize() for t in labels) >= 8
    # beta = 3 >= a = 1 lies on the grey (vacuous) region: drawn dark, not white.
    cs = next(c for c in ax.collections if c.__class__.__name__ == "QuadContourSet")
    colours = dict(zip(cs.levels, cs.get_edgecolor(), strict=True))
    assert matplotlib.colors.same_color(colours[0.1], "white")
    assert sum(colours[3.0][:3]) < 1.0
    # The paper's threshold label stays inside the frame at the notebook's size.
    note = next(t for t in ax.texts if "paper's TRM-Max" in t.get_text())
    assert note.get_window_extent(r).y1 <= ax.get_window_extent(r).y1
    assert math.isclose(note.xy[1], P.PAPER_TRM_MAX)
