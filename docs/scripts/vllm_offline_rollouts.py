"""Write trmbounds rollout records from vLLM's offline ``LLM.generate`` output.

Usage (on the machine that runs vLLM):

    python vllm_offline_rollouts.py MODEL prompts.txt rollouts.jsonl --k 20

Sampling runs with ``logprobs=k``; start vLLM with ``logprobs_mode="processed_logprobs"``
so the reported log-probs are the distribution sampled from (temperature and top-p
applied), and every record says so. Then:

    trmbounds measure --rollouts rollouts.jsonl --train TRAINER -o stats.json

``records(outputs, ...)`` only reads the fields vLLM documents: ``prompt_token_ids``,
``outputs[i].token_ids`` and ``outputs[i].logprobs`` (one ``{token_id: Logprob}`` per
position, ``Logprob.logprob`` / ``Logprob.rank``; vllm-project/vllm ``vllm/outputs.py``,
``vllm/logprobs.py``).
"""

from __future__ import annotations

import argparse
import json
import math


def records(outputs, k, temperature, top_p, top_k, logprobs_mode="processed"):
    """One rollout record (a dict) per sampled response."""
    for out in outputs:
        for comp in out.outputs:
            lps, tops = [], []
            for y, pos in zip(comp.token_ids, comp.logprobs):
                lps.append(max(pos[y].logprob, -9999.0))
                # the top-k: rank 1..k (vLLM adds the sampled token, whatever its rank)
                ranked = sorted(
                    (lp.rank, tid, lp.logprob) for tid, lp in pos.items() if lp.rank <= k
                )
                tops.append({str(tid): max(v, -9999.0) for _, tid, v in ranked})
            yield {
                "prompt_ids": list(out.prompt_token_ids),
                "response_ids": list(comp.token_ids),
                "logprobs": lps,
                "top_logprobs": tops,
                "temperature": temperature,
                "top_p": top_p,
                "top_k": top_k,
                "logprobs_mode": logprobs_mode,
            }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("prompts")
    ap.add_argument("out")
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--top-p", type=float, default=1.0)
    a = ap.parse_args()
    from vllm import LLM, SamplingParams

    llm = LLM(model=a.model, max_logprobs=a.k, logprobs_mode="processed_logprobs")
    prompts = [line for line in open(a.prompts, encoding="utf-8").read().splitlines() if line]
    params = SamplingParams(
        n=a.n, max_tokens=a.max_tokens, temperature=a.temperature, top_p=a.top_p, logprobs=a.k
    )
    outputs = llm.generate(prompts, params)
    with open(a.out, "w", encoding="utf-8") as fh:
        for rec in records(outputs, a.k, a.temperature, a.top_p, 0):
            assert all(math.isfinite(x) for x in rec["logprobs"])
            fh.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
