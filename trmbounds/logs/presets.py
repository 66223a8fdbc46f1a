r"""What each framework logs, mapped onto the paper's quantities, with its status.

No RL framework logs the exact full-vocabulary KL or TV between the rollout and the
training policy: every mismatch metric they log is built from the log-probabilities
of the *sampled* tokens. A :class:`Preset` names, for each :data:`QUANTITIES` entry,
the metric column(s) a framework writes; ``--map QUANTITY=COLUMN`` overrides any of
them. ``docs/logs.md`` explains every mapping and why it has the status it has.

Metric names follow the frameworks' documented names as of 2026.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ..errors import TrmboundsError

__all__ = ["QUANTITIES", "PRESETS", "Preset", "parse_maps", "resolve", "guess_preset"]

#: Quantity name -> (status, meaning). The status is what a value of that column *is*
#: with respect to the paper's statistics (docs/theory.md §6).
QUANTITIES: dict[str, tuple[str, str]] = {
    "step": ("logged", "training step"),
    "T": ("logged", "response length T to use directly"),
    "T_max": ("logged", "maximum response length in the batch"),
    "T_mean": ("logged", "mean response length in the batch"),
    "T_cap": (
        "logged",
        "generation cap (max_new_tokens / max response length): the horizon T of the bounds",
    ),
    "kl_tok_mean": (
        "estimate",
        "token mean of k3 = rho-1-log(rho) (or of k1 = -log rho) over the batch; "
        "x T_mean estimates D_KL^seq",
    ),
    "kl_seq": ("estimate", "batch mean of sum_t k3_t: estimates D_KL^seq directly"),
    "tv_seq": ("estimate", "an estimate of D_TV^seq, e.g. mean of |prod_t rho_t - 1|/2"),
    "tv_lb": (
        "lower_bound",
        "max over sampled tokens of |p_theta(y) - p_roll(y)|: a certified lower bound on eps",
    ),
    "tv_max_seen": (
        "lower_bound",
        "max of the EXACT TV over logged contexts: a certified lower bound on eps",
    ),
    "kl_max_seen": (
        "lower_bound",
        "max of the EXACT KL over logged contexts: a certified lower bound on delta",
    ),
    "k2_max": ("proxy", "max over sampled tokens of k2 = (log rho)^2/2: a detector for delta"),
    "kl_proxy_max": (
        "proxy",
        "max over sampled tokens of k3 (or the framework's KL estimator): a detector",
    ),
    "logp_diff_max": (
        "proxy",
        "max |log p_theta - log p_roll| over sampled tokens; (.)^2/2 is the k2 max",
    ),
    "logp_diff_mean": ("proxy", "mean |log p_theta - log p_roll| over sampled tokens"),
    "prob_diff_mean": ("proxy", "mean |p_theta(y) - p_roll(y)| over sampled tokens"),
    "reject_frac": ("logged", "fraction masked by the trust region; acceptance = 1 - it"),
    "accept": ("logged", "acceptance rate of the trust-region mask"),
    "surrogate": ("estimate", "surrogate improvement L (same reward units as the bound)"),
    "surrogate_se": ("estimate", "standard error of the logged surrogate L"),
    # per-token dumps (list columns, one record per sequence)
    "logp_roll": ("logged", "per-token log pi_roll(y_t|c_t) of the sampled tokens"),
    "logp_theta": ("logged", "per-token log pi_theta(y_t|c_t) of the sampled tokens"),
    "loss_mask": ("logged", "per-token 0/1: which tokens are response tokens"),
    "kl_token": ("logged", "per-token EXACT KL(pi_roll || pi_theta)(c_t), when available"),
    "tv_token": ("logged", "per-token EXACT TV(c_t), when available"),
}
_GENERIC_SKIP = ("step", "logp_roll", "logp_theta", "loss_mask", "kl_token", "tv_token")


@dataclass(frozen=True)
class Preset:
    """Candidate columns for each quantity, first match wins, and notes for the user.

    ``status`` overrides :data:`QUANTITIES` statuses where a framework's metric is
    weaker than the quantity's definition (e.g. a KL estimator that is not k3).
    """

    name: str
    columns: Mapping[str, tuple[str, ...]]
    status: Mapping[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


def _verl() -> Preset:
    cols: dict[str, list[str]] = {
        "T_max": ["response_length/max"],
        "T_mean": ["response_length/mean"],
        "tv_lb": ["training/rollout_probs_diff_max"],
        "prob_diff_mean": ["training/rollout_probs_diff_mean"],
    }
    for prefix in ("rollout_corr/", "mismatch/"):  # current, legacy
        for q, suffix in (
            ("kl_tok_mean", "k3_kl"),
            ("kl_seq", "rollout_rs_seq_sum_k3_seq_mean"),
            ("k2_max", "rollout_rs_seq_max_k2_max"),
            ("kl_proxy_max", "rollout_rs_seq_max_k3_max"),
            ("reject_frac", "rollout_rs_seq_masked_fraction"),
        ):
            cols.setdefault(q, []).append(prefix + suffix)
    # Fallback when k3 is not logged: verl's `kl` is the token mean of k1 = -log(rho),
    # also unbiased for the token-mean KL(pi_roll || pi_theta) under rollout samples
    # (higher variance; a batch value can even be negative).
    cols["kl_tok_mean"] += ["rollout_corr/kl", "mismatch/kl"]
    return Preset("verl", {k: tuple(v) for k, v in cols.items()})


PRESETS: dict[str, Preset] = {
    "verl": _verl(),
    "slime": Preset(
        "slime",
        {
            "kl_tok_mean": ("train/mis_k3_kl",),
            "reject_frac": ("train/mis_rs_trust_region_reject_fraction",),
        },
        notes=(
            "slime: the response-length metric name is not pinned down; pass "
            "--map T_max=COLUMN (and T_mean=COLUMN for D_KL^seq) or --length VALUE",
        ),
    ),
    "prime-rl": Preset(
        "prime-rl",
        {
            "kl_tok_mean": ("mismatch_kl/all/mean",),
            "kl_proxy_max": ("mismatch_kl/all/max",),
        },
        status={"kl_tok_mean": "proxy"},
        notes=(
            "prime-rl: mismatch_kl is a sampled-token KL proxy, so D_KL^seq from it is a proxy; "
            "pass --map T_max=COLUMN or --length VALUE for the response length",
        ),
    ),
    "trl": Preset(
        "trl",
        {
            "T_max": ("completions/max_length",),
            "T_mean": ("completions/mean_length",),
            "logp_diff_mean": ("sampling/sampling_logp_difference/mean",),
            "logp_diff_max": ("sampling/sampling_logp_difference/max",),
        },
        notes=("trl: max |log ratio| is a detector, NOT a bound on TV",),
    ),
    "skyrl": Preset(
        "skyrl",
        {
            "logp_diff_max": ("policy/rollout_train_logprobs_abs_diff_max",),
            "logp_diff_mean": ("policy/rollout_train_logprobs_abs_diff_mean",),
        },
        notes=(
            "skyrl: |log-prob differences| are detectors; pass --map T_max=COLUMN or "
            "--length VALUE for the response length",
        ),
    ),
    "generic": Preset(
        "generic",
        {q: (q,) for q in QUANTITIES if q not in _GENERIC_SKIP} | {"T_max": ("T_max", "T")},
    ),
}
_STEP_COLUMNS = ("step", "_step", "global_step", "train/global_step")


def parse_maps(maps: Iterable[str]) -> dict[str, str]:
    """Parse ``QUANTITY=COLUMN`` strings.

    Examples
    --------
    >>> parse_maps(["T_max=len/max", "surrogate=actor/pg_gain"])
    {'T_max': 'len/max', 'surrogate': 'actor/pg_gain'}
    >>> parse_maps(["kl=foo"])
    Traceback (most recent call last):
    ...
    trmbounds.errors.TrmboundsError: --map kl=foo: unknown quantity 'kl'; known: step, T, T_max, ...
    """
    out: dict[str, str] = {}
    for m in maps:
        q, sep, col = m.partition("=")
        q, col = q.strip(), col.strip()
        if not sep or not q or not col:
            raise TrmboundsError(f"--map {m!r}: expected QUANTITY=COLUMN")
        if q not in QUANTITIES:
            raise TrmboundsError(
                f"--map {m}: unknown quantity {q!r}; known: {', '.join(QUANTITIES)}"
            )
        out[q] = col
    return out


def candidates(preset: Preset, maps: Mapping[str, str]) -> dict[str, tuple[str, ...]]:
    """Candidate columns per quantity: ``--map`` first (and only), then the preset."""
    out = {q: tuple(c) for q, c in preset.columns.items()}
    out.setdefault("step", _STEP_COLUMNS)
    for q, col in maps.items():
        out[q] = (col,)
    return out


def resolve(preset: Preset, maps: Mapping[str, str], columns: Iterable[str]) -> dict[str, str]:
    """Quantity -> the column it is read from, among ``columns`` present.

    Examples
    --------
    >>> r = resolve(PRESETS["verl"], {}, ["step", "response_length/max", "mismatch/k3_kl"])
    >>> r == {"step": "step", "T_max": "response_length/max", "kl_tok_mean": "mismatch/k3_kl"}
    True
    """
    present = set(columns)
    out = {}
    for q, cands in candidates(preset, maps).items():
        for c in cands:
            if c in present:
                out[q] = c
                break
    return out


def guess_preset(columns: Iterable[str]) -> Preset:
    """The preset whose column names match the most of ``columns`` (generic on a tie).

    Examples
    --------
    >>> guess_preset(["_step", "train/mis_k3_kl"]).name
    'slime'
    """
    cols = list(columns)
    best, score = PRESETS["generic"], 0
    for name, p in PRESETS.items():
        if name == "generic":
            continue
        n = len([q for q in resolve(p, {}, cols) if q != "step"])
        if n > score:
            best, score = p, n
    return best


def status_of(preset: Preset, quantity: str) -> str:
    """The status of ``quantity`` read through ``preset``."""
    return preset.status.get(quantity, QUANTITIES[quantity][0])
