"""The README's examples are executed, so the docs cannot drift from the code."""

from __future__ import annotations

import doctest
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trmbounds.cli import app

README = Path(__file__).parents[1] / "README.md"


def test_readme_python_examples():
    res = doctest.testfile(
        str(README),
        module_relative=False,
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
    )
    assert res.attempted >= 4 and res.failed == 0


def test_readme_eval_json_example_is_the_real_output():
    text = README.read_text()
    cmd = re.search(r"```bash\n(trmbounds eval --T 4096 [^\n]*--json)\n```", text).group(1)
    shown = re.search(r"```json\n(.*?)\n```", text, re.S).group(1)
    out = CliRunner().invoke(app, cmd.split()[1:])
    assert out.exit_code == 0
    got, want = json.loads(out.stdout), json.loads(shown)
    # The README drops floats' last-bit noise (838.6560000000001 -> 838.656).
    assert got["bounds"] == pytest.approx(want["bounds"], rel=1e-12)
    assert {k: v for k, v in got.items() if k != "bounds"} == {
        k: v for k, v in want.items() if k != "bounds"
    }
