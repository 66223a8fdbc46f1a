"""Every verdict of ``trmbounds check`` against exact ground truth (SPEC §5, §6, §8).

Tiny autoregressive policy pairs are enumerated exactly (every response, worst-case
rewards) by code written here from the definitions; ``check`` then sees only what a
framework would log or dump: sampled tokens' log-probabilities, per-sequence rewards,
batch means. A verdict is correct only if the exact truth agrees with it:
``guaranteed`` never when the exact improvement is negative, no bound below the exact
worst error for variable-length responses, truncated rollouts or shifted reward
ranges, and the estimators' confidence intervals cover the exact values.
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from test_missing_mass import _exact as _exact_truncated
from test_missing_mass import _truncated_pair, _worst

from trmbounds import Stats, evaluate
from trmbounds.logs.check import STATES, Assumption, check_log

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


# ------------------------------------------------------------------ exact pairs
def _softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


class Pair:
    """Per-prefix next-token distributions ``roll[prefix]``, ``theta[prefix]`` (tuples).

    ``eos`` (a token id or None): after it the process is absorbing; responses end
    there and are padded with it for the enumeration over ``V**T`` sequences.
    """

    def __init__(self, V, T, roll, theta, eos=None):
        self.V, self.T, self.roll, self.theta, self.eos = V, T, roll, theta, eos
        ys = list(itertools.product(range(V), repeat=T))
        self.ys = ys
        self.P_r = np.array([self._prob(self.roll, y) for y in ys])
        self.P_t = np.array([self._prob(self.theta, y) for y in ys])

    def _len(self, y):
        if self.eos is None:
            return self.T
        return next((t + 1 for t, v in enumerate(y) if v == self.eos), self.T)

    def _prob(self, pol, y):
        n = self._len(y)
        if any(v != self.eos for v in y[n:]):
            return 0.0  # not a padded response
        return math.prod(pol[y[:t]][y[t]] for t in range(n))

    def surrogate_terms(self, y):
        """sum_t (rho_t - 1) over the response's own tokens (0 if roll cannot emit it)."""
        n = self._len(y)
        if self._prob(self.roll, y) == 0:
            return 0.0
        return sum(self.theta[y[:t]][y[t]] / self.roll[y[:t]][y[t]] - 1 for t in range(n))

    def exact(self, R=None):
        """Worst |Error| over R in [0,1]^Y; and for a given R: improvement and L."""
        surr = np.array([self.surrogate_terms(y) for y in self.ys])
        coef = self.P_t - self.P_r - self.P_r * surr
        worst = max(coef[coef > 0].sum(), -coef[coef < 0].sum())
        ctx = [c for c in self.roll if self._reach(c)]
        kl = max(
            sum(r * math.log(r / q) for r, q in zip(self.roll[c], self.theta[c]) if r > 0)
            for c in ctx
        )
        tv = max(0.5 * np.abs(self.roll[c] - self.theta[c]).sum() for c in ctx)
        out = dict(worst=float(worst), kl_max=float(kl), tv_max=float(tv))
        out["tv_seq"] = float(0.5 * np.abs(self.P_r - self.P_t).sum())
        ok = self.P_r > 0
        out["kl_seq"] = float(np.sum(self.P_r[ok] * np.log(self.P_r[ok] / self.P_t[ok])))
        if R is not None:
            R = np.asarray(R, float)
            out["improvement"] = float(R @ (self.P_t - self.P_r))
            out["L"] = float(np.sum(self.P_r * R * surr))
        return out

    def _reach(self, c):
        """c is a context roll reaches (positive probability, not after EOS)."""
        if self.eos is not None and self.eos in c:
            return False
        return math.prod(self.roll[c[:j]][c[j]] for j in range(len(c))) > 0

    def sample(self, n, rng):
        """n responses from roll: lists of (log p_roll, log p_theta) and the token tuples."""
        lr, lt, ys = [], [], []
        for _ in range(n):
            y, a, b = (), [], []
            for _t in range(self.T):
                p = self.roll[y]
                v = int(rng.choice(self.V, p=p))
                a.append(math.log(p[v]))
                b.append(math.log(self.theta[y][v]))
                y = (*y, v)
                if v == self.eos:
                    break
            lr.append(a)
            lt.append(b)
            ys.append(y + (self.eos,) * (self.T - len(y)) if self.eos is not None else y)
        return lr, lt, ys


def _random_pair(V, T, rng, scale):
    roll, theta = {}, {}
    for t in range(T):
        for c in itertools.product(range(V), repeat=t):
            z = rng.normal(size=V)
            roll[c] = _softmax(z)
            theta[c] = _softmax(z + scale * rng.normal(size=V))
    return Pair(V, T, roll, theta)


