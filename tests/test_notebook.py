"""notebooks/trm_bounds_tour.ipynb is committed with its outputs, and they are reproducible.

The test re-executes the notebook and compares every text output with the committed one:
words must be equal, numbers equal up to one unit in the last printed digit (round-off),
and every committed figure must be produced again. To refresh the committed outputs after
changing the notebook or the library:

    python tests/test_notebook.py --write
"""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).parents[1] / "notebooks" / "trm_bounds_tour.ipynb"

# a printed number: 16,773,120 / 0.0277 / 2.8616e-07 / 1e-9 / -3 (commas are separators)
_NUM = re.compile(r"(?<![\w.])[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?(?:[eE][-+]?\d+)?")


def execute(nb, cwd: Path):
    """Run ``nb`` in place (cwd ``cwd``) and drop the per-run metadata nbclient adds."""
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell
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
