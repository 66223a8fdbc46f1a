"""Hypothesis fuzzing of the inputs built last (issue 17, "Tests"): rollout files through
``measure --rollouts`` and slime ``.pt`` payloads through ``check``.

The property is the one of tests/test_robustness.py: whatever the input, exit 0 or 2, on
2 exactly one line ``Error: …`` on stderr, never a traceback, and the input file is left
as it was. Examples start from a valid record and mutate a few of its fields (so most
reach the deep checks rather than the JSON parser), with values at the edges: missing
fields, wrong types, NaN and infinities, integers of 5,000 digits, exponents beyond
float64, keys that are not token ids (``"①"``, ``"token_id:7"``, ``" 7"``), deep nesting.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from test_robustness import assert_clean, digest
from typer.testing import CliRunner

from trmbounds.cli import app

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from tinymodel import V, tiny_llama  # noqa: E402

runner = CliRunner()

# ------------------------------------------------------------------ JSON with raw text
#: text that json.dumps cannot write (or would write differently), put in verbatim
RAW = {
    "big_int": "1" + "0" * 5000,  # int() refuses > 4,300 digits
    "neg_big_int": "-" + "9" * 5000,
    "huge_exp": "1e400",  # float("1e400") is inf
    "tiny_exp": "-1e-400",
    "deep": "[" * 3000 + "]" * 3000,  # beyond json's recursion limit
    "deep_obj": '{"a":' * 3000 + "0" + "}" * 3000,
    "surrogate": '"\\ud800"',
    "nan": "NaN",
    "inf": "-Infinity",
}
_raw = st.sampled_from(sorted(RAW)).map(lambda k: f"@@RAW:{k}@@")

_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.integers(0, V - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4),
    _raw,
)
_json = st.recursive(
    _scalar,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3),
    max_leaves=6,
)
_keys = st.one_of(
    st.integers(0, V - 1).map(str),
    st.integers(-(2**40), 2**40).map(str),
    st.sampled_from(["①", "²", "token_id:7", " 7", "7.0", "", "0x7", "٣", "7\n", "1" * 5000]),
    st.text(max_size=3),
)


def _dumps(obj) -> str:
    text = json.dumps(obj)
    for k, v in RAW.items():
        text = text.replace(f'"@@RAW:{k}@@"', v)
    return text


def _valid_record(n: int) -> dict:
    lp = math.log(0.5)
    return {
        "prompt_ids": [2, 5],
        "response_ids": [7] * n,
        "logprobs": [lp] * n,
        "top_logprobs": [{"7": lp, "9": math.log(0.25)} for _ in range(n)],
    }


@st.composite
def rollout_record(draw) -> dict:
    rec = _valid_record(draw(st.integers(1, 3)))
    for _ in range(draw(st.integers(0, 2))):
        kind = draw(
            st.sampled_from(
                ["drop", "field", "element", "top_key", "top_value", "top_entry", "setting"]
            )
        )
        if kind == "drop" and rec:
            rec.pop(draw(st.sampled_from(sorted(rec))))
        elif kind == "field":
            rec[draw(st.sampled_from(sorted(_valid_record(1))))] = draw(_json)
        elif kind == "element":
            name = draw(st.sampled_from(["prompt_ids", "response_ids", "logprobs"]))
            if isinstance(rec.get(name), list) and rec[name]:
                i = draw(st.integers(0, len(rec[name]) - 1))
                rec[name][i] = draw(_scalar)
        elif kind in ("top_key", "top_value", "top_entry"):
            tops = rec.get("top_logprobs")
            if isinstance(tops, list) and tops:
                t = draw(st.integers(0, len(tops) - 1))
                if kind == "top_entry":
                    tops[t] = draw(_json)
                elif isinstance(tops[t], dict):
                    if kind == "top_key":
                        tops[t][draw(_keys)] = draw(st.floats(-50, 0))
                    else:
                        tops[t][draw(st.sampled_from(sorted(tops[t]) or ["7"]))] = draw(_scalar)
        else:
            name = draw(
                st.sampled_from(
                    [
                        "temperature",
                        "top_p",
                        "top_k",
                        "logprobs_mode",
                        "presence_penalty",
                        "logit_bias",
                        "repetition_penalty",
                    ]
                )  # fmt: skip
            )
            rec[name] = draw(
                st.one_of(_scalar, st.sampled_from(["raw", "processed", "temperature", "x"]))
            )
    return rec


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    tiny_llama(0).save_pretrained(d)
    return d


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,  # the same examples on every run (CI)
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    records=st.lists(rollout_record(), min_size=1, max_size=3),
    raw_line=st.one_of(st.none(), st.none(), st.none(), _raw),
    valid_first=st.booleans(),
)
def test_fuzz_rollout_files(tmp_path, model_dir, records, raw_line, valid_first):
    lines = [_dumps(r) for r in records]
    if valid_first:  # a good line before the bad ones: the error names the later line
        lines.insert(0, _dumps(_valid_record(2)))
    if raw_line is not None:
        lines.append(_dumps(raw_line))
    content = ("\n".join(lines) + "\n").encode("utf-8", "surrogatepass")
    d = tmp_path / hashlib.sha256(content).hexdigest()[:16]
    d.mkdir(exist_ok=True)
    f = d / "rollouts.jsonl"
    f.write_bytes(content)
    before = digest([f])
    out = d / "out.json"
    args = ["measure", "--rollouts", str(f), "--train", str(model_dir), "-o", str(out)]
    r = runner.invoke(app, [*args, "--json", "--force"])
    # pytest --hypothesis-show-statistics: how many were measured, which errors
    event(f"exit {r.exit_code} {r.stderr.split(': ', 2)[-1][:50]}")
    assert_clean(r)
    assert digest([f]) == before
    if r.exit_code == 0:
        assert json.loads(r.stdout)["inputs"]["T"] >= 1


# ------------------------------------------------------------------ slime .pt payloads
DTYPES = [
    torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32,
    torch.int8, torch.uint8, torch.bool, torch.complex64,
]  # fmt: skip
SLIME_FIELDS = ["rollout_log_probs", "log_probs", "loss_masks"]


@st.composite
def tensors(draw):
    special = draw(st.sampled_from(["plain", "plain", "plain", "meta", "quantized", "sparse",
                                    "strided", "2d", "scalar"]))  # fmt: skip
    n = draw(st.integers(0, 4))
    values = draw(
        st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=n, max_size=n)
    )
    x = torch.tensor(values, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # casts of NaN to integers, deprecated quantization
        if special == "meta":
            return torch.empty(n, device="meta")
        if special == "quantized":
            return torch.quantize_per_tensor(torch.nan_to_num(x).float(), 0.1, 0, torch.qint8)
        if special == "sparse":
            return x.to_sparse()
        if special == "strided":
            return torch.cat([x, x])[::2]
        if special == "2d":
            return torch.stack([x, x])
        if special == "scalar":
            return torch.tensor(values[0] if values else 0.0)
        return x.to(draw(st.sampled_from(DTYPES)))


_slime_value = st.one_of(
    tensors(),
    tensors(),
    st.lists(st.one_of(st.floats(), st.integers(-(2**70), 2**70), st.text(max_size=2)), max_size=3),
    st.integers(-(10**400), 10**400),
    st.sampled_from([10**400, -(10**400), 2**63, -1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=3),
    st.none(),
)


@st.composite
def slime_sample(draw):
    if draw(st.integers(0, 9)) == 0:
        return draw(st.one_of(_slime_value, st.lists(_slime_value, max_size=2)))
    s = {k: torch.tensor([-0.5, -0.7]) for k in SLIME_FIELDS}
    s["loss_masks"] = torch.tensor([1, 1])
    for _ in range(draw(st.integers(0, 2))):
        if draw(st.booleans()):
            s.pop(draw(st.sampled_from(SLIME_FIELDS)), None)
        else:
            s[draw(st.sampled_from([*SLIME_FIELDS, "tokens", "x"]))] = draw(_slime_value)
    return s


@st.composite
def slime_payload(draw):
    top = draw(st.integers(0, 9))
    if top == 0:  # not a dict at all
        return draw(st.one_of(_slime_value, st.lists(_slime_value, max_size=3)))
    obj = {
        "rollout_id": draw(_slime_value) if top == 4 else draw(st.integers(0, 10)),
        "samples": draw(st.lists(slime_sample(), min_size=1, max_size=3)),
    }
    if top == 1:
        obj["samples"] = draw(st.one_of(_slime_value, st.dictionaries(st.text(max_size=2),
                                                                      _slime_value, max_size=2)))  # fmt: skip
    if top == 2:
        obj.pop(draw(st.sampled_from(["rollout_id", "samples"])))
    if top == 3:  # nesting
        depth = draw(st.integers(10, 200))
        nested: object = torch.zeros(1)
        for _ in range(depth):
            nested = [nested]
        obj["samples"].append({k: nested for k in SLIME_FIELDS})
    return obj


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(payload=slime_payload(), name=st.sampled_from(["3.pt", "0.pt", "123456789.pt"]))
def test_fuzz_slime_payloads(tmp_path, payload, name):
    import io

    buf = io.BytesIO()
    torch.save(payload, buf)
    content = buf.getvalue()
    d = tmp_path / hashlib.sha256(content).hexdigest()[:16]
    d.mkdir(exist_ok=True)
    f = d / name
    f.write_bytes(content)
    before = digest([f])
    r = runner.invoke(app, ["check", str(f)])
    event(f"exit {r.exit_code} {r.stderr.split(': ', 2)[-1][:50]}")
    assert_clean(r)
    assert digest([f]) == before
