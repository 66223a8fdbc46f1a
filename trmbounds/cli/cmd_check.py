"""``trmbounds check``: the TRM guarantee, step by step, on saved training logs."""

from __future__ import annotations

import csv
import math
import os
import re
import struct
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import TrmboundsError
from ._common import (
    ADV_RANGE_OPT,
    CONSTANTS_OPT,
    FORCE_OPT,
    JSON_OPT,
    KL_MAX_OPT,
    REWARD_RANGE_OPT,
    TV_MAX_OPT,
    Constants,
    atomic_output,
    check_outputs,
    console,
    dumps,
    fmt,
    print_json,
)

EPILOG = """
Examples:

  trmbounds check metrics.jsonl --preset verl --kl-max 0.05

  trmbounds check wandb_export.csv --preset slime --steps-per-rollout 2 \\
      --tv-max 0.01

  # a TRL / HF TensorBoard directory (train/ prefixes)

  trmbounds check runs/ --kl-max 0.05

  # a crashed and resumed run: its logs in the order written (later wins)

  trmbounds check run1/metrics.jsonl run2/metrics.jsonl --kl-max 0.05

  trmbounds check tokens.parquet --kl-max 1e-3 --trm-max 0.05 \\
      --trm-avg 0.001 --json

  trmbounds check metrics.jsonl --kl-max 0.05 --map surrogate=actor/pg_gain \\
      -o steps.csv --plot timeline.png
"""


def _preset_enum() -> type[Enum]:
    from ..logs.frameworks import PRESETS

    names = ["auto", *PRESETS]
    return Enum("Preset", {n.replace("-", "_"): n for n in names}, type=str)


#: auto, then one value per framework module of trmbounds.logs.frameworks.
Preset = _preset_enum()


class Format(str, Enum):
    jsonl = "jsonl"
    csv = "csv"
    parquet = "parquet"
    tensorboard = "tensorboard"


_STYLE = {
    "refuted": "bold red",
    "vacuous": "red",
    "guaranteed": "bold green",
    "estimated-gain": "cyan",
    "non-vacuous": "green",
    "unknown": "yellow",
}
_BIG = 32 << 20  # show a progress bar from this file size on
_PLOT_EXT = (".png", ".svg", ".pdf")


# Loaded lazily by trmbounds.cli.Group (lazy_commands["check"] = "cmd_check").
app = typer.Typer(add_completion=False)


