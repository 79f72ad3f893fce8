"""The audit's buffer and its appends: every row, in order, typed, through the child
process on a local folder and through the server's thread elsewhere (or when the child
is gone)."""

from __future__ import annotations

import pandas as pd
import pytest

import omfs
from omfs.serve.audit import COLUMNS, Audit


def _rows(start: int, count: int) -> list[tuple]:
    """Audit rows ``r<start>``...; odd ones without a version (a request for no model)."""
    rows = []
    for i in range(start, start + count):
        version = None if i % 2 else i
        row = (f"r{i}", 1.7e9 + i, "m", version, None, "predict", 200, 0.5, 1, None)
        rows.append((*row, None, None, None))
    return rows


def _check(om, count: int) -> pd.DataFrame:
    audit = om.datasets.get("serving/audit")
    assert list(audit.columns) == list(COLUMNS)
    assert audit["request_id"].tolist() == [f"r{i}" for i in range(count)]  # all, in order
    assert str(audit["version"].dtype) == "Int64"  # not float64: a null does not turn 2 to 2.0
    assert audit["version"].isna().tolist() == [bool(i % 2) for i in range(count)]
    assert audit["version"].dropna().tolist() == list(range(0, count, 2))
    assert audit["time"].iloc[1] == pd.Timestamp(1.7e9 + 1, unit="s", tz="UTC")
    return audit


@pytest.mark.parametrize("child", [True, False], ids=["child", "thread"])
def test_every_row_is_appended_in_order(tmp_path, child):
    om = omfs.setup(str(tmp_path / "store"))
    audit = Audit(om.datasets, interval=3600, child=child)
    audit.start()
    assert (audit._writer is not None) is child
    for batch in range(3):
        for row in _rows(batch * 4, 4):
            audit.add(row)
        assert audit.flush() == 4
    for row in _rows(12, 3):
        audit.add(row)  # buffered at shutdown: close appends them
    audit.close()
    _check(om, 15)
    assert len(om.datasets.versions("serving/audit")) == 4  # one commit per batch


def test_a_local_folder_appends_through_a_child_and_memory_in_the_thread(tmp_path):
    assert Audit(omfs.setup(str(tmp_path)).datasets).child
    assert not Audit(omfs.setup("memory://audit-child").datasets).child


def test_when_the_child_is_gone_the_thread_appends(tmp_path):
    om = omfs.setup(str(tmp_path / "store"))
    audit = Audit(om.datasets, interval=3600)
    audit.start()
    for row in _rows(0, 2):
        audit.add(row)
    audit.flush()
    writer = audit._writer
    writer.conn.close()  # the child appends what it has and ends
    writer.process.wait(60)
    for row in _rows(2, 3):
        audit.add(row)
    assert audit.flush() == 3 and audit._writer is None
    audit.close()
    _check(om, 5)
