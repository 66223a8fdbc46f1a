"""Speed and memory of the divergence kernel and of ``measure`` (figures from one run).

Run:  python benchmarks/bench_measure.py [--vocab 151936] [--tokens 256]

1. Speed: :func:`trmbounds.trm.token_divergences` (exact KL, TV, missing mass and the
   sampled token's log-probs) against ``torch.log_softmax`` over the same logits —
   once over both logit tensors (the least any exact method computes: both
   log-normalisers) and once over one tensor. With top-p (a threshold search that sorts
   only the tokens near the threshold), on LM-like (peaked) rows and on flat rows, as a
   ratio to the plain kernel. Repetitions are interleaved and the best time of each is kept, so
   background load affects both sides alike.
1b. Certified intervals (``measure --rollouts``): :func:`trmbounds.measure.intervals.
   token_intervals` against what scoring an engine's rollouts costs without them — the
   trainer's ``log_softmax`` plus the sampled token's gather — with a top-20 list per
   token (plus the sampled token), LM-like rows and flat rows; and both against the
   trainer's lm-head for a 896-wide hidden state (Qwen2.5-0.5B's), part of any scoring.
2. Memory: peak resident memory added by the kernel (blocked) vs a naive
   implementation that converts the whole batch to float32 at once; then a whole
   ``sample_and_score`` run on a 1-layer model with a 151,936-token vocabulary under
   ``--max-memory`` vs building the full ``model(...).logits`` tensor. Each case runs
   in a fresh process; the peak resident memory above the level at the start of the
   measured call is sampled every millisecond from ``/proc/self/statm`` (Linux).
3. Ragged rollouts (``--only ragged``, also part of ``--only memory``): ``measure
   --rollouts`` on N one-token rollouts plus one N-token rollout (``--ragged N``, default
   4,000), a 64-token-vocabulary model. One child runs the same command on 2 one-token
   rollouts, then on the case; the growth of its peak (``ru_maxrss``) is printed with its
   ratio to one dense N x T float64 array, the size of each array of the former padded
   records (about 25 of them were alive at once).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def _rss_now_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


class PeakRSS:
    """Peak resident memory above the level at entry, sampled every millisecond."""

    def __enter__(self):
        import threading

        self.base = self.peak = _rss_now_mb()
        self._stop = threading.Event()

        def watch():
            while not self._stop.is_set():
                self.peak = max(self.peak, _rss_now_mb())
                time.sleep(0.001)

        self._t = threading.Thread(target=watch, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, _rss_now_mb())

    @property
    def added_mb(self) -> float:
        return self.peak - self.base


def _logits(n: int, V: int, dtype):
    """Rollout logits ~ 3 N(0, 1) and training logits 0.05 N(0, 1) away, built in
    slices so that no float32 copy of the whole batch inflates the process."""
    import torch

    g = torch.Generator().manual_seed(0)
    a = torch.empty(n, V, dtype=dtype)
    b = torch.empty(n, V, dtype=dtype)
    for i in range(0, n, 16):
        x = torch.randn(min(16, n - i), V, generator=g) * 3
        a[i : i + 16] = x
        b[i : i + 16] = x + 0.05 * torch.randn(x.shape, generator=g)
    return a, b


def bench_speed(V: int, n: int, reps: int) -> None:
    import torch

    from trmbounds.trm import token_divergences

    print(f"threads: {torch.get_num_threads()}   torch {torch.__version__}")
    for dtype in (torch.float32, torch.bfloat16):
        a, b = _logits(n, V, dtype)  # flat rows: top-p keeps most of the vocabulary
        tok = torch.randint(0, V, (n,), generator=torch.Generator().manual_seed(1))
        # LM-like rows for top-p: 20 tokens 20 nats above the rest hold ~99.9 % of the mass
        peak = torch.zeros(n, V)
        peak[:, :20] = 20.0
        ap, bp = (a.float() + peak).to(dtype), (b.float() + peak).to(dtype)
        cases = {
            "kernel": lambda a=a, b=b, tok=tok: token_divergences(a, b, tok),
            "kernel top-p LM-like": lambda a=ap, b=bp, tok=tok: token_divergences(
                a, b, tok, top_p=0.95
            ),
            "log_softmax x2": lambda a=a, b=b: (
                torch.log_softmax(a, -1, dtype=torch.float32),
                torch.log_softmax(b, -1, dtype=torch.float32),
            ),
            "log_softmax x1": lambda a=a: torch.log_softmax(a, -1, dtype=torch.float32),
            "kernel top-p flat": lambda a=a, b=b, tok=tok: token_divergences(a, b, tok, top_p=0.95),
        }
        best = dict.fromkeys(cases, float("inf"))
        for f in cases.values():
            f()  # warm-up
        for _ in range(reps):
            for k, f in cases.items():
                t0 = time.perf_counter()
                f()
                best[k] = min(best[k], time.perf_counter() - t0)
        name = str(dtype).replace("torch.", "")
        print(f"\n[{name} logits, {n} tokens x vocab {V}]")
        for k, t in best.items():
            print(f"  {k:<27} {1e3 * t:8.1f} ms   {1e6 * t / n:7.1f} us/token")
        print(
            f"  ratio kernel / log_softmax over both tensors: "
            f"{best['kernel'] / best['log_softmax x2']:.2f}x   "
            f"(over one tensor: {best['kernel'] / best['log_softmax x1']:.2f}x)"
        )
        print(
            f"  ratio top-p kernel / plain kernel: LM-like "
            f"{best['kernel top-p LM-like'] / best['kernel']:.2f}x, flat "
            f"{best['kernel top-p flat'] / best['kernel']:.2f}x"
        )


def bench_intervals(V: int, n: int, reps: int, k: int = 20) -> None:
    import torch

    from trmbounds.measure.intervals import token_intervals

    print(f"\n== certified intervals: {n} tokens x vocab {V}, top-{k} + sampled token ==")
    g = torch.Generator().manual_seed(2)
    head = torch.randn(V, 896, generator=g) / 30  # an lm-head of a 896-wide model
    hid = torch.randn(n, 896, generator=g)
    for label, peak in (("LM-like", 20.0), ("flat", 0.0)):
        y = torch.randn(n, V, generator=g) * 3
        y[:, :20] += peak
        x = y + 0.05 * torch.randn(n, V, generator=g)  # the engine's logits
        lp = torch.log_softmax(x.double(), -1)
        top = torch.topk(lp, k, -1)
        tok = torch.multinomial(lp.exp(), 1, generator=g)[:, 0]
        ids = torch.cat([top.indices, tok[:, None]], 1)
        s_lp = torch.cat([top.values, lp.gather(1, tok[:, None])], 1)
        valid = torch.ones_like(ids, dtype=torch.bool)
        valid[:, -1] = ~(top.indices == tok[:, None]).any(1)
        ids[:, -1] = torch.where(valid[:, -1], tok, top.indices[:, 0])
        p_min = top.values[:, -1].exp()
        y = y.float()
        cases = {
            "intervals": lambda y=y, a=(ids, s_lp, valid, p_min, tok): token_intervals(y, *a),
            "scoring (log_softmax + gather)": lambda y=y, tok=tok: torch.log_softmax(y, -1).gather(
                1, tok[:, None]
            ),
            "lm-head 896 -> V": lambda: hid @ head.T,
        }
        best = dict.fromkeys(cases, float("inf"))
        for f in cases.values():
            f()
        for _ in range(reps):
            for key, f in cases.items():
                t0 = time.perf_counter()
                f()
                best[key] = min(best[key], time.perf_counter() - t0)
        print(f"  [{label} rows]")
        for key, t in best.items():
            print(f"    {key:<32} {1e6 * t / n:8.1f} us/token")
        base = best["scoring (log_softmax + gather)"]
        added = best["intervals"] - base
        print(
            f"    intervals add {100 * added / base:.0f}% to log_softmax+gather scoring, "
            f"{100 * added / (base + best['lm-head 896 -> V']):.0f}% to lm-head + "
            "log_softmax scoring"
        )


# ---------------------------------------------------------------- memory (child processes)
def child_kernel(mode: str, V: int, n: int) -> dict:
    import torch

    from trmbounds.trm import token_divergences

    a, b = _logits(n, V, torch.bfloat16)
    with PeakRSS() as mem:
        if mode == "blocked":
            token_divergences(a, b)
        else:  # naive: the whole batch in float32 at once
            lp = torch.log_softmax(a.float(), -1)
            lq = torch.log_softmax(b.float(), -1)
            p, q = lp.exp(), lq.exp()
            (p * (lp - lq)).sum(-1), 0.5 * (p - q).abs().sum(-1)
            del lp, lq, p, q
    return {"input_mb": 2 * a.numel() * a.element_size() / 2**20, "added_mb": mem.added_mb}


def _wide_model(V: int):
    import torch
    import transformers

    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=V,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        eos_token_id=None,
    )
    return transformers.LlamaForCausalLM(cfg).eval()


def child_pipeline(mode: str, V: int, batch: int, length: int, budget: str) -> dict:
    import torch

    from trmbounds.measure import sample_and_score

    m_roll = _wide_model(V)
    m_train = _wide_model(V).to(torch.bfloat16)
    prompts = [[1, 2, 3, 4]] * batch
    if mode in ("measure", "measure-top-p"):
        t0 = time.perf_counter()
        with PeakRSS() as mem:
            rec = sample_and_score(
                m_roll,
                m_train,
                prompts,
                num_samples=1,
                max_new_tokens=length,
                batch_size=batch,
                max_memory=budget,
                seed=0,
                top_p=0.95 if mode == "measure-top-p" else 1.0,
            )
        dt = time.perf_counter() - t0
        return {"added_mb": mem.added_mb, "tokens": rec.n_tokens, "seconds": dt}
    # naive: one forward of both models over prompt + response with full logits
    ids = torch.randint(0, V, (batch, 4 + length), generator=torch.Generator().manual_seed(0))
    with PeakRSS() as mem, torch.inference_mode():
        lr = m_roll(ids).logits.float()
        lt = m_train(ids).logits.float()
        torch.log_softmax(lr, -1), torch.log_softmax(lt, -1)
    return {"added_mb": mem.added_mb, "tokens": batch * length}


def child_rollouts(V: int, batch: int, length: int, budget: str) -> dict:
    """score_rollouts on rollouts of the wide model itself (top-20 of its own logits,
    computed here chunk by chunk before the measured call)."""
    import numpy as np
    import torch

    from trmbounds.measure.rollouts import Rollout
    from trmbounds.measure.scoring import score_rollouts

    model = _wide_model(V)
    g = torch.Generator().manual_seed(0)
    ros = []
    with torch.inference_mode():
        for _ in range(batch):
            resp = torch.randint(0, V, (length,), generator=g)
            ids = torch.cat([torch.tensor([1, 2, 3, 4]), resp])[None]
            h = model.model(input_ids=ids).last_hidden_state[0, 3:-1]
            tops, tls, lps = [], [], []
            for j in range(0, length, 16):
                lq = torch.log_softmax(model.lm_head(h[j : j + 16]).float(), -1).double()
                t = torch.topk(lq, 20, -1)
                tops += list(t.indices.numpy())
                tls += list(t.values.numpy())
                lps += lq.gather(1, resp[j : j + 16, None])[:, 0].tolist()
            ros.append(
                Rollout([1, 2, 3, 4], resp.tolist(), np.array(lps), tops, tls, line=len(ros) + 1)
            )
    t0 = time.perf_counter()
    with PeakRSS() as mem:
        rec = score_rollouts(model, ros, [1.0] * batch, batch_size=batch, max_memory=budget)
    dt = time.perf_counter() - t0
    return {"added_mb": mem.added_mb, "tokens": rec.n_tokens, "seconds": dt}


_RAGGED_CHILD = """
import resource
from trmbounds.cli import app

