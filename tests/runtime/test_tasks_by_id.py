"""Runtime v2: task ids and records that outlive the client, the cached worker view, ping."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
from omfs_clusterctx import X, Y, shared_context
from omfs_test_models import ChattyPredictor, SlowRegressor
from sklearn.linear_model import LinearRegression

import omfs
from omfs.errors import (
    NotFoundError,
    ResourceUnavailableError,
    TaskCancelledError,
    TaskFailedError,
    UnstorableResultError,
)

pytestmark = pytest.mark.cluster


@pytest.fixture(params=["local", "s3"])
def cctx(request, tmp_path, dask_processes):
    """The shared context of :mod:`omfs_clusterctx`, with an unfitted model ``m``."""
    om = shared_context(request, tmp_path, dask_processes)
    om.models.put(LinearRegression(), "m")
    return om


def test_results_by_id_from_another_context_object(cctx, dask_processes):
    fitted = cctx.runtime.model("m").fit("X", "Y")
    meta = fitted.get(timeout=60)
    predicted = cctx.runtime.require("gpu").model("m").predict("X")
    values = predicted.get(timeout=60)
    other = omfs.setup(cctx.root, storage_options=cctx.storage.options).runtime  # fresh
    assert other.result(fitted.id).version == meta.version == 2
    np.testing.assert_allclose(other.result(predicted.id, timeout=10), values)
    assert other.status(predicted.id) == "succeeded"
    rows = other.tasks(limit=5)
    assert [r["id"] for r in rows[:2]] == [predicted.id, fitted.id]
    assert rows[0]["action"] == "predict" and rows[0]["object"] == "models/m@v2"
    assert rows[0]["worker"] == dask_processes["workers"]["gpu-worker"]
    assert not any(name.startswith("_") for name in cctx.datasets.list())
    assert "_tasks" not in cctx.buckets


def test_failure_is_recorded_with_its_log(cctx):
    cctx.models.put(LinearRegression(), "unfitted")
    task = cctx.runtime.model("unfitted").predict("X")
    with pytest.raises(Exception, match=r"NotFittedError|not fitted"):
        task.get(timeout=60)
    assert cctx.runtime.status(task.id) == "failed"
    with pytest.raises(TaskFailedError, match=rf"Task {task.id} \(predict of .*NotFittedError"):
        cctx.runtime.result(task.id)
    assert "Traceback" in cctx.runtime.log(task.id)
    with pytest.raises(NotFoundError, match="No task '20000101-000000000-00000000'"):
        cctx.runtime.status("20000101-000000000-00000000")


def test_log_and_warnings_are_captured_and_an_unstorable_value_is_refused(cctx):
    cctx.models.put(ChattyPredictor(), "chatty")
    task = cctx.runtime.model("chatty").predict("X")
    assert task.get(timeout=60).shape == (30,)
    log = cctx.runtime.log(task.id)
    assert "predicting 30 rows" in log and "chatty is deprecated" in log
    cctx.models.put(ChattyPredictor(returns="set"), "chatty")
    odd = cctx.runtime.model("chatty").predict("X")
    assert odd.get(timeout=60) == {1, 2, 3}  # the live caller gets it from Dask
    with pytest.raises(UnstorableResultError, match=r"builtins\.set cannot be stored safely"):
        cctx.runtime.result(odd.id)
    assert "om.datasets.put" in cctx.runtime.log(odd.id)


def test_status_through_the_lifecycle_and_cancel_by_id(tmp_path, dask_processes):
    om = omfs.setup(tmp_path / "ctx", cluster=dask_processes["address"])
    om.datasets.put(X, "X")
    om.datasets.put(Y, "Y")
    om.models.put(SlowRegressor(seconds=3), "slow")
    task = om.runtime.model("slow").fit("X", "Y")
    assert task.status() in ("pending", "running")
    deadline = time.monotonic() + 60
    while om.runtime.status(task.id) != "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    other = omfs.setup(tmp_path / "ctx", cluster=dask_processes["address"])
    assert other.runtime.cancel(task.id) is True
    assert om.runtime.status(task.id) == "cancelled"
    with pytest.raises(TaskCancelledError):
        om.runtime.result(task.id)
    time.sleep(4)  # the fit would be over by now: it must not have committed
    assert [m.version for m in om.models.versions("slow")] == [1]
    om._cluster.close()
    other._cluster.close()


def test_a_task_outlives_the_process_that_submitted_it(tmp_path, dask_processes):
    root = tmp_path / "ctx"
    om = omfs.setup(root, cluster=dask_processes["address"])
    om.datasets.put(X, "X")
    om.datasets.put(Y, "Y")
    om.models.put(SlowRegressor(seconds=2), "slow")
    script = textwrap.dedent(
        f"""
        import omfs
        om = omfs.setup({str(root)!r}, cluster={dask_processes["address"]!r})
        print(om.runtime.model("slow").fit("X", "Y").id)
        """
    )
    began = time.monotonic()
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    task_id = out.stdout.strip()
    assert "go on running on the cluster" in out.stderr
    assert f"(id {task_id}; `om runtime status ID`" in out.stderr  # the script printed none
    assert om.runtime.status(task_id) in ("pending", "running")  # it exited first
    meta = om.runtime.result(task_id, timeout=60)
    assert meta.version == 2 and time.monotonic() - began >= 2
    assert om.runtime.task(task_id)["status"] == "succeeded"
    om._cluster.close()


def test_routes_are_checked_against_a_cached_view_never_a_transient_empty_one(dask_processes):
    from omfs.compute._routing import WorkerView

    client = dask_processes["client"]
    stop = threading.Event()

    def blank_the_shared_view():  # what the client's periodic refresh does every 2 s
        while not stop.is_set():
            client.sync(client._update_scheduler_info)  # n_workers=0: no workers listed

    thread = threading.Thread(target=blank_the_shared_view)
    thread.start()
    try:
        view = WorkerView(ttl=0)  # asks every time: the worst case
        for _ in range(100):
            view.check(client, {"gpu": 1}, "predict of model 'm'")
    finally:
        stop.set()
        thread.join()
    with pytest.raises(ResourceUnavailableError, match="'tpu'"):
        WorkerView().check(client, {"tpu": 1}, "fit of model 'm'")


def test_ping_with_and_without_a_route(tmp_path, dask_processes):
    client = dask_processes["client"]
    deadline = time.monotonic() + 60  # a ping measures idle workers: earlier tests' tasks end
    while any(client.processing().values()):
        assert time.monotonic() < deadline, client.processing()
        time.sleep(0.1)
    om = omfs.setup(tmp_path / "ctx", cluster=client)
    every = om.runtime.ping()
    assert {r["name"] for r in every} == {"gpu-worker", "cpu-worker"}
    assert all(r["rtt_ms"] > 0 and r["address"].startswith("tcp://") for r in every)
    gpu = om.runtime.require("gpu").ping()
    assert [(r["name"], r["resources"]) for r in gpu] == [("gpu-worker", {"gpu": 1})]
    with pytest.raises(ResourceUnavailableError) as err:
        om.runtime.require("tpu").ping(timeout=2)
    text = str(err.value)  # a cluster of the user's own: the advice is Dask's
    assert (
        "route tpu=1" in text
        and f'dask worker {client.scheduler.address} --resources "tpu=1"' in text
    )


def test_ping_says_a_busy_worker_is_busy(tmp_path, dask_processes):
    """Newcomer's finding: a worker busy with a long task (a ping is a task: it waits for
    a free thread) was left out, or the ping said to start one."""
    from omfs_test_models import SlowPredictor

    om = omfs.setup(tmp_path / "ctx", cluster=dask_processes["client"])
    om.datasets.put(X, "X")
    started = tmp_path / "started"
    om.models.put(SlowPredictor(seconds=4, started_file=str(started)), "busy")
    task = om.runtime.require("gpu").model("busy").predict("X")
    deadline = time.monotonic() + 60
    while not started.exists():
        assert time.monotonic() < deadline, "the predict started"
        time.sleep(0.05)
    rows = om.runtime.require("gpu").ping(timeout=1)
    assert [(r["name"], r["state"], r["rtt_ms"]) for r in rows] == [
        ("gpu-worker", "busy (1 task(s))", None)
    ]
    task.get(timeout=60)


def test_cli_async_result_status_tasks_log_ping(tmp_path, dask_processes, cli):
    root = tmp_path / "ctx"
    om = omfs.setup(root)
    om.datasets.put(X, "X")
    om.models.put(LinearRegression().fit(X, Y["y"]), "m")
    env = {"OMFS_ROOT": str(root), "OMFS_CLUSTER": dask_processes["address"]}
    submitted = cli("--json", "runtime", "model", "m", "predict", "X", "--async", env=env)
    assert submitted.code == 0, submitted.stderr
    task_id = __import__("json").loads(submitted.stdout)["id"]
    got = cli("--json", "runtime", "result", task_id, "--timeout", "60", env=env)
    assert got.code == 0, got.stderr
    np.testing.assert_allclose(__import__("json").loads(got.stdout), Y["y"], atol=1e-6)
    assert cli("runtime", "status", task_id, env=env).stdout.strip() == "succeeded"
    listed = cli("runtime", "tasks", "-n", "1", env=env).stdout.splitlines()
    assert len(listed) == 1 and listed[0].startswith(task_id)
    assert cli("runtime", "log", task_id, env=env).code == 0
    bad = cli("runtime", "status", "nope", env=env)
    assert bad.code != 0 and "is not a task id" in bad.stderr
    pong = cli("runtime", "ping", "--require", "gpu", env=env)
    assert pong.code == 0 and "gpu-worker" in pong.stdout
    none = cli("runtime", "ping", "--require", "tpu", env=env)
    assert none.code == 1 and '--resources "tpu=1"' in none.stderr
    assert len(none.stderr.strip().splitlines()) == 1


def test_local_tasks_have_ids_too_and_gc_collects_old_records(tmp_path):
    om = omfs.setup(tmp_path / "ctx")
    om.models.put(LinearRegression().fit(X, Y["y"]), "m")
    task = om.runtime.mode(local=True).model("m").predict(X)
    np.testing.assert_allclose(om.runtime.result(task.id), task.get())
    assert om.gc()["tasks"] == []  # younger than the retention (7d)
    assert om.runtime.status(task.id) == "succeeded"
    row = om.runtime.task(task.id)  # a quick task writes no submitted record: its id says
    assert row["submitted"].startswith(f"{task.id[:4]}-{task.id[4:6]}-{task.id[6:8]}T")
    assert row["started"] and row["finished"]
    assert om.gc(task_retention="0s", dry_run=True)["tasks"] == [task.id]
    assert om.gc(task_retention="0s")["tasks"] == [task.id]
    with pytest.raises(NotFoundError):
        om.runtime.status(task.id)


def test_ping_without_a_cluster_says_none_runs(tmp_path, cli, monkeypatch):
    """Newcomer's finding: `om runtime ping` with no cluster started a private one for the
    ping and reported its workers, gone a moment later."""
    monkeypatch.delenv("OMFS_CLUSTER", raising=False)
    env = {"OMFS_ROOT": str(tmp_path / "ctx"), "OMFS_STATE_DIR": str(tmp_path / "state")}
    out = cli("runtime", "ping", env=env)
    assert out.code == 3 and out.stdout == ""
    assert out.stderr.strip() == (
        "om: error: no cluster runs to ping: start one with `om cluster start` (or give "
        "--cluster / $OMFS_CLUSTER)"
    )
