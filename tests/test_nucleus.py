"""The top-k / top-p threshold search (trmbounds._nucleus) against a full sort.

Expected sets come from an independent reference: a numpy sort of the whole row in
float64 and the definition (keep a token iff the mass of the tokens ranked above it is
below top_p; ties with the last kept token kept). Row families: flat (most tokens
share the mass), language-model-like (a few tokens hold it), one or a few heavy tokens
on a flat tail, a slope over the vocabulary, rows with -inf logits, rows spanning more
than TOP_P_RANGE nats.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import trmbounds._nucleus as nucleus  # noqa: E402
from trmbounds.trm import token_divergences, truncate_logits  # noqa: E402


def ref_keep(x: np.ndarray, top_k: int = 0, top_p: float = 1.0) -> np.ndarray:
    """Kept set of one float64 row by a full sort (ties with the last kept token kept)."""
    x = np.asarray(x, np.float64)
    keep = np.isfinite(x) | (x == np.inf)
    if top_k:
        kth = np.sort(x)[::-1][top_k - 1]
        keep &= x >= kth
    if top_p < 1:
        vals = np.sort(x[keep])[::-1]
        p = np.exp(vals - vals[0])
        p /= p.sum()
        above = np.cumsum(p) - p
        j = max(int(np.count_nonzero(above < top_p)), 1)
        keep &= x >= vals[j - 1]
    return keep


def families(V: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    flat = rng.normal(0, 3, size=V)
    lm = flat.copy()
    lm[rng.choice(V, 20, replace=False)] += 20.0
    heavy = flat.copy()
    heavy[rng.integers(V)] += 12.0
    spread = flat.copy()
    spread[:: max(1, V // 30)] += 9.0
    sloped = rng.normal(0, 2, size=V) - np.arange(V) * (15.0 / V)
    neg_inf = flat.copy()
    neg_inf[rng.choice(V, V // 10, replace=False)] = -np.inf
    wide = rng.normal(0, 20, size=V)  # spans far more than TOP_P_RANGE nats
    return {
        "flat": flat,
        "lm": lm,
        "heavy": heavy,
        "spread": spread,
        "sloped": sloped,
        "neg_inf": neg_inf,
        "wide": wide,
    }


@pytest.mark.parametrize("V", [50, 3000, 60000])
@pytest.mark.parametrize("top_p", [0.3, 0.9, 0.95, 0.999])
def test_cpu_search_equals_full_sort_float64(V, top_p):
    """float64 rows: exactly the reference set, for every family and size (the bracket,
    its widened form and the whole-row fallback are all reached across these)."""
    for name, x in families(V, seed=V).items():
        cut = nucleus.cpu_cut(torch.tensor(x), 0, top_p)
        want = ref_keep(x, 0, top_p)
        got = x >= cut.t
        assert (got == want).all(), (name, int(got.sum()), int(want.sum()))
        # the cut's mass is the kept set's sum of exp(x - max)
        m = x.max()
        np.testing.assert_allclose(cut.mass, np.exp(x[want] - m).sum(), rtol=1e-12)
        if cut.idx is not None:
            assert (cut.idx == np.flatnonzero(want)).all()


@pytest.mark.parametrize("shift", [5.0, -2.0, 0.0])
def test_misleading_subsample_still_gives_the_exact_set(monkeypatch, shift):
    """Tokens at the subsample's stride shifted up (the tail estimate too high: the
    first bracket misses, the bracket open to the top holds the threshold) or down
    (too low: the bracket misses and the whole row is ranked): the set stays exact."""
    S = nucleus.SUBSAMPLE
    calls = []
    rank = nucleus._rank

    def spy(xn, cidx, *args, **kw):
        out = rank(xn, cidx, *args, **kw)
        calls.append((cidx.size, out is None))
        return out

    monkeypatch.setattr(nucleus, "_rank", spy)
    rng = np.random.default_rng(7)
    for top_p in (0.5, 0.9, 0.95, 0.99):
        x = rng.normal(0, 3, size=60000)
        x[::S] += shift
        cut = nucleus.cpu_cut(torch.tensor(x), 0, top_p)
        assert ((x >= cut.t) == ref_keep(x, 0, top_p)).all(), top_p
    missed = [m for _, m in calls]
    if shift > 0:  # the first bracket missed; the bracket open to the top found it
        assert any(missed) and not any(n == x.size for n, _ in calls)
    if shift < 0:  # a miss, then the whole row
        assert any(missed) and any(n == x.size for n, _ in calls)


def test_float32_rows_meet_the_definition_to_rounding():
    """float32 rows (what a model gives): the kept set {x >= t} satisfies the definition
    up to float32 rounding of the row's mass: mass strictly above t < top_p <= mass
    from t up, each within 1e-6."""
    for name, x in families(151936, seed=9).items():
        x32 = torch.tensor(x, dtype=torch.float32)
        xd = x32.double().numpy()
        fin = np.isfinite(xd)
        p = np.zeros_like(xd)
        p[fin] = np.exp(xd[fin] - xd.max())
        p /= p.sum()
        for top_p in (0.5, 0.95, 0.999):
            t = nucleus.cpu_cut(x32, 0, top_p).t
            above, incl = p[xd > t].sum(), p[xd >= t].sum()
            assert above < top_p + 1e-6 and incl >= top_p - 1e-6, (name, top_p, above, incl)


@pytest.mark.parametrize("top_k,top_p", [(1, 1.0), (7, 1.0), (500, 1.0), (40, 0.8), (500, 0.9)])
def test_top_k_then_top_p(top_k, top_p):
    """Top-k (ties at the k-th value kept) then top-p of the renormalised top-k set."""
    for name, x in families(20000, seed=3).items():
        x = x.copy()
        order = np.argsort(-np.where(np.isfinite(x), x, -1e300))
        x[order[top_k]] = x[order[top_k - 1]]  # a tie at the k-th value
        cut = nucleus.cpu_cut(torch.tensor(x), top_k, top_p)
        assert ((x >= cut.t) == ref_keep(x, top_k, top_p)).all(), name


def test_sampler_and_kernel_use_one_kept_set():
    """truncate_logits (the sampler) keeps exactly the set the kernel measures: with
    the sampled token inside that set, no token is forced in."""
    rng = np.random.default_rng(4)
    x = torch.tensor(rng.normal(0, 3, size=(6, 40000)), dtype=torch.float32)
    y = x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    for top_k, top_p in ((0, 0.9), (50, 1.0), (300, 0.7)):
        kept = torch.isfinite(truncate_logits(x, top_k, top_p))
        tok = torch.tensor([int(np.flatnonzero(kept[i].numpy())[-1]) for i in range(6)])
        d = token_divergences(x, y, tok, top_k=top_k, top_p=top_p)
        assert not bool(d.forced.any())
        # and the missing mass is the training mass outside that set
        q = torch.softmax(y.double(), -1)
        np.testing.assert_allclose(
            d.missing_mass.numpy(), (q * ~kept).sum(-1).numpy(), rtol=1e-5, atol=1e-9
        )


def test_non_finite_rows_go_to_the_torch_search():
    """A row whose maximum is NaN or +inf has no cut on CPU (the caller's NaN rule
    applies); an all -inf row likewise."""
    for bad in (math.nan, math.inf):
        x = torch.zeros(10)
        x[3] = bad
        assert nucleus.cpu_cut(x, 0, 0.9) is None
    assert nucleus.cpu_cut(torch.full((10,), -math.inf), 0, 0.9) is None
    d = token_divergences(
        torch.tensor([[0.0, math.nan, 1.0], [0.0, 1.0, 2.0]]), torch.zeros(2, 3), top_p=0.9
    )
    assert math.isnan(float(d.kl[0])) and math.isfinite(float(d.kl[1]))


@pytest.mark.parametrize("route", ["kept", "masked", "torch"])
def test_kernel_routes_on_every_family(monkeypatch, route):
    """KL, TV, missing mass and the sampled token's log-probs of the truncated kernel,
    float64, on every family (including -inf rollout logits and rows wider than
    TOP_P_RANGE), through each route, against the definitions over the reference set."""
    import trmbounds.trm as trm

    monkeypatch.setattr(trm, "MASKED_FRACTION", 0.0 if route == "masked" else 2.0)
    monkeypatch.setattr(nucleus, "CPU_SEARCH", route != "torch")
    rng = np.random.default_rng(11)
    fam = families(3000, seed=12)
    x = np.stack(list(fam.values()))
    y = np.where(np.isfinite(x), x, 0.0) + rng.normal(0, 0.5, size=x.shape)
    for top_k, top_p in ((0, 0.9), (0, 0.999), (100, 0.95)):
        keep = np.stack([ref_keep(r, top_k, top_p) for r in x])
        tok = np.array([rng.choice(np.flatnonzero(k)) for k in keep])
        d = token_divergences(
            torch.tensor(x), torch.tensor(y), torch.tensor(tok), top_k=top_k, top_p=top_p
        )
        for i, name in enumerate(fam):
            p = np.where(keep[i], np.exp(np.where(keep[i], x[i], 0) - x[i].max()), 0.0)
            p /= p.sum()
            q = np.exp(y[i] - y[i].max())
            q /= q.sum()
            s = p > 0
            kl = float(np.sum(p[s] * np.log(p[s] / q[s])))
            want = (kl, 0.5 * np.abs(p - q).sum(), q[~s].sum())
            got = (float(d.kl[i]), float(d.tv[i]), float(d.missing_mass[i]))
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-13, err_msg=name)
            np.testing.assert_allclose(float(d.logp_roll[i]), np.log(p[tok[i]]), rtol=1e-9)
            np.testing.assert_allclose(float(d.logp_theta[i]), np.log(q[tok[i]]), rtol=1e-9)


# ------------------------------------------------------- review regressions
def test_truncated_kernel_without_tokens():
    """No sampled tokens: KL, TV and missing mass only (every CPU route)."""
    rng = np.random.default_rng(20)
    x = rng.normal(0, 2, size=(3, 400))
    y = x + rng.normal(0, 0.3, size=x.shape)
    for kw in ({"top_p": 0.9}, {"top_k": 5}, {"top_k": 50, "top_p": 0.5}):
        d = token_divergences(torch.tensor(x), torch.tensor(y), **kw)
        assert d.logp_roll is None and d.logp_theta is None and d.forced is None
        for i in range(3):
            keep = ref_keep(x[i], kw.get("top_k", 0), kw.get("top_p", 1.0))
            p = np.where(keep, np.exp(x[i] - x[i].max()), 0.0)
            p /= p.sum()
            q = np.exp(y[i] - y[i].max())
            q /= q.sum()
            kl = float(np.sum(p[keep] * np.log(p[keep] / q[keep])))
            np.testing.assert_allclose(float(d.kl[i]), kl, rtol=1e-9)
            np.testing.assert_allclose(float(d.missing_mass[i]), q[~keep].sum(), rtol=1e-9)


@pytest.mark.parametrize("V", [64, 1000, 5000, 32000])
def test_ties_at_the_maximum(V):
    """A row tied at its maximum over much of the vocabulary (the subsample's bracket
    collapses): ties with the last kept token are kept."""
    for x in (np.zeros(V), np.where(np.arange(V) < V // 2, 1.0, 0.0)):
        for top_p in (0.1, 0.5, 0.9):
            want = ref_keep(x, 0, top_p)
            for dtype in (torch.float32, torch.float64):
                t = torch.tensor(x, dtype=dtype)[None]
                assert (torch.isfinite(truncate_logits(t, 0, top_p))[0].numpy() == want).all()
                d = token_divergences(t, t, torch.tensor([0]), top_p=top_p)
                q = np.exp(x - x.max())
                q /= q.sum()
                kept = q[want].sum()  # p = q restricted to the kept set, renormalised
                # the kept mass is a sum over up to V probabilities in ``dtype``: its rounding
                # error is at most about V·eps relative (a recursive sum's worst case, which
                # also covers the pairwise/blocked sums a CPU kernel may use); a few V·eps
                tol = 4 * V * torch.finfo(dtype).eps
                assert float(d.kl[0]) == pytest.approx(-math.log(kept), rel=tol, abs=tol)
                assert float(d.missing_mass[0]) == pytest.approx(1 - kept, rel=tol, abs=tol)


def test_top_k_at_least_the_vocabulary_truncates_nothing():
    """top_k >= V is no truncation, in the kernel as in the sampler: nothing forced,
    no missing mass, KL 0 for identical inputs."""
    x = torch.tensor([[0.0, 1.0, 2.0, -25.0]])
    y = torch.tensor([[0.0, 1.0, 2.0, 30.0]])
    for k in (4, 5, 100):
        d = token_divergences(x, y, torch.tensor([3]), top_k=k)
        assert not bool(d.forced[0]) and float(d.missing_mass[0]) == 0.0
        assert bool(torch.isfinite(truncate_logits(x, k)).all())
    z = torch.tensor(np.random.default_rng(0).normal(0, 10, size=(2, 1000)), dtype=torch.float32)
    d = token_divergences(z, z.clone(), top_k=1000)
    assert float(d.kl.abs().max()) == 0.0 and float(d.missing_mass.max()) == 0.0


def test_truncate_logits_on_grad_and_empty_tensors():
    x = torch.randn(2, 100, requires_grad=True)
    out = truncate_logits(x, top_p=0.9)
    want = np.stack([ref_keep(r, 0, 0.9) for r in x.detach().double().numpy()])
    assert (torch.isfinite(out).numpy() == want).all()
    assert truncate_logits(torch.zeros(2, 0), top_p=0.9).shape == (2, 0)


def test_tv_is_at_least_the_missing_mass():
    """TV = sum (q - p)+ >= the q-mass where p = 0, also after float32 rounding."""
    rng = np.random.default_rng(8)
    x = torch.tensor(rng.normal(0, 3, size=(20, 30000)), dtype=torch.bfloat16)
    y = (x.float() + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).to(
        torch.bfloat16
    )
    d = token_divergences(x, y, top_p=0.9)
    assert bool((d.tv >= d.missing_mass).all())
