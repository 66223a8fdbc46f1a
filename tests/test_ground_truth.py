"""Every bound against the exact worst-case error of tabular policies (SPEC §6).

The worst-case |Error| over rewards in [0, 1]^Y is computed by enumerating all V^T
responses (tests/tabular.py). A bound implementation is correct only if it never falls
below it — with the paper's constants and with the sharp ones.
"""

from __future__ import annotations

import numpy as np
import pytest
from tabular import random_pair

from trmbounds import Stats, evaluate

CERT = {k: "certified" for k in ("kl_max", "tv_max", "kl_seq", "tv_seq", "per_position")}


def _exact_stats(T, ex):
    """Every statistic exactly, from the enumeration: all certified."""
    return Stats(
        T=T,
        kl_max=ex.kl_max,
        tv_max=ex.tv_max,
        kl_seq=ex.kl_seq,
        tv_seq=ex.tv_seq,
        per_position=ex.per_position,
        status=CERT,
    )


def _instances(n, seed):
    rng = np.random.default_rng(seed)
    for i in range(n):
        V = int(rng.integers(2, 5))
        T_max = {2: 7, 3: 5, 4: 4}[V]
        T = int(rng.integers(1, T_max + 1))
        mode = "concentrated" if i % 2 else "uniform"
        scale = 10 ** rng.uniform(-2, 0.8)
        yield random_pair(V, T, rng, mode=mode, scale=scale), (V, T, mode, scale)


@pytest.fixture(scope="module")
def cases():
    out = []
    for pair, info in _instances(400, seed=20260101):
        out.append((pair.T, pair.exact(), info))
    return out


@pytest.mark.parametrize("constants", ["paper", "sharp"])
def test_every_bound_is_at_least_the_worst_case_error(cases, constants):
    checked = 0
    for T, ex, info in cases:
        s = _exact_stats(T, ex)
        r = evaluate(s, constants=constants)
        for name, value in r.bounds.items():
            assert value is not None
            assert value >= ex.worst_error - 1e-12, (name, constants, info, value, ex.worst_error)
            checked += 1
    assert checked == len(cases) * 12


@pytest.mark.parametrize("constants", ["paper", "sharp"])
def test_bounds_from_derived_inputs_hold(cases, constants):
    # Filling missing statistics conservatively (SPEC §2) must keep every bound valid.
    for T, ex, info in cases:
        for s in (
            Stats(T=T, kl_max=ex.kl_max),
            Stats(T=T, tv_max=ex.tv_max),
            Stats(T=T, kl_max=ex.kl_max, tv_max=ex.tv_max, per_position=ex.per_position),
        ):
            r = evaluate(s, constants=constants)
            for name, value in r.bounds.items():
                if value is not None:
                    assert value >= ex.worst_error - 1e-12, (name, info)


def test_reward_range_scaling(cases):
    # Error is linear in R and unchanged by a constant shift (sum of coefficients is 0),
    # so the worst case over R in [lo, hi] is (hi - lo) times the worst over [0, 1].
    rng = np.random.default_rng(5)
    pair = random_pair(3, 3, rng, scale=1.0)
    coef = pair.error_coefficients()
    assert abs(coef.sum()) < 1e-12
    ex = pair.exact()
    lo, hi = -2.0, 3.0
    worst = max(
        np.where(coef > 0, coef * hi, coef * lo).sum(),
        -np.where(coef < 0, coef * hi, coef * lo).sum(),
    )
    assert worst == pytest.approx((hi - lo) * ex.worst_error, rel=1e-10)
    r = evaluate(Stats(T=3, kl_max=ex.kl_max, tv_max=ex.tv_max, reward_range=(lo, hi)))
    assert r.unified >= worst
    assert r.unified == pytest.approx(
        (hi - lo) * evaluate(Stats(T=3, kl_max=ex.kl_max, tv_max=ex.tv_max)).unified
    )


def test_sharp_bounds_are_nearly_tight(cases):
    # SPEC §7: the sharp constants cannot be improved in general. Over random instances
    # the worst |Error| reaches a large fraction of the sharp unified bound, so a bound
    # with a constant 40 % smaller would already be violated: the test has power.
    ratios = []
    for T, ex, _ in cases:
        s = _exact_stats(T, ex)
        ratios.append(ex.worst_error / evaluate(s, constants="sharp").unified if T > 1 else 0.0)
    assert max(ratios) > 0.6
    assert max(ratios) <= 1.0 + 1e-9


def test_enumeration_identities(cases):
    # Independent cross-checks of the enumerator itself: chain rule of KL, and
    # TV(P_roll, P_theta) <= sum_t Dbar_t (subadditivity), Pinsker per sequence.
    for _T, ex, _ in cases:
        assert ex.kl_seq == pytest.approx(ex.kl_per_position.sum(), rel=1e-9, abs=1e-14)
        assert ex.tv_seq <= ex.per_position.sum() + 1e-12
        assert ex.tv_seq <= np.sqrt(ex.kl_seq / 2) + 1e-12
        assert ex.tv_max <= np.sqrt(ex.kl_max / 2) + 1e-12


def test_sharp_constant_is_attained():
    # docs/theory.md §5: T = 2, V = 2, pi_roll = (1/2, 1/2) and pi_theta = (1/2 + e, 1/2 - e)
    # at every context. By hand: Error = 2 e^2 for R = 1 on (0,0) and (1,1), which equals
    # the sharp Coupling bound 2e * sum_t min(1, (t-1)e) = 2 e^2: the halved constant is
    # attained, and any smaller one would be violated.
    from tabular import TabularPair

    for e in (0.01, 0.1, 0.3):
        roll = [np.array([[0.5, 0.5]]), np.array([[0.5, 0.5], [0.5, 0.5]])]
        th = [np.array([[0.5 + e, 0.5 - e]]), np.array([[0.5 + e, 0.5 - e]] * 2)]
        pair = TabularPair(roll, th)
        ex = pair.exact()
        assert ex.worst_error == pytest.approx(2 * e * e, rel=1e-12)
        s = _exact_stats(2, ex)
        r = evaluate(s, constants="sharp")
        assert r.bounds["coupling"] == pytest.approx(2 * e * e, rel=1e-12)
        assert r.bounds["classical_tv"] == pytest.approx(2 * e * e, rel=1e-12)
        assert r.unified == pytest.approx(ex.worst_error, rel=1e-12)
