"""``measure --rollouts``: certified per-token intervals from an engine's top-k log-probs.

The trainer is a tiny random Llama (64-token vocabulary); the "engine" is the same model
with perturbed logits (tests/engine_sim.py), sampling responses and writing top-k
log-probs in each supported layout (native, vLLM completions, SGLang /generate, laid
out as their source writes them; sources cited in engine_sim.py). References: the exact
KL(p || q) and TV of every context from both full distributions (the engine's, kept by
the simulator, and the model's own full-forward softmax in float64), independent of
trmbounds' code.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from tinymodel import tiny_llama
from typer.testing import CliRunner

from trmbounds.cli import app
from trmbounds.errors import TrmboundsError
from trmbounds.measure import measure_rollouts, read_rollouts
from trmbounds.stats import evaluate, load_stats

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from engine_sim import WRITERS, engine_rollouts, exact_divergences  # noqa: E402

V = 64
#: Round-off allowed to the float32 scoring against float64 references: a sum over the V
#: tokens of a row in float32 errs by at most about V·eps32 (relative to its terms' sum,
#: here <= 1: probabilities); torch's float32 digits differ from one CPU to another.
F32_TOL = V * float(np.finfo(np.float32).eps)
PROMPTS = [[2, 5, 6, 7], [2, 9], [2, 10, 11, 12, 13, 14], [2, 20, 21], [2, 30]]


def _tiny(seed: int = 0):
    return tiny_llama(seed)  # tests/tinymodel.py


@pytest.fixture(scope="module")
def model():
    return _tiny()


@pytest.fixture(scope="module")
def model64():
    return _tiny().double()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, model):
    d = tmp_path_factory.mktemp("tiny-trainer")
    model.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def rolls(model):
    return engine_rollouts(model, PROMPTS, seed=1, noise=0.5, n_new=6)


def _write(tmp_path, name, lines):
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n")
    return p


def _contains(rec, model, rolls, temperature=1.0, tol=F32_TOL):
    widths = []
    for i, r in enumerate(rolls):
        kl, tv = exact_divergences(model, r, temperature)
        assert rec.lengths[i] == len(kl)
        assert (rec.seq("kl_lo", i) <= kl + tol).all(), (i, rec.seq("kl_lo", i), kl)
        assert (kl <= rec.seq("kl_hi", i) + tol).all(), (i, kl, rec.seq("kl_hi", i))
        assert (rec.seq("tv_lo", i) <= tv + tol).all(), (i, rec.seq("tv_lo", i), tv)
        assert (tv <= rec.seq("tv_hi", i) + tol).all(), (i, tv, rec.seq("tv_hi", i))
        widths.append(
            np.stack(
                [
                    rec.seq("kl_hi", i) - rec.seq("kl_lo", i),
                    rec.seq("tv_hi", i) - rec.seq("tv_lo", i),
                ]
            )
        )
    return np.concatenate(widths, 1)


@pytest.mark.parametrize("fmt", ["native", "vllm", "sglang"])
@pytest.mark.parametrize("k", [1, 3, 20])
def test_intervals_contain_the_exact_values(tmp_path, model, rolls, fmt, k):
    path = _write(tmp_path, "r.jsonl", WRITERS[fmt](rolls, k))
    m = measure_rollouts(path, model, rollout_format=fmt, device="cpu", batch_size=2)
    w = _contains(m.records, model, rolls)
    assert (w >= 0).all()
    # the sampled tokens and the engine's log-probs are carried over unchanged
    for i, r in enumerate(rolls):
        assert m.records.seq("tokens", i).tolist() == r["response_ids"]
        np.testing.assert_allclose(
            m.records.seq("logp_roll", i),
            [math.log(d[y]) for d, y in zip(r["dists"], r["response_ids"])],
            rtol=0,
            atol=1e-12,
        )


def test_widths_shrink_as_k_grows_and_vanish_at_k_equal_v(tmp_path, model64, rolls):
    # a float64 trainer: the float round-off the ends are widened by is ~1e-14
    prev = None
    for k in (1, 2, 5, 20, V):
        path = _write(tmp_path, f"r{k}.jsonl", WRITERS["native"](rolls, k))
        m = measure_rollouts(path, model64, device="cpu")
        w = _contains(m.records, model64, rolls, tol=1e-9)
        if prev is not None:  # finer partition: the lower end rises, the upper falls
            assert (w <= prev + 1e-9).all(), k
        prev = w
    assert w.max() < 1e-6  # k = V: both intervals collapse to the exact values
    # the reported mass is the engine's own probability of the reported tokens
    assert m.records.reported_mass.min() == pytest.approx(1.0, abs=1e-9)


def test_temperature_and_top_p_processed_logprobs(tmp_path, model):
    # the engine samples at temperature 0.7 with top-p 0.8 and reports the processed
    # (truncated, renormalised) distribution; the trainer is scored at 0.7 and keeps
    # full support, so the mass it puts outside the nucleus is missing mass
    rolls = engine_rollouts(model, PROMPTS, seed=2, noise=0.3, temperature=0.7, top_p=0.8)
    lines = WRITERS["native"](rolls, 5, temperature=0.7, top_p=0.8, logprobs_mode="processed")
    path = _write(tmp_path, "tp.jsonl", lines)
    m = measure_rollouts(path, model, device="cpu")
    _contains(m.records, model, rolls, temperature=0.7)
    assert m.stats.missing_mass is not None and m.stats.missing_mass > 0
    assert any("truncates" in w for w in m.warnings)
    # the upper end of the missing mass holds the exact missing mass at every context
    for i, r in enumerate(rolls):
        ids = torch.tensor([r["prompt_ids"] + r["response_ids"]])
        with torch.no_grad():
            lg = model(ids).logits[0].double().numpy() / 0.7
        Lp = len(r["prompt_ids"])
        for t, p in enumerate(r["dists"]):
            q = np.exp(lg[Lp - 1 + t] - lg[Lp - 1 + t].max())
            q /= q.sum()
            assert q[p == 0].sum() <= m.records.seq("missing_mass", i)[t] + 1e-6
    ev = evaluate(m.stats)
    assert ev.to_dict()["bounds"]["adaptive"] is None  # no full support: no Adaptive


@pytest.mark.parametrize(
    "extra, defaults, message",
    [
        ({"temperature": 0.7}, {}, "temperature=0.7 but no logprobs_mode"),
        ({"temperature": 0.7, "logprobs_mode": "raw_logprobs"}, {}, "temperature=0.7 with raw"),
        ({"top_p": 0.9, "logprobs_mode": "temperature"}, {}, "top_p=0.9 with temperature"),
        ({}, {"top_k": 5, "logprobs_mode": "raw"}, "top_k=5 with raw"),
        ({"logprobs_mode": "processed_logits"}, {}, "returns logits"),
        ({"temperature": 0.0, "logprobs_mode": "processed"}, {}, "greedy"),
    ],
)
def test_sampling_settings_that_do_not_describe_the_sampled_distribution_are_refused(
    tmp_path, model, rolls, extra, defaults, message
):
    path = _write(tmp_path, "s.jsonl", WRITERS["native"](rolls, 3, **extra))
    with pytest.raises(TrmboundsError, match=message):
        measure_rollouts(path, model, device="cpu", **defaults)


def test_aggregates_use_upper_ends_and_tv_seq_is_the_bounded_estimator(tmp_path, model, rolls):
    path = _write(tmp_path, "r.jsonl", WRITERS["sglang"](rolls, 3))
    m = measure_rollouts(path, model, rollout_format="sglang", device="cpu")
    rec, s = m.records, m.stats
    per_seq = [rec.seq("kl_hi", i) for i in range(rec.n_sequences)]
    assert [len(a) for a in per_seq] == [len(r["response_ids"]) for r in rolls]
    assert s.kl_max == pytest.approx(max(a.max() for a in per_seq), rel=1e-12)
    assert s.tv_max == pytest.approx(rec.tv_hi.max(), rel=1e-12)
    assert s.kl_seq == pytest.approx(np.mean([a.sum() for a in per_seq]), rel=1e-12)
    # tv_seq: mean over responses of (1 - prod_t rho_t)^+, rho from the engine's
    # log-probs (the simulator's p) and the trainer's full-forward q
    terms = []
    for r in rolls:
        ids = torch.tensor([r["prompt_ids"] + r["response_ids"]])
        with torch.no_grad():
            lg = torch.log_softmax(model(ids).logits[0].double(), -1).numpy()
        Lp = len(r["prompt_ids"])
        s_log = sum(
            lg[Lp - 1 + t, y] - math.log(d[y])
            for t, (d, y) in enumerate(zip(r["dists"], r["response_ids"]))
        )
        terms.append(max(0.0, 1 - math.exp(s_log)))
    # a float32 log-probability per token, summed over a response: a few V·eps32 each
    L = max(len(r["response_ids"]) for r in rolls)
    assert s.tv_seq == pytest.approx(sum(terms) / len(terms), abs=L * F32_TOL)
    assert s.status["kl_max"] == "empirical" and s.status["tv_seq"] == "estimate"
    ends = s.meta["interval_ends"]
    assert ends["kl_max"].startswith("upper") and ends["tv_seq"].startswith("none")
    iv = s.meta["intervals"]
    assert iv["kl_max_lower"] == pytest.approx(rec.kl_lo.max(), rel=1e-12)
    assert iv["kl_max_lower"] <= s.kl_max
    assert "kl_hi" in s.meta["acceptance"]["trm_max"]


def test_cli_round_trip_through_eval_and_check(tmp_path, model_dir, rolls, model):
    path = _write(tmp_path, "r.jsonl", WRITERS["vllm"](rolls, 4))
    out, toks = tmp_path / "stats.json", tmp_path / "tokens.jsonl"
    args = ["measure", "--rollouts", str(path), "--rollout-format", "vllm"]
    args += ["--train", str(model_dir), "--device", "cpu", "-o", str(out), "--tokens", str(toks)]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "certified per-token intervals" in r.stdout
    data = json.loads(out.read_text())
    s = load_stats(out)
    e = CliRunner().invoke(app, ["eval", "--stats", str(out), "--json"])
    assert e.exit_code == 0, e.output
    assert json.loads(e.stdout)["bounds"] == pytest.approx(evaluate(s).to_dict()["bounds"])
    c = CliRunner().invoke(app, ["check", str(out), "--json"])
    assert c.exit_code == 0, c.output
    st = json.loads(c.stdout)["steps"][0]["stats"]
    assert st["kl_seq"]["value"] == data["kl_seq"] and st["tv_seq"]["value"] == data["tv_seq"]
    # the per-token dump carries the intervals, never exact-value columns
    lines = [json.loads(x) for x in toks.read_text().splitlines()]
    assert len(lines) == len(rolls)
    assert {"kl_lo", "kl_hi", "tv_lo", "tv_hi", "reported_mass"} <= set(lines[0])
    assert "kl_token" not in lines[0] and "tv_token" not in lines[0]
    c2 = CliRunner().invoke(app, ["check", str(toks), "--json"])
    assert c2.exit_code == 0, c2.output
    # checking the dump says what it holds and where the bounds from the upper ends are
    notes = " ".join(json.loads(c2.stdout)["summary"]["notes"])
    assert "certified per-token interval ends" in notes and "statistics file" in notes
    # its certified lower ends are lower bounds on delta and eps: a delta below the
    # largest kl_lo in the file is refuted (kl_lo <= the exact KL at that context)
    kl_lo_max = max(max(x["kl_lo"]) for x in lines)
    tv_lo_max = max(max(x["tv_lo"]) for x in lines)
    assert kl_lo_max > 0
    # ground truth (model is the trainer saved in model_dir): the exact max KL over these
    # contexts, from both full distributions, is above the refuted delta
    exact_max = max(float(exact_divergences(model, r)[0].max()) for r in rolls)
    assert kl_lo_max <= exact_max * (1 + 1e-9)
    c3 = CliRunner().invoke(app, ["check", str(toks), "--json", "--kl-max", str(kl_lo_max / 2)])
    assert c3.exit_code == 0, c3.output
    step = json.loads(c3.stdout)["steps"][0]
    assert step["status"] == "refuted", step["status"]
    assert step["stats"]["kl_lower_bound"]["value"] == pytest.approx(kl_lo_max, rel=1e-12)
    assert step["stats"]["tv_lower_bound"]["value"] >= tv_lo_max * (1 - 1e-12)
    c4 = CliRunner().invoke(app, ["check", str(toks), "--json", "--kl-max", str(kl_lo_max * 2)])
    assert json.loads(c4.stdout)["steps"][0]["status"] != "refuted"


def _refused(tmp_path, model_dir, text: str, message: str) -> str:
    """``measure --rollouts`` on a one-line file ``text``: exit 2, one ``Error:`` line
    holding ``message``, no traceback, the file unchanged. Returns the line."""
    p = tmp_path / "bad.jsonl"
    p.write_text(text + "\n")
    before = p.read_bytes()
    r = CliRunner().invoke(
        app,
        ["measure", "--rollouts", str(p), "--train", str(model_dir), "--device", "cpu",
         "-o", str(tmp_path / "o.json")],
    )  # fmt: skip
    assert r.exit_code == 2, r.output
    err = r.stderr.strip()
    assert err.startswith("Error:") and len(err.splitlines()) == 1 and message in err, err
    assert "Traceback" not in r.output and p.read_bytes() == before
    return err


def _native_record(**over):
    rec = {
        "prompt_ids": [2, 5],
        "response_ids": [7, 8],
        "logprobs": [math.log(0.5), math.log(0.2)],
        "top_logprobs": [
            {"7": math.log(0.5), "9": math.log(0.3)},
            {"9": math.log(0.6), "8": math.log(0.2)},
        ],
    }
    rec.update(over)
    return rec


@pytest.mark.parametrize(
    "rec, message",
    [
        (
            {k: v for k, v in _native_record().items() if k != "logprobs"},
            "missing field 'logprobs'",
        ),
        (_native_record(response_ids=[7, 99]), "outside the vocabulary"),
        (
            _native_record(top_logprobs=[{"7": math.log(0.5), "9": math.log(0.3)}, {"70": -1.0}]),
            "outside the vocabulary",
        ),
        (
            _native_record(top_logprobs=[{"9": math.log(0.3), "7": math.log(0.5)}, {"8": -1.6}]),
            "not sorted",
        ),
        (
            _native_record(top_logprobs=[{"7": math.log(0.5), "9": math.log(0.6)}, {"8": -1.6}]),
            "not sorted",
        ),
        (
            _native_record(top_logprobs=[{"7": math.log(0.5), "9": math.log(0.45)}, {"9": -0.1}]),
            "sum to",
        ),
        (_native_record(logprobs=[math.log(0.5)]), "different lengths"),
        (_native_record(logprobs=[0.5, -1.0]), "log-probability"),
        (_native_record(response_ids=[7, "x"]), "not an integer token id"),
    ],
)
def test_bad_rollout_files_exit_2_with_one_line(tmp_path, model_dir, rec, message):
    err = _refused(tmp_path, model_dir, json.dumps(rec), message)
    assert "line 1" in err or "vocabulary" in err


def test_reader_formats_agree_and_skip_empty_responses(tmp_path, rolls):
    by = {}
    for fmt in ("native", "vllm", "sglang"):
        lines = WRITERS[fmt](rolls, 3)
        p = _write(tmp_path, f"{fmt}.jsonl", lines)
        ros, skipped = read_rollouts(p, fmt)
        assert skipped == 0 and len(ros) == len(rolls)
        by[fmt] = ros
    for a, b, c in zip(by["native"], by["vllm"], by["sglang"]):
        assert a.prompt_ids == b.prompt_ids == c.prompt_ids
        assert a.response_ids == b.response_ids == c.response_ids
        np.testing.assert_allclose(a.logprobs, c.logprobs)
    p = tmp_path / "e.jsonl"
    p.write_text(
        json.dumps(_native_record()) + "\n"
        + json.dumps(_native_record(response_ids=[], logprobs=[], top_logprobs=[])) + "\n"
    )  # fmt: skip
    ros, skipped = read_rollouts(p)
    assert len(ros) == 1 and skipped == 1
    with pytest.raises(TrmboundsError, match="unknown rollout format"):
        read_rollouts(p, "tgi")


def test_cli_needs_train_with_rollouts_and_not_roll(tmp_path, model_dir):
    p = tmp_path / "r.jsonl"
    p.write_text(json.dumps(_native_record()) + "\n")
    for args, msg in (
        (["--rollouts", str(p)], "needs --train"),
        (
            ["--rollouts", str(p), "--train", str(model_dir), "--roll", str(model_dir)],
            "or --rollouts",
        ),
    ):
        r = CliRunner().invoke(app, ["measure", *args, "-o", str(tmp_path / "o.json")])
        assert r.exit_code == 2 and msg in r.stderr, r.output


def test_docs_vllm_offline_script_writes_readable_records(tmp_path, model, rolls):
    # objects laid out as vLLM's RequestOutput / CompletionOutput / Logprob
    # (vllm-project/vllm vllm/outputs.py, vllm/logprobs.py: Logprob(logprob, rank,
    # decoded_token); one {token_id: Logprob} per position holding the top-k by rank
    # and the sampled token whatever its rank)
    import importlib.util
    from pathlib import Path
    from types import SimpleNamespace

    spec = importlib.util.spec_from_file_location(
        "vllm_offline_rollouts",
        Path(__file__).parents[1] / "docs" / "scripts" / "vllm_offline_rollouts.py",
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    k = 4
    outs = []
    for r in rolls:
        pos = []
        for d, y in zip(r["dists"], r["response_ids"]):
            order = list(np.argsort(-d, kind="stable"))
            entry = {}
            for rank, v in enumerate(order[:k], start=1):
                entry[int(v)] = SimpleNamespace(logprob=math.log(d[v]), rank=rank, decoded_token="")
            entry[y] = SimpleNamespace(
                logprob=math.log(d[y]), rank=order.index(y) + 1, decoded_token=""
            )
            pos.append(entry)
        comp = SimpleNamespace(token_ids=r["response_ids"], logprobs=pos)
        outs.append(SimpleNamespace(prompt_token_ids=r["prompt_ids"], outputs=[comp]))
    lines = [json.dumps(x) for x in mod.records(outs, k, 1.0, 1.0, 0)]
    path = _write(tmp_path, "offline.jsonl", lines)
    m = measure_rollouts(path, model, device="cpu")
    _contains(m.records, model, rolls)
    # the same as the native writer's top-k
    ref = measure_rollouts(_write(tmp_path, "n.jsonl", WRITERS["native"](rolls, k)), model)
    np.testing.assert_allclose(m.records.kl_hi, ref.records.kl_hi, rtol=1e-12)


def test_sharded_trainer_offloaded_to_disk_gives_the_same_intervals(tmp_path, rolls):
    # a 4-layer tiny trainer under a CPU cap of half its size: accelerate's device_map
    # "auto" keeps the first layers in RAM and offloads the rest to disk; the scores
    # must be those of the same model in one piece
    pytest.importorskip("accelerate")
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
        num_attention_heads=2, num_key_value_heads=2, eos_token_id=3, bos_token_id=2,
        pad_token_id=0,
    )  # fmt: skip
    whole = transformers.LlamaForCausalLM(cfg).eval()
    d = tmp_path / "tiny4"
    whole.save_pretrained(d)
    size = sum(p.numel() * p.element_size() for p in whole.parameters())
    path = _write(tmp_path, "r.jsonl", WRITERS["native"](rolls, 3))
    ref = measure_rollouts(path, whole, device="cpu")
    m = measure_rollouts(
        path,
        d,
        device="cpu",
        device_map="auto",
        device_memory={"cpu": size // 2},
        offload_folder=tmp_path / "offload",
    )
    placed = set(m.stats.meta["device_map"]["placement"].values())
    assert "disk" in placed and "cpu" in placed, m.stats.meta["device_map"]
    for k in ("kl_lo", "kl_hi", "tv_lo", "tv_hi"):
        np.testing.assert_allclose(
            getattr(m.records, k), getattr(ref.records, k), atol=F32_TOL
        )  # float32 both, other layouts: each within round-off of the float64 value


def test_device_map_without_accelerate_is_a_clear_error(tmp_path, model_dir, rolls, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "accelerate", None)
    path = _write(tmp_path, "r.jsonl", WRITERS["native"](rolls, 3))
    with pytest.raises(TrmboundsError, match="needs accelerate"):
        measure_rollouts(path, model_dir, device="cpu", device_map="auto")
    with pytest.raises(TrmboundsError, match="unknown device map"):
        measure_rollouts(path, model_dir, device="cpu", device_map="everywhere")


def test_cli_device_map_auto(tmp_path, model_dir, rolls):
    pytest.importorskip("accelerate")
    path = _write(tmp_path, "r.jsonl", WRITERS["native"](rolls, 3))
    out = tmp_path / "s.json"
    r = CliRunner().invoke(
        app,
        ["measure", "--rollouts", str(path), "--train", str(model_dir), "--device-map", "auto",
         "--offload-folder", str(tmp_path / "off"), "-o", str(out), "--json"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads(out.read_text())["meta"]["device_map"]["requested"] == "auto"


@pytest.mark.parametrize(
    "fmt, mutate, message",
    [
        ("vllm", lambda d: d["choices"][0].pop("token_ids"), "return_token_ids"),
        ("vllm", lambda d: d["choices"][0].pop("logprobs"), "logprobs=k"),
        (
            "vllm",
            lambda d: d["choices"][0]["logprobs"]["top_logprobs"].__setitem__(0, {"the": -0.1}),
            "return_tokens_as_token_ids",
        ),
        ("sglang", lambda d: d.pop("prompt_ids"), "prompt_ids"),
        ("sglang", lambda d: d["meta_info"].pop("output_top_logprobs"), "top_logprobs_num"),
    ],
)
def test_bad_engine_responses_exit_2_with_one_line(
    tmp_path, model_dir, rolls, fmt, mutate, message
):
    d = json.loads(WRITERS[fmt](rolls[:1], 3)[0])
    mutate(d)
    p = _write(tmp_path, "bad.jsonl", [json.dumps(d)])
    r = CliRunner().invoke(
        app,
        ["measure", "--rollouts", str(p), "--rollout-format", fmt, "--train", str(model_dir),
         "-o", str(tmp_path / "o.json")],
    )  # fmt: skip
    assert r.exit_code == 2, r.output
    err = r.stderr.strip()
    assert err.startswith("Error:") and len(err.splitlines()) == 1 and message in err, err


# ------------------------------------------------------- review fixes (issue: fix12)
def test_zero_probability_top_k_entries_count_as_truncation(tmp_path, model):
    # top-p 0.3 sampling with processed log-probs, but the records do not say so: the
    # top-40 lists carry entries of probability 0 (-9999), which only a truncated
    # distribution has. The missing mass must be reported and hold the exact one.
    rolls = engine_rollouts(model, PROMPTS, seed=2, noise=0.5, n_new=6, top_p=0.3)
    path = _write(tmp_path, "silent.jsonl", WRITERS["native"](rolls, 40))
    m = measure_rollouts(path, model, device="cpu")
    assert m.stats.meta["rollouts"]["truncated_sampling"] is True
    assert "probability 0" in m.stats.meta["rollouts"]["truncation_evidence"]
    assert m.stats.missing_mass is not None and m.stats.missing_mass > 0
    assert any("treated as truncated" in w for w in m.warnings)
    for i, r in enumerate(rolls):  # exact missing mass: q outside the engine's support
        ids = torch.tensor([r["prompt_ids"] + r["response_ids"]])
        with torch.no_grad():
            lg = model(ids).logits[0].double().numpy()
        Lp = len(r["prompt_ids"])
        for t, p in enumerate(r["dists"]):
            q = np.exp(lg[Lp - 1 + t] - lg[Lp - 1 + t].max())
            q /= q.sum()
            assert q[p == 0].sum() <= m.records.seq("missing_mass", i)[t] + 1e-6
    _contains(m.records, model, rolls)


def test_top_k_minus_one_is_off(tmp_path, model, rolls):
    # vLLM's and SGLang's top_k = -1 means no top-k truncation
    path = _write(tmp_path, "k.jsonl", WRITERS["native"](rolls, 3, top_k=-1))
    m = measure_rollouts(path, model, device="cpu")
    assert m.stats.meta["rollouts"]["truncated_sampling"] is False
    assert m.stats.missing_mass is None
    bad = _write(tmp_path, "k2.jsonl", WRITERS["native"](rolls, 3, top_k=-2))
    with pytest.raises(TrmboundsError, match="top_k=-2"):
        measure_rollouts(bad, model, device="cpu")


@pytest.mark.parametrize(
    "extra",
    [
        {"repetition_penalty": 1.1},
        {"presence_penalty": 0.5, "logprobs_mode": "raw"},
        {"logit_bias": {"5": -100}, "logprobs_mode": "temperature"},
    ],
)
def test_penalties_need_processed_logprobs(tmp_path, model, rolls, extra):
    # vLLM's raw log-probs are computed before penalties / logit_bias / bad words
    path = _write(tmp_path, "pen.jsonl", WRITERS["native"](rolls, 3, **extra))
    with pytest.raises(TrmboundsError, match="before penalties"):
        measure_rollouts(path, model, device="cpu")
    neutral = {k: (1.0 if k == "repetition_penalty" else 0.0) for k in extra if "penalty" in k}
    ok = _write(tmp_path, "ok.jsonl", WRITERS["native"](rolls, 3, **neutral))
    measure_rollouts(ok, model, device="cpu")  # neutral values are no penalty
    proc = dict(extra, logprobs_mode="processed")
    measure_rollouts(_write(tmp_path, "pr.jsonl", WRITERS["native"](rolls, 3, **proc)), model)


def test_cli_records_the_generation_cap_and_refuses_sampling_options(tmp_path, model_dir, rolls):
    path = _write(tmp_path, "r.jsonl", WRITERS["vllm"](rolls, 4))
    base = ["measure", "--rollouts", str(path), "--rollout-format", "vllm"]
    base += ["--train", str(model_dir), "--device", "cpu"]
    out = tmp_path / "s.json"
    r = CliRunner().invoke(app, [*base, "--max-new-tokens", "10", "-o", str(out)])
    assert r.exit_code == 0, r.output
    s = load_stats(out)
    assert s.meta["sampling"]["max_new_tokens"] == 10
    from trmbounds.stats import stats_cap

    assert stats_cap(s) == 10  # the horizon eval --stats and check read
    # the statistics are the upper-end maxima; the certified lower bounds always written
    iv = s.meta["intervals"]
    assert 0 <= iv["kl_max_lower"] <= s.kl_max and 0 <= iv["tv_max_lower"] <= s.tv_max
    flat = " ".join(r.stdout.split())
    assert "lower estimates of the maxima" not in flat and "maxima of the upper ends" in flat
    assert "not lower estimates" in s.meta["maxima"] and "kl_max_lower" in s.meta["maxima"]
    # a response longer than the cap: the cap is not the engine's
    r = CliRunner().invoke(app, [*base, "--max-new-tokens", "5", "-o", str(tmp_path / "x.json")])
    assert r.exit_code == 2 and "longer than --max-new-tokens 5" in r.stderr, r.output
    # without a cap: no horizon recorded, and a warning says so
    r = CliRunner().invoke(app, [*base, "-o", str(tmp_path / "y.json")])
    assert r.exit_code == 0 and "no generation cap" in " ".join(r.stderr.split()), r.output
    assert load_stats(tmp_path / "y.json").meta["sampling"]["max_new_tokens"] is None
    for opt in (["-n", "2"], ["--num-samples", "2"], ["--seed", "3"], ["--roll-dtype", "float32"]):
        r = CliRunner().invoke(app, [*base, *opt, "-o", str(tmp_path / "z.json")])
        err = r.stderr.strip()
        assert r.exit_code == 2 and len(err.splitlines()) == 1, r.output
        assert err.startswith("Error:") and "only with --roll" in err, err


def test_intervals_hold_at_a_large_vocabulary_with_every_token_reported():
    # Review finding: at V = 151,936 the float32 log-softmax normaliser was off by ~1.5e-5,
    # beyond the float32 widening: the exact KL of a one-hot engine fell outside. The
    # exact values here come from a numpy float64 log-sum-exp (math.fsum), independent
    # of the code under test.
    from trmbounds.measure.intervals import token_intervals

    Vb = 151_936
    g = torch.Generator().manual_seed(21)
    y = (torch.randn(8, Vb, dtype=torch.float64, generator=g) * 3).float()[2:3]
    yy = y.double().numpy()[0]
    mx = yy.max()
    lse = mx + math.log(math.fsum(np.exp(yy - mx)))
    a = int(yy.argmax())
    kl, tv = lse - yy[a], 1 - math.exp(yy[a] - lse)  # KL(delta_a || q), TV
    ids = torch.arange(Vb)
    ids = torch.cat([torch.tensor([a]), ids[ids != a]])[None, :]  # k = V
    lp = torch.full((1, Vb), -math.inf, dtype=torch.float64)
    lp[0, 0] = 0.0
    iv = token_intervals(
        y, ids, lp, torch.ones(1, Vb, dtype=torch.bool), torch.zeros(1, dtype=torch.float64),
        torch.tensor([a]),
    )  # fmt: skip
    assert float(iv.kl_lo[0]) <= kl <= float(iv.kl_hi[0]), (kl, iv.kl_lo, iv.kl_hi)
    assert float(iv.tv_lo[0]) <= tv <= float(iv.tv_hi[0]), (tv, iv.tv_lo, iv.tv_hi)
    assert float(iv.kl_hi[0] - iv.kl_lo[0]) < 1e-9  # k = V: collapsed to the exact value


def test_kl_upper_end_keeps_unreported_mass_above_k_times_p_min():
    # Review finding: the reader allows r <= |U| p_min + 1e-4; with r above |U| p_min the
    # vertex at p_min dropped the excess mass, and the upper end fell below the exact KL.
    # V = 4, top-2 reported, the two unreported tokens each 5e-6 above p_min (round-off of a reported p_min).
    from trmbounds.measure.intervals import token_intervals

    pm = 0.13333
    p = np.array([0.6, pm, (1 - 0.6 - pm) / 2, (1 - 0.6 - pm) / 2])
    q = np.array([0.5, 0.4 - 1e-8, 1e-8, 0.1])
    kl = float(np.sum(p * np.log(p / q)))  # by the definition
    tv = 0.5 * float(np.abs(p - q).sum())
    iv = token_intervals(
        torch.tensor(np.log(q))[None], torch.tensor([[0, 1]]),
        torch.tensor(np.log(p[:2]))[None], torch.tensor([[True, True]]),
        torch.tensor([pm], dtype=torch.float64), torch.tensor([0]),
    )  # fmt: skip
    assert float(iv.kl_lo[0]) <= kl <= float(iv.kl_hi[0]), (kl, iv.kl_lo, iv.kl_hi)
    assert float(iv.tv_lo[0]) <= tv <= float(iv.tv_hi[0])


@pytest.mark.parametrize("k", [20, 300])
def test_kl_upper_end_is_the_vertex_on_the_smallest_q_at_a_large_vocabulary(k):
    # flat rows at V = 151,936: r / p_min puts the vertex on hundreds of tokens (the
    # chunked selection of the smallest q). Expected values from numpy: a float64
    # log-sum-exp (math.fsum), a full sort of the unreported log q, the vertex by hand.
    from trmbounds.measure.intervals import token_intervals

    Vb = 151_936
    g = np.random.default_rng(5)
    y = (g.standard_normal(Vb) * 3).astype(np.float32)
    yy = y.astype(np.float64)
    lq = yy - (yy.max() + math.log(math.fsum(np.exp(yy - yy.max()))))
    x = yy + 0.05 * g.standard_normal(Vb)  # the engine
    lp = x - (x.max() + math.log(math.fsum(np.exp(x - x.max()))))
    top = np.argsort(-lp, kind="stable")[:k]
    p = np.exp(lp)
    kl = math.fsum(p * (lp - lq))  # exact, by the definition
    p_min, r = p[top[-1]], 1 - math.fsum(p[top])
    m_full = math.floor(r / p_min)
    assert m_full > 100  # the case under test: many tokens at the cap
    rho = r - m_full * p_min
    u_lq = np.sort(np.delete(lq, top))[: m_full + 1]
    w = np.append(np.full(m_full, p_min), rho)
    vertex = math.fsum(w * (np.log(w) - u_lq))
    kl_hi = math.fsum(p[top] * (lp[top] - lq[top])) + vertex
    iv = token_intervals(
        torch.from_numpy(y)[None], torch.from_numpy(top)[None], torch.from_numpy(lp[top])[None],
        torch.ones(1, k, dtype=torch.bool), torch.tensor([p_min]), torch.tensor([int(top[0])]),
    )  # fmt: skip
    assert float(iv.kl_lo[0]) <= kl <= float(iv.kl_hi[0]), (kl, iv.kl_lo, iv.kl_hi)
    assert abs(float(iv.kl_hi[0]) - kl_hi) < 1e-9, (float(iv.kl_hi[0]), kl_hi)


def test_outputs_never_go_into_the_model_directory(tmp_path, model_dir, rolls):
    """The trainer's directory is an input: -o / --tokens inside it are refused, with
    --force too, and its files stay as they were."""
    import shutil

    d = tmp_path / "trainer"
    shutil.copytree(model_dir, d)
    before = {f.name: f.read_bytes() for f in d.iterdir()}
    path = _write(tmp_path, "r.jsonl", WRITERS["native"](rolls, 3))
    for opt, target in (
        ("--tokens", "model.safetensors"),
        ("-o", "config.json"),
        ("-o", "new.json"),
    ):
        args = ["measure", "--rollouts", str(path), "--train", str(d), opt, str(d / target)]
        r = CliRunner().invoke(app, [*args, "--force"])
        assert r.exit_code == 2, r.output
        assert "inside the input directory" in r.output and "Traceback" not in r.output
    assert {f.name: f.read_bytes() for f in d.iterdir()} == before


# ------------------------------------------------- second review (new-user walkthrough)
_GOOD = json.dumps(_native_record())


@pytest.mark.parametrize(
    "text, message",
    [
        (_GOOD.replace('"top_logprobs"', '"top_k": 1e400, "top_logprobs"'), "'top_k'"),
        (_GOOD.replace('"top_logprobs"', '"top_k": NaN, "top_logprobs"'), "'top_k'"),
        (_GOOD.replace('"top_logprobs"', '"top_k": 2.5, "top_logprobs"'), "integer"),
        (_GOOD.replace('"top_logprobs"', '"top_k": -1.5, "top_logprobs"'), "integer"),
        (_GOOD.replace('"top_logprobs"', '"temperature": Infinity, "top_logprobs"'), "finite"),
        (_GOOD.replace('"top_logprobs"', '"temperature": ' + "9" * 400 + ', "top_logprobs"'),
         "finite"),
        (json.dumps(_native_record(logprobs=[-(10**400), -1.0])), "probability 0"),
        (json.dumps(_native_record(logprobs=[10**400, -1.0])), "log-probability"),
        (_GOOD.replace('{"9":', '{"99999999999999999999999": -5.0, "9":', 1), "outside any"),
        (_GOOD.replace('{"9":', '{"9": -0.7, "9":', 1), "appears twice"),
        (_GOOD.replace('"response_ids": [', '"response_ids": [' + "9" * 30 + ", ", 1),
         "outside any"),
    ],
)  # fmt: skip
def test_bad_numbers_and_keys_exit_2_with_one_line(tmp_path, model_dir, text, message):
    _refused(tmp_path, model_dir, text, message)


def test_bom_directory_and_list_items(tmp_path, rolls):
    from trmbounds.errors import InputFileError
    from trmbounds.measure.rollouts import read_rollouts

    p = tmp_path / "bom.jsonl"
    p.write_bytes(b"\xef\xbb\xbf" + "\n".join(WRITERS["native"](rolls[:2], 3)).encode() + b"\n")
    assert len(read_rollouts(p)[0]) == 2
    with pytest.raises(InputFileError, match="is a directory"):
        read_rollouts(tmp_path)
    items = [json.loads(x) for x in WRITERS["sglang"](rolls[:2], 3)]
    items[1]["meta_info"]["output_token_logprobs"][0][1] = "x"
    q = _write(tmp_path, "list.jsonl", [json.dumps(items)])
    with pytest.raises(InputFileError, match="item 1"):
        read_rollouts(q, "sglang")


@pytest.mark.parametrize("k", [1, 3])
def test_vllm_top_k_size_is_inferred(tmp_path, rolls, k):
    """vLLM lists the sampled token first and drops it from the top-k entries when it is
    one of them: a position with k + 1 entries shows k, and a sampled token listed with
    fewer than k others is then the last of the top-k. The top-k lists (hence p_min)
    read from vLLM's layout equal those of the native format, which lists the top-k
    itself, for every response where k shows."""
    from trmbounds.measure.rollouts import read_rollouts

    nat = read_rollouts(_write(tmp_path, "n.jsonl", WRITERS["native"](rolls, k)))[0]
    vl = read_rollouts(_write(tmp_path, "v.jsonl", WRITERS["vllm"](rolls, k)), "vllm")[0]
    lines = [json.loads(x) for x in WRITERS["vllm"](rolls, k)]
    shown = 0
    for a, b, line in zip(nat, vl, lines, strict=True):
        tops = line["choices"][0]["logprobs"]["top_logprobs"]
        if max(len(t) for t in tops) < k + 1:
            continue  # k not visible in this response: the weaker reading is kept
        shown += 1
        for t in range(len(a.response_ids)):
            assert set(a.top_ids[t].tolist()) == set(b.top_ids[t].tolist()), t
            assert a.top_logprobs[t].min() == pytest.approx(b.top_logprobs[t].min(), abs=1e-12)
    assert shown >= 2


def test_corrupt_weights_are_one_line(tmp_path, model_dir, rolls):
    import shutil

    d = tmp_path / "broken"
    shutil.copytree(model_dir, d)
    w = d / "model.safetensors"
    w.write_bytes(w.read_bytes()[:1000])  # truncated
    path = _write(tmp_path, "r.jsonl", WRITERS["native"](rolls, 3))
    r = CliRunner().invoke(
        app, ["measure", "--rollouts", str(path), "--train", str(d), "-o", str(tmp_path / "o.json")]
    )
    assert r.exit_code == 2, r.output
    err = r.stderr.strip()
    assert err.startswith("Error: cannot load model") and len(err.splitlines()) == 1, err


def test_missing_mass_warning_says_estimate_not_bound(tmp_path, model):
    # the reported m is a mean over responses of summed per-token upper ends: an estimate
    # (as the table's status says), not an upper bound on the expected missing mass
    rolls = engine_rollouts(model, PROMPTS, seed=2, noise=0.3, top_p=0.8)
    lines = WRITERS["native"](rolls, 5, top_p=0.8, logprobs_mode="processed")
    m = measure_rollouts(_write(tmp_path, "tp.jsonl", lines), model, device="cpu")
    assert m.stats.status["missing_mass"] == "estimate"
    rec = m.records
    want = np.mean([rec.seq("missing_mass", i).sum() for i in range(rec.n_sequences)])
    (w,) = [w for w in m.warnings if "missing mass" in w]
    assert "m <=" not in w, w
    assert f"m ≈ {want:.4g} (estimate: mean over responses of summed upper ends)" in w, w


def test_vllm_sampled_token_appended_last_is_outside_the_top_k(tmp_path, rolls):
    """Early vLLM V1 (vllm/v1/engine/logprobs.py, early 2025) put the top-k first and
    appended the sampled token when it was not one of them. Read as a top-k list, that
    entry would lower p_min below the k-th probability (an upper end that is not one);
    it is counted outside the list, so p_min is never below the native format's."""
    from trmbounds.measure.rollouts import read_rollouts

    k = 3
    lines = []
    for x in WRITERS["vllm"](rolls, k):
        d = json.loads(x)
        tops = d["choices"][0]["logprobs"]["top_logprobs"]
        for t, entry in enumerate(tops):
            first = next(iter(entry))
            items = list(entry.items())
            if len(items) == k + 1:  # the sampled token was injected: move it last
                items = items[1:] + items[:1]
            tops[t] = dict(items)
            assert first in tops[t]
        lines.append(json.dumps(d))
    nat = read_rollouts(_write(tmp_path, "n.jsonl", WRITERS["native"](rolls, k)))[0]
    old = read_rollouts(_write(tmp_path, "o.jsonl", lines), "vllm")[0]
    moved = 0
    for a, b in zip(nat, old, strict=True):
        for t in range(len(a.response_ids)):
            assert b.top_logprobs[t].min() >= a.top_logprobs[t].min() - 1e-12, t
            moved += a.response_ids[t] not in a.top_ids[t]
    assert moved >= 3  # sampled tokens outside the top-k were there to be misread


