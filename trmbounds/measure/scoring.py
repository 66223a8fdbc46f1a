"""Scoring: both policies' full logits at every sampled context, through the blocked
divergence kernel (:func:`trmbounds.trm.token_divergences`), within a memory budget."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..errors import TrmboundsError
from ..trm import BLOCK_ELEMENTS, token_divergences
from .models import _Scorer, input_device
from .records import Records
from .sampling import _check_sampling, _check_seed, _left_pad, _sample_batch

_MEM_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
}


# ----------------------------------------------------------------------- inputs
def parse_memory(text: str | int | float) -> int:
    """Bytes from a memory size such as ``"512MB"``, ``"2GiB"`` or ``1e9``.

    Examples
    --------
    >>> parse_memory("512MB"), parse_memory("2GiB"), parse_memory(1e9)
    (512000000, 2147483648, 1000000000)
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value, unit = float(text), ""
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*", str(text))
        if not m or m.group(2).lower() not in _MEM_UNITS:
            raise TrmboundsError(f"cannot read memory size {text!r}; use e.g. 512MB, 2GB or 1GiB")
        value, unit = float(m.group(1)), m.group(2).lower()
    value *= _MEM_UNITS[unit]
    if not math.isfinite(value) or value < 1:
        raise TrmboundsError(f"memory size must be a positive, finite size, got {text!r}")
    return int(value)


def _size(n: int) -> str:
    """A memory size for a message: bytes below 1 MB, else MB."""
    return f"{n:,} bytes" if n < 10**6 else f"{n / 1e6:,.0f} MB"


