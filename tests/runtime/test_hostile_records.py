"""Task records are read, not trusted: a hand-written or damaged ``_tasks/ID.*`` file makes
its task one ``failed`` row naming the file, and every command that reads it one line."""

from __future__ import annotations

import base64
import json
import socket

import pytest

import omfs
from omfs.compute.records import finished_doc, write_record

NOW = "2026-01-01T00:00:00+00:00"
GOOD = "20260101-000000000-0000000a"
DEEP = b'{"status":"succeeded","at":"%s","result":{"format":"json","value":%s}}' % (
    NOW.encode(),
    b"[" * 100_000 + b"]" * 100_000,
)
STARTED = {"at": NOW, "beat_every": 5, "host": socket.gethostname()}
#: the attacker's files (BUG 2, NOTE 22): (kind, content)
HOSTILE = {
    "list-finished": ("finished", b"[1,2,3]"),
    "text-submitted": ("submitted", b'"x"'),
    "number-status": ("finished", b'{"status":5}'),
    "text-route": ("submitted", b'{"at":1,"route":"gpu"}'),
    "text-beat": ("started", b'{"beat_every":"x","at":"2020-01-01T00:00:00+00:00"}'),
    "huge-pid": ("started", json.dumps({**STARTED, "pid": 10**21}).encode()),
    "negative-pid": ("started", json.dumps({**STARTED, "pid": -1}).encode()),
    "deep-value": ("finished", DEEP),
    "not-json": ("cancelled", b"{"),
}
#: finished records whose value cannot be decoded: (finished result doc, result.parquet)
DAMAGED = {
    "not-base64": ({"format": "parquet", "inline": "!!notbase64"}, None),
    "inline-garbage": (
        {"format": "parquet", "inline": base64.b64encode(b"garbage").decode()},
        None,
    ),
    "side-garbage": ({"format": "parquet", "type": "frame"}, b"garbage"),
    "bad-metadata": ({"format": "metadata", "value": {"nonsense": 1, "version": "x"}}, None),
}


def _id(n: int) -> str:
    return f"20260101-000000000-{n:08x}"


def _one_line(out, *parts):
    assert out.code != 0, out.stdout
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


def test_each_hostile_record_is_one_failed_row_and_one_line(om_cli):
    om, om_ = om_cli
    write_record(
        om.storage,
        GOOD,
        "finished",
        finished_doc("succeeded", result={"format": "json", "value": 3}),
    )
    ids = {}
    for n, (case, (kind, data)) in enumerate(HOSTILE.items(), start=1):
        ids[case] = _id(n)
        om.storage.write_bytes(f"_tasks/{_id(n)}.{kind}.json", data)
    out = om_("--json", "runtime", "tasks", "-n", "50")
    assert out.code == 0, out.stderr
    rows = {r["id"]: r for r in json.loads(out.stdout)}
    assert rows[GOOD]["status"] == "succeeded"
    for case, task_id in ids.items():
        kind = HOSTILE[case][0]
        row = rows[task_id]
        assert row["status"] == "failed", case
        assert f"_tasks/{task_id}.{kind}.json" in row["error"] and "remove" in row["error"]
        for command in ("status", "log", "result"):
            _one_line(om_("runtime", command, task_id), f"_tasks/{task_id}.{kind}.json", "remove")
    assert om_("runtime", "tasks").code == 0  # the table too
    assert om_("runtime", "result", GOOD).stdout.strip().endswith("3")


def test_a_damaged_value_is_one_line_naming_the_task(om_cli):
    om, om_ = om_cli
    for n, (doc, side) in enumerate(DAMAGED.values(), start=1):
        task_id = _id(n)
        write_record(om.storage, task_id, "finished", finished_doc("succeeded", result=doc))
        if side is not None:
            om.storage.write_bytes(f"_tasks/{task_id}.result.parquet", side)
        where = "result.parquet" if side is not None else "finished.json"
        _one_line(om_("runtime", "result", task_id), f"task {task_id}", f"{task_id}.{where}")


def test_files_that_are_no_task_are_not_found_and_ids_are_whole(om_cli):
    om, om_ = om_cli
    om.storage.write_bytes(f"_tasks/{_id(1)}.log.txt", b"stray\n")
    for command in ("status", "result"):
        _one_line(om_("runtime", command, _id(1)), "No task")
    _one_line(om_("runtime", "status", _id(1) + "\n"), "is not a task id")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["tasks", "-n", "0"], "-n"),
        (["tasks", "-n", "-1"], "-n"),
        (["result", _id(1), "--timeout", "nan"], "--timeout"),
        (["result", _id(1), "--timeout", "-1"], "--timeout"),
        (["result", _id(1), "--timeout", "inf"], "--timeout"),
        (["model", "m", "predict", "X", "--async", "--timeout", "0.001"], "--async and --timeout"),
        (["model", "m", "predict", "X", "--async", "--local"], "--async and --local"),
        (["--local", "model", "m", "predict", "X", "--async"], "--async and --local"),
    ],
)
def test_runtime_options_are_checked(cli, tmp_path, args, says):
    out = cli("--root", str(tmp_path), "runtime", *args)
    assert out.code == 2 and says in out.stderr, out.stderr


def test_a_missing_root_is_refused_as_dataset_commands_do(cli, tmp_path):
    for args in (["tasks"], ["status", _id(1)]):
        out = cli("--root", str(tmp_path / "nonexistent"), "runtime", *args)
        _one_line(out, "does not exist (nothing was ever stored there)")


def test_a_planted_cancel_does_not_hide_a_version_the_worker_wrote(tmp_path):
    """Attacker's finding: a cancelled.json written by hand (no claim) made a fit whose
    worker claimed the task and stored its version read cancelled."""
    from omfs.compute.claims import claim
    from omfs.compute.records import new_id, read_record

    om = omfs.setup(tmp_path / "ctx")
    fit, predict = new_id(), new_id()
    assert claim(om.storage, fit, "worker") == "worker"
    for task in (fit, predict):
        write_record(om.storage, task, "finished", finished_doc("succeeded"))
        write_record(om.storage, task, "cancelled", {"at": "2026-01-01T00:00:00+00:00"})
    assert read_record(om.storage, fit)["status"] == "succeeded"
    # a task that writes nothing (no claim): a cancel that said yes drops its value
    assert read_record(om.storage, predict)["status"] == "cancelled"
