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
