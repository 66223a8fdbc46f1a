"""``TRMCallback`` in transformers' own ``Trainer`` (which TRL's GRPOTrainer subclasses).

A tiny random Llama trains for a few steps with ``report_to=["tensorboard"]``;
``Trainer.log`` is extended, as GRPOTrainer's is, with TRL's metric names
(``completions/max_length`` and ``sampling/sampling_logp_difference/{mean,max}``), so
that transformers' own logging, ``log_history`` and TensorBoard callback run. The
reference is ``trmbounds check trainer_state.json --json`` through the command line on
the state the run saved.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from trmbounds.cli import app  # noqa: E402
from trmbounds.errors import TrmboundsError  # noqa: E402
from trmbounds.integrations.trl import KEYS, TRMCallback  # noqa: E402
from trmbounds.logs.readers import BadRecords  # noqa: E402
from trmbounds.logs.tensorboard import iter_scalars  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from tinymodel import V, tiny_llama  # noqa: E402

#: Per logging step: TRL's max |log p_old - log p_vLLM| (k2 = max^2 / 2) and the longest
#: completion. With kl_max = 1e-3: k2 = 5e-5, 1.25e-3 (flagged), 2e-4, 0.02 (flagged), 4.5e-4, 8e-4
LOGP_MAX = [0.01, 0.05, 0.02, 0.2, 0.03, 0.04]
MAXLEN = [10.0, 12.0, 14.0, 9.0, 16.0, 11.0]


class Data(torch.utils.data.Dataset):
    def __len__(self):
        return 64

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        ids = torch.randint(4, V, (8,), generator=g)
        return {"input_ids": ids, "labels": ids.clone()}


class GRPOLikeTrainer(transformers.Trainer):
    """Adds TRL's metric names to the training logs, as GRPOTrainer.log does."""

    def log(self, logs, start_time=None):
        if "loss" in logs:
            i = self.state.global_step - 1
            logs["completions/max_length"] = MAXLEN[i]
            logs["sampling/sampling_logp_difference/max"] = LOGP_MAX[i]
            logs["sampling/sampling_logp_difference/mean"] = LOGP_MAX[i] / 10
        super().log(logs, start_time)


@dataclass
class GRPOLikeConfig(transformers.TrainingArguments):
    max_completion_length: int = 32  # GRPOConfig's field


def train(tmp_path: Path, cb, steps: int = 6, args_cls=transformers.TrainingArguments, **kw):
    args = args_cls(
        output_dir=str(tmp_path), max_steps=steps, per_device_train_batch_size=4,
        logging_steps=1, report_to=["tensorboard"], use_cpu=True, seed=0, disable_tqdm=True,
        save_strategy="no", **kw,
    )  # fmt: skip
    t = GRPOLikeTrainer(model=tiny_llama(0), args=args, train_dataset=Data(), callbacks=[cb])
    t.train()
    t.save_state()
    return t


def check_json(state: Path, *args: str) -> dict:
    r = CliRunner().invoke(app, ["check", str(state), "--json", *args])
    assert r.exit_code == 0, r.output
    return {s["step"]: s for s in json.loads(r.output)["steps"]}


def tb_scalars(logdir: Path) -> dict[tuple[str, int], float]:
    out = {}
    for _, step, scalars in iter_scalars(logdir, BadRecords(), set()):
        for tag, x in scalars:
            out[(tag, step)] = x
    return out


def same(a: float, b: float | None) -> bool:
    return (b is None and math.isnan(a)) or a == b