def _write_dump(path, groups):
    """groups: list of (step, logp_roll lists, logp_theta lists, rewards or None)."""
    cols = {"step": [], "inference_logprobs": [], "trainer_logprobs": []}
    has_r = groups[0][3] is not None
    if has_r:
        cols["reward"] = []
    for step, lr, lt, r in groups:
        cols["step"] += [step] * len(lr)
        cols["inference_logprobs"] += lr
        cols["trainer_logprobs"] += lt
        if has_r:
            cols["reward"] += list(map(float, r))
    pq.write_table(pa.table(cols), path)
    return path


def _reward_index(pair, ys, R):
    idx = {y: i for i, y in enumerate(pair.ys)}
    return [R[idx[y]] for y in ys]


# ------------------------------------------------------------------ 1. the surrogate
@pytest.fixture(scope="module")
def worse_pair():
    """A pair and a reward R in [0,1]^Y whose exact surrogate L is positive but below B*
    while the exact improvement J(theta) - J(roll) is negative (a linear programme over
    R: both are linear in R)."""
    from scipy.optimize import linprog

    rng = np.random.default_rng(11)
    pair = _random_pair(2, 2, rng, scale=0.08)
    ex = pair.exact()
    B = evaluate(Stats(T=2, kl_max=ex["kl_max"], tv_max=ex["tv_max"]), "sharp").unified
    a = pair.P_r * np.array([pair.surrogate_terms(y) for y in pair.ys])  # L(R) = a . R
    # L = worst/3 > 0: then min over R of J(theta) - J(roll) = L + Error can be negative
    lp = linprog(pair.P_t - pair.P_r, A_eq=[a], b_eq=[ex["worst"] / 3], bounds=[(0, 1)] * len(a))
    R = lp.x
    ex = pair.exact(R)
    assert ex["improvement"] < 0 < ex["L"] < B  # exact: the update makes things worse
    return pair, R, ex


def test_no_guarantee_when_the_exact_improvement_is_negative(tmp_path, worse_pair):
    pair, R, ex = worse_pair
    rng = np.random.default_rng(5)
    reps, n = 200, 100
    groups = []
    for k in range(reps):
        lr, lt, ys = pair.sample(n, rng)
        groups.append((k, lr, lt, _reward_index(pair, ys, R)))
    p = _write_dump(tmp_path / "d.parquet", groups)
    # A true assumption (the exact maxima) and the true horizon T = 2 (fixed length).
    a = Assumption(kl_max=ex["kl_max"], tv_max=ex["tv_max"], constants="sharp")
    r = check_log(p, assumption=a, length="2")
    states = [STATES[i] for i in r.state]
    assert "refuted" not in states  # the assumption is true
    # every "guaranteed" here is false (the improvement is negative): the one-sided 95 %
    # bound allows ~5 % of them, 10 expected; 20 is > 3 sd above
    assert states.count("guaranteed") <= 20
    # the point estimate exceeded B* at many steps: the old rule (L > B*) said guaranteed
    L_hat = r.stats["surrogate"].values
    assert np.sum(L_hat > r.bound) >= 40
    assert states.count("estimated-gain") >= 20
    # the same batch means in a metric log (no standard error): never guaranteed
    m = tmp_path / "m.jsonl"
    with open(m, "w") as fh:
        for k in range(reps):
            fh.write(json.dumps({"step": k, "T": 2, "gain": float(L_hat[k])}) + "\n")
    rm = check_log(m, preset="generic", maps=["surrogate=gain"], assumption=a, length="2")
    sm = [STATES[i] for i in rm.state]
    assert "guaranteed" not in sm and sm.count("estimated-gain") == int(np.sum(L_hat > r.bound))


def test_guaranteed_when_the_improvement_is_real(tmp_path, worse_pair):
    pair, _, ex = worse_pair
    R = (pair.P_t >= pair.P_r).astype(float)  # the exact improvement is +D_TV^seq
    ex = pair.exact(R)
    assert ex["improvement"] > 0
    a = Assumption(kl_max=ex["kl_max"], tv_max=ex["tv_max"], constants="sharp")
    B_exact = evaluate(Stats(T=2, kl_max=ex["kl_max"], tv_max=ex["tv_max"]), "sharp").unified
    assert ex["L"] > B_exact  # the surrogate clears the bound: improvement is provable
    rng = np.random.default_rng(6)
    groups = []
    for k in range(20):
        lr, lt, ys = pair.sample(2000, rng)
        groups.append((k, lr, lt, _reward_index(pair, ys, R)))
    r = check_log(_write_dump(tmp_path / "g.parquet", groups), assumption=a, length="2")
    states = [STATES[i] for i in r.state]
    assert states.count("guaranteed") >= 15  # power: most steps prove it
    np.testing.assert_allclose(r.bound, B_exact, rtol=1e-12)
    # the CI of L covers the exact L at (about) 95 % of the steps
    lo, hi = r.stats["surrogate"].ci
    assert np.sum((lo <= ex["L"]) & (ex["L"] <= hi)) >= 16


