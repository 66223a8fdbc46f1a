"""Wall and CPU time of `trmbounds measure --demo` (the README's command), one run each.

    python benchmarks/bench_demo.py [--runs 3]

Runs the demo with its defaults (8 built-in prompts x 4 responses, up to 128 tokens) in
a subprocess, and, as the floor any command using the model extra pays, a subprocess
that only imports torch and transformers' Llama. Prints the medians of wall time and of
the child's CPU time (user + system), and their differences: the demo's own work.
Target (issue 11): well under a minute on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(cmd, cwd):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    n = ap.parse_args().runs
    exe = shutil.which("trmbounds") or str(Path(sys.executable).with_name("trmbounds"))
    imports = [sys.executable, "-c", "import torch, transformers.models.llama.modeling_llama"]
    res: dict[str, list[tuple[float, float]]] = {"imports": [], "demo": []}
    with tempfile.TemporaryDirectory() as d:
        for i in range(n):
            res["imports"].append(timed(imports, d))
            demo = [exe, "measure", "--demo", "-o", f"m{i}.json", "--tokens", f"t{i}.jsonl"]
            res["demo"].append(timed(demo, d))
    med = {k: tuple(statistics.median(x[j] for x in v) for j in (0, 1)) for k, v in res.items()}
    print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}, runs: {n}")
    for k, (w, c) in med.items():
        print(f"{k:<8} wall {w:6.2f} s   cpu {c:6.2f} s")
    (wd, cd), (wi, ci) = med["demo"], med["imports"]
    print(f"demo minus imports: wall {wd - wi:.2f} s, cpu {cd - ci:.2f} s")


if __name__ == "__main__":
    main()
