"""Models: dtypes, devices, loading with transformers, and next-token logits by rows.

torch and transformers are imported inside the functions that need them.
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import TrmboundsError
from ..hub import load_pretrained

#: Accepted ``--*-dtype`` names.
DTYPES = ("float32", "bfloat16", "float16", "float64")


def resolve_dtype(name: str) -> Any:
    """The torch dtype called ``name`` (one of :data:`DTYPES`)."""
    if name not in DTYPES:
        raise TrmboundsError(f"unknown dtype {name!r}; use one of {', '.join(DTYPES)}")
    import torch

    return getattr(torch, name)


def resolve_device(name: str | None) -> str:
    """``"auto"`` (or ``None``) is ``cuda`` when available, else ``cpu``."""
    import torch

    if name in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TrmboundsError(f"device {name!r} requested but CUDA is not available")
    if name == "mps":
        backend = getattr(torch.backends, "mps", None)
        if backend is None or not backend.is_available():
            raise TrmboundsError("device 'mps' requested but MPS is not available in this torch")
    if not (name == "cpu" or name.startswith("cuda") or name == "mps"):
        raise TrmboundsError(f"unknown device {name!r}; use cpu, cuda, cuda:N, mps or auto")
    return name


#: Accepted ``device_map`` strategies (transformers / accelerate).
DEVICE_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")


def load_model(
    ref: str | os.PathLike,
    dtype: str = "float32",
    attn: str | None = None,
    device: str = "cpu",
    *,
    device_map: str | None = None,
    device_memory: dict | None = None,
    offload_folder: str | os.PathLike | None = None,
) -> Any:
    """Load a causal LM with transformers (offline for a local directory; see
    :mod:`trmbounds.hub`).

    With ``device_map`` (``"auto"``: every visible GPU, then CPU RAM, then disk) the
    model is sharded by accelerate (the ``[model]`` extra installs it) instead of moved
    to ``device``; ``device_memory`` (e.g. ``{0: "20GiB", "cpu": "64GiB"}``) caps each
    device and ``offload_folder`` holds the layers that fit nowhere. Its inputs then go
    to the device of its first layer (:func:`input_device`).
    """
    import torch  # noqa: F401  (fail early with a clear error if missing)
    from transformers import AutoModelForCausalLM

    td = resolve_dtype(dtype)
    kw: dict[str, Any] = {}
    if attn:
        kw["attn_implementation"] = attn
    if device_map is not None:
        if device_map not in DEVICE_MAPS:
            raise TrmboundsError(
                f"unknown device map {device_map!r}; use one of {', '.join(DEVICE_MAPS)}"
            )
        try:
            import accelerate  # noqa: F401
        except ImportError:
            raise TrmboundsError(
                "a device map needs accelerate: pip install accelerate (in the model extra)"
            ) from None
        kw["device_map"] = device_map
        if device_memory:
            kw["max_memory"] = dict(device_memory)
        if offload_folder is not None:
            kw["offload_folder"] = str(offload_folder)

    def load(target: str, local_files_only: bool) -> Any:
        try:
            return AutoModelForCausalLM.from_pretrained(
                target, dtype=td, local_files_only=local_files_only, trust_remote_code=False, **kw
            )
        except TypeError:  # transformers < 4.56 spells it torch_dtype
            return AutoModelForCausalLM.from_pretrained(
                target,
                torch_dtype=td,
                local_files_only=local_files_only,
                trust_remote_code=False,
                **kw,
            )

    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # "Loading weights" on stderr: measure shows its own
    try:
        model = load_pretrained(load, ref, "model")
    finally:
        if shown:
            hf_logging.enable_progress_bar()
    if device_map is not None:
        return model.eval()
    return model.to(device).eval()


def input_device(model: Any) -> str:
    """Where a model's inputs go: its first layer's device for a sharded model (a
    ``hf_device_map``; CPU when that layer is offloaded), else its parameters' device."""
    dm = getattr(model, "hf_device_map", None)
    if dm:
        first = next(iter(dm.values()))
        if isinstance(first, int):
            return f"cuda:{first}"
        return "cpu" if str(first) in ("disk", "meta") else str(first)
    return str(next(model.parameters()).device)


def load_tokenizer(ref: str | os.PathLike) -> Any:
    """Load the tokenizer of ``ref`` (offline for a local directory; see :mod:`trmbounds.hub`)."""
    from transformers import AutoTokenizer

    return load_pretrained(
        lambda target, local_files_only: AutoTokenizer.from_pretrained(
            target, local_files_only=local_files_only, trust_remote_code=False
        ),
        ref,
        "tokenizer",
    )


class _Scorer:
    """Next-token logits of one model at chosen positions, without a full (B, L, V) tensor."""

    def __init__(self, model: Any):
        self.model = model
        base = getattr(model, getattr(model, "base_model_prefix", ""), None)
        head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        self.split = base is not None and base is not model and head is not None
        self.base, self.head = base, head
        cfg = getattr(model, "config", None)
        self.softcap = getattr(cfg, "final_logit_softcapping", None)
        self.scale = getattr(model, "logit_scale", None)  # e.g. Cohere: a float
        if not isinstance(self.scale, (int, float, type(None))):
            self.split = False  # unknown post-processing: use the model's own logits
        w = getattr(head, "weight", None)
        self.vocab = int(w.shape[0]) if w is not None else int(cfg.vocab_size)
        if self.split:
            self.split = self._head_reproduces_logits()

    def _head_reproduces_logits(self) -> bool:
        """Check once, on a 4-token probe, that body + head (+ known post-processing)
        give the model's own logits; otherwise use the model's full logits."""
        import torch

        dev = input_device(self.model)
        ids = torch.tensor([[1, 2, 3, 4]], device=dev) % max(self.vocab, 1)
        am = torch.ones_like(ids)
        pos = torch.arange(4, device=dev)[None, :]
        with torch.inference_mode():
            full = self.model(input_ids=ids, attention_mask=am, position_ids=pos).logits.float()
            self.split = True
            mine = self.logits(self.states(ids, am, pos)).float()
        tol = 1e-2 * (1.0 + float(full.abs().max()))
        return mine.shape == full.shape and bool(((mine - full).abs() <= tol).all())

    def states(self, ids, am, pos):
        """Hidden states (B, L, H), or full logits (B, L, V) for unsplittable models."""
        if self.split:
            return self.base(input_ids=ids, attention_mask=am, position_ids=pos).last_hidden_state
        return self.model(input_ids=ids, attention_mask=am, position_ids=pos).logits

    def logits(self, rows):
        if not self.split:
            return rows
        out = self.head(rows)
        if self.scale is not None:
            out = out * self.scale
        if self.softcap:
            out = (out / self.softcap).tanh() * self.softcap
        return out


def _forward_kwargs(model: Any) -> tuple[str, bool]:
    import inspect

    params = inspect.signature(model.forward).parameters
    cache_kw = "cache" if "cache" in params else "past_key_values"
    return cache_kw, "logits_to_keep" in params


def _eos_ids(tokenizer: Any, model: Any) -> set[int]:
    ids: set[int] = set()
    for src in (tokenizer, getattr(model, "generation_config", None), model.config):
        e = getattr(src, "eos_token_id", None) if src is not None else None
        if e is None:
            continue
        ids.update(int(x) for x in (e if isinstance(e, (list, tuple, set)) else [e]))
        if ids:
            break
    return ids
