"""Save vLLM / SGLang HTTP responses as a rollout file ``trmbounds measure`` reads.

    python http_rollouts.py vllm   http://localhost:8000 MODEL prompt_ids.jsonl out.jsonl
    python http_rollouts.py sglang http://localhost:30000 MODEL prompt_ids.jsonl out.jsonl

``prompt_ids.jsonl`` holds one JSON list of token ids per line (token ids, not strings:
the trainer must score exactly the tokens the engine saw). Each response is written
unchanged, one per line (SGLang's with the request's ids added as ``prompt_ids``, which
its response does not echo), together with the sampling settings, then:

    trmbounds measure --rollouts out.jsonl --rollout-format vllm --train TRAINER

vLLM: ``/v1/completions`` with ``logprobs=k``, ``return_token_ids`` (prompt and response
ids in each choice) and ``return_tokens_as_token_ids`` (top-log-prob keys
``"token_id:<id>"``); start the server with ``--logprobs-mode processed_logprobs`` when
sampling at temperature != 1 or with top-p/top-k. SGLang: ``/generate`` with
``input_ids``, ``return_logprob`` and ``top_logprobs_num=k``; its log-probs are taken
after temperature and before top-p/top-k (``SGLANG_RETURN_ORIGINAL_LOGPROB=1``: before
temperature), so sample without truncation.
"""

from __future__ import annotations

import json
import sys
import urllib.request

K, MAX_TOKENS, TEMPERATURE = 20, 256, 1.0


def post(url, body):
    req = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())


def vllm_request(model, ids):
    return {
        "model": model,
        "prompt": ids,
        "max_tokens": MAX_TOKENS,
        "temperature": TEMPERATURE,
        "logprobs": K,
        "return_token_ids": True,
        "return_tokens_as_token_ids": True,
    }


def sglang_request(ids):
    return {
        "input_ids": ids,
        "sampling_params": {"max_new_tokens": MAX_TOKENS, "temperature": TEMPERATURE},
        "return_logprob": True,
        "top_logprobs_num": K,
    }


def main(engine, base, model, prompts, out):
    settings = {"temperature": TEMPERATURE, "logprobs_mode": "processed"}
    if engine == "sglang":
        settings["logprobs_mode"] = "temperature"
    with open(prompts, encoding="utf-8") as fh, open(out, "w", encoding="utf-8") as w:
        for line in fh:
            ids = json.loads(line)
            if engine == "vllm":
                resp = post(f"{base}/v1/completions", vllm_request(model, ids))
            else:
                resp = post(f"{base}/generate", sglang_request(ids))
                resp["prompt_ids"] = ids
            w.write(json.dumps({**resp, **settings}) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:6])
