"""Pieces every command shares: error handling, shared options, output helpers."""

from __future__ import annotations

import codecs
import math
import sys
import warnings
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
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C


class Interrupted(Exception):
    """Ctrl-C during a command (raised past click's own handler)."""


class PipeClosed(Exception):
    """stdout closed by the reader (``trmbounds … | head -1``): not an OSError, so that
    neither typer (which exits 1 on EPIPE) nor rich (likewise) decide the exit code."""


#: Exit code when the reader of stdout went away: 128 + SIGPIPE, what a shell reports
#: for ``yes | head -1``; never 1, the --fail-on code.
EXIT_PIPE = 141

#: ASCII stand-ins for what a legacy console (cp1252, ascii) cannot show.
_ASCII = {
    "δ": "delta", "ε": "eps", "θ": "theta", "π": "pi", "ρ": "rho", "β": "beta",
    "α": "alpha", "σ": "sigma", "Δ": "Delta", "μ": "mu", "ζ": "zeta",
    "≥": ">=", "≤": "<=", "≠": "!=", "≈": "~", "—": "-", "–": "-", "−": "-", "±": "+/-",
    "×": "x", "·": "*", "…": "...", "→": "->", "←": "<-", "√": "sqrt", "∞": "inf",
    "⚑": "!", "✓": "ok", "✗": "x", "²": "^2", "³": "^3", "¹": "^1", "ᵀ": "^T",
    "\u0302": "^", "\u0304": "-", "‖": "||", "∑": "sum", "∈": "in", "’": "'", "“": '"',
    "”": '"', "•": "*", "°": " deg", "\u00a0": " ",
}  # fmt: skip


def _ascii_fallback(exc: UnicodeError) -> tuple[str, int]:
    """Codec error handler: an ASCII stand-in (or "?") for each character the console
    encoding cannot show."""
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    bad = exc.object[exc.start : exc.end]
    return "".join(_ASCII.get(c, "?") for c in bad), exc.end


def legible(text: str, encoding: str | None) -> str:
    """``text`` with an ASCII stand-in for each character ``encoding`` cannot encode.

    >>> legible("δ ≥ 1e-4 — T²", "cp1252"), legible("δ", "utf-8")
    ('delta >= 1e-4 — T²', 'δ')
    """
    try:
        text.encode(encoding or "utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode(encoding or "utf-8", errors="trmbounds-ascii").decode(
            encoding or "utf-8"
        )
    except LookupError:
        return text


def _tolerant_console_streams() -> None:
    """Let stdout/stderr degrade instead of failing (UnicodeEncodeError) on a console
    whose encoding lacks δ, ε or box drawing (PYTHONIOENCODING=cp1252 or ascii, an old
    Windows code page): unencodable characters get ASCII stand-ins."""
    import codecs

    for stream in (sys.stdout, sys.stderr):
        enc = getattr(stream, "encoding", None)
        try:
            name = codecs.lookup(enc).name if enc else "utf-8"
        except LookupError:
            continue
        if name.startswith("utf") or not hasattr(stream, "reconfigure"):
            continue
        try:
            stream.reconfigure(errors="trmbounds-ascii")
        except (ValueError, OSError, TypeError):  # a detached or exotic stream
            continue


codecs.register_error("trmbounds-ascii", _ascii_fallback)


def _silence_stdout() -> None:
    """After EPIPE: point stdout at /dev/null so that the flush at exit cannot fail."""
    import os

    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):
        return
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, fd)
        os.close(null)
    except OSError:
        pass