# ------------------------------------------------------------------ 2. the horizon
def _eos_pair(cap=5, stop=0.99):
    """V = 3, token 2 = EOS. The first token is EOS with probability `stop`; the two
    policies differ only at later positions, so the divergence lives in rare long
    responses."""
    V, eos = 3, 2
    rng = np.random.default_rng(3)
    roll, theta = {}, {}
    one = np.array([0.0, 0.0, 1.0])
    for t in range(cap):
        for c in itertools.product(range(V), repeat=t):
            if eos in c:
                roll[c] = theta[c] = one  # absorbing, unreachable as a context
            elif t == 0:
                roll[c] = theta[c] = np.array([(1 - stop) / 2, (1 - stop) / 2, stop])
            else:
                z = rng.normal(size=V) + np.array([0, 0, -1.0])
                roll[c] = _softmax(z)
                theta[c] = _softmax(z + np.array([1.2, -1.2, 0.0]))
    return Pair(V, cap, roll, theta, eos=eos)


def test_bound_at_the_generation_cap_holds_and_an_empirical_horizon_says_so(tmp_path):
    pair = _eos_pair()
    ex = pair.exact()
    rng = np.random.default_rng(8)
    lr, lt, _ = pair.sample(20, rng)  # rare long responses: most runs see none
    T_obs = max(map(len, lr))
    assert T_obs < pair.T
    p = _write_dump(tmp_path / "eos.parquet", [(0, lr, lt, None)])
    a = Assumption(kl_max=ex["kl_max"], tv_max=ex["tv_max"])
    # the bound at the longest SAMPLED length is below the exact worst error: not a bound
    B_obs = evaluate(Stats(T=T_obs, kl_max=ex["kl_max"], tv_max=ex["tv_max"])).unified
    assert B_obs < ex["worst"]
    r = check_log(p, assumption=a)
    assert r.T[0] == T_obs and r.T_source[0] == "empirical"
    assert r.basis == "empirical-horizon" and not r.sound[0]
    assert any("--length MAX_NEW_TOKENS" in n for n in r.notes)
    # at the generation cap the bound holds (exact enumeration)
    r = check_log(p, assumption=a, length=str(pair.T))
    assert r.T[0] == pair.T and r.basis == "assumed"
    assert r.bound[0] >= ex["worst"] - 1e-12
    with pytest.raises(Exception, match="mean response length has no theorem"):
        check_log(p, assumption=a, length="mean")


# ------------------------------------------------------------------ 3. reward range
def test_check_reward_range_keeps_both_ends_like_eval(tmp_path):
    # T = 2, V = 3: roll (1/2, 1/2, 0), theta (1/2 - m/2, 1/2 - m/2, m), m = 0.01 per
    # position; the worst error over R in [5, 6]^Y is 0.12 (test_missing_mass enumeration)
    m, V, T = 0.01, 3, 2
    r_ = np.array([0.5, 0.5, 0.0])
    q_ = np.array([0.5 - m / 2, 0.5 - m / 2, m])
    roll = {c: r_ for t in range(T) for c in itertools.product(range(V), repeat=t)}
    theta = {c: q_ for c in roll}
    coef, tv, kl, mm, *_ = _exact_truncated(V, T, roll, theta)
    worst = _worst(coef, 5.0, 6.0)
    assert worst == pytest.approx(0.12)
    f = tmp_path / "s.json"
    f.write_text(json.dumps({"T": T, "kl_max": kl, "tv_max": tv, "missing_mass": mm}))
    a = Assumption(kl_max=kl, tv_max=tv, reward_range=(5.0, 6.0))
    r = check_log(f, assumption=a)
    assert r.bound[0] >= worst - 1e-12  # 0.0204 before: max|R| m, not a m
    want = evaluate(Stats(T=T, kl_max=kl, tv_max=tv, missing_mass=mm, reward_range=(5, 6)))
    assert r.bound[0] == pytest.approx(want.unified, rel=1e-12)  # one code path
    assert any("support:" in n and "missing mass" in n for n in r.notes)


