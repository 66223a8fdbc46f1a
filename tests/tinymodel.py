"""The tiny random-weight Llama the measure tests score with (no download)."""

from __future__ import annotations

V = 64  # vocabulary
EOS = 3


def tiny_llama(seed: int = 0):
    """A 2-layer Llama with random weights from ``seed`` (torch and transformers needed)."""
    import torch
    import transformers

    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(
        vocab_size=V,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        eos_token_id=EOS,
        bos_token_id=2,
        pad_token_id=0,
    )
    return transformers.LlamaForCausalLM(cfg).eval()
