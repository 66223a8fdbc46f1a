"""``trmbounds check`` on logs written by verl's own code (tests/fixtures/verl, make_verl.py).

verl 0.9.1 and 0.6.0 computed the metrics (calculate_debug_metrics,
compute_rollout_correction_and_add_to_batch / compute_rollout_importance_weights,
compute_data_metrics) and wrote them through verl.utils.tracking.Tracking's file and
tensorboard backends. The expected column names are verl's (rollout_corr_helper.py,
mismatch_helper.py, debug/metrics.py, metric_utils.py); the expected values are
recomputed here from the synthetic inputs saved beside them (batches.npz) with the
textbook formulas, not taken from verl's files or from trmbounds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trmbounds.errors import InputFileError
from trmbounds.logs.check import Assumption, check_log

FIX = Path(__file__).parent / "fixtures" / "verl"
V9 = ["rs_token_k2_seq_max_k2", "rs_seq_sum_k3_seq_mean_k3_seq_is",
      "rs_token_k3_seq_max_k3_token_is", "seq_is_only"]  # fmt: skip
V6 = ["token_truncate", "sequence_mask"]


def _inputs():
    """Per step: rollout and training log-probs (float64) and the response mask."""
    z = np.load(FIX / "batches.npz", allow_pickle=False)
    out = []
    for s in range(1, 5):
        m = z[f"step{s}_response_mask"].astype(bool)
        lr = z[f"step{s}_rollout_log_probs"].astype(np.float64)
        lt = z[f"step{s}_old_log_probs"].astype(np.float64)
        out.append((lr, lt, m))
    return out


def _expected():
    T, kseq, tvlb, k2, k3max = [], [], [], [], []
    for lr, lt, m in _inputs():
        d = np.where(m, lt - lr, 0.0)  # log rho = log pi_train - log pi_roll
        k3 = np.where(m, np.exp(d) - 1 - d, 0.0)
        T.append(int(m.sum(1).max()))
        kseq.append(k3.sum() / m.shape[0])  # batch mean of sum_t k3 = D_KL^seq estimate
        tvlb.append(np.max(np.abs(np.exp(lt[m]) - np.exp(lr[m]))))
        k2.append(np.max(d[m] ** 2 / 2))
        k3max.append(np.max(k3[m]))
    return dict(T=T, kseq=kseq, tvlb=tvlb, k2=k2, k3max=k3max)


def _cols(name):
    base = {"step": "step", "T_max": "response_length/max", "T_mean": "response_length/mean",
            "T_clip": "response_length/clip_ratio",  # metric_utils.compute_data_metrics
            "tv_lb": "training/rollout_probs_diff_max",
            "prob_diff_mean": "training/rollout_probs_diff_mean"}  # fmt: skip
    if name in V6:
        base["kl_tok_mean"] = "mismatch/mismatch_k3_kl"
        if name == "sequence_mask":  # only the IS "mask" mode logs it (mismatch_helper.py)
            base["reject_frac"] = "mismatch/rollout_is_seq_masked_fraction"
        return base
    base["kl_tok_mean"] = "rollout_corr/k3_kl"
    if name != "seq_is_only":
        base["reject_frac"] = "rollout_corr/rollout_rs_seq_masked_fraction"
    if name == "rs_token_k2_seq_max_k2":
        base["k2_max"] = "rollout_corr/rollout_rs_seq_max_k2_max"
    if name == "rs_token_k3_seq_max_k3_token_is":
        base["kl_proxy_max"] = "rollout_corr/rollout_rs_seq_max_k3_max"
    if name == "rs_seq_sum_k3_seq_mean_k3_seq_is":
        base["kl_seq"] = "rollout_corr/rollout_rs_seq_sum_k3_seq_mean"
    return base


def _paths():
    for name in V9:
        yield name, FIX / "verl_0.9.1" / f"{name}.jsonl"
        yield name, FIX / "tensorboard_log" / "verl_0.9.1" / name
    for name in V6:
        yield name, FIX / "verl_0.6.0" / f"{name}.jsonl"
        yield name, FIX / "tensorboard_log" / "verl_0.6.0" / name


@pytest.mark.parametrize("name,path", list(_paths()), ids=lambda x: str(x)[-40:])
def test_verl_logs_read_with_the_right_preset_columns_and_values(name, path):
    r = check_log(path, assumption=Assumption(kl_max=1e-3))
    assert r.preset == "verl"
    cols = _cols(name)
    assert r.columns == cols
    ex = _expected()
    assert r.step.tolist() == [1, 2, 3, 4] and r.T.tolist() == ex["T"]
    rtol = 1e-5  # verl computes in float32 (TensorBoard stores float32 too)
    # verl's float32 k3 = exp(d) - 1 - d cancels: up to ~1.2e-7 absolute per token, so
    # sum_t k3 / B is off by up to ~24 x 1.2e-7 = 3e-6 (the rows have <= 24 tokens)
    np.testing.assert_allclose(r.stats["kl_seq"].values, ex["kseq"], rtol=rtol, atol=3e-6)
    np.testing.assert_allclose(r.stats["tv_lower_bound"].values, ex["tvlb"], rtol=rtol)
    assert r.stats["kl_seq"].status == "estimate"
    assert r.stats["tv_lower_bound"].status == "lower_bound"
    if "k2_max" in cols:
        np.testing.assert_allclose(r.stats["kl_max_proxy"].values, ex["k2"], rtol=rtol)
        assert r.stats["kl_max_proxy"].status == "proxy"
    if "kl_proxy_max" in cols:
        np.testing.assert_allclose(
            r.stats["kl_max_proxy_k3"].values, ex["k3max"], rtol=rtol, atol=2e-7
        )
    # delta = 1e-3 -> eps <= sqrt(5e-4) = 0.02236: every step's max |p - q| (0.044 and up)
    # refutes it
    assert all(t > 0.02236 for t in ex["tvlb"])
    assert r.counts()["refuted"] == 4
    assert r.summary()["merge"]["steps_repeated"] == 0


def test_verl_rejection_fractions_match_the_options():
    ex = _expected()
    # rollout_rs token_k2,seq_max_k2 at 0.05: a sequence is masked iff its max k2 > 0.05
    r = check_log(FIX / "verl_0.9.1" / "rs_token_k2_seq_max_k2.jsonl")
    masked = []
    for lr, lt, m in _inputs():
        d = np.where(m, lt - lr, 0.0)
        masked.append(np.mean((d**2 / 2).max(1) > 0.05))
    assert all(k < 0.05 for k in ex["k2"][:3]) and ex["k2"][3] > 0.05
    np.testing.assert_allclose(r.acceptance, 1 - np.asarray(masked))
    assert r.stats["acceptance"].source == "1 − rollout_corr/rollout_rs_seq_masked_fraction"
    # verl 0.6.0 sequence-level IS "mask" mode, thresholds [0.5, 2]: a sequence is masked
    # iff exp(sum_t log rho) is outside them
    r = check_log(FIX / "verl_0.6.0" / "sequence_mask.jsonl")
    masked = []
    for lr, lt, m in _inputs():
        w = np.exp(np.where(m, lt - lr, 0.0).sum(1))
        masked.append(np.mean((w < 0.5) | (w > 2.0)))
    np.testing.assert_allclose(r.acceptance, 1 - np.asarray(masked))


def test_verl_tensorboard_project_directory_lists_its_runs():
    # four runs that each start at step 1 are four trainings, not one resumed run
    with pytest.raises(InputFileError, match=r"4 TensorBoard runs below this directory that "
                       r"are not one resumed run .*starts again at step 1.*: "
                       r"rs_token_k2_seq_max_k2, rs_seq_sum_k3_seq_mean_k3_seq_is, "
                       r"rs_token_k3_seq_max_k3_token_is, seq_is_only; pass one run"):  # fmt: skip
        check_log(FIX / "tensorboard_log" / "verl_0.9.1")


def test_verl_tensorboard_equals_the_file_logger_to_float32():
    for name in V9:
        a = check_log(FIX / "verl_0.9.1" / f"{name}.jsonl")
        b = check_log(FIX / "tensorboard_log" / "verl_0.9.1" / name)
        for k, s in a.stats.items():
            want = s.values.astype(np.float32).astype(np.float64)
            np.testing.assert_allclose(b.stats[k].values, want, rtol=1e-6, err_msg=k)


def test_tensorboard_reader_agrees_with_tensorboards_own_event_accumulator():
    ea_mod = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    from trmbounds.logs.readers import read_log

    run = FIX / "tensorboard_log" / "verl_0.9.1" / "rs_token_k2_seq_max_k2"
    acc = ea_mod.EventAccumulator(str(run), size_guidance={ea_mod.SCALARS: 0})
    acc.Reload()
    c = read_log(run)
    for tag in acc.Tags()["scalars"]:
        ev = acc.Scalars(tag)
        steps = c.columns["step"][c.present[tag]]
        assert steps.tolist() == [e.step for e in ev], tag
        np.testing.assert_array_equal(c.columns[tag][c.present[tag]], [e.value for e in ev])
