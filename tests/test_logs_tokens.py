"""Per-token dumps: estimators against hand arithmetic and exact enumeration (SPEC §6)."""

from __future__ import annotations

import math

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
    # D_TV^seq: A: |0.8 * 2 - 1| / 2 = 0.3, B: 0 -> 0.15
    assert s["tv_seq"]["value"] == pytest.approx(0.15)
    # D̄_1 = (|0.8 - 1|/2 + 0) / 2 = 0.05; D̄_2 = (|2 - 1|/2 + 0 [B ended]) / 2 = 0.25
    assert s["per_position"]["value"] == pytest.approx([0.05, 0.25])
    assert s["per_position_sum"]["value"] == pytest.approx(0.3)
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
    with pytest.raises(Exception, match="apply to per-token dumps only"):
        check_log(p, trm_max=0.1)


def test_k2_max_from_a_negative_log_ratio(tmp_path):
    # rho = 0.2 / 0.8 = 0.25: k2 = (log 4)^2 / 2 = 0.96091; |p - q| = 0.6
    p = write_token_dump(tmp_path / "t.parquet", [[L(0.5), L(0.8)]], [[L(0.55), L(0.2)]])
    st = check_log(p).stats
    assert st["kl_max_proxy"].values[0] == pytest.approx(0.5 * L(4) ** 2)
    assert st["tv_lower_bound"].values[0] == pytest.approx(0.6)
