"""A tiny random-weight causal LM built on the fly, for ``trmbounds measure --demo``.

The demo runs the whole measurement offline, in seconds on a CPU: a 2-layer Llama
(:data:`DEMO_CONFIG`) with random weights drawn from a fixed seed and a byte-level
tokenizer (every UTF-8 byte is a token, so any prompt can be encoded), the same weights
in bfloat16 for the rollouts and in float32 for training — the backend-mismatch source
of the paper. Nothing is downloaded and nothing is written to disk.

**The numbers illustrate the tool, not any real model.** A random-weight model's
next-token distributions are nearly uniform, so its bf16-vs-fp32 divergences say
nothing about a trained model's; :func:`demo_note` says so, and every output of the
demo carries it.

torch, transformers and tokenizers (the ``[model]`` extra) are imported inside the
functions that need them; importing this module does not import them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from .errors import TrmboundsError

__all__ = [
    "DEMO_CONFIG",
    "DEMO_NOTE",
    "DEMO_SEED",
    "demo_models",
    "demo_note",
    "demo_tokenizer",
    "run_demo",
]

#: The special tokens of the demo tokenizer, ids 0, 1, 2; the 256 byte tokens follow.
SPECIAL_TOKENS = ("<pad>", "<s>", "</s>")

#: The demo model's transformers ``LlamaConfig`` arguments (the vocabulary size is that of
#: :func:`demo_tokenizer`: 3 special tokens + 256 bytes).
DEMO_CONFIG: dict[str, Any] = {
    "vocab_size": len(SPECIAL_TOKENS) + 256,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 1024,
    "initializer_range": 0.1,  # spread-out logits: less flat than transformers' 0.02
    "pad_token_id": 0,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "tie_word_embeddings": False,
}

#: Seed of the demo model's random weights.
DEMO_SEED = 0


def demo_note(roll_dtype: str = "bfloat16", train_dtype: str = "float32") -> str:
    """What every output of the demo says about its numbers (and which dtypes it compared)."""
    return (
        f"DEMO: a tiny random-weight Llama built on the fly ({DEMO_CONFIG['num_hidden_layers']} "
        f"layers, {DEMO_CONFIG['vocab_size']}-token byte vocabulary), {roll_dtype} rollouts vs "
        f"{train_dtype} training. Its numbers illustrate the tool, not any real model."
    )


#: The note of the default demo (bfloat16 rollouts vs float32 training).
DEMO_NOTE = demo_note()

_DEMO_DESCRIPTION = "trmbounds demo: random-weight tiny Llama (DEMO_CONFIG, seed {seed})"


def _require_model_extra() -> None:
    try:
        import tokenizers  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        raise TrmboundsError(
            f"the demo needs the model extra ({exc.name} is missing): "
            "pip install torch transformers (the project's model extra; a CPU build of "
            "torch first on a CPU-only machine)"
        ) from None


def demo_tokenizer() -> Any:
    """The demo's byte-level tokenizer (a ``transformers.PreTrainedTokenizerFast``).

    Each byte of the UTF-8 text is one token (ids 3–258, in the byte-to-character order
    of GPT-2's byte-level alphabet); ``<pad>``, ``<s>``, ``</s>`` are ids 0, 1, 2.
    """
    _require_model_extra()
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {tok: i for i, tok in enumerate((*SPECIAL_TOKENS, *alphabet))}
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tk.decoder = decoders.ByteLevel()
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tk, pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    )


def demo_models(
    roll_dtype: str = "bfloat16", train_dtype: str = "float32", *, seed: int = DEMO_SEED
) -> tuple[Any, Any]:
    """The demo's rollout and training models: the same random weights in two dtypes.

    The weights are drawn in float32 from ``seed`` (torch's global random state is
    left as it was) and cast to ``roll_dtype`` and ``train_dtype``.
    """
    _require_model_extra()
    import torch
    import transformers

    from .measure import resolve_dtype

    roll_td, train_td = resolve_dtype(roll_dtype), resolve_dtype(train_dtype)
    cfg = transformers.LlamaConfig(**DEMO_CONFIG)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        base = transformers.LlamaForCausalLM(cfg).eval()
    roll = copy.deepcopy(base)
    return roll.to(roll_td), base.to(train_td)


def run_demo(
    *,
    roll_dtype: str = "bfloat16",
    train_dtype: str = "float32",
    seed_model: int = DEMO_SEED,
    progress: Callable[[int, int], None] | None = None,
    **measure_kwargs: Any,
) -> Any:
    """:func:`trmbounds.measure.measure` on the demo models, offline.

    ``measure_kwargs`` are those of :func:`~trmbounds.measure.measure` (prompts,
    sampling, thresholds, device, …) except the models and the tokenizer. Returns its
    :class:`~trmbounds.measure.Measurement`, whose statistics carry ``meta["demo"]``
    (:func:`demo_note`) and name the demo model as both policies.
    """
    for key in ("roll", "train", "tokenizer", "roll_attn", "train_attn"):
        if measure_kwargs.get(key) is not None:
            raise TrmboundsError(f"the demo builds its own models: {key} cannot be given")
        measure_kwargs.pop(key, None)
    _require_model_extra()
    import torch

    from .measure import measure

    roll, train = demo_models(roll_dtype, train_dtype, seed=seed_model)
    threads = torch.get_num_threads()
    # A model this small runs fastest on one thread: its matrices are too small to split, and
    # on a busy machine the threads of a parallel bfloat16 matmul wait for each other (~100x
    # slower on 2 shared cores). The numbers are the same; the caller's setting is restored.
    torch.set_num_threads(1)
    try:
        m = measure(roll, train, tokenizer=demo_tokenizer(), progress=progress, **measure_kwargs)
    finally:
        torch.set_num_threads(threads)
    meta = m.stats.meta
    name = _DEMO_DESCRIPTION.format(seed=seed_model)
    for side in ("roll", "train"):
        if isinstance(meta.get(side), dict):
            meta[side]["model"] = name
    meta["demo"] = demo_note(roll_dtype, train_dtype)
    return m
