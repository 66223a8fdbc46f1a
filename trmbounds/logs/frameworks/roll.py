"""ROLL (alibaba/ROLL).

Read from alibaba/ROLL @ 8eb27cc2dc34c4d1310b169d9b86d339004d811a (2026-08-19, 0.3.0):

- ``roll/utils/train_infer_corrections.py::compute_train_infer_correction``:
  ``actor/train_infer_ratio_{token,geometric,sequence,segment}_mean`` (seq-mean-token-
  mean of rho) and ``actor/train_infer_diff_*_mean`` (signed p_old - p_infer); with
  filters ``actor/train_infer_final_mask_mean`` (token pass rate after all filters);
- ``roll/utils/metrics/metrics_manager.py::add_token_metrics``:
  ``token/response_length/{mean,max,min}``; the agentic pipeline
  (``roll/pipeline/agentic/agentic_pipeline.py``) logs ``tokens/response_length/*``.

No KL or |log-ratio| statistic of the mismatch is logged.
"""

from ._core import Preset

PRESET = Preset(
    "roll",
    {
        "T_max": ("token/response_length/max", "tokens/response_length/max"),
        "T_mean": ("token/response_length/mean", "tokens/response_length/mean"),
        "accept": ("actor/train_infer_final_mask_mean",),
    },
    source=(
        "alibaba/ROLL @ 8eb27cc2dc (0.3.0, 2026-08-19): roll/utils/train_infer_corrections.py, "
        "roll/utils/metrics/metrics_manager.py, roll/pipeline/agentic/agentic_pipeline.py"
    ),
    caveats={
        "accept": (
            "roll: train_infer_final_mask_mean is the token pass rate of the train-infer "
            "filters, not of a KL trust region"
        ),
    },
    enable=(
        "ROLL logs no KL of the mismatch; actor/train_infer_final_mask_mean needs "
        "train_infer_correction filters (roll/configs/base_config.py)"
    ),
)
