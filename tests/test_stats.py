"""Statistics: validation, conservative filling, evaluation results, files."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from trmbounds import InputFileError, Stats, StatsError, evaluate, load_per_position, load_stats


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(T=0, kl_max=0.1), "T must be a positive integer"),
        (dict(T=-5, kl_max=0.1), "T must be a positive integer"),
        (dict(T=2.5, kl_max=0.1), "T must be a positive integer"),
        (dict(T="10", kl_max=0.1), "T must be a positive integer"),
        (dict(T=True, kl_max=0.1), "T must be a positive integer"),
        (dict(T=10, kl_max=-0.1), "kl_max must be non-negative"),
        (dict(T=10, kl_max=float("nan")), "kl_max must be finite"),
        (dict(T=10, tv_max=float("inf")), "tv_max must be finite"),
        (dict(T=10, tv_max=1.5), "tv_max = 1.5 exceeds 1"),
        (dict(T=10, kl_max=1e-4, tv_max=0.01), "contradicts Pinsker"),
        (dict(T=10, kl_max=1e-4, kl_seq=0.01), "kl_seq = 0.01 exceeds T\\*kl_max"),
        (dict(T=10, kl_max=0.1, tv_seq=1.2), "tv_seq = 1.2 exceeds 1"),
        (dict(T=10, kl_max=0.1, kl_seq=0.02, tv_seq=0.2), "exceeds sqrt\\(kl_seq/2\\)"),
        (dict(T=3, kl_max=0.1, per_position=[0.1] * 4), "length 4, more than T = 3"),
        (dict(T=2, kl_max=0.1, per_position=[[0.1, 0.1]]), "one-dimensional"),
        (dict(T=2, kl_max=0.1, per_position=[0.1, float("nan")]), "per_position\\[t=2\\]"),
        (dict(T=2, kl_max=0.1, per_position=[0.1, -0.1]), "negative"),
        (dict(T=2, kl_max=0.02, per_position=[0.1, 0.5]), "cannot exceed its maximum"),
        (dict(T=10, kl_max=0.1, adv_range=-1), "adv_range must be positive"),
        (dict(T=10, kl_max=0.1, adv_range=0), "adv_range must be positive"),
        (dict(T=10, kl_max=0.1, reward_range=(1, 0)), "hi = 0 must exceed lo = 1"),
        (dict(T=10, kl_max=0.1, reward_range=(1, 1)), "hi = 1 must exceed lo = 1"),
        (dict(T=10, kl_max="0.01"), "kl_max must be a number, got '0.01'"),
        (dict(T=10, kl_max=0.1, reward_range="01"), "reward_range must be two numbers"),
        (dict(T=10), "need kl_max or tv_max"),
        (dict(T=10, kl_max=0.1, status={"kl_max": "guess"}), "status of kl_max must be one of"),
    ],
)
def test_validation_names_the_problem(kwargs, message):
    with pytest.raises(StatsError, match=message):
        Stats(**kwargs)


def test_pinsker_boundary_is_allowed():
    # eps exactly sqrt(delta/2), as in the paper's column A, is consistent.
    s = Stats(T=4096, kl_max=1e-4, tv_max=math.sqrt(1e-4 / 2))
    assert s.tv_max == math.sqrt(5e-5)


def test_contradiction_between_estimates_is_a_warning():
    s = Stats(T=10, kl_max=0.1, kl_seq=0.02, tv_seq=0.2, status={"tv_seq": "estimate"})
    assert len(s.warnings) == 1 and "sqrt(kl_seq/2)" in s.warnings[0]
    r = evaluate(s)
    assert any(n.startswith("inconsistent:") for n in r.notes)
    assert r.basis == "estimate"


def test_derived_inputs_are_recorded_and_conservative():
    r = evaluate(Stats(T=8192, kl_max=0.01))
    d = r.derived
    assert set(d) == {"tv_max", "kl_seq", "tv_seq", "per_position"}
    assert d["tv_max"].value == pytest.approx(math.sqrt(0.005))  # Pinsker
    assert d["kl_seq"].value == pytest.approx(81.92)  # T * delta
    assert d["tv_seq"].value == 1.0  # min(1, sqrt(81.92/2), T eps)
    assert d["per_position"].value == pytest.approx(math.sqrt(0.005))
    assert r.basis == "assumed"


def test_tv_only_leaves_kl_bounds_null():
    r = evaluate(Stats(T=100, tv_max=0.001))
    for k in ("classical_kl", "pm_kl", "pm_tv", "mix_kl", "adaptive_kl"):
        assert r.bounds[k] is None
    # Without delta: D_TV^seq <= min(1, T eps) = 0.1; Mixed TV = 4 * 100 * 0.001 * 0.1.
    assert r.bounds["mix_tv"] == pytest.approx(0.04)
    # Coupling with T eps = 0.1 <= 1: 2 T (T-1) eps^2 = 0.0198; it is the minimum here.
    assert r.bounds["coupling"] == pytest.approx(0.0198)
    assert r.tightest == "coupling" and r.unified == pytest.approx(0.0198)


def test_missing_mass_adds_to_pdi_bounds_and_drops_adaptive():
    base = evaluate(Stats(T=100, kl_max=1e-4))
    r = evaluate(Stats(T=100, kl_max=1e-4, missing_mass=0.01, adv_range=2.0))
    for k in ("pm_kl", "mix_kl", "coupling", "classical_tv"):
        assert r.bounds[k] == pytest.approx(2.0 * base.bounds[k] + 2.0 * 0.01)
    assert r.bounds["adaptive"] is None and r.bounds["adaptive_kl"] is None
    assert any("full support" in n for n in r.notes)


def test_vacuous_flag_uses_the_advantage_range():
    s = Stats(T=4096, kl_max=1e-4, tv_max=5e-3, kl_seq=0.01, tv_seq=0.05)
    assert evaluate(s).vacuous  # 4.096 >= 1
    # The bound scales with a, so vacuity does not depend on a: 4.096 a >= a.
    r = evaluate(s.replace(adv_range=10.0))
    assert r.vacuous and r.unified == pytest.approx(40.96)
    # Below the threshold: T = 64 gives Mixed TV = 4 * 64 * 5e-3 * 0.05 = 0.064 < 1.
    assert not evaluate(Stats(T=64, kl_max=1e-4, tv_max=5e-3, tv_seq=0.05)).vacuous


def test_result_to_dict_schema():
    r = evaluate(Stats(T=4096, kl_max=1e-4, tv_max=5e-3, kl_seq=0.01, tv_seq=0.05))
    d = r.to_dict()
    assert set(d) == {
        "inputs",
        "derived",
        "constants",
        "bounds",
        "tightest",
        "unified",
        "vacuous",
        "basis",
    }
    assert d["basis"] == "assumed" and d["unified"] == d["bounds"]["unified"]
    assert set(d["bounds"]) == {
        "classical_tv",
        "classical_kl",
        "linear",
        "pm_kl",
        "pm_tv",
        "mix_kl",
        "mix_tv",
        "coupling",
        "adaptive_kl",
        "adaptive_tv",
        "adaptive",
        "unified",
    }
    assert d["tightest"] == "mix_tv" and d["vacuous"] is True
    json.dumps(d)


def test_stats_file_round_trip(tmp_path):
    dbar = np.linspace(0.0, 0.004, 50)
    s = Stats(
        T=50,
        kl_max=1e-4,
        tv_max=5e-3,
        per_position=dbar,
        status={"kl_max": "empirical"},
        meta={"source": "test"},
    )
    p = tmp_path / "s.json"
    p.write_text(json.dumps(s.to_dict()))
    back = load_stats(p)
    assert back.T == 50 and back.kl_max == 1e-4 and back.status["kl_max"] == "empirical"
    np.testing.assert_array_equal(back.per_position, dbar)
    assert evaluate(back).bounds == evaluate(s).bounds


def test_stats_file_errors(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('{"T": 10, "kl_max": 0.1, "klmax": 3}')
    with pytest.raises(StatsError, match="unknown key\\(s\\) klmax"):
        load_stats(p)
    p.write_text('{"T": 10,\n "kl_max": }')
    with pytest.raises(InputFileError, match="invalid JSON at line 2"):
        load_stats(p)
    p.write_text('{"kl_max": 0.1}')
    with pytest.raises(StatsError, match="need 'T'"):
        load_stats(p)
    with pytest.raises(InputFileError, match="not found"):
        load_stats(tmp_path / "nope.json")


def test_per_position_readers(tmp_path):
    want = np.array([0.0, 0.001, 0.002])
    np.save(tmp_path / "a.npy", want)
    (tmp_path / "a.csv").write_text("dbar\n0\n0.001\n0.002\n")
    (tmp_path / "b.csv").write_text("0, 0.001, 0.002\n")
    (tmp_path / "a.json").write_text("[0, 0.001, 0.002]")
    (tmp_path / "b.json").write_text('{"per_position": [0, 0.001, 0.002]}')
    for name in ("a.npy", "a.csv", "b.csv", "a.json", "b.json"):
        np.testing.assert_array_equal(load_per_position(tmp_path / name), want)


def test_per_position_reader_errors(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputFileError, match="not a numeric .npy"):
        load_per_position(tmp_path / "obj.npy")  # never unpickled
    (tmp_path / "bad.csv").write_text("0.1\n0.2\nabc\n")
    with pytest.raises(InputFileError, match="line 3: 'abc' is not a number"):
        load_per_position(tmp_path / "bad.csv")
    (tmp_path / "x.parquet").write_text("")
    with pytest.raises(InputFileError, match="unknown per-position format"):
        load_per_position(tmp_path / "x.parquet")


def test_empirical_maxima_note_does_not_call_the_value_an_underestimate():
    # An empirical maximum is a max over measured contexts: of exact values, or (measure
    # --rollouts, read back without its meta) of certified upper ends, which can lie above
    # the exact values there. "Underestimates the true max" is false in the second case;
    # what holds in both: contexts never measured can exceed it.
    r = evaluate(Stats(T=10, kl_max=1e-3, tv_max=0.02, status={"kl_max": "empirical"}))
    emp = [n for n in r.notes if n.startswith("empirical:")]
    assert len(emp) == 1, r.notes
    assert "underestimat" not in emp[0]
    assert "may fall below the max over all reachable contexts" in emp[0]
    assert "never measured can exceed" in emp[0]
