"""The README's and docs' examples are executed, so the docs cannot drift from the code.

- Python examples (``>>>``) run as doctests.
- Every ``trmbounds …`` command of a ```bash block runs, in document order, in one
  working directory per document — as a reader who types them one after another (``cd``
  included). The README starts from an empty directory (its quick start writes the
  examples); a ``docs/*.md`` page starts in a directory holding the shipped examples
  (``trmbounds examples``) and a copy of ``tests/fixtures``. A command must succeed;
  only a command that names one of :data:`PLACEHOLDERS` (a file or hub model the
  reader brings) may fail, and then only with a one-line input error naming it — so
  its options are still checked; the files it would have written (``-o``,
  ``--tokens``) become placeholders for what follows.
- The numbers a ``measure`` command prints come from torch, whose float results differ
  across CPUs: their decimals are compared within :data:`TORCH_REL` (integers exactly).
- A ```text block right after a ```bash block is the output of the block's last
  command: its words and numbers must appear in the real output in the same order
  (layout, box characters and line wrapping aside; a line ``...`` skips output). A
  ``# Wrote FILE …`` comment is checked the same way against the command above it.
"""

from __future__ import annotations

import doctest
import json
import re
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trmbounds.cli import app

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]

#: Files and hub models the docs name that the reader brings (not shipped, not written by
#: an earlier command): a command naming one runs up to its input check.
PLACEHOLDERS = {
    "Qwen/Qwen2.5-0.5B-Instruct": "a 1 GB model from the hub (offline here: one-line error)",
    "wandb_export.csv": "a wandb export of your run",
    "tokens.parquet": "your trainer's per-token dump",
    "rollouts.jsonl": "an inference engine's rollouts (docs/rollouts.md)",
}

#: Setup commands of the docs that are not trmbounds (installing, activating a venv).
SETUP = {"python3", "python", "pip", ".", "source"}

ENV = {"COLUMNS": "120", "HF_HUB_OFFLINE": "1", "NO_COLOR": "1"}

_BOX = re.compile("[\u2500-\u257f]")


def words(text: str) -> list[str]:
    """Words and numbers of rendered output, without table borders and line breaks."""
    return _BOX.sub(" ", text).split()


#: Relative tolerance on the numbers shown for a command whose output torch computes
#: (``measure``): the demo's divergences are the bfloat16 rounding noise of its rollout
#: model, and another CPU's bfloat16 kernels round differently (the same size of noise,
#: another draw; seen up to 9% apart over three CPUs). Integers (counts, T) and words are
#: still compared exactly; tests/test_demo.py checks the demo's numbers themselves against
#: float64 recomputations.
TORCH_REL = 0.25

_NUMBER = re.compile(
    r"^([\[(]*)(-?[0-9][0-9,]*\.[0-9]*(?:e[+-]?[0-9]+)?|-?[0-9]+e[+-]?[0-9]+)([\]),;:]*)$"
)


def _same(got: str, want: str, rel: float) -> bool:
    """Word equality; with ``rel``, a decimal number within ``rel`` of the shown one (same
    brackets and punctuation around it)."""
    if got == want:
        return True
    g, w = _NUMBER.match(got), _NUMBER.match(want) if rel else None
    if not (g and w) or (g[1], g[3]) != (w[1], w[3]):
        return False
    a, b = float(g[2].replace(",", "")), float(w[2].replace(",", ""))
    return abs(a - b) <= rel * max(abs(a), abs(b))


def missing_from(output: str, shown: str, rel: float = 0.0) -> str | None:
    """``None`` when every chunk of ``shown`` (split at ``...`` lines) appears in
    ``output`` word for word, in order; else the first chunk that does not. With ``rel``
    (:data:`TORCH_REL` for torch-computed output), decimal numbers match within ``rel``."""
    have = words(output)
    pos = 0
    for chunk in re.split(r"(?m)^\s*\.\.\.\s*$", shown):
        want = words(chunk)
        if not want:
            continue
        n = len(want)
        hit = next(
            (
                i
                for i in range(pos, len(have) - n + 1)
                if all(_same(h, w, rel) for h, w in zip(have[i : i + n], want, strict=True))
            ),
            None,
        )
        if hit is None:
            return chunk.strip()
        pos = hit + n
    return None


