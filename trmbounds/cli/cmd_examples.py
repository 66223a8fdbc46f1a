"""``trmbounds examples DIR``: write the example inputs shipped with the package."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import FORCE_OPT, console

EPILOG = """
Examples:

  trmbounds examples trm-examples

  cd trm-examples && trmbounds check tokens.jsonl --kl-max 1e-3
"""

app = typer.Typer(add_completion=False)


@app.command(
    "examples", epilog=EPILOG, short_help="Write example inputs to try every command offline."
)
def examples_cmd(
    directory: Annotated[
        Path,
        typer.Argument(
            help="Directory to write the examples into (created if missing).",
            show_default=False,
            metavar="DIR",
        ),
    ],
    force: FORCE_OPT = False,
) -> None:
    """Write example inputs (framework logs, a statistics file, a per-token dump) to try every command.

    The files are small and need no network; the command lists where each one comes from. Existing files are never overwritten without --force.
    """
    from rich.padding import Padding
    from rich.text import Text

    from ..examples import EXAMPLES, INDEX, write_examples

    written = write_examples(directory, force=force)
    con = console()
    con.print(Text(f"Wrote {len(written)} example files into {directory}:"), soft_wrap=True)
    for path, name in zip(written, (*EXAMPLES, INDEX), strict=True):
        con.print(Text(f"  {path}", style="bold"), soft_wrap=True)
        text = EXAMPLES.get(name, "this list: what each file is and where it came from")
        con.print(Padding(Text(text), (0, 0, 0, 6)))
