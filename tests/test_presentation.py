"""Readable in every terminal (issue 10): tables at 80 columns, help texts, one naming.

Every table of every command is rendered at 80 columns (what rich assumes in a pipe):
no line is wider, no cell is cut (``…``), and the numbers the JSON output holds appear
whole in the text.
"""

from __future__ import annotations

import io
import json
import re

import pytest
from logfixtures import metric_rows, tabular_dump, write_jsonl
from rich.cells import cell_len
from rich.console import Console
from typer.testing import CliRunner

from trmbounds.cli import app
from trmbounds.cli._common import fmt
from trmbounds.logs.check import STATES

runner = CliRunner()
NARROW = {"COLUMNS": "80", "TERM": "dumb"}


def narrow(*args):
    return runner.invoke(app, [str(a) for a in args], env=NARROW)


def assert_fits(text: str):
    for line in text.splitlines():
        assert cell_len(line) <= 80, line
    assert "…" not in text  # rich's mark of a cut cell


def test_eval_table_at_80_columns():
    args = ["eval", "--T", "4096", "--kl-max", "1e-4", "--tv-max", "5e-3", "--kl-seq", "0.01"]
    r = narrow(*args)
    assert r.exit_code == 0
    assert_fits(r.stdout)
    bounds = json.loads(narrow(*args, "--json").stdout)["bounds"]
    for v in bounds.values():
        if v is not None:
            assert fmt(v) in r.stdout


def test_solve_table_at_80_columns():
    r = narrow(
        "solve", "--T", "1024,4096,32768,1048576", "--budget-frac", "0.05", "--kl-avg", "1e-9"
    )
    assert r.exit_code == 0
    assert_fits(r.stdout)  # the table, and the prose around it wrapped at 80 columns
    table = r.stdout
    res = json.loads(
        narrow(
            "solve",
            "--T",
            "1024,4096,32768,1048576",
            "--budget-frac",
            "0.05",
            "--kl-avg",
            "1e-9",
            "--json",
        ).stdout  # fmt: skip
    )["results"]
    for x in res:
        assert fmt(x["kl_max"]) in table


@pytest.fixture
def wide_log(tmp_path):
    # values whose shortest text is long: 1.097e-05, 6,001, ... (the cut numbers of issue 10)
    rows = metric_rows("verl")
    for i, r in enumerate(rows):
        d = r.get("data", r)
        for k in list(d):
            if isinstance(d[k], float) and "length" not in k:
                d[k] = d[k] * 1.0971234567 * (1 + i / 7)
    return write_jsonl(tmp_path / "m.jsonl", rows)


def test_check_tables_at_80_columns(wide_log):
    r = narrow("check", wide_log, "--kl-max", "1e-4")
    assert r.exit_code == 0, r.stderr
    assert_fits(r.stdout)
    steps = json.loads(narrow("check", wide_log, "--kl-max", "1e-4", "--json").stdout)["steps"]
    for s in steps:
        for k in ("unified", "unified_estimate"):
            if s.get(k) is not None:
                assert fmt(s[k]) in r.stdout, (k, s[k])
        assert s["status"] in r.stdout


def test_check_token_tables_at_80_columns(tmp_path):
    p = tmp_path / "tok.jsonl"
    tabular_dump(p, seed=3, n=400, T=6)
    r = narrow("check", p, "--kl-max", "0.5")
    assert r.exit_code == 0, r.stderr
    assert_fits(r.stdout)


def test_check_stats_file_at_80_columns(tmp_path):
    p = tmp_path / "s.json"
    p.write_text(
        json.dumps(
            {
                "T": 8192,
                "kl_max": 1.0971234e-05,
                "kl_seq": 0.0123456,
                "tv_seq": 0.0456789,
                "status": {"kl_max": "empirical", "kl_seq": "estimate", "tv_seq": "estimate"},
            }
        )  # fmt: skip
    )
    r = narrow("check", p, "--kl-max", "2e-5")
    assert r.exit_code == 0, r.stderr
    assert_fits(r.stdout)


def test_measure_table_at_80_columns():
    from trmbounds.cli.cmd_measure import _render_measurement
    from trmbounds.stats import Stats

    s = Stats(
        T=1234,
        kl_max=1.0971234e-3,
        tv_max=6.0012345e-3,
        kl_seq=0.0123456,
        tv_seq=0.0456789,
        per_position=[1.23456e-3] * 1234,
        missing_mass=1.23e-4,
        status={k: "estimate" for k in ("kl_seq", "tv_seq", "per_position", "missing_mass")}
        | {"kl_max": "empirical", "tv_max": "empirical"},
        meta={"n_sequences": 64, "n_tokens": 54321,
              "ci95": {"kl_seq": [0.0101234, 0.0145678], "tv_seq": [0.0401234, 0.0501234]}},
    )  # fmt: skip
    buf = io.StringIO()
    _render_measurement(s, "measured.json", Console(file=buf, width=80, highlight=False))
    out = buf.getvalue()
    assert_fits(out)
    for x in (s.kl_max, s.tv_max, s.kl_seq, 0.0101234, 0.0145678, 0.0501234):
        assert fmt(x) in out


