"""Wall time of `trmbounds eval` against `python -c "import numpy, typer, rich"`, one run.

    python benchmarks/bench_startup.py [--runs 21]

Runs both commands alternately, N times each, with bytecode caching on (as after a
normal `pip install`), and prints the medians and their ratio, for the table output
and for --json, at T = 8192 and T = 1e7. Target (issue 2): ratio ≤ 1.3.
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import trmbounds


def wall(cmd, env):
    t0 = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=env)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=21)
    n = ap.parse_args().runs
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    compileall.compile_dir(str(Path(trmbounds.__file__).parent), quiet=1)
    exe = shutil.which("trmbounds") or str(Path(sys.executable).with_name("trmbounds"))
    base = [sys.executable, "-c", "import numpy, typer, rich"]
    cases = {
        "eval --T 8192 (table)": [exe, "eval", "--T", "8192", "--kl-max", "0.01"],
        "eval --T 1e7 (table)": [exe, "eval", "--T", "10000000", "--kl-max", "0.01"],
        "eval --T 8192 --json": [exe, "eval", "--T", "8192", "--kl-max", "0.01", "--json"],
        "eval --T 1e7 --json": [exe, "eval", "--T", "10000000", "--kl-max", "0.01", "--json"],
    }
    for cmd in [base, *cases.values()]:  # warm the page cache
        wall(cmd, env)
    times = {k: [] for k in ["baseline", *cases]}
    for _ in range(n):
        times["baseline"].append(wall(base, env))
        for k, cmd in cases.items():
            times[k].append(wall(cmd, env))
    b = statistics.median(times["baseline"])
    print(f"median of {n} runs each, interleaved")
    label = 'python -c "import numpy, typer, rich"'
    print(f"{label:<40} {b * 1e3:7.1f} ms")
    for k in cases:
        m = statistics.median(times[k])
        print(f"{'trmbounds ' + k:<40} {m * 1e3:7.1f} ms   ratio {m / b:.2f}")


if __name__ == "__main__":
    main()
