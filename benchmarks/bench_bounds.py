"""Speed of the closed-form bound sums against the naive O(T) sum, from one run.

    python benchmarks/bench_bounds.py

Prints, for T = 1e3 … 1e7, the time of the O(1) closed form (Pinsker-Marginal KL and
Coupling) and of a vectorised numpy O(T) sum of the same terms, their ratio, the
relative difference, and the time of the unified bound over a grid of 1e6 (T, δ)
points. Targets (issue 2): ≥ 100× at T = 1e6; the 1e6-point grid in under 1 s.
"""

from __future__ import annotations

import math
import time

import numpy as np

from trmbounds import bounds as B


def best(f, repeat=7, number=None):
    if number is None:
        number = 1
        while True:
            t0 = time.perf_counter()
            for _ in range(number):
                f()
            if time.perf_counter() - t0 > 0.05 or number > 10**5:
                break
            number *= 4
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            f()
        times.append((time.perf_counter() - t0) / number)
    return min(times)


def naive_pm_kl(T, d):
    k = np.arange(T, dtype=np.float64)
    return 4 * min(1.0, math.sqrt(d / 2)) * np.minimum(1.0, np.sqrt(k * d / 2)).sum()


def naive_coupling(T, e):
    k = np.arange(T, dtype=np.float64)
    return 4 * min(1.0, e) * np.minimum(1.0, k * e).sum()


def main() -> None:
    # Small divergences, so that no cap binds below T = 1e7 and every term is summed.
    d, e = 1e-8, 1e-8
    print(f"closed form vs naive numpy O(T) sum (best of 7), δ = {d:g}, ε = {e:g}")
    print(f"{'T':>10} {'bound':>9} {'closed':>10} {'naive':>10} {'speed-up':>10} {'rel.diff':>9}")
    for T in (10**3, 10**4, 10**5, 10**6, 10**7):
        for name, fast, slow in (
            ("pm_kl", lambda T=T: B.pm_kl(T, d), lambda T=T: naive_pm_kl(T, d)),
            ("coupling", lambda T=T: B.coupling(T, e), lambda T=T: naive_coupling(T, e)),
        ):
            tf = best(fast)
            ts = best(slow, repeat=3)
            rel = abs(fast() - slow()) / slow()  # numpy sums pairwise: accurate
            print(
                f"{T:>10,} {name:>9} {tf * 1e6:>8.1f}us {ts * 1e3:>8.2f}ms {ts / tf:>9.0f}x {rel:>9.1e}"
            )

    Ts = np.unique(np.logspace(0, 7, 1000).astype(np.int64))
    Ts = np.resize(Ts, 1000)
    ds = np.logspace(-8, 0, 1000)[:, None]
    n = Ts.size * ds.size
    t_pm = best(lambda: B.pm_kl(Ts, ds), repeat=3, number=1)
    t_uni = best(lambda: B.unified(Ts, ds), repeat=3, number=1)
    print(
        f"\ngrid of {n:,} (T, δ) points: pm_kl {t_pm:.3f} s, unified (all six members) {t_uni:.3f} s"
    )

    T = 10**6
    dbar = np.full(T, 1e-3)
    t_ad = best(lambda: B.adaptive(T, 1e-4, 5e-3, dbar), repeat=3, number=1)
    print(
        f"adaptive hybrid with a per-position array, T = 1e6 (O(T), vectorised): {t_ad * 1e3:.1f} ms"
    )


if __name__ == "__main__":
    main()
