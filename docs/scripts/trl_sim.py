"""TRL's real ``GRPOTrainer`` on CPU, its vLLM engine simulated by a perturbed model.

Shared by ``live_run.py`` (the README's "Monitor a run live" figure) and
``tests/test_trl_callback.py``. A tiny random Qwen2 with a word-level tokenizer (no
download) trains with ``GRPOConfig(use_vllm=True, vllm_mode="colocate",
vllm_importance_sampling_correction=True)``; :class:`PerturbedVLLM` replaces TRL's
``VLLMGeneration`` (patch ``trl.trainer.grpo_trainer.VLLMGeneration`` with it), so
that TRL's own importance-sampling, metric and logging code computes
``sampling/sampling_logp_difference/*`` from a real rollout/training mismatch.
Needs torch, transformers, trl and datasets (``pip install -e ".[trl]"``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
import transformers

#: The prompts' words: ``w0`` .. ``w59``.
WORDS = [f"w{i}" for i in range(60)]
#: The generation cap (``max_completion_length``): the horizon T of the bounds.
MAX_COMPLETION_LENGTH = 16


class PerturbedVLLM:
    """Stands in for TRL's ``VLLMGeneration`` (colocate mode): samples each completion
    from a copy of the trainer's model with every weight perturbed by N(0, sigma^2) and
    returns vLLM-shaped output -- prompt ids, completion ids, per-token ``[logprob]`` of
    the sampled token under the perturbed model.

    ``sigma`` is a number, or a function of ``k``, the number of weight syncs so far:
    TRL syncs once per training step before generating, so the completions of training
    step ``k`` come from the engine of sync ``k`` (sync 0 is at construction). The noise
    direction is the same at every sync (seed 1); only its scale follows ``sigma``.
    """

    sigma: float | Callable[[int], float] = 0.003

    def __init__(self, *, model, processing_class, max_completion_length, **kw):
        self.model, self.eos, self.T = model, processing_class.eos_token_id, max_completion_length
        self.gen = torch.Generator().manual_seed(0)
        self.syncs = -1
        self.sync_weights()

    def sigma_now(self) -> float:
        return self.sigma(self.syncs) if callable(self.sigma) else self.sigma

    def sync_weights(self):
        self.syncs += 1
        # a fresh model, not a deepcopy: accelerate binds forward to the original object
        self.engine = type(self.model)(self.model.config).eval()
        self.engine.load_state_dict(self.model.state_dict())
        g, s = torch.Generator().manual_seed(1), self.sigma_now()
        with torch.no_grad():
            for p in self.engine.parameters():
                p.add_(torch.randn(p.shape, generator=g) * s)

    @torch.no_grad()
    def generate(self, prompts, images, num_generations, profiler=None):
        comps, lps = [None] * len(prompts), [None] * len(prompts)
        for n in sorted({len(p) for p in prompts}):  # prompts of one length: one batch
            idx = [i for i, p in enumerate(prompts) if len(p) == n]
            x = torch.tensor([prompts[i] for i in idx])
            toks, lp = [], []
            done = torch.zeros(len(idx), dtype=torch.bool)
            for _ in range(self.T):
                logp = torch.log_softmax(self.engine(x).logits[:, -1].float(), -1)
                tok = torch.multinomial(logp.exp(), 1, generator=self.gen)[:, 0]
                toks.append(tok), lp.append(logp.gather(1, tok[:, None])[:, 0])
                x = torch.cat([x, tok[:, None]], 1)
                done = done | (tok == self.eos)
                if done.all():
                    break
            toks, lp = torch.stack(toks, 1), torch.stack(lp, 1)
            for j, i in enumerate(idx):  # each completion up to and with its first EOS
                row = toks[j].tolist()
                k = row.index(self.eos) + 1 if self.eos in row else len(row)
                comps[i], lps[i] = row[:k], [[float(v)] for v in lp[j, :k]]
        return prompts, comps, lps, None


def tokenizer() -> transformers.PreTrainedTokenizerFast:
    """A word-level tokenizer over :data:`WORDS` (``<pad>`` 0, ``<eos>`` 1, ``<unk>`` 2)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tk, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>"
    )


def tiny_qwen2(vocab_size: int, seed: int = 0) -> transformers.Qwen2ForCausalLM:
    """A 2-layer Qwen2 with random weights from ``seed``."""
    torch.manual_seed(seed)
    return transformers.Qwen2ForCausalLM(transformers.Qwen2Config(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=128,
        pad_token_id=0, eos_token_id=1, bos_token_id=1,
    ))  # fmt: skip


def length_reward(completions, **kw) -> list[float]:
    """Reward in [-1, 0]: minus the distance of the word count from 8, over 8."""
    return [-abs(len(c.split()) - 8) / 8.0 for c in completions]


#: The reward range of :func:`length_reward` (completions have at most 16 words).
REWARD_RANGE = (-1.0, 0.0)


def grpo_trainer(
    output_dir: str | Path,
    steps: int,
    cls: Any = None,
    callbacks: Iterable[Any] = (),
    report_to: str | list[str] = "none",
    **kw: Any,
) -> Any:
    """TRL's ``GRPOTrainer`` (or ``cls``, e.g. ``TRMGRPOTrainer``; ``kw`` go to it) on the
    tiny Qwen2, logging every step; patch ``VLLMGeneration`` before calling ``train()``."""
    import datasets
    import trl

    tok = tokenizer()
    args = trl.GRPOConfig(
        output_dir=str(output_dir), report_to=report_to, logging_steps=1, max_steps=steps,
        per_device_train_batch_size=4, num_generations=4,
        max_completion_length=MAX_COMPLETION_LENGTH, learning_rate=1e-3, use_cpu=True,
        bf16=False, save_strategy="no", seed=0, disable_tqdm=True,
        use_vllm=True, vllm_mode="colocate", vllm_importance_sampling_correction=True,
    )  # fmt: skip
    data = datasets.Dataset.from_dict(
        {"prompt": [" ".join(WORDS[i : i + 4]) for i in range(0, 48, 3)]}
    )
    return (cls or trl.GRPOTrainer)(
        model=tiny_qwen2(len(tok)), reward_funcs=length_reward, args=args, train_dataset=data,
        processing_class=tok, callbacks=list(callbacks), **kw,
    )  # fmt: skip
