"""Per-token dumps: estimators against hand arithmetic and exact enumeration (SPEC §6)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from logfixtures import tabular_dump, write_token_dump

from trmbounds.errors import InputFileError
from trmbounds.logs.check import STATES, Assumption, check_log

L = math.log
# Two sequences. A: p_roll = (0.5, 0.25), p_theta = (0.4, 0.5) -> rho = (0.8, 2.0).
# B: one token, p_roll = p_theta = 0.5 -> rho = 1.
ROLL = [[L(0.5), L(0.25)], [L(0.5)]]
THETA = [[L(0.4), L(0.5)], [L(0.5)]]
# k3 = rho - 1 - log rho: A: (0.8 - 1 - log 0.8) + (2 - 1 - log 2) = 0.0231436 + 0.3068528
K3_A = (0.8 - 1 - L(0.8)) + (2 - 1 - L(2))


@pytest.mark.parametrize("ext", ["jsonl", "parquet"])
def test_hand_computed_dump(tmp_path, ext):
    p = write_token_dump(tmp_path / f"t.{ext}", ROLL, THETA)
    r = check_log(p, assumption=Assumption(kl_max=0.1))
    rec = r.to_dict()["steps"][0]
    s = rec["stats"]
    assert rec["T"] == 2 and r.kind == "tokens"
    assert s["kl_seq"]["value"] == pytest.approx(K3_A / 2)  # (K3_A + 0) / 2 sequences
    # D_TV^seq = E[(1 - prod rho)^+]: A: (1 - 0.8 * 2)^+ = 0, B: (1 - 1)^+ = 0 -> 0
    assert s["tv_seq"]["value"] == pytest.approx(0.0)
    # D̄_t = E[(1 - rho_t)^+]: D̄_1 = ((1 - 0.8) + 0) / 2 = 0.1; D̄_2 = ((1 - 2)^+ + 0 [B
    # ended]) / 2 = 0
    assert s["per_position"]["value"] == pytest.approx([0.1, 0.0])
    assert s["per_position_sum"]["value"] == pytest.approx(0.1)
    # max |p_theta - p_roll| = max(|0.4 - 0.5|, |0.5 - 0.25|, 0) = 0.25: a lower bound on eps
    assert s["tv_lower_bound"] == {
        "value": pytest.approx(0.25),
        "status": "lower_bound",
        "source": "max |p_theta(y) - p_roll(y)| over sampled tokens",
    }
    # max k2 = (log 2)^2 / 2 = 0.2402265
    assert s["kl_max_proxy"]["value"] == pytest.approx(0.5 * L(2) ** 2)
    assert s["kl_max_proxy"]["status"] == "proxy"
    # TRM-Max 0.05: A rejected (0.240 > 0.05), B kept; TRM-Avg 0.001: A (mean k3 0.165)
    # rejected; SER 0.05: A (mean |rho - 1| = 0.6) rejected -> all 1/2
    for c in ("accept_trm_max", "accept_trm_avg", "accept_combined", "accept_ser"):
        assert s[c]["value"] == 0.5
    # delta = 0.1 implies eps <= sqrt(0.05) = 0.2236 < 0.25: refuted
    assert rec["status"] == "refuted"
    assert check_log(p, assumption=Assumption(kl_max=0.2)).to_dict()["steps"][0]["status"] in (
        "non-vacuous",
        "vacuous",
    )  # sqrt(0.1) = 0.316 > 0.25: not refuted


def test_ln_trm_by_hand(tmp_path):
    p = write_token_dump(tmp_path / "t.parquet", ROLL, THETA)

    # eps = 0.5 only: w_t = min(1, (T - t) 0.5): A: w = (0.5, 0); W = 0.2 * 0.5 = 0.1,
    # Z = 0.5, W/Z = 0.2. B: Z = 0, kept.
    def acc(thr):
        r = check_log(p, assumption=Assumption(tv_max=0.5), ln_trm=thr)
        return r.stats["accept_ln_trm"].values[0]

    assert acc(0.25) == 1.0 and acc(0.15) == 0.5
    with pytest.raises(Exception, match="--ln-trm needs --kl-max or --tv-max"):
        check_log(p, ln_trm=0.1)


def test_loss_mask_drops_prompt_tokens(tmp_path):
    roll = [[L(0.9), *ROLL[0]], [L(0.1), L(0.3), *ROLL[1]]]
    theta = [[L(0.2), *THETA[0]], [L(0.7), L(0.6), *THETA[1]]]
    mask = [[0, 1, 1], [0, 0, 1]]
    p = write_token_dump(tmp_path / "t.jsonl", roll, theta, mask=mask)
    a = check_log(p).to_dict()["steps"][0]["stats"]
    b = check_log(write_token_dump(tmp_path / "u.jsonl", ROLL, THETA)).to_dict()["steps"][0][
        "stats"
    ]
    for k in ("kl_seq", "tv_seq", "per_position", "tv_lower_bound", "kl_max_proxy"):
        assert a[k]["value"] == pytest.approx(b[k]["value"])


def test_steps_are_grouped(tmp_path):
    p = write_token_dump(tmp_path / "t.parquet", ROLL * 2, THETA * 2, steps=[7, 7, 9, 9])
    r = check_log(p)
    assert r.step.tolist() == [7, 9]
    np.testing.assert_allclose(r.stats["kl_seq"].values, [K3_A / 2] * 2)


def test_length_bins_and_iid_prediction(tmp_path):
    p = write_token_dump(tmp_path / "t.parquet", ROLL, THETA)
    r = check_log(p)
    bins = r.summary()["length_bins"]
    # tokens with k2 > 0.05: only A's second (k2 = 0.240; A's first: (log .8)^2/2 = 0.0249)
    # -> p = 1/3; bin [1,1]: B, kept, (1 - 1/3)^1; bin [2,3]: A, rejected, (2/3)^2
    assert r.summary()["per_token_violation_rate"] == pytest.approx(1 / 3)
    assert [(b["lengths"], b["sequences"], b["accept_trm_max"]) for b in bins] == [
        ([1, 1], 1, 1.0),
        ([2, 3], 1, 0.0),
    ]
    assert [b["predicted_iid"] for b in bins] == pytest.approx([2 / 3, 4 / 9])


def test_tabular_estimates_cover_the_exact_values(tmp_path):
    """95 % intervals of 20 seeded dumps cover the exact statistics most of the time."""
    hits = {"kl_seq": 0, "tv_seq": 0, "per_position": 0.0}
    n_seeds = 20
    for seed in range(n_seeds):
        path = tmp_path / f"d{seed}.parquet"
        ex, _, _ = tabular_dump(path, seed, n=3000, scale=0.3)
        r = check_log(path, assumption=Assumption(kl_max=ex.kl_max, tv_max=ex.tv_max))
        st = r.stats
        for k in ("kl_seq", "tv_seq"):
            lo, hi = st[k].ci[0][0], st[k].ci[1][0]
            hits[k] += lo <= getattr(ex, k) <= hi
        lo, hi = st["per_position"].ci[0][0], st["per_position"].ci[1][0]
        hits["per_position"] += np.mean((lo <= ex.per_position) & (ex.per_position <= hi))
        # Certified, every time: the sampled-token bound never exceeds the true eps,
        # so the exact assumption is never "refuted".
        assert st["tv_lower_bound"].values[0] <= ex.tv_max * (1 + 1e-12)
        assert STATES[r.state[0]] != "refuted"
    # Nominal 95 %; P(<= 14 of 20 | p = 0.9) < 0.012, seeds are fixed anyway.
    assert hits["kl_seq"] >= 15 and hits["tv_seq"] >= 15
    assert hits["per_position"] / n_seeds >= 0.8


def test_exact_per_token_columns(tmp_path):
    path = tmp_path / "x.parquet"
    ex, _, _ = tabular_dump(path, 11, n=3000, scale=0.3, exact=True)
    r = check_log(path)
    st = r.stats
    # exact per-context values: lower bounds, certified
    assert st["kl_lower_bound"].status == "lower_bound"
    assert st["kl_lower_bound"].values[0] <= ex.kl_max * (1 + 1e-12)
    assert st["tv_lower_bound"].values[0] <= ex.tv_max * (1 + 1e-12)
    lo, hi = st["kl_seq"].ci[0][0], st["kl_seq"].ci[1][0]
    assert lo <= ex.kl_seq <= hi
    assert "exact KL" in st["kl_seq"].source and "exact TV" in st["per_position"].source
    # Assuming a delta below an exact KL met in the dump is refuted.
    r2 = check_log(path, assumption=Assumption(kl_max=0.5 * st["kl_lower_bound"].values[0]))
    assert STATES[r2.state[0]] == "refuted"


def test_bad_token_records(tmp_path):
    p = write_token_dump(tmp_path / "t.jsonl", [ROLL[0], [L(0.5), L(0.5)]], [THETA[0], [L(0.5)]])
    with pytest.raises(
        InputFileError,
        match=r"t\.jsonl: line 2: trainer_logprobs has 1 values, inference_logprobs has 2",
    ):
        check_log(p)
    r = check_log(p, skip_bad=True)
    assert r.bad.count == 1 and r.extra["sequences"] == 1
    p = write_token_dump(tmp_path / "n.parquet", [ROLL[0], [float("nan")]], [THETA[0], [L(0.5)]])
    with pytest.raises(
        InputFileError, match=r"n\.parquet: row 2: column 'inference_logprobs': token 0 is nan"
    ):
        check_log(p)
    p = write_token_dump(tmp_path / "q.parquet", [[0.5]], [[L(0.5)]])
    with pytest.raises(InputFileError, match=r"row 1: .*token 0 is 0\.5, not a log-probability"):
        check_log(p)


def test_missing_logprob_column(tmp_path):
    p = write_token_dump(tmp_path / "t.parquet", ROLL, THETA, names=("inference_logprobs", "lp"))
    with pytest.raises(
        InputFileError,
        match=r"without a logp_theta column \(tried trainer_logprobs.*columns present: .*lp",
    ):
        check_log(p)
    r = check_log(p, maps=["logp_theta=lp"])
    assert r.stats["kl_seq"].values[0] == pytest.approx(K3_A / 2)


def test_token_options_rejected_for_metric_logs(tmp_path):
    from logfixtures import metric_rows, write_jsonl

    p = write_jsonl(tmp_path / "m.jsonl", metric_rows("verl"))
    with pytest.raises(Exception, match="appl(y|ies) to per-token dumps only"):
        check_log(p, trm_max=0.1)


def test_k2_max_from_a_negative_log_ratio(tmp_path):
    # rho = 0.2 / 0.8 = 0.25: k2 = (log 4)^2 / 2 = 0.96091; |p - q| = 0.6
    p = write_token_dump(tmp_path / "t.parquet", [[L(0.5), L(0.8)]], [[L(0.55), L(0.2)]])
    st = check_log(p).stats
    assert st["kl_max_proxy"].values[0] == pytest.approx(0.5 * L(4) ** 2)
    assert st["tv_lower_bound"].values[0] == pytest.approx(0.6)


def _lines(path, *recs):
    import json

    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


def test_extreme_log_ratio_does_not_hide_a_refutation(tmp_path):
    import warnings

    p = _lines(
        tmp_path / "ovf.jsonl",
        {"step": 1, "inference_logprobs": [-2.0], "trainer_logprobs": [-0.1]},
        {"step": 1, "inference_logprobs": [-800.0], "trainer_logprobs": [0.0]},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow RuntimeWarning either
        r = check_log(p, assumption=Assumption(kl_max=0.01))
    rec = r.to_dict()["steps"][0]
    # |p_theta - p_roll|: record 1 e^-0.1 - e^-2 = 0.904837 - 0.135335 = 0.769502;
    # record 2 e^0 - e^-800 = 1 (e^-800 underflows). Both exceed sqrt(0.01/2) = 0.0707.
    assert rec["stats"]["tv_lower_bound"]["value"] == pytest.approx(1.0)
    assert rec["status"] == "refuted"
    # k3 of record 2 = e^800 - 1 - 800: beyond float64, reported as infinite, not dropped
    assert rec["stats"]["kl_seq"]["infinite"] is True
    assert rec["stats"]["kl_max_proxy_k3"]["infinite"] is True
    # max k2 = 800^2 / 2 stays finite
    assert rec["stats"]["kl_max_proxy"]["value"] == pytest.approx(320000.0)
    # (1 - rho)^+ cannot overflow: record 1 (1 - e^1.9)^+ = 0, record 2 (1 - e^800)^+ = 0
    assert rec["stats"]["tv_seq"]["value"] == 0.0
    assert rec["stats"]["per_position"]["value"] == [0.0]
    assert any("overflow" in n for n in r.notes)
    # The first record alone: 0.769502 > 0.0707 -> refuted too
    q = _lines(tmp_path / "one.jsonl", {"inference_logprobs": [-2.0], "trainer_logprobs": [-0.1]})
    v = check_log(q, assumption=Assumption(kl_max=0.01)).stats["tv_lower_bound"].values[0]
    assert v == pytest.approx(math.exp(-0.1) - math.exp(-2.0))


def test_optional_columns_found_after_the_first_record(tmp_path):
    # The first record has no loss_mask; the second masks its 2nd token (which alone
    # would refute: |e^-0.01 - e^-3| = 0.94). Kept tokens: |e^-0.4 - e^-0.5| =
    # 0.670320 - 0.606531 = 0.063789 < sqrt(0.01/2) = 0.0707: not refuted.
    p = _lines(
        tmp_path / "m.jsonl",
        {"step": 1, "inference_logprobs": [-0.5, -0.3], "trainer_logprobs": [-0.4, -0.3]},
        {"step": 1, "inference_logprobs": [-0.5, -3.0], "trainer_logprobs": [-0.4, -0.01],
         "loss_mask": [1, 0]},
    )  # fmt: skip
    r = check_log(p, assumption=Assumption(kl_max=0.01))
    assert r.stats["tv_lower_bound"].values[0] == pytest.approx(0.063789, abs=1e-6)
    assert STATES[r.state[0]] != "refuted" and r.columns["loss_mask"] == "loss_mask"
    # A step column missing from the first record: that record is bad (not step 0)
    p = _lines(
        tmp_path / "s.jsonl",
        {"inference_logprobs": [-0.5], "trainer_logprobs": [-0.4]},
        {"step": 1, "inference_logprobs": [-0.5], "trainer_logprobs": [-0.4]},
        {"step": 2, "inference_logprobs": [-0.5], "trainer_logprobs": [-0.4]},
    )
    with pytest.raises(InputFileError, match=r"s\.jsonl: line 1: no valid step value"):
        check_log(p)
    r = check_log(p, skip_bad=True)
    assert r.step.tolist() == [1, 2] and r.bad.count == 1
    # An exact kl_token column missing from one record: a bad record, named
    p = _lines(
        tmp_path / "k.jsonl",
        {"inference_logprobs": [-0.5], "trainer_logprobs": [-0.4]},
        {"inference_logprobs": [-0.5], "trainer_logprobs": [-0.4], "kl_token": [0.01]},
    )
    with pytest.raises(InputFileError, match=r"k\.jsonl: line 1: no 'kl_token' values"):
        check_log(p)
    r = check_log(p, skip_bad=True)
    assert r.bad.count == 1 and r.stats["kl_lower_bound"].values[0] == pytest.approx(0.01)


def test_bad_loss_mask_values_are_bad_records(tmp_path):
    for i, (mask, shown) in enumerate(
        [([0.5, float("nan")], "0.5"), ([2, -1], "2.0"), ([1, 2**60 + 1], "1.15")]
    ):
        rec = {"step": 1, "inference_logprobs": [-0.5, -1.0], "trainer_logprobs": [-0.4, -1.1]}
        p = _lines(tmp_path / f"m{i}.jsonl", rec, {**rec, "loss_mask": mask})
        with pytest.raises(
            InputFileError, match=rf"line 2: column 'loss_mask': token \d is {shown}"
        ):
            check_log(p)
        r = check_log(p, skip_bad=True)
        assert r.bad.count == 1 and r.extra["sequences"] == 1


def test_acceptance_has_wilson_intervals(tmp_path):
    # Wilson by hand, z = 1.959964, z^2 = 3.841459:
    # 20/20: den = 1 + z^2/20 = 1.192073; centre = (1 + z^2/40)/den = 1.096036/1.192073 =
    #   0.919437; half = z sqrt(z^2/1600)/den = 1.959964 * 0.048999 / 1.192073 = 0.080563
    #   -> [0.838874, 1]. (The normal interval had zero width here.)
    # 17/20: centre = (0.85 + 0.096036)/1.192073 = 0.793606; half = z sqrt(0.1275/20 +
    #   0.0024009)/den = 1.959964 * 0.093680 / 1.192073 = 0.154025 -> [0.639581, 0.947631]
    good = [[L(0.5)]] * 17
    # 17 identical-policy sequences (kept) and 3 with rho = 0.2/0.9: k2 = (log 0.2222)^2/2
    # = 1.131 > 0.05 (rejected by TRM-Max)
    roll = good + [[L(0.9)]] * 3
    theta = good + [[L(0.2)]] * 3
    r = check_log(write_token_dump(tmp_path / "a.parquet", roll, theta))
    s = r.to_dict()["steps"][0]["stats"]["accept_trm_max"]
    assert s["value"] == pytest.approx(0.85)
    assert s["ci95"] == pytest.approx([0.639581, 0.947631], abs=2e-6)
    r = check_log(write_token_dump(tmp_path / "b.parquet", good + good[:3], good + good[:3]))
    s = r.to_dict()["steps"][0]["stats"]["accept_combined"]
    assert s["value"] == 1.0 and s["ci95"] == pytest.approx([0.838874, 1.0], abs=2e-6)


def test_huge_length_does_not_materialise_padding(tmp_path):
    from trmbounds import bounds as B
    from trmbounds.logs.check import unified_columns

    p = write_token_dump(tmp_path / "t.parquet", ROLL, THETA)
    # D̄ = (0.05, 0.25) (test_hand_computed_dump). Adaptive hybrid at T = 10, delta = 0.1,
    # eps = sqrt(0.05) = 0.223607, a = 1, lead 4: w_1 = min(1, 9 eps, sqrt(9 * 0.05)) =
    # min(1, 2.0125, 0.670820) = 0.670820, w_2 = min(1, 8 eps, sqrt(0.4)) = 0.632456;
    # B = 4 (0.05 * 0.670820 + 0.25 * 0.632456) = 0.766620
    assert float(B.adaptive(10, 0.1, math.sqrt(0.05), [0.05, 0.25] + [0] * 8)) == pytest.approx(
        0.766620, abs=1e-6
    )
    # Positions 3..10, which no sequence reached, are unknown, not 0: they take the bound
    # D̄_t <= min(1, eps, sqrt(delta/2)) = sqrt(0.05) -- the same as a full array holding it
    got = unified_columns(10.0, 0.1, None, None, None, np.array([0.05, 0.25]))
    full = np.array([0.05, 0.25] + [math.sqrt(0.05)] * 8)
    assert float(got) == pytest.approx(float(B.adaptive(10, 0.1, math.sqrt(0.05), full)))
    assert float(got) > 0.766620  # more than with zeros there
    # At T = 1e9 no array of length T exists; the tail is summed by hand here: weights
    # w_j = min(1, j eps, sqrt(j delta / 2)), j = T - t, are 1 except for j <= 19
    # (sqrt(0.05 j) < 1), and w at t = 1, 2 is 1.
    d = math.sqrt(0.05)
    for length in ("1e9", "1e20"):
        T = float(length)
        tail = (T - 2) - sum(1 - min(1.0, j * d, math.sqrt(0.05 * j)) for j in range(20))
        want = 4 * (0.05 + 0.25 + d * tail)
        got = unified_columns(T, 0.1, None, None, None, np.array([0.05, 0.25]))
        assert float(got) == pytest.approx(min(want, float(unified_columns(T, 0.1))), rel=1e-9)
        r = check_log(p, assumption=Assumption(kl_max=0.1), length=length)
        assert r.T[0] == T and len(r.stats["per_position"].values[0]) == 2
        assert np.isfinite(r.bound_est[0])


def test_columns_first_met_after_the_first_block(tmp_path, monkeypatch):
    from trmbounds.logs import readers as R
    from trmbounds.logs import tokens as TK

    monkeypatch.setattr(R, "_BLOCK", 80)  # one record per block
    monkeypatch.setattr(TK, "_SNIFF", 80)
    rec = {"inference_logprobs": [-0.5, -3.0], "trainer_logprobs": [-0.4, -0.01]}
    # A late loss_mask applies from where it appears: record 1 keeps both tokens
    # (|e^-0.01 - e^-3| = 0.940244), record 2 only its first (0.063789).
    p = _lines(tmp_path / "m.jsonl", rec, {**rec, "loss_mask": [1, 0]})
    r = check_log(p)
    assert r.columns["loss_mask"] == "loss_mask" and r.extra["tokens"] == 3
    # A late step column cannot be honoured: an error naming its line
    p = _lines(tmp_path / "s.jsonl", rec, {**rec, "step": 3})
    with pytest.raises(InputFileError, match=r"s\.jsonl: line 2: column 'step' first appears"):
        check_log(p)


@pytest.mark.parametrize("col", ["reward", "advantage"])
def test_surrogate_from_a_per_sequence_reward_by_hand(tmp_path, col):
    # A: sum_t (rho_t - 1) = (0.8 - 1) + (2 - 1) = 0.8; B: 0. Rewards 1 and 0.5:
    # R * sum = (0.8, 0): mean 0.4, sd = 0.8 / sqrt(2) = 0.565685, se = sd / sqrt(2) = 0.4
    p = _lines(
        tmp_path / "r.jsonl",
        {"inference_logprobs": ROLL[0], "trainer_logprobs": THETA[0], col: 1.0},
        {"inference_logprobs": ROLL[1], "trainer_logprobs": THETA[1], col: 0.5},
    )
    maps = {"reward": col} if col == "advantage" else {}  # an advantage only when named
    r = check_log(p, assumption=Assumption(kl_max=0.2), length="2", maps=maps)
    s = r.stats["surrogate"]
    assert s.values[0] == pytest.approx(0.4)
    assert (s.ci[0][0], s.ci[1][0]) == pytest.approx((0.4 - 1.959964 * 0.4, 0.4 + 1.959964 * 0.4))
    # distribution-free lower bound (Maurer-Pontil): X = (R - 0)(sum) = (0.8, 0) in [-aT, aT]
    # = [-2, 2]; Z = (X + 2)/4 = (0.7, 0.5): mean 0.6, unbiased variance 0.02; ln(2/0.05) =
    # 3.688879; 0.6 - sqrt(2 * 0.02 * 3.688879 / 2) - 7 * 3.688879 / 3 = -8.279006;
    # L >= 4 * (-8.279006) - 2 = -35.116023 (two sequences prove nothing)
    assert r.stats["surrogate_lcb"].values[0] == pytest.approx(-35.116023, abs=1e-5)
    assert any("advantage R - b" in n for n in r.notes) == (col == "advantage")


def test_estimate_uses_tv_seq_at_least_the_first_position(tmp_path):
    # the hand dump: tv_seq estimate 0 but D̄_1 = 0.1, and D_TV^seq >= D̄_1 (the first
    # token's marginal). With delta = 0.05 (eps = sqrt(0.025) = 0.158114), T = 2: Mixed TV
    # with 0 would be 0; with 0.1 it is 4 * 2 * 0.158114 * 0.1 = 0.126491, and the Adaptive
    # hybrid 4 * 0.1 * min(1, 1 * 0.158114, sqrt(0.025)) = 0.063246 is the minimum
    # (PM-KL = PM-TV = Coupling = 4 * 0.158114^2 = 0.1, Mixed KL 0.363).
    p = write_token_dump(tmp_path / "t.parquet", ROLL, THETA)
    r = check_log(p, assumption=Assumption(kl_max=0.05), length="2")
    assert r.bound_est[0] == pytest.approx(4 * 0.1 * math.sqrt(0.025), rel=1e-9)


def test_exact_kl_supersedes_the_k2_detector(tmp_path):
    # k2 of A's second token is (log 2)^2 / 2 = 0.240 > delta = 0.2, but the exact
    # per-token KL (given, at most 0.01) is below delta: no flag
    kl = [[0.01, 0.005], [0.0]]
    tv = [[0.05, 0.05], [0.0]]
    p = write_token_dump(tmp_path / "e.parquet", ROLL, THETA, kl=kl, tv=tv)
    r = check_log(p, assumption=Assumption(kl_max=0.2, tv_max=0.3), length="2")
    assert r.n_flagged == 0
    r = check_log(write_token_dump(tmp_path / "k.parquet", ROLL, THETA),
                  assumption=Assumption(kl_max=0.2, tv_max=0.3), length="2")  # fmt: skip
    assert r.n_flagged == 1  # without the exact KL, the detector flags it


def test_column_sniffing_fast_path_equals_record_by_record():
    """The columns of a JSONL log found by pyarrow in one parse equal those found record
    by record (framework files, and files the fast path must hand back: mixed types,
    a bad line, a non-object line, "data" not an object)."""
    from trmbounds.logs import tokens

    fixtures = Path(__file__).parent / "fixtures"
    files = sorted(fixtures.rglob("*.jsonl"))
    assert len(files) >= 8

    def slow(block: bytes) -> set:
        keys = set()
        for raw in block.split(b"\n"):
            try:
                obj = json.loads(raw)
            except ValueError:
                continue
            if isinstance(obj, dict):
                keys |= {k for k in obj if k != "data"}
                if isinstance(obj.get("data"), dict):
                    keys |= set(obj["data"])
        return keys

    for f in files:
        block = f.read_bytes()
        fast = tokens._arrow_keys(block)
        assert fast is not None and set(fast) == slow(block), f
    for bad in (
        b'{"a": 1}\n{"a": "x"}\n',
        b'{"a": 1}\nnot json\n',
        b'{"a": 1}\n[1, 2]\n',
        b'{"data": 3}\n',
        b'{"a\xff": 1}\n',
    ):
        assert tokens._arrow_keys(bad) is None, bad
