r"""Measure the exact divergences between a rollout and a training policy by running them.

``trmbounds measure`` (and :func:`measure`) samples responses from
:math:`\pi_{roll}`, scores every response under both policies with full logits, and
computes per token the exact :math:`KL(\pi_{roll}\|\pi_\theta)` and TV over the whole
vocabulary (:func:`trmbounds.trm.token_divergences`), the sampled token's
log-ratio :math:`\log\rho_t` and the k1/k2/k3 proxies. :func:`aggregate` turns the
per-token records into :class:`~trmbounds.stats.Stats` (the statistics file of
``docs/stats-file.md``):

- ``kl_max`` / ``tv_max`` (status ``empirical``): maxima over the **measured**
  contexts only — lower estimates of the maxima over all reachable contexts that the
  guarantee needs (docs/theory.md §6);
- ``kl_seq`` (``estimate``): :math:`\frac1N\sum_i\sum_t KL(c_{i,t})` — the exact
  per-context KL summed along each sampled path is an unbiased estimate of
  :math:`D_{KL}^{seq}` (chain rule), with lower variance than summing k3;
- ``tv_seq`` (``estimate``): :math:`\frac1N\sum_i (1 - \prod_t\rho_{i,t})^+`, unbiased
  for :math:`D_{TV}^{seq}` by the identity :math:`TV(P, Q) = E_P[(1 - dQ/dP)^+]`, which
  holds without full support; every term lies in [0, 1] (computed in log space);
- ``per_position`` (``estimate``): :math:`\bar D_t = \frac1N\sum_i TV(c_{i,t})` with
  TV = 0 after a response's end (see :func:`aggregate`);
- ``missing_mass`` (``estimate``, only with top-k/top-p sampling):
  :math:`m = \frac1N\sum_i\sum_t \pi_\theta(\text{outside supp}\,\pi_{roll}|c_{i,t})`.

Confidence intervals are normal intervals, mean ± 1.96·sd/√N over the N sequences,
except for the means of [0, 1] values (``tv_seq`` and each :math:`\bar D_t`): always the
Wilson interval with the largest variance such a mean allows
(:func:`~trmbounds.measure.aggregation.bounded_mean_ci`).

The package follows the data: :mod:`.prompts` (reading prompts), :mod:`.models`
(loading models, logits by rows), :mod:`.sampling` (sampling responses),
:mod:`.scoring` (both policies through the blocked divergence kernel),
:mod:`.records` (per-token records and the per-token dump), :mod:`.aggregation`
(statistics with CIs) and :mod:`.run` (:func:`measure`, the whole run).

torch and transformers (the ``[model]`` extra) are imported inside the functions
that need them; importing this package does not import them.
"""

from __future__ import annotations

from .aggregation import aggregate, bounded_mean_ci, normal_ci
from .intervals import TokenIntervals, token_intervals
from .models import DTYPES, load_model, load_tokenizer, resolve_device, resolve_dtype
from .models import _Scorer as _Scorer  # noqa: F401  (tests reach it here)
from .prompts import BUILTIN_PROMPTS, load_prompts
from .records import Measurement, Records, write_token_dump
from .rollouts import LOGPROBS_MODES, ROLLOUT_FORMATS, Rollout, read_rollouts
from .run import measure, measure_rollouts
from .sampling import MIN_TEMPERATURE as MIN_TEMPERATURE
from .scoring import parse_memory, sample_and_score, score_rollouts

__all__ = [
    "BUILTIN_PROMPTS",
    "DTYPES",
    "Records",
    "Measurement",
    "parse_memory",
    "load_prompts",
    "resolve_dtype",
    "resolve_device",
    "load_model",
    "load_tokenizer",
    "sample_and_score",
    "aggregate",
    "write_token_dump",
    "normal_ci",
    "measure",
    "measure_rollouts",
    "read_rollouts",
    "Rollout",
    "ROLLOUT_FORMATS",
    "LOGPROBS_MODES",
    "score_rollouts",
    "token_intervals",
    "TokenIntervals",
    "bounded_mean_ci",
]
