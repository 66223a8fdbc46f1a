r"""Reading rollouts an engine wrote: token ids, the sampled token's log-prob, top-k log-probs.

One rollout record per response (the format of ``trmbounds measure --rollouts``,
``docs/rollouts.md``)::

    {"prompt_ids": [int, ...], "response_ids": [int, ...],
     "logprobs": [float, ...],                    # engine log-prob of each sampled token
     "top_logprobs": [{"<token id>": logprob, ...}, ...],   # one object per position,
                                                  # most likely first
     "temperature": 1.0, "top_p": 1.0, "top_k": 0, "logprobs_mode": "processed"}

The last four are optional (defaults come from the caller). Two adapters read engines'
own response layouts (``rollout_format``):

- ``"vllm"``: one vLLM ``/v1/completions`` response object per line, requested with
  ``logprobs=k``, ``return_token_ids=true`` and ``return_tokens_as_token_ids=true``;
  every choice is one rollout: ``prompt_token_ids``, ``token_ids``,
  ``logprobs.token_logprobs`` and ``logprobs.top_logprobs`` (objects keyed
  ``"token_id:<id>"``; vLLM puts the sampled token first, then the top-k by rank, and
  writes ``-inf`` as ``-9999.0``). Source: vllm-project/vllm,
  ``vllm/entrypoints/openai/completion/protocol.py`` (``CompletionLogProbs``,
  ``CompletionResponseChoice``) and ``completion/serving.py``
  (``_create_completion_logprobs``).
- ``"sglang"``: one SGLang ``/generate`` response object per line (or a list of them),
  requested with ``return_logprob=true`` and ``top_logprobs_num=k``, plus the request's
  ``input_ids`` copied into the line as ``"prompt_ids"`` (SGLang does not echo them);
  ``meta_info.output_token_logprobs`` is a list of ``[logprob, token_id, text|null]`` and
  ``meta_info.output_top_logprobs`` a list (one per position) of such lists, most likely
  first. Source: sgl-project/sglang, ``python/sglang/srt/managers/tokenizer_manager.py``
  (``detokenize_logprob_tokens``, ``detokenize_top_logprobs_tokens``).

``logprobs_mode`` says which distribution the log-probs describe: ``"raw"`` (softmax of
the logits, before temperature and truncation: vLLM's default ``raw_logprobs``, SGLang
with ``SGLANG_RETURN_ORIGINAL_LOGPROB=1``), ``"temperature"`` (after temperature, before
top-k/top-p: SGLang's default) or ``"processed"`` (the distribution sampled from, after
temperature and truncation: vLLM ``--logprobs-mode processed_logprobs``).
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import _io
from ..errors import InputFileError, TrmboundsError

__all__ = [
    "ROLLOUT_FORMATS",
    "LOGPROBS_MODES",
    "Rollout",
    "read_rollouts",
    "check_vocab",
    "sampling_settings",
]

#: Accepted ``--rollout-format`` values.
ROLLOUT_FORMATS = ("native", "vllm", "sglang")

#: Accepted ``logprobs_mode`` values (and the engines' own spellings, mapped to them).
LOGPROBS_MODES = ("raw", "temperature", "processed")
_MODE_ALIASES = {"raw_logprobs": "raw", "processed_logprobs": "processed"}
_LOGIT_MODES = ("raw_logits", "processed_logits")

#: A log-prob at or below this is probability 0 (vLLM writes -inf as -9999.0).
NEG_LOGPROB = -9999.0

#: Request settings that change the distribution sampled from after the raw logits, and
#: their neutral values: vLLM's raw log-probs are computed before them (and SGLang's
#: may be), so a record that sets one is refused unless its log-probs are processed.
PENALTY_FIELDS = {
    "presence_penalty": 0,
    "frequency_penalty": 0,
    "repetition_penalty": 1,
    "logit_bias": None,
    "bad_words": None,
    "min_tokens": 0,
}

#: Round-off allowed when checking that reported probabilities sum to at most 1, that a
#: top-k list is sorted, and that the sampled token's two reported log-probs agree.
SUM_TOL = 1e-4


@dataclass
class Rollout:
    """One response as an engine reported it (see the module docstring).

    ``top_ids`` / ``top_logprobs`` hold, per position, the engine's top-k token ids and
    log-probs, most likely first (the sampled token is included only if it is among
    them); ``logprobs`` the sampled tokens' log-probs. ``line`` is the input line.
    """

    prompt_ids: list[int]
    response_ids: list[int]
    logprobs: np.ndarray
    top_ids: list[np.ndarray]
    top_logprobs: list[np.ndarray]
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    logprobs_mode: str | None = None
    line: int = 0
    #: the :data:`PENALTY_FIELDS` the record sets to a non-neutral value
    penalties: tuple[str, ...] = ()


class _DuplicateKey(Exception):
    pass


def _unique_keys(pairs: list) -> dict:
    """``object_pairs_hook`` refusing a key that appears twice in one JSON object."""
    d = dict(pairs)
    if len(d) != len(pairs):
        seen: set = set()
        for k, _ in pairs:
            if k in seen:
                raise _DuplicateKey(k)
            seen.add(k)
    return d


def _where(path: Path, line: int) -> str:
    return f"{path}: line {line}"


_DECIMAL = re.compile(r"-?[0-9]+")
#: Token ids beyond this are outside any vocabulary (and would overflow int64 arrays).
MAX_TOKEN_ID = 2**40


def _short(x: Any) -> str:
    text = repr(x)
    return text if len(text) <= 40 else text[:37] + "..."


def _as_int(x: Any, what: str, where: str) -> int:
    if isinstance(x, bool) or not isinstance(x, (int, str)):
        raise InputFileError(f"{where}: {what} must be an integer token id, got {_short(x)}")
    if isinstance(x, str) and not _DECIMAL.fullmatch(x):  # not "+10", " 10", "1_0"
        raise InputFileError(f"{where}: {what} must be an integer token id, got {_short(x)}")
    if isinstance(x, str) and len(x.lstrip("-0")) > len(str(MAX_TOKEN_ID)):
        # before int(): a string of more than 4,300 digits is a ValueError there
        raise InputFileError(f"{where}: {what} {_short(x)} is outside any vocabulary")
    v = int(x)
    if abs(v) > MAX_TOKEN_ID:
        raise InputFileError(f"{where}: {what} {_short(x)} is outside any vocabulary")
    return v


def _ids(x: Any, name: str, where: str) -> list[int]:
    if not isinstance(x, list):
        raise InputFileError(f"{where}: '{name}' must be a list of token ids")
    out = []
    for v in x:
        if isinstance(v, bool) or not isinstance(v, int):
            raise InputFileError(f"{where}: '{name}' holds {_short(v)}, not an integer token id")
        if abs(v) > MAX_TOKEN_ID:
            raise InputFileError(f"{where}: '{name}' holds {_short(v)}, outside any vocabulary")
        out.append(v)
    return out


def _lp(x: Any, what: str, where: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise InputFileError(f"{where}: {what} must be a number, got {_short(x)}")
    try:
        v = float(x)
    except OverflowError:  # an integer of hundreds of digits
        v = math.inf if x > 0 else -math.inf
    if math.isnan(v) or v > SUM_TOL:
        raise InputFileError(f"{where}: {what} must be a log-probability (<= 0), got {_short(x)}")
    return -math.inf if v <= NEG_LOGPROB else min(v, 0.0)


def _opt(rec: dict, key: str, kind: type, where: str) -> Any:
    v = rec.get(key)
    if v is None:
        return None
    if kind is str:
        if not isinstance(v, str):
            raise InputFileError(f"{where}: '{key}' must be a string, got {_short(v)}")
        return v
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise InputFileError(f"{where}: '{key}' must be a number, got {_short(v)}")
    if kind is int:
        if isinstance(v, float) and not (math.isfinite(v) and v.is_integer()):
            raise InputFileError(f"{where}: '{key}' must be an integer, got {_short(v)}")
        return int(v)
    try:
        f = float(v)
    except OverflowError:
        f = math.inf
    if not math.isfinite(f):
        raise InputFileError(f"{where}: '{key}' must be a finite number, got {_short(v)}")
    return f


def _native(rec: Any, where: str) -> list[dict]:
    if not isinstance(rec, dict):
        raise InputFileError(f"{where}: expected a JSON object (one rollout record)")
    for k in ("prompt_ids", "response_ids", "logprobs", "top_logprobs"):
        if k not in rec:
            raise InputFileError(f"{where}: missing field '{k}'")
    tops = rec["top_logprobs"]
    if not isinstance(tops, list):
        raise InputFileError(f"{where}: 'top_logprobs' must be a list (one object per position)")
    pairs = []
    for t, d in enumerate(tops):
        if not isinstance(d, dict):
            raise InputFileError(
                f"{where}: top_logprobs[{t}] must be an object {{token id: logprob}}"
            )
        pairs.append(list(d.items()))
    return [dict(rec, _tops=pairs)]


def _vllm(rec: Any, where: str) -> list[dict]:
    if not isinstance(rec, dict) or not isinstance(rec.get("choices"), list):
        raise InputFileError(f"{where}: expected a vLLM completions response (with 'choices')")
    out = []
    for i, ch in enumerate(rec["choices"]):
        w = f"{where}: choices[{i}]"
        if not isinstance(ch, dict):
            raise InputFileError(f"{w}: expected an object")
        if ch.get("prompt_token_ids") is None or ch.get("token_ids") is None:
            raise InputFileError(
                f"{w}: missing field 'prompt_token_ids'/'token_ids' (request with "
                "return_token_ids=true)"
            )
        lp = ch.get("logprobs")
        if not isinstance(lp, dict) or "token_logprobs" not in lp or "top_logprobs" not in lp:
            raise InputFileError(f"{w}: missing field 'logprobs' (request with logprobs=k)")
        tops = lp["top_logprobs"]
        if not isinstance(tops, list):
            raise InputFileError(f"{w}: 'logprobs.top_logprobs' must be a list")
        pairs = []
        for t, d in enumerate(tops):
            if not isinstance(d, dict):
                raise InputFileError(f"{w}: logprobs.top_logprobs[{t}] must be an object")
            row = []
            for key, v in d.items():
                if not (isinstance(key, str) and key.startswith("token_id:")):
                    raise InputFileError(
                        f"{w}: top-logprob key {key!r} is not 'token_id:<id>' (request with "
                        "return_tokens_as_token_ids=true)"
                    )
                row.append((key[len("token_id:") :], v))
            pairs.append(row)
        r = {
            "prompt_ids": ch["prompt_token_ids"],
            "response_ids": ch["token_ids"],
            "logprobs": lp["token_logprobs"],
            "_tops": pairs,
            "_sampled_first": True,
            "_where": w if len(rec["choices"]) > 1 else where,
        }
        for k in ("temperature", "top_p", "top_k", "logprobs_mode", *PENALTY_FIELDS):
            if k in rec:
                r[k] = rec[k]
        out.append(r)
    return out


def _sglang(rec: Any, where: str) -> list[dict]:
    recs = rec if isinstance(rec, list) else [rec]
    out = []
    for i, r in enumerate(recs):
        w = where if len(recs) == 1 else f"{where}: item {i}"
        if not isinstance(r, dict) or not isinstance(r.get("meta_info"), dict):
            raise InputFileError(f"{w}: expected an SGLang /generate response (with 'meta_info')")
        mi = r["meta_info"]
        prompt = r.get("prompt_ids", r.get("input_ids"))
        if prompt is None:
            raise InputFileError(
                f"{w}: missing field 'prompt_ids' (copy the request's input_ids into the line)"
            )
        otl, otop = mi.get("output_token_logprobs"), mi.get("output_top_logprobs")
        if otl is None:
            raise InputFileError(
                f"{w}: missing field 'meta_info.output_token_logprobs' (request with "
                "return_logprob=true)"
            )
        if otop is None:
            raise InputFileError(
                f"{w}: missing field 'meta_info.output_top_logprobs' (request with "
                "top_logprobs_num=k)"
            )
        if not isinstance(otl, list) or not isinstance(otop, list):
            raise InputFileError(f"{w}: output_token_logprobs / output_top_logprobs must be lists")
        ids, lps = [], []
        for t, e in enumerate(otl):
            if not isinstance(e, list) or len(e) < 2:
                raise InputFileError(
                    f"{w}: output_token_logprobs[{t}] must be [logprob, token_id, text]"
                )
            lps.append(e[0])
            ids.append(e[1])
        pairs = []
        for t, row in enumerate(otop):
            if row is None:
                row = []
            if not isinstance(row, list) or not all(
                isinstance(e, list) and len(e) >= 2 for e in row
            ):
                raise InputFileError(
                    f"{w}: output_top_logprobs[{t}] must be a list of [logprob, token_id, text]"
                )
            pairs.append([(e[1], e[0]) for e in row])
        x = {"prompt_ids": prompt, "response_ids": ids, "logprobs": lps, "_tops": pairs}
        x["_where"] = w
        for k in ("temperature", "top_p", "top_k", "logprobs_mode", *PENALTY_FIELDS):
            if k in r:
                x[k] = r[k]
        out.append(x)
    return out


_ADAPTERS = {"native": _native, "vllm": _vllm, "sglang": _sglang}


def _build(rec: dict, where: str, line: int) -> Rollout | None:
    prompt = _ids(rec["prompt_ids"], "prompt_ids", where)
    resp = _ids(rec["response_ids"], "response_ids", where)
    if not prompt:
        raise InputFileError(f"{where}: 'prompt_ids' is empty")
    lps_in, tops = rec["logprobs"], rec["_tops"]
    if not isinstance(lps_in, list):
        raise InputFileError(f"{where}: 'logprobs' must be a list of numbers")
    if not (len(lps_in) == len(resp) == len(tops)):
        raise InputFileError(
            f"{where}: response_ids, logprobs and top_logprobs have different lengths "
            f"({len(resp)}, {len(lps_in)}, {len(tops)})"
        )
    if not resp:
        return None
    lps = np.array([_lp(v, f"logprobs[{t}]", where) for t, v in enumerate(lps_in)])
    if np.isneginf(lps).any():
        t = int(np.argmax(np.isneginf(lps)))
        raise InputFileError(f"{where}: logprobs[{t}] is -inf: a sampled token has probability 0")
    top_ids, top_lps = [], []
    # vLLM: k + 1 entries where the sampled token is outside the top-k, k where it is
    # inside (one entry for both). The most entries at any position, less one, is k
    # when some sampled token fell outside; otherwise it is k - 1 and nothing is inferred
    k_seen = max((len(p) for p in tops), default=0) - 1 if rec.get("_sampled_first") else 0
    for t, pairs in enumerate(tops):
        y = resp[t]
        ids, vals = [], []
        for k, v in pairs:
            tid = _as_int(k, f"top_logprobs[{t}] key", where)
            ids.append(tid)
            vals.append(_lp(v, f"top_logprobs[{t}][{tid}]", where))
        if rec.get("_sampled_first") and ids and ids[0] == y:
            # vLLM lists the sampled token first, then the top-k by rank. It ranks among
            # the top-k if it beats the last of them, or if fewer than k others are listed
            # (it was one of the k: then it is the last). Otherwise (a tie with k others
            # listed, or k unknown) it is treated as outside, which only raises p_min's
            # claim to a weaker, still true one
            first, ids, vals = vals[0], ids[1:], vals[1:]
            if vals and first > min(vals):
                j = next(i for i, v in enumerate(vals) if first > v)
                ids.insert(j, y)
                vals.insert(j, first)
            elif len(vals) < k_seen:
                ids.append(y)
                vals.append(first)
        elif rec.get("_sampled_first") and len(ids) > 1 and ids[-1] == y:
            # early vLLM V1 appended the sampled token after the top-k when it was not
            # one of them: a last entry that is the sampled token counts as outside the
            # list unless k shows it is one of the k (only a weaker p_min otherwise)
            if len(ids) > k_seen and vals[-1] <= min(vals[:-1]):
                ids, vals = ids[:-1], vals[:-1]
        a = np.array(vals, dtype=np.float64)
        with np.errstate(invalid="ignore"):  # -inf - -inf: two zeros, in order
            unsorted = a.size > 1 and bool(np.any(np.diff(a) > SUM_TOL))
        if unsorted:
            raise InputFileError(
                f"{where}: top_logprobs[{t}] is not sorted (most likely first): a top-k list "
                "must list the k most likely tokens in decreasing order"
            )
        if len(set(ids)) != len(ids):
            raise InputFileError(f"{where}: top_logprobs[{t}] lists a token id twice")
        ia = np.array(ids, dtype=np.int64)
        if y in ids:
            v = a[ids.index(y)]
            if abs(math.exp(v) - math.exp(lps[t])) > SUM_TOL:
                raise InputFileError(
                    f"{where}: position {t}: the sampled token {y} has log-prob {lps[t]:.6g} "
                    f"in 'logprobs' but {v:.6g} in 'top_logprobs'"
                )
            mass = float(np.exp(a).sum())
        else:
            if a.size and lps[t] > a.min() + SUM_TOL:
                raise InputFileError(
                    f"{where}: position {t}: the sampled token {y} (log-prob {lps[t]:.6g}) is "
                    "more likely than the last of top_logprobs but not in it: not a top-k list"
                )
            mass = float(np.exp(a).sum() + math.exp(lps[t]))
        if mass > 1 + SUM_TOL:
            raise InputFileError(
                f"{where}: position {t}: reported probabilities sum to {mass:.6g} > 1"
            )
        top_ids.append(ia)
        top_lps.append(a)
    return Rollout(
        prompt_ids=prompt,
        response_ids=resp,
        logprobs=lps,
        top_ids=top_ids,
        top_logprobs=top_lps,
        temperature=_opt(rec, "temperature", float, where),
        top_p=_opt(rec, "top_p", float, where),
        top_k=_opt(rec, "top_k", int, where),
        logprobs_mode=_opt(rec, "logprobs_mode", str, where),
        line=line,
        penalties=tuple(
            k for k, neutral in PENALTY_FIELDS.items() if rec.get(k) not in (None, neutral, {}, [])
        ),
    )


def read_rollouts(
    path: str | os.PathLike, rollout_format: str = "native"
) -> tuple[list[Rollout], int]:
    """Read and validate a rollout file; return the rollouts and the number skipped.

    Responses with no tokens are skipped (and counted); every other defect — a missing
    field, a log-prob above 0, lists of different lengths, a top-k list that is not
    sorted, lists a token twice or whose probabilities (with the sampled token's) sum
    above 1 beyond round-off (:data:`SUM_TOL`) — raises :class:`InputFileError` naming
    the line. Token ids are checked against the vocabulary by :func:`check_vocab`.
    """
    if rollout_format not in ROLLOUT_FORMATS:
        raise TrmboundsError(
            f"unknown rollout format {rollout_format!r}; use one of {', '.join(ROLLOUT_FORMATS)}"
        )
    p = Path(path)
    if p.is_dir():
        raise InputFileError(f"{p} is a directory: give the rollout file (JSONL)")
    if not p.is_file():
        raise InputFileError(f"rollout file not found: {p}")
    adapt = _ADAPTERS[rollout_format]
    out: list[Rollout] = []
    skipped = 0
    try:
        fh = open(p, encoding="utf-8-sig")  # a byte-order mark is not part of the JSON
    except OSError as exc:
        raise InputFileError(f"cannot read {p}: {exc.strerror or exc}") from None
    with fh:
        try:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                where = _where(p, lineno)
                try:
                    rec = json.loads(line, object_pairs_hook=_unique_keys)
                except json.JSONDecodeError as exc:
                    raise InputFileError(f"{where}: invalid JSON ({exc.msg})") from None
                except _DuplicateKey as exc:
                    raise InputFileError(
                        f"{where}: the key {exc.args[0]!r} appears twice in one object "
                        "(JSON keeps only the last: a top-k list may not name a token twice)"
                    ) from None
                except _io.DECODE_ERRORS as exc:
                    raise InputFileError(f"{where}: {_io.decode_reason(exc)}") from None
                for r in adapt(rec, where):
                    ro = _build(r, r.pop("_where", where), lineno)
                    if ro is None:
                        skipped += 1
                    else:
                        out.append(ro)
        except UnicodeDecodeError:
            raise InputFileError(f"{p}: not UTF-8 text") from None
    if not out:
        raise InputFileError(f"{p}: no rollouts with at least one response token")
    return out, skipped


def check_vocab(rollouts: list[Rollout], V: int, path: str | os.PathLike = "") -> None:
    """Every token id is in ``[0, V)``, and the top-k lists can explain the missing mass.

    A top-k list says every unreported token has probability at most the smallest
    reported one, ``p_min``; the unreported mass ``r`` then cannot exceed
    ``(V - |S|) p_min`` (``S``: the reported tokens). A larger ``r`` means the list is
    not the top-k (or the vocabulary differs).
    """
    for ro in rollouts:
        where = _where(Path(path), ro.line) if path else f"line {ro.line}"
        for name, ids in (("prompt_ids", ro.prompt_ids), ("response_ids", ro.response_ids)):
            bad = [t for t in ids if not 0 <= t < V]
            if bad:
                raise InputFileError(
                    f"{where}: {name} holds token id {bad[0]}, outside the vocabulary [0, {V})"
                )
        for t, (ids, lps) in enumerate(zip(ro.top_ids, ro.top_logprobs)):
            if ids.size and (ids.min() < 0 or ids.max() >= V):
                b = int(ids[(ids < 0) | (ids >= V)][0])
                raise InputFileError(
                    f"{where}: top_logprobs[{t}] holds token id {b}, outside the vocabulary "
                    f"[0, {V})"
                )
            y = ro.response_ids[t]
            in_top = bool((ids == y).any())
            n_s = ids.size + (0 if in_top else 1)
            mass = float(np.exp(lps).sum()) + (0.0 if in_top else math.exp(ro.logprobs[t]))
            r = max(0.0, 1.0 - mass)
            p_min = math.exp(lps.min()) if lps.size else 1.0
            if r > (V - n_s) * p_min + SUM_TOL:
                raise InputFileError(
                    f"{where}: position {t}: unreported mass {r:.4g} exceeds what "
                    f"{V - n_s} tokens at most as likely as the last top-k entry "
                    f"({p_min:.4g}) can hold: not a top-k list of this vocabulary"
                )


def sampling_settings(
    rollouts: list[Rollout],
    V: int,
    *,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    logprobs_mode: str | None = None,
    path: str | os.PathLike = "",
) -> tuple[list[float], bool, str | None]:
    """Each rollout's sampling temperature, whether any sampling was truncated, and the
    first place the top-k lists show truncation the settings do not (or ``None``).

    A record's own ``temperature`` / ``top_p`` / ``top_k`` / ``logprobs_mode`` win over
    the defaults given here. The intervals are about the distribution the engine
    **sampled from**; the log-probs must describe it:

    - ``processed`` log-probs (after temperature and truncation) are that distribution:
      the trainer is scored at the same temperature, and truncation (top-k < V or
      top-p < 1) leaves the trainer mass outside the support as missing mass;
    - ``temperature`` log-probs (after temperature, before truncation) are, unless the
      sampling was truncated;
    - ``raw`` log-probs (before both) are, only at temperature 1 without truncation.

    Anything else raises :class:`TrmboundsError` naming the setting and the line.
    Without truncation and at temperature 1 every mode describes the same distribution
    and none needs to be given. ``top_k`` 0 or -1 is off (vLLM's and SGLang's -1).

    A reported top-k entry of probability 0 (``-inf``, vLLM's ``-9999``) is evidence
    that the distribution was truncated (processed log-probs of top-k/top-p sampling),
    whatever the settings say: such rollouts count as truncated (the missing mass is
    reported), and the third value names the first such place. A record that sets a
    penalty, ``logit_bias``, ``bad_words`` or ``min_tokens`` (:data:`PENALTY_FIELDS`)
    is refused unless its log-probs are ``processed``: vLLM's raw log-probs are
    computed before them.
    """
    from .sampling import MIN_TEMPERATURE

    mode0 = None if logprobs_mode is None else _mode(logprobs_mode, "--logprobs-mode")
    temps: list[float] = []
    any_trunc = False
    evidence: str | None = None
    for ro in rollouts:
        where = _where(Path(path), ro.line) if path else f"line {ro.line}"
        tau = float(temperature if ro.temperature is None else ro.temperature)
        tp = float(top_p if ro.top_p is None else ro.top_p)
        tk = int(top_k if ro.top_k is None else ro.top_k)
        mode = mode0 if ro.logprobs_mode is None else _mode(ro.logprobs_mode, where)
        if not (math.isfinite(tau) and tau >= MIN_TEMPERATURE):
            raise TrmboundsError(
                f"{where}: temperature={tau:g}: need a sampling temperature >= "
                f"{MIN_TEMPERATURE:g} (greedy decoding has no distribution to compare)"
            )
        if not 0 < tp <= 1:
            raise TrmboundsError(f"{where}: top_p={tp:g} must be in (0, 1]")
        if tk < -1:
            raise TrmboundsError(f"{where}: top_k={tk} must be >= 0 (0 or -1 = off)")
        trunc = (0 < tk < V) or tp < 1
        setting = f"top_p={tp:g}" if tp < 1 else f"top_k={tk}"
        if ro.penalties and mode != "processed":
            raise TrmboundsError(
                f"{where}: {ro.penalties[0]} is set but the log-probs are "
                f"{mode or 'not said to be processed'}: vLLM's raw log-probs are computed "
                "before penalties, logit_bias, bad words and min_tokens, so they are not "
                "the distribution sampled from; use processed log-probs (vLLM: "
                "--logprobs-mode processed_logprobs)"
            )
        zero = next((t for t, a in enumerate(ro.top_logprobs) if np.isneginf(a).any()), None)
        if zero is not None and not trunc:
            if evidence is None:
                evidence = (
                    f"{where}: position {zero}: a reported top-k entry has probability 0 "
                    f"although top_p={tp:g}, top_k={tk}"
                )
            any_trunc = True
        if mode is None and (tau != 1 or trunc):
            what = f"temperature={tau:g}" if tau != 1 else setting
            raise TrmboundsError(
                f"{where}: {what} but no logprobs_mode: say whether the log-probs are "
                "'raw' (before temperature and truncation), 'temperature' or 'processed' "
                "(the distribution sampled from); see docs/rollouts.md"
            )
        if mode == "raw" and tau != 1:
            raise TrmboundsError(
                f"{where}: temperature={tau:g} with raw log-probs: they are not the "
                "distribution sampled from; use processed log-probs (vLLM: --logprobs-mode "
                "processed_logprobs; SGLang: its default, without SGLANG_RETURN_ORIGINAL_LOGPROB)"
            )
        if mode in ("raw", "temperature") and trunc:
            raise TrmboundsError(
                f"{where}: {setting} with {mode} log-probs: they are not truncated, so they "
                "are not the distribution sampled from; use processed log-probs (vLLM: "
                "--logprobs-mode processed_logprobs) or sample without truncation"
            )
        temps.append(tau)
        any_trunc |= trunc
    return temps, any_trunc, evidence


def _mode(m: str, where: str) -> str:
    m2 = _MODE_ALIASES.get(m, m)
    if m in _LOGIT_MODES:
        raise TrmboundsError(
            f"{where}: logprobs_mode {m!r} returns logits, which a top-k list cannot "
            "normalise; use raw_logprobs or processed_logprobs"
        )
    if m2 not in LOGPROBS_MODES:
        raise TrmboundsError(
            f"{where}: unknown logprobs_mode {m!r}; use one of {', '.join(LOGPROBS_MODES)}"
        )
    return m2
