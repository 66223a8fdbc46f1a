"""Throughput of ``trmbounds check``: metric rows/s per format and per-token tokens/s.

Writes synthetic verl-style logs and a per-token Parquet dump to a temporary directory,
runs :func:`trmbounds.logs.check.check_log` on each (best of 3 runs, after one warm-up
on a small file), and prints the rates measured in this run and the load average. Targets (issue 4): >= 1 M metric
rows/s and >= 20 M tokens/s on per-token Parquet. Also the cost of merging rows that
share a step (issue 9): a log with two interleaved rows per step against one row per step.

    python benchmarks/bench_check.py [--rows 1000000] [--tokens 20000000]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from trmbounds.logs.check import Assumption, check_log

METRICS = {
    "response_length/max": lambda r, n: r.integers(500, 8192, n).astype(float),
    "response_length/mean": lambda r, n: r.uniform(200, 2000, n),
    "rollout_corr/k3_kl": lambda r, n: r.uniform(1e-6, 1e-4, n),
    "training/rollout_probs_diff_max": lambda r, n: r.uniform(1e-3, 2e-2, n),
    "rollout_corr/rollout_rs_seq_max_k2_max": lambda r, n: r.uniform(1e-3, 0.3, n),
    "rollout_corr/rollout_rs_seq_masked_fraction": lambda r, n: r.uniform(0, 0.5, n),
    # columns a real log also has, which the reader must skip
    **{f"actor/other_{i}": (lambda r, n: r.random(n)) for i in range(6)},
}


def metric_table(n: int, seed: int = 0) -> pa.Table:
    r = np.random.default_rng(seed)
    cols = {"step": np.arange(1, n + 1)}
    cols.update({k: f(r, n) for k, f in METRICS.items()})
    return pa.table(cols)


def write_jsonl(t: pa.Table, path: Path) -> None:
    names = [c for c in t.column_names if c != "step"]
    arrs = [t.column(c).to_numpy() for c in names]
    steps = t.column("step").to_numpy()
    with open(path, "w") as fh:
        for i in range(t.num_rows):
            data = {k: float(a[i]) for k, a in zip(names, arrs)}
            fh.write(json.dumps({"step": int(steps[i]), "data": data}) + "\n")


def token_dump(path: Path, n_tokens: int, seed: int = 1) -> int:
    r = np.random.default_rng(seed)
    lens = r.integers(200, 4000, size=max(1, n_tokens // 2100))
    offsets = np.zeros(len(lens) + 1, np.int32)
    np.cumsum(lens, out=offsets[1:])
    m = int(offsets[-1])
    roll = np.log(r.uniform(0.05, 1.0, m)).astype(np.float32)
    theta = (roll + r.normal(0, 0.02, m)).clip(max=0).astype(np.float32)
    off = pa.array(offsets)
    t = pa.table(
        {
            "step": np.repeat(np.arange(len(lens)) // 64, 1),
            "inference_logprobs": pa.ListArray.from_arrays(off, pa.array(roll)),
            "trainer_logprobs": pa.ListArray.from_arrays(off, pa.array(theta)),
        }
    )
    pq.write_table(t, path, row_group_size=256)
    return m


def timed(fn, repeat: int = 3):
    """Result and the best wall time of ``repeat`` runs (other processes only add time)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return out, best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--jsonl-rows", type=int, default=300_000)
    ap.add_argument("--tokens", type=int, default=20_000_000)
    args = ap.parse_args()
    a = Assumption(kl_max=1e-4)
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        t = metric_table(args.rows)
        pq.write_table(t, d / "m.parquet")
        pcsv.write_csv(t, d / "m.csv")
        write_jsonl(t.slice(0, args.jsonl_rows), d / "m.jsonl")
        write_jsonl(t.slice(0, 1000), d / "warm.jsonl")
        check_log(d / "warm.jsonl", assumption=a)  # warm-up: imports, caches
        print(f"metric logs ({len(METRICS)} metrics per row, verl names, --kl-max 1e-4):")
        for name, rows in (("parquet", args.rows), ("csv", args.rows), ("jsonl", args.jsonl_rows)):
            p = d / f"m.{name}"
            r, s = timed(lambda p=p: check_log(p, assumption=a))
            assert len(r) == rows
            mb = p.stat().st_size / 1e6
            print(
                f"  {name:8s} {rows:>10,} rows  {mb:7.1f} MB  {s:6.2f} s  {rows / s / 1e6:6.2f} M rows/s"
            )
        # rows that share a step (prime-rl's metrics.jsonl: trainer and orchestrator rows),
        # interleaved, against the same steps in one row each: the cost of merging by step
        half = args.rows // 2
        one = metric_table(half)
        lens = one.select(["step", "response_length/max", "response_length/mean"])
        rest = one.drop_columns(["response_length/max", "response_length/mean"])
        both = pa.concat_tables([lens, rest], promote_options="default")
        order = np.argsort(np.r_[np.arange(half) + 1, np.arange(half)], kind="stable")
        pq.write_table(both.take(order), d / "split.parquet")
        pq.write_table(one, d / "one.parquet")
        r1, s1 = timed(lambda: check_log(d / "one.parquet", assumption=a))
        r2, s2 = timed(lambda: check_log(d / "split.parquet", assumption=a))
        assert len(r1) == len(r2) == half
        print(f"merging by step: {half:,} steps in {2 * half:,} interleaved rows (2 per step)")
        print(f"  one row per step  {s1:6.2f} s;  two rows per step  {s2:6.2f} s  "
              f"(ratio {s2 / s1:.2f}; {2 * half / s2 / 1e6:.2f} M rows/s)")  # fmt: skip
        n = token_dump(d / "tok.parquet", args.tokens)
        token_dump(d / "warm.parquet", 100_000)
        check_log(d / "warm.parquet", assumption=a)
        r, s = timed(lambda: check_log(d / "tok.parquet", assumption=a))
        mb = (d / "tok.parquet").stat().st_size / 1e6
        print("per-token dump (Parquet, float32 list columns, all estimators and criteria):")
        print(f"  parquet  {n:>10,} tokens {mb:6.1f} MB  {s:6.2f} s  {n / s / 1e6:6.2f} M tokens/s"
              f"  ({r.extra['sequences']:,} sequences, {len(r)} steps)")  # fmt: skip
        # memory: the per-token reader streams row groups, so peak Python allocations stay
        # near one batch whatever the file size
        tracemalloc.start()
        check_log(d / "tok.parquet", assumption=a)
        peak = tracemalloc.get_traced_memory()[1] / 1e6
        tracemalloc.stop()
        print(f"  peak numpy/Python allocations while checking it: {peak:.0f} MB "
              f"(the file holds {n * 8 / 1e6:.0f} MB of log-probs)")  # fmt: skip


if __name__ == "__main__":
    main()
