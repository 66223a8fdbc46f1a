"""Plots (trmbounds.plot) and `trmbounds plot curves|heatmap`.

What is drawn is read back from the Axes and compared with the bound functions; the
scaling labels are compared with slopes measured on the data; files are checked as
images of the requested size and format.
"""

from __future__ import annotations

import json
import math
import re
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from matplotlib.figure import Figure
from typer.testing import CliRunner

from trmbounds import bounds as B
from trmbounds import plot as P
from trmbounds import solve as S
from trmbounds.cli import app
from trmbounds.errors import TrmboundsError

runner = CliRunner()


def new_ax(w=9.0, h=5.5):
    return Figure(figsize=(w, h), layout="constrained").add_subplot()


def curve_lines(ax) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{bound name: (x, y)} for the curves (labelled lines) on the Axes."""
    by_label = {}
    for line in ax.get_lines():
        for name, text in P.LABELS.items():
            if line.get_label().startswith(text) and len(line.get_xdata()) > 1:
                by_label[name] = (np.asarray(line.get_xdata()), np.asarray(line.get_ydata()))
    return by_label


# ---------------------------------------------------------------- curve data
def test_lines_read_back_equal_the_bound_functions():
    d, e, kseq, tseq = 1e-4, 5e-3, 0.01, 0.05
    names = list(P.LABELS)  # every bound
    ax = P.curves(d, tv_max=e, kl_seq=kseq, tv_seq=tseq, bounds=names, points=500, ax=new_ax())
    lines = curve_lines(ax)
    assert set(lines) == set(names)
    T = lines["pm_kl"][0]
    assert T[0] == 16 and T[-1] == 2**20 and np.all(T == np.round(T)) and np.all(np.diff(T) > 0)
    assert T.size == 500  # the requested number of distinct integer lengths
    # Fixed statistics can only be used where they are possible: D_KL^seq <= T delta and
    # D_TV^seq <= min(1, sqrt(D_KL^seq/2), T eps).
    ks = np.minimum(kseq, T * d)
    ts = np.minimum(np.minimum(1.0, np.minimum(np.sqrt(ks / 2), T * e)), tseq)
    want = {
        "classical_tv": B.classical_tv(T, e),
        "classical_kl": B.classical_kl(T, d),
        "linear": B.linear(T, e),
        "pm_kl": B.pm_kl(T, d),
        "pm_tv": B.pm_tv(T, d, e),
        "mix_kl": B.mix_kl(T, d, ks),
        "mix_tv": B.mix_tv(T, e, ts),
        "coupling": B.coupling(T, e),
        "adaptive_kl": B.adaptive_kl(T, d),
        "adaptive_tv": B.adaptive_tv(T, e),
        "adaptive": B.adaptive(T, d, e),
        "unified": B.unified(T, d, e, ks, ts),
    }
    for name, (x, y) in lines.items():
        np.testing.assert_array_equal(x, T)
        np.testing.assert_allclose(y, want[name], rtol=1e-14, err_msg=name)


def test_curve_data_at_4096_is_the_papers_table():
    # SPEC §3 reference values at T = 4096 (exact sums where the paper rounds).
    a = P.curve_data([4096], 1e-4, kl_seq=0.01, bounds=list(P.LABELS))  # column A
    b = P.curve_data([4096], 1e-4, 5e-3, kl_seq=0.01, tv_seq=0.05, bounds=list(P.LABELS))
    for name, want in [
        ("classical_kl", 1677),
        ("coupling", 113.8),
        ("pm_kl", 34.9461),
        ("pm_tv", 34.9461),
        ("mix_kl", 8.192),
        ("mix_tv", 8.192),
    ]:
        assert float(a[name][0]) == pytest.approx(want, rel=5e-4), name
    for name, want in [
        ("classical_tv", 839),
        ("coupling", 79.9),
        ("pm_tv", 24.7106),
        ("mix_tv", 4.096),
        ("unified", 4.096),
    ]:
        assert float(b[name][0]) == pytest.approx(want, rel=5e-4), name


def test_kl_avg_makes_the_sequence_kl_grow():
    # D_KL^seq = T kl_avg: Mixed KL = 4 T sqrt(delta/2) min(1, sqrt(T kl_avg / 2)).
    T = np.array([16.0, 1024.0, 2.0**20])
    got = P.curve_data(T, 1e-4, kl_avg=1e-6, bounds=["mix_kl"])["mix_kl"]
    want = 4 * T * math.sqrt(1e-4 / 2) * np.minimum(1, np.sqrt(T * 1e-6 / 2))
    np.testing.assert_allclose(got, want, rtol=1e-14)


def _slope(x, y, lo, hi):
    m = (x >= lo) & (x <= hi)
    return np.polyfit(np.log(x[m]), np.log(y[m]), 1)[0]


@pytest.mark.parametrize(
    "kw, expected",
    [
        # fixed D_KL^seq: classical T^2, PM T^{3/2}, Mixed T (paper's Table 1)
        (
            dict(kl_max=1e-9, kl_seq=1e-6),
            {"classical_kl": 2.0, "pm_kl": 1.5, "mix_kl": 1.0},
        ),
        # D_KL^seq = T kl_avg grows: the Mixed bound grows like T^{3/2}
        (dict(kl_max=1e-9, kl_avg=1e-10), {"mix_kl": 1.5}),
    ],
)
def test_scaling_labels_match_measured_slopes(kw, expected):
    ax = P.curves(T_min=1024, T_max=2**20, bounds=list(expected), ax=new_ax(), **kw)
    texts = {ln.get_label().split("  ")[0]: ln.get_label() for ln in ax.get_lines()}
    tex = {2.0: "T^2$", 1.5: "T^{3/2}$", 1.0: "T$"}
    lines = curve_lines(ax)
    assert set(lines) == set(expected)
    for name, (x, y) in lines.items():
        s = _slope(x, y, 4096, 2**20)
        assert s == pytest.approx(expected[name], abs=0.01), name
        assert texts[P.LABELS[name]].endswith(tex[expected[name]]), texts


def test_mark_T_and_vacuity_line():
    ax = P.curves(1e-4, kl_avg=1e-6, mark_T=4096, adv_range=2.0, ax=new_ax())
    marks = [ln for ln in ax.get_lines() if len(ln.get_xdata()) == 1 and ln.get_marker() == "o"]
    unified = B.unified(4096, 1e-4, None, 4096 * 1e-6, adv_range=2.0)
    assert any(float(m.get_ydata()[0]) == pytest.approx(unified, rel=1e-14) for m in marks)
    hlines = [ln for ln in ax.get_lines() if list(ln.get_ydata()) == [2.0, 2.0]]
    assert hlines, "vacuity line B = a = 2"
    assert any("vacuous above" in t.get_text() for t in ax.texts)


def test_legend_and_labels_do_not_cover_the_axes():
    fig = Figure(figsize=(9, 5.5), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    P.curves(1e-4, tv_max=5e-3, kl_seq=0.01, mark_T=4096, ax=ax)
    fig.draw_without_rendering()  # runs the constrained layout
    legend = ax.get_legend().get_window_extent()
    axes = ax.get_window_extent()
    assert legend.x0 >= axes.x1  # the legend sits outside, beside the data
    assert legend.x1 <= fig.bbox.x1 + 1  # and inside the figure
    # x tick labels do not overlap one another
    boxes = [t.get_window_extent() for t in ax.get_xticklabels() if t.get_text()]
    assert len(boxes) >= 5
    assert all(a.x1 < b.x0 for a, b in zip(boxes, boxes[1:], strict=False))


def test_bad_curve_inputs():
    with pytest.raises(TrmboundsError, match="unknown bound 'foo'"):
        P.curve_data([16], 1e-4, bounds=["pm_kl", "foo"])
    with pytest.raises(TrmboundsError, match="T_min must be below T_max"):
        P.length_grid(1024, 1024)
    with pytest.raises(TrmboundsError, match="T_min must be an integer >= 1"):
        P.length_grid(0, 1024)
    with pytest.raises(TrmboundsError, match="exceeds kl_max"):
        P.curve_data([16], 1e-4, kl_avg=1e-3)
    with pytest.raises(TrmboundsError, match="Pinsker"):
        P.curve_data([16], 1e-4, tv_max=0.1)
    with pytest.raises(TrmboundsError, match="not both"):
        P.curve_data([16], 1e-4, kl_seq=0.1, kl_avg=1e-5)


# ---------------------------------------------------------------- heatmap
def test_heatmap_data_is_the_solver_bound_and_masks_impossible_cells():
    T, d, v = P.heatmap_data(16, 2**16, (1e-8, 1e-2), points=(30, 20), kl_avg=1e-6)
    want = S.threshold_bound(T[None, :], d[:, None], kl_avg=1e-6)
    ok = d >= 1e-6
    np.testing.assert_array_equal(v[ok], want[ok])
    assert np.all(np.isnan(v[~ok])) and (~ok).any()


def test_heatmap_budget_contour_is_the_largest_threshold():
    ax = P.heatmap(16, 2**20, (1e-10, 1e-1), budgets=[0.1], points=(200, 200), ax=new_ax())
    cs = next(c for c in ax.collections if hasattr(c, "allsegs"))
    level = list(cs.levels).index(0.1)
    seg = max(cs.allsegs[level], key=len)
    for T, d in seg[len(seg) // 4 :: max(1, len(seg) // 8)]:
        exact = S.max_kl_threshold(int(round(T)), 0.1).kl_max
        # the contour interpolates linearly between grid points 8% apart in delta
        assert d == pytest.approx(exact, rel=0.08)
    labels = [t.get_text() for t in ax.texts]
    assert any("beta" in s or "β" in s or r"\beta" in s for s in labels)
    assert any("VACUOUS" in s for s in labels)


# ---------------------------------------------------------------- the command
def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def run(*args):
    return runner.invoke(app, ["plot", *args])


@pytest.mark.parametrize("ext", ["png", "svg", "pdf"])
def test_curves_writes_requested_format_and_size(tmp_path, ext):
    out = tmp_path / f"c.{ext}"
    r = run("curves", "--kl-max", "1e-4", "--kl-avg", "1e-6", "--mark-T", "4096",
            "--out", str(out), "--size", "8", "5", "--dpi", "90", "--points", "200")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert str(out) in r.stdout
    data = out.read_bytes()
    if ext == "png":
        assert png_size(data) == (720, 450)  # 8 in x 90 dpi, 5 in x 90 dpi
    elif ext == "svg":
        root = ET.fromstring(data)
        assert root.tag.endswith("svg")
        assert (root.get("width"), root.get("height")) == ("576pt", "360pt")  # 72 pt per inch
    else:
        assert data.startswith(b"%PDF") and data.rstrip().endswith(b"%%EOF")
        box = re.search(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", data)
        assert (float(box.group(1)), float(box.group(2))) == (576.0, 360.0)


def test_default_file_name_and_no_overwrite(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = run("curves", "--kl-max", "1e-4", "--points", "50")
    target = tmp_path / "trmbounds-curves.png"
    assert r.exit_code == 0 and "trmbounds-curves.png" in r.stdout and target.exists()
    w, h = png_size(target.read_bytes())
    assert (w, h) == (1350, 825)  # default 9 x 5.5 in at 150 dpi
    target.write_bytes(b"keep me")
    r = run("curves", "--kl-max", "1e-4", "--points", "50")
    assert r.exit_code == 2 and "exists; pass --force" in r.stderr
    assert target.read_bytes() == b"keep me"
    r = run("curves", "--kl-max", "1e-4", "--points", "50", "--force")
    assert r.exit_code == 0 and png_size(target.read_bytes()) == (1350, 825)


def test_heatmap_command(tmp_path):
    out = tmp_path / "h.png"
    r = run("heatmap", "--budget", "0.1", "--budget-frac", "0.01", "--kl-avg", "1e-7",
            "--points", "60", "--dpi", "60", "--out", str(out))  # fmt: skip
    assert r.exit_code == 0, r.output
    assert png_size(out.read_bytes()) == (540, 330)
    r = run("heatmap", "--out", str(out))
    assert r.exit_code == 2 and "exists" in r.stderr


@pytest.mark.parametrize(
    "args, msg",
    [
        (["curves", "--kl-max", "1e-4", "--bounds", "pm_kl,nope"], "unknown bound 'nope'"),
        (
            ["curves", "--kl-max", "1e-4", "--T-min", "4096", "--T-max", "16"],
            "--T-min must be below",
        ),
        (["curves", "--kl-max", "1e-4", "--T-min", "0"], "--T-min must be an integer >= 1"),
        (["curves", "--kl-max", "0"], "--kl-max must be a positive"),
        (["curves", "--kl-max", "1e-4", "--kl-avg", "1e-3"], "exceeds --kl-max"),
        (["curves", "--kl-max", "1e-4", "--out", "x.jpg"], "unsupported output format"),
        (["curves", "--kl-max", "1e-4", "--dpi", "0"], "--dpi must be positive"),
        (["curves", "--kl-max", "1e-4", "--dpi", "1"], "--dpi must be at least 30"),
        (["heatmap", "--size", "1", "1"], "too small: at least 3 x 2 in"),
        (["curves"], "Missing option '--kl-max'"),
        (["heatmap", "--budget", "0"], "--budget must be positive"),
        (["heatmap", "--budget-frac", "-1"], "--budget-frac must be positive"),
        (["heatmap", "--T-min", "100", "--T-max", "50"], "--T-min must be below"),
        (["heatmap", "--kl-range", "1e-2", "1e-4"], "--kl-range must be increasing"),
    ],
)
def test_bad_input_exit_2_one_line(tmp_path, monkeypatch, args, msg):
    monkeypatch.chdir(tmp_path)
    r = run(*args)
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith("Error: ") and msg in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_modules_stay_light_until_used():
    code = (
        "import sys, json\n"
        "import trmbounds, trmbounds.plot, trmbounds.solve\n"
        "trmbounds.solve.threshold_bound(4096, 1e-4)\n"
        "print(json.dumps([m for m in ('matplotlib', 'scipy.optimize') if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []


def test_solve_command_does_not_import_matplotlib():
    code = (
        "import sys, io, contextlib\n"
        "from trmbounds.cli import app\n"
        "sys.argv = ['trmbounds', 'solve', '--T', '4096', '--budget', '0.1', '--json']\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        "        app()\n"
        "    except SystemExit as e:\n"
        "        assert e.code == 0, e.code\n"
        "print('matplotlib' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_output_is_validated_before_any_work(tmp_path):
    # The output path is checked first (before drawing), and never overwritten without --force.
    out = tmp_path / "c.png"
    out.write_bytes(b"not an image")
    r = runner.invoke(app, ["plot", "curves", "--kl-max", "-1", "-o", str(out)])
    assert r.exit_code == 2 and "pass --force" in r.stderr
    r = runner.invoke(app, ["plot", "curves", "--kl-max", "-1", "-o", str(out), "--force"])
    assert r.exit_code == 2 and "--kl-max" in r.stderr
    assert out.read_bytes() == b"not an image"  # never overwritten by a failed run


# ---------------------------------------------------------------- what a reader sees
def test_curves_envelope_under_the_members_and_a_sane_window():
    ax = P.curves(1e-4, kl_avg=1e-6, mark_T=4096, ax=new_ax())
    lines = [ln for ln in ax.get_lines() if len(ln.get_xdata()) > 2]  # the curves
    env = next(ln for ln in lines if ln.get_label().startswith(P.LABELS["unified"]))
    members = [ln for ln in lines if ln is not env]
    assert len(members) == 4
    # the envelope is drawn under every member: the tightest family stays visible on it
    assert all(env.get_zorder() < m.get_zorder() for m in members)
    assert env.get_alpha() is not None and env.get_alpha() < 0.5
    lo, hi = ax.get_ylim()
    assert math.log10(hi / lo) <= 8.01  # not 11 decades
    assert hi <= 100 * 1.0 * 1.01  # the vacuous band: at most two decades above B = a
    assert "varepsilon" in ax.get_title()  # the TV assumption, sqrt(delta/2), is stated


def test_curves_mark_label_sits_at_its_point():
    ax = P.curves(1e-4, kl_avg=1e-6, mark_T=4096, ax=new_ax())
    u = B.unified(4096, 1e-4, None, 4096 * 1e-6)
    (note,) = [t for t in ax.texts if "T = 4{,}096" in t.get_text()]
    assert note.xy == (4096, pytest.approx(u, rel=1e-12))
    lo, hi = ax.get_ylim()
    assert lo < u < hi and ax.get_xlim()[0] < 4096 < ax.get_xlim()[1]


def test_heatmap_tells_vacuous_cells_apart_and_marks_the_papers_threshold():
    ax = P.heatmap(16, 2**20, (1e-8, 1e-1), points=(60, 40), ax=new_ax())
    meshes = [c for c in ax.collections if c.__class__.__name__ == "QuadMesh"]
    assert len(meshes) == 2  # the non-vacuous colours, and the vacuous cells in grey
    T, d, v = P.heatmap_data(16, 2**20, (1e-8, 1e-1), points=(60, 40))
    colour = np.ma.getmaskarray(meshes[0].get_array()).reshape(v.shape)
    grey = np.ma.getmaskarray(meshes[1].get_array()).reshape(v.shape)
    assert np.array_equal(~colour, v < 1.0) and np.array_equal(~grey, v >= 1.0)
    hlines = [ln for ln in ax.get_lines() if list(ln.get_ydata()) == [0.05, 0.05]]
    assert hlines, "the paper's TRM-Max threshold delta = 0.05"
    vlines = {ln.get_xdata()[0] for ln in ax.get_lines() if len(set(ln.get_xdata())) == 1}
    assert {4096, 8192, 16384, 32768} <= vlines
    assert any("VACUOUS" in t.get_text() for t in ax.texts)
