"""Wall time of `trmbounds plot curves` and `trmbounds solve`, from one run.

    python benchmarks/bench_plot_solve.py

Runs each command as a user does (a fresh ``trmbounds`` process, interpreter start,
imports of typer/rich/matplotlib/scipy included) five times and prints the best and
the median wall time against the targets of issue 3: ``plot curves`` with 10^4 points
per curve in under 3 s; ``solve`` in under 1.5 s. Also prints the in-process time of
the pieces (curve data, drawing and saving, one threshold, one length).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def trmbounds_cmd() -> list[str]:
    exe = shutil.which("trmbounds")
    return [exe] if exe else [sys.executable, "-m", "trmbounds"]


def wall(args: list[str], repeat: int = 5) -> list[float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        p = subprocess.run(trmbounds_cmd() + args, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        if p.returncode != 0:
            raise SystemExit(f"trmbounds {' '.join(args)} failed:\n{p.stderr}")
    return times


def report(name: str, times: list[float], target: float) -> None:
    best, med = min(times), statistics.median(times)
    verdict = "ok" if med <= target else "SLOW"
    print(
        f"{name:<44} best {best:5.2f} s  median {med:5.2f} s  "
        f"target {target:.1f} s  ({med / target:4.0%} of it)  {verdict}"
    )


def in_process(tmp: Path) -> None:
    from matplotlib.figure import Figure

    from trmbounds import plot as P
    from trmbounds import solve as S

    T = P.length_grid(16, 2**20, 10_000)
    names = list(P.LABELS)
    t0 = time.perf_counter()
    data = P.curve_data(T, 1e-4, 5e-3, kl_avg=1e-6, bounds=names)
    t_data = time.perf_counter() - t0
    npts = sum(v.size for v in data.values())
    print(
        f"  curve data, {len(names)} bounds x {T.size} lengths ({npts:,} values): {t_data * 1e3:.1f} ms"
    )

    t0 = time.perf_counter()
    fig = Figure(figsize=(9, 5.5), dpi=150, layout="constrained")
    P.curves(1e-4, kl_avg=1e-6, points=10_000, mark_T=4096, ax=fig.add_subplot())
    t_draw = time.perf_counter() - t0
    t0 = time.perf_counter()
    fig.savefig(tmp / "c.png", dpi=150)
    t_save = time.perf_counter() - t0
    print(
        f"  draw curves (10^4 points each): {t_draw * 1e3:.0f} ms, save PNG: {t_save * 1e3:.0f} ms"
    )

    S.max_kl_threshold(4096, 0.1)  # scipy import
    for label, f in (
        ("one threshold (T = 32768, incl. TV route)", lambda: S.max_kl_threshold(32768, 0.1)),
        ("one length (delta = 1e-6)", lambda: S.max_length(1e-6, 0.1)),
    ):
        ts = []
        for _ in range(20):
            t0 = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t0)
        print(f"  {label}: {np.median(ts) * 1e3:.1f} ms")


def main() -> None:
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpu(s); fresh process per run")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        out = str(tmp / "curves.png")
        report(
            "plot curves, 10^4 points per curve (PNG)",
            wall(
                [
                    "plot",
                    "curves",
                    "--kl-max",
                    "1e-4",
                    "--kl-avg",
                    "1e-6",
                    "--mark-T",
                    "4096",
                    "--points",
                    "10000",
                    "--out",
                    out,
                    "--force",
                ]
            ),  # fmt: skip
            3.0,
        )
        report(
            "plot curves, 10^4 points, every bound (SVG)",
            wall(
                [
                    "plot",
                    "curves",
                    "--kl-max",
                    "1e-4",
                    "--tv-max",
                    "5e-3",
                    "--kl-seq",
                    "0.01",
                    "--bounds",
                    "classical_tv,classical_kl,linear,pm_kl,pm_tv,mix_kl,mix_tv,"
                    "coupling,adaptive_kl,adaptive_tv,adaptive,unified",
                    "--points",
                    "10000",
                    "--out",
                    str(tmp / "c.svg"),
                    "--force",
                ]
            ),  # fmt: skip
            3.0,
        )
        report(
            "solve --T 4096,8192,32768 --budget-frac 0.1",
            wall(["solve", "--T", "4096,8192,32768", "--budget-frac", "0.1"]),
            1.5,
        )
        report(
            "solve --kl-max 1e-6 --budget 0.1 --json",
            wall(["solve", "--kl-max", "1e-6", "--budget", "0.1", "--json"]),
            1.5,
        )
        report(
            "plot heatmap (200 x 200 grid, PNG)",
            wall(["plot", "heatmap", "--budget", "0.1", "--out", str(tmp / "h.png"), "--force"]),
            3.0,
        )
        print("in process:")
        in_process(tmp)


if __name__ == "__main__":
    main()
