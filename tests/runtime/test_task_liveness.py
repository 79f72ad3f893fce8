"""Tasks whose worker dies: retried elsewhere (running again, then succeeded), or read
``failed`` ("lost: ...") within a bound, and ``result(ID)`` stops waiting for them."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from omfs_clusterctx import X, Y
from omfs_test_models import SlowRegressor

import omfs
from omfs.compute import records
from omfs.compute.records import lost_reason, record_key
from omfs.compute.tasks import _Starts
from omfs.errors import NotFoundError, TaskFailedError


def _wait_for(predicate, what, timeout=60.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} within {timeout:g} s"
        time.sleep(0.05)


# -- the judgement and the heartbeat (no cluster) ------------------------------------------
def _started(**fields):
    doc = {"at": "2026-01-05T14:15:02.000000+00:00", "worker": "tcp://10.0.0.9:4000"}
    return {**doc, "host": "elsewhere", "pid": 4321, "beat_every": 5.0, **fields}


def test_a_silent_or_dead_worker_makes_its_task_read_lost():
    beat = time.time()
    fresh = _started(beat=_iso(beat))
    assert lost_reason(fresh, at=beat + 29) is None
    assert lost_reason(fresh, at=beat + 31).startswith(
        "lost: no heartbeat from worker tcp://10.0.0.9:4000 (pid 4321 on elsewhere) for 31 s"
    )
    assert lost_reason({k: v for k, v in fresh.items() if k != "beat_every"}, at=beat + 999) is None
    # a process of this host: alive is never lost; gone is lost once Dask had time to retry
    here = {**fresh, "host": records._HOST}
    assert lost_reason({**here, "pid": os.getpid()}, at=beat + 999) is None
    gone = {**here, "pid": _a_finished_pid()}
    assert lost_reason(gone, at=beat + records.RETRY_GRACE - 1) is None
    line = lost_reason(gone, at=beat + records.RETRY_GRACE + 1)
    assert (
        "died while running it (the cluster was stopped, or the worker was killed" in line
        and "submit it again" in line
    )


def test_the_lost_task_limits_are_settings(monkeypatch, tmp_path, cli):
    beat = time.time()
    quick = _started(beat=_iso(beat), beat_every=0.5)  # six beats: 3 s
    assert lost_reason(quick, at=beat + 10) is None  # the default: 30 s of silence
    monkeypatch.setenv("OMFS_TASK_LOST_AFTER", "5s")
    assert lost_reason(quick, at=beat + 4) is None
    assert lost_reason(quick, at=beat + 6).startswith("lost: no heartbeat")
    assert lost_reason({**quick, "beat_every": 5.0}, at=beat + 6) is None  # six beats at least
    gone = {**quick, "host": records._HOST, "pid": _a_finished_pid()}
    assert lost_reason(gone, at=beat + 2) is None  # the default grace: 10 s
    monkeypatch.setenv("OMFS_TASK_RETRY_GRACE", "1")
    assert "died while running it" in lost_reason(gone, at=beat + 2)

    om = omfs.setup(tmp_path / "ctx")
    task_id = records.new_id()
    records.write_record(om.storage, task_id, "started", {**quick, "at": _iso(beat)})
    for value in ("0", "-1", "nan", "inf", "1e999", "soon", "5m"):
        monkeypatch.setenv("OMFS_TASK_LOST_AFTER", value)
        out = cli("--root", str(tmp_path / "ctx"), "runtime", "status", task_id)
        assert out.code != 0 and len(out.stderr.splitlines()) == 1, out.stderr
        assert f"$OMFS_TASK_LOST_AFTER is {value!r}, not a number of seconds above 0" in out.stderr
        assert "e.g. 30, 90s or 2min" in out.stderr


def _iso(stamp):
    from datetime import UTC, datetime

    return datetime.fromtimestamp(stamp, UTC).isoformat()


def _a_finished_pid():
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_running_task_rewrites_its_started_record_as_heartbeat(tmp_path):
    om = omfs.setup(tmp_path / "ctx")
    starts = _Starts(after=0.02, every=0.05)
    task_id = records.new_id()
    starts.add(om.storage, task_id, {"at": records.utcnow(), "beat_every": 0.05})
    key = record_key(task_id, "started.json")
    beats = set()
    _wait_for(
        lambda: (
            om.storage.exists(key)
            and beats.add(json.loads(om.storage.read_bytes(key))["beat"]) is None
            and len(beats) >= 3
        ),
        "three heartbeats",
        timeout=20,
    )
    starts.done(task_id)
    om.storage.delete([key])
    time.sleep(0.2)  # several beats' time: none comes after done()
    assert not om.storage.exists(key)


# -- real worker processes, killed with SIGKILL ---------------------------------------------
@pytest.fixture
def doomed_workers(dask_processes):
    """Two nanny-less workers offering 'liveness=1' (killing one kills its task): name ->
    process."""
    start = dask_processes["start_worker"]
    client = dask_processes["client"]
    procs = {f"liveness-{i}": start(f"liveness-{i}", "liveness=1", "--no-nanny") for i in (0, 1)}
    client.wait_for_workers(4, timeout=120)
    yield procs
    for proc in procs.values():
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=20)
    _wait_for(
        lambda: len(client.scheduler_info(n_workers=-1)["workers"]) == 2, "the workers left", 30
    )


def _row(runtime, task_id):
    """The task's row, or {} before any record of it is written."""
    try:
        return runtime.task(task_id)
    except NotFoundError:
        return {}


