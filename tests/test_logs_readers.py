"""Streaming readers: formats, chunking, malformed records (trmbounds.logs.readers)."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from logfixtures import metric_rows, write_csv, write_jsonl, write_parquet

from trmbounds.errors import InputFileError
from trmbounds.logs import readers as R
from trmbounds.logs.readers import BadRecords, read_log, sniff_format


def test_jsonl_nested_and_flat_lines_merge(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text(
        '{"step": 1, "data": {"a": 0.5, "b": 2}}\n'
        '{"step": 2, "a": 1.5}\n'  # flat
        '{"step": 3, "data": {"b": NaN}}\n'  # Python's json writes NaN like this
    )
    c = read_log(p)
    assert c.lines.tolist() == [1, 2, 3]
    assert c.columns["step"].tolist() == [1, 2, 3]
    assert c.columns["a"][:2].tolist() == [0.5, 1.5] and not c.present["a"][2]
    assert c.present["b"].tolist() == [True, False, True] and math.isnan(c.columns["b"][2])


def test_jsonl_blank_lines_keep_line_numbers(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text('{"step": 1, "a": 1}\n\n{"step": 2, "a": 2}\n')
    assert read_log(p).lines.tolist() == [1, 3]


@pytest.mark.parametrize("bad_line", ['{"step": 2, "a": ', "[1, 2]", '{"step": 2, "a": "abc"}'])
def test_jsonl_bad_line_names_file_and_line(tmp_path, bad_line):
    p = tmp_path / "m.jsonl"
    p.write_text('{"step": 1, "a": 1}\n' + bad_line + '\n{"step": 3, "a": 3}\n')
    with pytest.raises(InputFileError, match=r"m\.jsonl: line 2: "):
        read_log(p, columns={"step", "a"})
    bad = BadRecords(skip=True)
    c = read_log(p, columns={"step", "a"}, bad=bad)
    assert bad.count == 1 and bad.messages[0].startswith(f"{p}: line 2:")
    assert c.lines.tolist() == [1, 3] and c.columns["a"].tolist() == [1.0, 3.0]


def test_jsonl_string_value_reason_names_column(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text('{"step": 1, "a": 1}\n{"step": 2, "a": "n/a"}\n')
    with pytest.raises(InputFileError, match=r"line 2: column 'a': 'n/a' is not a number"):
        read_log(p, columns={"a"})


def test_jsonl_many_blocks_equal_one_block(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    vals = rng.random(500).tolist()
    p = tmp_path / "m.jsonl"
    p.write_text("".join(f'{{"step": {i}, "data": {{"x": {v!r}}}}}\n' for i, v in enumerate(vals)))
    monkeypatch.setattr(R, "_BLOCK", 257)  # many blocks, lines cut at block edges
    chunks = list(R.iter_log(p))
    assert len(chunks) > 10
    c = read_log(p)
    assert c.lines.tolist() == list(range(1, 501))
    np.testing.assert_array_equal(c.columns["x"], vals)


def test_csv_wandb_export_empty_cells_and_nan(tmp_path):
    p = tmp_path / "w.csv"
    p.write_text("_step,a,b\n1,0.5,\n2,NaN,3\n3,inf,-1e-3\n")
    c = read_log(p)
    assert c.lines.tolist() == [2, 3, 4]  # the header is line 1
    assert c.present["b"].tolist() == [False, True, True]
    assert math.isnan(c.columns["a"][1]) and c.present["a"][1]
    assert c.columns["a"][2] == math.inf


def test_csv_bad_row_after_fast_batches(tmp_path, monkeypatch):
    p = tmp_path / "w.csv"
    rows = [f"{i},{i / 10}" for i in range(1, 400)]
    rows[299] = "300,oops"  # line 301
    p.write_text("_step,a\n" + "\n".join(rows) + "\n")
    monkeypatch.setattr(R, "_CSV_BLOCK", 1024)  # pyarrow yields batches before meeting it
    with pytest.raises(
        InputFileError, match=r"w\.csv: line 301: column 'a': 'oops' is not a number"
    ):
        read_log(p)
    bad = BadRecords(skip=True)
    c = read_log(p, bad=bad)
    assert bad.count == 1
    assert c.lines.tolist() == [i + 1 for i in range(1, 400) if i != 300]  # no duplicates
    assert c.columns["a"][-1] == pytest.approx(39.9)


def test_csv_wrong_field_count(tmp_path):
    p = tmp_path / "w.csv"
    p.write_text("_step,a\n1,0.5\n2,0.5,9\n")
    with pytest.raises(InputFileError, match=r"line 3: 3 fields, the header has 2"):
        read_log(p)


def test_parquet_and_all_formats_agree(tmp_path):
    rows = metric_rows("verl")
    got = []
    for p in (
        write_jsonl(tmp_path / "a.jsonl", rows),
        write_jsonl(tmp_path / "b.jsonl", rows, nested=False),
        write_csv(tmp_path / "c.csv", rows, step_col="step"),
        write_parquet(tmp_path / "d.parquet", rows),
    ):
        c = read_log(p)
        got.append({k: c.columns[k].tolist() for k in sorted(c.columns)})
    assert all(g == got[0] for g in got)
    assert got[0]["rollout_corr/k3_kl"] == [1e-5, 2e-5, 4e-5, 1e-4]


def test_parquet_string_column_is_an_error(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = tmp_path / "s.parquet"
    pq.write_table(pa.table({"step": [1, 2], "a": ["x", "y"]}), p)
    with pytest.raises(InputFileError, match=r"column 'a' has type string, expected numbers"):
        read_log(p, columns={"step", "a"})


def test_sniff_and_missing(tmp_path):
    assert sniff_format("x.ndjson") == "jsonl" and sniff_format("x.pq") == "parquet"
    with pytest.raises(InputFileError, match="pass --format"):
        sniff_format("x.log")
    with pytest.raises(InputFileError, match="log file not found"):
        read_log(tmp_path / "nope.jsonl")


def test_inputs_are_not_modified(tmp_path):
    p = write_jsonl(tmp_path / "m.jsonl", metric_rows("verl"))
    before = p.read_bytes(), p.stat().st_mtime_ns
    read_log(p)
    assert (p.read_bytes(), p.stat().st_mtime_ns) == before


def test_integers_beyond_2_53_are_read_as_doubles(tmp_path):
    big = 2**60 + 1  # not exactly representable: rounds to 2**60
    p = tmp_path / "b.jsonl"
    p.write_text('{"step": 1, "a": 0.5}\n' + f'{{"step": {big}, "a": 0.25}}\n')
    c = read_log(p)
    assert c.columns["step"].tolist() == [1.0, float(2**60)]
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    q = tmp_path / "u.parquet"
    t = pa.table({"step": pa.array([1, 2**63 + 5], pa.uint64()), "a": [0.5, 0.25]})
    pq.write_table(t, q)
    assert read_log(q).columns["step"].tolist() == [1.0, float(2**63)]


def test_csv_with_a_utf8_bom(tmp_path):
    p = tmp_path / "bom.csv"
    p.write_bytes(b"\xef\xbb\xbfstep,a\n1,0.5\n2,0.25\n")
    c = read_log(p)
    assert c.columns["step"].tolist() == [1.0, 2.0] and c.columns["a"].tolist() == [0.5, 0.25]


def test_csv_unterminated_quote_at_the_end_is_malformed(tmp_path):
    p = tmp_path / "u.csv"
    p.write_text('step,a\n1,0.5\n2,"0.25')
    with pytest.raises(InputFileError, match=r"u\.csv: line 3: unterminated quoted field"):
        read_log(p)
    bad = BadRecords(skip=True)
    c = read_log(p, bad=bad)
    assert c.columns["step"].tolist() == [1.0] and bad.count == 1
    p.write_text('step,a\n1,0.5\n2,"0.25"\n')  # closed: fine
    assert read_log(p).columns["a"].tolist() == [0.5, 0.25]


@pytest.mark.parametrize("body", [b"null\n{}\n", b"{}\nnull\n", b"  null\n", b"{}\n3\n"])
def test_jsonl_records_that_are_not_objects_are_named(tmp_path, body):
    """A record that is not an object (pyarrow's JSON reader crashes the process on a
    top-level null): one line naming it, never a crash or an empty row."""
    p = tmp_path / "f.jsonl"
    p.write_bytes(b'{"rollout_logprobs": [-0.5], "old_log_probs": [-0.4]}\n' + body)
    r = subprocess.run(
        [sys.executable, "-m", "trmbounds", "check", str(p)], capture_output=True, text=True
    )
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stderr.startswith("Error:") and "expected a JSON object" in r.stderr
