"""Independent review of the verdict stage (issue 16) and its live use (issue 20).

Every expected value comes from this file's own float64 references: exact enumeration
over tiny tabular policies (every response, worst-case rewards in ``[lo, hi]^Y``, the
error being linear in ``R``), closed forms worked out by hand in the comments, or a
numpy simulation of the interval in question. Nothing is copied from the code's output.
The four findings (each failed on the code reviewed: skipped records leaving a guarantee,
a live monitor refusing a first row without a length, --follow losing the last lines of
a rotated log, a heavy-tail false alarm on benign sparse data) are fixed; their tests
stay. The other tests are attacks that held; each fails on a plausible wrong
implementation (named in its docstring).
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from trmbounds.cli import app

runner = CliRunner()


def _cli(*args, code: int = 0) -> dict:
    r = runner.invoke(app, [*map(str, args), "--json"])
    assert r.exit_code == code, r.output
    return json.loads(r.stdout)


# ------------------------------------------------------------------ own reference
def _softmax(z):
    z = np.exp(z - z.max())
    return z / z.sum()


def _pair(rng, V, T, zero_frac=0.0, scale=1.0):
    """A tabular pair over fixed-length responses: a distribution per context; with
    ``zero_frac`` some contexts of pi_roll lack a token (no full support)."""
    roll, th = {}, {}
    for t in range(T):
        for c in itertools.product(range(V), repeat=t):
            z = rng.normal(size=V)
            p = _softmax(z)
            if zero_frac and rng.random() < zero_frac:
                p[rng.integers(V)] = 0.0
                p = p / p.sum()
            roll[c], th[c] = p, _softmax(z + scale * rng.normal(size=V))
    return roll, th


def _exact(roll, th, V, T, lo=0.0, hi=1.0) -> dict:
    """Exact statistics and the worst |Error| over rewards in [lo, hi]^Y.

    Error(R) = sum_y R(y) [P_th(y) - P_roll(y) - P_roll(y) sum_t (rho_t - 1)], the sum
    over tokens pi_roll can emit (L = E_roll[R sum_t (rho_t - 1)])."""
    coef = []
    for y in itertools.product(range(V), repeat=T):
        pr = pt = 1.0
        s = 0.0
        for t in range(T):
            p, q = roll[y[:t]][y[t]], th[y[:t]][y[t]]
            pt *= q
            if pr > 0 and p > 0:
                s += q / p - 1.0
            pr *= p
        coef.append(pt - pr - pr * s)
    coef = np.array(coef)
    up = np.sum(np.where(coef > 0, coef * hi, coef * lo))
    down = -np.sum(np.where(coef < 0, coef * hi, coef * lo))
    kl = tv = m = kseq = 0.0
    dbar = np.zeros(T)
    for t in range(T):
        for c in itertools.product(range(V), repeat=t):
            pc = math.prod(roll[c[:j]][c[j]] for j in range(t))
            if pc <= 0:
                continue
            p, q = roll[c], th[c]
            sp = p > 0
            k = float(np.sum(p[sp] * np.log(p[sp] / q[sp])))
            d = 0.5 * float(np.abs(p - q).sum())
            kl, tv = max(kl, k), max(tv, d)
            m += pc * float(q[~sp].sum())
            kseq += pc * k
            dbar[t] += pc * d
    return dict(worst=max(up, down), kl_max=kl, tv_max=tv, m=m, kl_seq=kseq, dbar=dbar)


def _up(x: float) -> float:
    """A true maximum given as an assumption, rounded up by a hair (honest input)."""
    return x * (1 + 1e-9) + 1e-15


# ============================================================ findings (fixed)
def test_skipped_records_do_not_leave_a_guarantee(tmp_path):
    # T = 1, pi_roll = (0.45, 0.45, 0.10), pi_theta = (0.55, 0.45, 0), R = (0.5, 0, 1):
    # J_theta - J_roll = 0.275 - 0.325 = -0.05 (= L exactly: at T = 1 the error is 0
    # and every bound's B* is 0). TV = 0.1 = --tv-max (true). The token pi_theta never
    # emits has trainer log-prob -inf: a record the reader calls bad.
    roll, th, R = np.array([0.45, 0.45, 0.10]), np.array([0.55, 0.45, 0.0]), [0.5, 0.0, 1.0]
    assert th @ R - roll @ R == pytest.approx(-0.05)
    assert 0.5 * np.abs(roll - th).sum() == pytest.approx(0.1)
    rng = np.random.default_rng(0)
    steps, n = 10, 1500
    f = tmp_path / "d.jsonl"
    with f.open("w") as fh:
        for s in range(steps):
            for v in rng.choice(3, size=n, p=roll):
                lt = math.log(th[v]) if th[v] > 0 else -math.inf
                fh.write(json.dumps({"step": s, "inference_logprobs": [math.log(roll[v])],
                                     "trainer_logprobs": [lt], "reward": R[v]}) + "\n")  # fmt: skip
    out = _cli("check", f, "--tv-max", 0.1, "--length", 1, "--skip-bad")
    n_g = sum(s["status"] == "guaranteed" for s in out["steps"])
    allowed = 0.05 + 3 * math.sqrt(0.05 * 0.95 / steps)  # nominal rate + 3 sd
    assert n_g / steps <= allowed


def _prime_rows():
    # prime-rl: the trainer and the orchestrator append separate rows to one
    # metrics.jsonl (docs/logs.md, "Rows that share a step are merged"); here the
    # trainer's mismatch row of a step lands before the orchestrator's length row.
    rows = []
    for s in (1, 2):
        rows.append({"step": s, "mismatch_kl/all/mean": 1e-7, "mismatch_kl/all/max": 1e-6})
        rows.append({"step": s, "train/agg/all/num_output_tokens/max": 100})
    return rows


def test_check_reads_the_prime_rl_split_rows(tmp_path):
    """Held part: check on the finished log judges both steps (the control of the next
    test)."""
    f = tmp_path / "metrics.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in _prime_rows()))
    out = _cli("check", f, "--kl-max", 1e-3, "--preset", "prime-rl")
    assert [s["step"] for s in out["steps"]] == [1, 2]
    assert all(s["T"] == 100 for s in out["steps"])


def test_follow_survives_a_first_row_without_a_length(tmp_path):
    f = tmp_path / "metrics.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in _prime_rows()))
    every = "refuted,vacuous,guaranteed,estimated-gain,non-vacuous,unknown"
    # --fail-on every state: the first verdict printed ends the follow with exit 1
    r = runner.invoke(app, ["check", "--follow", str(f), "--kl-max", "1e-3", "--preset",
                            "prime-rl", "--interval", "0.05", "--fail-on", every])  # fmt: skip
    assert r.exit_code == 1, r.output


def _benign_sparse_dump(path: Path, rng, n: int) -> None:
    """T = 1: 98 % of prompts have pi_theta = pi_roll (k3 = 0), 2 % a log-ratio of
    magnitude in [0.05, 0.3] -- an ordinary mismatch on a few prompts."""
    with path.open("w") as fh:
        for _ in range(n):
            lr = math.log(0.5)
            d = 0.0
            if rng.random() < 0.02:
                d = float(rng.choice([-1, 1]) * rng.uniform(0.05, 0.3))
            fh.write(json.dumps({"inference_logprobs": [lr], "trainer_logprobs": [lr + d]}) + "\n")


def _k3_terms(rng, n):
    d = np.where(rng.random(n) < 0.02, rng.choice([-1, 1], n) * rng.uniform(0.05, 0.3, n), 0.0)
    return np.expm1(d) - d


def test_no_heavy_tail_warning_on_a_benign_sparse_divergence(tmp_path):
    rng = np.random.default_rng(1)
    n = 5000
    # the reference: coverage of the normal 95 % interval of the mean of these terms
    truth = np.mean(_k3_terms(np.random.default_rng(99), 4_000_000))
    reps = np.array([_k3_terms(rng, n) for _ in range(400)])
    m, sd = reps.mean(1), reps.std(1, ddof=1) / math.sqrt(n)
    cover = np.mean(np.abs(m - truth) <= 1.959964 * sd)
    assert cover >= 0.92  # the interval is fine here
    f = tmp_path / "d.jsonl"
    _benign_sparse_dump(f, rng, n)
    ks = _cli("check", f, "--kl-max", 0.05, "--length", 1)["steps"][0]["stats"]["kl_seq"]
    assert "heavy_tail" not in ks


# ======================================================================= attacks held
def test_masked_steps_are_never_guaranteed_and_unmasked_ones_are_judged(tmp_path):
    """A TRM mask on some steps only. Wrong implementations caught: one flag for the
    whole dump (then the unmasked control would be refused too -- not asserted, it may
    rightly fail to clear B*) or none (the masked steps read 'guaranteed').

    T = 1, pi_roll = (0.95, 0.05), pi_theta = (0.99, 0.01), R = (0, 1): J_theta - J_roll
    = 0.01 - 0.05 = -0.04. The trainer's mask (k2 > 0.05: |log rho| = log 5 > 0.316)
    zeroes the rare token; the masked L-hat = 0 + ... is >= 0 while the true L = -0.04."""
    roll, th = np.array([0.95, 0.05]), np.array([0.99, 0.01])
    rng = np.random.default_rng(2)
    f = tmp_path / "d.jsonl"
    with f.open("w") as fh:
        for s in range(40):
            for v in rng.choice(2, size=400, p=roll):
                mask = [0] if (v == 1 and s < 30) else [1]
                fh.write(json.dumps({"step": s, "inference_logprobs": [math.log(roll[v])],
                                     "trainer_logprobs": [math.log(th[v])], "loss_mask": mask,
                                     "reward": float(v == 1)}) + "\n")  # fmt: skip
    # eps = TV = 0.04; honest --tv-max
    out = _cli("check", f, "--tv-max", 0.04 * (1 + 1e-9), "--length", 1)
    st = [s["status"] for s in out["steps"]]
    assert "guaranteed" not in st[:30]
    assert sum(x == "guaranteed" for x in st[30:]) <= 2  # J falls: <= 5 % + 3 sd of 10
    assert any("MASKED" in n for n in out["summary"]["notes"])


@pytest.mark.parametrize("const", ["paper", "sharp"])
def test_missing_mass_bound_is_above_the_exact_worst_error(tmp_path, const):
    """Statistics files of pairs WITHOUT full support, checked with --missing-mass and
    --reward-range (negative rewards too): B* >= the exact worst error. Wrong
    implementations caught: + a*m instead of + max|R|*m (rewards in [-2, -1]: a = 1,
    max|R| = 2), or the Adaptive bound kept without full support."""
    rng = np.random.default_rng(7)
    f = tmp_path / "s.json"
    for trial in range(12):
        V, T = 3, 1 + trial % 3
        roll, th = _pair(rng, V, T, zero_frac=0.6, scale=[0.05, 0.5, 1.5][trial % 3])
        for lo, hi in ((0.0, 1.0), (-1.0, 1.0), (-2.0, -1.0), (0.5, 1.5)):
            ex = _exact(roll, th, V, T, lo, hi)
            if ex["m"] <= 0:
                continue
            f.write_text(json.dumps({"T": T, "kl_max": _up(ex["kl_max"]),
                                     "tv_max": min(1.0, _up(ex["tv_max"])),
                                     "per_position": list(np.minimum(1, ex["dbar"] * (1 + 1e-9))),
                                     "status": {"kl_max": "certified", "tv_max": "certified",
                                                "per_position": "certified"}}))  # fmt: skip
            out = _cli("check", f, "--length", T, "--missing-mass", _up(ex["m"]),
                       "--reward-range", lo, hi, "--constants", const)  # fmt: skip
            step = out["steps"][0]
            assert step["unified_estimate"] >= ex["worst"] * (1 - 1e-9), (trial, lo, hi)


def test_short_per_position_at_the_cap_is_never_below_the_exact_worst_error(tmp_path):
    """A statistics file whose per_position stops at L < the cap (meta max_new_tokens):
    eval --stats and check agree, at every --length/--T given, and B* >= the exact worst
    error at the cap. Wrong implementation caught: zero-padding D̄_t past L (the bound of
    the Adaptive member drops to the first L positions)."""
    rng = np.random.default_rng(5)
    f = tmp_path / "s.json"
    below = 0
    for trial in range(6):
        T = 3 + trial % 2
        roll, th = _pair(rng, 2, T, scale=[0.05, 0.6][trial % 2])
        for lo, hi in ((0.0, 1.0), (-1.0, 1.0)):
            ex = _exact(roll, th, 2, T, lo, hi)
            for L in range(1, T):
                f.write_text(json.dumps({
                    "T": L, "kl_max": _up(ex["kl_max"]), "tv_max": min(1.0, _up(ex["tv_max"])),
                    "per_position": list(ex["dbar"][:L] * (1 + 1e-9)), "reward_range": [lo, hi],
                    "meta": {"sampling": {"max_new_tokens": T}},
                    "status": {"kl_max": "certified", "tv_max": "certified",
                               "per_position": "estimate"}}))  # fmt: skip
                for extra in ((), (T,), (T + 5,)):
                    ck = _cli("check", f, *(("--length", *extra) if extra else ()))["steps"][0]
                    ev = _cli("eval", "--stats", f, *(("--T", *extra) if extra else ()))
                    assert ck["unified_estimate"] == ev["unified"]
                    assert ck["T"] == ev["inputs"]["T"] == (extra[0] if extra else T)
                    if ck["T"] == T:
                        below += ev["unified"] < ex["worst"] * (1 - 1e-9)
    assert below == 0


def test_ragged_rows_equal_one_row_at_a_time():
    """bound_columns with one D̄_t array per row equals the same rows one at a time (NaN
    delta or eps, T = 1, empty arrays, huge T, missing mass, sharp constants). Wrong
    implementation caught: a tail fill or a weight offset applied to one path only."""
    from trmbounds.stats import bound_columns

    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(1, 5))
        T = rng.choice([1.0, 2.0, 3.0, 7.0, 50.0, 1e6, 1e12], size=n)
        kl = rng.choice([np.nan, 1e-4, 0.3, 2.0], size=n)
        tv = rng.choice([np.nan, 1e-3, 0.2, 1.0], size=n)
        tv = np.where(np.isnan(kl) & np.isnan(tv), 0.1, tv)
        tv = np.where(~np.isnan(kl) & ~np.isnan(tv), np.minimum(tv, np.sqrt(kl / 2)), tv)
        pps = [rng.random(int(min(T[i], rng.integers(0, 5)))) * 0.01 for i in range(n)]
        kw = dict(missing_mass=rng.choice([None, 0.0, 0.01]),
                  constants=str(rng.choice(["paper", "sharp"])))  # fmt: skip
        b, _ = bound_columns(T, kl, tv, None, None, pps, **kw)
        for i in range(n):
            b1, _ = bound_columns(T[i], kl[i], tv[i], None, None, pps[i], **kw)
            for k in b:
                x, y = float(b[k][i]), float(b1[k])
                assert (math.isnan(x) and math.isnan(y)) or x == pytest.approx(y, rel=1e-12)


def test_monitor_equals_check_on_shuffled_repeated_rows(tmp_path):
    """The same verl rows -- steps out of order and repeated, rows with only a length,
    +inf / NaN / negative values -- fed to Monitor one by one and written for check:
    same state, B*, estimate and flag at every step (--length given). Wrong
    implementation caught: a monitor judging each row alone instead of the merged step."""
    from trmbounds.monitor import Monitor

    cols = ["response_length/max", "response_length/mean", "rollout_corr/k3_kl",
            "rollout_corr/rollout_rs_seq_sum_k3_seq_mean", "training/rollout_probs_diff_max",
            "rollout_corr/rollout_rs_seq_max_k2_max", "rollout_corr/rollout_rs_seq_max_k3_max"]  # fmt: skip
    rng = np.random.default_rng(3)

    def val(c):
        u = rng.random()
        if u < 0.06:
            return [math.inf, math.nan, -1.0][int(rng.integers(3))]
        if c.startswith("response_length/"):
            return float(rng.integers(1, 300))
        if "diff_max" in c:
            return float(rng.choice([1e-4, 5e-3, 0.2]))
        return float(rng.choice([1e-8, 1e-6, 1e-4, 1e-2]))

    f = tmp_path / "m.jsonl"
    compared = 0
    for _ in range(40):
        rows = [(1, {"response_length/max": 50.0, "rollout_corr/k3_kl": 1e-6})]
        for _ in range(int(rng.integers(1, 10))):
            cs = rng.choice(cols, size=int(rng.integers(1, len(cols) + 1)), replace=False)
            rows.append((int(rng.integers(1, 6)), {c: val(c) for c in cs}))
        f.write_text("".join(json.dumps({"step": s, "data": d}) + "\n" for s, d in rows))
        klmax = [None, 1e-5, 1e-3][int(rng.integers(3))]
        args = ["check", f, "--preset", "verl", "--length", 256]
        ck = {s["step"]: s for s in _cli(*args, *(("--kl-max", klmax) if klmax else ()))["steps"]}
        m = Monitor(kl_max=klmax, length=256, preset="verl")
        last = {}
        for s, d in rows:
            v = m.update(s, d)
            if v is not None:
                last[s] = v
        assert set(ck) == set(last)
        for s, c in ck.items():
            v = last[s]
            assert c["status"] == v.state
            assert bool(c.get("flagged")) == (v.flagged is not None)
            for a, b in ((c["unified"], v.unified), (c["unified_estimate"], v.unified_estimate)):
                assert (a is None and math.isnan(b)) or a == pytest.approx(b, rel=1e-12)
            compared += 1
    assert compared > 40


def test_follow_does_not_lose_the_last_lines_of_a_rotated_log(tmp_path):
    import os
    import queue
    import subprocess
    import sys
    import threading

    root = Path(__file__).resolve().parents[1]
    ok = {"response_length/max": 10, "rollout_corr/k3_kl": 1e-7}

    def line(s, d):
        return json.dumps({"step": s, "data": d}) + "\n"

    f = tmp_path / "metrics.jsonl"
    f.write_text(line(1, ok) + line(2, ok))
    env = {**os.environ, "PYTHONPATH": str(root), "PYTHONUNBUFFERED": "1"}
    p = subprocess.Popen(
        [sys.executable, "-m", "trmbounds", "check", "--follow", str(f), "--kl-max", "1e-3",
         "--length", "10", "--json", "--interval", "1.0", "--fail-on", "refuted"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    killer = threading.Timer(30.0, p.kill)  # this test's own child only
    killer.start()
    q: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [q.put(x) for x in p.stdout], daemon=True).start()
    try:
        steps = [json.loads(q.get(timeout=20))["step"] for _ in range(2)]  # 1 and 2 read
        # between two polls (1 s apart; these take microseconds): step 3 appended, the file
        # rotated, a new file begun with step 4 (refuted: ends the follow with exit 1)
        with f.open("a") as fh:
            fh.write(line(3, ok))
        f.rename(tmp_path / "metrics.jsonl.1")
        f.write_text(line(4, {**ok, "training/rollout_probs_diff_max": 0.5}))
        p.wait(timeout=20)
        while not q.empty():
            steps.append(json.loads(q.get())["step"])
    finally:
        killer.cancel()
        if p.poll() is None:
            p.kill()
    assert p.returncode == 1
    assert steps == [1, 2, 3, 4]