def test_trm_keys_in_log_history_and_event_files_equal_check(tmp_path):
    cb = TRMCallback(kl_max=1e-3, length=64)
    t = train(tmp_path, cb)
    ref = check_json(tmp_path / "trainer_state.json", "--kl-max", "1e-3", "--length", "64")
    hist = [e for e in t.state.log_history if "loss" in e]
    assert [e["step"] for e in hist] == [1, 2, 3, 4, 5, 6] == sorted(ref)
    (events,) = tmp_path.glob("runs/*/events.out.tfevents.*")  # TensorBoardCallback's
    tb = tb_scalars(events)
    for e in hist:
        r = ref[e["step"]]
        assert same(e["trm/B_star"], r["unified"])
        assert e["trm/vacuous"] == int(r["status"] == "vacuous")
        assert e["trm/refuted"] == int(r["status"] == "refuted") == 0  # TRL: detectors only
        assert e["trm/flagged"] == int("flagged" in r)
        for k in KEYS:  # TensorBoard stores float32
            assert tb[("train/" + k, e["step"])] == np.float32(e[k]), k
    # independent of the code: k2 = max^2 / 2 against delta = 1e-3
    assert [e["trm/flagged"] for e in hist] == [int(x * x / 2 > 1e-3) for x in LOGP_MAX]
    assert [e["trm/flagged"] for e in hist] == [0, 1, 0, 1, 0, 0]  # 0.04**2 / 2 < 1e-3
    # T = 64, delta = 1e-3: B* = PM-KL = 4 u sum_t min(1, sqrt((t-1) delta / 2)), u = sqrt(5e-4)
    u = math.sqrt(5e-4)
    pm = 4 * u * sum(min(1.0, math.sqrt((t - 1) * 5e-4)) for t in range(1, 65))
    mix = 4 * 64 * u * min(1.0, math.sqrt(64 * 1e-3 / 2))
    coupling = 4 * u * sum(min(1.0, (t - 1) * u) for t in range(1, 65))
    assert hist[0]["trm/B_star"] == pytest.approx(min(pm, mix, coupling), rel=1e-12)
    # the callback moved itself ahead of the TensorBoard callback
    names = [type(c).__name__ for c in t.callback_handler.callbacks]
    assert names.index("TRMCallback") < names.index("TensorBoardCallback")
    # the saved state on disk holds them too
    saved = json.loads((tmp_path / "trainer_state.json").read_text())["log_history"]
    assert all(all(k in e for k in KEYS) for e in saved if "loss" in e)


def test_length_defaults_to_max_completion_length_and_no_assumption(tmp_path):
    cb = TRMCallback()  # no assumption: B* is the estimate, state unknown
    t = train(tmp_path, cb, steps=3, args_cls=GRPOLikeConfig, max_completion_length=48)
    ref = check_json(tmp_path / "trainer_state.json", "--length", "48")
    for e in (e for e in t.state.log_history if "loss" in e):
        assert same(e["trm/B_star"], ref[e["step"]]["unified"])
        assert ref[e["step"]]["T"] == 48 and not math.isnan(e["trm/B_star"])


@pytest.mark.parametrize("stop_on", ["flagged", ["vacuous", "flagged"]])
def test_stop_on_flagged_stops_training(tmp_path, caplog, stop_on):
    cb = TRMCallback(kl_max=1e-3, length=64, stop_on=stop_on)
    with caplog.at_level("WARNING", logger="trmbounds"):
        t = train(tmp_path, cb)
    assert t.state.global_step == 2  # the first flagged step (k2 = 1.25e-3 > 1e-3)
    assert cb.stopped.step == 2 and cb.stopped.flagged
    assert "stopping training at step 2" in caplog.text


def test_no_mismatch_metric_no_keys_and_bad_settings(tmp_path):
    class Plain(transformers.Trainer):
        pass

    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=4, logging_steps=1,
        report_to=[], use_cpu=True, disable_tqdm=True, save_strategy="no",
    )  # fmt: skip
    t = Plain(model=tiny_llama(0), args=args, train_dataset=Data(),
              callbacks=[TRMCallback(kl_max=1e-3)])  # fmt: skip
    t.train()
    assert not any(k in e for e in t.state.log_history for k in KEYS)
    with pytest.raises(TrmboundsError, match="stop_on"):
        TRMCallback(stop_on="bad")
    with pytest.raises(TrmboundsError, match="kl_max"):
        TRMCallback(kl_max=-1)


