"""Per-token dumps in the frameworks' own layouts (trmbounds.logs.dumps).

The fixtures (tests/fixtures/make_dumps.py) hold the hand-computed example of
test_logs_tokens.py in each framework's layout: at the first step (3) sequence A, with
rollout probabilities (0.5, 0.25) and trainer probabilities (0.4, 0.5) on its trained
tokens, and sequence B, one token at 0.5 under both; at the second step (10) A alone.
Every token the framework's loss ignores (prompt, a tool token inside A, a sequence
NeMo-RL's sample mask drops) has rollout 0.9 / trainer 0.001: read by mistake, it
would change every number below.
"""

from __future__ import annotations

import json
import math
import pickle
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trmbounds.cli import app
from trmbounds.errors import InputFileError
from trmbounds.logs.check import check_log
from trmbounds.logs.dumps import open_dump

FIX = Path(__file__).parent / "fixtures"
NEMO = FIX / "nemo-rl" / "logs" / "exp_001"
PRIME = FIX / "prime-rl" / "outputs" / "run_default" / "token_exports"
SLIME = FIX / "slime" / "dump_details" / "train_data"
SKYRL = FIX / "skyrl" / "exports" / "dumped_data"

L = math.log
# A: rho = (0.4/0.5, 0.5/0.25) = (0.8, 2); k3 = rho - 1 - log rho summed over A
K3_A = (0.8 - 1 - L(0.8)) + (2 - 1 - L(2))
# step -> (sequences, tokens, kl_seq = mean over sequences of sum_t k3, D̄_1, D̄_2)
# D̄_t = mean over sequences of (1 - rho_t)^+ (0 for a sequence already ended):
# step 3: D̄_1 = ((1 - 0.8) + 0)/2 = 0.1, D̄_2 = ((1 - 2)^+ + 0)/2 = 0; step 10: A alone.
HAND = {3: (2, 3, K3_A / 2, 0.1, 0.0), 10: (1, 2, K3_A, 0.2, 0.0)}
REL = 1e-6  # the dumps store float32 log-probabilities (as the frameworks write them)


def assert_hand(r, steps):
    d = r.to_dict()["steps"]
    assert [s["step"] for s in d] == steps
    for s in d:
        n, _tok, kl, d1, d2 = HAND[s["step"]]
        st = s["stats"]
        assert s["T"] == 2
        assert st["kl_seq"]["value"] == pytest.approx(kl, rel=REL)
        assert st["per_position"]["value"] == pytest.approx([d1, d2], rel=REL, abs=1e-9)
        # D_TV^seq = mean of (1 - prod_t rho_t)^+: A: (1 - 0.8 * 2)^+ = 0, B: 0
        assert st["tv_seq"]["value"] == pytest.approx(0.0, abs=1e-9)
        # max |p_theta - p_roll| over trained tokens: |0.5 - 0.25| (A's second token)
        assert st["tv_lower_bound"]["value"] == pytest.approx(0.25, rel=REL)
    assert r.extra["sequences"] == sum(HAND[s][0] for s in steps)
    assert r.extra["tokens"] == sum(HAND[s][1] for s in steps)


# ------------------------------------------------------------------------ NeMo-RL
def test_nemo_rl_directory_steps_from_file_names():
    r = check_log(NEMO)
    assert r.kind == "tokens" and r.preset == "nemo-rl" and r.extra["dump"] == "nemo-rl"
    assert_hand(r, [3, 10])  # train_data_step3 before train_data_step10 (numeric order)
    assert r.columns["logp_roll"] == "generation_logprobs"
    assert r.columns["logp_theta"] == "prev_logprobs"
    assert r.columns["loss_mask"] == "token_loss_mask*sample_loss_mask"
    # the third sample of step 3 has sample_loss_mask 0: not trained, not counted
    assert any("1 sequence(s) without response tokens" in n for n in r.notes)


def test_nemo_rl_single_file():
    r = check_log(NEMO / "train_data_step3.jsonl")
    assert_hand(r, [3])