def _head_rows(V: int, budget: int, batch_size: int, top: bool) -> int:
    """Rows of logits per lm-head chunk so that the vocabulary-sized buffers fit ``budget``.

    Counted against the budget: the two lm-head outputs, at float32 size per value
    whatever the model dtype (a low-precision matmul may go through a float32
    buffer), ``8*V`` bytes per row; the divergence kernel's block of
    :data:`~trmbounds.trm.BLOCK_ELEMENTS` values with up to 8 float32 temporaries
    (16 with top-k / top-p: the threshold search's and the whole-row path's scratch rows and
    masks, and at worst a ranking of a whole row); the sampler's
    per-step ``batch_size × V`` float32 buffers (4 of them). Model weights,
    activations and the KV cache are not counted.
    """
    block = max(1, BLOCK_ELEMENTS // V) * V
    workspace = block * 4 * (16 if top else 8) + batch_size * V * 4 * 4
    per_row = V * 8
    rows = (budget - workspace) // per_row
    if rows < 1:
        need = workspace + per_row
        raise TrmboundsError(
            f"max-memory {_size(budget)} is too small for vocabulary {V} and batch "
            f"size {batch_size}: need at least {math.ceil(need / 1e6)} MB"
        )
    return int(rows)


def sample_and_score(
    roll_model: Any,
    train_model: Any,
    prompt_ids: Sequence[Sequence[int]],
    *,
    num_samples: int = 4,
    max_new_tokens: int = 64,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int = 0,
    batch_size: int = 8,
    max_memory: int | str = "1GB",
    eos_ids: set[int] | None = None,
    pad_id: int | None = None,
    device: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Records:
    r"""Sample responses from ``roll_model`` and score them under both models.

    Each prompt is answered ``num_samples`` times; sequences are processed in batches
    of ``batch_size`` (prompt-major order) with one ``torch.Generator`` seeded with
    ``seed``, so a run is reproducible on CPU for the same batch size. Sampling uses
    the KV cache and keeps the rollout's final hidden states; scoring re-applies the
    rollout lm-head to exactly those (the scored :math:`\pi_{roll}` is the distribution
    that was sampled from) and runs the training model once over prompt + response
    (teacher forcing, as a trainer does). lm-heads are applied in chunks of rows sized
    by ``max_memory`` (:func:`_head_rows`), so no (batch × length × vocabulary) logit
    tensor is ever built.

    Both policies are scored at ``temperature``; only the rollout policy is truncated
    by ``top_k`` / ``top_p`` (the sampler's distribution; the trainer's policy keeps
    full support, which is what ``missing_mass`` measures).

    ``progress(done, total)`` is called after every batch.
    """
    import torch

    _check_sampling(num_samples, max_new_tokens, batch_size, temperature, top_k, top_p)
    seed = _check_seed(seed)
    if not prompt_ids or any(len(p) == 0 for p in prompt_ids):
        raise TrmboundsError("need at least one prompt, and no empty prompt")
    budget = parse_memory(max_memory)
    device = device or input_device(roll_model)
    eos = set(eos_ids or ())
    pad = pad_id if pad_id is not None else (min(eos) if eos else 0)
    sr, st = _Scorer(roll_model), _Scorer(train_model)
    if sr.vocab != st.vocab:
        raise TrmboundsError(f"vocabularies differ: roll {sr.vocab} vs train {st.vocab}")
    V = sr.vocab
    if top_k >= V:
        top_k = 0  # keeps the whole vocabulary: no truncation
    rows = _head_rows(V, budget, batch_size, top_p < 1)
    if not (sr.split and st.split):
        rows = 10**12  # full logits come from the forward; memory is the forward's

    jobs = [(i, p) for i, p in enumerate(prompt_ids) for _ in range(num_samples)]
    N = len(jobs)
    res: dict[str, list] = {k: [] for k in ("kl", "tv", "mm", "lpr", "lpt", "tok", "len")}
    fixups = 0
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed))
    nb = math.ceil(N / batch_size)
    with torch.inference_mode():
        for b in range(nb):
            chunk = jobs[b * batch_size : (b + 1) * batch_size]
            prompts = [list(p) for _, p in chunk]
            resp, lengths, hid = _sample_batch(
                sr,
                prompts,
                n_new=max_new_tokens,
                temperature=float(temperature),
                top_k=int(top_k),
                top_p=float(top_p),
                eos=eos,
                pad=pad,
                gen=gen,
                device=device,
            )
            ids, am = _left_pad(prompts, pad, device)
            Lp, Lr = ids.shape[1], resp.shape[1]
            ram = (torch.arange(Lr, device=device)[None, :] < lengths[:, None]).long()
            seq = torch.cat([ids, resp], 1)
            full_am = torch.cat([am, ram], 1)
            pos = (full_am.cumsum(1) - 1).clamp(min=0)
            bi, ji = torch.nonzero(ram.bool(), as_tuple=True)
            if hid is not None:  # the rollout's own decode states (see _sample_batch)
                hr = hid[bi, ji]
            else:
                hr = sr.states(seq, full_am, pos)[bi, Lp - 1 + ji]
            ht = st.states(seq, full_am, pos)[bi, Lp - 1 + ji]
            toks = resp[bi, ji]
            n = toks.shape[0]
            out = {k: torch.empty(n, dtype=torch.float64) for k in ("kl", "tv", "mm", "lpr", "lpt")}
            for s in range(0, n, rows):
                lr_ = sr.logits(hr[s : s + rows])
                lt_ = st.logits(ht[s : s + rows])
                d = token_divergences(
                    lr_,
                    lt_,
                    toks[s : s + rows],
                    temperature=temperature,
                    top_k=top_k,
                    top_p=top_p,
                )
                for k, v in zip(("kl", "tv", "mm", "lpr", "lpt"), d[:5], strict=True):
                    out[k][s : s + rows] = v.double().cpu()
                fixups += int(d.forced.sum())
                del lr_, lt_, d
            # packed: this batch's tokens in row-major (response, position) order, as
            # nonzero() lists them, so each response's tokens are one contiguous run
            for k in ("kl", "tv", "mm", "lpr", "lpt"):
                res[k].append(out[k].numpy())
            res["tok"].append(toks.cpu().numpy())
            res["len"].append(lengths.cpu().numpy())
            if progress is not None:
                progress(b + 1, nb)
    lengths = np.concatenate(res["len"]).astype(np.int64)

    def cat(k):
        return np.concatenate(res[k])

    return Records(
        kl=cat("kl"),
        tv=cat("tv"),
        missing_mass=cat("mm"),
        logp_roll=cat("lpr"),
        logp_theta=cat("lpt"),
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        prompt_index=np.array([i for i, _ in jobs]),
        tokens=cat("tok").astype(np.int64),
        support_fixups=fixups,
        vocab_size=V,
    )


