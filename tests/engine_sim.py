"""A simulated rollout engine for ``measure --rollouts`` tests.

The "engine" is a tiny causal LM with perturbed logits: at every step its logits are
the model's own (full forward, float64) plus Gaussian noise, at a temperature, optionally
top-k/top-p truncated; it samples a token from that distribution and reports the top-k
log-probs of it — the layouts written here follow the engines' source:

- native: the record format of docs/rollouts.md;
- vLLM ``/v1/completions`` with ``logprobs=k``, ``return_token_ids=true``,
  ``return_tokens_as_token_ids=true``: vllm-project/vllm
  ``vllm/entrypoints/openai/completion/protocol.py`` (``CompletionLogProbs``: text_offset,
  token_logprobs, tokens, top_logprobs; ``CompletionResponseChoice``: prompt_token_ids,
  token_ids) and ``completion/serving.py`` ``_create_completion_logprobs`` (keys
  ``token_id:<id>``, the sampled token first then the top-k by rank, values clamped at
  -9999.0);
- SGLang ``/generate`` with ``return_logprob=true``, ``top_logprobs_num=k``:
  sgl-project/sglang ``python/sglang/srt/managers/tokenizer_manager.py``
  (``meta_info.output_token_logprobs`` = [logprob, token_id, text|null] per position,
  ``meta_info.output_top_logprobs`` = a list of those per position), with the request's
  input ids added as ``prompt_ids``.

Each step also keeps the engine's whole distribution, so tests compute the exact KL and
TV against the trainer independently of trmbounds.
"""

from __future__ import annotations

import json
import math

import numpy as np


def softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


def engine_rollouts(
    model, prompts, *, seed, noise=0.5, temperature=1.0, top_p=1.0, n_new=6, eos=None
):
    """Sample one response per prompt; return dicts with the engine's full distributions."""
    import torch

    rng = np.random.default_rng(seed)
    out = []
    for prompt in prompts:
        ids = list(prompt)
        resp, dists = [], []
        for _ in range(n_new):
            with torch.no_grad():
                x = model(torch.tensor([ids])).logits[0, -1].double().numpy()
            z = (x + noise * rng.normal(size=x.shape)) / temperature
            p = softmax(z)
            if top_p < 1:
                order = np.argsort(-p, kind="stable")
                cum = np.cumsum(p[order])
                keep = np.zeros_like(p, dtype=bool)
                keep[order[: int(np.searchsorted(cum, top_p) + 1)]] = True
                p = np.where(keep, p, 0.0)
                p = p / p.sum()
            y = int(rng.choice(len(p), p=p))
            resp.append(y)
            dists.append(p)
            ids.append(y)
            if eos is not None and y == eos:
                break
        out.append({"prompt_ids": list(prompt), "response_ids": resp, "dists": dists})
    return out


def _lp(p):
    return math.log(p) if p > 0 else -math.inf


def _topk(p, k):
    order = np.argsort(-p, kind="stable")[:k]
    return [(int(v), _lp(p[v])) for v in order]


def native_lines(rolls, k, **extra):
    lines = []
    for r in rolls:
        rec = {
            "prompt_ids": r["prompt_ids"],
            "response_ids": r["response_ids"],
            "logprobs": [_lp(d[y]) for d, y in zip(r["dists"], r["response_ids"])],
            "top_logprobs": [
                {str(v): max(lp, -9999.0) for v, lp in _topk(d, k)} for d in r["dists"]
            ],
            **extra,
        }
        lines.append(json.dumps(rec))
    return lines


def vllm_lines(rolls, k, **extra):
    lines = []
    for i, r in enumerate(rolls):
        tops, toks, lps = [], [], []
        for d, y in zip(r["dists"], r["response_ids"]):
            entry = {f"token_id:{y}": max(_lp(d[y]), -9999.0)}  # sampled token first
            for v, lp in _topk(d, k):
                entry.setdefault(f"token_id:{v}", max(lp, -9999.0))
            tops.append(entry)
            toks.append(f"token_id:{y}")
            lps.append(max(_lp(d[y]), -9999.0))
        choice = {
            "index": 0,
            "text": "",
            "logprobs": {
                "text_offset": list(range(len(toks))),
                "token_logprobs": lps,
                "tokens": toks,
                "top_logprobs": tops,
            },
            "finish_reason": "length",
            "stop_reason": None,
            "token_ids": r["response_ids"],
            "prompt_logprobs": None,
            "prompt_token_ids": r["prompt_ids"],
        }
        resp = {
            "id": f"cmpl-{i}",
            "object": "text_completion",
            "created": 0,
            "model": "tiny",
            "choices": [choice],
            "usage": {
                "prompt_tokens": len(r["prompt_ids"]),
                "completion_tokens": len(toks),
                "total_tokens": len(r["prompt_ids"]) + len(toks),
            },
            **extra,
        }
        lines.append(json.dumps(resp))
    return lines


def sglang_lines(rolls, k, **extra):
    lines = []
    for i, r in enumerate(rolls):
        otl = [[_lp(d[y]), y, None] for d, y in zip(r["dists"], r["response_ids"])]
        otop = [[[lp, v, None] for v, lp in _topk(d, k)] for d in r["dists"]]
        resp = {
            "text": "",
            "meta_info": {
                "id": str(i),
                "finish_reason": {"type": "length", "length": len(otl)},
                "prompt_tokens": len(r["prompt_ids"]),
                "completion_tokens": len(otl),
                "cached_tokens": 0,
                "output_token_logprobs": otl,
                "output_top_logprobs": otop,
            },
            "prompt_ids": r["prompt_ids"],
            **extra,
        }
        lines.append(json.dumps(resp))
    return lines


WRITERS = {"native": native_lines, "vllm": vllm_lines, "sglang": sglang_lines}


def exact_divergences(model, roll, temperature=1.0):
    """Exact KL(p || q) and TV per response token; q from the model's own full forward."""
    import torch

    ids = torch.tensor([roll["prompt_ids"] + roll["response_ids"]])
    with torch.no_grad():
        logits = model(ids).logits[0].double().numpy()
    Lp = len(roll["prompt_ids"])
    kl, tv = [], []
    for t, p in enumerate(roll["dists"]):
        q = softmax(logits[Lp - 1 + t] / temperature)
        kl.append(float(sum(p[v] * math.log(p[v] / q[v]) for v in range(len(p)) if p[v] > 0)))
        tv.append(0.5 * float(np.abs(p - q).sum()))
    return np.array(kl), np.array(tv)