def test_nemo_rl_file_renamed_has_no_step(tmp_path):
    p = tmp_path / "dump.jsonl"
    shutil.copy(NEMO / "train_data_step10.jsonl", p)
    r = check_log(p)  # recognised by its wrapped generation_logprobs/prev_logprobs
    assert r.preset == "nemo-rl" and r.extra["dump"] == "nemo-rl"
    assert [s["step"] for s in r.to_dict()["steps"]] == [0]
    assert r.to_dict()["steps"][0]["stats"]["kl_seq"]["value"] == pytest.approx(K3_A, rel=REL)
    assert any("step is unknown" in n for n in r.notes)


def test_nemo_rl_fields_must_be_wrapped(tmp_path):
    lines = (NEMO / "train_data_step3.jsonl").read_text().splitlines()
    rec = json.loads(lines[1])
    rec["generation_logprobs"] = rec["generation_logprobs"][0]  # unwrapped: not NeMo-RL's layout
    lines[1] = json.dumps(rec)
    p = tmp_path / "train_data_step3.jsonl"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputFileError, match=r"line 2: field 'generation_logprobs': expected a "
                       "one-element list"):  # fmt: skip
        check_log(p)
    r = check_log(p, skip_bad=True)  # B skipped and counted: A alone
    assert r.bad.count == 1
    assert r.to_dict()["steps"][0]["stats"]["kl_seq"]["value"] == pytest.approx(K3_A, rel=REL)


def test_nemo_rl_sample_mask_must_be_0_or_1(tmp_path):
    lines = (NEMO / "train_data_step10.jsonl").read_text().splitlines()
    rec = json.loads(lines[0])
    rec["sample_loss_mask"] = [0.5]
    p = tmp_path / "train_data_step10.jsonl"
    p.write_text(json.dumps(rec) + "\n")
    with pytest.raises(InputFileError, match="line 1: sample_loss_mask is 0.5, expected 0 or 1"):
        check_log(p)


# ------------------------------------------------------------------------ prime-rl
def test_prime_rl_all_ranks_of_a_step_together():
    r = check_log(PRIME)
    assert r.preset == "prime-rl" and r.extra["dump"] == "prime-rl"
    assert_hand(r, [3, 10])  # step 3: A on rank 0 and B on rank 1, one group
    assert r.columns["logp_roll"] == "inference_logprobs"
    assert r.columns["logp_theta"] == "trainer_logprobs"
    assert r.columns["loss_mask"] == "loss_mask"
    # step_10 has no STABLE marker: said, not hidden
    assert any("without prime-rl's STABLE marker" in n and "step_10" in n for n in r.notes)


def test_prime_rl_one_step_directory():
    r = check_log(PRIME / "step_3")
    assert_hand(r, [3])
    assert not any("STABLE" in n for n in r.notes)


def test_prime_rl_one_rank_file_is_that_rank_only():
    # a single rank file: A alone at step 3, and a note saying the other ranks are not read
    r = check_log(PRIME / "step_3" / "rank_0.jsonl")
    d = r.to_dict()["steps"]
    assert [s["step"] for s in d] == [3] and r.extra["sequences"] == 1
    assert d[0]["stats"]["kl_seq"]["value"] == pytest.approx(K3_A, rel=REL)
    assert any("rank_0.jsonl of step_3 only" in n for n in r.notes)


def test_prime_rl_per_token_advantages_are_not_a_reward():
    # prime-rl's advantages are a per-token list, not a per-sequence reward: no surrogate
    r = check_log(PRIME)
    assert "reward" not in r.columns and "surrogate" not in r.stats
    assert any("per-token advantages are not read" in n for n in r.notes)


def test_prime_rl_bad_record_names_its_file(tmp_path):
    d = tmp_path / "token_exports"
    shutil.copytree(PRIME, d)
    f = d / "step_3" / "rank_1.jsonl"
    rec = json.loads(f.read_text())
    rec["trainer_logprobs"] = rec["trainer_logprobs"][:-1]  # one value short
    f.write_text(json.dumps(rec) + "\n")
    with pytest.raises(InputFileError, match=r"token_exports: step_3/rank_1.jsonl line 1: "):
        check_log(d)