def test_model_directory_guard_expands_home_and_covers_the_hub_cache(
    tmp_path, model_dir, rolls, monkeypatch
):
    """`--train=~/m` (no shell expansion after '=') and the Hugging Face cache a hub id
    resolves to are inputs too: outputs there are refused with --force."""
    import shutil

    home = tmp_path / "home"
    shutil.copytree(model_dir, home / "m")
    monkeypatch.setenv("HOME", str(home))
    cache = tmp_path / "hfcache"
    (cache / "models--org--tiny").mkdir(parents=True)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    path = _write(tmp_path, "r.jsonl", WRITERS["native"](rolls, 3))
    for train, out in (
        ("~/m", home / "m" / "config.json"),
        (str(model_dir), cache / "models--org--tiny" / "config.json"),
    ):
        r = CliRunner().invoke(
            app, ["measure", "--rollouts", str(path), f"--train={train}", "-o", str(out), "--force"]
        )
        assert r.exit_code == 2 and "inside the input directory" in r.output, r.output


def test_token_id_keys_are_plain_decimals(tmp_path, model_dir):
    for key in ("+9", " 9", "9_0", "٩"):
        text = json.dumps(_native_record()).replace('{"9":', '{"' + key + '":', 1)
        _refused(tmp_path, model_dir, text, "integer token id")
