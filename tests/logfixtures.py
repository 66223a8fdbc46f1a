"""Deterministic fixture generator for the log-checking tests (small files, seeded).

Metric logs are written in every format and with every preset's metric names from one
table of per-step values; per-token dumps from explicit log-prob arrays (for hand
calculations) or sampled from a tabular policy pair with exact statistics
(``tests/tabular.py``).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

# Per-step values, in the paper's quantities (generic names). Steps 1..4.
STEPS = [1, 2, 3, 4]
BASE = {
    "T_max": [100.0, 200.0, 400.0, 800.0],
    "T_mean": [50.0, 80.0, 120.0, 300.0],
    "kl_tok_mean": [1e-5, 2e-5, 4e-5, 1e-4],
    "tv_lb": [1e-3, 2e-3, 5e-3, 2e-2],
    "k2_max": [0.01, 0.02, 0.05, 0.3],
    "reject_frac": [0.05, 0.1, 0.25, 0.5],
    "logp_diff_max": [0.1, 0.2, 0.3, 0.4],
    "logp_diff_mean": [0.01, 0.02, 0.03, 0.04],
}

#: Metric names per preset for the quantities of BASE (None: not logged by it).
NAMES = {
    "verl": {
        "T_max": "response_length/max",
        "T_mean": "response_length/mean",
        "kl_tok_mean": "rollout_corr/k3_kl",
        "tv_lb": "training/rollout_probs_diff_max",
        "k2_max": "rollout_corr/rollout_rs_seq_max_k2_max",
        "reject_frac": "rollout_corr/rollout_rs_seq_masked_fraction",
    },
    "verl-legacy": {  # verl 0.6.0, verl/trainer/ppo/mismatch_helper.py @ 4424616d7
        "T_max": "response_length/max",
        "T_mean": "response_length/mean",
        "kl_tok_mean": "mismatch/mismatch_k3_kl",
        "reject_frac": "mismatch/rollout_is_seq_masked_fraction",
    },
    "slime": {
        "T_max": "rollout/response_len/max",  # not in the preset: needs --map
        "kl_tok_mean": "train/mis_k3_kl",
        "reject_frac": "train/mis_rs_trust_region_reject_fraction",
    },
    "prime-rl": {
        "T_max": "seq_len/max",  # not in the preset: needs --map
        "kl_tok_mean": "mismatch_kl/all/mean",
        "k2_max": "mismatch_kl/all/max",  # prime-rl's max is a KL proxy max (kl_proxy_max)
    },
    "trl": {
        "T_max": "completions/max_length",
        "T_mean": "completions/mean_length",
        "logp_diff_max": "sampling/sampling_logp_difference/max",
        "logp_diff_mean": "sampling/sampling_logp_difference/mean",
    },
    "skyrl": {
        "T_max": "generate/max_response_length",  # not in the preset: needs --map
        "logp_diff_max": "policy/rollout_train_logprobs_abs_diff_max",
        "logp_diff_mean": "policy/rollout_train_logprobs_abs_diff_mean",
    },
    "generic": {q: q for q in BASE},
}


def metric_rows(preset: str, extra: dict | None = None) -> list[dict]:
    """One dict per step: {"step": N, metric-name: value, ...} for ``preset``."""
    names = NAMES[preset]
    rows = []
    for i, s in enumerate(STEPS):
        row = {"step": s}
        for q, col in names.items():
            row[col] = BASE[q][i]
        for col, vals in (extra or {}).items():
            if vals[i] is not None:
                row[col] = vals[i]
        rows.append(row)
    return rows


def write_jsonl(path: Path, rows: list[dict], nested: bool = True) -> Path:
    """verl's file-logger layout ``{"step": N, "data": {...}}`` (or flat)."""
    with open(path, "w", encoding="utf-8") as fh:
        for r in rows:
            obj = {"step": r["step"], "data": {k: v for k, v in r.items() if k != "step"}}
            fh.write(json.dumps(obj if nested else r) + "\n")
    return path


def write_csv(path: Path, rows: list[dict], step_col: str = "_step") -> Path:
    """A wandb-export layout: ``_step`` plus one column per metric, empty cells for gaps."""
    cols = sorted({k for r in rows for k in r if k != "step"})
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([step_col, *cols])
        for r in rows:
            w.writerow([r["step"], *("" if r.get(c) is None else _cell(r[c]) for c in cols)])
    return path


def _cell(v) -> str:
    if isinstance(v, float) and math.isnan(v):
        return "NaN"
    return repr(v)