@app.command(
    "check", epilog=EPILOG, short_help="The guarantee, step by step, on saved training logs."
)
def check_cmd(
    logs: Annotated[
        list[Path],
        typer.Argument(
            help="Per-step metric log (.jsonl, .csv, .parquet, TensorBoard event file or "
            "directory), per-token dump (.jsonl, .parquet with log-prob list columns) or "
            "statistics file (.json, from trmbounds measure) or HF trainer_state.json. "
            "Several per-step logs of one training (a resumed run) are read in the order "
            "given: at a step logged twice the later file's values win.",
            show_default=False,
            metavar="LOG...",
        ),
    ],
    preset: Annotated[
        Preset,
        typer.Option("--preset", help="Framework whose metric names to use (auto: best match)."),
    ] = Preset.auto,  # type: ignore[attr-defined]
    maps: Annotated[
        list[str] | None,
        typer.Option(
            "--map",
            help="QUANTITY=COLUMN, repeatable (e.g. T_max=len/max, surrogate=actor/gain); "
            "quantities in docs/logs.md.",
            show_default=False,
        ),
    ] = None,
    format: Annotated[
        Format | None,
        typer.Option(
            "--format", help="Input format [default: from the extension].", show_default=False
        ),
    ] = None,
    length: Annotated[
        str,
        typer.Option(
            "--length",
            metavar="T|max",
            help="Horizon T of the bounds: the generation cap (max_new_tokens). max: the "
            "cap the framework logs, else the longest response seen (an empirical horizon: "
            "no guarantee).",
        ),
    ] = "max",
    run: Annotated[
        str | None,
        typer.Option(
            "--run",
            help="wandb chart export (CSV) with several runs: the run to check (its name "
            "in the '<run name> - <metric>' columns).",
            show_default=False,
            metavar="NAME",
        ),
    ] = None,
    steps_per_rollout: Annotated[
        int,
        typer.Option(
            "--steps-per-rollout",
            min=1,
            help="slime/miles: train steps per rollout (num_steps_per_rollout), to align "
            "rollout/step rows with train/step.",
        ),
    ] = 1,
    kl_max: KL_MAX_OPT = None,
    tv_max: TV_MAX_OPT = None,
    adv_range: ADV_RANGE_OPT = None,
    reward_range: REWARD_RANGE_OPT = None,
    constants: CONSTANTS_OPT = Constants.paper,
    missing_mass: Annotated[
        float | None,
        typer.Option(
            "--missing-mass",
            help="Assumed mass m that pi_theta puts outside the rollout support, summed over "
            "positions (top-k/top-p rollouts); adds max|R|*m to B* [default: full support].",
            show_default=False,
        ),
    ] = None,
    trm_max: Annotated[
        float | None,
        typer.Option(
            "--trm-max",
            help="Per-token dumps only: the mask's TRM-Max threshold on max k2, to compute "
            "which responses it accepts [default: 0.05]. Not an assumption of the bound: give "
            "your TRM threshold as --kl-max.",
            show_default=False,
        ),
    ] = None,
    trm_avg: Annotated[
        float | None,
        typer.Option(
            "--trm-avg",
            help="Per-token dumps: TRM-Avg threshold on mean k3 [default: 0.001].",
            show_default=False,
        ),
    ] = None,
    ser: Annotated[
        float | None,
        typer.Option(
            "--ser",
            help="Per-token dumps: SER threshold on mean |rho - 1| [default: 0.05].",
            show_default=False,
        ),
    ] = None,
    ln_trm: Annotated[
        float | None,
        typer.Option(
            "--ln-trm",
            help="Per-token dumps: LN-TRM threshold delta_W (needs --kl-max/--tv-max).",
            show_default=False,
        ),
    ] = None,
    loss_mask_zeros: Annotated[
        str,
        typer.Option(
            "--loss-mask-zeros",
            help="Per-token dumps: what a 0 in the loss mask is. masked: maybe a generated "
            "token a TRM/IS mask removed (the surrogate is then the masked one: never "
            "'guaranteed'); not-generated: a prompt, padding or tool/environment token.",
            metavar="masked|not-generated",
        ),
    ] = "masked",
    confidence: Annotated[
        float,
        typer.Option(
            "--confidence",
            help="Level of the one-sided lower confidence bound on the surrogate, per step "
            "(about 1 - C of truly bad steps may still pass).",
            metavar="C",
        ),
    ] = 0.95,
    skip_bad: Annotated[
        bool, typer.Option("--skip-bad", help="Skip malformed records (counted and reported).")
    ] = False,
    report: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write the report, every step, to FILE (.csv or .json).",
            show_default=False,
            metavar="FILE",
        ),
    ] = None,
    report_old: Annotated[
        Path | None, typer.Option("--report", hidden=True, show_default=False)
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot",
            help="Write a timeline plot (bound, states, acceptance) to FILE (.png, .svg, .pdf).",
            show_default=False,
            metavar="FILE",
        ),
    ] = None,
    fail_on: Annotated[
        str | None,
        typer.Option(
            "--fail-on",
            help="Exit with code 1 when any step is in one of these states, "
            "comma-separated (e.g. refuted,vacuous), for CI; usage errors exit 2.",
            show_default=False,
            metavar="STATE[,STATE]",
        ),
    ] = None,
    force: FORCE_OPT = False,
    json: JSON_OPT = False,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet", "-q", help="Print only the verdict line (the states, the worst step)."
        ),
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help="Print every note in full (the framework's caveats, the statistics' "
            "definitions); by default the long ones are counted, not printed.",
        ),
    ] = False,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            "-f",
            help="Follow a growing JSONL/CSV metric log or TensorBoard run like tail -f: print "
            "each new step's "
            "verdict as it lands (a JSON object per line with --json); start over when the "
            "file is truncated or re-created; stop at Ctrl-C (exit 130) or at the first "
            "--fail-on state (exit 1).",
        ),
    ] = False,
    interval: Annotated[
        float,
        typer.Option("--interval", help="--follow: seconds between polls of the log.", min=0.01),
    ] = 1.0,
) -> None:
    """At each step of a training log: is the TRM guarantee refuted, vacuous,
    guaranteed, an estimated gain, non-vacuous or unknown?

    Turns what RL frameworks log (sampled-token mismatch metrics, or per-token
    log-probabilities) into the paper's statistics, each labelled certified, estimate
    (± 95 % CI), proxy, lower bound or assumed, and evaluates the unified bound B* under
    your trust-region assumption (--kl-max/--tv-max, e.g. the TRM threshold) and under
    the estimates, at the horizon T = the generation cap (--length). 'guaranteed' needs a
    one-sided 95 % lower confidence bound on the surrogate above B*; the rule of every
    state is in docs/logs.md.
    """
    from ..logs.check import STATES, Assumption, check_log

    if adv_range is not None and reward_range is not None:
        raise TrmboundsError("give --adv-range or --reward-range, not both")
    if report is not None and report_old is not None:
        raise TrmboundsError("give -o/--output (--report is its old name), not both")
    report = report if report is not None else report_old
    # the library validates (the same checks as `trmbounds eval`'s statistics), in the
    # command's terms
    from ._render import in_flags

    flags = {"kl_max": "--kl-max", "tv_max": "--tv-max", "adv_range": "--adv-range",
             "reward_range": "--reward-range", "missing_mass": "--missing-mass",
             "confidence": "--confidence"}  # fmt: skip
    with in_flags(flags):
        assumption = Assumption(
            kl_max=kl_max,
            tv_max=tv_max,
            adv_range=1.0 if adv_range is None else adv_range,
            constants=constants.value,
            reward_range=tuple(reward_range) if reward_range is not None else None,
            missing_mass=missing_mass,
            confidence=confidence,
        )
    gate = _fail_states(fail_on, STATES)
    if follow:
        bad_opts = [n for n, v in (("-o/--output", report), ("--plot", plot),
                    ("--steps-per-rollout", steps_per_rollout != 1),
                    ("--trm-max/--trm-avg/--ser/--ln-trm", any(x is not None for x in
                     (trm_max, trm_avg, ser, ln_trm)))) if v]  # fmt: skip
        if len(logs) > 1 or bad_opts:
            raise TrmboundsError(
                "--follow follows one metric log and prints each step: "
                + (f"{', '.join(bad_opts)} not allowed with it" if bad_opts else "give one LOG")
            )
        _follow(logs[0], format.value if format else None, preset.value, maps or [], length,
                assumption, json, gate, interval, skip_bad)  # fmt: skip
        return
    if report is not None and report.suffix.lower() not in (".csv", ".json"):
        raise TrmboundsError(f"-o/--output {report}: use a .csv or .json file name")
    if plot is not None and plot.suffix.lower() not in _PLOT_EXT:
        raise TrmboundsError(f"--plot {plot}: use a {', '.join(_PLOT_EXT)} file name")
    log, more = logs[0], logs[1:]
    for each in logs:
        if not each.exists():
            raise TrmboundsError(f"log file not found: {each}")
    ins = [f for each in logs for f in _inputs(each, (report, plot))]
    check_outputs([("-o/--output", report), ("--plot", plot)], ins, force)
    tok = {
        k: v
        for k, v in dict(trm_max=trm_max, trm_avg=trm_avg, ser=ser, ln_trm=ln_trm).items()
        if v is not None
    }
    if loss_mask_zeros != "masked":
        tok["loss_mask_zeros"] = loss_mask_zeros
    kw = dict(
        format=format.value if format else None,
        preset=preset.value,
        maps=maps or [],
        length=length,
        assumption=assumption,
        skip_bad=skip_bad,
        **tok,
    )
    if steps_per_rollout != 1:
        kw["steps_per_rollout"] = steps_per_rollout
    if more:
        kw["more"] = more
    if run is not None:
        kw["run"] = run
    if log.stat().st_size >= _BIG:
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        with Progress(
            SpinnerColumn(),
            TextColumn("reading {task.description}: {task.completed:,} records"),
            TimeElapsedColumn(),
            console=console(stderr=True),
            transient=True,
        ) as prog:
            task = prog.add_task(log.name, total=None)
            with _dir_hint(log):
                result = check_log(log, progress=lambda n: prog.update(task, completed=n), **kw)
    else:
        # --trm-max on a metric log: the run's TRM threshold is the assumption --kl-max
        with in_flags({}, {"this is a per-step metric log": "this is a per-step metric log; "
                           "a run's TRM threshold is the bound's assumption: --kl-max"}):  # fmt: skip
            with _dir_hint(log):
                result = check_log(log, **kw)
    if report is not None:
        with atomic_output(report) as tmp:
            _write_report(result, tmp, report.suffix.lower())
    if plot is not None:
        from ..logs.timeline import plot_timeline

        ax = plot_timeline(result)
        with atomic_output(plot) as tmp:
            ax.figure.savefig(tmp, format=plot.suffix.lower().lstrip("."), dpi=150)
    failed = _failed(result, gate, STATES)
    if json:
        d = result.to_dict()
        if gate:
            d["fail_on"] = {"states": sorted(gate), "steps": [_int_or(x) for x in failed]}
        print_json(d)
    else:
        con = console()
        if not quiet:
            _render(result, report, plot, length=length, trm_max=trm_max, verbose=verbose)
        if failed:
            con.print(
                f"[bold red]fail[/bold red] (--fail-on {','.join(sorted(gate))}): "
                f"{len(failed):,} step(s), first at step {_show(failed[0])}; exit code 1"
            )
        # the last line, whatever came before: the run's verdict in one line
        con.print(_verdict(result, con.width), soft_wrap=True)
    if failed:
        raise typer.Exit(1)