def test_print_table_splits_instead_of_cutting():
    from rich.table import Table

    from trmbounds.cli._render import print_table

    t = Table(title="wide")
    for c in ("key", *(f"column {i}" for i in range(12)), "status"):
        t.add_column(c, justify="right")
    t.add_row("1", *(f"{1.0971234e-05 * (i + 1):.6e}" for i in range(12)), "refuted")
    buf = io.StringIO()
    print_table(Console(file=buf, width=80), t, keep=("status",))
    out = buf.getvalue()
    assert_fits(out)
    for i in range(12):
        assert f"{1.0971234e-05 * (i + 1):.6e}" in out
    assert out.count("refuted") >= 2  # the kept column repeats in every part


# ---------------------------------------------------------------- help
def test_bare_commands_print_help_once():
    for args in ([], ["plot"]):
        r = narrow(*args)
        assert r.exit_code == 0 and r.stdout.count("Usage:") == 1, r.stdout


def test_help_shows_defaults_and_whole_choice_lists():
    for cmd in (
        [],
        ["examples"],
        ["eval"],
        ["check"],
        ["solve"],
        ["plot", "curves"],
        ["plot", "heatmap"],
        ["measure"],
        ["plot"],
    ):
        r = narrow(*cmd, "--help")
        assert r.exit_code == 0
        assert_fits(r.stdout)  # the examples too (long ones continue with a backslash)
    r = narrow("eval", "--help")
    assert "[default: 1]" in " ".join(r.stdout.split())  # --adv-range, not eaten as markup
    r = narrow("check", "--help")
    assert "Usage: trmbounds check [OPTIONS] LOG" in r.stdout and "{log}" not in r.stdout
    from trmbounds.cli.cmd_check import Preset

    flat = " ".join(r.stdout.split())
    assert "--preset PRESET" in flat
    # every choice whole (a long list is given in the help text, wrapped between names)
    assert "One of: " + ", ".join(p.value for p in Preset) + "." in flat
    assert "--fail-on" in r.stdout and "-o, --output" in r.stdout
    # examples are kept as written, line by line
    from trmbounds.cli.cmd_check import EPILOG

    shown = {line.strip() for line in r.stdout.splitlines()}
    for line in EPILOG.splitlines():
        if line.strip().startswith("trmbounds "):
            assert line.strip() in shown, line


def test_measure_help_describes_both_modes_truthfully():
    # --rollouts scores an engine's own responses (nothing sampled) and gives certified
    # interval ends, not exact values; the sampling options are then per-record defaults
    r = narrow("measure", "--help")
    assert r.exit_code == 0
    assert_fits(r.stdout)
    head, opts = r.stdout.split("Options:")
    head = " ".join(head.split())
    assert "Measure exact" not in head
    assert "--rollouts FILE --train MODEL): nothing is sampled" in head
    assert "certified per-token KL/TV intervals" in head
    assert "exact full-vocabulary KL and TV per token" in head
    opts = " ".join(opts.split("Examples:")[0].split())

    def help_of(opt, nxt):
        return opts.split(opt, 1)[1].split(nxt, 1)[0]

    tokens = help_of("--tokens <path>", "--rollouts <path>")
    assert "exact KL/TV per token; with --rollouts, their certified intervals" in tokens
    for opt, nxt in (
        ("--temperature <float>", "--top-p"),
        ("--top-p <float>", "--top-k"),
        ("--top-k <int range>", "--seed"),
    ):
        assert "With --rollouts: the default for records that do not give their own" in (
            help_of(opt, nxt)
        ), opt
    # the examples are kept as written
    from trmbounds.cli.cmd_measure import EPILOG

    shown = {line.strip() for line in r.stdout.splitlines()}
    for line in EPILOG.splitlines():
        assert line.strip() in shown, line


def test_one_naming_for_the_main_output():
    for cmd in (["check"], ["plot", "curves"], ["plot", "heatmap"], ["measure"]):
        r = narrow(*cmd, "--help")
        assert "-o, --output" in r.stdout, cmd
        options = r.stdout.split("Examples:")[0]
        assert "--out " not in options and "--report" not in options  # old names hidden