@pytest.mark.parametrize("lo,hi", [(0.0, 1.0), (5.0, 6.0), (-3.0, -1.0)])
def test_check_missing_mass_option_bounds_truncated_rollouts(tmp_path, lo, hi):
    rng = np.random.default_rng(21)
    for _ in range(8):
        V, T = 3, 3
        roll, theta = _truncated_pair(V, T, k=2, rng=rng, scale=0.5)
        coef, tv, kl, m, kl_seq, tv_seq = _exact_truncated(V, T, roll, theta)
        worst = _worst(coef, lo, hi)
        a_full = Assumption(kl_max=kl, tv_max=tv, reward_range=(lo, hi))
        a = Assumption(kl_max=kl, tv_max=tv, reward_range=(lo, hi), missing_mass=m)
        p = tmp_path / "m.jsonl"
        p.write_text(json.dumps({"step": 1, "T": T, "k": 1e-3}) + "\n")
        r = check_log(p, preset="generic", maps=["kl_tok_mean=k"], length=str(T), assumption=a)
        assert r.bound[0] >= worst - 1e-12
        # without the correction the assumed B* can fall below the truth
        r0 = check_log(p, preset="generic", maps=["kl_tok_mean=k"], length=str(T),
                       assumption=a_full)  # fmt: skip
        assert r0.bound[0] <= r.bound[0]
        assert any("full support" in n for n in r0.notes)


def test_an_estimated_missing_mass_makes_the_bound_an_estimate(tmp_path):
    f = tmp_path / "s.json"
    f.write_text(json.dumps({"T": 8, "kl_max": 1e-6, "tv_max": 5e-4, "missing_mass": 1e-4,
                             "status": {"missing_mass": "estimate"}}))  # fmt: skip
    r = check_log(f, assumption=Assumption(kl_max=1e-6), length="8")
    assert r.basis == "estimate" and not r.sound[0]
    assert any("estimated m makes the bound an estimate" in n for n in r.notes)


# ------------------------------------------------------------------ 4. estimators
def test_tv_identities_hold_without_full_support():
    # E_roll[(1 - prod rho)^+] = full D_TV^seq exactly (enumeration), truncated or not;
    # E_roll[|prod rho - 1|/2] is not (it misses theta's mass outside roll's support)
    rng = np.random.default_rng(4)
    for _ in range(10):
        V, T = 3, 3
        roll, theta = _truncated_pair(V, T, k=2, rng=rng, scale=0.7)
        pair = Pair(V, T, roll, theta)
        full_tv = pair.exact()["tv_seq"]
        ok = pair.P_r > 0
        ratio = pair.P_t[ok] / pair.P_r[ok]
        new = float(np.sum(pair.P_r[ok] * np.maximum(1 - ratio, 0)))
        old = float(np.sum(pair.P_r[ok] * 0.5 * np.abs(ratio - 1)))
        assert new == pytest.approx(full_tv, rel=1e-12, abs=1e-15)
        assert old < full_tv - 1e-6


def test_check_tv_seq_under_truncated_rollouts_estimates_the_full_tv(tmp_path):
    rng = np.random.default_rng(9)
    V, T = 3, 3
    roll, theta = _truncated_pair(V, T, k=2, rng=rng, scale=0.7)
    pair = Pair(V, T, roll, theta)
    full_tv = pair.exact()["tv_seq"]
    groups = [(k, *pair.sample(300, rng)[:2], None) for k in range(40)]
    r = check_log(_write_dump(tmp_path / "t.parquet", groups))
    lo, hi = r.stats["tv_seq"].ci
    cover = np.mean((lo <= full_tv) & (full_tv <= hi))
    assert cover >= 0.85  # 40 groups: 0.95 expected
    assert abs(np.mean(r.stats["tv_seq"].values) - full_tv) < 0.02


def _coverage(tmp_path, pair, n, reps, rng, name):
    ex = pair.exact()
    groups = [(k, *pair.sample(n, rng)[:2], None) for k in range(reps)]
    r = check_log(_write_dump(tmp_path / f"{name}.parquet", groups))
    out = {}
    for key in ("kl_seq", "tv_seq"):
        lo, hi = r.stats[key].ci
        out[key] = float(np.mean((lo <= ex[key]) & (ex[key] <= hi)))
    # the old estimator |prod rho - 1| / 2 with the same normal interval, computed here
    z, hit = 1.959963984540054, 0
    for _, lr, lt, _ in groups:
        x = 0.5 * np.abs(np.expm1([sum(b) - sum(a) for a, b in zip(lr, lt)]))
        h = z * x.std(ddof=1) / math.sqrt(n)
        hit += x.mean() - h <= ex["tv_seq"] <= x.mean() + h
    out["tv_seq_old"] = hit / reps
    return out, r


@pytest.mark.parametrize(
    "V,T,scale,heavy", [(3, 3, 0.3, False), (2, 8, 1.3, True)], ids=["moderate", "heavy"]
)
def test_confidence_interval_coverage_by_simulation(tmp_path, V, T, scale, heavy):
    rng = np.random.default_rng(100 + T)
    pair = _random_pair(V, T, rng, scale)
    cov, _ = _coverage(tmp_path, pair, 200, 300, rng, "c")
    assert cov["tv_seq"] >= 0.93, cov
    assert cov["kl_seq"] >= 0.93, cov
    if heavy:  # prod rho heavy-tailed: chi^2(P_theta || P_roll) = E_roll[(prod rho)^2] - 1
        chi2 = float(np.sum(pair.P_t**2 / pair.P_r) - 1)
        assert chi2 >= 20
        assert cov["tv_seq_old"] < 0.85, cov  # the old estimator's interval fails here


