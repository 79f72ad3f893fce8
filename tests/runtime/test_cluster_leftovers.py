"""The background cluster when some of its processes died (kill -9): a worker reads
stopped, and a dead Dask scheduler never leaves the cluster's other processes running
unseen: status says so, start refuses, stop stops them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import psutil
import pytest

import omfs

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def _killed(pid: int) -> None:
    """``kill -9`` ``pid`` and wait until it is gone (its parent, init, reaps it)."""
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, f"pid {pid} outlived kill -9"
        time.sleep(0.02)


def test_a_dead_worker_reads_stopped_and_a_dead_scheduler_leaves_nothing_running(
    tmp_path, monkeypatch, om_script
):
    state = tmp_path / "state"
    monkeypatch.setenv("OMFS_STATE_DIR", str(state))
    env = {**os.environ, "OMFS_STATE_DIR": str(state)}
    env.pop("OMFS_CLUSTER", None)
    root = tmp_path / "ctx"
    omfs.setup(root).datasets.put({"a": [1]}, "d")  # the context whose schedules it fires

    def om(*args):
        return subprocess.run(
            [om_script, "--root", str(root), "cluster", *args],
            capture_output=True, text=True, env=env, timeout=120,
        )  # fmt: skip

    assert om("start", "--workers", "2").returncode == 0
    record = json.loads((state / "cluster.json").read_text())
    try:
        _killed(record["worker_pids"][1])
        rows = om("status").stdout.splitlines()[-2:]
        assert [r.split("\t")[::3] for r in rows] == [
            ["worker-0", "running"],
            ["worker-1", "stopped"],
        ]
        assert "none of its workers runs" not in om("status").stderr
        _killed(record["worker_pids"][0])
        status = om("status")  # newcomer's finding: "running", and nothing said
        assert status.returncode == 0 and "none of its workers runs: tasks wait" in status.stderr
        _killed(record["scheduler_pid"])
        status = om("status")
        assert status.returncode == 3
        assert status.stderr.startswith("om: error: the Dask scheduler of the background cluster")
        assert f"job scheduler (pid {record['jobs_scheduler_pid']})" in status.stderr
        assert "`om cluster stop` stops them" in status.stderr
        again = om("start", "--workers", "1")
        assert again.returncode == 1 and "stop them first (`om cluster stop`)" in again.stderr
        assert (state / "cluster.json").exists()
        stopped = om("stop")
        assert stopped.returncode == 0
        assert "had died; stopped" in stopped.stdout and "job scheduler" in stopped.stdout
    finally:
        om("stop")
    for pid in (record["jobs_scheduler_pid"], record["gateway_pid"], *record["worker_pids"]):
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
    assert not (state / "cluster.json").exists()
    assert "no background cluster runs" in om("status").stderr


def test_stopping_the_cluster_ends_the_records_of_its_unfinished_tasks(tmp_path, om_script):
    """Newcomer's finding: after `om cluster stop`, a task that had not started read
    pending for good (and `om runtime result` waited for it), and a running one read
    lost, blaming memory. The gateway records both as ended by the stop."""
    from omfs_test_models import SlowRegressor

    state = tmp_path / "state"
    env = {**os.environ, "OMFS_STATE_DIR": str(state)}
    env.pop("OMFS_CLUSTER", None)
    root = tmp_path / "ctx"
    om = omfs.setup(root)
    om.datasets.put({"x": [1.0, 2.0]}, "X")
    om.datasets.put({"y": [1.0, 2.0]}, "Y")
    started = tmp_path / "started"
    om.models.put(SlowRegressor(seconds=60, started_file=str(started)), "slow")

    def om_(*args):
        return subprocess.run(
            [om_script, "--root", str(root), *args],
            capture_output=True, text=True, env=env, timeout=120,
        )  # fmt: skip

    assert om_("cluster", "start", "--workers", "1", "--no-schedules").returncode == 0
    try:
        running = om_("runtime", "model", "slow", "fit", "X", "Y", "--async").stdout.strip()
        waiting = om_("runtime", "model", "slow", "fit", "X", "Y", "--async").stdout.strip()
        deadline = time.monotonic() + 60
        while not started.exists():
            assert time.monotonic() < deadline, "the first fit started"
            time.sleep(0.05)
    finally:
        assert om_("cluster", "stop").returncode == 0
    for task in (running, waiting):
        row = om.runtime.task(task)
        assert row["status"] == "failed", row
        assert "the background cluster stopped (`om cluster stop`" in row["error"]
    assert [v.version for v in om.models.versions("slow")] == [1]