def plain_help(cmd) -> None:
    """Plain click help for ``cmd`` and its subcommands.

    rich help eats ``[default: …]`` as markup, draws the help of a bare group twice,
    breaks choice lists mid-word at 80 columns and rewraps the examples: plain click
    help has none of these faults and reads the same in a pipe. Every paragraph of an
    epilog (the examples) is kept as written.
    """
    if hasattr(cmd, "rich_markup_mode"):
        cmd.rich_markup_mode = None
    if cmd.epilog and not cmd.epilog.lstrip().startswith("\b"):
        paras = [p.strip("\n") for p in cmd.epilog.strip().split("\n\n")]
        cmd.epilog = "\n\n".join("\b\n" + p for p in paras if p.strip())
    for p in getattr(cmd, "params", []):
        choices = [str(c) for c in getattr(p.type, "choices", None) or []]
        if p.param_type_name == "option" and len("|".join(choices)) > 30:
            # A long choice list as a metavar overflows 80 columns: list it in the help,
            # where it wraps between names.
            p.metavar = (p.name or "value").upper()
            p.help = (p.help or "").rstrip() + " One of: " + ", ".join(choices) + "."
        if p.param_type_name == "argument":  # typer shows a required LOG as {log}
            name = p.metavar or (p.name or "").upper()
            shown = name if p.required else f"[{name}]"
            p.make_metavar = lambda *a, _s=shown, **k: _s
    for sub in getattr(cmd, "commands", {}).values():
        plain_help(sub)


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
            plain_help(cmd)
            self.commands[cmd_name] = cmd
        return cmd

    def invoke(self, ctx):
        # click turns Ctrl-C into Abort after printing an empty line; ours is one line.
        # typer turns EPIPE into exit code 1 (the --fail-on code): ours is EXIT_PIPE.
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise Interrupted() from None
        except BrokenPipeError:
            raise PipeClosed() from None

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
        import signal

        from .. import _io

        # Loaded: Ctrl-C raises KeyboardInterrupt again (trmbounds/__init__ makes it one
        # line, exit 130, while the modules load), so that outputs are cleaned up.
        if getattr(signal.getsignal(signal.SIGINT), "__name__", "") == "_interrupted_loading":
            signal.signal(signal.SIGINT, signal.default_int_handler)
        _tolerant_console_streams()
        # numpy's floating-point warnings ("overflow encountered in divide") are noise on
        # a terminal: the outputs already report infinite and undefined values.
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore",
                message=r".*(overflow|divide by zero|invalid value|underflow) encountered",
                category=RuntimeWarning,
            )
            # every file a reader opens is recorded: no output may replace one of them
            with _io.recording_inputs():
                return self._main(args, prog_name, complete_var, standalone_mode, **extra)

    def _main(self, args, prog_name, complete_var, standalone_mode, **extra):
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
            sys.stdout.flush()  # a closed pipe shows here, not at exit
        except PipeClosed:
            _silence_stdout()
            code = EXIT_PIPE
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
        except (Interrupted, KeyboardInterrupt):
            typer.echo("Interrupted (Ctrl-C); no partial output was left.", err=True)
            code = EXIT_INTERRUPTED
        except _Abort as exc:
            if isinstance(exc.__context__, KeyboardInterrupt):  # Ctrl-C before the command ran
                typer.echo("Interrupted (Ctrl-C); no partial output was left.", err=True)
                code = EXIT_INTERRUPTED
            else:
                typer.echo("Aborted.", err=True)
                code = 1
        except BrokenPipeError:  # `trmbounds ... | head`: outside a command (help)
            _silence_stdout()
            code = EXIT_PIPE
        except OSError as exc:  # a disk full, a file vanished mid-run: one line
            where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
            fail_line(f"{exc.strerror or exc}{where}")
            code = EXIT_USAGE
        except MemoryError:
            fail_line("out of memory")
            code = EXIT_USAGE
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
JSON_OPT = Annotated[
    bool, typer.Option("--json", help="Print one JSON document on stdout instead of tables.")
]
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


def check_output(path: Path, force: bool, inputs=(), option: str = "output") -> Path:
    """Validate one output path before any work (see :func:`check_outputs`)."""
    return check_outputs([(option, path)], inputs, force)[0]


def check_outputs(outputs, inputs=(), force: bool = False, input_dirs=()) -> list[Path]:
    """Validate every output path of a command before any work is done.

    ``outputs`` is a list of (option, path or None). Refused: a parent that is a file
    or does not exist, an unwritable place, a name too long, a directory, an existing
    file without ``force``, two outputs naming one file, and -- even with ``force`` --
    an output that is one of ``inputs`` (real path or inode) or lies inside one of
    ``input_dirs`` (a model directory). Write each output with
    :func:`write_atomic` / :func:`trmbounds._io.atomic_output`.
    """
    from .._io import check_outputs as _check

    return _check(outputs, inputs, force, input_dirs)


def atomic_output(path: Path):
    """Context manager: a temporary path next to ``path``, renamed over it on success."""
    from .._io import atomic_output as _atomic

    return _atomic(path)


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file and a rename."""
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def console(stderr: bool = False):
    """A rich Console (imported lazily)."""
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:  # rich exits 1 here: let Group decide
            self.quiet = True
            raise PipeClosed()

        def render_str(self, text: str, **kw):
            # Before rich measures it: an ASCII stand-in for what the console encoding
            # lacks (δ on cp1252), so that the columns of a table stay aligned.
            return super().render_str(legible(text, self.encoding), **kw)

    return _Console(stderr=stderr, highlight=False, emoji=False)  # no emoji table import


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
