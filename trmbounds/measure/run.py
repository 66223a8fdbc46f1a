"""``measure``: load two models, sample, score, aggregate."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import InputFileError, TrmboundsError
from ..hub import locate
from .aggregation import aggregate
from .models import _eos_ids, load_model, load_tokenizer, resolve_device, resolve_dtype
from .prompts import BUILTIN_PROMPTS, _is_chat, _tokenize
from .records import Measurement
from .sampling import _check_sampling, _check_seed
from .scoring import parse_memory, sample_and_score


def measure(
    roll: str | os.PathLike | Any,
    train: str | os.PathLike | Any | None = None,
    *,
    roll_dtype: str = "float32",
    train_dtype: str = "float32",
    roll_attn: str | None = None,
    train_attn: str | None = None,
    tokenizer: str | os.PathLike | Any | None = None,
    prompts: Sequence[Any] | None = None,
    num_samples: int = 4,
    max_new_tokens: int = 64,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int = 0,
    device: str | None = "auto",
    device_map: str | None = None,
    device_memory: dict | None = None,
    offload_folder: str | os.PathLike | None = None,
    batch_size: int = 8,
    max_memory: int | str = "1GB",
    trm_max: float = 0.05,
    trm_avg: float = 0.001,
    ser: float = 0.05,
    ln_trm: float | None = None,
    adv_range: float | None = None,
    reward_range: tuple[float, float] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Measurement:
    r"""Measure the exact divergence statistics between two policies by running them.

    ``roll`` and ``train`` are model directories, hub ids, or loaded
    ``transformers`` causal LMs; ``train`` defaults to ``roll`` (then ``roll_dtype``
    vs ``train_dtype`` and the attention implementations are the mismatch measured,
    the paper's backend-mismatch source). Prompts are strings (tokenised with
    ``tokenizer``, default the roll model's), chats, or lists of token ids;
    ``None`` uses :data:`BUILTIN_PROMPTS`.

    ``device_map`` (with ``device_memory``, ``offload_folder``) shards a training model
    loaded from a path across devices (:func:`~trmbounds.measure.models.load_model`).

    Returns a :class:`Measurement` whose ``stats`` are written as the statistics
    file (:func:`aggregate` documents every estimator).
    """
    for name, v in (("trm_max", trm_max), ("trm_avg", trm_avg), ("ser", ser), ("ln_trm", ln_trm)):
        if name == "ln_trm" and v is None:
            continue
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise TrmboundsError(f"{name} threshold must be a finite number >= 0, got {v!r}")
    parse_memory(max_memory)
    _check_sampling(num_samples, max_new_tokens, batch_size, temperature, top_k, top_p)
    _check_seed(seed)
    for what, ref in (("model", roll), ("model", train), ("tokenizer", tokenizer)):
        if isinstance(ref, (str, os.PathLike)):
            locate(ref, what)  # a missing path or uncached offline id fails before torch loads
    resolve_dtype(roll_dtype)
    resolve_dtype(train_dtype)
    dev = resolve_device(device)
    roll_ref = roll if isinstance(roll, (str, os.PathLike)) else None
    train_src = roll if train is None else train
    train_ref = train_src if isinstance(train_src, (str, os.PathLike)) else None
    roll_model = load_model(roll, roll_dtype, roll_attn, dev) if roll_ref is not None else roll
    if train_ref is not None:
        train_model = load_model(
            train_ref,
            train_dtype,
            train_attn,
            dev,
            device_map=device_map,
            device_memory=device_memory,
            offload_folder=offload_folder,
        )
    else:
        train_model = train_src
    if prompts is None:
        prompts = list(BUILTIN_PROMPTS)
    tok = None
    if any(not isinstance(p, (list, tuple)) or _is_chat(p) for p in prompts):
        tok_ref = tokenizer if tokenizer is not None else roll_ref
        if tok_ref is None:
            raise TrmboundsError("text prompts need a tokenizer (pass tokenizer=...)")
        tok = load_tokenizer(tok_ref) if isinstance(tok_ref, (str, os.PathLike)) else tok_ref
        prompt_ids = _tokenize(tok, prompts)
    else:
        prompt_ids = [[int(t) for t in p] for p in prompts]
        if tokenizer is not None and not isinstance(tokenizer, (str, os.PathLike)):
            tok = tokenizer
    eos = _eos_ids(tok, roll_model)
    pad = getattr(tok, "pad_token_id", None) if tok is not None else None
    records = sample_and_score(
        roll_model,
        train_model,
        prompt_ids,
        num_samples=num_samples,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        seed=seed,
        batch_size=batch_size,
        max_memory=max_memory,
        eos_ids=eos,
        pad_id=pad,
        device=dev,
        progress=progress,
    )
    # top-k >= V keeps every token: only a smaller k (or top-p < 1) truncates pi_roll
    V = records.vocab_size
    truncated = (int(top_k) > 0 and (V == 0 or int(top_k) < V)) or float(top_p) < 1
    import torch
    import transformers

    meta = {
        "tool": "trmbounds measure",
        "roll": {
            "model": str(roll_ref) if roll_ref is not None else type(roll_model).__name__,
            "dtype": str(next(roll_model.parameters()).dtype).replace("torch.", ""),
            "attn": getattr(roll_model.config, "_attn_implementation", None),
        },
        "train": {
            "model": str(train_ref) if train_ref is not None else type(train_model).__name__,
            "dtype": str(next(train_model.parameters()).dtype).replace("torch.", ""),
            "attn": getattr(train_model.config, "_attn_implementation", None),
        },
        "sampling": {
            "num_prompts": len(prompt_ids),
            "num_samples": int(num_samples),
            "max_new_tokens": int(max_new_tokens),
            "temperature": float(temperature),
            "top_k": int(top_k),
            "top_p": float(top_p),
            "seed": int(seed),
            "batch_size": int(batch_size),
        },
        "device": dev,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
    }
    from .. import __version__

    meta["version"] = __version__
    stats = aggregate(
        records,
        trm_max=trm_max,
        trm_avg=trm_avg,
        ser=ser,
        ln_trm=ln_trm,
        truncated=truncated,
        adv_range=adv_range,
        reward_range=reward_range,
        meta=meta,
    )
    warnings: list[str] = []
    if truncated:
        warnings.append(
            f"top-k/top-p sampling truncates pi_roll, which breaks full support (docs/theory.md §6): "
            f"measured missing mass m = {stats.missing_mass:.4g} is added to the PDI-family "
            "bounds and the Adaptive bounds are not reported"
        )
    if records.support_fixups:
        warnings.append(
            f"{records.support_fixups} sampled token(s) fell outside the truncation set "
            "recomputed when scoring (decode vs prefill numerics) and were kept in the support"
        )
    if records.lengths.max() >= max_new_tokens:
        ended = float((records.lengths < max_new_tokens).mean())
        if ended < 1:
            warnings.append(
                f"{100 * (1 - ended):.0f}% of responses reached the generation cap "
                f"({max_new_tokens} tokens, --max-new-tokens) before EOS: the bounds' horizon is "
                "that cap; a larger cap measures longer responses"
            )
    warnings.extend(stats.warnings)
    return Measurement(stats, records, warnings)


def measure_rollouts(
    rollouts: str | os.PathLike,
    train: str | os.PathLike | Any,
    *,
    rollout_format: str = "native",
    max_new_tokens: int | None = None,
    train_dtype: str = "float32",
    train_attn: str | None = None,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    logprobs_mode: str | None = None,
    device: str | None = "auto",
    device_map: str | None = None,
    device_memory: dict | None = None,
    offload_folder: str | os.PathLike | None = None,
    batch_size: int = 8,
    max_memory: int | str = "1GB",
    trm_max: float = 0.05,
    trm_avg: float = 0.001,
    ser: float = 0.05,
    ln_trm: float | None = None,
    adv_range: float | None = None,
    reward_range: tuple[float, float] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Measurement:
    r"""Certified divergence intervals between the engine that sampled and the trainer.

    ``rollouts`` is a rollout file (:mod:`trmbounds.measure.rollouts`, ``docs/rollouts.md``):
    the engine's sampled tokens, their log-probs and its top-k log-probs per position.
    ``train`` (a model directory, hub id or loaded causal LM) scores every response
    with full logits; per token the certified intervals ``kl_lo <= KL <= kl_hi`` and
    ``tv_lo <= TV <= tv_hi`` follow (:mod:`trmbounds.measure.intervals`). The statistics
    use the **upper ends**: ``kl_max``/``tv_max`` are the largest ``kl_hi``/``tv_hi``
    over the measured contexts (certified at each measured context, empirical with
    respect to all contexts); ``kl_seq`` and ``per_position`` average the upper ends
    along the sampled paths (estimates of upper bounds); ``tv_seq`` is the bounded
    estimator :math:`E[(1 - \prod_t\rho_t)^+]` from the engine's and the trainer's
    log-probs of the sampled tokens (an estimate of the value itself). Sampling
    settings (``temperature``, ``top_p``, ``top_k``, ``logprobs_mode``) are defaults for
    records that do not carry their own
    (:func:`~trmbounds.measure.rollouts.sampling_settings`). ``max_new_tokens`` is the
    engine's generation cap (its ``max_tokens``): it is recorded as
    ``meta.sampling.max_new_tokens``, the horizon ``eval --stats`` and ``check`` use,
    and a longer response is refused; without it no horizon is recorded (a warning
    says so) and they fall back to the longest response. ``device_map`` (with
    ``device_memory``, ``offload_folder``) shards a trainer larger than one device
    (:func:`~trmbounds.measure.models.load_model`).
    """
    from .rollouts import check_vocab, read_rollouts, sampling_settings
    from .scoring import score_rollouts

    for name, v in (("trm_max", trm_max), ("trm_avg", trm_avg), ("ser", ser), ("ln_trm", ln_trm)):
        if name == "ln_trm" and v is None:
            continue
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise TrmboundsError(f"{name} threshold must be a finite number >= 0, got {v!r}")
    parse_memory(max_memory)
    resolve_dtype(train_dtype)
    if max_new_tokens is not None and not (
        isinstance(max_new_tokens, int) and not isinstance(max_new_tokens, bool)
        and max_new_tokens >= 1
    ):  # fmt: skip
        raise TrmboundsError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
    ros, skipped = read_rollouts(rollouts, rollout_format)
    if max_new_tokens is not None:
        for ro in ros:
            if len(ro.response_ids) > max_new_tokens:
                raise InputFileError(
                    f"{rollouts}: line {ro.line}: a response of {len(ro.response_ids)} tokens, "
                    f"longer than --max-new-tokens {max_new_tokens} (the engine's generation "
                    "cap): give the cap the engine used"
                )
    dev = resolve_device(device)
    train_ref = train if isinstance(train, (str, os.PathLike)) else None
    if train_ref is not None:  # a bad file fails before the weights load
        v0 = _config_vocab(train_ref)
        if v0:
            check_vocab(ros, v0, rollouts)
    if train_ref is not None:
        model = load_model(
            train_ref,
            train_dtype,
            train_attn,
            dev,
            device_map=device_map,
            device_memory=device_memory,
            offload_folder=offload_folder,
        )
    else:
        model = train
    from .models import _Scorer, input_device

    if getattr(model, "hf_device_map", None):
        dev = input_device(model)  # a sharded model: inputs go to its first layer

    V = _Scorer(model).vocab
    check_vocab(ros, V, rollouts)
    temps, truncated, evidence = sampling_settings(
        ros,
        V,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        logprobs_mode=logprobs_mode,
        path=rollouts,
    )
    pad = getattr(getattr(model, "config", None), "pad_token_id", None)
    records = score_rollouts(
        model,
        ros,
        temps,
        batch_size=batch_size,
        max_memory=max_memory,
        pad_id=int(pad) if isinstance(pad, int) else 0,
        truncated=truncated,
        device=dev,
        progress=progress,
    )
    import torch
    import transformers

    from .. import __version__

    meta: dict[str, Any] = {
        "tool": "trmbounds measure --rollouts",
        "version": __version__,
        "rollouts": {
            "file": str(rollouts),
            "format": rollout_format,
            "n_rollouts": len(ros),
            "skipped_empty": skipped,
            "temperatures": sorted(set(temps)),
            "truncated_sampling": truncated,
            "truncation_evidence": evidence,
        },
        "sampling": {"max_new_tokens": max_new_tokens},
        "train": {
            "model": str(train_ref) if train_ref is not None else type(model).__name__,
            "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
            "attn": getattr(getattr(model, "config", None), "_attn_implementation", None),
        },
        "device": dev,
        "device_map": {
            "requested": device_map,
            "placement": getattr(model, "hf_device_map", None),
        },
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
    }
    stats = aggregate(
        records,
        trm_max=trm_max,
        trm_avg=trm_avg,
        ser=ser,
        ln_trm=ln_trm,
        truncated=truncated,
        adv_range=adv_range,
        reward_range=reward_range,
        meta=meta,
    )
    warnings: list[str] = []
    if skipped:
        warnings.append(f"{skipped} rollout(s) with an empty response were skipped")
    if evidence is not None:
        warnings.append(
            f"{evidence}: the engine's distribution was truncated (top-k/top-p sampling "
            "with processed log-probs), so the rollouts are treated as truncated; give "
            "the sampling settings in the records or --top-p / --top-k"
        )
    if truncated:
        warnings.append(
            "top-k/top-p sampling truncates the engine's distribution, which breaks full "
            f"support (docs/theory.md): the missing mass m ≈ {stats.missing_mass:.4g} "
            "(estimate: mean over responses of summed upper ends) is added to the PDI-family "
            "bounds and the Adaptive bounds are not reported"
        )
    lengths = records.lengths
    if max_new_tokens is None:
        warnings.append(
            "no generation cap given (--max-new-tokens, the engine's max_tokens): no horizon "
            f"is recorded, and eval / check take T = {int(lengths.max())}, the longest "
            "response, which understates the horizon if the engine could generate longer"
        )
    elif lengths.max() >= max_new_tokens:
        warnings.append(
            f"{100 * float((lengths >= max_new_tokens).mean()):.0f}% of responses reached "
            f"the generation cap ({max_new_tokens} tokens, --max-new-tokens) before EOS: the "
            "bounds' horizon is that cap"
        )
    warnings.extend(stats.warnings)
    return Measurement(stats, records, warnings)


def _config_vocab(ref: str | os.PathLike) -> int:
    """The vocabulary size in a model's config (0 if it cannot be read cheaply); a
    ``vocab_size`` that no vocabulary has (beyond every token id's range) is refused."""
    from pathlib import Path

    from .rollouts import MAX_TOKEN_ID

    cfg = Path(ref).expanduser() / "config.json"
    try:
        import json

        v = json.loads(cfg.read_text(encoding="utf-8")).get("vocab_size")
    except (OSError, ValueError, AttributeError, RecursionError):
        return 0
    if isinstance(v, int) and not isinstance(v, bool) and v > MAX_TOKEN_ID:
        text = str(v) if v < 10**30 else f"of {len(str(v))} digits"
        raise InputFileError(f"{cfg}: vocab_size {text} is not a vocabulary size")
    return int(v) if isinstance(v, int) and not isinstance(v, bool) and v > 0 else 0
