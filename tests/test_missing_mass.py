"""Truncated rollouts (top-k): bounds with missing mass m against exact enumeration.

Without full support the surrogate misses the trained policy's mass outside the rollout
support, and the error is no longer invariant under shifting the reward: for rewards
in [lo, hi] the PDI-family bounds need + max(|lo|, |hi|) m (docs/theory.md §6). The
worst-case error is computed here by its own enumeration, from the definitions.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from trmbounds import Stats, evaluate


def _softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def _truncated_pair(V, T, k, rng, scale):
    """Per-prefix distributions: roll keeps its top-k tokens (renormalised), theta is full."""
    roll, theta = {}, {}
    for t in range(T):
        for prefix in itertools.product(range(V), repeat=t):
            z = rng.normal(size=V)
            p = _softmax(z)
            keep = np.argsort(p)[-k:]
            r = np.zeros(V)
            r[keep] = p[keep] / p[keep].sum()
            roll[prefix] = r
            theta[prefix] = _softmax(z + scale * rng.normal(size=V))
    return roll, theta


def _exact(V, T, roll, theta):
    ys = list(itertools.product(range(V), repeat=T))
    P_r = np.array([math.prod(roll[y[:t]][y[t]] for t in range(T)) for y in ys])
    P_t = np.array([math.prod(theta[y[:t]][y[t]] for t in range(T)) for y in ys])
    # Error(R) = sum_y R(y) coef(y); responses roll never samples contribute no surrogate term.
    surr = np.array(
        [
            sum(theta[y[:t]][y[t]] / roll[y[:t]][y[t]] - 1 for t in range(T)) if p > 0 else 0.0
            for y, p in zip(ys, P_r)
        ]
    )
    coef = P_t - P_r - P_r * surr
    tv = max(0.5 * np.abs(roll[c] - theta[c]).sum() for c in roll)
    kl = max(sum(r * math.log(r / q) for r, q in zip(roll[c], theta[c]) if r > 0) for c in roll)
    d_roll = {c: math.prod(roll[c[:j]][c[j]] for j in range(len(c))) for c in roll}
    m = sum(d_roll[c] * theta[c][roll[c] == 0].sum() for c in roll)
    kl_seq = float(sum(p * math.log(p / q) for p, q in zip(P_r, P_t) if p > 0))
    return coef, tv, kl, m, kl_seq, 0.5 * float(np.abs(P_r - P_t).sum())


def _worst(coef, lo, hi):
    up = np.where(coef > 0, hi * coef, lo * coef).sum()
    down = np.where(coef < 0, hi * coef, lo * coef).sum()
    return max(up, -down)


@pytest.mark.parametrize("constants", ["paper", "sharp"])
def test_pdi_bounds_with_missing_mass_hold_for_any_reward_range(constants):
    rng = np.random.default_rng(7)
    ranges = [(0.0, 1.0), (5.0, 6.0), (-3.0, -1.0), (-1.0, 2.0)]
    shortfall_without_shift_term = 0
    for i in range(60):
        V, T = (3, 3) if i % 2 else (4, 2)
        roll, theta = _truncated_pair(V, T, k=V - 1, rng=rng, scale=10 ** rng.uniform(-1.5, 0.3))
        coef, tv, kl, m, kl_seq, tv_seq = _exact(V, T, roll, theta)
        for lo, hi in ranges:
            worst = _worst(coef, lo, hi)
            s = Stats(
                T=T,
                kl_max=kl,
                tv_max=tv,
                kl_seq=kl_seq,
                tv_seq=tv_seq,
                missing_mass=m,
                reward_range=(lo, hi),
            )
            r = evaluate(s, constants=constants)
            assert r.bounds["adaptive"] is None
            for name, value in r.bounds.items():
                if value is not None:
                    assert value >= worst - 1e-12, (name, lo, hi, value, worst)
            # The width-only correction a*m would have under-bounded some shifted ranges:
            # the test has the power to catch that mistake.
            a = hi - lo
            if r.unified - max(abs(lo), abs(hi)) * m + a * m < worst - 1e-12:
                shortfall_without_shift_term += 1
    assert shortfall_without_shift_term > 0


def test_reviewer_example_rewards_in_5_6():
    # T = 2, V = 3: pi_roll = (1/2, 1/2, 0), pi_theta = (1/2 - m/2, 1/2 - m/2, m) at every
    # context. R = 5 everywhere already gives |Error| = 5 * T * m = 0.1 (the surrogate
    # misses 5 m per position); the worst case over R in [5, 6]^Y is 0.12 (enumeration).
    m, V, T = 0.01, 3, 2
    r_ = np.array([0.5, 0.5, 0.0])
    q_ = np.array([0.5 - m / 2, 0.5 - m / 2, m])
    roll = {c: r_ for t in range(T) for c in itertools.product(range(V), repeat=t)}
    theta = {c: q_ for c in roll}
    coef, tv, kl, mm, kl_seq, tv_seq = _exact(V, T, roll, theta)
    assert mm == pytest.approx(T * m)
    assert _worst(coef, 5.0, 5.0) == pytest.approx(0.1)
    assert _worst(coef, 5.0, 6.0) == pytest.approx(0.12)
    r = evaluate(Stats(T=T, kl_max=kl, tv_max=tv, missing_mass=mm, reward_range=(5, 6)))
    assert r.unified >= 0.12
