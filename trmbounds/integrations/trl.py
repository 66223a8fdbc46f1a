r"""``TRMCallback``: the TRM guarantee (Li et al., arXiv:2512.23075) logged next to the loss.

A ``transformers.TrainerCallback`` for TRL's ``GRPOTrainer`` (or any HF ``Trainer``
whose ``log`` carries TRL's metric names)::

    from trmbounds.integrations.trl import TRMCallback

    trainer = GRPOTrainer(..., callbacks=[TRMCallback(kl_max=1e-3)])

At every logging step where TRL logged its vLLM mismatch metrics
(``sampling/sampling_logp_difference/{mean,max}``: ``GRPOConfig(use_vllm=True,
vllm_importance_sampling_correction=True)``), it judges the step exactly as
``trmbounds check trainer_state.json`` does (:class:`trmbounds.monitor.Monitor`) and
adds to the step's logs:

``trm/B_star``
    :math:`B^*` (``unified`` of ``check --json``): under the assumption ``kl_max`` /
    ``tv_max`` when given, else under the estimates; NaN when unknown.
``trm/vacuous``, ``trm/refuted``, ``trm/flagged``
    1 when the step is *vacuous* (:math:`B^* \ge` the advantage range), *refuted* (a
    certified lower bound exceeds the assumption), or *flagged* (a sampled-token
    detector exceeds the assumed :math:`\delta`), else 0. TRL logs detectors, not
    certified lower bounds: its steps can be flagged, never refuted.

These reach ``trainer_state.json``'s ``log_history`` and every reporting integration
(TensorBoard, wandb, ...) as ``train/trm/...``. transformers appends a copy of the
logs to ``log_history`` before any callback sees them and calls the callbacks in list
order, user callbacks after the reporting ones; so the callback moves itself to the
front of the trainer's callback list (when the trainer is built, and again when
training begins) and completes the ``log_history`` entry in place.

``length`` (the horizon ``T``: the generation cap) defaults to the trainer's
``args.max_completion_length`` (``GRPOConfig``). With ``logging_steps > 1`` TRL logs
every metric as a mean over the window, so a logged "max" can be below the window's
maximum (docs/logs.md, TRL): log every step where the mismatch matters.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import Any

from ..errors import TrmboundsError

__all__ = ["TRMCallback", "TRMGRPOTrainer", "KEYS", "MISMATCH"]  # noqa: F822 - built on first use

#: The keys added to a step's logs.
KEYS = ("trm/B_star", "trm/vacuous", "trm/refuted", "trm/flagged")
#: TRL's vLLM mismatch metrics (trmbounds.logs.frameworks.trl): a step is judged when
#: its logs carry one of them.
MISMATCH = ("sampling/sampling_logp_difference/max", "sampling/sampling_logp_difference/mean")

_log = logging.getLogger("trmbounds")
_CLASS: Any = None
_TRAINER: Any = None


def __getattr__(name: str) -> Any:
    # transformers (trl) is imported when TRMCallback (TRMGRPOTrainer) is first used
    if name == "TRMCallback":
        return _callback_class()
    if name == "TRMGRPOTrainer":
        return _trainer_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _callback_class() -> Any:
    global _CLASS
    if _CLASS is None:
        from transformers import TrainerCallback

        _CLASS = type("TRMCallback", (_TRMCallback, TrainerCallback), {
            "__module__": __name__, "__doc__": _TRMCallback.__doc__})  # fmt: skip
    return _CLASS


def _states() -> tuple[str, ...]:
    from ..logs.result import STATES

    return (*STATES, "flagged")


class _TRMCallback:
    """The TRM guarantee of every logging step, logged as ``trm/*`` (module docstring).

    Parameters
    ----------
    kl_max, tv_max : float, optional
        The trust-region assumption (e.g. the TRM threshold :math:`\\delta`).
    length : int, optional
        The horizon ``T`` (the generation cap); default: ``args.max_completion_length``,
        else the length TRL logs (``completions/max_length``: an empirical horizon).
    reward_range : (float, float)
        Where the rewards lie (its width is the advantage range).
    constants : str
        ``paper`` or ``sharp``.
    confidence : float
        Level of the lower confidence bound on the surrogate.
    stop_on : str or iterable of str, optional
        States of ``trmbounds check`` (``refuted``, ``vacuous``, ``guaranteed``,
        ``estimated-gain``, ``non-vacuous``, ``unknown``) and ``flagged``: the first
        step in one of them stops training (``control.should_training_stop``), with a
        warning on the ``trmbounds`` logger; :attr:`stopped` holds its verdict.
    """

    def __init__(
        self,
        kl_max: float | None = None,
        tv_max: float | None = None,
        length: int | None = None,
        reward_range: tuple[float, float] | None = (0, 1),
        constants: str = "paper",
        confidence: float = 0.95,
        stop_on: str | Iterable[str] | None = None,
    ) -> None:
        from ..logs.result import Assumption, length_value
        from ..monitor import Monitor

        stops = [stop_on] if isinstance(stop_on, str) else list(stop_on or ())
        bad = [s for s in stops if s not in _states()]
        if bad:
            raise TrmboundsError(
                f"stop_on: unknown state(s) {', '.join(map(repr, bad))}; choose from "
                f"{', '.join(_states())}"
            )
        self.stop_on = frozenset(stops)
        # the settings are checked now, not at the first logging step
        self.assumption = Assumption(
            kl_max=kl_max,
            tv_max=tv_max,
            reward_range=None if reward_range is None else tuple(reward_range),  # type: ignore[arg-type]
            constants=constants,
            confidence=confidence,
        )
        self._length = None if length is None else length_value(length)
        self.monitor: Monitor | None = None
        self.stopped: Any = None  # the verdict that stopped training
        self.last: Any = None  # the verdict of the last step judged

    # -- callback events (transformers.TrainerCallback) ---------------------------
    def on_init_end(self, args, state, control, **kwargs):
        self._to_front()
        return control

    def on_train_begin(self, args, state, control, **kwargs):
        from ..monitor import Monitor

        self._to_front()  # callbacks may have been added since the trainer was built
        length = self._length
        if length is None:
            length = getattr(args, "max_completion_length", None)
        self.monitor = Monitor(length=length, preset="trl", source="trainer logs",
                               assumption=self.assumption)  # fmt: skip
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or not any(k in logs for k in MISMATCH):
            return control
        if self.monitor is None:  # a trainer that never called on_train_begin
            self.on_train_begin(args, state, control)
        assert self.monitor is not None
        v = self.monitor.update(state.global_step, logs)
        if v is None:
            return control
        self.last = v
        trm = {
            "trm/B_star": v.unified,
            "trm/vacuous": int(v.state == "vacuous"),
            "trm/refuted": int(v.state == "refuted"),
            "trm/flagged": int(v.flagged is not None),
        }
        logs.update(trm)  # the reporting callbacks, after this one, write these
        hist = getattr(state, "log_history", None)
        if (
            hist
            and hist[-1].get("step") == state.global_step
            and all(hist[-1].get(k) is logs[k] for k in MISMATCH if k in logs)
        ):
            hist[-1].update(trm)  # Trainer.log appended its copy before calling us
        hit = (self.stop_on & {v.state}) or ("flagged" in self.stop_on and v.flagged)
        if hit and self.stopped is None:
            self.stopped = v
            why = f"{v.state}" + (f"; flagged: {v.flagged}" if v.flagged else "")
            if v.refuted_by:
                why += f"; refuted by {v.refuted_by}"
            _log.warning(
                "trmbounds: stopping training at step %s (stop_on=%s): %s; B* = %.4g",
                v.step, ",".join(sorted(self.stop_on)), why, v.unified,
            )  # fmt: skip
            control.should_training_stop = True
        return control

    # -- helpers -------------------------------------------------------------------
    def _to_front(self) -> None:
        """Move this callback to the front of the trainer's callback list, so that the
        reporting callbacks (TensorBoard, wandb, ...) see the ``trm/*`` keys it adds."""
        handler = _calling_handler()
        if handler is None:
            _log.warning(
                "trmbounds: TRMCallback could not reach the trainer's callback list; "
                "trm/* values reach log_history, but reporting callbacks listed before it "
                "may miss them"
            )
            return
        cbs = handler.callbacks
        i = next((k for k, cb in enumerate(cbs) if cb is self), None)
        if i:  # moving one element from i to 0 keeps the order of the running iteration
            cbs.insert(0, cbs.pop(i))


def _calling_handler() -> Any:
    """The ``transformers`` ``CallbackHandler`` whose ``call_event`` is calling us."""
    from transformers.trainer_callback import CallbackHandler

    f: Any = sys._getframe(1)
    for _ in range(8):
        if f is None:
            return None
        h = f.f_locals.get("self")
        if isinstance(h, CallbackHandler):
            return h
        f = f.f_back
    return None


# ---------------------------------------------------------------- TRM masks in TRL
def _trainer_class() -> Any:
    global _TRAINER
    if _TRAINER is None:
        from trl import GRPOTrainer  # type: ignore[import-not-found]

        _TRAINER = type("TRMGRPOTrainer", (_TRMMasks, GRPOTrainer), {
            "__module__": __name__, "__doc__": _TRMMasks.__doc__})  # fmt: skip
    return _TRAINER


class _TRMMasks:
    r"""TRL's ``GRPOTrainer`` with the paper's TRM-Max / TRM-Avg sequence masks.

    ``TRMGRPOTrainer(..., trm_max=0.05, trm_avg=0.001)`` takes GRPOTrainer's arguments
    and two thresholds. With ``use_vllm=True`` and
    ``vllm_importance_sampling_correction=True``, TRL has, per completion token, the
    log-probability of the rollout engine (vLLM) and of the trainer's policy before the
    update; their difference is :math:`\log\rho_t`. After TRL's own generation and
    scoring (``_generate_and_score_completions``), a sequence is kept iff

    - TRM-Max: :math:`\max_t k_2 \le` ``trm_max``, :math:`k_2 = \tfrac12(\log\rho_t)^2`
      (:func:`trmbounds.trm.trm_max_mask`), and
    - TRM-Avg: :math:`\tfrac1{T_i}\sum_t k_3 \le` ``trm_avg``,
      :math:`k_3 = \rho_t - 1 - \log\rho_t` (:func:`trmbounds.trm.trm_avg_mask`),

    over its completion tokens (tokens vLLM could not score excluded). TRL's importance
    sampling ratio of a masked sequence is set to 0: its tokens add nothing to the
    loss, and the loss is still normalised as TRL normalises it, over every sequence
    and token of the batch -- the paper's rule (the gradient is divided by the total
    batch, not the kept part). TRL's own ``vllm_importance_sampling_mode`` mask (by the
    importance ratio) still applies on top. Logged per step, averaged like TRL's
    metrics: ``trm/acceptance`` (the fraction of sequences kept) and
    ``trm/masked_fraction``.

    The threshold is not a certified :math:`\delta` (docs/theory.md, "Trust Region
    Masking in a trainer"): :math:`k_2` and :math:`k_3` are proxies on the sampled tokens,
    and a mask acts on the sampled sequences only. Pass the :math:`\delta` you assume to
    :class:`TRMCallback` as ``kl_max``.
    """

    def __init__(self, *args: Any, trm_max: float | None = None, trm_avg: float | None = None,
                 **kwargs: Any) -> None:  # fmt: skip
        for k, v in (("trm_max", trm_max), ("trm_avg", trm_avg)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                                  or not 0 <= v < float("inf")):  # fmt: skip
                raise TrmboundsError(f"{k} must be a finite number >= 0, got {v!r}")
        if trm_max is None and trm_avg is None:
            raise TrmboundsError("give trm_max and/or trm_avg (the TRM thresholds)")
        self.trm_max, self.trm_avg = trm_max, trm_avg
        super().__init__(*args, **kwargs)
        a = self.args  # type: ignore[attr-defined]
        if not (
            getattr(a, "use_vllm", False)
            and getattr(a, "vllm_importance_sampling_correction", False)
        ):
            raise TrmboundsError(
                "TRM masks act on TRL's vLLM and trainer log-probs: set GRPOConfig(use_vllm=True, "
                "vllm_importance_sampling_correction=True)"
            )
        if getattr(a, "loss_type", None) == "vespo":
            raise TrmboundsError(
                "TRM masks: loss_type='vespo' does not apply TRL's importance ratio"
            )

    def _generate_and_score_completions(self, inputs: Any) -> Any:
        import torch

        from ..trm import k2, k3, trm_avg_mask, trm_max_mask

        out = super()._generate_and_score_completions(inputs)  # type: ignore[misc]
        lr = out["old_per_token_logps"] - out["sampling_per_token_logps"]  # log rho_t
        valid = out["completion_mask"].bool() & ~torch.isnan(lr)
        lr = torch.nan_to_num(lr, nan=0.0)
        keep = torch.ones(lr.shape[0], dtype=torch.bool, device=lr.device)
        if self.trm_max is not None:
            keep &= trm_max_mask(k2(lr), self.trm_max, valid).keep
        if self.trm_avg is not None:
            keep &= trm_avg_mask(k3(lr), self.trm_avg, valid).keep
        ratio = out["importance_sampling_ratio"]
        out["importance_sampling_ratio"] = ratio * keep.to(ratio.dtype).unsqueeze(-1)
        acc = self.accelerator.gather(keep.float().mean()).mean().item()  # type: ignore[attr-defined]
        mode = "train" if self.model.training else "eval"  # type: ignore[attr-defined]
        self._metrics[mode]["trm/acceptance"].append(acc)  # type: ignore[attr-defined]
        self._metrics[mode]["trm/masked_fraction"].append(1.0 - acc)  # type: ignore[attr-defined]
        return out