def _int_or(x: float):
    return int(x) if math.isfinite(x) and x.is_integer() else x


def _inputs(log: Path, outputs) -> list[Path]:
    """The inputs an existing output could be, foreseen before any work: the log, an
    output inside a log directory (every file of it counts as read), and the
    per-position file a statistics file names. A path that does not exist yet is no
    input. This is only the early refusal: :func:`trmbounds._io.atomic_output` checks
    every output against the files actually opened, right before replacing it."""
    existing = [Path(o) for o in outputs if o is not None and os.path.lexists(o)]
    if not existing:
        return [log]
    if log.is_dir():
        root = os.path.realpath(log)
        inside = [o for o in existing if os.path.commonpath([os.path.realpath(o), root]) == root]
        return [log, *inside]
    if log.suffix.lower() == ".json" and log.is_file():  # never a pipe: it is read once
        from .._io import load_json

        try:
            pp = load_json(log, "statistics file").get("per_position")
        except (TrmboundsError, AttributeError):
            return [log]  # reported when the file is read
        if isinstance(pp, str) and pp and "\x00" not in pp:
            return [log, log.parent / pp]
    return [log]


def _fail_states(value: str | None, states) -> set[str]:
    if value is None:
        return set()
    names = {t.strip().lower() for t in value.split(",")}
    if "" in names:
        raise TrmboundsError(f"--fail-on {value!r}: an empty state name")
    unknown = sorted(names - set(states))
    if unknown:
        raise TrmboundsError(
            f"--fail-on: unknown state(s) {', '.join(unknown)}; choose from {', '.join(states)}"
        )
    return names


