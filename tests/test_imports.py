"""Heavy imports stay lazy (STYLE.md practice 2), checked in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ["typer", "rich", "matplotlib", "scipy.optimize", "pyarrow", "torch", "transformers"]


def _modules_after(code: str) -> set[str]:
    prog = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_import_trmbounds_is_light():
    mods = _modules_after("import trmbounds")
    assert not [m for m in HEAVY if m in mods]


def test_eval_command_is_light():
    code = (
        "import sys, io, contextlib\n"
        "from trmbounds.cli import app\n"
        "sys.argv = ['trmbounds', 'eval', '--T', '10000000', '--kl-max', '0.01']\n"
        "buf = io.StringIO()\n"
        "with contextlib.redirect_stdout(buf):\n"
        "    try:\n"
        "        app()\n"
        "    except SystemExit as e:\n"
        "        assert e.code == 0, e.code\n"
        "assert 'Unified' in buf.getvalue()\n"
    )
    mods = _modules_after(code)
    assert not [m for m in ["matplotlib", "scipy.optimize", "pyarrow", "torch"] if m in mods]
