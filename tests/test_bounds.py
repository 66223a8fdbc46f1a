"""The bound formulas: the paper's reference values, identities, properties, broadcasting."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trmbounds import bounds as B
from trmbounds.errors import TrmboundsError

T = 4096
DELTA = 1e-4


# --------------------------------------------------------------------------- paper
# Source: the paper's table at T = 4096 (SPEC §3). The paper rounds to 3-4 figures;
# the exact Pinsker-Marginal sums (34.9461, 24.7106) are given in SPEC §3.
COL_A = dict(kl_max=DELTA, tv_max=math.sqrt(DELTA / 2), kl_seq=0.01, tv_seq=math.sqrt(0.01 / 2))
COL_B = dict(kl_max=DELTA, tv_max=5e-3, kl_seq=0.01, tv_seq=0.05)


@pytest.mark.parametrize(
    "col, classical, coupling, pm_kl, pm_tv, mix_kl, mix_tv",
    [
        (COL_A, 1677, 113.8, 34.9461, 34.9461, 8.2, 8.2),
        (COL_B, 839, 79.9, 34.9461, 24.7106, 8.2, 4.1),
    ],
)
def test_paper_table(col, classical, coupling, pm_kl, pm_tv, mix_kl, mix_tv):
    d, e, ks, ts = col["kl_max"], col["tv_max"], col["kl_seq"], col["tv_seq"]
    assert B.classical_tv(T, e) == pytest.approx(classical, abs=0.5)
    assert B.coupling(T, e) == pytest.approx(coupling, abs=0.05)
    assert B.pm_kl(T, d) == pytest.approx(pm_kl, abs=5e-5)
    assert B.pm_tv(T, d, e) == pytest.approx(pm_tv, abs=5e-5)
    assert B.mix_kl(T, d, ks) == pytest.approx(mix_kl, abs=0.05)
    assert B.mix_tv(T, e, ts) == pytest.approx(mix_tv, abs=0.05)
    assert B.unified(T, d, e, ks, ts) <= min(mix_kl, mix_tv) + 1e-9


def test_paper_table_column_b_unified_is_mixed_tv():
    # Mixed TV = 4 T eps D_TV^seq = 4 * 4096 * 5e-3 * 0.05 = 4.096 (arithmetic).
    assert B.unified(T, **COL_B) == pytest.approx(4.096, rel=1e-12)
    assert B.mix_tv(T, 5e-3, 0.05) == pytest.approx(4.096, rel=1e-12)


def test_paper_closed_forms():
    # SPEC §3: the paper's 35.0 / 24.7 are (4/3) T^{3/2} delta and (8/3) T^{3/2} eps sqrt(delta/2).
    assert B.pm_kl_closed_form(T, DELTA) == pytest.approx(34.9525, abs=5e-5)
    assert B.pm_tv_closed_form(T, DELTA, 5e-3) == pytest.approx(24.7152, abs=5e-5)


def test_large_divergence_row():
    # SPEC §3: delta = 1, D_KL^seq = 1, eps = sqrt(1/2).
    e = math.sqrt(0.5)
    assert B.classical_tv(T, e) == pytest.approx(1.68e7, rel=3e-3)
    assert B.classical_kl(T, 1.0) == pytest.approx(1.68e7, rel=3e-3)
    assert B.linear(T, e) == pytest.approx(11585, abs=0.5)
    assert B.pm_kl_closed_form(T, 1.0) == pytest.approx(3.49e5, rel=2e-3)
    assert B.pm_kl(T, 1.0) == pytest.approx(11582, abs=0.5)
    assert B.mix_kl(T, 1.0, 1.0) == pytest.approx(8192, rel=1e-12)
    # By hand: s_1 = 0, s_2 = sqrt(1/2), s_t = 1 for t >= 3, u = sqrt(1/2).
    assert B.pm_kl(T, 1.0) == pytest.approx(4 * e * (e + T - 2), rel=1e-14)


# ------------------------------------------------------------------------ identities
def test_adaptive_kl_with_uniform_fill_equals_pm_kl():
    # SPEC §3 identity, through the O(T) per-position path.
    for t_len, d in [(1, 0.3), (7, 0.02), (4096, 1e-4), (5000, 2.0), (100_000, 1e-6)]:
        u = min(1.0, math.sqrt(d / 2))
        got = B.adaptive_kl(t_len, d, np.full(t_len, u))
        assert got == pytest.approx(B.pm_kl(t_len, d), rel=1e-12, abs=1e-300)


def test_adaptive_tv_with_uniform_fill_equals_coupling():
    for t_len, e in [(1, 0.3), (9, 0.2), (4096, 5e-3), (5000, 1.0), (100_000, 1e-6)]:
        got = B.adaptive_tv(t_len, e, np.full(t_len, e))
        assert got == pytest.approx(B.coupling(t_len, e), rel=1e-12, abs=1e-300)


def test_hybrid_below_both_routes():
    rng = np.random.default_rng(1)
    for _ in range(50):
        t_len = int(rng.integers(1, 3000))
        d = 10 ** rng.uniform(-6, 0)
        e = math.sqrt(d / 2) * rng.uniform(0.05, 1.0)
        dbar = rng.uniform(0, min(1, e), size=t_len)
        hyb = B.adaptive(t_len, d, e, dbar)
        assert hyb <= min(B.adaptive_kl(t_len, d, dbar), B.adaptive_tv(t_len, e, dbar)) * (
            1 + 1e-12
        )


def test_hybrid_route_crossover_at_delta_over_two_eps_squared():
    # With all divergence at one position t, the hybrid weight is the TV route's
    # (T - t) eps while T - t < delta / (2 eps^2), and the KL route's after it.
    d, e, t_len = 1e-2, 1e-2, 200  # crossover at T - t = 1e-2 / 2e-4 = 50
    for t in range(1, t_len + 1):
        dbar = np.zeros(t_len)
        dbar[t - 1] = e
        j = t_len - t
        hyb = B.adaptive(t_len, d, e, dbar)
        if j < 50:
            assert hyb == pytest.approx(B.adaptive_tv(t_len, e, dbar), rel=1e-12, abs=1e-300)
            assert hyb == pytest.approx(4 * e * min(1, j * e), rel=1e-12, abs=1e-300)
        elif j > 50:
            assert hyb == pytest.approx(B.adaptive_kl(t_len, d, dbar), rel=1e-12)
            assert hyb < B.adaptive_tv(t_len, e, dbar)


def test_coupling_closed_forms():
    # SPEC §3: = 2T(T-1)eps^2 when T eps <= 1, <= 4 T eps + 2 otherwise.
    for t_len, e in [(10, 0.1), (100, 0.005), (4096, 1 / 4096)]:
        assert B.coupling(t_len, e) == pytest.approx(2 * t_len * (t_len - 1) * e**2, rel=1e-12)
    for t_len, e in [(10, 0.2), (4096, 5e-3), (10**6, 0.3)]:
        assert B.coupling(t_len, e) <= 4 * t_len * e + 2


def test_pm_small_regime_closed_form_is_upper_bound():
    for t_len in [10, 100, 4096, 10**6]:
        for d in [1e-8, 1e-4, 2 / t_len]:
            assert B.pm_kl(t_len, d) <= B.pm_kl_closed_form(t_len, d) * (1 + 1e-12)


def test_mixed_kl_uncapped_form():
    # SPEC §3: no caps, 4 T u sqrt(D/2) = 2 T sqrt(delta D).
    for t_len, d, ks in [(4096, 1e-4, 0.01), (100, 0.02, 0.5)]:
        assert B.mix_kl(t_len, d, ks) == pytest.approx(2 * t_len * math.sqrt(d * ks), rel=1e-12)


def test_sharp_constants():
    # SPEC §7: every leading constant halved; Mixed uses T - 1.
    args = {
        "classical_tv": (T, 5e-3),
        "classical_kl": (T, DELTA),
        "linear": (T, 5e-3),
        "pm_kl": (T, DELTA),
        "pm_tv": (T, DELTA, 5e-3),
        "coupling": (T, 5e-3),
        "adaptive_kl": (T, DELTA),
        "adaptive_tv": (T, 5e-3),
        "adaptive": (T, DELTA, 5e-3),
    }
    for name, a in args.items():
        f = getattr(B, name)
        assert f(*a, constants="sharp") == pytest.approx(f(*a) / 2, rel=1e-14), name
    assert B.mix_kl(T, DELTA, 0.01, constants="sharp") == pytest.approx(8.192 * (T - 1) / T / 2)
    assert B.mix_tv(T, 5e-3, 0.05, constants="sharp") == pytest.approx(2 * (T - 1) * 5e-3 * 0.05)
    with pytest.raises(TrmboundsError, match="unknown constants"):
        B.pm_kl(T, DELTA, constants="loose")


def test_adv_range_scales_linearly():
    for name, a in [("pm_kl", (T, DELTA)), ("mix_tv", (T, 5e-3, 0.05)), ("coupling", (T, 5e-3))]:
        f = getattr(B, name)
        assert f(*a, adv_range=2.5) == pytest.approx(2.5 * f(*a), rel=1e-15)


# ------------------------------------------------------------------ closed-form sums
def _exact_sqrt_sum(n, c):
    k = np.arange(n, dtype=np.float64)
    return math.fsum(np.minimum(1.0, c * np.sqrt(k)))


def _exact_lin_sum(n, e):
    k = np.arange(n, dtype=np.float64)
    return math.fsum(np.minimum(1.0, k * e))


def _exact_hybrid_sum(n, e, c):
    k = np.arange(n, dtype=np.float64)
    return math.fsum(np.minimum(1.0, np.minimum(k * e, c * np.sqrt(k))))


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 20_000),
    logc=st.floats(-7, 1),
    loge=st.floats(-7, 0.5),
)
def test_closed_form_sums_match_exact_summation(n, logc, loge):
    c, e = 10.0**logc, 10.0**loge
    for got, want in [
        (B.capped_sqrt_sum(n, c), _exact_sqrt_sum(n, c)),
        (B.capped_linear_sum(n, e), _exact_lin_sum(n, e)),
        (B.capped_hybrid_sum(n, e, c), _exact_hybrid_sum(n, e, c)),
    ]:
        assert got == pytest.approx(want, rel=1e-12, abs=1e-300)


@pytest.mark.parametrize("n", [10**6, 3 * 10**6 + 17])
@pytest.mark.parametrize("c", [1e-5, 1e-3, 0.0123])
def test_closed_form_sums_at_large_T(n, c):
    assert B.capped_sqrt_sum(n, c) == pytest.approx(_exact_sqrt_sum(n, c), rel=1e-12)
    assert B.capped_linear_sum(n, c / 10) == pytest.approx(_exact_lin_sum(n, c / 10), rel=1e-12)


def test_sum_boundaries_at_the_cap():
    # n exactly at, just below and just above the cap index 1/c^2 (c = 0.1: cap at k = 100).
    for n in [99, 100, 101, 102, 255, 256, 257]:
        assert B.capped_sqrt_sum(n, 0.1) == pytest.approx(_exact_sqrt_sum(n, 0.1), rel=1e-13)
        assert B.capped_linear_sum(n, 0.01) == pytest.approx(_exact_lin_sum(n, 0.01), rel=1e-13)
    assert B.capped_sqrt_sum(5, 0.0) == 0.0
    assert B.capped_linear_sum(5, 0.0) == 0.0


# ---------------------------------------------------------------------- properties
FAMILIES = {
    "classical_tv": lambda t, d, e: B.classical_tv(t, e),
    "classical_kl": lambda t, d, e: B.classical_kl(t, d),
    "linear": lambda t, d, e: B.linear(t, e),
    "pm_kl": lambda t, d, e: B.pm_kl(t, d),
    "pm_tv": lambda t, d, e: B.pm_tv(t, d, e),
    "mix_kl": lambda t, d, e: B.mix_kl(t, d, t * d),
    "mix_tv": lambda t, d, e: B.mix_tv(t, e, min(1.0, t * e)),
    "coupling": lambda t, d, e: B.coupling(t, e),
    "adaptive_kl": lambda t, d, e: B.adaptive_kl(t, d),
    "adaptive_tv": lambda t, d, e: B.adaptive_tv(t, e),
    "adaptive": lambda t, d, e: B.adaptive(t, d, e),
    "unified": lambda t, d, e: B.unified(t, d, e),
}


@settings(max_examples=150, deadline=None)
@given(
    t=st.integers(1, 10**7),
    dt=st.integers(1, 10**6),
    logd=st.floats(-9, 1),
    ratio=st.floats(0.01, 1.0),
    grow=st.floats(1.0, 10.0),
)
def test_monotone_in_T_delta_eps(t, dt, logd, ratio, grow):
    d = 10.0**logd
    e = min(1.0, ratio * math.sqrt(d / 2))
    for name, f in FAMILIES.items():
        base = f(t, d, e)
        assert f(t + dt, d, e) >= base * (1 - 1e-12), f"{name} not monotone in T"
        d2 = d * grow
        e2 = min(1.0, e * math.sqrt(grow))  # keeps eps <= sqrt(delta/2)
        assert f(t, d2, e2) >= base * (1 - 1e-12), f"{name} not monotone in (delta, eps)"


@settings(max_examples=150, deadline=None)
@given(
    t=st.integers(1, 10**6),
    logd=st.floats(-9, 1),
    ratio=st.floats(0.01, 1.0),
    kfrac=st.floats(0.0, 1.0),
    tfrac=st.floats(0.0, 1.0),
)
def test_unified_never_above_a_member(t, logd, ratio, kfrac, tfrac):
    d = 10.0**logd
    e = min(1.0, ratio * math.sqrt(d / 2))
    ks = kfrac * t * d
    ts = tfrac * min(1.0, math.sqrt(ks / 2), t * e)
    u = B.unified(t, d, e, ks, ts)
    members = [
        B.pm_kl(t, d),
        B.pm_tv(t, d, e),
        B.mix_kl(t, d, ks),
        B.mix_tv(t, e, ts),
        B.coupling(t, e),
        B.adaptive(t, d, e),
    ]
    assert u == pytest.approx(min(members), rel=1e-15)
    assert all(u <= m for m in members)


def test_broadcasting_matches_scalar_loop():
    Ts = np.array([1, 10, 4096, 10**6])
    ds = np.array([[1e-6], [1e-3], [0.5]])
    es = np.sqrt(ds / 2) * 0.5
    for name in ("pm_kl", "classical_kl"):
        grid = getattr(B, name)(Ts, ds)
        assert grid.shape == (3, 4)
        for i in range(3):
            for j in range(4):
                assert grid[i, j] == getattr(B, name)(int(Ts[j]), float(ds[i, 0]))
    grid = B.unified(Ts, ds, es)
    assert grid.shape == (3, 4)
    for i in range(3):
        for j in range(4):
            want = B.unified(int(Ts[j]), float(ds[i, 0]), float(es[i, 0]))
            assert grid[i, j] == pytest.approx(want, rel=1e-15)
    assert isinstance(B.pm_kl(10, 0.1), float)


def test_per_position_length_must_match():
    with pytest.raises(TrmboundsError, match="length 3, expected T"):
        B.adaptive(4, 0.1, 0.1, np.ones(3) * 0.1)


def test_t_equals_one_has_no_error():
    # With one token the surrogate is exact: J(θ) - J(roll) = E_roll[R (ρ_1 - 1)].
    for f in ("pm_kl", "coupling", "adaptive_kl"):
        assert getattr(B, f)(1, 0.5) == 0.0
    assert B.mix_tv(1, 0.5, 0.5, constants="sharp") == 0.0


def test_per_position_result_broadcasts_against_T():
    # Found in review: with a per-position array the adaptive bound ignored T's shape.
    D = np.full(5, 0.005)
    got = B.adaptive(np.array([5, 5]), 0.02, 0.01, D)
    assert np.shape(got) == (2,) and got[0] == got[1] == B.adaptive(5, 0.02, 0.01, D)
    assert np.shape(B.unified(np.array([5, 5]), 0.02, 0.01, per_position=D)) == (2,)
    assert isinstance(B.adaptive(5, 0.02, 0.01, D), float)
