"""``trmbounds measure`` and trmbounds.measure on tiny causal LMs built here (no download).

Models: a 2-layer Llama with a 64-token vocabulary and random weights, saved with
``save_pretrained`` (with a word-level tokenizer) so that ``--roll PATH`` works
offline. References: full-vocabulary divergences recomputed here from the models'
own ``model(...).logits`` (the standard forward, no cache, one sequence at a time)
with a plain numpy softmax; the identities E_roll[k1 | c] = E_roll[k3 | c] = KL(c)
and E_roll[½|ρ − 1| | c] = TV(c); hand-written numpy loops for the aggregation.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from tinymodel import tiny_llama
from typer.testing import CliRunner

from trmbounds.cli import app
from trmbounds.errors import InputFileError, TrmboundsError
from trmbounds.measure import (
    Records,
    aggregate,
    load_prompts,
    measure,
    normal_ci,
    parse_memory,
    sample_and_score,
)
from trmbounds.stats import Stats, evaluate, load_stats

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

V = 64
EOS = 3


def _tiny(seed: int = 0):
    return tiny_llama(seed)  # tests/tinymodel.py


def _tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = ["<pad>", "<unk>", "<s>", "</s>"] + [f"w{i}" for i in range(V - 4)]
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tk, pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )


@pytest.fixture(scope="module")
def models():
    return _tiny(0), _tiny(1)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, models):
    d = tmp_path_factory.mktemp("tiny-llama")
    models[0].save_pretrained(d)
    _tokenizer().save_pretrained(d)
    return d


PROMPTS = [[2, 5, 6, 7], [2, 9], [2, 10, 11, 12, 13, 14], [2, 20, 21]]


# ------------------------------------------------------------------ references
def _softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


def _reference_rows(model_r, model_t, prompt, response, top_k=0):
    """Exact KL, TV, missing mass per response token from full-forward logits."""
    ids = torch.tensor([list(prompt) + list(response)])
    with torch.no_grad():
        lr = model_r(ids).logits[0].double().numpy()
        lt = model_t(ids).logits[0].double().numpy()
    out = []
    for j, y in enumerate(response):
        a, b = lr[len(prompt) - 1 + j], lt[len(prompt) - 1 + j]
        keep = np.ones(V, bool)
        if top_k:
            keep = a >= np.sort(a)[::-1][top_k - 1]
            keep[y] = True
        p, q = _softmax(np.where(keep, a, -np.inf)), _softmax(b)
        kl = sum(p[v] * math.log(p[v] / q[v]) for v in range(V) if p[v] > 0)
        out.append((kl, 0.5 * np.abs(p - q).sum(), q[~keep].sum(), math.log(p[y]), math.log(q[y])))
    return np.array(out)


def _check_against_reference(rec, model_r, model_t, prompts, num_samples, top_k=0):
    for i in range(rec.n_sequences):
        prompt = prompts[rec.prompt_index[i]]
        ref = _reference_rows(model_r, model_t, prompt, rec.seq("tokens", i).tolist(), top_k)
        names = ("kl", "tv", "missing_mass", "logp_roll", "logp_theta")
        got = np.stack([rec.seq(k, i) for k in names], 1)
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=2e-6)


# ------------------------------------------------------------------ the measurement loop
def test_two_models_match_full_forward_reference(models):
    m0, m1 = models
    rec = sample_and_score(
        m0, m1, PROMPTS, num_samples=2, max_new_tokens=10, seed=3, batch_size=3, eos_ids={EOS}
    )
    assert rec.n_sequences == len(PROMPTS) * 2
    assert rec.prompt_index.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    _check_against_reference(rec, m0, m1, PROMPTS, 2)
    # EOS ends a response (or the cap of 10 tokens does)
    for i in range(rec.n_sequences):
        toks = rec.seq("tokens", i)
        assert (toks[:-1] != EOS).all()
        assert len(toks) == 10 or toks[-1] == EOS


def test_top_k_missing_mass_matches_reference(models):
    m0, m1 = models
    rec = sample_and_score(
        m0, m1, PROMPTS[:2], num_samples=2, max_new_tokens=6, top_k=5, seed=0, eos_ids={EOS}
    )
    assert rec.support_fixups == 0  # decode states are re-used: the support is the sampled one
    _check_against_reference(rec, m0, m1, PROMPTS[:2], 2, top_k=5)
    assert (rec.missing_mass > 0).all()


def test_bf16_vs_fp32_same_weights(models):
    """The backend-mismatch source: small but non-zero, and every per-token law holds."""
    m0 = models[0]
    m16 = _tiny(0).to(torch.bfloat16)
    rec = sample_and_score(
        m16, m0, PROMPTS, num_samples=3, max_new_tokens=12, seed=1, eos_ids={EOS}
    )
    kl, tv = rec.kl, rec.tv
    assert (kl >= 0).all() and (tv >= 0).all() and (tv <= 1).all()
    assert (tv <= np.sqrt(kl / 2) + 1e-7).all()  # Pinsker per token (float32 slack)
    assert 0 < kl.max() < 1e-3 and 0 < tv.max() < 0.05
    # fp32 vs the same fp32 weights: only the float32 rounding of decode (KV cache) vs
    # prefill remains, orders of magnitude below the bf16 mismatch
    rec0 = sample_and_score(m0, _tiny(0), PROMPTS[:2], num_samples=1, max_new_tokens=5, seed=1)
    assert rec0.kl.max() < 1e-7 < kl.max() and rec0.tv.max() < 1e-4


def test_sampled_token_estimators_agree_with_exact_values(models):
    """E_roll[k1|c] = E_roll[k3|c] = KL(c), E_roll[½|ρ−1| | c] = TV(c): along sampled
    paths, the per-sequence sums of (proxy − exact) have mean 0 within 4 standard errors."""
    m0, m1 = models
    rec = sample_and_score(
        m0, m1, PROMPTS, num_samples=16, max_new_tokens=8, seed=7, batch_size=16, eos_ids={EOS}
    )
    lr = rec.log_ratio
    proxies = {
        "k1": (-lr, rec.kl),
        "k3": (np.expm1(lr) - lr, rec.kl),
        "tv": (0.5 * np.abs(np.expm1(lr)), rec.tv),
    }
    for name, (est, exact) in proxies.items():
        diff = np.array([d.sum() for d in np.split(est - exact, rec.offsets[1:-1])])
        se = diff.std(ddof=1) / math.sqrt(diff.size)
        assert abs(diff.mean()) <= 4 * se, name
    # and the aggregated CIs of the file cover the exact-KL estimate for k3
    s = aggregate(rec)
    lo, hi = s.meta["proxies"]["k3_seq"]["ci95"]
    assert lo <= s.kl_seq * 1.5 and hi >= s.kl_seq / 1.5


def test_seeded_and_deterministic(models):
    m0, m1 = models
    kw = dict(num_samples=2, max_new_tokens=6, batch_size=4, eos_ids={EOS})
    a = sample_and_score(m0, m1, PROMPTS, seed=11, **kw)
    b = sample_and_score(m0, m1, PROMPTS, seed=11, **kw)
    c = sample_and_score(m0, m1, PROMPTS, seed=12, **kw)
    assert np.array_equal(a.tokens, b.tokens) and np.array_equal(a.kl, b.kl)
    assert not np.array_equal(a.tokens, c.tokens)


def test_chunked_lm_head_gives_the_same_numbers(models):
    m0, m1 = models
    kw = dict(num_samples=1, max_new_tokens=8, seed=5, eos_ids={EOS})
    big = sample_and_score(m0, m1, PROMPTS, max_memory="1GB", **kw)
    # kernel block (2**18 values * 4 bytes * 8) + sampler (batch 8 * V * 4 bytes * 4),
    # plus 3 rows of the two heads at 8 bytes per vocabulary entry
    budget = 2**18 * 32 + 8 * V * 16 + 3 * V * 8
    small = sample_and_score(m0, m1, PROMPTS, max_memory=budget, **kw)
    np.testing.assert_allclose(small.kl, big.kl, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(small.tv, big.tv, rtol=1e-5, atol=1e-9)
    with pytest.raises(TrmboundsError, match="too small"):
        sample_and_score(m0, m1, PROMPTS, max_memory="1MB", **kw)


def test_records_are_as_wide_as_the_longest_response_not_max_new_tokens(models):
    m0, m1 = models
    M = 400  # far above what these responses reach before EOS (seeded)
    rec = sample_and_score(
        m0, m1, PROMPTS, num_samples=2, max_new_tokens=M, batch_size=3, seed=2, eos_ids={EOS}
    )
    lengths = [len(rec.seq("tokens", i)) for i in range(rec.n_sequences)]
    assert rec.n_sequences == 8 and rec.max_length == max(lengths) < M
    for name in ("kl", "tv", "missing_mass", "logp_roll", "logp_theta", "tokens"):
        a = getattr(rec, name)
        assert a.shape == (sum(lengths),), name  # packed: one value per token
        # no view into a max_new_tokens-wide buffer is kept alive
        assert a.base is None or a.base.nbytes <= a.nbytes, name
    for i in range(rec.n_sequences):
        assert rec.seq("tokens", i)[-1] == EOS
    _check_against_reference(rec, m0, m1, PROMPTS, 2)


def test_top_k_at_least_the_vocabulary_is_not_truncation(models):
    m0, m1 = models
    kw = dict(prompts=PROMPTS[:2], num_samples=2, max_new_tokens=4, seed=0, device="cpu")
    full = measure(m0, m1, top_k=0, **kw)
    for k in (V, V + 10):
        m = measure(m0, m1, top_k=k, **kw)
        assert m.stats.missing_mass is None and "missing_mass" not in m.stats.status
        assert not any("full support" in w for w in m.warnings)
        assert np.array_equal(m.records.tokens, full.records.tokens)
        assert m.stats.kl_seq == full.stats.kl_seq
    cut = measure(m0, m1, top_k=V - 1, **kw)  # drops one token: truncated
    assert cut.stats.missing_mass is not None and any("full support" in w for w in cut.warnings)


def test_progress_is_called_per_batch(models):
    m0, m1 = models
    calls = []
    sample_and_score(
        m0,
        m1,
        PROMPTS,
        num_samples=1,
        max_new_tokens=2,
        batch_size=3,
        progress=lambda d, t: calls.append((d, t)),
    )
    assert calls == [(1, 2), (2, 2)]


# ------------------------------------------------------------------ aggregation
def _records():
    """Three hand-made responses of lengths 3, 1, 2 (T = 3)."""
    mask = np.array([[1, 1, 1], [1, 0, 0], [1, 1, 0]], bool)
    kl = np.array([[0.01, 0.02, 0.005], [0.04, 9, 9], [0.0, 0.001, 9]])
    tv = np.array([[0.05, 0.08, 0.03], [0.1, 9, 9], [0.0, 0.02, 9]])
    mm = np.array([[0.001, 0.0, 0.002], [0.01, 9, 9], [0.0, 0.003, 9]])
    lp_r = np.log([[0.5, 0.4, 0.9], [0.2, 1, 1], [0.7, 0.6, 1]])
    lp_t = np.log([[0.45, 0.5, 0.9], [0.25, 1, 1], [0.7, 0.5, 1]])
    return Records.from_padded(
        kl, tv, mm, lp_r, lp_t, mask, np.array([0, 0, 1]), np.zeros((3, 3), int)
    )


def test_records_are_packed_one_value_per_token():
    rec = _records()  # lengths 3, 1, 2 from a (3, 3) padded layout
    assert rec.offsets.tolist() == [0, 3, 4, 6] and rec.lengths.tolist() == [3, 1, 2]
    assert rec.kl.tolist() == [0.01, 0.02, 0.005, 0.04, 0.0, 0.001]  # padding (9) dropped
    assert rec.row.tolist() == [0, 0, 0, 1, 2, 2]
    assert rec.position.tolist() == [0, 1, 2, 0, 0, 1]
    assert rec.max_length == 3 and rec.n_tokens == 6 and rec.n_sequences == 3
    assert rec.seq("tv", 2).tolist() == [0.0, 0.02]
    assert rec.padded("tv", fill=-1).tolist() == [
        [0.05, 0.08, 0.03],
        [0.1, -1, -1],
        [0.0, 0.02, -1],
    ]
    with pytest.raises(TrmboundsError, match="come first"):
        Records.from_padded(kl=np.zeros((1, 2)), mask=np.array([[False, True]]))
    with pytest.raises(TrmboundsError, match="one value per token"):
        Records(*(np.zeros(3),) * 5, offsets=np.array([0, 2]), prompt_index=[0],
                tokens=np.zeros(2, int))  # fmt: skip
    with pytest.raises(TrmboundsError, match="never decrease"):
        Records(*(np.zeros(2),) * 5, offsets=np.array([0, 3, 2]), prompt_index=[0, 1],
                tokens=np.zeros(2, int))  # fmt: skip


def test_row_groups_pad_to_a_bounded_size():
    # 1,000 one-token responses and one of 5,000: padded together they were 1,001 x 5,000
    lengths = np.array([1] * 500 + [5000] + [1] * 500 + [7, 0, 3])
    rec = Records(
        *(np.zeros(int(lengths.sum())),) * 5,
        offsets=np.concatenate([[0], np.cumsum(lengths)]),
        prompt_index=np.arange(lengths.size),
        tokens=np.zeros(int(lengths.sum()), int),
    )
    groups = list(rec.row_groups(max_values=4096))
    assert sorted(int(i) for g in groups for i in g) == list(range(lengths.size))
    for g in groups:
        width = max(int(lengths[g].max()), 1)
        assert len(g) == 1 or len(g) * width <= 4096, (len(g), width)
        values, mask = rec.padded_rows(np.arange(rec.n_tokens, dtype=float), g)
        assert values.shape == (len(g), int(lengths[g].max()))
        for r, i in enumerate(g):  # each row holds its response's tokens, in order
            a, b = rec.offsets[i], rec.offsets[i + 1]
            assert values[r][mask[r]].tolist() == list(range(a, b))
    assert [500] in [g.tolist() for g in groups]  # the long response alone


def test_aggregate_by_hand():
    s = aggregate(_records(), trm_max=0.03, trm_avg=0.012, ser=0.15, truncated=True)
    assert s.T == 3
    assert s.kl_max == 0.04 and s.tv_max == 0.1  # padding (9) ignored
    seq_kl = [0.01 + 0.02 + 0.005, 0.04, 0.0 + 0.001]
    assert s.kl_seq == pytest.approx(sum(seq_kl) / 3, rel=1e-12)
    rho = [(0.45 / 0.5) * (0.5 / 0.4) * 1.0, 0.25 / 0.2, 1.0 * (0.5 / 0.6)]
    assert s.tv_seq == pytest.approx(sum(max(0.0, 1 - r) for r in rho) / 3, rel=1e-12)
    # D̄_t: finished responses contribute TV 0 after their end
    np.testing.assert_allclose(s.per_position, [(0.05 + 0.1 + 0) / 3, (0.08 + 0.02) / 3, 0.03 / 3])
    assert s.missing_mass == pytest.approx((0.003 + 0.01 + 0.003) / 3, rel=1e-12)
    assert s.status == {
        "kl_max": "empirical",
        "tv_max": "empirical",
        "kl_seq": "estimate",
        "tv_seq": "estimate",
        "per_position": "estimate",
        "missing_mass": "estimate",
    }
    sd = np.std(seq_kl, ddof=1)
    lo, hi = s.meta["ci95"]["kl_seq"]
    assert lo == pytest.approx(sum(seq_kl) / 3 - 1.959963984540054 * sd / math.sqrt(3))
    assert hi == pytest.approx(sum(seq_kl) / 3 + 1.959963984540054 * sd / math.sqrt(3))
    acc = s.meta["acceptance"]
    assert acc["trm_max"]["exact_kl"] == pytest.approx(2 / 3)  # 0.04 > 0.03 rejects seq 2
    assert acc["trm_avg"]["exact_kl"] == pytest.approx(2 / 3)  # means 0.01167, 0.04, 0.0005
    assert acc["combined"]["exact_kl"] == pytest.approx(2 / 3)
    # SER: mean |rho_t - 1| = (0.1+0.25+0)/3 = 0.1167, 0.25, (0+1/6)/2 = 0.0833 vs 0.15
    assert acc["ser"]["rate"] == pytest.approx(2 / 3)
    assert s.meta["argmax"]["kl_max"] == {"sequence": 1, "position": 1}
    # LN-TRM with the measured eps = 0.1, delta = 0.04: seq 1 has w = (0.2, 0.1, 0),
    # W = 0.1*0.2 + 0.25*0.1 = 0.045, Z = 0.3, W/Z = 0.15; seq 2 has Z = 0 (kept);
    # seq 3 has rho_1 = 1, so W = 0
    for thr, want in ((0.149, 2 / 3), (0.151, 1.0)):
        ln = aggregate(_records(), ln_trm=thr).meta["acceptance"]["ln_trm"]
        assert ln["rate"] == pytest.approx(want) and (ln["eps"], ln["delta"]) == (0.1, 0.04)
    assert "ln_trm" not in s.meta["acceptance"]


def test_aggregate_without_truncation_has_no_missing_mass_and_validates_thresholds():
    s = aggregate(_records())
    assert s.missing_mass is None and "missing_mass" not in s.status
    for bad in (-1, float("nan"), float("inf")):
        with pytest.raises(TrmboundsError, match="trm_max threshold"):
            aggregate(_records(), trm_max=bad)


def test_tv_seq_terms_are_bounded_and_never_overflow():
    # 100 responses of one token; response 0 has log rho = s, the others 0. The
    # estimate is (1/100) (1 - e^s)^+ (the identity TV = E_roll[(1 - rho)^+]): 0 for
    # s >= 0 however large (no overflow), (1 - e^-5) / 100 at s = -5, 1/100 at -inf
    def rec(s):
        N = 100
        lpt = np.zeros((N, 1))
        lpt[0, 0] = s
        z = np.zeros((N, 1))
        return Records.from_padded(
            np.full((N, 1), 1e-3), np.full((N, 1), 1e-2), z, z, lpt, np.ones((N, 1), bool),
            np.arange(N), np.zeros((N, 1), int),
        )  # fmt: skip

    assert aggregate(rec(-5.0)).tv_seq == pytest.approx((1 - math.exp(-5)) / 100, rel=1e-12)
    assert aggregate(rec(-math.inf)).tv_seq == pytest.approx(1 / 100, rel=1e-12)
    for s in (5.0, 709.0, 710.0, 1000.0, math.inf):
        st = aggregate(rec(s))
        assert st.tv_seq == 0.0, s
        lo, hi = st.meta["ci95"]["tv_seq"]
        assert 0.0 <= lo <= hi <= 1.0


def _tv_seq_coverage(pair, n, reps, rng):
    """Fraction of `reps` measurements of `n` responses whose tv_seq CI holds the exact
    D_TV^seq of the pair (enumerated), and the methods used."""
    truth = pair.exact().tv_seq
    hits, methods = 0, set()
    for _ in range(reps):
        toks, lr, lt = pair.sample(n, rng)
        ones = np.ones(lr.shape, bool)
        z = np.zeros(lr.shape)
        st = aggregate(Records.from_padded(z, z, z, lr, lt, ones, np.arange(n), toks))
        lo, hi = st.meta["ci95"]["tv_seq"]
        hits += lo <= truth <= hi
        methods.add(st.meta["ci_method_tv_seq"].split(":")[0].split(" ")[0])
    return hits / reps, truth, methods


@pytest.mark.parametrize(
    "V, T, mode, scale, seed",
    [
        (3, 8, "uniform", 0.01, 10),  # tiny mismatch, D_TV^seq ~ 0.01
        (4, 6, "concentrated", 0.05, 11),  # a few hot contexts, D_TV^seq ~ 0.03
        (3, 8, "uniform", 1.0, 12),  # heavy tail: chi^2 of the path ratio ~ 10
        (3, 8, "uniform", 5.0, 13),  # very heavy: chi^2 ~ 1e4, D_TV^seq ~ 0.99
    ],
)
def test_tv_seq_ci_covers_the_exact_value_on_tabular_policies(V, T, mode, scale, seed):
    # SPEC §6 ground truth: D_TV^seq by enumerating all V**T responses (tests/tabular.py).
    # The former estimator 0.5 |prod rho - 1| with a normal CI covered 0.55-0.75 of the
    # time in the heavy-tailed settings; the bounded one must cover >= 0.93 at N = 100.
    from tabular import random_pair

    rng = np.random.default_rng(seed)
    pair = random_pair(V, T, rng, mode=mode, scale=scale)
    cover, truth, methods = _tv_seq_coverage(pair, 100, 400, rng)
    assert cover >= 0.93, (cover, truth, methods)


def test_tv_seq_ci_is_wilson_closed_form():
    # 100 responses, one with a path ratio 0 (term 1), the others ratio 1 (term 0)
    N = 100
    lpt = np.zeros((N, 1))
    lpt[0, 0] = -math.inf
    z = np.zeros((N, 1))
    rec = Records.from_padded(
        z, z, z, z, lpt, np.ones((N, 1), bool), np.arange(N), np.zeros((N, 1), int)
    )
    st = aggregate(rec)
    assert st.meta["ci_method_tv_seq"].startswith("wilson")
    lo, hi = st.meta["ci95"]["tv_seq"]
    # Wilson score interval for 1 success in 100 (closed form, z = 1.959964)
    z2 = 1.959963984540054**2
    c = (0.01 + z2 / 200) / (1 + z2 / 100)
    h = 1.959963984540054 * math.sqrt(0.01 * 0.99 / 100 + z2 / 40000) / (1 + z2 / 100)
    assert (lo, hi) == pytest.approx((c - h, c + h), rel=1e-12)
    # D̄_1 is the same mean of [0, 1] values (TV 1 on one response): the same interval
    tv = np.zeros((N, 1))
    tv[0, 0] = 1.0
    st = aggregate(
        Records.from_padded(z, tv, z, z, z, np.ones((N, 1), bool), np.arange(N), z.astype(int))
    )
    assert st.meta["per_position_ci95"][0] == pytest.approx([c - h, c + h], rel=1e-12)


def _floor_pair(p, c, eta=1e-9):
    """T = 1, V = 3: pi_roll = (1 - p - eta, p, eta), pi_theta = ((1 - c)(1 - p - eta),
    1e-12, rest). The tv_seq terms are c on the common token (a constant floor) and
    ~1 on the rare one: D_TV^seq = c (1 - p - eta) + p (1 - 1e-12/p) exactly."""
    from tabular import TabularPair

    roll = np.array([[1 - p - eta, p, eta]])
    th = np.array([[(1 - c) * (1 - p - eta), 1e-12, 0.0]])
    th[0, 2] = 1 - th[0, :2].sum()
    return TabularPair([roll], [th])


@pytest.mark.parametrize("n, p, c", [(100, 0.01, 0.3), (300, 0.003, 0.3), (100, 0.01, 0.1)])
def test_tv_seq_ci_covers_a_floor_plus_a_rare_value(n, p, c):
    # Review finding: with n * min(m, 1 - m) >= 10 the former rule chose the normal
    # interval, whose width is set by the rare value alone (zero when no rare response
    # was drawn): it covered the exact value 42-65 % of the time. Ground truth by
    # enumeration (tests/tabular.py), checked against the closed form.
    pair = _floor_pair(p, c)
    ex = pair.exact()
    assert ex.tv_seq == pytest.approx(c * (1 - p - 1e-9) + (p - 1e-12), rel=1e-9)
    rng = np.random.default_rng(1)
    reps, hits = 400, 0
    for _ in range(reps):
        toks, lr, lt = pair.sample(n, rng)
        ones = np.ones(lr.shape, bool)
        z = np.zeros(lr.shape)
        lo, hi = aggregate(Records.from_padded(z, z, z, lr, lt, ones, np.arange(n), toks)).meta[
            "ci95"
        ]["tv_seq"]
        hits += lo <= ex.tv_seq <= hi
    assert hits / reps >= 0.93, hits / reps


@pytest.mark.parametrize("n, p, c", [(100, 0.01, 0.3), (300, 0.003, 0.1)])
def test_per_position_ci_covers_a_floor_plus_a_rare_value(n, p, c):
    # D̄_2 of a T = 2 pair: position 1 the same under both (roll (1 - p - eta, p, eta));
    # at t = 2 the context after the rare token has TV 0.98, the others TV c: D̄_2 =
    # c (1 - p) + 0.98 p, a floor plus a rare value (the former normal interval missed it)
    eta = 1e-9
    first = np.array([[1 - p - eta, p, eta]])
    r_row, t_row = np.array([0.5, 0.25, 0.25]), np.array([0.5 + c, 0.25 - c / 2, 0.25 - c / 2])
    r_hot, t_hot = np.array([0.98, 0.01, 0.01]), np.array([1e-12, 0.5, 0.5 - 1e-12])
    from tabular import TabularPair

    pair = TabularPair(
        [first, np.stack([r_row, r_hot, r_row])], [first, np.stack([t_row, t_hot, t_row])]
    )
    ex = pair.exact()
    assert ex.per_position[1] == pytest.approx(c * (1 - p) + (0.98 - 1e-12) * p, rel=1e-9)
    tv_row = np.array([c, 0.98 - 1e-12, c])  # TV of each t = 2 context, by hand
    rng = np.random.default_rng(2)
    reps, hits = 400, 0
    for _ in range(reps):
        toks, lr, lt = pair.sample(n, rng)
        tv = np.zeros(lr.shape)
        tv[:, 1] = tv_row[toks[:, 0]]
        z = np.zeros(lr.shape)
        st = aggregate(
            Records.from_padded(z, tv, z, lr, lt, np.ones(lr.shape, bool), np.arange(n), toks)
        )
        lo, hi = st.meta["per_position_ci95"][1]
        hits += lo <= ex.per_position[1] <= hi
    assert hits / reps >= 0.93, hits / reps


def test_normal_ci_closed_form():
    x = np.array([1.0, 3.0])  # mean 2, sd sqrt(2)
    m, lo, hi = normal_ci(x)
    assert (m, lo, hi) == pytest.approx((2, 2 - 1.959963984540054, 2 + 1.959963984540054))


# ------------------------------------------------------------------ inputs
def test_parse_memory():
    assert parse_memory("1.5GB") == 1_500_000_000 and parse_memory("64 MiB") == 64 * 2**20
    for bad in ("lots", "-1GB", "0", "12XB", "1e400", "nan", float("inf"), float("nan")):
        with pytest.raises(TrmboundsError, match="memory"):
            parse_memory(bad)


def test_load_prompts(tmp_path):
    t = tmp_path / "p.txt"
    t.write_text("first prompt\n\n second \n")
    assert load_prompts(t) == ["first prompt", " second "]
    j = tmp_path / "p.jsonl"
    j.write_text('{"prompt": "a"}\n"b"\n{"messages": [{"role": "user", "content": "c"}]}\n')
    assert load_prompts(j) == ["a", "b", [{"role": "user", "content": "c"}]]
    j.write_text('{"prompt": "a"}\n{"oops": 1}\n')
    with pytest.raises(InputFileError, match="line 2"):
        load_prompts(j)
    j.write_text('{"prompt": "a"}\n{not json\n')
    with pytest.raises(InputFileError, match="line 2: invalid JSON"):
        load_prompts(j)
    with pytest.raises(InputFileError, match="not found"):
        load_prompts(tmp_path / "missing.txt")
    assert len(load_prompts(None)) >= 4


def test_measure_library_with_paths_and_text_prompts(model_dir):
    m = measure(
        str(model_dir),
        roll_dtype="bfloat16",
        prompts=["w1 w2 w3", "w4 w5"],
        num_samples=2,
        max_new_tokens=5,
        device="cpu",
        top_p=0.9,
    )
    s = m.stats
    assert s.meta["roll"]["dtype"] == "bfloat16" and s.meta["train"]["dtype"] == "float32"
    assert s.meta["n_sequences"] == 4 and s.missing_mass is not None
    assert any("full support" in w for w in m.warnings)
    with pytest.raises(TrmboundsError, match="unknown dtype"):
        measure(str(model_dir), roll_dtype="fp8")
    with pytest.raises(InputFileError, match="model path not found"):
        measure(str(model_dir / "nope"))


def test_library_modules_do_not_import_torch():
    code = "import trmbounds.trm, trmbounds.measure, sys; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["False", "False"], out.stderr


# ------------------------------------------------------------------ command line
def test_cli_end_to_end_and_stats_file_round_trip_through_eval_and_check(model_dir, tmp_path):
    out = tmp_path / "measured.json"
    args = [
        "measure",
        "--roll",
        str(model_dir),
        "--roll-dtype",
        "bfloat16",
        "--train-dtype",
        "float32",
    ]
    args += ["-n", "2", "--max-new-tokens", "8", "--device", "cpu", "-o", str(out)]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "max over measured contexts" in r.stdout and "Unified" in r.stdout
    data = json.loads(out.read_text())
    assert set(data) == {
        "T", "kl_max", "tv_max", "kl_seq", "tv_seq", "per_position", "adv_range",
        "reward_range", "missing_mass", "status", "meta",
    }  # fmt: skip
    s = load_stats(out)
    assert s.to_dict() == Stats.from_dict(data).to_dict()
    assert s.status["kl_max"] == "empirical" and s.status["kl_seq"] == "estimate"
    # eval --stats reads it back and evaluates the same bounds
    e = CliRunner().invoke(app, ["eval", "--stats", str(out), "--json"])
    assert e.exit_code == 0, e.output
    got = json.loads(e.stdout)
    want = evaluate(s).to_dict()
    assert got["bounds"] == pytest.approx(want["bounds"], rel=1e-12)
    assert got["inputs"]["T"] == data["T"] and got["inputs"]["kl_max"] == data["kl_max"]
    # check reads it back too: the same statistics, the measured maxima as certified
    # lower bounds of the true maxima (exact values at measured contexts)
    c = CliRunner().invoke(app, ["check", str(out), "--json"])
    assert c.exit_code == 0, c.output
    step = json.loads(c.stdout)["steps"][0]
    assert step["T"] == data["T"]
    st = step["stats"]
    assert st["kl_seq"]["value"] == data["kl_seq"] and st["tv_seq"]["value"] == data["tv_seq"]
    assert st["per_position"]["value"] == data["per_position"]
    assert st["kl_lower_bound"]["value"] == data["kl_max"]
    assert st["tv_lower_bound"]["value"] == data["tv_max"]
    # the per-token dump (--tokens) through check's own estimators (docs/logs.md): the
    # same statistics computed by independent code from the per-token values
    toks = tmp_path / "tokens.jsonl"
    r4 = CliRunner().invoke(
        app, [*args[:-2], "-o", str(tmp_path / "again.json"), "--tokens", str(toks)]
    )
    assert r4.exit_code == 0, r4.output
    c2 = CliRunner().invoke(app, ["check", str(toks), "--json"])
    assert c2.exit_code == 0, c2.output
    st2 = json.loads(c2.stdout)["steps"][0]["stats"]
    assert json.loads(c2.stdout)["steps"][0]["T"] == data["T"]
    for key in ("kl_seq", "tv_seq", "per_position"):
        assert st2[key]["value"] == pytest.approx(data[key], rel=1e-9, abs=1e-15), key
    # tv_seq from the dump's sampled-token log-probs, by the identity
    # D_TV^seq = E_roll[(1 - prod_t rho_t)^+] (docs/measure.md)
    recs = [json.loads(x) for x in toks.read_text().splitlines()]
    terms = [
        max(0.0, 1 - math.exp(sum(b - a for a, b in zip(r["logp_roll"], r["logp_theta"]))))
        for r in recs
    ]
    assert data["tv_seq"] == pytest.approx(sum(terms) / len(terms), rel=1e-9, abs=1e-15)
    assert st2["kl_lower_bound"]["value"] == pytest.approx(data["kl_max"], rel=1e-12)
    assert st2["kl_max_proxy"]["value"] == pytest.approx(
        data["meta"]["proxies"]["k2_max"], rel=1e-9
    )
    lines = toks.read_text().splitlines()
    assert len(lines) == data["meta"]["n_sequences"]
    # never overwrite without --force
    before = out.read_text()
    r2 = CliRunner().invoke(app, args)
    assert r2.exit_code == 2 and "--force" in r2.stderr and out.read_text() == before
    # --json: one object on stdout, naming the file
    r3 = CliRunner().invoke(app, [*args, "--force", "--json", "--top-k", "8"])
    assert r3.exit_code == 0, r3.output
    obj = json.loads(r3.stdout)
    assert obj["stats_file"] == str(out) and obj["inputs"]["missing_mass"] > 0
    assert obj["bounds"]["adaptive"] is None  # top-k: the Adaptive bounds need full support


def test_cli_prompt_file_and_two_models(model_dir, tmp_path, models):
    other = tmp_path / "other"
    models[1].save_pretrained(other)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "w1 w2"}\n{"prompt": "w7 w8 w9"}\n')
    out = tmp_path / "two.json"
    r = CliRunner().invoke(
        app,
        ["measure", "--roll", str(model_dir), "--train", str(other), "--tokenizer", str(model_dir),
         "--prompts", str(prompts), "-n", "3", "--max-new-tokens", "4", "--device", "cpu",
         "--trm-max", "0.5", "--ln-trm", "0.1", "-o", str(out)],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    s = load_stats(out)
    assert s.meta["sampling"]["num_prompts"] == 2 and s.meta["n_sequences"] == 6
    assert s.meta["acceptance"]["trm_max"]["threshold"] == 0.5
    assert s.meta["acceptance"]["ln_trm"]["threshold"] == 0.1 and "LN-TRM" in r.stdout
    assert s.kl_max > 1e-3  # two different random models


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--roll", "/no/such/model"], "model path not found"),
        (["--roll", "{model}", "--roll-dtype", "fp8"], "fp8"),
        (["--roll", "{model}", "--prompts", "/no/such/prompts.txt"], "prompt file not found"),
        (["--roll", "{model}", "--prompts", "{bad_jsonl}"], "line 2"),
        (["--roll", "{model}", "--trm-max", "-1"], "trm_max threshold"),
        (["--roll", "{model}", "--trm-avg", "nan"], "trm_avg threshold"),
        (["--roll", "{model}", "--ln-trm", "-0.5"], "ln_trm threshold"),
        (["--roll", "{model}", "--top-p", "1.5"], "top_p"),
        (["--roll", "{model}", "--temperature", "0"], "temperature"),
        (["--roll", "{model}", "--max-memory", "lots"], "memory size"),
        (["--roll", "{model}", "--max-memory", "1e400"], "memory size"),
        (["--roll", "{model}", "--max-memory", "nan"], "memory size"),
        (["--roll", "{model}", "--seed", str(10**23)], "seed"),
        (["--roll", "{model}", "--seed", "-1"], "seed"),
        (["--roll", "{model}", "--temperature", "1e-39"], "temperature"),
        (["--roll", "{model}", "--adv-range", "2", "--reward-range", "0", "1"], "not both"),
    ],
)
def test_cli_bad_input_exit_2(model_dir, tmp_path, extra, message):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "w1"}\n[1, 2]\n')
    extra = [a.format(model=model_dir, bad_jsonl=bad) for a in extra]
    out = tmp_path / "o.json"
    r = CliRunner().invoke(app, ["measure", *extra, "-o", str(out), "--device", "cpu"])
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0]
    assert not out.exists()


def test_cli_unavailable_mps_device_exit_2(model_dir, tmp_path):
    if torch.backends.mps.is_available():
        pytest.skip("this torch has MPS")
    out = tmp_path / "o.json"
    r = CliRunner().invoke(
        app, ["measure", "--roll", str(model_dir), "--device", "mps", "-o", str(out)]
    )
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "mps" in lines[0]
    assert not out.exists()


def test_cli_help_has_examples():
    r = CliRunner().invoke(app, ["measure", "--help"])
    assert r.exit_code == 0 and "Examples:" in r.stdout and "trmbounds measure --roll" in r.stdout


def test_installed_executable_runs_measure(model_dir, tmp_path):
    """The command as a user runs it: the installed `trmbounds` script, in a subprocess."""
    import shutil

    exe = shutil.which("trmbounds") or str(
        __import__("pathlib").Path(sys.executable).parent / "trmbounds"
    )
    out = tmp_path / "m.json"
    cmd = [exe, "measure", "--roll", str(model_dir), "--roll-dtype", "bfloat16", "-n", "1",
           "--max-new-tokens", "4", "--device", "cpu", "-o", str(out), "--json"]  # fmt: skip
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    obj = json.loads(p.stdout)
    assert obj["stats_file"] == str(out) and load_stats(out).T == obj["inputs"]["T"]


def test_stats_file_doc_example_loads_and_lists_every_key():
    """docs/stats-file.md: its example is a valid statistics file, its table names every key."""
    import re
    from pathlib import Path

    text = (Path(__file__).parents[1] / "docs" / "stats-file.md").read_text()
    example = json.loads(re.search(r"```json\n(.*?)\n```", text, re.S).group(1))
    s = Stats.from_dict(example)
    assert s.status["kl_max"] == "empirical" and s.T == len(example["per_position"])
    for key in Stats(T=1, kl_max=0.1).to_dict():
        assert f"| `{key}` |" in text, key


def test_models_without_a_separate_head_use_their_own_logits(models):
    """Fallback for architectures whose body/head split is unknown: the model's full
    forward logits. Same numbers as the chunked-head path."""
    m0, m1 = models
    kw = dict(num_samples=1, max_new_tokens=6, seed=2, eos_ids={EOS})
    split = sample_and_score(m0, m1, PROMPTS, **kw)
    a, b = _tiny(0), _tiny(1)
    a.base_model_prefix = b.base_model_prefix = "no_such_body"  # hides the body
    whole = sample_and_score(a, b, PROMPTS, **kw)
    assert np.array_equal(whole.tokens, split.tokens)
    np.testing.assert_allclose(whole.kl, split.kl, rtol=1e-4, atol=1e-8)
    np.testing.assert_allclose(whole.tv, split.tv, rtol=1e-4, atol=1e-8)


def test_unknown_logit_post_processing_falls_back_to_full_logits(models):
    """A model whose forward post-processes the head's output in a way the scorer does not
    know: the probe detects it and the model's own logits are used (reference: the
    model's full-forward logits)."""
    from trmbounds.measure import _Scorer

    class Scaled(transformers.LlamaForCausalLM):
        def forward(self, *a, **k):
            out = super().forward(*a, **k)
            out.logits = 2.0 * out.logits
            return out

    torch.manual_seed(1)
    m = Scaled(models[1].config).eval()
    assert not _Scorer(m).split and _Scorer(models[1]).split
    rec = sample_and_score(
        models[0], m, PROMPTS[:2], num_samples=1, max_new_tokens=4, eos_ids={EOS}
    )
    _check_against_reference(rec, models[0], m, PROMPTS[:2], 1)


def test_measure_error_from_the_installed_executable_is_one_line():
    import shutil
    from pathlib import Path

    exe = Path(sys.executable).with_name("trmbounds")
    exe = str(exe) if exe.exists() else shutil.which("trmbounds")
    if exe is None:
        pytest.skip("trmbounds is not installed as a script")
    p = subprocess.run(
        [exe, "measure", "--roll", "/no/such/model"], capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 2
    assert p.stderr == "Error: model path not found: /no/such/model\n"


def test_a_missing_cuda_device_fails_before_any_model_loads(tmp_path):
    # `--device cuda` on a machine without CUDA: one line, exit 2, before the model loads
    # (it took the whole model load to fail before); nothing is written
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    from typer.testing import CliRunner

    from trmbounds.cli import app

    out = tmp_path / "m.json"
    r = CliRunner().invoke(app, ["measure", "--demo", "--device", "cuda", "-o", str(out)])
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith("Error: ") and r.stderr.count("\n") == 1
    assert "'cuda'" in r.stderr and "CUDA is not available" in r.stderr
    assert not out.exists()