def _failed(result, gate: set[str], states) -> list[float]:
    """The step numbers of the steps in one of the ``gate`` states."""
    codes = {states.index(s) for s in gate}
    return [float(result.step[i]) for i in range(len(result)) if int(result.state[i]) in codes]


@contextmanager
def _dir_hint(log: Path):
    """A directory the readers do not take: say which logs it holds, and how to give one."""
    try:
        yield
    except TrmboundsError as exc:
        if not log.is_dir() or "no TensorBoard event files" not in str(exc):
            raise
        from .._io import walk  # iterative, bounded depth, regular files only

        found = sorted(
            str((d / f).relative_to(log))
            for d, _, files in walk(log)
            for f in files
            if Path(f).suffix.lower() in (".jsonl", ".csv", ".parquet", ".json")
        )
        if not found:
            raise
        more = f" (and {len(found) - 3} more)" if len(found) > 3 else ""
        exc.args = (
            f"{exc}; it holds {', '.join(found[:3])}{more}: give the file, e.g. "
            f"trmbounds check {log / found[0]}",
        )
        raise


def _write_report(result, path: Path, ext: str) -> None:
    if ext == ".json":
        path.write_text(dumps(result.to_dict()) + "\n", encoding="utf-8")
        return
    scalar = [k for k, s in result.stats.items() if s.values.dtype.kind != "O"]
    head = ["step", "T", "T_source", "status", "flagged", "unified", "basis", "unified_estimate",
            "vacuous"]  # fmt: skip
    for k in scalar:  # plain names (no spaces, no brackets); the status in its own column
        head += [k, f"{k}_status"]
        if result.stats[k].ci is not None:
            head += [f"{k}_ci_lo", f"{k}_ci_hi"]
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(head)
        u = result.unified
        from ..logs.check import STATES

        for i in range(len(result)):
            row = [
                _num(result.step[i]),
                _num(result.T[i]),
                result.T_source[i],
                STATES[int(result.state[i])],
                result.flagged_by(i),
                _num(u[i]),
                result.basis_of(i),
                _num(result.bound_est[i]),
                "" if math.isnan(u[i]) else str(bool(u[i] >= result.assumption.adv_range)).lower(),
            ]
            for k in scalar:
                s = result.stats[k]
                row += [_num(s.values[i]), s.status]
                if s.ci is not None:
                    row += [_num(s.ci[0][i]), _num(s.ci[1][i])]
            w.writerow(row)


def _num(x) -> str:
    """A CSV cell: integers plain, other numbers to 15 significant digits, shortest form.

    15 digits are what a float64 holds exactly in decimal; the last one or two of its
    17 are round-off of the arithmetic that made it (1 - 0.41 is 0.5900000000000001).

    >>> _num(1 - 0.41), _num(2e-06), _num(0.43658253498383365), _num(1024.0)
    ('0.59', '2e-06', '0.436582534983834', '1024')
    """
    x = float(x)
    if math.isnan(x):
        return ""
    if x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return repr(float(f"{x:.15g}"))