@dataclass
class Command:
    argv: list[str]
    line: int
    wrote: list[str] = field(default_factory=list)  # "# Wrote …" comments after it


@dataclass
class Block:
    line: int
    commands: list[Command]
    output: str | None  # the ```text block right after, if any


def shell_blocks(path: Path) -> list[Block]:
    """The ```bash blocks of ``path``, their trmbounds commands and shown outputs."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        if lines[i].strip() != "```bash":
            i += 1
            continue
        start, body = i + 1, []
        i += 1
        while lines[i].strip() != "```":
            body.append(lines[i])
            i += 1
        i += 1
        j = i
        while j < len(lines) and not lines[j].strip():
            j += 1
        output = None
        if j < len(lines) and lines[j].strip() == "```text":
            k = j + 1
            while lines[k].strip() != "```":
                k += 1
            output = "\n".join(lines[j + 1 : k])
        blocks.append(Block(start, _commands(body, start, path), output))
    return blocks


def _commands(body: list[str], first: int, path: Path) -> list[Command]:
    cmds: list[Command] = []
    logical: list[tuple[int, str]] = []
    for n, text in enumerate(body, start=first + 1):
        if logical and logical[-1][1].endswith("\\"):
            logical[-1] = (logical[-1][0], logical[-1][1][:-1] + " " + text.strip())
        else:
            logical.append((n, text.strip()))
    for n, text in logical:
        if not text:
            continue
        if text.startswith("#"):
            m = re.match(r"#\s*(Wrote .*)", text)
            if m and cmds:
                cmds[-1].wrote.append(m.group(1))
            continue
        tokens = shlex.split(text, comments=True)
        segments: list[list[str]] = [[]]
        for t in tokens:
            if t == "&&":
                segments.append([])
            else:
                segments[-1].append(t)
        for seg in segments:
            if not seg:
                continue
            if seg[0] in ("trmbounds", "cd"):
                cmds.append(Command(seg, n))
            elif seg[0] not in SETUP:
                raise AssertionError(f"{path.name}:{n}: unknown shell command {seg[0]!r}")
    return cmds


def _run_doc(path: Path, tmp_path: Path, monkeypatch) -> int:
    """Run every shell example of ``path``; return how many trmbounds commands ran."""
    work = tmp_path / "work"
    work.mkdir()
    if path != README:
        from trmbounds.examples import write_examples

        write_examples(work)
        # docs pages may name the repository's test fixtures (from a clone): a copy, so
        # that no command can write into the repository
        shutil.copytree(ROOT / "tests" / "fixtures", work / "tests" / "fixtures")
    monkeypatch.chdir(work)
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    from trmbounds import hub

    monkeypatch.setattr(hub, "_cached", lambda repo_id, filename: False)  # an empty hub cache
    ran = 0
    placeholders = set(PLACEHOLDERS)
    for block in shell_blocks(path):
        last = None
        for cmd in block.commands:
            where = f"{path.name}:{cmd.line}: {shlex.join(cmd.argv)}"
            if cmd.argv[0] == "cd":
                monkeypatch.chdir(cmd.argv[1])
                continue
            r = CliRunner().invoke(app, cmd.argv[1:], env=ENV)
            ran += 1
            named = [a for a in cmd.argv if a in placeholders and not Path(a).exists()]
            if named:
                # what this command would have written is missing too, for what follows
                outs = (
                    b for a, b in zip(cmd.argv, cmd.argv[1:]) if a in ("-o", "--output", "--tokens")
                )
                placeholders.update(outs)
                # the reader's own file: the command must get as far as reading it
                err = r.stderr.strip().splitlines()
                assert r.exit_code == 2 and len(err) == 1, f"{where}\n{r.output}"
                assert err[0].startswith("Error: ") and named[0] in err[0], f"{where}\n{err}"
                assert "No such option" not in err[0] and "Invalid value" not in err[0], where
                continue
            assert r.exit_code == 0, f"{where}\n{r.output}"
            rel = TORCH_REL if cmd.argv[1] == "measure" else 0.0  # torch-computed numbers
            for wrote in cmd.wrote:
                assert missing_from(r.stdout + r.stderr, wrote, rel) is None, f"{where}: {wrote}"
            last = (where, r, rel)
        if block.output is not None and last is not None:
            where, r, rel = last
            gap = missing_from(r.stdout, block.output, rel)
            assert gap is None, f"{where}: the shown output differs here:\n{gap}\n---\n{r.stdout}"
    return ran


@pytest.mark.parametrize("path", DOCS, ids=[p.name for p in DOCS])
def test_shell_examples_run_and_print_what_the_docs_show(path, tmp_path, monkeypatch):
    ran = _run_doc(path, tmp_path, monkeypatch)
    if path == README:
        assert ran >= 12


def test_readme_shows_measure_demo_and_every_command():
    cmds = [c.argv for b in shell_blocks(README) for c in b.commands]
    names = {a[1] for a in cmds if a[0] == "trmbounds"}
    assert names >= {"eval", "plot", "solve", "check", "measure", "examples"}
    assert ["trmbounds", "measure", "--demo"] == next(
        a[:3] for a in cmds if a[:2] == ["trmbounds", "measure"]
    )


def test_the_output_check_can_fail():
    out = "┃ step ┃  B* ┃\n│  100 │ 0.1542 │ guaranteed │\n│ 101 │ 0.4366 │ non-vacuous │"
    assert missing_from(out, "│ 100 │ 0.1542 │ guaranteed │") is None
    assert missing_from(out, "100 0.1542\n...\n101 0.4366 non-vacuous") is None
    assert missing_from(out, "100 0.1543 guaranteed") is not None  # a changed number
    assert missing_from(out, "101 0.4366\n...\n100 0.1542") is not None  # the order matters
    # torch-computed output: decimals within TORCH_REL, integers and words exact
    out = "│ δ̂ │ 1.988e-04 │ [0.003511, 0.004829] │ 32 responses, 3229 tokens"
    assert missing_from(out, "δ̂ 2.122e-04 [0.003502, 0.004814] 32 responses,", TORCH_REL) is None
    assert missing_from(out, "δ̂ 2.122e-04", 0.0) is not None
    assert missing_from(out, "δ̂ 2.7e-04", TORCH_REL) is not None  # 27% apart
    assert missing_from(out, "3230 tokens", TORCH_REL) is not None  # counts are exact
    assert missing_from(out, "δ̂ 1.988e-04 [0.003511 0.004829]", TORCH_REL) is not None


def test_readme_metrics_jsonl_is_the_shipped_example():
    from trmbounds.examples import example_path

    text = README.read_text(encoding="utf-8")
    shown = re.search(r"A three-step verl log, `metrics.jsonl`.*?```text\n(.*?)```", text, re.S)
    assert shown.group(1) == example_path("metrics.jsonl").read_text(encoding="utf-8")


def test_readme_python_examples():
    res = doctest.testfile(
        str(README),
        module_relative=False,
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
    )
    assert res.attempted >= 4 and res.failed == 0


def test_readme_eval_json_example_is_the_real_output():
    text = README.read_text()
    cmd = re.search(r"```bash\n(trmbounds eval --T 4096 [^\n]*--json)\n```", text).group(1)
    shown = re.search(r"```json\n(.*?)\n```", text, re.S).group(1)
    out = CliRunner().invoke(app, cmd.split()[1:])
    assert out.exit_code == 0
    got, want = json.loads(out.stdout), json.loads(shown)
    # The README drops floats' last-bit noise (838.6560000000001 -> 838.656).
    assert got["bounds"] == pytest.approx(want["bounds"], rel=1e-12)
    assert {k: v for k, v in got.items() if k != "bounds"} == {
        k: v for k, v in want.items() if k != "bounds"
    }