def run(args):
    try:
        app(args, standalone_mode=False)
    except SystemExit as exc:
        assert not exc.code, exc.code
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux

print("PEAKS", run({small!r}), run({big!r}))
"""


def bench_ragged(n: int) -> None:
    """measure --rollouts on n one-token rollouts + one n-token rollout (see the docstring)."""
    import math
    import tempfile
    from pathlib import Path

    import transformers

    lp = math.log(0.5)

    def rec(k):
        return json.dumps(
            {
                "prompt_ids": [2, 5],
                "response_ids": [7] * k,
                "logprobs": [lp] * k,
                "top_logprobs": [{"7": lp}] * k,
            }
        )

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        cfg = transformers.LlamaConfig(
            vocab_size=64,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
        )
        transformers.LlamaForCausalLM(cfg).save_pretrained(d / "model")
        (d / "small.jsonl").write_text((rec(1) + "\n") * 2)
        (d / "big.jsonl").write_text((rec(1) + "\n") * n + rec(n) + "\n")

        def args(name):
            return [
                "measure", "--rollouts", str(d / f"{name}.jsonl"), "--train", str(d / "model"),
                "-o", str(d / f"{name}.json"), "--tokens", str(d / f"{name}.tokens.jsonl"),
            ]  # fmt: skip

        code = _RAGGED_CHILD.format(small=args("small"), big=args("big"))
        t0 = time.perf_counter()
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        dt = time.perf_counter() - t0
    small, big = (int(x) for x in p.stdout.split("PEAKS")[-1].split())
    dense = (n + 1) * n * 8
    print(
        f"  {n:,} one-token rollouts + one {n:,}-token: peak {big / 1e6:6.0f} MB, "
        f"{(big - small) / 1e6:6.1f} MB above the 2-rollout run; one dense N x T array "
        f"{dense / 1e6:.0f} MB, ratio {(big - small) / dense:.3f} ({dt:.0f} s, both runs)"
    )


def _run_child(*args: str) -> dict:
    p = subprocess.run(
        [sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=True
    )
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vocab", type=int, default=151936)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--length", type=int, default=128)
    ap.add_argument("--max-memory", default="256MB")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--only", choices=["speed", "memory", "ragged"], default=None)
    ap.add_argument("--ragged", type=int, default=4000, help="N of the ragged-rollouts case")
    ap.add_argument("--child", nargs="+")
    a = ap.parse_args()
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    if a.child:
        kind, mode = a.child[0], a.child[1]
        if kind == "kernel":
            out = child_kernel(mode, a.vocab, a.tokens)
        elif kind == "rollouts":
            out = child_rollouts(a.vocab, a.batch, a.length, a.max_memory)
        else:
            out = child_pipeline(mode, a.vocab, a.batch, a.length, a.max_memory)
        print(json.dumps(out))
        return

    print(f"load average at start: {' '.join(f'{x:.2f}' for x in __import__('os').getloadavg())}")
    if a.only == "ragged":
        print("== memory: measure --rollouts, ragged lengths ==")
        bench_ragged(a.ragged)
        return
    if a.only != "memory":
        print("== speed: token_divergences vs torch.log_softmax over the same logits ==")
        bench_speed(a.vocab, a.tokens, a.reps)
        bench_intervals(a.vocab, min(a.tokens, 64), a.reps)
    if a.only == "speed":
        return

    print(f"\n== memory: divergence kernel, {a.tokens} tokens x vocab {a.vocab}, bf16 logits ==")
    for mode in ("blocked", "naive"):
        r = _run_child("kernel", mode, "--vocab", str(a.vocab), "--tokens", str(a.tokens))
        print(f"  {mode:<8} inputs {r['input_mb']:7.1f} MiB   peak added {r['added_mb']:7.1f} MiB")

    print(
        f"\n== memory: sample_and_score, batch {a.batch} x {a.length} new tokens, vocab "
        f"{a.vocab} (fp32 roll vs bf16 train), --max-memory {a.max_memory} =="
    )
    common = ["--vocab", str(a.vocab), "--batch", str(a.batch), "--length", str(a.length)]
    r = _run_child("pipeline", "measure", *common, "--max-memory", a.max_memory)
    print(
        f"  measure  peak added {r['added_mb']:7.1f} MiB   ({r['tokens']} tokens scored, "
        f"{r['seconds']:.1f} s incl. sampling)"
    )
    r = _run_child("pipeline", "measure-top-p", *common, "--max-memory", a.max_memory)
    print(
        f"  top-p 0.95 peak added {r['added_mb']:5.1f} MiB   ({r['tokens']} tokens scored, "
        f"{r['seconds']:.1f} s incl. sampling)"
    )
    r = _run_child("pipeline", "naive", *common)
    print(f"  naive    peak added {r['added_mb']:7.1f} MiB   (full model(...).logits, float32)")
    r = _run_child("rollouts", "intervals", *common, "--max-memory", a.max_memory)
    print(
        f"  --rollouts (score_rollouts, top-20 intervals) peak added {r['added_mb']:7.1f} MiB "
        f"({r['tokens']} tokens, {r['seconds']:.1f} s)"
    )
    print("\n== memory: measure --rollouts, ragged lengths ==")
    bench_ragged(a.ragged)


if __name__ == "__main__":
    main()