def _render(
    result,
    report,
    plot,
    length: str = "max",
    trm_max: float | None = None,
    verbose: bool = False,
) -> None:
    from rich.table import Table

    from ..logs.check import ACCEPT_TARGET, STATES
    from ._render import print_table

    con = console()
    a = result.assumption
    assume = (
        ", ".join(
            f"{n} = {v:g} (assumed)" for n, v in (("δ", a.kl_max), ("ε", a.tv_max)) if v is not None
        )
        or "none (nothing can be guaranteed)"
    )
    if a.kl_max is None and trm_max is not None:  # the threshold a user may take for δ
        assume += (
            f";  --trm-max {trm_max:g} only computes the mask's acceptance: "
            "give δ as --kl-max for a bound"
        )
    rr = a.reward_range
    rr = "" if rr is None else f" (rewards in [{rr[0]:g}, {rr[1]:g}])"
    mm = "" if a.missing_mass is None else f";  missing mass m = {a.missing_mass:g} (assumed)"
    con.print(
        f"[bold]trmbounds check[/bold]  {result.path}  ({result.kind}, preset {result.preset})\n"
        f"assumption: {assume};  a = {a.adv_range:g}{rr}{mm};  constants = {a.constants}\n"
        f"horizon T: {_horizon(result, length)};  B* rests on: {result.basis}"
    )
    if result.stats:
        # text only (no number to cut): the "from" column wraps, even inside a long name
        t = Table(title="statistics", title_justify="left", header_style="bold")
        t.add_column("statistic", no_wrap=True)
        t.add_column("status", no_wrap=True)
        t.add_column("from", overflow="fold")
        for k, s in result.stats.items():
            t.add_row(k, s.status, s.source)
        con.print(t)
    else:
        con.print("statistics: none logged (the bound rests on the assumption alone)")

    n = len(result)
    idx = list(range(n)) if n <= 20 else sorted(result.worst(10))
    title = "steps" if n <= 20 else f"the 10 worst of {n:,} steps"
    st = Table(title=title, title_justify="left", header_style="bold")
    heads = ("step", "T", "D_KL^seq", "ε ≥", "δ proxy", "accept", "B*", "B* est.", "status")
    for c in heads:
        st.add_column(c, justify="right" if c != "status" else "left", no_wrap=c == "status")
    ks = result.stats.get("kl_seq")
    lb = result.stats.get("tv_lower_bound")
    px = result.stats.get("kl_max_proxy") or result.stats.get("kl_max_proxy_k3")
    px_name = "max k2" if "kl_max_proxy" in result.stats else "max k3"
    acc = result.acceptance
    u = result.unified
    for i in idx:
        state = STATES[int(result.state[i])]
        kseq = "—" if ks is None else _ci(ks, i)
        st.add_row(
            _show(result.step[i]),
            _show(result.T[i]),
            kseq,
            "—" if lb is None else _f(lb.values[i]),
            "—" if px is None else _f(px.values[i]),
            "—" if acc is None else _acc(acc[i]),
            _f(u[i]),
            _f(result.bound_est[i]),
            _styled(state)
            + ("" if math.isnan(result.flag[i]) else " [bold magenta]⚑[/bold magenta]"),
        )
    import numpy as np

    same = bool(np.all((result.bound_est[idx] == u[idx]) | np.isnan(u[idx])))
    if same:  # B* est. adds nothing: no estimate is logged that lowers the bound
        st.columns = [c for c in st.columns if c.header != "B* est."]
    print_table(con, st, keep=("status",), drop_empty=True)
    legend = []
    if lb is not None:
        legend.append("ε ≥: certified lower bound on ε")
    if px is not None:
        legend.append(f"δ proxy: {px_name} (a detector)")
    legend.append("B*: under " + ("the assumption" if a.given else "the estimates (no assumption)"))
    if not same:
        legend.append("B* est.: with the estimated D_KL^seq / D_TV^seq / D̄_t plugged in")
    con.print("[dim]" + "; ".join(legend) + "[/dim]")
    ref = [i for i in range(n) if result.state[i] == STATES.index("refuted")]
    for i in ref[:5]:
        con.print(
            f"[bold red]refuted[/bold red] at step {_show(result.step[i])}: {result.refuted_by(i)}"
        )
    if len(ref) > 5:
        con.print(f"… and {len(ref) - 5:,} more refuted step(s)")
    flg = [i for i in result.worst(len(result)) if not math.isnan(result.flag[i])]
    for i in flg[:5]:
        con.print(
            f"[bold magenta]⚑ flagged[/bold magenta] at step {_show(result.step[i])}: "
            f"{result.flagged_by(i)} (a detector, not a bound: the assumption is doubtful)"
        )
    if len(flg) > 5:
        con.print(f"… and {len(flg) - 5:,} more flagged step(s)")
    lines = result.summary()
    if "acceptance" in lines:
        ac = lines["acceptance"]
        below = ac["steps_below_target"]
        col = "red" if below else "green"
        con.print(
            f"acceptance: mean {ac['mean']:.1%}, min {ac['min']:.1%}; [{col}]{below:,} step(s) "
            f"below[/{col}] the paper's {ACCEPT_TARGET:.0%} recommendation"
        )
    if result.kind == "tokens" and result.extra.get("length_bins"):
        bt = Table(title="acceptance by length (TRM-Max vs the i.i.d. (1-p)^T length bias)",
                   title_justify="left", header_style="bold")  # fmt: skip
        for c in ("lengths", "sequences", "TRM-Max", "combined", "(1-p)^T"):
            bt.add_column(c, justify="right")
        for b in result.extra["length_bins"]:
            bt.add_row(f"{b['lengths'][0]}–{b['lengths'][1]}", f"{b['sequences']:,}",
                       f"{b['accept_trm_max']:.1%}", f"{b['accept_combined']:.1%}",
                       f"{b['predicted_iid']:.1%}")  # fmt: skip
        print_table(con, bt)
        con.print(f"per-token violation rate p = {result.extra['per_token_violation_rate']:.3g}")
    if result.bad.count:
        con.print(f"[yellow]skipped {result.bad.count:,} malformed record(s)[/yellow]; first:")
        for m in result.bad.messages[:5]:
            con.print(f"  {m}", markup=False)
    for col, (cnt, first) in result.invalid.items():
        con.print(
            f"[yellow]{cnt:,} NaN/inf/out-of-range value(s) in {col}[/yellow] (first at step "
            f"{first}); not used",
            markup=True,
        )
    if result.rows_without_metrics:
        con.print(f"{result.rows_without_metrics:,} row(s) without any mismatch metric (not steps)")
    _print_notes(con, result, verbose)
    for what, p in (("report", report), ("plot", plot)):
        if p is not None:
            con.print(f"{what} written to {p}")


#: Frameworks whose caveats open a note with their name (``verl: ...``, ``verl's ...``).
_FRAMEWORKS = ("verl", "slime", "trl", "prime-rl", "skyrl", "openrlhf", "areal")
#: A note longer than this (characters) is printed only with -v, unless it warns.
_LONG_NOTE = 110


def _note_group(note: str) -> str:
    """``warning``, ``input``, ``framework``, ``validity`` or ``statistic``: where a note
    is printed.

    From the note's text alone (the notes are plain sentences of :class:`CheckResult`), so
    that the grouping follows any new note without a change here.
    """
    low = note.lower()
    if note.startswith("WARNING"):
        return "warning"
    if re.search(r" read(:| \()", note) or "NOT read" in note or "not searched" in note:
        return "input"  # which file was read (and which not): always shown
    first = low.split(":", 1)[0].split("'s ", 1)[0].strip()
    if first in _FRAMEWORKS:
        return "framework"
    if low.startswith(("support:", "the guarantee needs", "maxima:", "exact:", "empirical:")):
        return "validity"
    return "statistic"