def test_importing_the_module_does_not_import_transformers():
    import subprocess

    code = (
        "import sys, trmbounds.integrations.trl as m; print('transformers' in sys.modules); "
        "m.TRMCallback; print('transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]


# ------------------------------------------- the real GRPOTrainer (the `trl` extra)
def grpo(tmp_path, monkeypatch, cls=None, callbacks=(), steps=3, **kw):
    """The real GRPOTrainer (or ``cls``) on a tiny Qwen2, vLLM replaced by PerturbedVLLM
    (docs/scripts/trl_sim.py, shared with the README figure's script)."""
    pytest.importorskip("trl")
    pytest.importorskip("datasets")
    import trl.trainer.grpo_trainer as G

    sys.path.insert(0, str(Path(__file__).parents[1] / "docs" / "scripts"))
    import trl_sim

    monkeypatch.setattr(G, "VLLMGeneration", trl_sim.PerturbedVLLM)
    t = trl_sim.grpo_trainer(tmp_path, steps, cls=cls, callbacks=callbacks,
                             report_to=["tensorboard"], **kw)  # fmt: skip
    t.train()
    t.save_state()
    return t


def test_real_grpo_trainer_with_perturbed_vllm(tmp_path, monkeypatch):
    t = grpo(tmp_path, monkeypatch, callbacks=[TRMCallback(kl_max=1e-3)])
    # length defaulted to max_completion_length = 16
    ref = check_json(tmp_path / "trainer_state.json", "--kl-max", "1e-3", "--length", "16")
    hist = [e for e in t.state.log_history if "sampling/sampling_logp_difference/max" in e]
    assert [e["step"] for e in hist] == [1, 2, 3] == sorted(ref)
    (events,) = tmp_path.glob("runs/*/events.out.tfevents.*")
    tb = tb_scalars(events)
    for e in hist:
        r = ref[e["step"]]
        assert r["T"] == 16 and same(e["trm/B_star"], r["unified"])
        assert e["trm/flagged"] == int("flagged" in r)
        # TRL's max |log p_old - log p_vLLM| squared over 2 against delta (independent)
        assert e["trm/flagged"] == int(e["sampling/sampling_logp_difference/max"] ** 2 / 2 > 1e-3)
        assert e["trm/refuted"] == 0 and e["trm/vacuous"] == int(r["status"] == "vacuous")
        for k in KEYS:
            assert tb[("train/" + k, e["step"])] == np.float32(e[k]), k
    assert any(e["trm/flagged"] for e in hist)  # the perturbation is seen


def test_trm_masks_in_the_real_grpo_trainer(tmp_path, monkeypatch):
    pytest.importorskip("trl")
    import trl.trainer.grpo_trainer as G

    from trmbounds.integrations.trl import TRMGRPOTrainer

    seen = []  # (TRL's own output, the masked output) of every generation batch
    base = G.GRPOTrainer._generate_and_score_completions
    mine = TRMGRPOTrainer._generate_and_score_completions

    def record_base(self, inputs):
        out = base(self, inputs)
        seen.append([{k: v.clone() for k, v in out.items() if torch.is_tensor(v)}])
        return out

    def record_mine(self, inputs):
        out = mine(self, inputs)
        seen[-1].append(out["importance_sampling_ratio"].clone())
        return out

    monkeypatch.setattr(G.GRPOTrainer, "_generate_and_score_completions", record_base)
    monkeypatch.setattr(TRMGRPOTrainer, "_generate_and_score_completions", record_mine)
    d_max, d_avg = 2.5e-3, 5e-4
    t = grpo(tmp_path, monkeypatch, cls=TRMGRPOTrainer, steps=3, trm_max=d_max, trm_avg=d_avg)
    hist = [e for e in t.state.log_history if "trm/acceptance" in e]
    assert [e["step"] for e in hist] == [1, 2, 3] and len(seen) == 3
    rates = []
    for (orig, masked), e in zip(seen, hist):
        # float64 numpy from the same tensors: k2 = (log rho)^2 / 2, k3 = rho - 1 - log rho
        lr = (
            orig["old_per_token_logps"].double() - orig["sampling_per_token_logps"].double()
        ).numpy()
        ok = orig["completion_mask"].bool().numpy() & ~np.isnan(lr)
        lr = np.where(ok, lr, 0.0)
        k2_max = np.where(ok, 0.5 * lr**2, -np.inf).max(1)
        k3_mean = np.where(ok, np.expm1(lr) - lr, 0.0).sum(1) / np.maximum(ok.sum(1), 1)
        keep = (k2_max <= d_max) & (k3_mean <= d_avg)
        want = orig["importance_sampling_ratio"].double().numpy() * keep[:, None]
        np.testing.assert_allclose(masked.double().numpy(), want, rtol=0, atol=0)
        rates.append(keep.mean())
        assert e["trm/acceptance"] == pytest.approx(keep.mean(), abs=1e-7)
        assert e["trm/masked_fraction"] == pytest.approx(1 - keep.mean(), abs=1e-7)
    assert 0 < min(rates) < 1 or 0 < max(rates) < 1  # the thresholds bite, not all or none
    # check on the run's trainer_state.json reads the acceptance (the trl preset)
    ref = check_json(tmp_path / "trainer_state.json", "--kl-max", str(d_max))
    for e in hist:
        acc = ref[e["step"]]["stats"]["acceptance"]
        assert acc == {"value": e["trm/acceptance"], "status": "logged", "source": "trm/acceptance"}


def test_trm_masks_masking_everything_zeroes_the_loss(tmp_path, monkeypatch):
    pytest.importorskip("trl")
    from trmbounds.integrations.trl import TRMGRPOTrainer

    # max k2 <= 0 holds for no sequence with any mismatch: every sequence is masked, so
    # every token's loss is multiplied by 0 (TRL's beta = 0: no KL penalty term)
    t = grpo(tmp_path, monkeypatch, cls=TRMGRPOTrainer, steps=2, trm_max=0.0)
    hist = [e for e in t.state.log_history if "trm/acceptance" in e]
    assert [e["trm/acceptance"] for e in hist] == [0.0, 0.0]
    assert [e["loss"] for e in hist] == [0.0, 0.0] and [e["grad_norm"] for e in hist] == [0.0, 0.0]
    u = grpo(tmp_path / "plain", monkeypatch, steps=2)
    assert all(e["grad_norm"] > 0 for e in u.state.log_history if "grad_norm" in e)


def test_trm_masks_need_vllm_log_probs(tmp_path):
    pytest.importorskip("trl")
    from trmbounds.integrations.trl import TRMGRPOTrainer

    with pytest.raises(TrmboundsError, match="trm_max and/or trm_avg"):
        TRMGRPOTrainer(model=None)
    with pytest.raises(TrmboundsError, match="trm_max must be"):
        TRMGRPOTrainer(model=None, trm_max=-1)


# ------------------------------------- the README figure (docs/scripts/live_run.py)
ROOT = Path(__file__).parents[1]
SCRIPT = ROOT / "docs" / "scripts" / "live_run.py"


def test_readme_monitor_section_shows_the_live_run_figure():
    readme = (ROOT / "README.md").read_text()
    sec = readme.split("## Monitor a run live\n", 1)[1].split("\n## ", 1)[0]
    assert "](docs/figures/live_run.png)" in sec and "](docs/scripts/live_run.py)" in sec
    assert "simulated" in sec
    png = (ROOT / "docs" / "figures" / "live_run.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) < 150_000


def test_live_run_script_help_and_a_two_step_run(tmp_path):
    import os
    import subprocess

    run = lambda *a: subprocess.run(  # noqa: E731
        [sys.executable, str(SCRIPT), *a], capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    r = run("--help")
    assert r.returncode == 0 and "--steps" in r.stdout
    r = run("--steps", "0", "-o", str(tmp_path / "never.png"))  # never the README figure
    assert r.returncode == 2 and "--steps must be >= 1" in r.stderr
    pytest.importorskip("trl")
    pytest.importorskip("matplotlib")
    out = tmp_path / "live.png"
    r = run("--steps", "2", "-o", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().endswith(f"Wrote {out}")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