def _s_sets(rollouts):
    """Per token of ``rollouts``: the reported ids S (top-k + sampled), their engine
    log-probs, p_min; padded to the widest S, padding repeating the sampled id."""
    rows = []
    for ro in rollouts:
        for t, y in enumerate(ro.response_ids):
            ids, lps = ro.top_ids[t], ro.top_logprobs[t]
            p_min = math.exp(float(lps.min())) if lps.size else 1.0
            if not (ids == y).any():
                ids = np.append(ids, y)
                lps = np.append(lps, ro.logprobs[t])
            rows.append((ids, lps, p_min, y))
    K = max(len(r[0]) for r in rows)
    n = len(rows)
    s_ids = np.empty((n, K), dtype=np.int64)
    s_lp = np.full((n, K), -math.inf)
    valid = np.zeros((n, K), dtype=bool)
    p_min = np.empty(n)
    sampled = np.empty(n, dtype=np.int64)
    for i, (ids, lps, pm, y) in enumerate(rows):
        k = len(ids)
        s_ids[i, :k], s_ids[i, k:] = ids, y
        s_lp[i, :k] = lps
        valid[i, :k] = True
        p_min[i], sampled[i] = pm, y
    return s_ids, s_lp, valid, p_min, sampled


#: Padded tokens (rollouts x longest prompt + response) per forward of score_rollouts: a
#: batch takes rollouts of similar lengths (sorted) up to this many tokens, so one long
#: rollout never pads many short ones to its length.
BATCH_TOKENS = 8192


def _token_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices of ``lengths`` in batches of at most ``batch_size``, sorted by length,
    each padding to at most :data:`BATCH_TOKENS` tokens (a longer rollout alone)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        if cur and (len(cur) >= batch_size or (len(cur) + 1) * lengths[i] > BATCH_TOKENS):
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    return batches


