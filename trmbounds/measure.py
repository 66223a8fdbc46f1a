r"""Measure the exact divergences between a rollout and a training policy by running them.

``trmbounds measure`` (and :func:`measure`) samples responses from
:math:`\pi_{roll}`, scores every response under both policies with full logits, and
computes per token the exact :math:`KL(\pi_{roll}\|\pi_\theta)` and TV over the whole
vocabulary (:func:`trmbounds.trm.token_divergences`), the sampled token's
log-ratio :math:`\log\rho_t` and the k1/k2/k3 proxies. :func:`aggregate` turns the
per-token records into :class:`~trmbounds.stats.Stats` (the statistics file of
``docs/stats-file.md``):

- ``kl_max`` / ``tv_max`` (status ``empirical``): maxima over the **measured**
  contexts only — lower estimates of the maxima over all reachable contexts that the
  guarantee needs (SPEC §5.1);
- ``kl_seq`` (``estimate``): :math:`\frac1N\sum_i\sum_t KL(c_{i,t})` — the exact
  per-context KL summed along each sampled path is an unbiased estimate of
  :math:`D_{KL}^{seq}` (chain rule), with lower variance than summing k3;
- ``tv_seq`` (``estimate``): :math:`\frac1N\sum_i \tfrac12|\prod_t\rho_{i,t} - 1|`,
  unbiased for :math:`D_{TV}^{seq}` under full support (computed in log space);
- ``per_position`` (``estimate``): :math:`\bar D_t = \frac1N\sum_i TV(c_{i,t})` with
  TV = 0 after a response's end (see :func:`aggregate`);
- ``missing_mass`` (``estimate``, only with top-k/top-p sampling):
  :math:`m = \frac1N\sum_i\sum_t \pi_\theta(\text{outside supp}\,\pi_{roll}|c_{i,t})`.

Confidence intervals are normal intervals, mean ± 1.96·sd/√N over the N sequences.

torch and transformers (the ``[model]`` extra) are imported inside the functions
that need them; importing this module does not import them.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputFileError, TrmboundsError
from .hub import load_pretrained, locate
from .stats import Stats
from .trm import (
    BLOCK_ELEMENTS,
    k1,
    k2,
    k3,
    ln_trm_mask,
    log_ppl_gap,
    ser_mask,
    token_divergences,
    trm_avg_mask,
    trm_combined_mask,
    trm_max_mask,
    truncate_logits,
)

__all__ = [
    "BUILTIN_PROMPTS",
    "DTYPES",
    "Records",
    "Measurement",
    "parse_memory",
    "load_prompts",
    "resolve_dtype",
    "resolve_device",
    "load_model",
    "load_tokenizer",
    "sample_and_score",
    "aggregate",
    "write_token_dump",
    "normal_ci",
    "measure",
]

#: A small built-in prompt set (used when no prompt file is given).
BUILTIN_PROMPTS = (
    "Explain why the sky is blue in two sentences.",
    "Write a short poem about the sea.",
    "What is 17 times 23? Show your reasoning.",
    "Summarise the plot of Romeo and Juliet.",
    "Give three tips for writing clear Python code.",
    "Translate 'good morning, how are you?' into French.",
    "Describe how a hash table works.",
    "List the planets of the solar system in order.",
)

#: Accepted ``--*-dtype`` names.
DTYPES = ("float32", "bfloat16", "float16", "float64")

#: Lowest accepted sampling temperature: logits / T must stay finite in float32
#: (a logit of 1e3 at T = 1e-4 is 1e7; at T = 1e-39 float32 overflows to inf).
MIN_TEMPERATURE = 1e-4

_Z95 = 1.959963984540054  # the 97.5 % quantile of the standard normal

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


def load_prompts(path: str | os.PathLike | None) -> list[Any]:
    """Prompts from a text file (one per non-empty line) or a JSONL file.

    A JSONL record is an object with ``"prompt"`` (or ``"text"``), a string, or
    ``"messages"``, a chat (list of ``{"role", "content"}``) for the tokenizer's chat
    template. ``None`` gives :data:`BUILTIN_PROMPTS`.
    """
    if path is None:
        return list(BUILTIN_PROMPTS)
    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"prompt file not found: {p}")
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise InputFileError(f"{p}: not UTF-8 text") from None
    except OSError as exc:
        raise InputFileError(f"cannot read {p}: {exc.strerror or exc}") from None
    jsonl = p.suffix.lower() in (".jsonl", ".json", ".ndjson")
    out: list[Any] = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if not jsonl:
            out.append(line.rstrip("\n"))
            continue
        try:
            rec = json.loads(line)
        except (ValueError, RecursionError) as exc:  # also: nested too deep, > 4,300 digits
            from ._io import decode_reason

            raise InputFileError(f"{p}: line {lineno}: {decode_reason(exc)}") from None
        if isinstance(rec, str):
            out.append(rec)
        elif isinstance(rec, dict) and isinstance(rec.get("prompt", rec.get("text")), str):
            out.append(rec.get("prompt", rec.get("text")))
        elif isinstance(rec, dict) and _is_chat(rec.get("messages")):
            out.append(list(rec["messages"]))
        else:
            raise InputFileError(
                f"{p}: line {lineno}: expected an object with a 'prompt' string or a "
                "'messages' list of {role, content}"
            )
    if not out:
        raise InputFileError(f"{p}: no prompts")
    return out


def _is_chat(x: Any) -> bool:
    return (
        isinstance(x, list)
        and len(x) > 0
        and all(isinstance(m, dict) and "role" in m and "content" in m for m in x)
    )


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


def load_model(
    ref: str | os.PathLike, dtype: str = "float32", attn: str | None = None, device: str = "cpu"
) -> Any:
    """Load a causal LM with transformers (offline for a local directory; see :mod:`trmbounds.hub`)."""
    import torch  # noqa: F401  (fail early with a clear error if missing)
    from transformers import AutoModelForCausalLM

    td = resolve_dtype(dtype)
    kw: dict[str, Any] = {}
    if attn:
        kw["attn_implementation"] = attn

    def load(target: str, local_files_only: bool) -> Any:
        try:
            return AutoModelForCausalLM.from_pretrained(
                target, dtype=td, local_files_only=local_files_only, **kw
            )
        except TypeError:  # transformers < 4.56 spells it torch_dtype
            return AutoModelForCausalLM.from_pretrained(
                target, torch_dtype=td, local_files_only=local_files_only, **kw
            )

    model = load_pretrained(load, ref, "model")
    return model.to(device).eval()


def load_tokenizer(ref: str | os.PathLike) -> Any:
    """Load the tokenizer of ``ref`` (offline for a local directory; see :mod:`trmbounds.hub`)."""
    from transformers import AutoTokenizer

    return load_pretrained(
        lambda target, local_files_only: AutoTokenizer.from_pretrained(
            target, local_files_only=local_files_only
        ),
        ref,
        "tokenizer",
    )


def _tokenize(tokenizer: Any, prompts: Sequence[Any]) -> list[list[int]]:
    out = []
    for i, pr in enumerate(prompts):
        if isinstance(pr, str):
            ids = tokenizer(pr)["input_ids"]
        elif _is_chat(pr):
            if getattr(tokenizer, "chat_template", None) is None:
                raise TrmboundsError(
                    f"prompt {i + 1} is a chat ('messages') but the tokenizer has no chat template"
                )
            ids = tokenizer.apply_chat_template(pr, add_generation_prompt=True, tokenize=True)
            if isinstance(ids, dict) or hasattr(ids, "keys"):
                ids = ids["input_ids"]
        else:
            ids = list(pr)
        ids = [int(t) for t in ids]
        if not ids:
            raise TrmboundsError(f"prompt {i + 1} is empty after tokenization")
        out.append(ids)
    return out


# ----------------------------------------------------------------------- records
@dataclass
class Records:
    """Per-token measurements of N responses, padded to the longest (shape (N, T)).

    ``mask`` is ``True`` on real response tokens (the EOS token included);
    ``kl``/``tv``/``missing_mass`` are exact full-vocabulary values at each context,
    ``logp_roll``/``logp_theta`` the sampled token's log-probabilities (0 on padding).
    """

    kl: np.ndarray
    tv: np.ndarray
    missing_mass: np.ndarray
    logp_roll: np.ndarray
    logp_theta: np.ndarray
    mask: np.ndarray
    prompt_index: np.ndarray
    tokens: np.ndarray
    support_fixups: int = 0
    #: vocabulary size of the scored models (0 when unknown)
    vocab_size: int = 0

    @property
    def log_ratio(self) -> np.ndarray:
        r""":math:`\log\rho_t = \log\pi_\theta(y_t|c_t) - \log\pi_{roll}(y_t|c_t)` (0 on padding)."""
        return np.where(self.mask, self.logp_theta - self.logp_roll, 0.0)

    @property
    def lengths(self) -> np.ndarray:
        return self.mask.sum(1)


@dataclass
class Measurement:
    """What :func:`measure` returns: the statistics, the per-token records, warnings."""

    stats: Stats
    records: Records
    warnings: list[str] = field(default_factory=list)


def write_token_dump(records: Records, path: str | os.PathLike) -> None:
    """Write the per-token records as a JSONL per-token dump (one line per response).

    Each line holds the response's ``token_ids``, ``prompt_index`` and, per token,
    ``logp_roll`` / ``logp_theta`` (the sampled token's log-probabilities) and the
    exact ``kl_token`` / ``tv_token`` (and ``missing_mass_token``) of its context: the
    per-token dump format ``trmbounds check`` reads (``docs/logs.md``). The caller
    decides whether ``path`` may be overwritten.
    """
    cols = {
        "logp_roll": records.logp_roll,
        "logp_theta": records.logp_theta,
        "kl_token": records.kl,
        "tv_token": records.tv,
        "missing_mass_token": records.missing_mass,
    }
    try:
        with open(path, "w", encoding="utf-8") as fh:
            for i, L in enumerate(records.lengths):
                rec: dict[str, Any] = {
                    "prompt_index": int(records.prompt_index[i]),
                    "token_ids": [int(t) for t in records.tokens[i, :L]],
                }
                for k, v in cols.items():
                    rec[k] = [float(x) for x in v[i, :L]]
                fh.write(json.dumps(rec) + "\n")
    except OSError as exc:
        raise InputFileError(f"cannot write {path}: {exc.strerror or exc}") from None


def normal_ci(x: np.ndarray) -> tuple[float, float, float]:
    r"""Mean and normal 95 % interval :math:`\bar x \pm 1.96\, s/\sqrt n` (``s``: ddof 1).

    With one value the interval is ``(nan, nan)``.

    Examples
    --------
    >>> m, lo, hi = normal_ci(np.array([1.0, 2.0, 3.0, 4.0]))
    >>> m, round(lo, 4), round(hi, 4)
    (2.5, 1.2348, 3.7652)
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.size
    if n == 0:
        raise TrmboundsError("no values to average")
    mean = float(x.mean())
    if n < 2:
        return mean, math.nan, math.nan
    with np.errstate(over="ignore", invalid="ignore"):  # huge values: an infinite CI
        half = _Z95 * float(x.std(ddof=1)) / math.sqrt(n)
    return mean, mean - half, mean + half


def aggregate(
    records: Records,
    *,
    trm_max: float = 0.05,
    trm_avg: float = 0.001,
    ser: float = 0.05,
    ln_trm: float | None = None,
    truncated: bool = False,
    adv_range: float | None = None,
    reward_range: tuple[float, float] | None = None,
    meta: dict[str, Any] | None = None,
) -> Stats:
    r"""Aggregate per-token records into :class:`~trmbounds.stats.Stats`.

    .. math::

        \hat\delta = \max_{i,t} KL(c_{i,t}),\quad
        \hat\varepsilon = \max_{i,t} TV(c_{i,t}),\quad
        \hat D_{KL}^{seq} = \frac1N\sum_i\sum_{t\le T_i} KL(c_{i,t}),

        \hat D_{TV}^{seq} = \frac1N\sum_i \tfrac12\Big|\exp\Big(\sum_{t\le T_i}
        \log\rho_{i,t}\Big) - 1\Big|,\qquad
        \hat{\bar D}_t = \frac1N\sum_i TV(c_{i,t})\,\mathbb 1[t \le T_i]

    :math:`T = \max_i T_i` (the longest response). **After a response's end** a
    finished response stays finished under both policies (EOS is an absorbing state:
    both emit padding with probability 1), so :math:`TV = KL = 0` there exactly, and
    :math:`\bar D_t` averages over all N responses with those zeros. This makes the
    length-T padded response distributions the objects the bounds are about, and
    keeps :math:`D_{TV}^{seq} \le \sum_t \bar D_t`. Estimated TVs above 1 (Monte Carlo
    noise) are clipped to 1.

    Parameters
    ----------
    records : Records
    trm_max, trm_avg, ser : float
        Thresholds at which the acceptance rates of TRM-Max, TRM-Avg, their
        combination and SER are reported (in ``meta["acceptance"]``).
    ln_trm : float, optional
        LN-TRM threshold :math:`\delta_W`; its weights use the measured
        :math:`\hat\varepsilon`, :math:`\hat\delta`.
    truncated : bool
        The rollouts were sampled with top-k / top-p: report ``missing_mass``.
    adv_range, reward_range
        Passed to :class:`~trmbounds.stats.Stats`.
    meta : dict, optional
        Provenance merged into ``Stats.meta``.

    Examples
    --------
    Two responses, of lengths 2 and 1; the second contributes TV 0 at t = 2:

    >>> z = np.zeros((2, 2))
    >>> rec = Records(kl=np.array([[0.02, 0.01], [0.04, 0.0]]),
    ...               tv=np.array([[0.1, 0.05], [0.14, 0.0]]), missing_mass=z,
    ...               logp_roll=np.log([[0.5, 0.5], [0.4, 1.0]]),
    ...               logp_theta=np.log([[0.6, 0.5], [0.3, 1.0]]),
    ...               mask=np.array([[True, True], [True, False]]),
    ...               prompt_index=np.array([0, 1]), tokens=np.zeros((2, 2), int))
    >>> s = aggregate(rec)
    >>> s.T, s.kl_max, s.tv_max, round(s.kl_seq, 6), round(s.tv_seq, 6)
    (2, 0.04, 0.14, 0.035, 0.1125)
    >>> s.per_position.round(6).tolist(), s.status["kl_max"]
    ([0.12, 0.025], 'empirical')
    """
    thr = {}
    for name, v in (("trm_max", trm_max), ("trm_avg", trm_avg), ("ser", ser)):
        try:
            x = float(v)
        except (TypeError, ValueError):
            raise TrmboundsError(f"{name} threshold must be a number, got {v!r}") from None
        if not (math.isfinite(x) and x >= 0):
            raise TrmboundsError(f"{name} threshold must be a finite number >= 0, got {v!r}")
        thr[name] = x
    m = np.asarray(records.mask, dtype=bool)
    N = m.shape[0]
    if N == 0 or not m.any():
        raise TrmboundsError("no response tokens were measured")
    L = m.sum(1)
    T = int(L.max())
    m = m[:, :T]
    kl = np.where(m, records.kl[:, :T], 0.0)
    tv = np.clip(np.where(m, records.tv[:, :T], 0.0), 0.0, 1.0)
    mm = np.where(m, records.missing_mass[:, :T], 0.0)
    lr = np.where(m, records.logp_theta[:, :T] - records.logp_roll[:, :T], 0.0)

    i_kl = np.unravel_index(int(np.argmax(kl)), kl.shape)
    i_tv = np.unravel_index(int(np.argmax(tv)), tv.shape)
    kl_max, tv_max = float(kl[i_kl]), float(tv[i_tv])

    kl_seq, kl_lo, kl_hi = normal_ci(kl.sum(1))
    s = lr.sum(1)
    with np.errstate(over="ignore"):
        tv_path = 0.5 * np.abs(np.expm1(s))
    overflow = int(np.sum(np.isposinf(tv_path)))
    if overflow:
        # a path's ratio exceeds the float range: the estimator (a mean including that
        # term) is infinite, so the estimate is the cap 1 and no normal CI exists
        tv_seq_raw, tv_seq, tv_lo, tv_hi = math.inf, 1.0, math.nan, math.nan
    else:
        tv_seq, tv_lo, tv_hi = normal_ci(tv_path)
        tv_seq_raw = tv_seq
        tv_seq = min(1.0, tv_seq)
    dbar = tv.sum(0) / N
    dbar_half = _Z95 * tv.std(0, ddof=1) / math.sqrt(N) if N > 1 else np.full(T, math.nan)
    mm_mean, mm_lo, mm_hi = normal_ci(mm.sum(1))

    k1s, k1lo, k1hi = normal_ci(np.where(m, k1(lr), 0.0).sum(1))
    k3tok = np.where(m, k3(lr), 0.0)
    k3s, k3lo, k3hi = normal_ci(k3tok.sum(1))
    k2tok = np.where(m, k2(lr), 0.0)
    with np.errstate(over="ignore", invalid="ignore"):  # absurd log-probs: inf / NaN
        p_r, p_t = np.exp(records.logp_roll[:, :T]), np.exp(records.logp_theta[:, :T])
        absdiff = np.where(m, np.abs(p_r - p_t), 0.0)
        tv_proxy = np.where(m, 0.5 * np.abs(np.expm1(lr)), 0.0)
    n_tok = int(m.sum())

    def rate(x):
        return float(x.acceptance)

    acceptance = {
        "trm_max": {
            "threshold": thr["trm_max"],
            "exact_kl": rate(trm_max_mask(kl, thr["trm_max"], m)),
            "proxy_k2": rate(trm_max_mask(k2tok, thr["trm_max"], m)),
        },
        "trm_avg": {
            "threshold": thr["trm_avg"],
            "exact_kl": rate(trm_avg_mask(kl, thr["trm_avg"], m)),
            "proxy_k3": rate(trm_avg_mask(k3tok, thr["trm_avg"], m)),
        },
        "combined": {
            "threshold_max": thr["trm_max"],
            "threshold_avg": thr["trm_avg"],
            "exact_kl": rate(trm_combined_mask(kl, thr["trm_max"], thr["trm_avg"], m)),
            "proxy_k2_k3": rate(
                trm_combined_mask(k2tok, thr["trm_max"], thr["trm_avg"], m, kl_avg=k3tok)
            ),
        },
        "ser": {"threshold": thr["ser"], "rate": rate(ser_mask(lr, thr["ser"], m))},
    }
    if ln_trm is not None:
        x = float(ln_trm)
        if not (math.isfinite(x) and x >= 0):
            raise TrmboundsError(f"ln_trm threshold must be a finite number >= 0, got {ln_trm!r}")
        acceptance["ln_trm"] = {
            "threshold": x,
            "eps": tv_max,
            "delta": kl_max,
            "weights": "measured tv_max / kl_max",
            "rate": rate(ln_trm_mask(lr, x, tv_max, kl_max, m)),
        }

    def ci(lo, hi):
        return None if math.isnan(lo) else [lo, hi]

    info: dict[str, Any] = dict(meta or {})
    info.update(
        {
            "n_sequences": N,
            "n_tokens": n_tok,
            "mean_length": float(L.mean()),
            "maxima": (
                f"kl_max and tv_max are maxima over the {n_tok} measured contexts "
                "(empirical: lower estimates of the maxima over all reachable contexts)"
            ),
            "argmax": {
                "kl_max": {"sequence": int(i_kl[0]), "position": int(i_kl[1]) + 1},
                "tv_max": {"sequence": int(i_tv[0]), "position": int(i_tv[1]) + 1},
            },
            "ci_method": "normal: mean +- 1.96 sd / sqrt(n_sequences)",
            "ci95": {
                "kl_seq": ci(kl_lo, kl_hi),
                "tv_seq": ci(tv_lo, tv_hi),
                "missing_mass": ci(mm_lo, mm_hi) if truncated else None,
            },
            "per_position_definition": (
                "mean over all n_sequences of TV(c_t); a response that ended before t "
                "contributes 0 (EOS is absorbing under both policies)"
            ),
            "per_position_ci95_halfwidth": [None if math.isnan(h) else float(h) for h in dbar_half],
            "estimators": {
                "kl_seq": "mean over responses of sum_t exact KL(c_t) along the sampled path",
                "tv_seq": "mean over responses of 0.5*|prod_t rho_t - 1| (log space)",
            },
            "proxies": {
                "k1_seq": {"mean": k1s, "ci95": ci(k1lo, k1hi)},
                "k3_seq": {"mean": k3s, "ci95": ci(k3lo, k3hi)},
                "k2_max": float(k2tok.max()),
                "k3_max": float(k3tok.max()),
                "tv_token_proxy_mean": float(tv_proxy.sum() / n_tok),
                "abs_p_minus_q_max": float(absdiff.max()),
                "abs_p_minus_q_mean": float(absdiff.sum() / n_tok),
                "log_ppl_gap": log_ppl_gap(lr, np.zeros_like(lr), m),
                "note": "sample-based detectors from the sampled token (SPEC §4), not bounds",
            },
            "acceptance": acceptance,
            "support_fixups": int(records.support_fixups),
        }
    )
    if tv_seq_raw > 1 or overflow:
        info["tv_seq_clipped"] = {"raw_mean": tv_seq_raw, "overflowed_paths": overflow}
        if overflow:
            info["tv_seq_clipped"]["note"] = (
                f"{overflow} response(s) have a sequence ratio prod_t rho_t beyond the float "
                "range: the estimate is infinite, reported as the cap 1 with no CI"
            )
    status = {
        "kl_max": "empirical",
        "tv_max": "empirical",
        "kl_seq": "estimate",
        "tv_seq": "estimate",
        "per_position": "estimate",
    }
    kw: dict[str, Any] = {}
    if truncated:
        kw["missing_mass"] = mm_mean
        status["missing_mass"] = "estimate"
    if reward_range is not None:
        kw["reward_range"] = reward_range
    elif adv_range is not None:
        kw["adv_range"] = adv_range
    return Stats(
        T=T,
        kl_max=kl_max,
        tv_max=tv_max,
        kl_seq=kl_seq,
        tv_seq=tv_seq,
        per_position=np.clip(dbar, 0.0, 1.0),
        status=status,
        meta=info,
        **kw,
    )


# ----------------------------------------------------------------------- running models
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

        dev = next(self.model.parameters()).device
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


def _head_rows(V: int, budget: int, batch_size: int, top: bool) -> int:
    """Rows of logits per lm-head chunk so that the vocabulary-sized buffers fit ``budget``.

    Counted against the budget: the two lm-head outputs, at float32 size per value
    whatever the model dtype (a low-precision matmul may go through a float32
    buffer), ``8*V`` bytes per row; the divergence kernel's block of
    :data:`~trmbounds.trm.BLOCK_ELEMENTS` values with up to 8 float32 temporaries
    (16 with the top-p sort: values, int64 indices, cumulative sums); the sampler's
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
            f"max-memory {budget / 1e6:.0f} MB is too small for vocabulary {V} and batch "
            f"size {batch_size}: need at least {math.ceil(need / 1e6)} MB"
        )
    return int(rows)


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
    device = device or str(next(roll_model.parameters()).device)
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
            B, Lp, Lr = ids.shape[0], ids.shape[1], resp.shape[1]
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
            # arrays as wide as this batch's longest response (Lr), not max_new_tokens
            bn, jn = bi.cpu().numpy(), ji.cpu().numpy()
            for k in ("kl", "tv", "mm", "lpr", "lpt"):
                arr = np.zeros((B, Lr))
                arr[bn, jn] = out[k].numpy()
                res[k].append(arr)
            tarr = np.full((B, Lr), -1, dtype=np.int64)
            tarr[bn, jn] = toks.cpu().numpy()
            res["tok"].append(tarr)
            res["len"].append(lengths.cpu().numpy())
            if progress is not None:
                progress(b + 1, nb)
    lengths = np.concatenate(res["len"])
    T = int(lengths.max())
    mask = np.arange(T)[None, :] < lengths[:, None]

    def cat(k):
        fill = -1 if k == "tok" else 0.0
        out = np.full((N, T), fill, dtype=res[k][0].dtype)
        r = 0
        for a in res[k]:
            out[r : r + a.shape[0], : a.shape[1]] = a[:, :T]
            r += a.shape[0]
        return out

    return Records(
        kl=cat("kl"),
        tv=cat("tv"),
        missing_mass=cat("mm"),
        logp_roll=cat("lpr"),
        logp_theta=cat("lpt"),
        mask=mask,
        prompt_index=np.array([i for i, _ in jobs]),
        tokens=cat("tok"),
        support_fixups=fixups,
        vocab_size=V,
    )


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
        train_model = load_model(train_ref, train_dtype, train_attn, dev)
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
    from . import __version__

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
            f"top-k/top-p sampling truncates pi_roll, which breaks full support (SPEC §5.3): "
            f"measured missing mass m = {stats.missing_mass:.4g} is added to the PDI-family "
            "bounds and the Adaptive bounds are not reported"
        )
    if records.support_fixups:
        warnings.append(
            f"{records.support_fixups} sampled token(s) fell outside the truncation set "
            "recomputed when scoring (decode vs prefill numerics) and were kept in the support"
        )
    if records.mask.sum(1).max() >= max_new_tokens:
        ended = float((records.mask.sum(1) < max_new_tokens).mean())
        if ended < 1:
            warnings.append(
                f"{100 * (1 - ended):.0f}% of responses hit --max-new-tokens "
                f"({max_new_tokens}) before EOS: T is the truncated horizon"
            )
    over = stats.meta.get("tv_seq_clipped", {}).get("overflowed_paths", 0)
    if over:
        warnings.append(
            f"{over} response(s) have a sequence ratio prod_t rho_t beyond the float range: "
            "the tv_seq estimate is infinite and reported as its cap 1 (no CI)"
        )
    warnings.extend(stats.warnings)
    return Measurement(stats, records, warnings)
