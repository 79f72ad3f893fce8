"""The audit's buffer and its appends: every row, in order, typed, through the child
process on a local folder and through the server's thread elsewhere (or when the child
is gone)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

import omfs
from omfs.serve.audit import COLUMNS, Audit
from omfs.serve.audit_writer import TEST_ENV


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


def _stopped(pid: int) -> None:
    """Stop process ``pid`` and wait until it is stopped (it reads nothing more)."""
    os.kill(pid, signal.SIGSTOP)
    stat = Path(f"/proc/{pid}/stat")
    while stat.read_text().rsplit(")", 1)[1].split()[0] != "T":
        time.sleep(0.01)


def _fed(tmp_path, count: int, **options) -> tuple:
    om = omfs.setup(str(tmp_path / "store"))
    audit = Audit(om.datasets, interval=3600, **options)
    audit.start()
    for row in _rows(0, count):
        audit.add(row)
    return om, audit


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="reads /proc")
def test_a_child_killed_before_it_committed_loses_no_row(tmp_path):
    om, audit = _fed(tmp_path, 4)
    _stopped(audit._writer.process.pid)
    assert audit.flush() == 4  # sent: in the pipe, unread
    audit._writer.process.kill()
    for row in _rows(4, 2):
        audit.add(row)
    audit.close()  # the server appends the batch the child never committed
    _check(om, 6)


def test_a_child_that_committed_but_did_not_acknowledge_is_not_appended_twice(
    tmp_path, monkeypatch
):
    monkeypatch.setenv(TEST_ENV, "noack")  # the child ends after its commit, before its ack
    om, audit = _fed(tmp_path, 3)
    audit.flush()
    audit.close()
    _check(om, 3)


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="reads /proc")
def test_a_stalled_child_does_not_hang_shutdown(tmp_path, caplog):
    om, audit = _fed(tmp_path, 0, send_timeout=0.5, close_timeout=5)
    _stopped(audit._writer.process.pid)
    for row in _rows(0, 8000):  # more than the pipe holds
        audit.add(row)
    closing = threading.Thread(target=audit.close)
    closing.start()
    closing.join(60)
    assert not closing.is_alive(), "close() hangs on a stalled child"
    _check(om, 8000)  # killed, and the server appended its rows


def test_a_full_buffer_drops_the_oldest_rows_and_says_so(tmp_path, caplog):
    om = omfs.setup(str(tmp_path / "store"))
    audit = Audit(om.datasets, interval=3600, child=False, batch=2, limit=4)
    for row in _rows(0, 7):
        audit.add(row)
    audit.close()
    assert om.datasets.get("serving/audit")["request_id"].tolist() == ["r3", "r4", "r5", "r6"]
    assert "3 audit rows lost" in caplog.text


def test_a_dead_child_is_restarted_and_reaped(tmp_path):
    om, audit = _fed(tmp_path, 2)
    audit.flush()
    first = audit._writer.process
    first.kill()
    first.wait()
    for row in _rows(2, 3):
        audit.add(row)
    assert audit.flush() == 3
    assert audit._writer is not None and audit._writer.process.pid != first.pid
    audit.close()
    _check(om, 5)


def test_the_child_does_not_import_modules_from_the_working_directory(tmp_path, monkeypatch):
    planted = tmp_path / "cwd"
    planted.mkdir()
    marker = tmp_path / "PWNED"
    (planted / "msgspec.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.chdir(planted)
    om, audit = _fed(tmp_path, 2)
    audit.close()
    assert not marker.exists()
    _check(om, 2)


def test_the_child_imports_no_web_stack():
    code = "import sys, omfs.serve.audit_writer; print('starlette' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_columns_a_user_added_to_the_audit_are_filled_with_nulls(tmp_path):
    om, audit = _fed(tmp_path, 2)
    audit.flush()
    audit.close()
    extra = om.datasets.get("serving/audit").tail(1).assign(note="checked")
    om.datasets.put(extra, "serving/audit", append=True, new_columns=True)
    audit = Audit(om.datasets, interval=3600)
    audit.start()
    for row in _rows(2, 2):
        audit.add(row)
    audit.close()
    got = om.datasets.get("serving/audit")
    assert got["request_id"].tolist() == ["r0", "r1", "r1", "r2", "r3"]
    assert got["note"].tolist()[2] == "checked" and got["note"].iloc[3:].isna().all()