# ------------------------------------------------------------------ 5. flags
def test_detector_far_above_the_assumption_is_flagged_and_ranked(tmp_path):
    p = tmp_path / "v.jsonl"
    rows = [
        (1, 1e-7), (2, 2.2), (3, 3e-7), (4, 5e-6),
    ]  # fmt: skip
    with open(p, "w") as fh:
        for s, k2 in rows:
            fh.write(json.dumps({"step": s, "data": {
                "response_length/max": 64, "rollout_corr/rollout_rs_seq_max_k2_max": k2,
                "rollout_corr/k3_kl": 1e-8}}) + "\n")  # fmt: skip
    r = check_log(p, assumption=Assumption(kl_max=1e-6), length="64")
    np.testing.assert_allclose(r.flag, [np.nan, 2.2e6, np.nan, 5.0])
    assert "refuted" not in [STATES[i] for i in r.state]  # a detector is not a bound
    assert [int(r.step[i]) for i in r.worst(2)] == [2, 4]
    assert r.summary()["flagged"] == 2
    assert "2.2e+06" in r.flagged_by(1) or "2.2e6" in r.flagged_by(1)


@pytest.mark.parametrize("n", [300, 1000])
def test_a_rare_unsampled_loss_never_makes_a_guarantee(tmp_path, n):
    # T = 1 (Error = 0 and B* = 0 exactly, so only the confidence bound on L is tested),
    # V = 5: a token of probability 1e-3 under pi_roll loses 90 % of its mass under
    # pi_theta and carries the largest reward; the other four gain a little. The exact
    # improvement = L = R . (q - p) < 0, but a batch that misses the rare token sees only
    # gains: a normal interval on L then clears B* = 0 at most steps (an independent
    # review found 143/200 at n = 300); the distribution-free bound never does.
    pc = (1 - 1e-3) / 4
    c = 9e-4 / (4 * pc)
    p = np.r_[1e-3, np.full(4, pc)]
    q = np.r_[1e-4, pc * (1 + c * np.array([0.5, 1, 1, 1.5]))]
    R = np.array([1.0, 0.7, 0.5, 0.5, 0.3])
    assert abs(q.sum() - 1) < 1e-12
    improvement = float(R @ (q - p))
    assert improvement < 0
    kl = float(np.sum(p * np.log(p / q)))
    tv = 0.5 * float(np.abs(p - q).sum())
    rng = np.random.default_rng(0)
    reps = 100
    y = rng.choice(5, size=(reps, n), p=p)
    groups = [(k, [[math.log(p[v])] for v in y[k]], [[math.log(q[v])] for v in y[k]], R[y[k]])
              for k in range(reps)]  # fmt: skip
    a = Assumption(kl_max=1.01 * kl, tv_max=1.01 * tv)
    r = check_log(_write_dump(tmp_path / "rare.parquet", groups), assumption=a, length="1")
    states = [STATES[i] for i in r.state]
    assert r.bound[0] == 0.0
    assert "guaranteed" not in states
    # the normal interval (computed here) would have claimed it at most steps
    lo = r.stats["surrogate"].ci[0]
    normal_lcb = (
        r.stats["surrogate"].values - (r.stats["surrogate"].values - lo) * 1.6448536 / 1.959964
    )
    assert np.sum(normal_lcb > 0) >= reps // 4


def test_a_reward_outside_the_range_is_refused(tmp_path):
    p = _write_dump(tmp_path / "r.parquet", [(0, [[-0.5]], [[-0.4]], [3.0])])
    with pytest.raises(Exception, match=r"reward = 3 is outside the reward range \[0, 1\]"):
        check_log(p, assumption=Assumption(kl_max=0.1), length="1")
    r = check_log(p, assumption=Assumption(kl_max=0.1, reward_range=(0, 5)), length="1")
    assert r.stats["surrogate"].values[0] == pytest.approx(3.0 * (math.exp(0.1) - 1))


