"""TensorBoard event files: the dependency-free scalar reader (trmbounds.logs.tensorboard).

The fixture writer in logfixtures.py encodes the protobuf wire format and TFRecord
framing by hand; its files were also checked to load with TensorBoard's own
EventFileLoader, and files written by TensorBoard's EventFileWriter to load here.
"""

from __future__ import annotations

import numpy as np
import pytest
from logfixtures import BASE, metric_rows, write_tfevents

from trmbounds.errors import InputFileError
from trmbounds.logs.check import STATES, Assumption, check_log
from trmbounds.logs.readers import BadRecords, read_log
from trmbounds.logs.tensorboard import crc32c


def test_crc32c_check_value():
    # the CRC-32C check value of "123456789" (RFC 3720, appendix B.4)
    assert crc32c(b"123456789") == 0xE3069283


@pytest.mark.parametrize("form", ["simple", "tensor-float", "tensor-double"])
def test_scalar_forms(tmp_path, form):
    p = write_tfevents(tmp_path / "events.out.tfevents.1.host", metric_rows("verl"), form)
    c = read_log(p)
    assert c.unit == "record" and c.columns["step"].tolist() == [1, 2, 3, 4]
    want = np.asarray(BASE["kl_tok_mean"])
    if form != "tensor-double":  # float32 on disk
        want = want.astype(np.float32).astype(np.float64)
    np.testing.assert_array_equal(c.columns["rollout_corr/k3_kl"], want)


def test_directory_and_check(tmp_path):
    rows = metric_rows("verl")
    write_tfevents(tmp_path / "events.out.tfevents.1.a", rows[:2], "simple")
    write_tfevents(tmp_path / "events.out.tfevents.2.a", rows[2:], "tensor-double")
    r = check_log(tmp_path, assumption=Assumption(kl_max=1e-4))
    assert r.preset == "verl" and r.T.tolist() == [100, 200, 400, 800]
    assert STATES[r.state[-1]] == "refuted"  # 2e-2 > sqrt(1e-4/2) = 7.07e-3


def test_corrupt_and_truncated(tmp_path):
    p = write_tfevents(tmp_path / "events.out.tfevents.x", metric_rows("verl"))
    data = bytearray(p.read_bytes())
    data[8] ^= 0xFF  # the first record's length CRC
    p.write_bytes(bytes(data))
    with pytest.raises(InputFileError, match=r"tfevents\.x: record 1: corrupt record length"):
        read_log(p)
    bad = BadRecords(skip=True)
    assert len(read_log(p, bad=bad)) == 0 and bad.count == 1
    q = write_tfevents(tmp_path / "events.out.tfevents.y", metric_rows("verl"))
    q.write_bytes(q.read_bytes()[:-3])
    with pytest.raises(InputFileError, match=r"record 25: truncated record"):
        read_log(q)  # 1 version event + 24 scalar events (4 steps x 6 metrics)
    with pytest.raises(InputFileError, match="no TensorBoard event files"):
        read_log(tmp_path / "empty_dir" if (tmp_path / "empty_dir").mkdir() is None else None)
