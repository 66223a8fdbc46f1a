"""Reading training logs and per-token dumps, and checking the TRM guarantee on them.

``trmbounds check`` is built on this package: :mod:`.readers` streams JSONL, CSV and
Parquet; :mod:`.presets` maps framework metric names onto the paper's quantities;
:mod:`.tokens` estimates the statistics from per-token log-probabilities;
:mod:`.check` evaluates the bound and the guarantee's state at every step.
pyarrow is imported only inside the functions that read Arrow formats.
"""