def test_verl_clip_ratio_makes_the_longest_response_the_cap(tmp_path):
    # verl's response_length/clip_ratio = mean(response_length == the padded width, the
    # configured max response length): where it is > 0 the logged max IS the cap.
    # The fixture was written by verl 0.9.1's own compute_data_metrics (tests/fixtures).
    from pathlib import Path

    f = Path(__file__).parent / "fixtures/verl/verl_0.9.1/rs_token_k2_seq_max_k2.jsonl"
    rows = [json.loads(x)["data"] for x in f.read_text().splitlines()]
    r = check_log(f, assumption=Assumption(kl_max=0.05))
    clipped = [d["response_length/clip_ratio"] > 0 for d in rows]
    assert list(r.T) == [d["response_length/max"] for d in rows]
    assert [s == "logged cap" for s in r.T_source] == clipped
    # without the clip ratio the same log has only an empirical horizon
    p = tmp_path / "noclip.jsonl"
    p.write_text("".join(json.dumps({"step": i + 1, "data": {k: v for k, v in d.items()
                 if k != "response_length/clip_ratio"}}) + "\n" for i, d in enumerate(rows)))  # fmt: skip
    assert set(check_log(p, assumption=Assumption(kl_max=0.05)).T_source) == {"empirical"}


def test_statistics_file_horizon_from_the_cap_measure_records(tmp_path):
    # trmbounds measure records its generation cap as meta.sampling.max_new_tokens; the
    # file's T is the longest measured response. check's horizon is the cap.
    f = tmp_path / "s.json"
    meta = {"sampling": {"max_new_tokens": 64}}
    f.write_text(json.dumps({"T": 10, "kl_max": 1e-4, "tv_max": 5e-3, "meta": meta,
                             "status": {"kl_max": "empirical", "tv_max": "empirical"}}))  # fmt: skip
    r = check_log(f, assumption=Assumption(kl_max=1e-4))
    assert r.T[0] == 64 and r.T_source[0] == "logged cap" and r.basis == "assumed"
    want = evaluate(Stats(T=64, kl_max=1e-4)).unified
    assert r.bound[0] == pytest.approx(want, rel=1e-12)
    # --missing-mass 0 is full support: no correction, and the note says full support
    r0 = check_log(f, assumption=Assumption(kl_max=1e-4, missing_mass=0.0))
    assert r0.bound[0] == pytest.approx(want, rel=1e-12)
    assert any("assumes full support" in n for n in r0.notes)


def test_tv_interval_covers_a_rare_divergence(tmp_path):
    # T = 1: the two policies differ only on a token of probability 0.005 under pi_roll
    # (D_TV^seq = 0.004, exact). At N = 100 most batches never sample it: a normal
    # interval has zero width at 0 (an independent review measured coverage 0.395); the
    # Wilson interval used when few events carry the mean covers the truth.
    p = np.array([0.005, 0.4975, 0.4975])
    q = np.array([0.001, 0.4995, 0.4995])
    tv = 0.5 * float(np.abs(p - q).sum())
    rng = np.random.default_rng(2)
    reps, n = 300, 100
    y = rng.choice(3, size=(reps, n), p=p)
    groups = [(k, [[math.log(p[v])] for v in y[k]], [[math.log(q[v])] for v in y[k]], None)
              for k in range(reps)]  # fmt: skip
    r = check_log(_write_dump(tmp_path / "rare.parquet", groups))
    lo, hi = r.stats["tv_seq"].ci
    assert np.mean((lo <= tv) & (tv <= hi)) >= 0.93
    assert any("Wilson" in n for n in r.notes)


def test_eval_and_check_agree_on_a_statistics_file_with_a_cap(tmp_path):
    from typer.testing import CliRunner

    from trmbounds.cli import app

    f = tmp_path / "s.json"
    f.write_text(json.dumps({
        "T": 10, "kl_max": 1e-4, "tv_max": 5e-3, "per_position": [1e-3] * 10,
        "meta": {"sampling": {"max_new_tokens": 64}},
        "status": {"kl_max": "empirical", "tv_max": "empirical", "per_position": "estimate"},
    }))  # fmt: skip
    # the bound at the cap; past the longest measured response D̄_t is unknown, not 0:
    # it takes the bound that holds there, min(1, eps, sqrt(delta/2)) = 5e-3 (independently
    # built here: a full-length array, summed position by position)
    want = evaluate(Stats(T=64, kl_max=1e-4, tv_max=5e-3, per_position=[1e-3] * 10 + [5e-3] * 54))
    runner = CliRunner()
    ev = json.loads(runner.invoke(app, ["eval", "--stats", str(f), "--json"]).stdout)
    ck = json.loads(runner.invoke(app, ["check", str(f), "--json"]).stdout)
    assert ev["bounds"]["unified"] == pytest.approx(want.unified, rel=1e-12)
    assert "generation cap" in ev["horizon"]
    assert ck["steps"][0]["unified"] == pytest.approx(want.unified, rel=1e-12)
    assert ck["steps"][0]["T"] == 64 and ck["steps"][0]["T_source"] == "logged cap"
    ev64 = runner.invoke(app, ["eval", "--stats", str(f), "--T", "64", "--json"])
    assert json.loads(ev64.stdout)["bounds"]["unified"] == pytest.approx(want.unified, rel=1e-12)