def test_version():
    r = narrow("--version")
    assert r.exit_code == 0 and re.fullmatch(r"trmbounds \d+\.\d+\.\d+\S*\n", r.stdout)


# ---------------------------------------------------------------- check --fail-on, --json
def test_fail_on_exits_1_only_for_the_named_states(tmp_path):
    log = write_jsonl(tmp_path / "m.jsonl", metric_rows("verl"))
    # with delta = 1e-4 the last step is refuted (test_logs_cli.test_json_object)
    r = narrow("check", log, "--kl-max", "1e-4", "--fail-on", "refuted")
    assert r.exit_code == 1 and "fail" in r.stdout and "Traceback" not in r.stderr
    r = narrow("check", log, "--kl-max", "1e-4", "--fail-on", "refuted,vacuous", "--json")
    d = json.loads(r.stdout)
    assert r.exit_code == 1 and d["fail_on"]["steps"][-1] == 4
    other = [s for s in STATES if s not in {st["status"] for st in d["steps"]}]
    if other:
        r = narrow("check", log, "--kl-max", "1e-4", "--fail-on", other[0])
        assert r.exit_code == 0
    r = narrow("check", log, "--kl-max", "1e-4", "--fail-on", "refuted,")
    assert r.exit_code == 2 and r.stderr.startswith("Error:")


def test_eval_json_carries_the_basis(tmp_path):
    r = narrow("eval", "--T", "100", "--kl-max", "1e-4", "--json")
    assert json.loads(r.stdout)["basis"] == "assumed"
    p = tmp_path / "s.json"
    p.write_text('{"T": 100, "kl_max": 1e-4, "kl_seq": 1e-3, "status": {"kl_seq": "estimate"}}')
    assert json.loads(narrow("eval", "--stats", p, "--json").stdout)["basis"] == "estimate"


def test_every_json_output_is_one_document(tmp_path):
    log = write_jsonl(tmp_path / "m.jsonl", metric_rows("verl"))
    for args in (
        ["eval", "--T", "100", "--kl-max", "1e-4", "--json"],
        ["solve", "--T", "100,200", "--budget", "0.1", "--json"],
        ["solve", "--kl-max", "1e-6", "--budget", "0.1", "--json"],
        ["check", log, "--kl-max", "1e-4", "--json"],
    ):
        r = narrow(*args)
        assert r.exit_code == 0
        json.loads(r.stdout)  # raises on two documents


def test_print_table_leaves_out_empty_columns_when_asked():
    from rich.table import Table

    from trmbounds.cli._render import print_table

    t = Table()
    for c in ("step", "empty", "B*"):
        t.add_column(c)
    t.add_row("1", "—", "0.25")
    t.add_row("2", "—", "0.5")
    for drop, present in ((False, True), (True, False)):
        buf = io.StringIO()
        print_table(Console(file=buf, width=80), t, drop_empty=drop)
        assert ("empty" in buf.getvalue()) is present and "0.25" in buf.getvalue()


def test_validity_notes_wrap_under_their_text(tmp_path):
    f = tmp_path / "s.json"
    f.write_text(json.dumps({"T": 4096, "kl_max": 1e-4, "missing_mass": 0.01}))
    r = narrow("eval", "--stats", f)
    assert r.exit_code == 0, r.output
    assert_fits(r.stdout)
    lines = r.stdout.split("validity\n", 1)[1].splitlines()
    assert len(lines) > 2 and any(x.startswith("    ") for x in lines)  # some note wrapped
    for x in lines:
        assert x.startswith(("  • ", "    ")) and x == x.rstrip(), repr(x)


def test_validity_notes_fit_a_narrow_terminal(tmp_path):
    f = tmp_path / "s.json"
    f.write_text(json.dumps({"T": 4096, "kl_max": 1e-4, "missing_mass": 0.01}))
    r = runner.invoke(app, ["eval", "--stats", str(f)], env={**NARROW, "COLUMNS": "40"})
    assert r.exit_code == 0, r.output
    for x in r.stdout.split("validity\n", 1)[1].splitlines():
        assert len(x) <= 40 and not x.rstrip().endswith("PDI-"), repr(x)


def test_plot_help_summaries_whole_and_length_metavar():
    r = narrow("plot", "--help")
    assert r.exit_code == 0
    rows = [ln for ln in r.stdout.splitlines() if ln.strip().startswith(("curves", "heatmap"))]
    assert len(rows) == 2 and not any(ln.rstrip().endswith("...") for ln in rows), rows
    r = narrow("check", "--help")
    line = next(ln for ln in r.stdout.splitlines() if ln.strip().startswith("--length"))
    assert "<str>" not in line and "T|max" in line
