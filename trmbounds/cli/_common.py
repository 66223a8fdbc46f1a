"""Pieces every command shares: error handling, shared options, output helpers."""

from __future__ import annotations

import math
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from ..errors import TrmboundsError

try:  # typer >= 0.26 vendors click
    from typer._click import exceptions as _cx
except ImportError:  # pragma: no cover - older typer on click
    from click import exceptions as _cx  # type: ignore[no-redef]
_Abort = getattr(_cx, "Abort", None) or typer.Abort

EXIT_USAGE = 2


class Group(TyperGroup):
    """The root command group.

    - Loads commands lazily: ``lazy_commands`` maps a command name to a module of
      ``trmbounds.cli`` whose ``app`` (a ``typer.Typer``) defines it, so that
      ``trmbounds eval`` never imports (or builds) ``plot``, ``check`` or ``measure``.
    - Turns usage errors and library errors into one line on stderr, exit code 2.
    """

    lazy_commands: dict[str, str] = {}

    def list_commands(self, ctx):
        return [
            *super().list_commands(ctx),
            *(n for n in self.lazy_commands if n not in self.commands),
        ]

    def get_command(self, ctx, cmd_name):
        cmd = super().get_command(ctx, cmd_name)
        if cmd is None and cmd_name in self.lazy_commands:
            import importlib

            module = importlib.import_module(f"trmbounds.cli.{self.lazy_commands[cmd_name]}")
            cmd = typer.main.get_command(module.app)
            cmd.name = cmd_name
            self.commands[cmd_name] = cmd
        return cmd

    def resolve_command(self, ctx, args):
        try:
            return super().resolve_command(ctx, args)
        except _cx.UsageError as exc:
            if args and "Did you mean" not in exc.message:
                from difflib import get_close_matches

                close = get_close_matches(args[0], self.list_commands(ctx))
                if close:
                    exc.message = exc.message.rstrip(".") + f". Did you mean {close[0]!r}?"
            raise

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        code: int = 0
        try:
            rv = super().main(
                args=args,
                prog_name=prog_name or "trmbounds",
                complete_var=complete_var,
                standalone_mode=False,
                **extra,
            )
            code = rv if isinstance(rv, int) else 0
        except TrmboundsError as exc:
            fail_line(str(exc))
            code = EXIT_USAGE
        except _cx.NoArgsIsHelpError as exc:
            typer.echo(exc.ctx.get_help() if exc.ctx else str(exc))
            code = 0
        except _cx.ClickException as exc:
            msg = exc.format_message().replace("\n", " ")
            ctx = getattr(exc, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            fail_line(msg + hint)
            code = exc.exit_code if exc.exit_code else EXIT_USAGE
        except _Abort:
            typer.echo("Aborted.", err=True)
            code = 1
        except BrokenPipeError:  # pragma: no cover - `trmbounds ... | head`
            code = 0
        if standalone_mode:
            sys.exit(code)
        return code


def fail_line(msg: str) -> None:
    """Print a one-line error message to stderr."""
    first = " ".join(str(msg).split())
    typer.echo(f"Error: {first}", err=True)


class Constants(str, Enum):
    paper = "paper"
    sharp = "sharp"


# ---------------------------------------------------------------- shared options
T_OPT = Annotated[
    int | None, typer.Option("--T", "-T", help="Response length T (tokens).", show_default=False)
]
KL_MAX_OPT = Annotated[
    float | None,
    typer.Option(
        "--kl-max",
        help="delta: max token-level KL(roll || theta) over contexts (e.g. the TRM-Max threshold).",
        show_default=False,
    ),
]
TV_MAX_OPT = Annotated[
    float | None,
    typer.Option("--tv-max", help="epsilon: max token-level total variation.", show_default=False),
]
KL_SEQ_OPT = Annotated[
    float | None,
    typer.Option(
        "--kl-seq", help="D_KL^seq: KL of whole-response distributions.", show_default=False
    ),
]
TV_SEQ_OPT = Annotated[
    float | None,
    typer.Option(
        "--tv-seq", help="D_TV^seq: TV of whole-response distributions.", show_default=False
    ),
]
ADV_RANGE_OPT = Annotated[
    float | None,
    typer.Option(
        "--adv-range",
        help="Advantage range a = r_max - r_min; bounds scale with it [default: 1].",
        show_default=False,
    ),
]
REWARD_RANGE_OPT = Annotated[
    tuple[float, float] | None,
    typer.Option(
        "--reward-range",
        help="Reward range LO HI, e.g. --reward-range -1 1 (sets a = HI - LO).",
        show_default=False,
        metavar="LO HI",
    ),
]
CONSTANTS_OPT = Annotated[
    Constants,
    typer.Option(
        "--constants",
        help="'paper' reproduces the paper; 'sharp' halves the constants (docs/theory.md).",
        case_sensitive=False,
    ),
]
JSON_OPT = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]
FORCE_OPT = Annotated[bool, typer.Option("--force", help="Overwrite an existing output file.")]


# ---------------------------------------------------------------- output helpers
def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if hasattr(x, "item") and getattr(x, "ndim", 1) == 0:  # numpy scalar
        x = x.item()
    if hasattr(x, "tolist"):
        return _jsonable(x.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, Path):
        return str(x)
    return x


def dumps(obj: Any) -> str:
    """JSON text of ``obj``: numpy values converted, NaN/inf as null."""
    import json

    return json.dumps(_jsonable(obj), allow_nan=False)


def print_json(obj: Any) -> None:
    """Print exactly one JSON object on stdout."""
    typer.echo(dumps(obj))


def check_output(path: Path, force: bool) -> Path:
    """Refuse to overwrite ``path`` unless ``force``; refuse a directory or a missing parent."""
    path = Path(path)
    if path.is_dir():
        raise TrmboundsError(f"{path} is a directory: give a file name for the output")
    if path.exists() and not force:
        raise TrmboundsError(f"{path} exists; pass --force to overwrite it")
    if not path.parent.exists():
        raise TrmboundsError(f"directory {path.parent} does not exist")
    return path


def console(stderr: bool = False):
    """A rich Console (imported lazily)."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, emoji=False)  # no emoji table import


def fmt(x: float | None) -> str:
    """A bound value for a table: 4 significant figures, plain or scientific."""
    if x is None:
        return "—"
    if x == 0:
        return "0"
    ax = abs(x)
    if 1e-3 <= ax < 1e5:
        return f"{x:.4g}" if ax < 1 else f"{x:,.4g}" if ax < 1e4 else f"{x:,.0f}"
    return f"{x:.3e}"