def test_interval_statistics_files_refute_only_with_their_lower_ends(tmp_path):
    # trmbounds measure --rollouts writes kl_max / tv_max as maxima of certified UPPER
    # ends and the certified lower ends under meta.intervals (measure/aggregation.py).
    # An independent review found check refuting --kl-max 0.5 with the upper ends 1.256 /
    # 0.7925 while the exact maxima were 0.238 / 0.261 (lower ends 0.130 / 0.144).
    def write(kl_lo, tv_lo):
        f = tmp_path / f"iv{kl_lo}.json"
        f.write_text(json.dumps({
            "T": 6, "kl_max": 1.256, "tv_max": 0.7925,
            "status": {"kl_max": "empirical", "tv_max": "empirical"},
            "meta": {"interval_ends": {"kl_max": "upper: max of kl_hi", "tv_max": "upper"},
                     "intervals": {"kl_max_lower": kl_lo, "tv_max_lower": tv_lo}},
        }))  # fmt: skip
        return f

    r = check_log(write(0.130, 0.144), assumption=Assumption(kl_max=0.5), length="6")
    assert STATES[r.state[0]] != "refuted"
    assert r.stats["kl_lower_bound"].values[0] == 0.130
    # a certified lower end above the assumption does refute: 0.6 > 0.5
    r = check_log(write(0.6, 0.144), assumption=Assumption(kl_max=0.5), length="6")
    assert STATES[r.state[0]] == "refuted" and "0.6" in r.refuted_by(0)


def test_grouped_responses_are_averaged_per_group(tmp_path):
    # 4 one-token sequences, rewards 1, rho - 1 = (0.2, 0, -0.2, 0), groups (1, 1, 2, 2):
    # per group means (0.1, -0.1): L = 0, se = sd / sqrt(2) = 0.141421 / 1.414214 = 0.1;
    # as 4 independent sequences: sd = sqrt(0.08 / 3) = 0.163299, se = 0.081650
    lr = [[math.log(0.5)]] * 4
    lt = [[math.log(0.5 * 1.2)], [math.log(0.5)], [math.log(0.5 * 0.8)], [math.log(0.5)]]
    cols = {"inference_logprobs": lr, "trainer_logprobs": lt, "reward": [1.0] * 4,
            "prompt": [1.0, 1.0, 2.0, 2.0]}  # fmt: skip
    p = tmp_path / "g.parquet"
    pq.write_table(pa.table(cols), p)
    a = Assumption(kl_max=0.1)
    g = check_log(p, assumption=a, length="1", maps={"group": "prompt"})
    lo, hi = g.stats["surrogate"].ci
    assert g.stats["surrogate"].values[0] == pytest.approx(0.0, abs=1e-12)
    assert hi[0] == pytest.approx(1.959964 * 0.1, rel=1e-5)
    i = check_log(p, assumption=a, length="1")
    assert i.stats["surrogate"].ci[1][0] == pytest.approx(1.959964 * 0.081650, rel=1e-4)
    assert any("independent" in n for n in i.notes)