# --------------------------------------------------------------------------- slime
def test_slime_directory_steps_from_rollout_id():
    r = check_log(SLIME)
    assert r.preset == "slime" and r.extra["dump"] == "slime"
    assert_hand(r, [3, 10])
    assert r.columns["logp_roll"] == "rollout_log_probs"
    assert r.columns["logp_theta"] == "log_probs"
    assert r.columns["loss_mask"] == "loss_masks"


def test_slime_single_file():
    assert_hand(check_log(SLIME / "3.pt"), [3])


class _Touch:
    """Unpickling this object creates a file: proof that nothing was unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_slime_pt_with_other_objects_is_refused(tmp_path):
    torch = pytest.importorskip("torch")
    marker = tmp_path / "unpickled"
    p = tmp_path / "3.pt"
    torch.save({"rollout_id": 3, "samples": [], "evil": _Touch(marker)}, p)
    with pytest.raises(InputFileError, match=r"3.pt: not readable with torch.load\(weights_only"
                       r"=True\) \(Unsupported global: GLOBAL "):  # fmt: skip
        check_log(p)
    assert not marker.exists()


def test_corrupt_pt_file(tmp_path):
    p = tmp_path / "3.pt"
    p.write_bytes(b"\x80\x02not a torch file at all")
    with pytest.raises(InputFileError, match=r"3.pt: not readable with torch.load") as e:
        check_log(p)
    assert "\n" not in str(e.value)


def test_slime_pt_of_another_layout(tmp_path):
    torch = pytest.importorskip("torch")
    p = tmp_path / "model.pt"
    torch.save({"weight": torch.zeros(2)}, p)
    with pytest.raises(InputFileError, match="not a slime train-data dump"):
        check_log(p)


# --------------------------------------------------------------------------- SkyRL
def test_skyrl_pickle_refused_without_loading(tmp_path):
    marker = tmp_path / "unpickled"
    p = tmp_path / "global_step_1_training_input.pkl"
    p.write_bytes(pickle.dumps(_Touch(marker)))
    for target in (p, tmp_path, SKYRL, SKYRL / "global_step_1_training_input.pkl"):
        with pytest.raises(InputFileError, match="never unpickles"):
            check_log(target)
    assert not marker.exists()


def test_not_a_dump():
    assert open_dump(FIX / "verl" / "verl_0.9.1" / "seq_is_only.jsonl") is None
    assert open_dump(FIX / "trl" / "grpo" / "runs") is None


# ---------------------------------------------------------------------------- CLI
def test_cli_reads_a_dump_and_refuses_a_pickle():
    runner = CliRunner()
    out = runner.invoke(app, ["check", str(NEMO), "--kl-max", "0.1", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert [s["step"] for s in data["steps"]] == [3, 10]
    assert data["summary"]["preset"] == "nemo-rl" and data["summary"]["kind"] == "tokens"
    out = runner.invoke(app, ["check", str(SKYRL)])
    assert out.exit_code == 2
    err = out.stderr.strip()
    assert err.startswith("Error: ") and "never unpickles" in err and "\n" not in err


def test_nemo_rl_placeholder_prev_logprobs(tmp_path):
    # force_on_policy_ratio=True: NeMo-RL logs zeros instead of the trainer's log-probs
    # (nemo_rl/algorithms/grpo.py: prev_logprobs = torch.zeros_like(generation_logprobs))
    p = tmp_path / "train_data_step3.jsonl"
    with open(p, "w") as fh:
        for line in (NEMO / "train_data_step3.jsonl").read_text().splitlines():
            rec = json.loads(line)
            rec["prev_logprobs"] = [[0.0] * len(rec["prev_logprobs"][0])]
            fh.write(json.dumps(rec) + "\n")
    with pytest.raises(InputFileError, match="prev_logprobs is 0 on all 3 trained tokens"):
        check_log(p)


def test_other_files_in_a_directory_are_not_dumps(tmp_path):
    # a run directory with a checkpoint and a pickle of its own is not a slime/SkyRL dump
    (tmp_path / "optimizer.pt").write_bytes(b"not read")
    (tmp_path / "cache.pkl").write_bytes(b"not read")
    assert open_dump(tmp_path) is None


def test_nemo_rl_fast_and_slow_paths_agree(monkeypatch):
    import trmbounds.logs.dumps as D

    calls = []
    fast = D._nemo_fast

    def spy(*a, **k):
        ch = fast(*a, **k)
        calls.append(ch is not None)
        return ch

    monkeypatch.setattr(D, "_nemo_fast", spy)
    a = check_log(NEMO).to_dict()
    assert calls and all(calls)  # pyarrow read every block of the fixtures
    monkeypatch.setattr(D, "_nemo_fast", lambda *a, **k: None)  # json module, line by line
    b = check_log(NEMO).to_dict()
    # compared as JSON (NaN -- an interval of one value -- is null there, and equal)
    from trmbounds.cli._common import dumps

    assert dumps(a["steps"]) == dumps(b["steps"])


# ------------------------------------------------- slime payloads that once crashed `check`
def _slime_sample(torch, **over):
    s = {
        "rollout_log_probs": torch.tensor([-0.5, -0.7]),
        "log_probs": torch.tensor([-0.51, -0.69]),
        "loss_masks": torch.tensor([1, 1]),
    }
    s.update(over)
    return s


def _check_one_line(p, *words):
    from typer.testing import CliRunner

    from trmbounds.cli import app

    r = CliRunner().invoke(app, ["check", str(p), "--kl-max", "1e-3", "--json"])
    assert r.exit_code == 2, r.output
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"Error: {p}"), err
    for w in words:
        assert w in err[0], err
    assert r.stdout == ""


@pytest.mark.parametrize("rid", [10**400, -(10**400)], ids=["1e400", "-1e400"])
def test_slime_rollout_id_beyond_any_float_is_one_line(tmp_path, rid):
    torch = pytest.importorskip("torch")
    p = tmp_path / "3.pt"
    torch.save({"rollout_id": rid, "samples": [_slime_sample(torch)]}, p)
    _check_one_line(p, "'rollout_id'", "expected a number")  # before: OverflowError


@pytest.mark.parametrize(
    "kind, words",
    [
        ("meta", "meta-device tensor"),  # before: NotImplementedError
        ("quantized", "quantized tensor"),  # before: RuntimeError
        ("complex", "complex tensor"),  # before: accepted, its imaginary part dropped
    ],
)
def test_slime_tensors_without_real_values_are_one_line(tmp_path, kind, words):
    torch = pytest.importorskip("torch")
    import warnings

    x = torch.tensor([-0.5, -0.7])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quantized tensors are deprecated
        bad = {
            "meta": lambda: torch.empty(2, device="meta"),
            "quantized": lambda: torch.quantize_per_tensor(x, 0.1, 0, torch.qint8),
            "complex": lambda: x.to(torch.complex64) + 1j,
        }[kind]()
    p = tmp_path / "3.pt"
    torch.save({"rollout_id": 3, "samples": [_slime_sample(torch, log_probs=bad)]}, p)
    _check_one_line(p, "sample 0", "'log_probs'", words)


def test_slime_deflate_bomb_is_refused_before_torch_load(tmp_path):
    """A 100 MB deflated entry in a .pt of ~100 KB: torch.load would inflate it (and the
    reader then doubled it); the zip directory's declared sizes are checked first."""
    torch = pytest.importorskip("torch")
    import zipfile

    p = tmp_path / "3.pt"
    torch.save({"rollout_id": 3, "samples": [_slime_sample(torch)]}, p)
    with zipfile.ZipFile(p, "a", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        with z.open("archive/data/99", "w") as w:
            chunk = bytes(2**20)
            for _ in range(100):
                w.write(chunk)
    assert p.stat().st_size < 2**20
    _check_one_line(p, "inflate to 104,8", "not a slime dump")
