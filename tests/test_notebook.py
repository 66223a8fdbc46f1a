"""notebooks/trm_bounds_tour.ipynb is committed with its outputs, and they are reproducible.

The test re-executes the notebook and compares every text output with the committed one:
words must be equal, numbers equal up to one unit in the last printed digit (round-off).
Every figure must be drawn again as committed: beside each PNG the kernel stores a summary
of what the figure draws (``tests/nbfigures.py``: lines, colours, styles, limits, labels,
shaded regions), and the fresh summaries must equal the committed ones up to round-off
(the PNG bytes themselves differ across CPUs and are not compared). To refresh the
committed outputs after changing the notebook or the library:

    python tests/test_notebook.py --write
"""

from __future__ import annotations

import math
import os
import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).parents[1] / "notebooks" / "trm_bounds_tour.ipynb"
HOOK = Path(__file__).with_name("nbfigures.py")
FIGURE_MIME = "application/vnd.trmbounds.figure+json"  # nbfigures.MIME

# a printed number: 16,773,120 / 0.0277 / 2.8616e-07 / 1e-9 / -3 (commas are separators)
_NUM = re.compile(r"(?<![\w.])[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?(?:[eE][-+]?\d+)?")


def execute(nb, cwd: Path):
    """Run ``nb`` in place (cwd ``cwd``) and drop the per-run metadata nbclient adds."""
    # the figure summaries: installed at kernel start (no cell, no execution count)
    hook = f"import runpy; runpy.run_path({str(HOOK)!r})['install']()"
    client = nbclient.NotebookClient(
        nb,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(cwd)}},
        extra_arguments=[f"--IPKernelApp.exec_lines={hook}"],
    )
    # the kernel imports the trmbounds this process imports (a relative PYTHONPATH such as
    # "." would resolve in the kernel's cwd, and another checkout's code would draw)
    import trmbounds

    root = str(Path(trmbounds.__file__).resolve().parents[1])
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([root, *([old] if old else [])])
    try:
        client.execute()  # raises CellExecutionError on the first failing cell
    finally:
        if old is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = old
    for c in nb.cells:
        c.metadata.pop("execution", None)
    return nb


def texts(nb) -> list[list[str]]:
    """Per code cell: its stdout/stderr streams and text/plain outputs, in order."""
    out = []
    for c in nb.cells:
        if c.cell_type != "code":
            continue
        parts, stream = [], {}
        for o in c.outputs:
            if o.output_type == "stream":  # a print may be split over several outputs
                stream[o.name] = stream.get(o.name, "") + o.text
            elif "text/plain" in o.get("data", {}):
                parts.append(o.data["text/plain"])
            elif o.output_type == "error":
                parts.append(f"{o.ename}: {o.evalue}")
        texts_ = [*(f"[{k}] {v}" for k, v in sorted(stream.items())), *parts]
        # the version the outputs were made with is not a result: a release does not stale them
        out.append(
            [re.sub(r"^trmbounds \S+$", "trmbounds <version>", t, flags=re.M) for t in texts_]
        )
    return out


def images(nb) -> list[int]:
    """Per code cell: how many PNG figures it shows."""
    return [
        sum("image/png" in o.get("data", {}) for o in c.outputs)
        for c in nb.cells
        if c.cell_type == "code"
    ]


def figures(nb) -> list[list[dict | None]]:
    """Per code cell: the summary beside each PNG it shows (None where there is none)."""
    return [
        [o.data.get(FIGURE_MIME) for o in c.outputs if "image/png" in o.get("data", {})]
        for c in nb.cells
        if c.cell_type == "code"
    ]


def same_figure(got, want, where: str = "figure") -> str | None:
    """``None`` when two figure summaries agree (numbers to 1e-6 relative); else where not."""
    if isinstance(want, dict):
        if not isinstance(got, dict) or set(got) != set(want):
            return f"{where}: keys {sorted(got) if isinstance(got, dict) else got!r}"
        for k in want:
            diff = same_figure(got[k], want[k], f"{where}.{k}")
            if diff:
                return diff
        return None
    if isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            return f"{where}: {got!r} vs committed {want!r}"
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            diff = same_figure(g, w, f"{where}[{i}]")
            if diff:
                return diff
        return None
    if isinstance(want, float) and isinstance(got, (int, float)) and not isinstance(got, bool):
        if math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-300):
            return None
    elif got == want:
        return None
    return f"{where}: {got!r} vs committed {want!r}"


def _tokens(text: str) -> list[str | float]:
    """Words (whitespace-normalised) and numbers (with their last printed digit's unit)."""
    out: list = []
    pos = 0
    for m in _NUM.finditer(text):
        out.extend(text[pos : m.start()].split())
        s = m.group().replace(",", "")
        mant, _, exp = s.lower().partition("e")
        decimals = len(mant.partition(".")[2])
        unit = 10.0 ** (-decimals + (int(exp) if exp else 0))
        out.append((float(s), unit))
        pos = m.end()
    out.extend(text[pos:].split())
    return out


