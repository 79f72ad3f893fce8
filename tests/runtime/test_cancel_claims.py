"""A cancel that said yes holds for good: the worker and the canceller race for one record
in the context (``_tasks/ID.claim.json``), not for a Dask lock that dies with its client."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
from omfs_clusterctx import X, Y
from omfs_test_models import SlowRegressor, SlowToStore

import omfs
from omfs.errors import TaskCancelledError

pytestmark = pytest.mark.cluster


@pytest.fixture(params=["local", "s3"])
def where(request, tmp_path, dask_processes):
    """``(context, CLI environment)`` of a context other processes open: a folder or S3."""
    env = {**os.environ, "OMFS_CLUSTER": dask_processes["address"]}
    if request.param == "local":
        root, options = str(tmp_path / "ctx"), {}
    else:
        root = request.getfixturevalue("s3_root_factory")()
        options = request.getfixturevalue("s3_options")
        env["AWS_ENDPOINT_URL"] = options["client_kwargs"]["endpoint_url"]
    om = omfs.setup(root, storage_options=options, cluster=dask_processes["client"])
    om.datasets.put(X, "X")
    om.datasets.put(Y, "Y")
    return om, env


def _wait_for(check, what, seconds=60.0):
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"{what} within {seconds:g} s"
        time.sleep(0.05)


def _finished(om, task_id):
    key = f"_tasks/{task_id}.finished.json"
    return json.loads(om.storage.read_bytes(key)) if om.storage.exists(key) else None


def test_cancel_from_a_cli_that_exits_holds_after_its_client_is_gone(where, tmp_path, om_script):
    om, env = where
    started = tmp_path / "fit-started"
    om.models.put(SlowRegressor(seconds=5, started_file=str(started)), "slow")
    task = om.runtime.model("slow").fit("X", "Y")
    _wait_for(started.exists, "the fit started")
    # its records written (the worker's once the task has run 0.2 s): others see it
    _wait_for(lambda: om.runtime.status(task.id) == "running", "the task reads running", 10)
    # a Dask lock's lease ends a second after its client went away (were one taken)
    env["DASK_DISTRIBUTED__SCHEDULER__LOCKS__LEASE_TIMEOUT"] = "1s"
    out = subprocess.run(
        [om_script, "--root", om.root, "runtime", "cancel", task.id],
        capture_output=True,
        text=True,
        env=env,
    )
    assert (out.returncode, out.stdout.strip()) == (0, f"cancelled {task.id}"), out.stderr
    _wait_for(lambda: _finished(om, task.id) is not None, "the worker ended the task")
    assert _finished(om, task.id)["status"] == "cancelled"
    assert "was cancelled before it wrote anything" in _finished(om, task.id)["error"]
    assert [m.version for m in om.models.versions("slow")] == [1]
    assert om.runtime.status(task.id) == "cancelled"
    with pytest.raises(TaskCancelledError):
        om.runtime.result(task.id)


def test_a_task_that_began_to_write_is_not_cancelled_and_its_version_is_whole(
    where, tmp_path, dask_processes
):
    om, _ = where
    storing = tmp_path / "storing"
    om.models.put(SlowToStore(seconds=1.5, storing_file=str(storing)), "m")
    task = om.runtime.model("m").fit("X", "Y")
    _wait_for(storing.exists, "the worker began to store the fitted model")
    client = dask_processes["client"]
    other = omfs.setup(om.root, storage_options=om.storage.options, cluster=client)
    assert other.runtime.cancel(task.id) is False
    assert task.cancel() is False
    assert task.get(timeout=60).version == 2
    assert om.runtime.status(task.id) == "succeeded"
    assert om.models.get("m", version=2).mean_ == pytest.approx(float(Y["y"].mean()))


def test_a_task_whose_only_record_is_its_workers_claim_is_not_cancelled(tmp_path):
    """CI found it: a task that began to write within 0.2 s has no submitted or started
    record another process can read yet, only its worker's claim; cancel by id said "No
    task". It had begun to write: cancel says False."""
    from omfs.compute.records import new_id
    from omfs.errors import NotFoundError

    om = omfs.setup(tmp_path / "ctx")
    om.datasets.put(X, "X")  # the context exists
    task_id = new_id()
    with pytest.raises(NotFoundError, match="No task"):
        om.runtime.cancel(task_id)
    om.storage.write_bytes(f"_tasks/{task_id}.claim.json", json.dumps({"by": "worker"}).encode())
    assert om.runtime.cancel(task_id) is False


def test_a_running_task_of_a_live_script_is_cancelled_by_id(tmp_path, dask_processes, om_script):
    """Its submitted record is written at the script's exit; the worker's started record
    names the task's Dask key, so another process cancels it by id meanwhile."""
    env = {**os.environ, "OMFS_CLUSTER": dask_processes["address"]}
    om = omfs.setup(tmp_path / "ctx", cluster=dask_processes["client"])
    om.datasets.put(X, "X")
    om.datasets.put(Y, "Y")
    started = tmp_path / "fit-started"
    om.models.put(SlowRegressor(seconds=4, started_file=str(started)), "slow")
    task = om.runtime.model("slow").fit("X", "Y")
    record = f"_tasks/{task.id}.started.json"
    _wait_for(lambda: started.exists() and om.storage.exists(record), "the worker's record")
    assert not om.storage.exists(f"_tasks/{task.id}.submitted.json")
    out = subprocess.run(
        [om_script, "--root", om.root, "runtime", "cancel", task.id],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert (out.returncode, out.stdout.strip()) == (0, f"cancelled {task.id}"), out.stderr
    with pytest.raises(TaskCancelledError):
        task.get(timeout=60)
    _wait_for(lambda: _finished(om, task.id) is not None, "the worker ended the task")
    assert [m.version for m in om.models.versions("slow")] == [1]


def test_cancelling_a_task_that_writes_nothing_after_it_ended_says_no(tmp_path, dask_processes):
    """Attacker's finding: a cancel racing the end of a quick predict said yes after its
    finished record was written, and the record then read cancelled while the submitter
    had its value. Cancel checks the record right before and after it writes its own."""
    from omfs.compute.claims import cancel_task
    from omfs.compute.records import finished_doc, new_id, write_record

    om = omfs.setup(tmp_path / "ctx", cluster=dask_processes["client"])
    future = dask_processes["client"].submit(int, 1, pure=False)
    task = new_id()
    write_record(om.storage, task, "finished", finished_doc("succeeded"))
    assert cancel_task(future, om.storage, task, writes=False) is False
    assert not om.storage.exists(f"_tasks/{task}.cancelled.json")
    assert future.result(timeout=30) == 1
