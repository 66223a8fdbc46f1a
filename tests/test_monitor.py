"""``trmbounds.monitor.Monitor``: ``check``'s verdict, one step at a time.

The reference is ``check_log`` on the same rows written to a file: the monitor fed a
log's rows in file order gives, at every step, exactly the record ``check --json``
lists for it (state, B*, B* estimate, basis, horizon, flag, statistics with statuses).
Where the run-level cap rule makes them differ by design (a cap shown at a later step),
the reference is ``check_log`` on the log cut after that step.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from trmbounds.errors import TrmboundsError
from trmbounds.logs import frameworks as P
from trmbounds.logs import sources as SRC
from trmbounds.logs.check import Assumption, check_log
from trmbounds.logs.readers import BadRecords
from trmbounds.monitor import Monitor

sys.path.insert(0, str(Path(__file__).parent))
from logfixtures import NAMES, metric_rows, write_csv, write_jsonl  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FX = ROOT / "tests" / "fixtures"
EX = ROOT / "trmbounds" / "data" / "examples"

#: Every per-step metric log among the fixtures and the shipped examples.
LOGS = [
    *sorted((FX / "verl").glob("verl_*/*.jsonl")),
    *sorted((FX / "verl" / "tensorboard_log").glob("verl_*/*")),
    FX / "trl" / "grpo" / "trainer_state.json",
    FX / "trl" / "grpo" / "runs",
    FX / "trl" / "grpo_rerun" / "trainer_state.json",
    *sorted((FX / "trl" / "grpo_rerun" / "runs").iterdir()),
    FX / "hf_resume" / "trainer_state.json",
    FX / "hf_resume" / "checkpoint-4" / "trainer_state.json",
    FX / "hf_resume" / "runs",  # a crash and a resume: steps 5, 6 logged twice
    FX / "skyrl" / "tensorboard_log",
    FX / "nemo-rl" / "logs" / "exp_002" / "tensorboard",
    EX / "metrics.jsonl",
    *sorted((EX / "verl").glob("*.jsonl")),
    EX / "trl" / "trainer_state.json",
    EX / "trl" / "runs",
]
SETTINGS = [
    dict(kl_max=1e-3),
    dict(),
    dict(kl_max=1e-3, length=64),
    dict(tv_max=0.01),
    dict(kl_max=0.05, tv_max=0.05, length=16),
]


def rows_of(path: Path) -> list[tuple[float, dict]]:
    """(step, the dict the framework logged) in the order written."""
    if path.suffix == ".jsonl":  # verl's file logger: {"step": N, "data": {...}}
        out = []
        for line in path.read_text(encoding="utf-8").splitlines():
            obj = json.loads(line)
            d = {k: v for k, v in obj.items() if k != "data"}
            d.update(obj.get("data") or {})
            out.append((d["step"], d))
        return out
    if path.suffix == ".csv":
        import csv

        with open(path, encoding="utf-8") as fh:
            return [
                (float(r["_step"]), {k: float(v) for k, v in r.items() if v != ""})
                for r in csv.DictReader(fh)
            ]
    if path.suffix == ".json":  # HF trainer_state.json: one dict per Trainer.log call
        return [(e["step"], e) for e in json.loads(path.read_text())["log_history"]]
    # TensorBoard: one event per scalar; the scalars of one step (in a row) are one dict
    chunks, _, _ = SRC.read_rows(
        path, "tensorboard", list(P.PRESETS.values()), {}, BadRecords(), set()
    )
    out: list[tuple[float, dict]] = []
    for c in chunks:
        for i in range(len(c)):
            d = {k: float(c.columns[k][i]) for k in c.columns if c.present[k][i]}
            s = d.pop("step")
            d.pop(SRC.ROLLOUT_FLAG, None)
            if out and out[-1][0] == s:
                out[-1][1].update(d)
            else:
                out.append((s, d))
    return out


def feed(m: Monitor, rows) -> dict:
    """The last verdict of every step."""
    last = {}
    for s, d in rows:
        v = m.update(s, d)
        if v is not None:
            last[v.step] = v
    return last


def same_as_check(path: Path, setting: dict, rows=None, **kw) -> tuple[int, str | None]:
    """Assert the monitor's verdicts equal check's at every step; (steps, preset)."""
    setting = dict(setting)
    length = setting.pop("length", None)
    try:
        res = check_log(path, assumption=Assumption(**setting),
                        length="max" if length is None else str(length), **kw)  # fmt: skip
    except TrmboundsError as exc:  # the monitor refuses the same input the same way
        with pytest.raises(TrmboundsError) as got:
            feed(Monitor(**setting, length=length, reward_range=None, source=str(path),
                         **_maps(kw)), rows if rows is not None else rows_of(path))  # fmt: skip
        assert (
            str(got.value).split("; columns present")[0] == str(exc).split("; columns present")[0]
        )  # the columns seen so far, not the file's
        return 0, None
    m = Monitor(**setting, length=length, reward_range=None, source=str(path), **_maps(kw))
    last = feed(m, rows if rows is not None else rows_of(path))
    assert m.preset == res.preset
    assert sorted(last) == [res.record(i)["step"] for i in range(len(res))]
    for i in range(len(res)):
        rec = res.record(i)
        v = last[rec["step"]]
        assert v.to_dict() == rec, (path, setting, rec["step"])
        assert v.state == rec["status"]
        u = res.unified[i]
        assert v.unified == u or (math.isnan(v.unified) and math.isnan(u))
        e = res.bound_est[i]
        assert v.unified_estimate == e or (math.isnan(v.unified_estimate) and math.isnan(e))
        assert v.flagged == (rec.get("flagged"))
    return len(res), res.preset


def _maps(kw):
    return {"maps": P.parse_maps(kw["maps"])} if kw.get("maps") else {}


@pytest.mark.parametrize("path", LOGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_fixture_step_by_step_equals_check(path):
    n = 0
    for setting in SETTINGS:
        k, _ = same_as_check(path, setting)
        n += k
    assert n > 0  # some setting was judged, not only refused


@pytest.mark.parametrize("preset", sorted(NAMES))
@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_every_preset_generated_log_equals_check(tmp_path, preset, fmt):
    # an overflowed estimate (inf: flags the step), a negative KL estimate (kept, treated
    # as unknown) and a NaN detector: the paths check takes for such values
    names = NAMES[preset]
    extra = {}
    if "logp_diff_max" in names:
        extra[names["logp_diff_max"]] = [0.1, math.inf, None, 0.05]
    if "kl_tok_mean" in names:
        extra[names["kl_tok_mean"]] = [1e-5, -1e-6, math.inf, None]
    rows = metric_rows(preset, extra)
    p = tmp_path / f"m.{fmt}"
    (write_jsonl if fmt == "jsonl" else write_csv)(p, rows)
    maps = [] if preset in ("verl", "verl-legacy", "trl", "generic") else [
        f"T_max={names['T_max']}"
    ]  # fmt: skip
    if fmt == "csv" and preset == "slime":  # slime's own step is train/step; this is _step
        maps.append("step=_step")
    n = 0
    for setting in SETTINGS:
        k, got = same_as_check(p, setting, maps=maps)
        n += k
    assert n > 0


def test_rows_of_one_step_are_merged_as_check_merges_them(tmp_path):
    # prime-rl-like: two rows per step (trainer, orchestrator), and step 2 logged again
    # later (a resume: the later value wins, columns not logged again are kept)
    rows = [
        {"step": 1, "response_length/max": 100.0},
        {"step": 1, "rollout_corr/rollout_rs_seq_max_k2_max": 0.002},
        {"step": 2, "response_length/max": 200.0, "rollout_corr/rollout_rs_seq_max_k2_max": 0.5},
        {"step": 3, "response_length/max": 300.0, "rollout_corr/rollout_rs_seq_max_k2_max": 0.0},
        {"step": 2, "rollout_corr/rollout_rs_seq_max_k2_max": 0.0001},
    ]
    p = tmp_path / "m.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    same_as_check(p, dict(kl_max=1e-3))
    m = Monitor(kl_max=1e-3)
    assert m.update(1, rows[0]).flagged is None
    assert m.update(1, rows[1]).flagged is not None  # 0.002 > 1e-3 once merged
    assert m.update(2, rows[2]).flagged is not None
    m.update(3, rows[3])
    v = m.update(2, rows[4])  # step 2 again: its detector replaced, its length kept
    assert v.step == 2 and v.flagged is None and v.T == 200
    assert v.stats["kl_max_proxy"]["value"] == 0.0001
    s = m.summary()
    assert s["steps"] == 3 and s["flagged"] == 1 and s["worst_step"] == 1


def test_a_cap_shown_later_applies_from_there_on(tmp_path):
    # verl: response_length/clip_ratio > 0 at step 3 only: its longest response, 512, IS
    # the cap. check applies 512 to every step (a run setting); the monitor, which
    # cannot see the future, from step 3 on: steps 1, 2 equal check on the log cut there.
    rows = [
        {"step": s, "data": {"response_length/max": mx, "response_length/clip_ratio": c,
                             "rollout_corr/rollout_rs_seq_max_k2_max": 1e-4}}
        for s, mx, c in ((1, 100.0, 0.0), (2, 300.0, 0.0), (3, 512.0, 0.25), (4, 200.0, 0.0))
    ]  # fmt: skip
    p = tmp_path / "m.jsonl"
    lines = [json.dumps(r) + "\n" for r in rows]
    p.write_text("".join(lines), encoding="utf-8")
    full = check_log(p, assumption=Assumption(kl_max=1e-5))
    assert list(full.T_source) == ["logged cap"] * 4 and list(full.T) == [512.0] * 4
    m = Monitor(kl_max=1e-5)
    got = [m.update(r["step"], r["data"]) for r in rows]
    assert [v.T_source for v in got] == ["empirical", "empirical", "logged cap", "logged cap"]
    assert [v.T for v in got] == [100, 300, 512, 512]
    for i, v in enumerate(got):
        cut = tmp_path / f"cut{i}.jsonl"
        cut.write_text("".join(lines[: i + 1]), encoding="utf-8")
        ref = check_log(cut, assumption=Assumption(kl_max=1e-5))
        assert v.to_dict() == ref.record(i)  # the log as it stood when the step landed
        if i >= 2:
            assert v.to_dict() == full.record(i)


def test_given_preset_maps_and_values_of_any_numeric_type():
    torch = pytest.importorskip("torch")
    m = Monitor(kl_max=1e-3, length=128, preset="generic", maps={"k2_max": "my/k2"})
    assert m.update(1, {"loss": 0.3, "note": "text", "ids": [1, 2]}) is None  # nothing read
    v = m.update(2, {"my/k2": torch.tensor(0.01), "T_max": np.int64(100), "flag": True})
    assert v.preset == "generic" and v.flagged is not None  # 0.01 > 1e-3
    assert v.stats["kl_max_proxy"] == {"value": pytest.approx(0.01), "status": "proxy",
                                       "source": "my/k2"}  # fmt: skip
    assert m.summary()["steps"] == 1  # step 1 had no column of interest: not a step


@pytest.mark.parametrize(
    "kw, step, match",
    [
        (dict(kl_max=-1.0), 1, "kl_max"),
        (dict(preset="nope"), 1, "unknown preset"),
        (dict(length="mean"), 1, "mean"),
        (dict(maps={"kl": "x"}), 1, "unknown quantity"),
        (dict(kl_max=1e-3), "one", "step must be a number"),
        (dict(kl_max=1e-3), math.nan, "step must be finite"),
        (dict(kl_max=1e-3), True, "step must be a number"),
    ],
)
def test_bad_input_is_a_trmbounds_error(kw, step, match):
    with pytest.raises(TrmboundsError, match=match):
        Monitor(**kw).update(step, {"rollout_corr/rollout_rs_seq_max_k2_max": 0.1})


def test_a_step_without_a_length_waits_for_one():
    # check merges the rows of a step before judging it; a live monitor cannot, so a step
    # whose length has not been logged yet (prime-rl writes it in another row) waits
    from trmbounds import bounds as B

    m = Monitor(kl_max=1e-6)
    assert m.update(1, {"rollout_corr/rollout_rs_seq_max_k2_max": 1e-7}) is None
    v = m.update(1, {"response_length/max": 100})
    assert v is not None and v.T == 100 and v.state == "non-vacuous"
    assert v.unified == pytest.approx(float(B.unified(100, 1e-6)), rel=1e-12)  # closed forms


def test_monitor_import_is_light():
    import subprocess

    code = (
        "import sys, trmbounds.monitor; "
        "bad = [m for m in ('torch', 'transformers', 'pyarrow', 'typer', 'rich', 'matplotlib') "
        "if m in sys.modules]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
