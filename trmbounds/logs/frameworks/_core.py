r"""The paper's quantities and the :class:`Preset` record every framework module fills in.

No RL framework logs the exact full-vocabulary KL or TV between the rollout and the
training policy: every mismatch metric they log is built from the log-probabilities
of the *sampled* tokens. A :class:`Preset` names, for each :data:`QUANTITIES` entry,
the metric column(s) a framework writes (current name first, then legacy names),
where that knowledge was read (repository, file, commit, version), the statuses that
differ from a quantity's default, and the caveats a user must know.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["QUANTITIES", "STEP_COLUMNS", "Preset", "LENGTHS", "NOT_METRICS"]

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
    "T_clip": (
        "logged",
        "fraction of responses cut at the generation cap: where > 0 the longest response "
        "IS the cap, so T_max is the horizon",
    ),
    "kl_tok_mean": (
        "estimate",
        "token mean of k3 = rho-1-log(rho) (or of k1 = -log rho) over the batch; "
        "x T_mean estimates D_KL^seq",
    ),
    "kl_seq": ("estimate", "batch mean of sum_t k3_t: estimates D_KL^seq directly"),
    "tv_seq": ("estimate", "an estimate of D_TV^seq, e.g. mean of (1 - prod_t rho_t)^+"),
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
    "kl_lo": ("lower_bound", "per-token certified lower end of KL (measure --rollouts)"),
    "tv_lo": ("lower_bound", "per-token certified lower end of TV (measure --rollouts)"),
    "reward": ("logged", "per-sequence reward R (the surrogate L needs it)"),
    "group": (
        "logged",
        "per-sequence prompt/group id (a number or a string): the unit of the bound on L",
    ),
}

#: Step columns tried when a preset names none: verl/prime-rl/tinker files, wandb
#: exports, HF Trainer.
STEP_COLUMNS = ("step", "_step", "global_step", "train/global_step")
#: Quantities that are response lengths.
LENGTHS = ("T", "T_max", "T_mean", "T_cap", "T_clip")
#: Quantities that are neither lengths nor mismatch metrics.
NOT_METRICS = ("step", *LENGTHS, "surrogate", "surrogate_se")


@dataclass(frozen=True)
class Preset:
    """What one framework logs, mapped onto :data:`QUANTITIES`.

    Attributes
    ----------
    name : str
        The ``--preset`` name (also ``summary.preset`` in ``--json``).
    columns : mapping of quantity to tuple of str
        Candidate columns per quantity, first match wins: the current name first,
        then legacy names.
    status : mapping of quantity to str
        Where the framework's metric is weaker than the quantity's definition.
    column_status : mapping of column to str
        Per-column statuses (a legacy name that aggregates differently).
    notes : tuple of str
        Shown with every check that uses the preset.
    caveats : mapping of quantity to str
        Shown when the quantity is read from the log.
    source : str
        Repository, file(s), commit and version the names were read from.
    prefixes : tuple of str
        Logger prefixes tried on every name, in order (HF Trainer's ``rewrite_logs``
        writes ``train/NAME`` and ``eval/NAME`` to TensorBoard and wandb).
    step_columns : tuple of str
        Step columns, first present in the file wins.
    rollout_step : str, optional
        A second step column for rows logged per rollout (slime: ``rollout/step``);
        such a row's step is ``rollout_step x steps_per_rollout`` (+ 0 .. n-1).
    rollout_groups : tuple of str
        Column prefixes logged at the rollout step (TensorBoard, where the event
        step is the group's own step).
    enable : str
        When no mismatch metric is logged: the setting that turns one on.
    """

    name: str
    columns: Mapping[str, tuple[str, ...]]
    status: Mapping[str, str] = field(default_factory=dict)
    column_status: Mapping[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    caveats: Mapping[str, str] = field(default_factory=dict)
    source: str = ""
    prefixes: tuple[str, ...] = ("",)
    step_columns: tuple[str, ...] = STEP_COLUMNS
    rollout_step: str | None = None
    rollout_groups: tuple[str, ...] = ()
    enable: str = ""

    def __post_init__(self) -> None:
        unknown = set(self.columns) - set(QUANTITIES)
        if unknown:  # a typo in a framework module fails at import, in the tests
            raise ValueError(f"preset {self.name}: unknown quantities {sorted(unknown)}")
