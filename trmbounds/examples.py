"""Example inputs shipped with the package, for trying every command offline.

``trmbounds examples DIR`` (and :func:`write_examples`) copies them into ``DIR``:
metric logs laid out as the frameworks' own code writes them, and a per-token dump.
:data:`EXAMPLES` lists each file with what it is and where it came from; the files
live in ``trmbounds/data/examples/``.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from .errors import TrmboundsError

__all__ = ["EXAMPLES", "INDEX", "example_path", "index_text", "write_examples"]

#: Relative path in the examples directory -> what it is and where it came from.
EXAMPLES: dict[str, str] = {
    "metrics.jsonl": (
        "verl metric log, 3 steps, in the layout of verl's file logger (one line "
        '{"step": N, "data": {...}} per step, verl/utils/tracking.py) with the names of its '
        "rollout-correction metrics; the values are made up to show each state, and "
        "actor/surrogate_gain, actor/surrogate_gain_se are extra columns (a surrogate gain "
        "and its standard error) for --map surrogate=..., surrogate_se=... (README walkthrough)"
    ),
    "verl/rs_token_k2_seq_max_k2.jsonl": (
        "verl metric log written by verl 0.9.1's own code (its metric functions and "
        "Tracking's file backend), 4 steps on synthetic batches whose training log-probs "
        "drift from the rollout's by N(0, s^2), s = 0.02, 0.05, 0.1, 0.3; rollout_rs "
        "token_k2,seq_max_k2 at 0.05 (the project's tests/fixtures/verl, make_verl.py)"
    ),
    "trl/trainer_state.json": (
        "TRL 1.16.0 GRPOTrainer run on CPU (tiny random Qwen2, 4 steps): transformers' "
        "trainer_state.json. TRL logs the rollout/training mismatch only with vLLM, so "
        "this log has the lengths and no mismatch metric (tests/fixtures/trl, make_trl.py)"
    ),
    "trl/runs/Nov30_10-56-42_vm/events.out.tfevents.1796036202.vm.23549.0": (
        "the same TRL run's TensorBoard event file (tags train/<name>), written by "
        "transformers' TensorBoardCallback"
    ),
    "prompts.jsonl": (
        "4 prompts in the JSONL prompt format of `trmbounds measure --prompts` (one "
        '{"prompt": ...} per line; {"messages": [...]} chats work too, with a chat template)'
    ),
    "measured.json": (
        "statistics file written by `trmbounds measure --demo -n 1 --max-new-tokens 32 "
        "-o measured.json --tokens tokens.jsonl` (a random-weight model, bfloat16 rollouts "
        "vs float32 training: the numbers illustrate the tool only). From only 8 "
        "responses, its estimate tv_seq (a mean of per-response TV estimates) exceeds "
        "sqrt(kl_seq/2) by 7 %, so `eval` and `check` warn 'inconsistent: ... contradicts "
        "Pinsker's inequality (estimated inputs)': Pinsker's inequality binds the true "
        "values, and two noisy estimates need not respect it"
    ),
    "tokens.jsonl": (
        "per-token dump of 8 responses (up to 32 tokens) written by the same run as "
        "measured.json (--tokens)"
    ),
}


def _root():
    return resources.files("trmbounds") / "data" / "examples"


def example_path(name: str) -> Path:
    """The installed path of the example ``name`` (a key of :data:`EXAMPLES`)."""
    if name not in EXAMPLES:
        raise TrmboundsError(f"no example {name!r}; the examples are: {', '.join(EXAMPLES)}")
    return Path(str(_root() / name))


#: The file :func:`write_examples` adds: what each example is and where it came from.
INDEX = "README.md"


def index_text() -> str:
    """The text of :data:`INDEX`: one section per example."""
    from . import __version__

    parts = [
        f"# Example inputs of trmbounds {__version__}\n",
        "Written by `trmbounds examples`. What each file is and where it came from:\n",
    ]
    parts += [f"- `{name}`: {text}" for name, text in EXAMPLES.items()]
    return "\n".join(parts) + "\n"


def write_examples(directory: str | os.PathLike, force: bool = False) -> list[Path]:
    """Copy every example into ``directory`` (created if missing), with :data:`INDEX`.

    Returns the paths written, the examples in the order of :data:`EXAMPLES`, then the
    index. Nothing is written when one of the files exists already, unless ``force``.
    """
    from . import _io

    root = Path(directory)
    if root.exists() and not root.is_dir():
        raise TrmboundsError(f"{root} exists and is not a directory")
    targets = [root / name for name in (*EXAMPLES, INDEX)]
    if not force:  # before creating anything: every existing file, at once
        existing = [t for t in targets if t.exists() or t.is_symlink()]
        if existing:
            more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
            raise TrmboundsError(f"{existing[0]} exists{more}; pass --force to overwrite")
    for t in targets:
        if t.is_dir():
            raise TrmboundsError(f"{t} is a directory: cannot write the example there")
    try:
        for d in dict.fromkeys(t.parent for t in targets):
            d.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TrmboundsError(
            f"cannot create a directory in {root}: {exc.strerror or exc}"
        ) from None
    # The one output check (writable place, name length, ...), then atomic writes: a
    # symlink is replaced by the file, never the file it points to.
    _io.check_outputs([("examples", t) for t in targets], force=force)
    written = []
    for name, t in zip((*EXAMPLES, INDEX), targets, strict=True):
        data = index_text().encode() if name == INDEX else (_root() / name).read_bytes()
        with _io.atomic_output(t) as tmp:
            tmp.write_bytes(data)
        written.append(t)
    return written
