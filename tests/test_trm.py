"""TRM masks, proxies, surrogate and exact token divergences (trmbounds.trm).

Every expected value comes from a plain numpy reference written here (loops over
sequences and tokens, the definitions of SPEC §2 and §4), from exact enumeration over
a small vocabulary, or from a closed form.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trmbounds.errors import TrmboundsError
from trmbounds.trm import (
    acceptance_probability,
    k1,
    k2,
    k3,
    ln_trm_mask,
    ln_trm_weights,
    log_ppl_gap,
    masked_surrogate,
    ser_mask,
    token_divergences,
    trm_avg_mask,
    trm_combined_mask,
    trm_max_mask,
    truncate_logits,
)

torch = pytest.importorskip("torch")


# ------------------------------------------------------------------ references
def ref_softmax(x):
    """Plain softmax of one row, in float64."""
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max())
    return e / e.sum()


def ref_truncate(x, top_k=0, top_p=1.0):
    """The support kept by temperature-free HF top-k then top-p, as a boolean row.

    Written from the definitions: top-k keeps tokens whose logit is >= the k-th
    largest; top-p keeps the most likely tokens, in decreasing order, until their
    probability first reaches top_p (ties broken arbitrarily; tests avoid ties).
    """
    x = np.asarray(x, dtype=np.float64)
    keep = np.ones(x.size, dtype=bool)
    if top_k:
        kth = sorted(x, reverse=True)[top_k - 1]
        keep &= x >= kth
    if top_p < 1:
        p = ref_softmax(np.where(keep, x, -np.inf))
        order = np.argsort(-p)
        acc, chosen = 0.0, np.zeros(x.size, dtype=bool)
        for v in order:
            chosen[v] = True
            acc += p[v]
            if acc >= top_p:
                break
        keep &= chosen
    return keep


def ref_divergences(xr, xt, top_k=0, top_p=1.0, temperature=1.0, tokens=None):
    """KL(roll||theta), TV, missing mass per row by the definitions of SPEC §2/§5.3.

    ``tokens``: a sampled token per row, kept in the rollout support.
    """
    xr = np.atleast_2d(np.asarray(xr, np.float64)) / temperature
    xt = np.atleast_2d(np.asarray(xt, np.float64)) / temperature
    kl, tv, mm = [], [], []
    for i, (a, b) in enumerate(zip(xr, xt, strict=True)):
        keep = ref_truncate(a, top_k, top_p)
        if tokens is not None:
            keep[tokens[i]] = True
        p = ref_softmax(np.where(keep, a, -np.inf))
        q = ref_softmax(b)
        kl.append(sum(p[v] * math.log(p[v] / q[v]) for v in range(a.size) if p[v] > 0))
        tv.append(0.5 * sum(abs(p[v] - q[v]) for v in range(a.size)))
        mm.append(sum(q[v] for v in range(a.size) if not keep[v]))
    return np.array(kl), np.array(tv), np.array(mm)


def ref_logp(xr, xt, token, top_k=0, top_p=1.0, temperature=1.0):
    """log p(token) under the truncated rollout distribution (token kept in), float64."""
    a = np.asarray(xr, np.float64) / temperature
    keep = ref_truncate(a, top_k, top_p)
    keep[token] = True
    return math.log(ref_softmax(np.where(keep, a, -np.inf))[token])


def ref_seq_max(v, m):
    return [
        max([v[i][t] for t in range(len(v[i])) if m[i][t]], default=-np.inf) for i in range(len(v))
    ]


def ref_seq_mean(v, m):
    out = []
    for i in range(len(v)):
        xs = [v[i][t] for t in range(len(v[i])) if m[i][t]]
        out.append(sum(xs) / len(xs) if xs else 0.0)
    return out


def random_batch(rng, N=12, T=9, scale=0.1):
    lr = rng.normal(0, scale, size=(N, T))
    L = rng.integers(0, T + 1, size=N)  # lengths, 0 allowed
    m = np.arange(T)[None, :] < L[:, None]
    return lr, m


# ------------------------------------------------------------------ proxies
def test_proxies_closed_forms():
    lr = np.log(np.array([0.5, 1.0, 2.0, 3.0]))
    rho = np.array([0.5, 1.0, 2.0, 3.0])
    np.testing.assert_allclose(k1(lr), -np.log(rho), rtol=1e-15)
    np.testing.assert_allclose(k2(lr), 0.5 * np.log(rho) ** 2, rtol=1e-15)
    np.testing.assert_allclose(k3(lr), rho - 1 - np.log(rho), rtol=1e-12)
    # k3 is accurate near rho = 1, where rho - 1 - log rho ~ (log rho)^2 / 2
    assert k3(np.array(1e-9))[()] == pytest.approx(0.5e-18, rel=1e-6)


def test_proxies_unbiased_by_exact_enumeration():
    """E_{y~p}[k1] = E_{y~p}[k3] = KL(p||q): exact sums over a 5-token vocabulary."""
    rng = np.random.default_rng(0)
    p, q = rng.dirichlet(np.ones(5)), rng.dirichlet(np.ones(5))
    kl = float(np.sum(p * np.log(p / q)))
    lr = np.log(q / p)
    assert float(np.sum(p * k1(lr))) == pytest.approx(kl, rel=1e-12)
    assert float(np.sum(p * k3(lr))) == pytest.approx(kl, rel=1e-12)
    # and 0.5 |rho - 1| averages to the TV
    assert float(np.sum(p * 0.5 * np.abs(q / p - 1))) == pytest.approx(
        0.5 * np.abs(p - q).sum(), rel=1e-12
    )


def test_proxies_torch_match_numpy():
    lr = np.random.default_rng(1).normal(0, 0.3, size=(4, 6))
    t = torch.tensor(lr)
    for f in (k1, k2, k3):
        np.testing.assert_allclose(f(t).numpy(), f(lr), rtol=1e-12)


# ------------------------------------------------------------------ masks
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_masks_match_loop_reference(seed):
    rng = np.random.default_rng(seed)
    lr, m = random_batch(rng)
    kl = np.abs(rng.normal(0, 0.03, size=lr.shape))
    mx, av = ref_seq_max(kl, m), ref_seq_mean(kl, m)
    for thr in (0.0, 0.01, 0.03, 0.08):
        want = [x <= thr for x in mx]
        got = trm_max_mask(kl, thr, m)
        assert got.keep.tolist() == want
        assert got.acceptance == pytest.approx(sum(want) / len(want))
    for thr in (0.005, 0.02, 0.03):
        want = [x <= thr for x in av]
        assert trm_avg_mask(kl, thr, m).keep.tolist() == want
    want = [a <= 0.05 and b <= 0.02 for a, b in zip(mx, av, strict=True)]
    assert trm_combined_mask(kl, 0.05, 0.02, m).keep.tolist() == want
    # combined with a different statistic for the average criterion
    other = kl * 0.5
    av2 = ref_seq_mean(other, m)
    want = [a <= 0.05 and b <= 0.01 for a, b in zip(mx, av2, strict=True)]
    assert trm_combined_mask(kl, 0.05, 0.01, m, kl_avg=other).keep.tolist() == want
    # SER: mean |rho - 1|
    dev = np.abs(np.exp(lr) - 1)
    for thr in (0.03, 0.08, 0.2):
        want = [x <= thr for x in ref_seq_mean(dev, m)]
        assert ser_mask(lr, thr, m).keep.tolist() == want


def ref_ln_trm(lr, m, thr, eps, delta):
    keep = []
    for i in range(lr.shape[0]):
        L = int(m[i].sum())
        w = [min(1.0, (L - t) * eps, math.sqrt((L - t) * delta / 2)) for t in range(1, L + 1)]
        W = sum(abs(math.exp(lr[i, t - 1]) - 1) * w[t - 1] for t in range(1, L + 1))
        Z = sum(w)
        keep.append(True if Z == 0 else W / Z <= thr)
    return keep


@pytest.mark.parametrize("seed", [3, 4])
def test_ln_trm_matches_loop_reference(seed):
    rng = np.random.default_rng(seed)
    lr, m = random_batch(rng, scale=0.2)
    for thr in (0.05, 0.15, 0.3):
        want = ref_ln_trm(lr, m, thr, eps=0.02, delta=0.001)
        assert ln_trm_mask(lr, thr, 0.02, 0.001, m).keep.tolist() == want
        got_t = ln_trm_mask(torch.tensor(lr), thr, 0.02, 0.001, torch.tensor(m))
        assert got_t.keep.tolist() == want


def test_ln_trm_weights_definition():
    T, eps, delta = 7, 0.05, 0.004
    want = [min(1.0, (T - t) * eps, math.sqrt((T - t) * delta / 2)) for t in range(1, T + 1)]
    np.testing.assert_allclose(ln_trm_weights(T, eps, delta), want, rtol=1e-15)


def test_masks_torch_match_numpy_and_padding_is_ignored():
    rng = np.random.default_rng(5)
    lr, m = random_batch(rng)
    kl = np.abs(rng.normal(0, 0.03, size=lr.shape))
    kl_t, m_t = torch.tensor(kl), torch.tensor(m)
    for f, args in (
        (trm_max_mask, (0.03,)),
        (trm_avg_mask, (0.02,)),
        (lambda v, *a, mask=None: trm_combined_mask(v, *a, mask=mask), (0.05, 0.02)),
    ):
        a = f(kl, *args, mask=m)
        b = f(kl_t, *args, mask=m_t)
        assert b.keep.tolist() == a.keep.tolist() and b.acceptance == a.acceptance
    # garbage in padded positions changes nothing
    junk = np.where(m, kl, 1e6)
    assert trm_max_mask(junk, 0.03, m).keep.tolist() == trm_max_mask(kl, 0.03, m).keep.tolist()
    assert (
        ser_mask(np.where(m, lr, 50.0), 0.05, m).keep.tolist()
        == ser_mask(lr, 0.05, m).keep.tolist()
    )


def test_length_bias_closed_form():
    """P(accept) = (1 - p)^T for i.i.d. violations; checked by exact enumeration at T = 3."""
    p = 0.2
    # enumerate the 2^3 violation patterns: accept only the all-clear one
    exact = sum(
        (p ** sum(b)) * ((1 - p) ** (3 - sum(b))) for b in np.ndindex(2, 2, 2) if sum(b) == 0
    )
    assert acceptance_probability(p, 3) == pytest.approx(exact, rel=1e-14)
    np.testing.assert_allclose(
        acceptance_probability(np.array([0.0, 0.01]), np.array([[10], [100]])),
        [[1.0, 0.99**10], [1.0, 0.99**100]],
        rtol=1e-12,
    )


# ------------------------------------------------------------------ surrogate
def test_masked_surrogate_normalises_by_total_batch():
    rng = np.random.default_rng(6)
    lr, m = random_batch(rng, N=6, T=5)
    A = rng.normal(size=6)
    keep = np.array([True, False, True, True, False, True])
    want = (
        sum(
            A[i] * sum(math.exp(lr[i, t]) for t in range(5) if m[i, t]) for i in range(6) if keep[i]
        )
        / 6
    )  # N = 6, not the 4 accepted
    assert masked_surrogate(lr, A, keep, m) == pytest.approx(want, rel=1e-12)
    ntok = int(m.sum())
    assert masked_surrogate(lr, A, keep, m, normalize="tokens") == pytest.approx(
        want * 6 / ntok, rel=1e-12
    )
    # per-token advantages equal to the broadcast sequence advantage give the same value
    assert masked_surrogate(lr, np.repeat(A[:, None], 5, 1), keep, m) == pytest.approx(want)


def test_masked_surrogate_torch_gradient():
    """d L / d log rho_{i,t} = keep_i A_i rho_{i,t} / N (closed form)."""
    rng = np.random.default_rng(7)
    lr, m = random_batch(rng, N=5, T=4)
    A = rng.normal(size=5)
    keep = np.array([True, True, False, True, False])
    x = torch.tensor(lr, requires_grad=True)
    L = masked_surrogate(x, torch.tensor(A), torch.tensor(keep), torch.tensor(m))
    L.backward()
    want = keep[:, None] * A[:, None] * np.exp(lr) * m / 5
    np.testing.assert_allclose(x.grad.numpy(), want, rtol=1e-12)
    assert float(L.detach()) == pytest.approx(masked_surrogate(lr, A, keep, m), rel=1e-12)


def test_log_ppl_gap_reference():
    rng = np.random.default_rng(8)
    lt, m = random_batch(rng)
    lp = lt + rng.normal(0, 0.05, size=lt.shape)
    per = [abs(a - b) for a, b in zip(ref_seq_mean(lt, m), ref_seq_mean(lp, m), strict=True)]
    assert log_ppl_gap(lt, lp, m) == pytest.approx(sum(per) / len(per), rel=1e-12)


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("bad", [-0.1, float("nan"), "x"])
def test_bad_thresholds_raise(bad):
    kl = np.zeros((2, 3))
    with pytest.raises(TrmboundsError, match="threshold"):
        trm_max_mask(kl, bad)
    with pytest.raises(TrmboundsError, match="threshold"):
        ser_mask(kl, bad)


def test_bad_shapes_raise():
    with pytest.raises(TrmboundsError, match=r"shape \(N, T\)"):
        trm_max_mask(np.zeros(3), 0.1)
    with pytest.raises(TrmboundsError, match="mask shape"):
        trm_avg_mask(np.zeros((2, 3)), 0.1, mask=np.ones((2, 4), bool))
    with pytest.raises(TrmboundsError, match="keep must have shape"):
        masked_surrogate(np.zeros((2, 3)), [1.0, 1.0], [True])
    with pytest.raises(TrmboundsError, match="logits shapes differ"):
        token_divergences(np.zeros((2, 5)), np.zeros((2, 4)))
    with pytest.raises(TrmboundsError, match="top_p"):
        token_divergences(np.zeros((2, 5)), np.zeros((2, 5)), top_p=0)
    with pytest.raises(TrmboundsError, match="temperature"):
        token_divergences(np.zeros((2, 5)), np.zeros((2, 5)), temperature=0)
    with pytest.raises(TrmboundsError, match="tokens must be in"):
        token_divergences(np.zeros((2, 5)), np.zeros((2, 5)), tokens=[0, 5])


# ------------------------------------------------------------------ token divergences
def test_divergences_numpy_against_reference():
    rng = np.random.default_rng(9)
    xr = rng.normal(0, 2, size=(7, 11))
    xt = xr + rng.normal(0, 0.5, size=xr.shape)
    for kw in ({}, {"top_k": 3}, {"top_p": 0.8}, {"top_k": 5, "top_p": 0.7, "temperature": 0.7}):
        kl, tv, mm = ref_divergences(xr, xt, **kw)
        d = token_divergences(xr, xt, block_rows=3, **kw)
        np.testing.assert_allclose(d.kl, kl, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(d.tv, tv, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(d.missing_mass, mm, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("block_rows", [None, 1, 4])
def test_divergences_torch_float64_against_reference(block_rows):
    rng = np.random.default_rng(10)
    xr = rng.normal(0, 3, size=(3, 4, 50))
    xt = xr + rng.normal(0, 0.3, size=xr.shape)
    tok = rng.integers(0, 50, size=(3, 4))
    for kw in ({}, {"top_k": 10}, {"top_p": 0.9, "temperature": 1.3}):
        kl, tv, mm = ref_divergences(
            xr.reshape(-1, 50), xt.reshape(-1, 50), tokens=tok.ravel(), **kw
        )
        a, b = torch.tensor(xr), torch.tensor(xt)
        a0 = a.clone()
        d = token_divergences(a, b, torch.tensor(tok), block_rows=block_rows, **kw)
        assert torch.equal(a, a0)  # the caller's logits are never modified
        assert d.kl.shape == (3, 4) and d.kl.dtype == torch.float64
        np.testing.assert_allclose(d.kl.numpy().ravel(), kl, rtol=1e-9, atol=1e-13)
        np.testing.assert_allclose(d.tv.numpy().ravel(), tv, rtol=1e-9, atol=1e-13)
        np.testing.assert_allclose(d.missing_mass.numpy().ravel(), mm, rtol=1e-9, atol=1e-13)
        # the sampled token's log-probabilities (a token outside top-k is kept in the
        # support and reported as forced)
        for i, (r, t, y) in enumerate(
            zip(xr.reshape(-1, 50), xt.reshape(-1, 50), tok.ravel(), strict=True)
        ):
            temp = kw.get("temperature", 1.0)
            keep = ref_truncate(r / temp, kw.get("top_k", 0), kw.get("top_p", 1.0))
            forced = not keep[y]
            keep[y] = True
            p = ref_softmax(np.where(keep, r / temp, -np.inf))
            assert d.forced.numpy().ravel()[i] == forced
            assert d.logp_roll.numpy().ravel()[i] == pytest.approx(math.log(p[y]), rel=1e-9)
            assert d.logp_theta.numpy().ravel()[i] == pytest.approx(
                math.log(ref_softmax(t / temp)[y]), rel=1e-9
            )


def test_divergences_float32_and_bfloat16_inputs():
    """Working in float32 blocks: close to the float64 reference; bf16 logits are upcast
    per block (the reference uses the same bf16-rounded values)."""
    rng = np.random.default_rng(11)
    V = 3000
    xr = rng.normal(0, 3, size=(6, V))
    xt = xr + rng.normal(0, 0.05, size=xr.shape)
    a16 = torch.tensor(xr, dtype=torch.bfloat16)
    b16 = torch.tensor(xt, dtype=torch.bfloat16)
    kl, tv, _ = ref_divergences(a16.double().numpy(), b16.double().numpy())
    d = token_divergences(a16, b16, block_rows=2)
    assert d.kl.dtype == torch.float32
    np.testing.assert_allclose(d.kl.numpy(), kl, rtol=2e-4, atol=1e-8)
    np.testing.assert_allclose(d.tv.numpy(), tv, rtol=2e-4, atol=1e-7)
    d32 = token_divergences(
        torch.tensor(xr, dtype=torch.float32), torch.tensor(xt, dtype=torch.float32)
    )
    kl, tv, _ = ref_divergences(xr.astype(np.float32), xt.astype(np.float32))
    np.testing.assert_allclose(d32.kl.numpy(), kl, rtol=2e-4, atol=1e-8)
    np.testing.assert_allclose(d32.tv.numpy(), tv, rtol=2e-4, atol=1e-7)


def test_small_kl_is_resolved_in_float32():
    """A KL near 1e-7 (a tiny logit perturbation), against the float64 reference."""
    rng = np.random.default_rng(12)
    xr = rng.normal(0, 2, size=(8, 20000))
    xt = xr + rng.normal(0, 1e-3, size=xr.shape)
    a = torch.tensor(xr, dtype=torch.float32)
    b = torch.tensor(xt, dtype=torch.float32)
    kl, _, _ = ref_divergences(a.double().numpy(), b.double().numpy())
    assert kl.max() < 1e-6  # the regime this test is about
    d = token_divergences(a, b)
    np.testing.assert_allclose(d.kl.numpy(), kl, rtol=0.05)


def test_identical_logits_give_zero():
    x = torch.randn(3, 100, generator=torch.Generator().manual_seed(0))
    d = token_divergences(x, x.clone())
    assert float(d.kl.abs().max()) == 0.0 and float(d.tv.max()) < 1e-7


def test_truncate_logits_numpy_torch_and_reference_agree():
    rng = np.random.default_rng(13)
    x = rng.normal(0, 2, size=(5, 30))
    for k, p in ((0, 0.5), (4, 1.0), (8, 0.9)):
        want = np.array([ref_truncate(r, k, p) for r in x])
        assert (np.isfinite(truncate_logits(x, k, p)) == want).all()
        assert (torch.isfinite(truncate_logits(torch.tensor(x), k, p)).numpy() == want).all()


@settings(max_examples=40, deadline=None)
@given(
    st.integers(min_value=2, max_value=40),
    st.floats(min_value=0.01, max_value=5.0),
    st.integers(min_value=0, max_value=2**31 - 1),
)
def test_divergence_properties(V, scale, seed):
    """KL >= 0, TV in [0, 1], Pinsker TV <= sqrt(KL/2), TV = 0.5 sum |p - q|."""
    rng = np.random.default_rng(seed)
    xr = rng.normal(0, scale, size=(4, V))
    xt = rng.normal(0, scale, size=(4, V))
    for a, b in ((xr, xt), (torch.tensor(xr), torch.tensor(xt))):
        d = token_divergences(a, b)
        kl, tv = np.asarray(d.kl), np.asarray(d.tv)
        assert (kl >= 0).all() and (tv >= 0).all() and (tv <= 1 + 1e-12).all()
        assert (tv <= np.sqrt(kl / 2) + 1e-12).all()
        half_l1 = [
            0.5 * np.abs(ref_softmax(r) - ref_softmax(t)).sum() for r, t in zip(xr, xt, strict=True)
        ]
        np.testing.assert_allclose(tv, half_l1, rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("scale", [0.5, 4.0, 12.0, 40.0])
def test_fast_top_p_path_matches_definition(scale):
    """The binned threshold search (no sort of the vocabulary) keeps exactly the
    reference nucleus, on flat rows (scale 0.5: most tokens share a few bins), peaked
    rows, and rows spanning more than TOP_P_RANGE nats (the last bin collects them)."""
    rng = np.random.default_rng(14)
    x = rng.normal(0, scale, size=(4, 3000))
    x[3, :5] += 30.0  # a language-model-like row: a few tokens hold the mass
    for p in (0.5, 0.9, 0.99, 0.99999):
        want = np.array([ref_truncate(r, 0, p) for r in x])
        got = torch.isfinite(truncate_logits(torch.tensor(x), 0, p)).numpy()
        assert (got == want).all()


def test_caller_masked_rollout_logits_count_as_missing_support():
    """-inf rollout logits without truncation: the torch fast path redoes those rows with
    the support mask; values match the definition (support = finite logits)."""
    rng = np.random.default_rng(15)
    xr = rng.normal(0, 1, size=(5, 9))
    xr[1, [2, 5]] = -np.inf
    xr[3, 0] = -np.inf
    xt = rng.normal(0, 1, size=(5, 9))
    kl, tv, mm = [], [], []
    for a, b in zip(xr, xt, strict=True):
        p, q = ref_softmax(a), ref_softmax(b)
        kl.append(sum(p[v] * math.log(p[v] / q[v]) for v in range(9) if p[v] > 0))
        tv.append(0.5 * np.abs(p - q).sum())
        mm.append(q[~np.isfinite(a)].sum())
    for d in (token_divergences(torch.tensor(xr), torch.tensor(xt)), token_divergences(xr, xt)):
        np.testing.assert_allclose(np.asarray(d.kl), kl, rtol=1e-10)
        np.testing.assert_allclose(np.asarray(d.tv), tv, rtol=1e-10)
        np.testing.assert_allclose(np.asarray(d.missing_mass), mm, rtol=1e-10, atol=1e-16)


# ------------------------------------------------------------------ non-finite values
def test_kl_is_finite_when_both_policies_exclude_a_token():
    # p = (0.5, 0.5, 0), q = (0.25, 0.75, 0): the third token has -inf logits in both;
    # by hand KL = 0.5 log(0.5/0.25) + 0.5 log(0.5/0.75) + 0 = 0.5 log 2 + 0.5 log(2/3),
    # TV = 0.5 (0.25 + 0.25) = 0.25, missing mass (q outside supp p) = 0
    want = 0.5 * math.log(2) + 0.5 * math.log(2 / 3)
    with np.errstate(divide="ignore"):
        x, y = np.log([[0.5, 0.5, 0.0]]), np.log([[0.25, 0.75, 0.0]])
    for d in (
        token_divergences(x, y),
        token_divergences(torch.tensor(x), torch.tensor(y)),
        token_divergences(torch.tensor(x).float(), torch.tensor(y).float()),
        token_divergences(torch.tensor(x).float(), torch.tensor(y).float(), top_k=2),
    ):
        assert float(d.kl[0]) == pytest.approx(want, rel=1e-6)
        assert float(d.tv[0]) == pytest.approx(0.25, rel=1e-6)
        assert float(d.missing_mass[0]) == 0.0


def test_kl_is_infinite_when_only_the_training_policy_excludes_a_token():
    # q(2) = 0 < p(2): KL(p || q) = inf by definition
    with np.errstate(divide="ignore"):
        x, y = np.log([[0.5, 0.25, 0.25]]), np.log([[0.5, 0.5, 0.0]])
    for d in (token_divergences(x, y), token_divergences(torch.tensor(x), torch.tensor(y))):
        assert np.isposinf(float(d.kl[0]))


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_nan_or_plus_inf_rollout_logits_give_nan_in_numpy_and_torch(bad):
    # only -inf means "outside the support"; NaN / +inf are invalid logits and must
    # propagate (before, numpy treated them as excluded tokens and returned numbers)
    x, y = np.array([[0.0, bad, 1.0]]), np.array([[0.0, 0.0, 1.0]])
    for d in (token_divergences(x, y), token_divergences(torch.tensor(x), torch.tensor(y))):
        assert math.isnan(float(d.kl[0])) and math.isnan(float(d.tv[0]))


def test_non_finite_values_at_padding_never_change_a_mask():
    m = np.array([[1, 0]], bool)
    with np.errstate(over="ignore"):
        lr_pad = np.array([[0.0, 800.0]])  # k3(800) overflows to inf at the padding
    for lib in ("np", "torch"):
        conv = (lambda a: a) if lib == "np" else torch.tensor
        M = conv(m)
        for pad in (math.nan, math.inf, -math.inf):
            kl = conv(np.array([[0.0, pad]]))
            lr = conv(np.array([[0.0, pad]]))
            # the only real token has KL 0 and rho = 1: every criterion keeps it
            assert list(np.asarray(trm_max_mask(kl, 1e-3, M).keep)) == [True]
            assert list(np.asarray(trm_avg_mask(kl, 1e-3, M).keep)) == [True]
            assert list(np.asarray(trm_combined_mask(kl, 0.05, 1e-3, M).keep)) == [True]
            assert list(np.asarray(ser_mask(lr, 0.05, M).keep)) == [True]
            assert list(np.asarray(ln_trm_mask(lr, 0.05, 0.1, 0.02, M).keep)) == [True]
        lrp = conv(lr_pad)
        assert list(np.asarray(trm_avg_mask(k3(lrp), 1e-3, M).keep)) == [True]
        comb = trm_combined_mask(k2(lrp), 0.05, 1e-3, M, kl_avg=k3(lrp))
        assert list(np.asarray(comb.keep)) == [True] and comb.acceptance == 1.0


def test_masked_surrogate_ignores_non_finite_values_it_excludes():
    # by hand: only sequence 0 is kept, A = 1: (e^0.1 + e^0.2) / N with N = 2
    want = (math.exp(0.1) + math.exp(0.2)) / 2
    # a rejected sequence whose ratio overflows float32 (e^100) or is NaN
    lr = torch.tensor([[0.1, 0.2], [100.0, 0.0]], dtype=torch.float32, requires_grad=True)
    loss = masked_surrogate(lr, torch.tensor([1.0, 1.0]), torch.tensor([True, False]))
    assert loss.item() == pytest.approx(want, rel=1e-6)
    loss.backward()
    # d loss / d log rho = A rho / N on kept tokens, 0 elsewhere
    want_grad = [[math.exp(0.1) / 2, math.exp(0.2) / 2], [0.0, 0.0]]
    np.testing.assert_allclose(lr.grad.numpy(), want_grad, rtol=1e-6)
    assert masked_surrogate(
        np.array([[0.1, 0.2], [np.nan, 0.0]]), [1.0, 1.0], [True, False]
    ) == pytest.approx(want, rel=1e-12)
    # a non-finite per-token advantage or log-ratio at padding: 1 * e^0 / 1 = 1
    m = [[1, 0]]
    assert masked_surrogate(np.zeros((1, 2)), np.array([[1.0, np.inf]]), [True], m) == 1.0
    assert masked_surrogate(np.array([[0.0, np.nan]]), [1.0], [True], m) == 1.0
    lt = torch.tensor([[0.0, math.inf]], requires_grad=True)
    out = masked_surrogate(lt, torch.tensor([[1.0, math.nan]]), [True], torch.tensor(m))
    out.backward()
    assert out.item() == 1.0 and lt.grad.tolist() == [[1.0, 0.0]]


@pytest.mark.parametrize(
    "path",
    ["cpu-kept", "cpu-kept-search", "cpu-masked", "torch-near", "torch-bins"],
)
def test_top_p_kernel_paths_against_reference(monkeypatch, path):
    """Every route of the truncated kernel against the definition (ref_divergences), in
    float64: on CPU the kept-index path (indices from the threshold search, or found
    afterwards: SMALL_KEPT = 0) and the whole-row masked path (MASKED_FRACTION = 0);
    the torch search of other devices with its near-the-maximum and its binned path.
    A sampled token 60 nats below the maximum (row 5: too far for the masked path,
    which hands the row to the index path) and one 20 nats below (row 4) are forced
    into the kept set."""
    import trmbounds._nucleus as nucleus
    import trmbounds.trm as trm

    monkeypatch.setattr(nucleus, "CPU_SEARCH", path.startswith("cpu"))
    monkeypatch.setattr(nucleus, "TOP_P_NEAR_MAX", 0 if path == "torch-bins" else 4096)
    monkeypatch.setattr(nucleus, "SMALL_KEPT", 0 if path == "cpu-kept-search" else 4096)
    monkeypatch.setattr(trm, "MASKED_FRACTION", 0.0 if path == "cpu-masked" else 2.0)
    rng = np.random.default_rng(21)
    xr = rng.normal(0, 2, size=(6, 300))
    xr[5, 7] = xr[5].max() - 60.0  # far below: kept only when sampled (forced)
    xr[4, 9] = xr[4].max() - 20.0
    xt = xr + rng.normal(0, 0.3, size=xr.shape)
    tok = rng.integers(0, 300, size=6)
    tok[5], tok[4] = 7, 9
    for kw in (
        {"top_p": 0.9},
        {"top_p": 0.5, "temperature": 0.8},
        {"top_p": 0.99},
        {"top_k": 40},
        {"top_k": 40, "top_p": 0.8},
    ):
        kl, tv, mm = ref_divergences(xr, xt, tokens=tok, **kw)
        d = token_divergences(torch.tensor(xr), torch.tensor(xt), torch.tensor(tok), **kw)
        np.testing.assert_allclose(d.kl.numpy(), kl, rtol=1e-9, atol=1e-13)
        np.testing.assert_allclose(d.tv.numpy(), tv, rtol=1e-9, atol=1e-13)
        np.testing.assert_allclose(d.missing_mass.numpy(), mm, rtol=1e-9, atol=1e-13)
        assert bool(d.forced[5]) and bool(d.forced[4])
        lp_ref = [ref_logp(r, t, tok_i, **kw) for r, t, tok_i in zip(xr, xt, tok, strict=True)]
        np.testing.assert_allclose(d.logp_roll.numpy(), lp_ref, rtol=1e-9, atol=1e-12)
