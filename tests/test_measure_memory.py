"""Memory bounded by the input: ``measure --rollouts`` runs each case in a child process
under an address-space cap (``RLIMIT_AS``) and the child's peak resident size is asserted."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
resource = pytest.importorskip("resource")  # POSIX

from tinymodel import tiny_llama  # noqa: E402

from trmbounds.measure.scoring import BATCH_TOKENS, _token_batches  # noqa: E402

#: Address-space cap of the child: torch and transformers reserve far more virtual memory
#: than they touch, so this is a guard against a runaway, not the assertion.
CAP = 6 * 2**30

CHILD = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({cap}, {cap}))
from trmbounds.cli import app
try:
    app({args!r})
finally:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    open({peak_file!r}, "w").write(str(peak))
"""


def _run(tmp_path, args):
    peak_file = tmp_path / "peak"
    code = CHILD.format(cap=CAP, args=args, peak_file=str(peak_file))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    return p, int(peak_file.read_text()) * 1024


def _rec(n):
    lp = math.log(0.5)
    return {
        "prompt_ids": [2, 5],
        "response_ids": [7] * n,
        "logprobs": [lp] * n,
        "top_logprobs": [{"7": lp}] * n,
    }


def _baseline(tmp_path):
    """The child's peak when it only imports what measure --rollouts imports."""
    code = (
        "import resource, torch, transformers, trmbounds.cli, trmbounds.measure; "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    return int(p.stdout) * 1024


def test_one_long_rollout_batched_with_a_short_one_stays_small(tmp_path):
    """One 10,000-token and one 1-token rollout (the default batch of 8 took both): padded
    into one forward, the attention mask alone was 2 x 10,000² values; peak RSS 1.39 GB,
    after 0.43 GB (the 20,000-token case of the issue: 4.3 GB, then 0.45 GB)."""
    d = tmp_path / "model"
    tiny_llama(0).save_pretrained(d)
    r = tmp_path / "r.jsonl"
    r.write_text(json.dumps(_rec(10_000)) + "\n" + json.dumps(_rec(1)) + "\n")
    args = ["measure", "--rollouts", str(r), "--train", str(d), "-o", str(tmp_path / "m.json")]
    p, peak = _run(tmp_path, [*args, "--json"])
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["inputs"]["kl_max"] >= 0
    # the input holds 10,001 tokens: activations of a 32-wide, 2-layer model over them,
    # and per-token records, are a few MB; allow 400 MB above the imports
    assert peak - _baseline(tmp_path) < 400e6, peak


TWO_RUNS = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({cap}, {cap}))
from trmbounds.cli import app

def run(args):
    try:
        app(args, standalone_mode=False)
    except SystemExit as exc:
        assert not exc.code, exc.code
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux

print("PEAKS", run({small!r}), run({big!r}))
"""


def test_records_and_aggregation_grow_with_the_tokens_not_responses_times_longest(tmp_path):
    """4,000 one-token rollouts and one 1,000-token rollout: 5,000 tokens (the issue's
    4,000 + 4,000-token case peaked at 3.27 GB: dense 4,001 x 4,000 arrays in the
    records, the aggregation and the token dump; after, 0.44 GB, the same as 2
    rollouts). One child runs the same command on 2 one-token rollouts first (model,
    imports, writers: everything that does not grow with the input), then on the case;
    the growth of its peak is bounded by a per-token allowance (15 kB a token: the
    rollout objects as read, packed records, aggregation temporaries, the trainer's
    activations over the long rollout). Dense arrays would take 4,001 x 1,000 x 8 bytes
    = 32 MB each, about 25 of them: some 800 MB."""
    d = tmp_path / "model"
    tiny_llama(0).save_pretrained(d)
    small, big = tmp_path / "small.jsonl", tmp_path / "big.jsonl"
    small.write_text((json.dumps(_rec(1)) + "\n") * 2)
    big.write_text((json.dumps(_rec(1)) + "\n") * 4000 + json.dumps(_rec(1000)) + "\n")
    n_tokens = 4000 + 1000

    def args(path, tag):
        out = ["-o", str(tmp_path / f"{tag}.json"), "--tokens", str(tmp_path / f"{tag}.jsonl")]
        return ["measure", "--rollouts", str(path), "--train", str(d), *out, "--batch-size", "256"]

    code = TWO_RUNS.format(cap=CAP, small=args(small, "s"), big=args(big, "b"))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    peak_small, peak_big = (int(x) * 1024 for x in p.stdout.split("PEAKS")[-1].split())
    # what was measured is in the outputs: every token, the longest response as T
    assert json.loads((tmp_path / "b.json").read_text())["T"] == 1000
    assert sum(1 for _ in open(tmp_path / "b.jsonl")) == 4001
    assert peak_big - peak_small < 15_000 * n_tokens, (peak_small, peak_big)


def test_batches_are_sorted_by_length_and_bounded_in_tokens():
    lengths = [10_000, 1, 5, 3, 2000, 2000, 2000, 2000, 2000, 7]
    batches = _token_batches(lengths, batch_size=8)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) <= 8
        longest = max(lengths[i] for i in b)
        assert len(b) == 1 or len(b) * longest <= BATCH_TOKENS  # padded tokens
    assert [0] in batches  # the long rollout alone


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError(
            "[enforce fail at alloc_cpu.cpp:119] data. DefaultCPUAllocator: can't allocate "
            "memory: you tried to allocate 4294967296 bytes. Error code 12 (Cannot allocate "
            "memory)"
        ),
        MemoryError(),
    ],
)
def test_an_allocation_failure_is_one_line(tmp_path, monkeypatch, exc):
    """torch's CPU allocator raises RuntimeError (the message above is torch 2.13's), not
    MemoryError: both are one line, exit 2, and no output file is left."""
    from typer.testing import CliRunner

    import trmbounds.measure as tm
    from trmbounds.cli import app

    def fail(*args, **kwargs):
        raise exc

    monkeypatch.setattr(tm, "measure_rollouts", fail)
    r = tmp_path / "r.jsonl"
    r.write_text(json.dumps(_rec(2)) + "\n")
    (tmp_path / "model").mkdir()
    out = tmp_path / "m.json"
    args = ["measure", "--rollouts", str(r), "--train", str(tmp_path / "model")]
    res = CliRunner().invoke(app, [*args, "-o", str(out), "--json"])
    assert res.exit_code == 2, res.output
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("Error: out of memory ("), err
    assert res.stdout == "" and not out.exists()