def write_parquet(path: Path, rows: list[dict]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = sorted({k for r in rows for k in r})
    table = pa.table({c: pa.array([r.get(c) for r in rows], type=pa.float64()) for c in cols})
    pq.write_table(table, path)
    return path


def write_token_dump(
    path: Path,
    logp_roll: list,
    logp_theta: list,
    *,
    mask: list | None = None,
    steps: list | None = None,
    kl: list | None = None,
    tv: list | None = None,
    names: tuple[str, str] = ("inference_logprobs", "trainer_logprobs"),
) -> Path:
    """One record per sequence, prime-rl's token-export layout; .jsonl or .parquet."""
    recs = []
    for i, (lr, lt) in enumerate(zip(logp_roll, logp_theta)):
        n = len(lr)
        r = {
            "token_ids": list(range(n)),
            "position_ids": list(range(n)),
            names[0]: [float(x) for x in lr],
            names[1]: [float(x) for x in lt],
        }
        if mask is not None:
            r["loss_mask"] = [bool(x) for x in mask[i]]
        if steps is not None:
            r["step"] = steps[i]
        if kl is not None:
            r["kl_token"] = [float(x) for x in kl[i]]
        if tv is not None:
            r["tv_token"] = [float(x) for x in tv[i]]
        recs.append(r)
    path = Path(path)
    if path.suffix == ".jsonl":
        with open(path, "w", encoding="utf-8") as fh:
            for r in recs:
                fh.write(json.dumps(r) + "\n")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(recs), path)
    return path


def tabular_dump(path: Path, seed: int, n: int = 4000, V: int = 3, T: int = 4, **kw):
    """Sample ``n`` responses from a random tabular pair; write them; return the exact stats.

    The per-token exact KL/TV of every sampled context can be added with ``exact=True``.
    """
    from tabular import random_pair

    exact_tokens = kw.pop("exact", False)
    rng = np.random.default_rng(seed)
    pair = random_pair(V, T, rng, **kw)
    ex = pair.exact()
    toks, lr, lt = pair.sample(n, rng)
    extra = {}
    if exact_tokens:
        kl = np.empty((n, T))
        tv = np.empty((n, T))
        prefix = np.zeros(n, dtype=np.int64)
        for t in range(T):
            r, q = pair.roll[t][prefix], pair.theta[t][prefix]
            kl[:, t] = np.sum(r * np.log(r / q), axis=1)
            tv[:, t] = 0.5 * np.abs(r - q).sum(axis=1)
            prefix = prefix * V + toks[:, t]
        extra = {"kl": list(kl), "tv": list(tv)}
    write_token_dump(path, list(lr), list(lt), **extra)
    return ex, lr, lt


# ------------------------------------------------------------ TensorBoard event files
def _crc32c_bitwise(data: bytes) -> int:
    c = 0xFFFFFFFF
    for b in data:
        c ^= b
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
    return c ^ 0xFFFFFFFF


def _masked(data: bytes) -> int:
    c = _crc32c_bitwise(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _key(field: int, wire: int) -> bytes:
    return _varint(field << 3 | wire)


def _ld(field: int, payload: bytes) -> bytes:
    return _key(field, 2) + _varint(len(payload)) + payload


def _value(tag: str, x: float, form: str) -> bytes:
    import struct

    v = _ld(1, tag.encode())
    if form == "simple":  # PyTorch SummaryWriter / tensorboardX: float simple_value
        v += _key(2, 5) + struct.pack("<f", x)
    elif form == "tensor-float":  # TF2: DT_FLOAT scalar tensor, packed float_val
        v += _ld(8, _key(1, 0) + _varint(1) + _ld(2, b"") + _ld(5, struct.pack("<f", x)))
    else:  # "tensor-double": DT_DOUBLE scalar in tensor_content
        v += _ld(8, _key(1, 0) + _varint(2) + _ld(2, b"") + _ld(4, struct.pack("<d", x)))
    return v


def _record(data: bytes) -> bytes:
    import struct

    n = struct.pack("<Q", len(data))
    return n + struct.pack("<I", _masked(n)) + data + struct.pack("<I", _masked(data))


def write_tfevents(path: Path, rows: list[dict], form: str = "simple") -> Path:
    """A TensorBoard event file: a version event, then one event per (step, metric)."""
    import struct

    out = [_record(_key(1, 1) + struct.pack("<d", 1.0) + _ld(3, b"brain.Event:2"))]
    for r in rows:
        for k, x in r.items():
            if k == "step":
                continue
            summary = _ld(1, _value(k, x, form))
            ev = _key(1, 1) + struct.pack("<d", 2.0) + _key(2, 0) + _varint(r["step"])
            out.append(_record(ev + _ld(5, summary)))
    Path(path).write_bytes(b"".join(out))
    return Path(path)