def _short(note: str) -> str:
    """A validity condition's first clause (up to '; '), the rest is for -v."""
    head = note.split("; ", 1)[0]
    return head if len(head) < len(note) else note


def _print_notes(con, result, verbose: bool) -> None:
    """The notes, grouped: warnings, the framework's caveats, the validity conditions.

    Without ``verbose`` the framework's caveats and the long notes on the statistics are
    counted on one line each (``-v`` prints them); validity conditions are one short
    block of first clauses. JSON and CSV outputs keep every note in full.
    """
    from ._render import print_bullet

    groups: dict[str, list[str]] = {"warning": [], "input": [], "framework": [],
                                    "validity": [], "statistic": []}  # fmt: skip
    for note in result.notes:
        groups[_note_group(note)].append(note)
    for note in groups["warning"]:
        con.print(f"note: {note}", markup=False, style="yellow")
    for note in groups["input"]:
        con.print(f"note: {note}", markup=False)
    hidden = []
    stats = groups["statistic"]
    shown = stats if verbose else [n for n in stats if len(n) <= _LONG_NOTE]
    for note in shown:
        con.print(f"note: {note}", markup=False, style="dim")
    if len(shown) < len(stats):
        hidden.append(f"{len(stats) - len(shown)} on the statistics")
    fw = groups["framework"]
    if fw and verbose:
        con.print(f"{result.preset} caveats (how it logs these metrics):", style="dim")
        for note in fw:
            print_bullet(con, note, style="dim")
    elif fw:
        hidden.append(f"{len(fw)} caveat(s) of how {result.preset} logs these metrics")
    if groups["validity"]:
        con.print("validity (docs/theory.md):", style="dim")
        for note in groups["validity"]:
            print_bullet(con, note if verbose else _short(note), style="dim")
    if hidden:
        con.print(f"notes not shown: {'; '.join(hidden)} (-v shows them)", style="dim")


def _verdict(result, width: int = 80) -> str:
    """The run's verdict: the count of each state, the worst step, what B* rests on.

    One sentence, the last thing printed; wrapped at spaces to ``width`` (a number is
    never cut) with its continuation lines indented, so that it reads as one block.
    """
    import textwrap

    from ..logs.check import STATES

    nb = "\u00a0"  # joins what must stay on one line ("B* = 0.4366"); a space once wrapped
    counts = result.counts()
    n = len(result)
    states = ", ".join(f"{s}{nb}{counts[s]:,}" for s in STATES if counts.get(s))
    text = f"verdict: {states or 'no steps'} ({n:,}{nb}step{'s' if n != 1 else ''})"
    worst = result.worst(1)
    if worst:
        i = worst[0]
        state = STATES[int(result.state[i])]
        b = f"B*{nb}={nb}{_f(result.unified[i])}"
        text += f"; worst step{nb}{_show(result.step[i])}: {state}, {b}"
    text += f"; B* rests on: {result.basis}"
    if result.assumes:
        text += f"; assuming {', '.join(result.assumes)}"
    if result.not_guaranteed and counts.get("estimated-gain"):
        text += f"; never guaranteed here: {', '.join(result.not_guaranteed)}"
    lines = textwrap.wrap(text, width=max(width, 40), subsequent_indent="  ",
                          break_on_hyphens=False, break_long_words=False)  # fmt: skip
    out = "\n".join(lines).replace(nb, " ").replace("verdict:", "[bold]verdict[/bold]:", 1)
    for st in STATES:  # the state names in their colours (whole words only)
        out = re.sub(rf"(?<![\w-]){re.escape(st)}(?![\w-])", _styled(st), out)
    return out


_HORIZON = {
    "assumed": "--length (the generation cap)",
    "logged cap": "the generation cap the log records",
    "empirical": "the longest response seen (empirical)",
}


def _horizon(result, length: str = "max") -> str:
    """Where T comes from; a --length below the responses is said here, not only in a note."""
    sources = sorted(set(result.T_source))
    text = "; ".join(_HORIZON.get(k, k) for k in sources)
    if "empirical" in sources and length.strip().lower() != "max":
        n = sum(1 for k in result.T_source if k == "empirical")
        text += (
            f" at {n:,} step(s): --length {length} is below a response the log holds, so "
            "T is that response's length there"
        )
    return text


def _styled(state: str) -> str:
    """A state name in its colour (any state of STATES; unknown names plain)."""
    st = _STYLE.get(state)
    return f"[{st}]{state}[/{st}]" if st else state


def _show(x) -> str:
    x = float(x)
    if math.isnan(x):
        return "—"
    return f"{int(x):,}" if x.is_integer() else f"{x:g}"


def _f(x) -> str:
    x = float(x)
    return "—" if math.isnan(x) else fmt(x)


def _acc(x) -> str:
    x = float(x)
    return "—" if math.isnan(x) else f"{x:.1%}"