def test_grouped_sampling_keeps_the_lower_bound_valid():
    # T = 2: the first token is the "prompt" (both policies 1/2, 1/2); on prompt 0 the
    # second token gains (rho - 1 = +0.2 on the rewarded token), on prompt 1 it loses
    # (-0.2): X in {0.2, 0} or {-0.2, 0}, exact L = 0. With G responses per prompt the
    # per-sequence bound exceeds L far more often than 5 % (an independent review:
    # 0.18 at G = 64, n = 16,000); averaged per group it does not.
    from trmbounds.logs import tokens as TK

    a, T = Assumption(kl_max=0.1), 2.0
    o = TK._Options(0.05, 0.001, None, None, a, T)
    rng = np.random.default_rng(0)
    reps, n, G = 200, 16000, 64
    over = {"grouped": 0, "per sequence": 0}
    for _ in range(reps):
        prompt = np.repeat(rng.integers(0, 2, n // G), G)
        y2 = rng.integers(0, 2, n)
        s = np.where(y2 == 0, np.where(prompt == 0, 0.2, -0.2), 0.0)  # sum_t (rho_t - 1)
        for key, grp in (("grouped", np.repeat(np.arange(n // G), G).astype(float)),
                         ("per sequence", None)):  # fmt: skip
            accs = {}
            TK._add_surrogate(o, accs, np.zeros(n), s, np.ones(n), grp)
            _, _, _, zbar, zvar, nn = TK._surrogate_moments(list(accs.values()), grp is not None)
            over[key] += float(TK._surrogate_lcb(zbar, zvar, nn, a, T)[0]) > 0.0
    assert over["grouped"] <= 0.05 * reps + 3 * math.sqrt(0.05 * 0.95 * reps)
    assert over["per sequence"] >= 0.08 * reps  # the failure the group column avoids


def test_fully_masked_sequences_count_as_zero_in_the_surrogate(tmp_path):
    # the masked surrogate is normalised by the whole batch (the paper): A: sum (rho - 1)
    # = 0.8 with reward 1; B: 0; C, D: every token masked -> L = (0.8 + 0 + 0 + 0) / 4
    rows = [
        {"inference_logprobs": [math.log(0.5), math.log(0.25)],
         "trainer_logprobs": [math.log(0.4), math.log(0.5)], "loss_mask": [1, 1], "reward": 1.0},
        {"inference_logprobs": [math.log(0.5)], "trainer_logprobs": [math.log(0.5)],
         "loss_mask": [1], "reward": 1.0},
        {"inference_logprobs": [-1.0], "trainer_logprobs": [-3.0], "loss_mask": [0], "reward": 1.0},
        {"inference_logprobs": [-1.0], "trainer_logprobs": [-2.0], "loss_mask": [0], "reward": 0.0},
    ]  # fmt: skip
    p = tmp_path / "m.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    r = check_log(p, assumption=Assumption(kl_max=0.2), length="2")
    assert r.stats["surrogate"].values[0] == pytest.approx(0.2)
    assert any("without response tokens" in n for n in r.notes)


def test_surrogate_lower_bound_with_negative_rewards_and_missing_mass(tmp_path):
    # theta = roll: L = 0 exactly. Rewards in [-1, 1], assumed m = 0.1: L = E[X] - r_min m
    # with r_min < 0 is at least E[X]: no term may be added (the review found +0.0999)
    rows = [{"inference_logprobs": [math.log(0.5)], "trainer_logprobs": [math.log(0.5)],
             "reward": float(v)} for v in np.resize([-1.0, 0.5, 1.0], 300)]  # fmt: skip
    p = tmp_path / "n.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    a = Assumption(kl_max=0.1, reward_range=(-1.0, 1.0), missing_mass=0.1)
    r = check_log(p, assumption=a, length="1")
    assert r.stats["surrogate_lcb"].values[0] <= 0.0


def _verl_rows(spec):
    return "".join(
        json.dumps({"step": i + 1, "data": {"response_length/max": mx,
                    "response_length/clip_ratio": clip, "rollout_corr/k3_kl": 1e-6,
                    "response_length/mean": mx / 2}}) + "\n"
        for i, (mx, clip) in enumerate(spec)
    )  # fmt: skip


def test_a_cap_shown_at_some_steps_is_the_horizon_of_the_run(tmp_path):
    # verl: clip_ratio > 0 at steps 1 and 3 shows the cap 1024; steps 2 and 4 had no cut
    # response (max 900): the cap is the run's setting, so T = 1024 there too
    p = tmp_path / "v.jsonl"
    p.write_text(_verl_rows([(1024, 0.1), (900, 0.0), (1024, 0.2), (900, 0.0)]))
    r = check_log(p, assumption=Assumption(kl_max=1e-5))
    assert list(r.T) == [1024] * 4 and set(r.T_source) == {"logged cap"}
    assert r.basis == "assumed"
    want = evaluate(Stats(T=1024, kl_max=1e-5)).unified
    np.testing.assert_allclose(r.bound, want, rtol=1e-12)
    assert any("generation cap 1,024" in n for n in r.notes)
    # a --length below a logged response is wrong there: said, and that length used
    r = check_log(p, assumption=Assumption(kl_max=1e-5), length="1000")
    assert list(r.T) == [1024, 1000, 1024, 1000]
    assert any("--length 1000 is below the longest response" in n for n in r.notes)
    assert r.summary()["length"] == 1000


def test_the_estimate_never_uses_a_delta_the_log_refutes(tmp_path):
    # no assumption: delta is estimated by the k2 detector, but a certified eps >= 0.04
    # forces delta >= 2 eps^2 = 0.0032 (Pinsker): the estimate uses the larger
    p = tmp_path / "d.jsonl"
    p.write_text(json.dumps({"step": 1, "data": {"response_length/max": 64,
        "rollout_corr/rollout_rs_seq_max_k2_max": 0.001, "training/rollout_probs_diff_max": 0.04,
        "rollout_corr/k3_kl": 1e-5, "response_length/mean": 32}}) + "\n")  # fmt: skip
    est = check_log(p, length="64").bound_est[0]
    same = check_log(p, length="64", assumption=Assumption(kl_max=2 * 0.04**2)).bound_est[0]
    assert est == pytest.approx(same, rel=1e-12)