def same_up_to_round_off(got: str, want: str) -> str | None:
    """``None`` when ``got`` reads as ``want``; else the first difference."""
    a, b = _tokens(got), _tokens(want)
    if len(a) != len(b):
        return f"{len(a)} tokens vs {len(b)} committed:\n{got}\n---\n{want}"
    for x, y in zip(a, b, strict=True):
        if isinstance(x, tuple) and isinstance(y, tuple):
            unit = max(x[1], y[1])
            if not math.isclose(x[0], y[0], rel_tol=1e-12, abs_tol=1.01 * unit):
                return f"{x[0]!r} vs committed {y[0]!r}"
        elif x != y:
            return f"{x!r} vs committed {y!r}"
    return None


def test_round_off_comparison_catches_a_changed_number():
    # independent cases, written by hand
    assert same_up_to_round_off("B = 4.0960 at T = 4,096", "B = 4.0959 at T = 4,096") is None
    assert same_up_to_round_off("B = 4.0962", "B = 4.0960") is not None  # 2 units
    assert same_up_to_round_off("x 2.8616e-07", "x 2.8617e-07") is None
    assert same_up_to_round_off("x 2.8616e-07", "x 2.8616e-06") is not None
    assert same_up_to_round_off("T_max = 36 (mix_kl)", "T_max = 37 (mix_kl)") is None
    assert same_up_to_round_off("T_max = 36 (mix_kl)", "T_max = 38 (mix_kl)") is not None
    assert same_up_to_round_off("tightest pm_kl", "tightest mix_kl") is not None
    assert same_up_to_round_off("16,773,120  1e-9", "16,773,120   1e-9") is None


def test_figure_comparison_catches_a_changed_drawing():
    # hand-written summaries: round-off passes, a colour, a range or a line count does not
    line = {"label": "B*", "color": "#000000ff", "style": "--", "y": [0.1, 2.0, None]}
    want = {"axes": [{"ylim": [1e-3, 100.0], "lines": [line]}]}
    assert same_figure(want, want) is None
    near = {"axes": [{"ylim": [1e-3 * (1 + 1e-12), 100.0], "lines": [line]}]}
    assert same_figure(near, want) is None
    taller = {"axes": [{"ylim": [1e-3, 1e8], "lines": [line]}]}
    assert "ylim" in same_figure(taller, want)
    grey = {"axes": [{"ylim": [1e-3, 100.0], "lines": [{**line, "color": "#262626ff"}]}]}
    assert "color" in same_figure(grey, want)
    assert same_figure({"axes": [{"ylim": [1e-3, 100.0], "lines": []}]}, want)
    assert same_figure({"axes": [{"ylim": [1e-3, 100.0], "lines": [line]}], "x": 1}, want)


def test_notebook_is_committed_with_outputs_and_without_errors():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert len(code) >= 8
    assert all(c.execution_count is not None for c in code), (
        "run: python tests/test_notebook.py --write"
    )
    assert all(o.output_type != "error" for c in code for o in c.outputs)
    assert sum(images(nb)) >= 3  # the figures show where the notebook is read
    # and each is committed with the summary of what it draws, to compare with
    assert all(f is not None and f["axes"] for cell in figures(nb) for f in cell), (
        "run: python tests/test_notebook.py --write"
    )
    assert sum(bool(t) for t in texts(nb)) >= 6
    # what the tour is about is visible: the paper's table, the crossover, the thresholds
    shown = "\n".join("\n".join(t) for t in texts(nb))
    assert "crossover k* = delta / (2 eps^2) = 1250" in shown
    for T in ("4096", "8192", "32768"):
        assert T in shown


def test_notebook_re_executes_to_the_committed_numbers(tmp_path):
    committed = nbformat.read(NOTEBOOK, as_version=4)
    fresh = execute(nbformat.read(NOTEBOOK, as_version=4), tmp_path)  # files land in tmp_path
    assert images(fresh) == images(committed)
    for i, (g, w) in enumerate(zip(figures(fresh), figures(committed), strict=True)):
        for k, (a, b) in enumerate(zip(g, w, strict=True)):
            diff = same_figure(a, b, f"code cell {i}, figure {k}")
            assert diff is None, f"{diff}: the committed figure is stale (--write refreshes it)"
    got, want = texts(fresh), texts(committed)
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert len(g) == len(w), f"code cell {i}: {len(g)} text outputs vs {len(w)} committed"
        for a, b in zip(g, w, strict=True):
            diff = same_up_to_round_off(a, b)
            assert diff is None, f"code cell {i}: {diff}"


if __name__ == "__main__":  # refresh the committed outputs
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/test_notebook.py --write")
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        nb = execute(nbformat.read(NOTEBOOK, as_version=4), Path(d))
    nbformat.write(nb, NOTEBOOK)
    print(f"wrote {NOTEBOOK}")
