"""Jobs on a real cluster (`dask scheduler` + `dask worker` processes): routing, a slot run
exactly once by concurrent starters, and a worker killed mid-run."""

from __future__ import annotations

import os
import signal
import threading
import time
from datetime import UTC, datetime

import pandas as pd
import pytest

import omfs
from omfs.compute.jobs import start_run
from omfs.errors import ResourceUnavailableError

pytestmark = pytest.mark.cluster

SCRIPT = """\
def run(om, scale=1):
    sales = om.datasets.get("sales")
    om.datasets.put(sales * scale, "scaled")
    return {"rows": len(sales)}
"""


@pytest.fixture
def cctx(shared_root, dask_processes, tmp_path):
    root, options = shared_root
    om = omfs.setup(root, storage_options=options, cluster=dask_processes["client"])
    om.datasets.put(pd.DataFrame({"amount": [1.0, 2.0]}), "sales")
    (tmp_path / "nightly.py").write_text(SCRIPT)
    om.jobs.put(tmp_path / "nightly.py", "nightly")
    om.jobs.put(tmp_path / "nightly.py", "bound", attributes={"require": {"label": "gpu"}})
    return om


def test_routed_by_require_and_by_attributes(cctx, dask_processes):
    gpu = dask_processes["workers"]["gpu-worker"]
    rec = cctx.runtime.require("gpu").job("nightly").run(scale=3).get(timeout=60)
    assert (rec.status, rec.worker, rec.result) == ("succeeded", gpu, {"rows": 2})
    assert cctx.datasets.get("scaled")["amount"].tolist() == [3.0, 6.0]
    assert cctx.runtime.job("bound").run().get(timeout=60).worker == gpu
    cpu = dask_processes["workers"]["cpu-worker"]
    assert cctx.runtime.require("cpu").job("bound").run().get(timeout=60).worker == cpu
    started = time.monotonic()
    with pytest.raises(ResourceUnavailableError, match="'tpu'"):
        cctx.runtime.require("tpu").job("nightly").run()
    assert time.monotonic() - started < 5 and len(cctx.jobs.runs("nightly")) == 1


def test_two_starters_of_one_slot_make_one_run(cctx):
    slot = datetime(2025, 3, 30, 1, 30, tzinfo=UTC)
    barrier = threading.Barrier(2)
    results = []

    def starter():
        barrier.wait()
        results.append(start_run(cctx, "nightly", {"scale": 2}, slot=slot))

    threads = [threading.Thread(target=starter) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if r is not None]
    assert len(results) == 2 and len(winners) == 1
    rec = winners[0].get(timeout=60)
    assert rec.slot == slot.isoformat() and rec.id == "20250330T013000Z-scheduled"
    assert [r.id for r in cctx.jobs.runs("nightly")] == [rec.id]
    assert start_run(cctx, "nightly", {}, slot=slot) is None


@pytest.mark.slow
def test_worker_killed_mid_run_reads_failed(tmp_path, dask_processes):
    proc = dask_processes["start_worker"]("doomed", "doomed=1", "--no-nanny")
    client = dask_processes["client"]
    client.wait_for_workers(3, timeout=120)
    try:
        om = omfs.setup(tmp_path / "ctx", cluster=client)
        (tmp_path / "wait.py").write_text("import time\nwhile True:\n    time.sleep(0.05)\n")
        om.jobs.put(tmp_path / "wait.py", "wait", attributes={"require": "doomed"})
        started = om.runtime.job("wait").run()
        deadline = time.monotonic() + 60
        while started.record().worker is None:  # the worker has claimed the run
            assert time.monotonic() < deadline, "the run never started"
            time.sleep(0.05)
        assert started.record().pid == proc.pid
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=20)
        [rec] = om.jobs.runs("wait")
        assert rec.status == "failed" and rec.error.startswith("lost: ")
        with pytest.raises(omfs.errors.JobFailedError, match="lost: "):
            started.get(timeout=60)  # the scheduler gives up on it (no worker offers doomed)
    finally:
        if proc.poll() is None:
            proc.kill()
