"""Training-framework integrations: the guarantee as a training metric.

:mod:`.trl` -- :class:`~trmbounds.integrations.trl.TRMCallback`, a ``transformers``
``TrainerCallback`` for TRL's ``GRPOTrainer`` (and any HF ``Trainer`` that logs TRL's
mismatch metrics). Each integration imports its framework only when used.
"""
