"""Reading training logs and per-token dumps, and checking the TRM guarantee on them.

``trmbounds check`` is built on this package: :mod:`.readers` streams JSONL, CSV and
Parquet (:mod:`.tensorboard`: TensorBoard event files; :mod:`.sources`: TensorBoard
events and HF ``trainer_state.json`` row by row); :mod:`.frameworks` maps each
framework's metric names onto the paper's quantities, one module per framework
(:mod:`.presets` re-exports it); :mod:`.merge` merges rows that share a step;
:mod:`.tokens` estimates the statistics from per-token log-probabilities;
:mod:`.check` evaluates the bound and the guarantee's state at every step.
pyarrow is imported only inside the functions that read Arrow formats.
"""
