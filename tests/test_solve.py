"""The threshold / length solver (trmbounds.solve) and `trmbounds solve`.

Expected values come from closed forms derived by hand for the regime each case sits
in, or from an independent direct summation of every member of B* written here
(SPEC §3), never from the solver's own output.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from trmbounds import solve as S
from trmbounds.cli import app
from trmbounds.errors import TrmboundsError

runner = CliRunner()


def sum_sqrt(T: int) -> float:
    """sum_{k=0}^{T-1} sqrt(k), summed exactly (math.fsum)."""
    return math.fsum(math.sqrt(k) for k in range(T))


# ---------------------------------------------------------------- an independent B*
def direct_unified_all_T(N, delta, *, tv_ratio=1.0, kl_avg=None, constants="paper"):
    """B*(T) for T = 1..N by direct summation of SPEC §3 (cumulative sums over positions).

    eps = min(1, r sqrt(delta/2)); D_KL^seq = T delta or T kl_avg;
    D_TV^seq = min(1, sqrt(D_KL^seq/2), T eps); uniform fill Dbar = min(1, eps, sqrt(delta/2)).
    """
    lead = 4.0 if constants == "paper" else 2.0
    T = np.arange(1, N + 1, dtype=np.float64)
    k = np.arange(0, N, dtype=np.float64)  # k = t - 1 (or T - t for the Adaptive sum)
    c = math.sqrt(delta / 2.0)
    u = min(1.0, c)
    eps = min(1.0, tv_ratio * c)
    e = min(1.0, eps)
    s_kl = np.cumsum(np.minimum(1.0, c * np.sqrt(k)))  # sum_{t<=T} min(1, sqrt((t-1) delta/2))
    s_tv = np.cumsum(np.minimum(1.0, k * eps))
    s_hy = np.cumsum(np.minimum(1.0, np.minimum(k * eps, c * np.sqrt(k))))
    kseq = T * (delta if kl_avg is None else kl_avg)
    tseq = np.minimum(1.0, np.minimum(np.sqrt(kseq / 2.0), T * eps))
    L = T if constants == "paper" else T - 1.0
    members = [
        lead * u * s_kl,  # PM-KL
        lead * e * s_kl,  # PM-TV
        lead * L * u * np.minimum(1.0, np.sqrt(kseq / 2.0)),  # Mixed KL
        lead * L * e * tseq,  # Mixed TV
        lead * e * s_tv,  # Coupling
        lead * min(1.0, eps, c) * s_hy,  # Adaptive hybrid, uniform fill
    ]
    return np.minimum.reduce(members)


def test_independent_bstar_matches_library_bound():
    # The helper above must itself agree with the library's closed forms (both sides
    # independent implementations of SPEC §3).
    for kw in ({}, {"tv_ratio": 0.3}, {"kl_avg": 1e-7}, {"constants": "sharp"}):
        want = direct_unified_all_T(3000, 1e-5, **kw)
        got = S.threshold_bound(np.arange(1, 3001), 1e-5, **kw)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


def test_threshold_bound_reproduces_paper_column_A():
    # SPEC §3 column A (T = 4096, delta = 1e-4, D_KL^seq = 0.01, eps = sqrt(delta/2)):
    # unified <= 8.2, exactly Mixed KL 2 T sqrt(delta D_KL^seq) = 2 * 4096 * 1e-3 = 8.192.
    assert S.threshold_bound(4096, 1e-4, kl_avg=0.01 / 4096) == pytest.approx(8.192, rel=1e-12)
    # Worst case D_KL^seq = T delta: PM-KL's exact sum 34.9461 (SPEC §3, PM-KL row).
    assert S.threshold_bound(4096, 1e-4) == pytest.approx(2e-4 * sum_sqrt(4096), rel=1e-12)
    assert round(S.threshold_bound(4096, 1e-4), 4) == 34.9461


# ---------------------------------------------------------------- question (a)
@pytest.mark.parametrize("T", [4096, 8192, 32768])
@pytest.mark.parametrize("beta", [0.1, 1.0])
def test_max_kl_matches_closed_form_worst_case(T, beta):
    # Small-divergence regime with eps = sqrt(delta/2), D_KL^seq = T delta: PM-KL is the
    # tightest member and equals 4 u^2 sum_{k<T} sqrt(k) = 2 delta sum sqrt(k), so
    # delta_max = beta / (2 sum_{k<T} sqrt(k)).
    want = beta / (2.0 * sum_sqrt(T))
    assert math.sqrt(want / 2.0) * math.sqrt(T - 1) <= 1.0  # no cap binds: the regime holds
    r = S.max_kl_threshold(T, beta)
    assert r.status == "ok" and r.tightest == "pm_kl"
    assert r.kl_max == pytest.approx(want, rel=1e-8)
    # Sharp constants halve PM-KL, so the threshold doubles.
    rs = S.max_kl_threshold(T, beta, constants="sharp")
    assert rs.kl_max == pytest.approx(2.0 * want, rel=1e-8)


def test_max_kl_with_kl_avg_matches_mixed_kl_closed_form():
    # D_KL^seq = T kl_avg fixed: Mixed KL = 4 T sqrt(delta/2) sqrt(T kl_avg / 2)
    # = 2 T^{3/2} sqrt(delta kl_avg) is tightest once delta > (9/4) kl_avg, so
    # delta_max = beta^2 / (4 T^3 kl_avg).
    T, kbar, beta = 4096, 1e-8, 1.0
    want = beta**2 / (4.0 * T**3 * kbar)
    assert want > 2.25 * kbar and T * kbar / 2 < 1 and want / 2 < 1
    r = S.max_kl_threshold(T, beta, kl_avg=kbar)
    assert r.status == "ok" and r.tightest in ("mix_kl", "mix_tv")
    assert r.kl_max == pytest.approx(want, rel=1e-8)
    assert r.kl_seq == pytest.approx(T * kbar)


def test_tv_route_matches_coupling_closed_form():
    # Tv route with T eps <= 1: Coupling 2 T (T-1) eps^2 < Mixed TV 4 T^2 eps^2, so
    # eps_max = sqrt(beta / (2 T (T-1))).
    T, beta = 4096, 1.0
    want = math.sqrt(beta / (2.0 * T * (T - 1)))
    assert T * want <= 1
    r = S.max_tv_threshold(T, beta)
    assert r.status == "ok" and r.tv_max == pytest.approx(want, rel=1e-8)
    assert S.max_kl_threshold(T, beta).tv_route.tv_max == pytest.approx(want, rel=1e-8)


def test_tv_ratio_ties_epsilon():
    r = S.max_kl_threshold(8192, 0.2, tv_ratio=0.25)
    assert r.tv_max == pytest.approx(0.25 * math.sqrt(r.kl_max / 2.0), rel=1e-12)
    assert "0.25·√(δ/2)" in r.assumptions["tv_max"]
    # A smaller epsilon can only lower B*, so the threshold can only grow.
    assert r.kl_max >= S.max_kl_threshold(8192, 0.2).kl_max


def test_no_threshold_with_large_kl_avg():
    # delta >= kl_avg = 1e-3: Mixed KL at delta = kl_avg is 2 T^{3/2} kl_avg = 524 > 0.1.
    r = S.max_kl_threshold(4096, 0.1, kl_avg=1e-3)
    assert r.status == "none" and r.kl_max is None
    assert "no threshold meets the budget" in r.message
    assert r.bound > 0.1


def test_every_threshold_when_bound_saturates():
    # T = 1: the surrogate is exact, B* = 0 for every delta.
    r = S.max_kl_threshold(1, 0.5)
    assert r.status == "any" and r.kl_max is None and r.bound == 0.0
    assert r.tv_route.status == "any"
    # A tiny mean KL caps B* at Mixed KL 4 T sqrt(T kl_avg / 2) for every delta.
    cap = 4 * 4096 * math.sqrt(4096 * 1e-14 / 2)
    r = S.max_kl_threshold(4096, 1.01 * cap, kl_avg=1e-14)
    assert r.status == "any"
    assert S.max_kl_threshold(4096, 0.99 * cap, kl_avg=1e-14).status == "ok"


# ---------------------------------------------------------------- question (b)
@pytest.mark.parametrize(
    "delta, beta, kw",
    [
        (1e-4, 1.0, {}),
        (1e-4, 0.1, {}),
        (1e-6, 0.1, {"kl_avg": 1e-8}),
        (1e-5, 0.5, {"tv_ratio": 0.3, "constants": "sharp"}),
        (0.05, 0.5, {}),  # the paper's TRM-Max threshold
    ],
)
def test_max_length_matches_direct_summation(delta, beta, kw):
    N = 20000
    b = direct_unified_all_T(N, delta, **kw)
    assert b[-1] > beta  # the scan covers the crossing
    want = int(np.flatnonzero(b <= beta)[-1]) + 1  # b is non-decreasing: last T within budget
    assert np.all(np.diff(b) >= 0)
    r = S.max_length(delta, beta, **kw)
    assert r.status == "ok" and r.T_max == want
    assert r.bound == pytest.approx(b[want - 1], rel=1e-12)
    assert r.bound_next == pytest.approx(b[want], rel=1e-12)


def test_max_length_rejects_kl_avg_above_kl_max():
    with pytest.raises(TrmboundsError, match="kl_avg = 0.01 exceeds kl_max = 0.001"):
        S.max_length(1e-3, 0.1, kl_avg=1e-2)


# ---------------------------------------------------------------- substitution, properties
@settings(max_examples=60, deadline=None)
@given(
    T=st.integers(1, 2**24),
    beta=st.floats(1e-4, 50.0),
    r=st.floats(0.02, 1.0),
    kbar=st.one_of(st.none(), st.floats(1e-12, 1e-2)),
    constants=st.sampled_from(["paper", "sharp"]),
)
def test_max_kl_verified_by_substitution(T, beta, r, kbar, constants):
    kw = dict(tv_ratio=r, kl_avg=kbar, constants=constants)
    res = S.max_kl_threshold(T, beta, **kw)
    if res.status == "ok":
        d = res.kl_max
        assert S.threshold_bound(T, d, **kw) <= beta < S.threshold_bound(T, d * (1 + 1e-6), **kw)
        if kbar is not None:
            assert d >= kbar
    elif res.status == "none":
        assert kbar is not None and S.threshold_bound(T, kbar, **kw) > beta
    else:
        assert S.threshold_bound(T, 1e6, **kw) <= beta
    tv = res.tv_route
    if tv.status == "ok":
        f = lambda e: S.tv_route_bound(T, e, kl_avg=kbar, constants=constants)  # noqa: E731
        assert f(tv.tv_max) <= beta < f(tv.tv_max * (1 + 1e-6))


@settings(max_examples=40, deadline=None)
@given(
    delta=st.floats(1e-9, 1.0),
    beta=st.floats(1e-4, 10.0),
    r=st.floats(0.05, 1.0),
    constants=st.sampled_from(["paper", "sharp"]),
)
def test_max_length_verified_by_substitution(delta, beta, r, constants):
    kw = dict(tv_ratio=r, constants=constants)
    res = S.max_length(delta, beta, **kw)
    assert res.status == "ok"
    T = res.T_max
    assert S.threshold_bound(T, delta, **kw) <= beta < S.threshold_bound(T + 1, delta, **kw)


@pytest.mark.parametrize("kw", [{}, {"tv_ratio": 0.3}, {"kl_avg": 1e-12}, {"constants": "sharp"}])
def test_bound_is_monotone_on_dense_grids(kw):
    # The solver's premise, checked rather than assumed: B* non-decreasing in delta and T.
    d = np.geomspace(1e-14, 10.0, 50001)
    for T in (2, 16, 255, 256, 257, 4096, 2**20, 2**40):
        v = S.threshold_bound(T, d, **kw)
        assert np.all(np.diff(v) >= 0), T
    T = np.arange(1, 100001)
    for delta in (1e-10, 1e-6, 1e-3, 0.05, 3.0):
        v = S.threshold_bound(T, delta, **kw)
        assert np.all(np.diff(v) >= 0), delta
    e = np.geomspace(1e-12, 3.0, 50001)
    for T in (2, 4096, 2**20):
        assert np.all(np.diff(S.tv_route_bound(T, e)) >= 0)


@settings(max_examples=100, deadline=None)
@given(
    T1=st.integers(1, 2**30),
    T2=st.integers(1, 2**30),
    d1=st.floats(1e-14, 10.0),
    d2=st.floats(1e-14, 10.0),
    r=st.floats(0.01, 1.0),
)
def test_bound_is_monotone_property(T1, T2, d1, d2, r):
    (Ta, Tb), (da, db) = sorted((T1, T2)), sorted((d1, d2))
    lo = S.threshold_bound(Ta, da, tv_ratio=r)
    hi = S.threshold_bound(Tb, db, tv_ratio=r)
    assert lo <= hi * (1 + 1e-12)  # slack for rounding in the closed forms only


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "call, msg",
    [
        (lambda: S.max_kl_threshold(4096, 0.0), "budget must be a positive"),
        (lambda: S.max_kl_threshold(4096, -1.0), "budget must be a positive"),
        (lambda: S.max_kl_threshold(0, 0.1), "T must be an integer >= 1"),
        (lambda: S.max_kl_threshold(100.5, 0.1), "T must be an integer >= 1"),
        (lambda: S.max_kl_threshold(100, 0.1, tv_ratio=1.5), "tv_ratio must be in"),
        (lambda: S.max_kl_threshold(100, 0.1, kl_avg=0.0), "kl_avg must be a positive"),
        (lambda: S.max_kl_threshold(100, 0.1, constants="tight"), "unknown constants"),
        (lambda: S.max_length(0.0, 0.1), "kl_max must be a positive"),
        (lambda: S.max_length(1e-4, float("nan")), "budget must be a positive"),
    ],
)
def test_bad_input_raises_one_line(call, msg):
    with pytest.raises(TrmboundsError, match=msg) as e:
        call()
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------- the command
def run(*args):
    return runner.invoke(app, ["solve", *args])


def test_cli_json_one_document_one_result_per_length():
    r = run("--T", "4096,8192", "--T", "32768", "--budget", "0.1", "--json")
    assert r.exit_code == 0, r.output
    objs = json.loads(r.stdout)["results"]  # one JSON document, whatever the number of lengths
    assert len(objs) == 3
    for o, T in zip(objs, (4096, 8192, 32768), strict=True):
        assert o["question"] == "max_kl" and o["T"] == T and o["status"] == "ok"
        # closed form of test_max_kl_matches_closed_form_worst_case
        assert o["kl_max"] == pytest.approx(0.1 / (2 * sum_sqrt(T)), rel=1e-8)
        assert o["assumptions"]["kl_seq"] == "D_KL^seq = T·δ (worst case)"
        assert o["tv_route"]["tv_max"] > 0


def test_cli_budget_frac_scales_with_adv_range():
    # beta = 0.05 * 2 = 0.1 in reward units with a = 2: the same as --budget 0.1 --adv-range 2.
    a = json.loads(run("--T", "4096", "--budget-frac", "0.05", "--adv-range", "2", "--json").stdout)
    b = json.loads(run("--T", "4096", "--budget", "0.1", "--adv-range", "2", "--json").stdout)
    a, b = a["results"][0], b["results"][0]
    assert a["budget"] == b["budget"] == pytest.approx(0.1)
    assert a["kl_max"] == b["kl_max"]
    # B* scales with a, so delta_max halves relative to a = 1 (PM-KL is linear in delta).
    assert a["kl_max"] == pytest.approx(0.1 / 2 / (2 * sum_sqrt(4096)), rel=1e-8)


def test_cli_max_length_json_and_text():
    r = run("--kl-max", "1e-4", "--budget", "1", "--json")
    assert r.exit_code == 0, r.output
    o = json.loads(r.stdout)
    assert o["question"] == "max_length" and o["T_max"] == 383  # direct sum, as in the docstring
    r = run("--kl-max", "1e-4", "--budget", "1")
    assert r.exit_code == 0 and "T_max = 383" in r.stdout and "Assumptions" in r.stdout


def test_cli_no_threshold_is_plain_and_exit_0():
    r = run("--T", "4096", "--budget", "0.1", "--kl-avg", "1e-3", "--json")
    assert r.exit_code == 0
    (o,) = json.loads(r.stdout)["results"]
    assert o["kl_max"] is None and o["status"] == "none"
    r = run("--T", "4096", "--budget", "0.1", "--kl-avg", "1e-3")
    assert r.exit_code == 0 and "no threshold meets the budget" in r.stdout


def test_cli_text_states_assumptions():
    r = run("--T", "4096", "--budget-frac", "0.1", "--tv-ratio", "0.5", "--kl-avg", "1e-9")
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert "ε = 0.5·√(δ/2)" in out and "D_KL^seq = T·1e-09" in out and "D_TV^seq" in out
    assert "10% of the advantage range" in out and "TV route alone" in out


@pytest.mark.parametrize(
    "args, msg",
    [
        (["--T", "4096", "--budget", "0"], "--budget must be positive"),
        (["--T", "4096", "--budget", "-2"], "--budget must be positive"),
        (["--T", "4096", "--budget-frac", "0"], "--budget-frac must be positive"),
        (["--T", "0", "--budget", "0.1"], "T must be an integer >= 1"),
        (["--T", "4096,abc", "--budget", "0.1"], "T must be an integer >= 1"),
        (["--T", "4096", "--kl-max", "1e-4", "--budget", "0.1"], "give --T"),
        (["--budget", "0.1"], "give --T"),
        (["--T", "4096"], "give --budget"),
        (["--T", "4096", "--budget", "0.1", "--budget-frac", "0.1"], "give --budget"),
        (["--T", "4096", "--budget", "0.1", "--tv-ratio", "2"], "--tv-ratio must be in"),
        (["--kl-max", "1e-4", "--budget", "0.1", "--kl-avg", "1e-3"], "exceeds --kl-max"),
    ],
)
def test_cli_bad_input_exit_2_one_line(args, msg):
    r = run(*args)
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith("Error: ") and msg in r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_review_edge_cases():
    # Found in review: a tiny budget has a threshold (B* = 2 delta at T = 2, by hand),
    # and an absurdly small tv_ratio is rejected rather than hanging.
    r = S.max_kl_threshold(2, 1e-300)
    assert r.status == "ok"
    assert S.threshold_bound(2, r.kl_max) <= 1e-300 < S.threshold_bound(2, r.kl_max * (1 + 1e-6))
    with pytest.raises(TrmboundsError, match="tv_ratio must be at least"):
        S.max_kl_threshold(4096, 0.1, tv_ratio=1e-170)


def test_cli_max_length_shows_the_step_across_the_budget():
    """At delta = 1e-12 the step B*(T_max) -> B*(T_max + 1) is ~1e-8 of beta: printed with
    4 digits both read 0.1; the text must show B*(T_max) <= beta < B*(T_max + 1)."""
    import re

    r = run("--kl-max", "1e-12", "--budget", "0.1")
    assert r.exit_code == 0, r.output
    text = " ".join(r.stdout.split()).replace(",", "")
    m = re.search(r"B\*\((\d+)\) = ([\d.e+-]+) B\*\((\d+)\) = ([\d.e+-]+) > β", text)
    assert m, text
    assert int(m[3]) == int(m[1]) + 1
    assert float(m[2]) <= 0.1 < float(m[4])  # the printed numbers say what the sentence says


def test_cli_says_a_budget_of_the_whole_range_is_vacuous():
    for args in (["--T", "4096"], ["--kl-max", "1e-4"]):
        r = run(*args, "--budget", "5")  # 500 % of a = 1
        assert r.exit_code == 0, r.output
        assert "vacuous" in r.stdout and "Choose β < a" in " ".join(r.stdout.split())
        assert "vacuous" not in run(*args, "--budget", "0.5").stdout
        o = json.loads(run(*args, "--budget", "5", "--json").stdout)
        o = o["results"][0] if "results" in o else o
        assert o["vacuous_budget"] is True
    # a = 2: beta = 1.5 is 75 % of the range, not vacuous; beta = 2 is
    assert "vacuous" not in run("--T", "64", "--budget", "1.5", "--adv-range", "2").stdout
    assert "vacuous" in run("--T", "64", "--budget", "2", "--adv-range", "2").stdout


def test_cli_prose_wraps_at_80_columns():
    from rich.cells import cell_len

    for args in (["--kl-max", "1e-12", "--budget", "0.1"], ["--T", "4096", "--budget", "5"]):
        r = runner.invoke(app, ["solve", *args], env={"COLUMNS": "80", "TERM": "dumb"})
        assert r.exit_code == 0
        assert max(cell_len(line) for line in r.stdout.splitlines()) <= 80, r.stdout
