"""Sampling responses from the rollout model (KV cache, seeded generator)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import TrmboundsError
from ..trm import truncate_logits
from .models import _forward_kwargs, _Scorer

#: Lowest accepted sampling temperature: logits / T must stay finite in float32
#: (a logit of 1e3 at T = 1e-4 is 1e7; at T = 1e-39 float32 overflows to inf).
MIN_TEMPERATURE = 1e-4


def _left_pad(prompts: list[list[int]], pad: int, device: str):
    import torch

    B, Lp = len(prompts), max(len(p) for p in prompts)
    ids = torch.full((B, Lp), pad, dtype=torch.long)
    am = torch.zeros((B, Lp), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, Lp - len(p) :] = torch.tensor(p, dtype=torch.long)
        am[i, Lp - len(p) :] = 1
    return ids.to(device), am.to(device)


def _sample_batch(sc: _Scorer, prompts, *, n_new, temperature, top_k, top_p, eos, pad, gen, device):
    """Sample one response per prompt (KV cache, seeded generator).

    Returns the responses (B, Lr), their lengths (EOS included) and, for a split
    model, the final hidden states the sampled logits came from, (B, Lr, H): scoring
    re-applies the lm-head to exactly these, so the rollout distribution that is
    scored is the one that was sampled from (no prefill-vs-decode drift).
    """
    import torch

    model = sc.model
    fwd = sc.base if sc.split else model
    cache_kw, has_keep = _forward_kwargs(fwd)
    ids, am = _left_pad(prompts, pad, device)
    B = ids.shape[0]
    pos = (am.cumsum(1) - 1).clamp(min=0)
    extra = {"logits_to_keep": 1} if has_keep and not sc.split else {}
    out = fwd(input_ids=ids, attention_mask=am, position_ids=pos, use_cache=True, **extra)
    eos_t = torch.tensor(sorted(eos), dtype=torch.long, device=device)
    resp = torch.full((B, n_new), pad, dtype=torch.long, device=device)
    done = torch.zeros(B, dtype=torch.bool, device=device)
    lengths = torch.zeros(B, dtype=torch.long, device=device)
    states = []
    last = pos[:, -1]
    for j in range(n_new):
        if sc.split:
            h = out.last_hidden_state[:, -1]
            states.append(h)
            x = sc.logits(h)
        else:
            x = out.logits[:, -1]
        x = x.float() / temperature
        if top_k or top_p < 1:
            x = truncate_logits(x, top_k, top_p)
        tok = torch.multinomial(torch.softmax(x, -1), 1, generator=gen)[:, 0]
        tok = torch.where(done, torch.full_like(tok, pad), tok)
        resp[:, j] = tok
        lengths += (~done).long()
        if eos_t.numel():
            done |= torch.isin(tok, eos_t)
        if bool(done.all()) or j == n_new - 1:
            break
        cache = out[cache_kw] if cache_kw in out.keys() else out.past_key_values
        am = torch.cat([am, torch.ones((B, 1), dtype=am.dtype, device=device)], 1)
        last = last + 1
        out = fwd(
            input_ids=tok[:, None],
            attention_mask=am,
            position_ids=last[:, None],
            use_cache=True,
            **{cache_kw: cache},
        )
    Lr = int(lengths.max())
    hidden = torch.stack(states[:Lr], 1) if sc.split else None
    return resp[:, :Lr], lengths, hidden


def _check_sampling(num_samples, max_new_tokens, batch_size, temperature, top_k, top_p) -> None:
    for name, v in (
        ("num_samples", num_samples),
        ("max_new_tokens", max_new_tokens),
        ("batch_size", batch_size),
    ):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise TrmboundsError(f"{name} must be an integer >= 1, got {v!r}")
    t = float(temperature)
    if not (t >= MIN_TEMPERATURE and math.isfinite(t)):
        raise TrmboundsError(
            f"temperature must be a finite number >= {MIN_TEMPERATURE:g}, got {temperature}"
        )
    if int(top_k) < 0:
        raise TrmboundsError(f"top_k must be >= 0, got {top_k}")
    if not 0 < float(top_p) <= 1:
        raise TrmboundsError(f"top_p must be in (0, 1], got {top_p}")


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TrmboundsError(f"seed must be an integer, got {seed!r}")
    if not 0 <= int(seed) < 2**64:
        raise TrmboundsError(f"seed must be in [0, 2**64) (torch's generator), got {seed}")
    return int(seed)