def _ci(s, i) -> str:
    v = float(s.values[i])
    if math.isnan(v):
        return "—"
    if s.ci is None or math.isinf(v):  # an infinite estimate (overflow) has no ± width
        return fmt(v)
    lo, hi = float(s.ci[0][i]), float(s.ci[1][i])
    if not (math.isfinite(lo) and math.isfinite(hi)):  # a half-open interval: no ± width
        if math.isfinite(lo):
            return f"{fmt(v)} (CI ≥ {fmt(lo)})"
        return f"{fmt(v)} (CI ≤ {fmt(hi)})" if math.isfinite(hi) else fmt(v)
    return f"{fmt(v)} ± {fmt((hi - lo) / 2)}"


# ---------------------------------------------------------------------------- --follow
def _follow(log: Path, format, preset, maps, length, assumption, json_out, gate, interval,
            skip_bad) -> None:  # fmt: skip
    """``check --follow``: each new step of a growing JSONL/CSV log through
    :class:`trmbounds.monitor.Monitor`, printed as it lands."""
    import sys
    import time

    from ..logs import frameworks as P
    from ..logs.readers import BadRecords, sniff_format
    from ..monitor import Monitor

    fmt_ = "tensorboard" if log.is_dir() and format is None else sniff_format(log, format)
    if fmt_ not in ("jsonl", "csv", "tensorboard"):
        raise TrmboundsError(
            f"--follow reads a JSONL or CSV metric log or a TensorBoard run; {log} is {fmt_}"
        )
    maps = P.parse_maps(maps)
    if preset != "auto" and preset not in P.PRESETS:
        raise TrmboundsError(f"unknown preset {preset!r}")
    step_map = maps.get("step")

    def new_monitor() -> Monitor:
        return Monitor(length=None if length == "max" else length, preset=preset, maps=maps,
                       source=str(log), assumption=assumption)  # fmt: skip

    def step_cols(m: Monitor) -> tuple[str, ...]:
        if step_map:
            return (step_map,)
        pr = [P.PRESETS[m.preset]] if m.preset else list(P.PRESETS.values())
        return tuple(dict.fromkeys(c for x in ([P.PRESETS["generic"]] + pr) for c in
                                   x.step_columns))  # fmt: skip

    bad = BadRecords(skip=skip_bad)
    tail = _TBTail(log) if fmt_ == "tensorboard" else _Tail(log)
    m, header = new_monitor(), None
    n = 0
    err = sys.stderr
    if not log.exists():
        typer.echo(f"waiting for {log} to appear (Ctrl-C to stop)", err=True)
    try:
        while True:
            lines, restarted = tail.poll()
            if restarted:
                typer.echo(f"note: {log} was truncated or re-created: following it again "
                           "from the top", err=True)  # fmt: skip
                m, header = new_monitor(), None
            for lineno, raw in lines:
                if isinstance(raw, dict):  # a TensorBoard step: the events' own step
                    row, cols = raw, ("step",)
                elif fmt_ == "csv" and header is None:
                    header = next(csv.reader([raw.decode("utf-8", "replace")]), [])
                    continue
                else:
                    row, cols = _follow_row(raw, fmt_, header, log, lineno, bad), step_cols(m)
                if row is None:
                    continue
                step = next((row[c] for c in cols if _is_num(row.get(c))), None)
                if step is None:
                    bad.add(log, f"line {lineno}", "no step value")
                    continue
                v = m.update(step, row)
                if v is None:
                    continue
                n += 1
                typer.echo(dumps(v.to_dict()) if json_out else _follow_line(v))
                if v.state in gate:
                    typer.echo(f"fail (--fail-on {','.join(sorted(gate))}): step "
                               f"{_show(v.step)} is {v.state}; exit code 1", err=True)  # fmt: skip
                    raise typer.Exit(1)
            err.flush()
            time.sleep(interval)
    except KeyboardInterrupt:
        more = f"; {bad.count:,} malformed line(s) skipped" if bad.count else ""
        typer.echo(f"stopped (Ctrl-C) after {n:,} verdict(s){more}", err=True)
        raise typer.Exit(130) from None
    finally:
        tail.close()


def _is_num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _follow_row(raw: bytes, fmt_: str, header, log, lineno: int, bad) -> dict | None:
    """One complete line of the log as a dict of metrics (None: blank or bad, skipped)."""
    from .._io import json_record

    if not raw.strip():
        return None
    if fmt_ == "jsonl":
        try:
            obj = json_record(raw)
        except ValueError as exc:
            bad.add(log, f"line {lineno}", str(exc))
            return None
        if not isinstance(obj, dict):
            bad.add(log, f"line {lineno}", f"expected a JSON object, got {type(obj).__name__}")
            return None
        row = {k: v for k, v in obj.items() if k != "data"}
        if isinstance(obj.get("data"), dict):  # verl's file logger: {"step": N, "data": {...}}
            row.update(obj["data"])
        return row
    cells = next(csv.reader([raw.decode("utf-8", "replace").rstrip("\r")]), [])
    if len(cells) != len(header):
        bad.add(log, f"line {lineno}", f"{len(cells)} fields, the header has {len(header)}")
        return None
    row = {}
    for h, c in zip(header, cells):
        c = c.strip()
        if c == "":
            continue
        try:
            row[h] = float(c)
        except ValueError:
            row[h] = c  # text: ignored by the monitor
    return row