def score_rollouts(
    train_model: Any,
    rollouts: Sequence[Any],
    temperatures: Sequence[float],
    *,
    batch_size: int = 8,
    max_memory: int | str = "1GB",
    pad_id: int = 0,
    truncated: bool = False,
    device: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Records:
    r"""Score an engine's rollouts with the training model's full logits.

    Runs ``train_model`` once over prompt + response of each rollout (teacher forcing),
    applies its lm-head in chunks of rows sized by ``max_memory`` (no
    batch × length × vocabulary tensor), and computes per token the certified intervals
    of :func:`~trmbounds.measure.intervals.token_intervals` against the engine's top-k
    log-probs, with :math:`q = \mathrm{softmax}(y/\tau)` at the rollout's temperature
    ``temperatures[i]`` (its ``logprobs_mode`` was checked by the caller). The records'
    ``kl``/``tv``/``missing_mass`` are the upper ends; ``logp_roll`` the engine's
    log-probs of the sampled tokens.
    """
    import torch

    from .intervals import token_intervals

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise TrmboundsError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if not rollouts:
        raise TrmboundsError("no rollouts to score")
    budget = parse_memory(max_memory)
    device = device or input_device(train_model)
    st = _Scorer(train_model)
    V = st.vocab
    from .intervals import INTERVAL_BLOCK_ELEMENTS

    # the lm-head output (float32 size per value) per row, and the interval kernel's
    # block: its float64 log-softmax, the logits' working copy and small temporaries
    # (6 values of 8 bytes per element); model weights and activations are not counted
    block_rows = max(1, INTERVAL_BLOCK_ELEMENTS // V)
    while block_rows > 1 and budget < block_rows * V * 8 * 6 + V * 4:
        block_rows //= 2
    workspace = block_rows * V * 8 * 6
    rows = (budget - workspace) // (V * 4)
    if rows < 1:
        raise TrmboundsError(
            f"max-memory {_size(budget)} is too small for vocabulary {V}: need at "
            f"least {math.ceil((workspace + V * 4) / 1e6)} MB"
        )
    if not st.split:
        rows = 10**12
    N = len(rollouts)
    names = ("kl_lo", "kl_hi", "tv_lo", "tv_hi", "reported_mass", "logp_theta", "missing_mass_hi")
    # per rollout, its own length: nothing here (nor the packed Records built at the end)
    # is as wide as the longest response times the number of rollouts
    per: list[dict[str, np.ndarray] | None] = [None] * N
    batches = _token_batches(
        [len(r.prompt_ids) + len(r.response_ids) for r in rollouts], batch_size
    )
    nb = len(batches)
    with torch.inference_mode():
        for b, idx in enumerate(batches):
            chunk = [rollouts[i] for i in idx]
            temps = [temperatures[i] for i in idx]
            B = len(chunk)
            Lr = max(len(r.response_ids) for r in chunk)
            resp = torch.full((B, Lr), pad_id, dtype=torch.long)
            ram = torch.zeros((B, Lr), dtype=torch.long)
            for i, r in enumerate(chunk):
                resp[i, : len(r.response_ids)] = torch.tensor(r.response_ids)
                ram[i, : len(r.response_ids)] = 1
            ids, am = _left_pad([list(r.prompt_ids) for r in chunk], pad_id, device)
            resp, ram = resp.to(device), ram.to(device)
            Lp = ids.shape[1]
            seq = torch.cat([ids, resp], 1)
            full_am = torch.cat([am, ram], 1)
            pos = (full_am.cumsum(1) - 1).clamp(min=0)
            bi, ji = torch.nonzero(ram.bool(), as_tuple=True)  # row-major: rollout, position
            ht = st.states(seq, full_am, pos)[bi, Lp - 1 + ji]
            del seq, full_am, pos, resp, ram
            s_ids, s_lp, valid, p_min, sampled = _s_sets(chunk)
            tau = np.array([temps[i] for i in bi.cpu().numpy()], dtype=np.float64)
            n = ht.shape[0]
            out = {k: np.empty(n) for k in names}
            for s in range(0, n, rows):
                e = min(n, s + rows)
                lt_ = st.logits(ht[s:e])
                for t_val in np.unique(tau[s:e]):
                    sel = np.nonzero(tau[s:e] == t_val)[0] + s
                    sl = torch.as_tensor(sel - s, device=lt_.device)
                    iv = token_intervals(
                        lt_.index_select(0, sl) if len(sel) < e - s else lt_,
                        torch.as_tensor(s_ids[sel], device=lt_.device),
                        torch.as_tensor(s_lp[sel], device=lt_.device),
                        torch.as_tensor(valid[sel], device=lt_.device),
                        torch.as_tensor(p_min[sel], device=lt_.device),
                        torch.as_tensor(sampled[sel], device=lt_.device),
                        temperature=float(t_val),
                        block_rows=block_rows,
                    )
                    for k, v in zip(names, iv, strict=True):
                        out[k][sel] = v.double().cpu().numpy()
                del lt_
            del ht
            # bi is row-major, so each rollout's tokens are one contiguous run
            start = 0
            for i, r in zip(idx, chunk, strict=True):
                L = len(r.response_ids)
                per[i] = {k: out[k][start : start + L] for k in names}
                per[i]["tok"] = sampled[start : start + L]
                start += L
            if progress is not None:
                progress(b + 1, nb)
    lengths = np.array([len(r.response_ids) for r in rollouts], dtype=np.int64)

    def packed(key: str) -> np.ndarray:
        return np.concatenate([per[i][key] for i in range(N)])  # type: ignore[index]

    res = {k: packed(k) for k in names}
    toks = packed("tok").astype(np.int64)
    lpr = np.concatenate([np.asarray(r.logprobs, dtype=np.float64) for r in rollouts])
    return Records(
        kl=res["kl_hi"],
        tv=res["tv_hi"],
        missing_mass=res["missing_mass_hi"] if truncated else np.zeros(toks.size),
        logp_roll=lpr,
        logp_theta=res["logp_theta"],
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        prompt_index=np.arange(N),
        tokens=toks,
        vocab_size=V,
        source="intervals",
        kl_lo=res["kl_lo"],
        kl_hi=res["kl_hi"],
        tv_lo=res["tv_lo"],
        tv_hi=res["tv_hi"],
        reported_mass=res["reported_mass"],
        truncated=truncated,
    )
