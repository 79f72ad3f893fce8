"""`om gc` and the runtime's task records: only tasks that ended go; stray names are
reported, never a traceback; a retention of 0 means 0."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

import omfs
from omfs.compute.records import new_id, task_time, write_record

ANCIENT = "20200101-000000000-0000000a"  # years older than any retention


def _at(seconds_ago: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds_ago)).isoformat()


def _started(pid: int, seconds_ago: float) -> dict:
    """A worker's ``started`` record whose last heartbeat was ``seconds_ago``."""
    host = socket.gethostname()
    return {"at": _at(seconds_ago), "beat": _at(seconds_ago), "beat_every": 5.0} | {
        "host": host,
        "pid": pid,
        "worker": "tcp://127.0.0.1:1",
        "action": "fit",
        "object": "models/m@v1",
    }


def _plant(om):
    """Records of tasks in every state (and a stray name) in ``om``; their ids."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True)  # fmt: skip
    ids = {k: new_id() for k in ("done", "cancelled", "running", "pending", "lost")}
    ids["ancient_pending"] = ANCIENT
    submitted = {"at": _at(60), "object": "models/m@v1", "action": "fit", "key": "k"}
    for task_id in ids.values():
        write_record(om.storage, task_id, "submitted", submitted)
    write_record(om.storage, ids["done"], "finished", {"status": "succeeded", "at": _at(0)})
    write_record(om.storage, ids["cancelled"], "cancelled", {"at": _at(0)})
    write_record(om.storage, ids["running"], "started", _started(os.getpid(), 1))
    write_record(om.storage, ids["lost"], "started", _started(int(dead.stdout), 60))
    om.storage.write_bytes("_tasks/00000000-000000000-00000000.submitted.json", b"{}")
    return ids


@pytest.fixture
def records(shared_root):
    root, options = shared_root
    om = omfs.setup(root, storage_options=options)
    return om, _plant(om)


def test_gc_keeps_tasks_that_have_not_ended_and_a_zero_retention_means_zero(records):
    om, ids = records
    assert om.runtime.status(ids["running"]) == "running"
    gone = {ids[k] for k in ("done", "cancelled", "lost", "ancient_pending")}
    report = om.gc(task_retention=0, dry_run=True)
    assert set(report["tasks"]) == gone
    assert om.runtime.status(ids["done"]) == "succeeded"  # a dry run removes nothing
    report = om.gc(task_retention=0)
    assert set(report["tasks"]) == gone
    skipped = {s["name"]: s["why"] for s in report["skipped"] if s["store"] == "_tasks"}
    assert set(skipped) == {ids["running"], ids["pending"], "00000000-000000000-00000000"}
    assert skipped[ids["running"]].startswith("running (no finished record)")
    assert skipped[ids["pending"]].startswith("pending (no finished record)")
    assert "not a task id" in skipped["00000000-000000000-00000000"]
    assert om.runtime.status(ids["running"]) == "running"
    assert om.runtime.status(ids["pending"]) == "pending"
    assert om.storage.exists("_tasks/00000000-000000000-00000000.submitted.json")


def test_cli_gc_reports_a_stray_record_in_one_line_and_refuses_an_empty_retention(tmp_path, cli):
    om = omfs.setup(tmp_path / "ctx")
    _plant(om)
    out = cli("--root", om.root, "gc", "--dry-run", "--task-retention", "1d")
    assert out.code == 0, out.stderr
    assert "Traceback" not in out.stderr + out.stdout
    stray = [line for line in out.stderr.splitlines() if "00000000-000000000-00000000" in line]
    assert len(stray) == 1 and "not a task id" in stray[0]
    assert f"'{ANCIENT}'" not in out.stderr  # removed (dry run): far older than 10 x 1d
    # only task records go: no "nothing to remove" or "0 file(s)" beside them (newcomer)
    assert "would remove the records of" in out.stderr
    assert "nothing to remove" not in out.stderr and "0 file(s)" not in out.stderr
    empty = cli("--root", om.root, "gc", "--dry-run", "--task-retention", "")
    assert empty.code != 0
    assert empty.stderr.strip().splitlines() == [
        "om: error: Invalid duration '': use a number and a unit (s, min, h, d, w), e.g. "
        "'90s', '5min', '1h', '30d' or '2w'"
    ]


@pytest.mark.parametrize(
    "name",
    ["00000000-000000000-00000000", "20261301-000000000-00000000", "20260101-000000000-0000000a\n"],
)
def test_an_id_must_be_a_whole_match_and_a_real_date(name):
    assert task_time(name) is None
    assert task_time("20260101-235959999-0000000a") is not None
