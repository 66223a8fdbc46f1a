"""Model directories: no code from a model directory ever runs (trust_remote_code=False,
and a directory that names its own code through ``auto_map`` is refused before
transformers reads it); a config's fields cannot crash the reader."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from trmbounds.cli import app

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from tinymodel import tiny_llama  # noqa: E402

#: A module that, if imported, leaves a marker file beside itself.
PLANTED = (
    "import pathlib\n"
    "pathlib.Path(__file__).with_name('RAN').write_text('planted code ran')\n"
    "from transformers import LlamaConfig, LlamaForCausalLM\n"
    "class XConfig(LlamaConfig):\n    model_type = 'x_planted'\n"
    "class XForCausalLM(LlamaForCausalLM):\n    config_class = XConfig\n"
)


def _model_dir(tmp_path, where: str = "config.json"):
    d = tmp_path / "model"
    tiny_llama(0).save_pretrained(d)
    (d / "modeling_x.py").write_text(PLANTED)
    (d / "configuration_x.py").write_text(PLANTED)
    auto_map = {
        "AutoConfig": "configuration_x.XConfig",
        "AutoModelForCausalLM": "modeling_x.XForCausalLM",
        "AutoTokenizer": ["tokenization_x.XTokenizer", None],
    }
    f = d / where
    cfg = json.loads(f.read_text()) if f.exists() else {}
    cfg["auto_map"] = auto_map
    if where == "config.json":
        cfg["model_type"] = "x_planted"  # unknown to transformers: only the planted code has it
    f.write_text(json.dumps(cfg))
    return d


def _rollouts(tmp_path):
    rec = {
        "prompt_ids": [2, 5],
        "response_ids": [7, 8],
        "logprobs": [math.log(0.5), math.log(0.2)],
        "top_logprobs": [{"7": math.log(0.5)}, {"8": math.log(0.2)}],
    }
    p = tmp_path / "r.jsonl"
    p.write_text(json.dumps(rec) + "\n")
    return p


def _args(mode, d, tmp_path):
    out = ["-o", str(tmp_path / "m.json"), "--device", "cpu", "--json"]
    if mode == "roll":
        return ["measure", "--roll", str(d), "-n", "1", "--max-new-tokens", "2", *out]
    if mode == "tokenizer":
        plain = tmp_path / "plain"
        tiny_llama(0).save_pretrained(plain)
        return ["measure", "--roll", str(plain), "--tokenizer", str(d), *out]
    return ["measure", "--rollouts", str(_rollouts(tmp_path)), "--train", str(d), *out]


@pytest.mark.parametrize(
    "mode, where",
    [
        ("roll", "config.json"),
        ("train", "config.json"),
        ("roll", "tokenizer_config.json"),
        ("tokenizer", "tokenizer_config.json"),
    ],
)
def test_a_model_directory_naming_its_own_code_is_refused(tmp_path, mode, where):
    d = _model_dir(tmp_path, where)
    # "y" on stdin: transformers' "run the custom code? [y/N]" prompt would accept it
    r = CliRunner().invoke(app, _args(mode, d, tmp_path), input="y\n")
    assert r.exit_code == 2, r.output
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("Error: ") and "auto_map" in err[0], err
    assert str(d) in err[0] and where in err[0]
    assert r.stdout == ""  # --json: nothing but our JSON, and here no JSON at all
    assert not (d / "RAN").exists() and not (tmp_path / "m.json").exists()


def test_planted_code_never_runs_with_yes_on_a_real_stdin(tmp_path):
    """As the user typed it: ``yes | trmbounds measure --rollouts r.jsonl --train DIR``."""
    import subprocess
    import sys

    d = _model_dir(tmp_path)
    args = ["measure", "--rollouts", str(_rollouts(tmp_path)), "--train", str(d)]
    p = subprocess.run(
        [sys.executable, "-m", "trmbounds", *args, "-o", str(tmp_path / "m.json"), "--json"],
        input="y\n" * 100,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2 and p.stdout == "", (p.stdout, p.stderr)
    assert p.stderr.count("\n") == 1 and "auto_map" in p.stderr, p.stderr
    assert not (d / "RAN").exists()


def _plain_dir(tmp_path, **config):
    d = tmp_path / "plain"
    tiny_llama(0).save_pretrained(d)
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(config)
    (d / "config.json").write_text(json.dumps(cfg))
    return d


def _one_line_refusal(r, *words):
    assert r.exit_code == 2, r.output
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("Error: "), err
    for w in words:
        assert w in err[0], err
    assert r.stdout == ""


def test_a_400_digit_vocab_size_is_one_line(tmp_path):
    d = _plain_dir(tmp_path, vocab_size=10**400)
    args = ["measure", "--rollouts", str(_rollouts(tmp_path)), "--train", str(d), "--json"]
    r = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "m.json")])
    _one_line_refusal(r, "vocab_size", "401 digits")  # before: OverflowError, a traceback


@pytest.mark.parametrize("fmt", ["native", "vllm"])
def test_a_top_logprobs_key_of_5000_digits_is_one_line(tmp_path, fmt):
    big = "9" * 5000  # int() refuses more than 4,300 digits with a ValueError
    lp = math.log(0.5)
    if fmt == "native":
        rec = {
            "prompt_ids": [2, 5],
            "response_ids": [7],
            "logprobs": [lp],
            "top_logprobs": [{"7": lp, big: math.log(0.1)}],
        }
    else:
        logprobs = {
            "text_offset": [0],
            "token_logprobs": [lp],
            "tokens": ["token_id:7"],
            "top_logprobs": [{"token_id:7": lp, f"token_id:{big}": math.log(0.1)}],
        }
        choice = {"index": 0, "text": "", "logprobs": logprobs, "token_ids": [7]}
        choice["prompt_token_ids"] = [2, 5]
        rec = {"id": "c", "object": "text_completion", "choices": [choice]}
    p = tmp_path / "r.jsonl"
    p.write_text(json.dumps(rec) + "\n")
    d = _plain_dir(tmp_path)
    args = ["measure", "--rollouts", str(p), "--rollout-format", fmt, "--train", str(d)]
    r = CliRunner().invoke(app, [*args, "--json", "-o", str(tmp_path / "m.json")])
    _one_line_refusal(r, "top_logprobs[0] key", "outside any vocabulary")


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=5,
)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    vocab=st.one_of(
        st.integers(max_value=0),
        st.integers(min_value=2**41),
        _JSON.filter(lambda v: not isinstance(v, int) or isinstance(v, bool)),
    )
)
def test_any_vocab_size_in_a_model_config_is_one_line(tmp_path_factory, vocab):
    """A model directory's config fields (hypothesis): never a traceback, never exit 1."""
    tmp = tmp_path_factory.mktemp("cfg")
    d = _plain_dir(tmp, vocab_size=vocab)
    args = ["measure", "--rollouts", str(_rollouts(tmp)), "--train", str(d), "--json"]
    r = CliRunner().invoke(app, [*args, "-o", str(tmp / "m.json")])
    if r.exit_code == 0:  # transformers took it (e.g. None: the default vocabulary)
        json.loads(r.stdout)
    else:
        _one_line_refusal(r)
