"""Readers on files written by the frameworks themselves (tests/fixtures, see its README).

The TensorBoard reader is compared with TensorBoard's own ``EventAccumulator`` on the
event files that verl's ``Tracking`` (torch ``SummaryWriter``) and transformers'
``TensorBoardCallback`` (TRL's GRPOTrainer) wrote; verl's logged values are compared
with the same statistics recomputed from the synthetic inputs verl was given
(``verl/batches.npz``), by the formulas in verl's docstrings, not by trmbounds' code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from trmbounds.logs.readers import BadRecords, read_log
from trmbounds.logs.tensorboard import iter_scalars

FIX = Path(__file__).parent / "fixtures"
EVENT_FILES = sorted(FIX.glob("**/events.out.tfevents.*"))
VERL = FIX / "verl"


def test_fixtures_are_there():
    # verl 0.9.1 (4 experiments), verl 0.6.0 (2), TRL (1 run + 2 runs of a re-run)
    def count(d):
        return sum(1 for f in EVENT_FILES if d in f.parents)

    assert count(VERL / "tensorboard_log" / "verl_0.9.1") == 4
    assert count(VERL / "tensorboard_log" / "verl_0.6.0") == 2
    assert count(FIX / "trl" / "grpo") == 1 and count(FIX / "trl" / "grpo_rerun") == 2


@pytest.mark.parametrize("f", EVENT_FILES, ids=lambda f: str(f.relative_to(FIX)))
def test_tensorboard_reader_matches_event_accumulator(f):
    ea = EventAccumulator(str(f), size_guidance={"scalars": 0})  # 0: keep every event
    ea.Reload()
    want: dict[str, list[tuple[int, float]]] = {
        tag: [(e.step, e.value) for e in ea.Scalars(tag)] for tag in ea.Tags()["scalars"]
    }
    got: dict[str, list[tuple[int, float]]] = {}
    bad = BadRecords()
    seen: set[str] = set()
    for _rec, step, scalars in iter_scalars(f, bad, seen):
        for tag, x in scalars:
            got.setdefault(tag, []).append((step, x))
    assert bad.count == 0
    if "hparams" in str(f.parent.name) or f.parent.name.replace(".", "").isdigit():
        # an add_hparams sub-run (NeMo-RL's layout): no scalars, in either reader
        assert not want and not got
        return
    assert want  # the file has scalars
    assert set(got) == set(want)
    for tag in want:  # same steps, same float32 values (NaN included), same order
        assert [s for s, _ in got[tag]] == [s for s, _ in want[tag]], tag
        np.testing.assert_array_equal([v for _, v in got[tag]], [v for _, v in want[tag]], tag)
    # the pivoted table (last value per step and tag) agrees too
    table = read_log(f)
    steps = table.columns["step"].tolist()
    for tag, events in want.items():
        last = dict(events)
        col = table.columns[tag]
        for s, v in last.items():
            np.testing.assert_array_equal(col[steps.index(s)], v, f"{tag} at step {s}")


def _verl_expected(step: int) -> dict[str, float]:
    """verl's metrics recomputed from its inputs (formulas from verl's docstrings)."""
    z = np.load(VERL / "batches.npz")
    roll = z[f"step{step}_rollout_log_probs"].astype(np.float64)
    old = z[f"step{step}_old_log_probs"].astype(np.float64)
    m = z[f"step{step}_response_mask"].astype(bool)
    d = (old - roll)[m]  # log rho on response tokens
    return {
        # rollout_corr/k3_kl: token mean of rho - 1 - log rho
        "k3_kl": float(np.mean(np.expm1(d) - d)),
        # rollout_corr/kl: token mean of log pi_roll - log pi_old
        "kl": float(np.mean(-d)),
        # training/rollout_probs_diff_max: max |exp(old) - exp(roll)| over response tokens
        "probs_diff_max": float(np.max(np.abs(np.exp(old[m]) - np.exp(roll[m])))),
        # response_length/max: longest response (attention mask of the response part)
        "T_max": float(m.sum(axis=1).max()),
        "T_mean": float(m.sum(axis=1).mean()),
    }


@pytest.mark.parametrize("backend", ["jsonl", "tensorboard"])
def test_verl_values_match_an_independent_recomputation(backend):
    exp = "seq_is_only"
    if backend == "jsonl":
        c = read_log(VERL / "verl_0.9.1" / f"{exp}.jsonl")
        rel = 1e-4  # verl computes in float32 (k3 of small log-ratios loses digits)
    else:
        (f,) = (VERL / "tensorboard_log" / "verl_0.9.1" / exp).glob("events.out.tfevents.*")
        c = read_log(f)
        rel = 1e-4
    assert c.columns["step"].tolist() == [1, 2, 3, 4]
    for i, step in enumerate([1, 2, 3, 4]):
        e = _verl_expected(step)
        assert c.columns["rollout_corr/k3_kl"][i] == pytest.approx(e["k3_kl"], rel=rel, abs=1e-9)
        assert c.columns["rollout_corr/kl"][i] == pytest.approx(e["kl"], rel=1e-4, abs=1e-7)
        assert c.columns["training/rollout_probs_diff_max"][i] == pytest.approx(
            e["probs_diff_max"], rel=rel
        )
        assert c.columns["response_length/max"][i] == e["T_max"]
        assert c.columns["response_length/mean"][i] == pytest.approx(e["T_mean"])


def test_verl_legacy_names_and_values():
    # verl 0.6.0 logs mismatch/mismatch_k3_kl (no mismatch/k3_kl), same estimator
    c = read_log(VERL / "verl_0.6.0" / "token_truncate.jsonl")
    assert "mismatch/k3_kl" not in c.columns and "rollout_corr/k3_kl" not in c.columns
    for i, step in enumerate([1, 2, 3, 4]):
        e = _verl_expected(step)
        assert c.columns["mismatch/mismatch_k3_kl"][i] == pytest.approx(e["k3_kl"], rel=1e-4)


def test_trl_tensorboard_and_trainer_state_agree():
    # TRL's TensorBoard tags carry transformers' "train/" prefix; trainer_state.json the raw name
    import json

    run = FIX / "trl" / "grpo"
    (f,) = run.glob("runs/*/events.out.tfevents.*")
    tb = read_log(f)
    hist = [h for h in json.loads((run / "trainer_state.json").read_text())["log_history"]
            if "completions/max_length" in h]  # fmt: skip
    assert "completions/max_length" not in tb.columns
    assert tb.columns["step"].tolist() == [h["step"] for h in hist] == [1, 2, 3, 4]
    assert tb.columns["train/completions/max_length"].tolist() == [
        h["completions/max_length"] for h in hist
    ]
    # no rollout/training mismatch metric without vLLM
    assert not any(k.startswith("train/sampling/") for k in tb.columns)
