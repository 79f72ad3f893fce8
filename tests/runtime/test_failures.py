"""Workers that die during a task: never a half-written version, never a hang."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pandas as pd
import pytest
from omfs_test_models import SlowRegressor

import omfs

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

X = pd.DataFrame({"x": np.arange(10.0)})
Y = pd.DataFrame({"y": np.arange(10.0)})


@pytest.fixture
def special_workers(dask_processes):
    """Two nanny-less workers offering 'special=1', so that killing one kills its task."""
    start = dask_processes["start_worker"]
    procs = [start(f"special-{i}", "special=1", "--no-nanny") for i in range(2)]
    dask_processes["client"].wait_for_workers(4, timeout=120)
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=20)
    deadline = time.monotonic() + 30
    while len(dask_processes["client"].scheduler_info(n_workers=-1)["workers"]) > 2:
        assert time.monotonic() < deadline, "special workers did not leave"
        time.sleep(0.2)


def _kill_when_fit_starts(started, procs):
    deadline = time.monotonic() + 60
    while not started.exists() or not started.read_text():
        assert time.monotonic() < deadline, "the fit never started"
        time.sleep(0.05)
    pid = int(started.read_text())
    started.unlink()
    assert pid in [p.pid for p in procs]
    os.kill(pid, signal.SIGKILL)
    return pid


def test_worker_killed_during_fit(tmp_path, dask_processes, special_workers):
    om = omfs.setup(tmp_path / "ctx", cluster=dask_processes["client"])
    om.datasets.put(X, "X")
    om.datasets.put(Y, "Y")
    started = tmp_path / "started"
    om.models.put(
        SlowRegressor(seconds=2, started_file=str(started)),
        "slow",
        attributes={"require": {"special": 1}},
    )

    # 1. the worker running fit dies: Dask runs the task again on the other one
    result = om.runtime.model("slow").fit("X", "Y")
    _kill_when_fit_starts(started, special_workers)
    meta = result.get(timeout=90)
    assert [v.version for v in om.models.versions("slow")] == [1, 2] and meta.version == 2
    assert om.models.get("slow").mean_ == pytest.approx(4.5)

    # 2. the last worker offering 'special' dies mid-fit: the caller gets an error within
    #    the scheduler's no-workers-timeout (5 s here), and no version was added
    result = om.runtime.model("slow").fit("X", "Y")
    _kill_when_fit_starts(started, special_workers)
    t0 = time.monotonic()
    with pytest.raises(Exception, match=r"(?i)no.*worker|special|killed") as info:
        result.get(timeout=90)
    assert time.monotonic() - t0 < 45, f"took {time.monotonic() - t0:.0f}s: {info.value!r}"
    assert [v.version for v in om.models.versions("slow")] == [1, 2]
    payloads = [
        f for f in om.storage.list_names(f"{om.bucket}/models/slow/_data") if f.endswith(".joblib")
    ]
    assert len(payloads) == 2


def test_default_local_cluster_starts_on_first_remote_use(tmp_path, monkeypatch):
    monkeypatch.delenv("OMFS_CLUSTER", raising=False)
    from sklearn.linear_model import LinearRegression

    om = omfs.setup(tmp_path / "ctx")
    om.datasets.put(X, "X")
    om.datasets.put(Y, "Y")
    om.models.put(LinearRegression(), "m")
    assert not om._cluster.started
    try:
        meta = om.runtime.model("m").fit("X", "Y").get(timeout=120)
        assert meta.version == 2 and om._cluster.started
        assert om["dev"]._cluster is om._cluster, "buckets share the context's cluster"
        workers = om.runtime.workers()
        assert len(workers) >= 1 and all(w["resources"] == {} for w in workers)
    finally:
        om._cluster.close()
