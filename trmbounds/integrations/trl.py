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

__all__ = ["TRMCallback", "KEYS", "MISMATCH"]  # noqa: F822 - TRMCallback: built on first use

#: The keys added to a step's logs.
KEYS = ("trm/B_star", "trm/vacuous", "trm/refuted", "trm/flagged")
#: TRL's vLLM mismatch metrics (trmbounds.logs.frameworks.trl): a step is judged when
#: its logs carry one of them.
MISMATCH = ("sampling/sampling_logp_difference/max", "sampling/sampling_logp_difference/mean")

_log = logging.getLogger("trmbounds")
_CLASS: Any = None


def __getattr__(name: str) -> Any:
    # transformers is imported when TRMCallback is first used, not with this module
    if name == "TRMCallback":
        return _callback_class()
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
        from ..monitor import Monitor

        stops = [stop_on] if isinstance(stop_on, str) else list(stop_on or ())
        bad = [s for s in stops if s not in _states()]
        if bad:
            raise TrmboundsError(
                f"stop_on: unknown state(s) {', '.join(map(repr, bad))}; choose from "
                f"{', '.join(_states())}"
            )
        self.stop_on = frozenset(stops)
        self._kw = dict(kl_max=kl_max, tv_max=tv_max, reward_range=reward_range,
                        constants=constants, confidence=confidence)  # fmt: skip
        self._length = length
        Monitor(**self._kw, length=length)  # the settings are checked now, not at step 1
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
        self.monitor = Monitor(**self._kw, length=length, preset="trl", source="trainer logs")
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

    f = sys._getframe(1)
    for _ in range(8):
        if f is None:
            return None
        h = f.f_locals.get("self")
        if isinstance(h, CallbackHandler):
            return h
        f = f.f_back
    return None
