"""Per-step checks of metric logs: presets, statistics, states (trmbounds.logs.check)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from logfixtures import BASE, metric_rows, write_csv, write_jsonl, write_parquet

from trmbounds.errors import InputFileError, TrmboundsError
from trmbounds.logs import presets as P
from trmbounds.logs.check import (
    STATES,
    Assumption,
    check_log,
    states,
    unified_columns,
)


def bstar_direct(T, d=None, e=None, kseq=None, tseq=None):
    """B* summed term by term straight from SPEC §3 (loops, no closed forms)."""
    if e is None:
        e = min(1.0, math.sqrt(d / 2))
    if kseq is None and d is not None:
        kseq = T * d
    if tseq is None:
        tseq = min(1.0, T * e, math.sqrt(kseq / 2) if kseq is not None else math.inf)
    ts = range(1, T + 1)
    em = min(1.0, e)
    members = [
        4 * T * em * min(1.0, tseq),  # Mixed TV
        4 * em * sum(min(1.0, (t - 1) * e) for t in ts),  # Coupling
    ]
    dbar = min(1.0, e, math.sqrt(d / 2) if d is not None else 1.0)
    w = [
        min(1.0, (T - t) * e, math.sqrt((T - t) * d / 2) if d is not None else math.inf) for t in ts
    ]
    members.append(4 * sum(dbar * x for x in w))  # Adaptive hybrid, uniform fill
    if d is not None:
        u = min(1.0, math.sqrt(d / 2))
        s = sum(min(1.0, math.sqrt((t - 1) * d / 2)) for t in ts)
        members += [4 * u * s, 4 * em * s, 4 * T * u * min(1.0, math.sqrt(kseq / 2))]
    return min(members)


def test_unified_columns_paper_column_b_and_missing():
    # Paper table, column B (T = 4096): Mixed TV = 4 * 4096 * 5e-3 * 0.05 = 4.096.
    b = unified_columns(4096, 1e-4, 5e-3, 0.01, 0.05)
    assert float(b) == pytest.approx(4.096, rel=1e-12)
    # delta unknown: only the TV members; delta and eps unknown: NaN.
    out = unified_columns([2, 100, 5], [np.nan, np.nan, np.nan], [0.1, 0.1, np.nan])
    # T = 2, eps = 0.1: Coupling = 4 * 0.1 * (0 + 0.1) = 0.04 (Mixed TV 4*2*0.1*0.2 = 0.16).
    # T = 100: Coupling = 0.4 * (0.1 + ... + 0.9 + 90 * 1) = 0.4 * 94.5 = 37.8.
    assert out[0] == pytest.approx(0.04) and out[1] == pytest.approx(37.8)
    assert math.isnan(out[2])


@pytest.mark.parametrize(
    "T,d,e,ks", [(100, 1e-4, None, 5e-4), (37, 3e-3, 0.01, None), (400, 0.05, None, 2.0)]
)
def test_unified_columns_matches_term_by_term_sums(T, d, e, ks):
    got = float(unified_columns(T, d, e, ks))
    assert got == pytest.approx(bstar_direct(T, d, e, ks), rel=1e-9)


@pytest.mark.parametrize("d,e", [(1e-4, None), (None, 2e-3), (3e-3, 1e-2)])
def test_fast_paths_equal_the_row_by_row_bound(d, e):
    # many rows against one row at a time
    rng = np.random.default_rng(7)
    T = rng.integers(1, 3000, 300).astype(float)
    T[5] = np.nan
    ks = rng.uniform(0, 0.05, 300)
    one = [float(unified_columns(t, d, e, k)) for t, k in zip(T, ks)]
    np.testing.assert_allclose(unified_columns(T, d, e, ks), one, rtol=1e-12)
    # no sequence statistic: the distinct-T path, against one row at a time
    one_T = [float(unified_columns(t, d, e)) for t in T]
    np.testing.assert_allclose(unified_columns(T, d, e), one_T, rtol=1e-12)
    for i in (0, 1, 2):  # and the term-by-term sums
        assert one[i] == pytest.approx(bstar_direct(int(T[i]), d, e, ks[i]), rel=1e-9)


def test_states_precedence_by_hand():
    a = Assumption(tv_max=0.1)
    T = np.array([2.0, 2.0, 2.0, 100.0, 2.0])
    b = unified_columns(T, None, 0.1)  # 0.04 at T = 2, 37.8 at T = 100 (see above)
    s = states(T, b, a, np.array([np.nan, 0.11, 0.05, np.nan, np.nan]), np.full(5, np.nan),
               np.array([0.05, 0.05, 0.03, 1.0, np.nan]))  # fmt: skip
    # L = 0.05 > 0.04 but a point estimate without a lower confidence bound: only
    # estimated-gain; lower bound 0.11 > eps = 0.1 refuted (wins); L = 0.03 < 0.04
    # non-vacuous; 37.8 >= a = 1 vacuous (L = 1 < 37.8).
    assert [STATES[i] for i in s] == [
        "estimated-gain", "refuted", "non-vacuous", "vacuous", "non-vacuous",
    ]  # fmt: skip
    lcb = np.array([0.041, np.nan, np.nan, np.nan, np.nan])  # one-sided 95 % bound on L
    s = states(T, b, a, *(np.full(5, np.nan),) * 2, np.array([0.05] * 5), lcb, sound=True)
    assert STATES[s[0]] == "guaranteed"  # 0.041 > B* = 0.04
    s = states(T, b, a, *(np.full(5, np.nan),) * 2, np.array([0.05] * 5), lcb, sound=False)
    assert STATES[s[0]] == "estimated-gain"  # B* on an empirical horizon: no guarantee
    assert (states(T, b, Assumption(), *(np.full(5, np.nan),) * 3) == STATES.index("unknown")).all()


def _verl_expected():
    T = [100, 200, 400, 800]
    kseq = [1e-5 * 50, 2e-5 * 80, 4e-5 * 120, 1e-4 * 300]  # token-mean k3 x mean length
    acc = [0.95, 0.9, 0.75, 0.5]  # 1 - masked fraction
    return T, kseq, acc


@pytest.mark.parametrize("writer", ["jsonl", "jsonl-flat", "csv", "parquet"])
def test_verl_log_every_format(tmp_path, writer):
    rows = metric_rows("verl")
    p = {
        "jsonl": lambda: write_jsonl(tmp_path / "m.jsonl", rows),
        "jsonl-flat": lambda: write_jsonl(tmp_path / "m.jsonl", rows, nested=False),
        "csv": lambda: write_csv(tmp_path / "m.csv", rows),
        "parquet": lambda: write_parquet(tmp_path / "m.parquet", rows),
    }[writer]()
    r = check_log(p, preset="verl", assumption=Assumption(kl_max=1e-4))
    T, kseq, acc = _verl_expected()
    assert r.step.tolist() == [1, 2, 3, 4] and r.T.tolist() == T
    np.testing.assert_allclose(r.stats["kl_seq"].values, kseq, rtol=1e-12)
    np.testing.assert_allclose(r.acceptance, acc, rtol=1e-12)
    assert r.stats["kl_seq"].status == "estimate"
    assert r.stats["tv_lower_bound"].status == "lower_bound"
    assert r.stats["kl_max_proxy"].status == "proxy"
    ref = [bstar_direct(t, 1e-4) for t in T]
    np.testing.assert_allclose(r.bound, ref, rtol=1e-9)
    # lower bounds 1e-3, 2e-3, 5e-3, 2e-2 against sqrt(1e-4 / 2) = 7.071e-3: step 4 refuted
    want = ["vacuous" if b >= 1 else "non-vacuous" for b in ref[:3]] + ["refuted"]
    assert [STATES[i] for i in r.state] == want
    assert want[0] == "non-vacuous"
    # under the estimates: delta assumed, D_KL^seq estimated
    est = [bstar_direct(t, 1e-4, kseq=k) for t, k in zip(T, kseq)]
    np.testing.assert_allclose(r.bound_est, est, rtol=1e-9)
    assert r.summary()["acceptance"]["steps_below_target"] == 1  # 0.5 < 0.7


def test_verl_legacy_prefix(tmp_path):
    p = write_jsonl(tmp_path / "m.jsonl", metric_rows("verl-legacy"))
    r = check_log(p)
    assert r.preset == "verl" and r.columns["kl_tok_mean"] == "mismatch/mismatch_k3_kl"
    T, kseq, acc = _verl_expected()  # the same token-mean k3 and masked fractions
    np.testing.assert_allclose(r.stats["kl_seq"].values, kseq, rtol=1e-12)
    np.testing.assert_allclose(r.acceptance, acc, rtol=1e-12)
    assert r.stats["acceptance"].source == "1 − mismatch/rollout_is_seq_masked_fraction"


def test_no_assumption_is_unknown_and_uses_the_proxy(tmp_path):
    p = write_jsonl(tmp_path / "m.jsonl", metric_rows("verl"))
    r = check_log(p)
    assert r.preset == "verl"  # auto
    assert set(r.counts()) == set(STATES) and r.counts()["unknown"] == 4
    T, kseq, _ = _verl_expected()
    est = [bstar_direct(t, k2, kseq=k) for t, k2, k in zip(T, BASE["k2_max"], kseq)]
    np.testing.assert_allclose(r.unified, est, rtol=1e-9)
    assert r.basis == "estimate" and r.to_dict()["steps"][0]["basis"] == "estimate"


def test_trl_logp_diff_max_gives_the_k2_max(tmp_path):
    p = write_csv(tmp_path / "trl.csv", metric_rows("trl"))
    r = check_log(p, assumption=Assumption(kl_max=0.05))
    assert r.preset == "trl"
    # k2 = (log ratio)^2 / 2: 0.1 -> 0.005, 0.2 -> 0.02, 0.3 -> 0.045, 0.4 -> 0.08
    np.testing.assert_allclose(r.stats["kl_max_proxy"].values, [0.005, 0.02, 0.045, 0.08])
    assert r.stats["kl_max_proxy"].status == "proxy"
    assert "tv_lower_bound" not in r.stats  # a log-prob difference bounds nothing
    assert r.T.tolist() == [100, 200, 400, 800]


@pytest.mark.parametrize("preset,lencol", [("skyrl", "generate/max_response_length"),
                                            ("prime-rl", "seq_len/max")])  # fmt: skip
def test_presets_without_a_length_name_ask_for_it(tmp_path, preset, lencol):
    p = write_jsonl(tmp_path / "m.jsonl", metric_rows(preset))
    with pytest.raises(
        InputFileError, match=r"--length MAX_NEW_TOKENS.*--map T_max=COLUMN.*columns present"
    ):
        check_log(p, preset=preset)
    r = check_log(p, preset=preset, maps=[f"T_max={lencol}"], assumption=Assumption(kl_max=0.05))
    assert r.T.tolist() == [100, 200, 400, 800]
    assert P.guess_preset(r.columns.values()).name == preset


def test_slime_acceptance_and_prime_rl_proxy_status(tmp_path):
    rows = metric_rows("slime", extra={"len/mean": BASE["T_mean"]})
    r = check_log(write_jsonl(tmp_path / "s.jsonl", rows), preset="slime",
                  maps=["T_max=rollout/response_len/max", "T_mean=len/mean"])  # fmt: skip
    np.testing.assert_allclose(r.acceptance, [0.95, 0.9, 0.75, 0.5])
    # slime's train/mis_k3_kl is a mean of per-sequence means (sum_of_sample_mean): a proxy
    assert r.stats["kl_seq"].status == "proxy"
    rows = metric_rows("prime-rl", extra={"len/mean": BASE["T_mean"]})
    r = check_log(write_jsonl(tmp_path / "p.jsonl", rows), preset="prime-rl",
                  maps=["T_max=seq_len/max", "T_mean=len/mean"])  # fmt: skip
    # prime-rl's mismatch_kl/all/mean is the token mean of k3 (src/prime_rl/trainer/rl/loss.py)
    assert r.stats["kl_seq"].status == "estimate"
    assert r.stats["kl_max_proxy_k3"].status == "proxy"


def test_length_mean_and_value(tmp_path):
    p = write_jsonl(tmp_path / "m.jsonl", metric_rows("verl"))
    with pytest.raises(TrmboundsError, match="mean response length has no theorem"):
        check_log(p, length="mean")  # no bound at the mean length (docs/theory.md)
    r = check_log(p, length="999.5")
    assert r.T.tolist() == [1000] * 4  # ceil
    assert list(r.T_source) == ["assumed"] * 4
    r = check_log(p, length="250")  # shorter than the longest response at steps 3 and 4
    assert r.T.tolist() == [250, 250, 400, 800]
    assert list(r.T_source) == ["assumed", "assumed", "empirical", "empirical"]
    with pytest.raises(TrmboundsError, match="--length must be max or a number"):
        check_log(p, length="longest")


def test_surrogate_point_estimate_is_never_guaranteed(tmp_path):
    rows = [{"step": 1, "T": 2, "gain": 0.05}, {"step": 2, "T": 2, "gain": 0.03},
            {"step": 3, "T": 100, "gain": 5.0}]  # fmt: skip
    p = write_jsonl(tmp_path / "g.jsonl", rows, nested=False)
    r = check_log(p, preset="generic", maps=["surrogate=gain"], assumption=Assumption(tv_max=0.1))
    # B* = 0.04 at T = 2 and 37.8 at T = 100 (hand sums in test_unified_columns_...)
    np.testing.assert_allclose(r.bound, [0.04, 0.04, 37.8])
    # a logged batch mean is an estimate, T the longest response seen: no guarantee
    assert [STATES[i] for i in r.state] == ["estimated-gain", "non-vacuous", "vacuous"]
    assert any("surrogate_se" in n for n in r.notes)


def test_surrogate_with_standard_error_is_never_guaranteed(tmp_path):
    # L = 0.05, se = 0.005: one-sided 95 % normal bound 0.05 - 1.645 * 0.005 = 0.0418 > B* =
    # 0.04; se = 0.01: 0.0336 < 0.04. A normal approximation is not distribution-free
    # (rare events make it optimistic): estimated-gain at most, both steps.
    rows = [{"step": 1, "T": 2, "gain": 0.05, "se": 0.005},
            {"step": 2, "T": 2, "gain": 0.05, "se": 0.01}]  # fmt: skip
    p = write_jsonl(tmp_path / "g.jsonl", rows, nested=False)
    kw = dict(preset="generic", maps=["surrogate=gain", "surrogate_se=se"])
    r = check_log(p, length="2", assumption=Assumption(tv_max=0.1), **kw)
    assert [STATES[i] for i in r.state] == ["estimated-gain", "estimated-gain"]
    assert "normal approximation" in r.stats["surrogate_lcb"].source
    assert any("never 'guaranteed'" in n for n in r.notes)
    np.testing.assert_allclose(
        r.stats["surrogate_lcb"].values, [0.05 - 1.6448536 * 0.005, 0.05 - 1.6448536 * 0.01]
    )
    # the same log without --length: T is the longest response seen, not the cap
    r = check_log(p, assumption=Assumption(tv_max=0.1), **kw)
    assert [STATES[i] for i in r.state] == ["estimated-gain", "estimated-gain"]
    assert r.basis == "empirical-horizon"
    assert any("--length MAX_NEW_TOKENS" in n for n in r.notes)


def test_nan_values_are_reported_not_used(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text(
        '{"step": 1, "data": {"response_length/max": 100, "rollout_corr/k3_kl": NaN, '
        '"response_length/mean": 50}}\n'
        '{"step": 2, "data": {"response_length/max": Infinity, "rollout_corr/k3_kl": 1e-5, '
        '"response_length/mean": 50}}\n'
        '{"step": 3, "data": {"response_length/max": 100, "rollout_corr/k3_kl": -1e-5, '
        '"response_length/mean": 50}}\n'
    )
    r = check_log(p, assumption=Assumption(kl_max=1e-4))
    assert r.invalid["rollout_corr/k3_kl"] == [1, 1]  # NaN at step 1
    assert r.invalid["response_length/max"] == [1, 2]
    assert np.isnan(r.stats["kl_seq"].values[0])
    assert r.stats["kl_seq"].values[1] == pytest.approx(5e-4)
    # a negative token-mean KL estimate is kept as logged (k1 can be negative; float
    # round-off makes k3 means slightly negative near zero mismatch), and noted
    assert r.stats["kl_seq"].values[2] == pytest.approx(-5e-4)
    assert any("negative token-mean KL" in n for n in r.notes)
    assert STATES[r.state[1]] == "unknown" and np.isnan(r.T[1])
    assert r.summary()["invalid_values"]["rollout_corr/k3_kl"] == {"count": 1, "first_step": 1}


def test_rows_without_step_are_bad_records(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text('{"step": 1, "T": 10, "k2_max": 0.1}\n{"T": 10, "k2_max": 0.1}\n')
    with pytest.raises(InputFileError, match=r"m\.jsonl: line 2: no valid step value"):
        check_log(p, preset="generic")
    r = check_log(p, preset="generic", skip_bad=True)
    assert len(r) == 1 and r.bad.count == 1


def test_missing_columns_name_what_was_tried(tmp_path):
    p = write_jsonl(tmp_path / "m.jsonl", [{"step": 1, "foo": 1.0}])
    with pytest.raises(
        InputFileError,
        match=r"no response-length column .*preset generic.*columns present: foo, step",
    ):
        check_log(p)
    with pytest.raises(
        InputFileError,
        match=r"column 'bar' \(--map T_max=bar\) not found; columns present: foo, step",
    ):
        check_log(p, maps=["T_max=bar"])
    with pytest.raises(InputFileError, match=r"no mismatch metric found \(tried preset generic"):
        check_log(p, maps=["T_max=foo"])
    with pytest.raises(TrmboundsError, match="unknown preset"):
        check_log(p, preset="nonesuch")


def test_statistics_file_from_measure(tmp_path):
    import json

    p = tmp_path / "measured.json"
    p.write_text(json.dumps({
        "T": 100, "kl_max": 2e-4, "tv_max": 8e-3, "kl_seq": 5e-3, "tv_seq": 0.02,
        "status": {"kl_max": "empirical", "tv_max": "empirical", "kl_seq": "estimate",
                   "tv_seq": "estimate"},
    }))  # fmt: skip
    r = check_log(p)
    assert r.kind == "stats" and STATES[r.state[0]] == "unknown"
    assert r.stats["kl_lower_bound"].values[0] == 2e-4
    assert r.bound_est[0] == pytest.approx(bstar_direct(100, 2e-4, 8e-3, 5e-3, 0.02))
    # An assumed delta below the measured exact maximum 2e-4 is refuted.
    r = check_log(p, assumption=Assumption(kl_max=1e-4))
    assert STATES[r.state[0]] == "refuted"
    assert r.bound[0] == pytest.approx(bstar_direct(100, 1e-4))
    assert r.bound_est[0] == pytest.approx(bstar_direct(100, 1e-4, kseq=5e-3, tseq=0.02))
    r = check_log(p, assumption=Assumption(kl_max=1e-3))
    assert STATES[r.state[0]] == ("vacuous" if bstar_direct(100, 1e-3) >= 1 else "non-vacuous")


def test_verl_k1_kl_is_a_fallback_for_k3(tmp_path):
    # verl logs rollout_corr/kl, the token mean of k1 = -log rho (unbiased for the
    # token-mean KL too); without k3_kl it estimates D_KL^seq = 2e-6 * 300 = 6e-4.
    import json

    from typer.testing import CliRunner

    from trmbounds.cli import app

    f = tmp_path / "m.jsonl"
    f.write_text(
        '{"step": 1, "data": {"response_length/max": 512, "response_length/mean": 300.0, '
        '"rollout_corr/kl": 2e-06}}\n'
    )
    r = CliRunner().invoke(app, ["check", str(f), "--kl-max", "1e-5", "--json"])
    assert r.exit_code == 0, r.output
    step = json.loads(r.stdout)["steps"][0]
    assert step["stats"]["kl_seq"]["value"] == pytest.approx(6e-4)


@pytest.mark.parametrize("stat, value, assumed", [("kl_max", 0.01, 0.005), ("tv_max", 0.05, 0.01)])
def test_certified_maximum_never_refutes(tmp_path, stat, value, assumed):
    # A certified maximum holds over ALL reachable contexts: an upper bound on the true
    # maximum. Larger than the assumption it is a weaker certificate, not a refutation.
    p = tmp_path / "cert.json"
    p.write_text(json.dumps({"T": 100, stat: value, "status": {stat: "certified"}}))
    r = check_log(p, assumption=Assumption(**{stat: assumed}))
    assert STATES[int(r.state[0])] != "refuted"
    assert "kl_lower_bound" not in r.stats and "tv_lower_bound" not in r.stats
    assert any("weaker certificate" in n for n in r.notes)
    # The same value labelled empirical (a max over measured contexts) does refute.
    p.write_text(json.dumps({"T": 100, stat: value, "status": {stat: "empirical"}}))
    assert STATES[int(check_log(p, assumption=Assumption(**{stat: assumed})).state[0])] == (
        "refuted"
    )
    # Without an assumption the certified value is the assumption (sound: it holds).
    p.write_text(json.dumps({"T": 100, stat: value, "status": {stat: "certified"}}))
    r = check_log(p)
    assert getattr(r.assumption, stat) == value and STATES[int(r.state[0])] != "refuted"


def test_cached_length_grid_is_never_corrupted_by_a_missing_mass():
    # the T-only bounds are cached on a grid of lengths across calls (blocks of a log);
    # a missing-mass correction in one call must not leak into the next
    from trmbounds.stats import bound_columns

    rng = np.random.default_rng(1)
    T = rng.integers(1, 3000, 500).astype(float)
    for mm in (None, 0.01, None, 0.02, None):
        fast = bound_columns(T, 1e-4, None, missing_mass=mm, full=False)[0]["unified"]
        one = [float(bound_columns(t, 1e-4, None, missing_mass=mm)[0]["unified"]) for t in T[:50]]
        np.testing.assert_allclose(fast[:50], one, rtol=1e-12)


def _interval_stats_file(tmp_path):
    # laid out as trmbounds measure --rollouts writes it (measure/aggregation.py)
    p = tmp_path / "iv.json"
    p.write_text(json.dumps({
        "T": 6, "kl_max": 1.256, "tv_max": 0.7925, "kl_seq": 2.0, "tv_seq": 0.9,
        "status": {"kl_max": "empirical", "tv_max": "empirical", "kl_seq": "estimate",
                   "tv_seq": "estimate"},
        "meta": {"interval_ends": {"kl_max": "upper: max of kl_hi", "tv_max": "upper"},
                 "intervals": {"kl_max_lower": 0.13, "tv_max_lower": 0.144}},
    }))  # fmt: skip
    return p


def test_statistics_file_notes_do_not_speak_of_logged_proxies(tmp_path):
    # A statistics file from `measure` holds full-vocabulary values or certified interval
    # ends: no note may call them logged proxies or maxima over sampled tokens, nor call a
    # maximum of upper ends an underestimate at the measured contexts.
    plain = tmp_path / "s.json"
    plain.write_text(json.dumps({
        "T": 100, "kl_max": 2e-4, "tv_max": 8e-3,
        "status": {"kl_max": "empirical", "tv_max": "empirical"},
    }))  # fmt: skip
    for p in (plain, _interval_stats_file(tmp_path)):
        notes = " ".join(check_log(p).notes)
        assert "logged proxies" not in notes and "sampled tokens only" not in notes, notes
        assert "underestimat" not in notes, notes
        assert "nothing is guaranteed" in notes and "ALL reachable contexts" in notes
        assert ("may fall below the max over all reachable contexts" in notes
                or "contexts never measured may exceed them" in notes), notes  # fmt: skip
    # a framework's metric log keeps them: its values are logged proxies over sampled tokens
    f = tmp_path / "m.jsonl"
    f.write_text(
        '{"step": 1, "data": {"response_length/max": 512, "response_length/mean": 300.0, '
        '"rollout_corr/kl": 2e-06}}\n'
    )
    notes = " ".join(check_log(f).notes)
    assert "'unified' is an ESTIMATE from logged proxies" in notes
    assert "a logged maximum is over sampled tokens only" in notes
