r"""Rows that share a step become one row; repeated steps are counted, never hidden.

Frameworks log one training step in several rows: prime-rl's trainer and orchestrator
append separate rows to one ``metrics.jsonl``; slime logs ``train/*`` and
``rollout/*`` in separate wandb rows (at ``train/step`` and ``rollout/step``);
TensorBoard writes one event per scalar. A resumed run logs some steps again.

The rule (:func:`merge_rows`)
-----------------------------
- A row's step is its value of the step column (the first of the preset's step
  columns present in the file). A row logged per rollout (slime, miles: no
  ``train/step``, a ``rollout/step``; or TensorBoard tags of the rollout groups)
  stands for the train steps ``r·n, …, r·n + n − 1`` of rollout ``r``, where ``n`` is
  ``steps_per_rollout`` (slime's ``train/step = rollout_id · num_steps_per_rollout +
  step_id``).
- All rows of one step are merged into one row, sorted by step. For every column the
  **last value logged in file order wins** (a row that does not log a column leaves
  it alone). A column logged more than once at one step -- a resumed run, or a
  restart's second event file -- is counted: ``values_replaced`` (and
  ``values_conflicting``, those that differed from the value kept), and the steps
  concerned (``steps_repeated``).
- A row with a column of interest but no valid step is a bad record; a row with
  neither (e.g. slime's ``eval/*`` rows at ``eval/step``) is counted in
  ``rows_ignored``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .readers import BadRecords, Chunk

__all__ = ["MergeReport", "merge_rows"]


@dataclass
class MergeReport:
    """What merging did (``summary.merge`` in ``--json``)."""

    rows: int = 0
    steps: int = 0
    rows_merged: int = 0
    rows_ignored: int = 0
    rollout_rows: int = 0
    steps_per_rollout: int = 1
    steps_repeated: int = 0
    values_replaced: int = 0
    values_conflicting: int = 0
    step_went_back: int = 0
    first_repeated: list = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["first_repeated"] = [_num(x) for x in self.first_repeated]
        return d

    def notes(self, per_event: bool = False) -> list[str]:
        """What the user must know; ``per_event``: rows are TensorBoard events (one scalar
        each), whose merging by step is the format, not news."""
        out = []
        if self.rows_merged and not per_event:
            out.append(
                f"{self.rows} rows merged into {self.steps} steps (rows sharing a step are one "
                "step; the last value logged wins)"
            )
        if self.rollout_rows:
            out.append(
                f"{self.rollout_rows} rows logged at the rollout step aligned to train steps "
                f"(x {self.steps_per_rollout} steps per rollout)"
            )
        if self.steps_repeated:
            first = ", ".join(str(_num(s)) for s in self.first_repeated)
            out.append(
                f"WARNING: {self.steps_repeated} steps were logged more than once (a resumed "
                f"run?), first at step {first}: the last value kept, {self.values_replaced} "
                f"earlier values replaced ({self.values_conflicting} of them different)"
            )
        if self.rows_ignored:
            out.append(f"{self.rows_ignored} rows with no step and no column of interest ignored")
        return out


def _num(x) -> int | float:
    x = float(x)
    return int(x) if x.is_integer() else x


def _concat(chunks: list[Chunk], names: set[str]) -> Chunk:
    if len(chunks) == 1:
        c = chunks[0]
        out = Chunk(lines=c.lines, unit=c.unit)
        for k in names & set(c.columns):
            out.columns[k], out.present[k] = c.columns[k], c.present[k]
        return out
    lines = np.concatenate([c.lines for c in chunks]) if chunks else np.zeros(0, np.int64)
    out = Chunk(lines=lines, unit=chunks[0].unit if chunks else "line")
    for k in names:
        if not any(k in c.columns for c in chunks):
            continue
        out.columns[k] = np.concatenate([c.columns.get(k, np.full(len(c), np.nan)) for c in chunks])
        out.present[k] = np.concatenate([c.present.get(k, np.zeros(len(c), bool)) for c in chunks])
    return out


def merge_rows(
    path: str | os.PathLike,
    chunks: list[Chunk],
    *,
    step: str | None,
    columns: set[str],
    rollout_step: str | None = None,
    rollout_flag: str | None = None,
    steps_per_rollout: int = 1,
    bad: BadRecords | None = None,
) -> tuple[Chunk, MergeReport]:
    """Merge the rows of ``chunks`` by step (the rule is in the module docstring).

    Parameters
    ----------
    path : path-like
        For messages.
    chunks : list of Chunk
        The rows, in file order.
    step : str or None
        The step column; the merged chunk holds the merged steps under this name.
    columns : set of str
        The columns of interest (the others are dropped).
    rollout_step, rollout_flag : str, optional
        The rollout step column, and a 0/1 column marking rows of rollout-step tags
        (TensorBoard); such rows are aligned to train steps.
    steps_per_rollout : int
        Train steps per rollout (slime's ``num_steps_per_rollout``).
    bad : BadRecords, optional
        Where rows with a column of interest but no step go (default: raise).

    Examples
    --------
    >>> from trmbounds.logs.readers import Chunk
    >>> c = Chunk(lines=np.array([1, 2, 3, 4]), unit="line",
    ...           columns={"step": np.array([1., 1., 2., 1.]), "a": np.array([.1, 0, .2, .3]),
    ...                    "b": np.array([0, 5., 0, 0])},
    ...           present={"step": np.ones(4, bool), "a": np.array([1, 0, 1, 1], bool),
    ...                    "b": np.array([0, 1, 0, 0], bool)})
    >>> m, r = merge_rows("x", [c], step="step", columns={"a", "b"})
    >>> m.columns["step"].tolist(), m.columns["a"].tolist(), m.columns["b"][:1].tolist()
    ([1.0, 2.0], [0.3, 0.2], [5.0])
    >>> r.steps_repeated, r.values_replaced, r.values_conflicting, r.step_went_back
    (1, 1, 1, 1)
    """
    bad = bad if bad is not None else BadRecords()
    k = int(steps_per_rollout)
    extra = {c for c in (step, rollout_step, rollout_flag) if c}
    c = _concat(chunks, set(columns) | extra)
    n = len(c)
    rep = MergeReport(rows=n, steps_per_rollout=k)

    def col(name):
        if name and name in c.columns:
            v, pres = c.columns[name], c.present[name]
            return np.where(pres, v, np.nan)
        return np.full(n, np.nan)

    s = col(step)
    r = col(rollout_step)
    flag = col(rollout_flag) == 1.0
    is_roll = flag | (~np.isfinite(s) & np.isfinite(r))
    base = np.where(flag, s, r) * k
    s_row = np.where(is_roll, base, s)
    ok = np.isfinite(s_row)
    data_cols = [x for x in columns if x in c.columns and x not in extra]
    relevant = np.zeros(n, bool)
    for x in data_cols:
        relevant |= c.present[x]
    if (~ok & relevant).any():
        for i in np.flatnonzero(~ok & relevant):
            v = s[i] if not is_roll[i] else r[i]
            bad.add(path, f"{c.unit} {c.lines[i]}", f"no valid step value ({v})")
    rep.rows_ignored = int(np.sum(~ok & ~relevant))
    keep = ok & relevant
    rep.rollout_rows = int(np.sum(keep & is_roll))
    idx = np.flatnonzero(keep)
    # rollout rows stand for k train steps each
    roll_i = idx[is_roll[idx]]
    norm_i = idx[~is_roll[idx]]
    if len(roll_i):
        src = np.concatenate([norm_i, np.repeat(roll_i, k)])
        steps = np.concatenate(
            [s_row[norm_i], np.repeat(s_row[roll_i], k) + np.tile(np.arange(k), len(roll_i))]
        )
        order = np.argsort(src, kind="stable")  # file order
        src, steps = src[order], steps[order]
    else:
        src, steps = idx, s_row[idx]
    name = step or "step"
    if len(steps) > 1:
        back = steps[1:] < np.maximum.accumulate(steps)[:-1]
        # a rollout row's k copies are not steps going back
        back &= src[1:] != src[:-1]
        rep.step_went_back = int(back.sum())
    if len(steps) < 2 or bool(np.all(np.diff(steps) > 0)):
        # one row per step, in order (the common case): nothing to merge
        rep.steps = len(steps)
        every = len(src) == n  # no row dropped or repeated: no copies
        out = Chunk(lines=c.lines if every else c.lines[src], unit=c.unit)
        for x in data_cols:
            v, pres = c.columns[x], c.present[x]
            out.columns[x], out.present[x] = (v, pres) if every else (v[src], pres[src])
        out.columns[name] = steps.astype(np.float64)
        out.present[name] = np.ones(len(steps), bool)
        return out, rep
    u, inv = np.unique(steps, return_inverse=True)
    inv = inv.reshape(-1)
    m = len(u)
    rep.steps = m
    rep.rows_merged = int(len(idx) - len(np.unique(s_row[idx])))
    # one order for all columns: by step, then file order (src is already file order)
    o = np.argsort(inv, kind="stable")
    g_all, src_o = inv[o], src[o]
    out = Chunk(lines=np.zeros(m, np.int64), unit=c.unit)
    last_line = np.full(m, -1, np.int64)
    np.maximum.at(last_line, inv, src)
    out.lines = c.lines[last_line]
    repeated = np.zeros(m, bool)
    for x in data_cols:
        pres = c.present[x][src_o]
        sel = np.flatnonzero(pres)
        g = g_all[sel]
        vals = c.columns[x][src_o[sel]]
        last = np.r_[g[1:] != g[:-1], True] if len(g) else np.zeros(0, bool)
        v_out = np.full(m, np.nan)
        p_out = np.zeros(m, bool)
        v_out[g[last]] = vals[last]
        p_out[g[last]] = True
        out.columns[x], out.present[x] = v_out, p_out
        replaced = ~last
        if replaced.any():
            kept = v_out[g[replaced]]
            old = vals[replaced]
            same = (old == kept) | (np.isnan(old) & np.isnan(kept))
            rep.values_replaced += int(replaced.sum())
            rep.values_conflicting += int(np.sum(~same))
            repeated[g[replaced]] = True
    rep.steps_repeated = int(repeated.sum())
    rep.first_repeated = [float(x) for x in u[repeated][:5]]
    out.columns[name] = u.astype(np.float64)
    out.present[name] = np.ones(m, bool)
    return out, rep