def _follow_line(v) -> str:
    """One step's verdict on one line."""
    T = "—" if v.T is None else f"{v.T:,}"
    s = (f"step {_show(v.step)}  T {T} ({v.T_source})  B* {_f(v.unified)} ({v.basis})  "
         f"{v.state}")  # fmt: skip
    if v.refuted_by:
        s += f": {v.refuted_by}"
    if v.flagged:
        s += f"  ⚑ flagged: {v.flagged}"
    return s


class _Tail:
    """The complete new lines of a file that grows (``tail -f``): a partial last line
    waits for its newline; a file truncated, rewritten or re-created (another inode) is
    read again from the top."""

    _HEAD = 256  # bytes compared to tell a rewritten file from a grown one

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fh: Any = None
        self.ident: tuple[int, int] | None = None
        self.pos = 0
        self.head = b""
        self.buf = b""
        self.lineno = 0
        self.drained = False  # the rest of a rotated file was read (tail -F)

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None

    def _lines(self, data: bytes, flush: bool = False) -> list[tuple[int, bytes]]:
        parts = (self.buf + data).split(b"\n")
        self.buf = parts.pop()  # a partial last line: kept until its newline
        if flush and self.buf.strip():  # the file is finished: its last line too
            parts.append(self.buf)
            self.buf = b""
        out = []
        for raw in parts:
            self.lineno += 1
            out.append((self.lineno, raw))
        return out

    def _changed(self, st) -> bool:
        if (st.st_dev, st.st_ino) != self.ident or st.st_size < self.pos:
            return True
        return os.pread(self.fh.fileno(), len(self.head), 0) != self.head

    def poll(self) -> tuple[list[tuple[int, bytes]], bool]:
        """(line number, line) of the new complete lines; whether the file started over."""
        from .._io import regular_file_reason

        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return [], False  # removed (being re-created?): wait for it
        restarted = False
        rotated = self.fh is not None and (st.st_dev, st.st_ino) != self.ident
        if rotated and not self.drained:
            # renamed away and replaced (logrotate): first the lines written to the old
            # file since the last poll, then the new file at the next poll
            self.drained = True
            return self._lines(self.fh.read(), flush=True), False
        if self.fh is None or self._changed(st):
            why = regular_file_reason(self.path)
            if why and why.startswith("not a regular"):
                raise TrmboundsError(f"--follow {self.path}: {why}")
            restarted = self.fh is not None
            self.close()
            try:
                self.fh = open(self.path, "rb")  # noqa: SIM115 - kept open between polls
            except FileNotFoundError:
                return [], False
            except OSError as exc:
                raise TrmboundsError(f"--follow {self.path}: {exc.strerror or exc}") from None
            st = os.fstat(self.fh.fileno())
            self.ident, self.pos, self.head, self.buf, self.lineno = (
                (st.st_dev, st.st_ino), 0, b"", b"", 0)  # fmt: skip
            self.drained = False
        data = self.fh.read()
        if not data:
            return [], restarted
        if len(self.head) < self._HEAD:
            self.head += data[: self._HEAD - len(self.head)]
        self.pos += len(data)
        return self._lines(data), restarted


class _TBTail:
    """The new steps of a TensorBoard run being written: its event files (a restart
    adds one) read on from where the last poll stopped, a partial record left until it
    is complete. TensorBoard writes one event per scalar: a step is returned when an
    event of another step arrives or a poll finds nothing new. A file shrunk, replaced
    or removed: the run is read again from the top."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.off: dict[Path, tuple[int, int]] = {}  # file -> (inode, bytes read)
        self.cur: tuple[float, dict] | None = None

    def close(self) -> None:
        pass

    def poll(self) -> tuple[list[tuple[int, dict]], bool]:
        from ..errors import InputFileError
        from ..logs import tensorboard as TB

        try:
            files = TB.event_files(self.path)
            stats = {f: os.stat(f) for f in files}
        except (InputFileError, FileNotFoundError):
            return [], False  # no event file yet (or one vanishing): wait
        restarted = any(
            f not in stats or stats[f].st_ino != ino or stats[f].st_size < n
            for f, (ino, n) in self.off.items()
        )
        if restarted:
            self.off, self.cur = {}, None
        out: list[tuple[int, dict]] = []
        new = False
        for f in files:
            ino, off = self.off.get(f, (stats[f].st_ino, 0))
            with open(f, "rb") as fh:
                fh.seek(off)
                while True:
                    head = fh.read(12)
                    if len(head) < 12:
                        break
                    (n,) = struct.unpack("<Q", head[:8])
                    if TB.masked_crc32c(head[:8]) != struct.unpack("<I", head[8:])[0]:
                        raise TrmboundsError(f"{f}: corrupt record length at byte {off:,}")
                    data = fh.read(n)
                    if len(data) < n or len(fh.read(4)) < 4:
                        break  # a record being written: read it at a later poll
                    off, new = fh.tell(), True
                    step, scalars = TB._event_scalars(data)
                    if not scalars:
                        continue
                    step = float(step or 0)
                    if self.cur is not None and self.cur[0] != step:
                        out.append((len(out) + 1, self.cur[1]))
                        self.cur = None
                    if self.cur is None:
                        self.cur = (step, {"step": step})
                    self.cur[1].update(scalars)
            self.off[f] = (ino, off)
        if not new and self.cur is not None:  # nothing new: the pending step is complete
            out.append((len(out) + 1, self.cur[1]))
            self.cur = None
        return out, restarted