def _kill_its_worker(runtime, task_id, procs, client):
    """SIGKILL the worker process that runs ``task_id`` (found by the record's worker
    address); its address."""
    row = _wait_for(
        lambda: (r := _row(runtime, task_id)).get("status") == "running" and r, "running"
    )
    names = {a: w["name"] for a, w in client.scheduler_info(n_workers=-1)["workers"].items()}
    proc = procs[names[row["worker"]]]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=20)
    return row["worker"]


@pytest.mark.cluster
@pytest.mark.slow
def test_a_task_whose_worker_dies_is_retried_or_reads_failed(
    tmp_path, dask_processes, doomed_workers, monkeypatch, cli
):
    monkeypatch.setattr(records, "RETRY_GRACE", 2.0)  # how long this reader leaves Dask
    client = dask_processes["client"]
    root = tmp_path / "ctx"
    om = omfs.setup(root, cluster=dask_processes["address"])
    om.datasets.put(X, "X")
    om.datasets.put(Y, "Y")
    om.models.put(SlowRegressor(seconds=2), "slow", attributes={"require": {"liveness": 1}})
    reader = omfs.setup(root).runtime  # another process's view: the records only

    # 1. Dask runs the task again on the other worker: running there, then succeeded
    task = om.runtime.model("slow").fit("X", "Y")
    killed = _kill_its_worker(reader, task.id, doomed_workers, client)
    again = _wait_for(
        lambda: (r := reader.task(task.id))["worker"] != killed and r, "running elsewhere"
    )
    assert again["status"] in ("running", "succeeded") and again["error"] is None
    assert reader.result(task.id, timeout=60).version == 2

    # 2. the last worker offering 'liveness' dies: the record reads failed within the
    #    bound, without the submitter's help, and `om runtime result` stops waiting
    task = om.runtime.model("slow").fit("X", "Y")
    killed = _kill_its_worker(reader, task.id, doomed_workers, client)
    began = time.monotonic()
    row = _wait_for(lambda: (r := reader.task(task.id))["status"] != "running" and r, "lost", 30)
    assert time.monotonic() - began < records.RETRY_GRACE + 3
    assert row["status"] == "failed"
    assert row["error"].startswith(f"lost: worker {killed} (pid ")
    assert "died while running it" in row["error"] and "submit it again" in row["error"]
    out = cli("runtime", "result", task.id, "--timeout", "60", env={"OMFS_ROOT": str(root)})
    assert out.code == 1 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert f"Task {task.id} (fit of models/slow@v2) failed: lost: worker" in out.stderr
    with pytest.raises(TaskFailedError, match="lost: worker"):
        reader.result(task.id, timeout=60)

    # 3. the submitter, told by Dask that it gave up (no worker left), records it too
    with pytest.raises(Exception, match=r"(?i)worker"):
        task.get(timeout=60)
    finished = json.loads(om.storage.read_bytes(record_key(task.id, "finished.json")))
    assert finished["status"] == "failed" and finished["error"].startswith("lost: ")
    assert [m.version for m in om.models.versions("slow")] == [1, 2]
    om._cluster.close()


@pytest.mark.cluster
def test_a_future_dask_gave_up_on_is_recorded_never_over_the_workers_record(
    tmp_path, dask_processes
):
    from omfs.compute.cluster import ClusterHandle

    om = omfs.setup(tmp_path / "ctx")
    handle = ClusterHandle(dask_processes["client"])
    ids = [records.new_id(), records.new_id()]
    theirs = records.finished_doc("failed", "ValueError: the worker's own line")
    records.write_record(om.storage, ids[1], "finished", theirs)
    doc = {"at": "2026-01-01T00:00:00+00:00", "object": "models/m@v3", "action": "predict"}
    for task_id in ids:  # what a worker that died leaves: an error, no record of its own
        future = dask_processes["client"].submit(int, "x", pure=False)
        handle.track(future, "int", (om.storage, task_id, doc))
        _wait_for(lambda f=future: f.status == "error", "the error")
    handle.record_failures()
    assert handle.pending() == [] and handle._pending == {}
    first = om.runtime.task(ids[0])
    assert first["status"] == "failed" and first["error"].startswith("ValueError: invalid literal")
    assert (first["object"], first["action"]) == ("models/m@v3", "predict")  # its submitted doc
    assert om.runtime.task(ids[1])["error"] == "ValueError: the worker's own line"
