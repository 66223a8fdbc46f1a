"""The ``trmbounds`` command line (typer + rich): the only layer that prints.

Each command builds one library object, calls the library, and renders the result.
Library errors (:class:`trmbounds.TrmboundsError`) and usage errors become one line
on stderr and exit code 2.
"""

from __future__ import annotations

from typing import Annotated

import typer

from .. import __version__
from ._common import Group

app = typer.Typer(
    cls=Group,
    name="trmbounds",
    help="Error bounds of Trust Region Masking (Li et al., arXiv:2512.23075): is a "
    "policy update still guaranteed to improve, given the rollout/training mismatch?",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain click help (see _common.plain_help)
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"trmbounds {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """Error bounds of Trust Region Masking for long-horizon LLM RL."""


# Commands load lazily, in this order: name -> module of trmbounds.cli whose own
# typer `app` defines the command. `trmbounds eval` imports and builds only itself.
Group.lazy_commands = {
    "eval": "cmd_eval",
    "plot": "cmd_plot",
    "solve": "cmd_solve",
    "check": "cmd_check",
    "measure": "cmd_measure",
    "examples": "cmd_examples",
}
