"""Runtime canvases: sequence, parallel, mapreduce, each step routed by its own route."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from distributed import get_task_stream
from sklearn.linear_model import LinearRegression

import omfs
from omfs.errors import TaskCancelledError, TaskFailedError

pytestmark = pytest.mark.cluster

X = pd.DataFrame({"x": np.arange(20.0)})
Y = pd.DataFrame({"y": 2 * np.arange(20.0) + 1})


@pytest.fixture
def om(tmp_path, dask_processes):
    om = omfs.setup(tmp_path / "ctx", cluster=dask_processes["client"])
    om.datasets.put(X, "X")
    om.datasets.put(Y, "Y")
    om.models.put(LinearRegression(), "m")
    return om


def test_sequence_fits_then_predicts_with_the_fitted_version_on_its_route(om, dask_processes):
    with get_task_stream(dask_processes["client"]) as stream:
        with om.runtime.sequence() as crt:
            crt.model("m").fit("X", "Y")
            crt.require("gpu").model("m").predict("X", rName="p")
        result = crt.run()
        meta = result.get(timeout=60)
    assert meta.name == "p" and meta.attributes["produced_by"]["version"] == 2
    np.testing.assert_allclose(om.datasets.get("p")["predict"], Y["y"], atol=1e-6)
    keys = [(str(t["key"]), t["worker"]) for t in stream.data]
    steps = {key.split("-")[2]: worker for key, worker in keys if "sequence" in key}
    assert steps["predict"] == dask_processes["workers"]["gpu-worker"]
    assert om.runtime.status(result.ids[0]) == "succeeded"


def test_a_failing_step_stops_the_sequence_and_is_named(om):
    with om.runtime.sequence() as crt:
        crt.model("m").predict("X")  # unfitted
        crt.model("m").fit("X", "Y")
    with pytest.raises(TaskFailedError, match=r"step 1 \(predict of model 'm'\) failed"):
        crt.run().get(timeout=60)
    assert [v.version for v in om.models.versions("m")] == [1], "step 2 never ran"


def test_the_steps_after_a_failed_one_read_cancelled_naming_it(om):
    """Attacker's finding: the later steps of a failed sequence had ids but no record."""
    with om.runtime.sequence() as crt:
        crt.model("m").predict("X")  # unfitted
        crt.model("m").fit("X", "Y")
        crt.model("m").score("X", "Y")
    result = crt.run()
    with pytest.raises(TaskFailedError):
        result.get(timeout=60)
    assert om.runtime.status(result.ids[0]) == "failed"
    for later in result.ids[1:]:
        row = om.runtime.task(later)
        assert row["status"] == "cancelled", row
        assert row["error"] == "not run: step 1 (predict of model 'm') failed"


def test_a_reduce_the_cluster_cannot_import_is_named(om, tmp_path, monkeypatch):
    """A reduce from a module only this process can import: one error naming it and what
    to do, not Dask's bare "Error during deserialization of the task graph"."""
    (tmp_path / "client_only_reduce.py").write_text("def total(values):\n    return len(values)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from client_only_reduce import total

    om.models.put(LinearRegression().fit(X, Y["y"]), "m")
    with om.runtime.mapreduce(reduce=total) as crt:
        crt.model("m").predict("X")
    with pytest.raises(TaskFailedError) as err:
        crt.run().get(timeout=60)
    text = str(err.value)
    assert text.startswith("the reduce step (client_only_reduce.total) did not run: ")
    assert "install module 'client_only_reduce' on the scheduler and workers" in text


def test_parallel_and_mapreduce(om):
    om.models.put(LinearRegression().fit(X, Y["y"]), "m")
    with om.runtime.parallel() as crt:
        crt.model("m").predict("X")
        crt.require("cpu").model("m").score("X", "Y")
    values = crt.run().getall(timeout=60)
    np.testing.assert_allclose(values[0], Y["y"], atol=1e-6)
    assert values[1] == pytest.approx(1.0)
    with om.runtime.mapreduce(reduce=len) as crt:
        for _ in range(3):
            crt.model("m").predict("X")
    assert crt.run().get(timeout=60) == 3


def test_the_reduce_step_is_a_task_whose_value_outlives_the_client(om):
    """The reduce step has an id and records of its own, like every step: its value is
    read from the context by another handle (no client), and `tasks` lists it."""
    om.models.put(LinearRegression().fit(X, Y["y"]), "m")
    with om.runtime.mapreduce(reduce=len) as crt:
        crt.model("m").predict("X")
        crt.model("m").predict("X")
    result = crt.run()
    assert result.get(timeout=60) == 2
    assert result.id == result.reduce_id and result.reduce_id not in result.ids
    reader = omfs.setup(om.root).runtime  # storage only: connects to no cluster
    assert reader.result(result.id) == 2
    row = reader.task(result.id)
    assert (row["action"], row["object"], row["status"]) == ("reduce", "builtins.len", "succeeded")
    assert [reader.status(i) for i in result.ids] == ["succeeded", "succeeded"]


def test_a_failing_reduce_is_recorded_failed(om):
    om.models.put(LinearRegression().fit(X, Y["y"]), "m")
    with om.runtime.mapreduce(reduce=max) as crt:  # max of two arrays: ambiguous truth value
        crt.model("m").predict("X")
        crt.model("m").predict("X")
    result = crt.run()
    with pytest.raises(TaskFailedError, match="the reduce step failed: ValueError"):
        result.get(timeout=60)
    assert om.runtime.status(result.reduce_id) == "failed"
    assert om.runtime.task(result.reduce_id)["error"].startswith("TaskFailedError: the reduce")


def test_a_step_is_cancelled_by_id_and_a_writing_step_then_writes_nothing(om, tmp_path):
    """Canvas steps are tracked with their submitted records, so another process can
    cancel them by id; a writing step claims first, so a cancel that said yes holds."""
    from omfs_test_models import SlowPredictor, SlowRegressor

    started = tmp_path / "started"
    om.models.put(SlowPredictor(seconds=3, started_file=str(started)), "busy")
    om.models.put(SlowRegressor(seconds=0), "later")
    with om.runtime.sequence() as crt:
        crt.model("busy").predict("X")
        crt.model("later").fit("X", "Y")
    result = crt.run()
    deadline = time.monotonic() + 60
    while not started.exists():
        assert time.monotonic() < deadline, "the first step started"
        time.sleep(0.05)
    other = omfs.setup(om.root, cluster=om.runtime.client).runtime
    assert other.cancel(result.ids[1]) is True  # the fit waits for the predict
    assert om.runtime.status(result.ids[1]) == "cancelled"
    assert other.cancel(result.ids[0]) is True  # a predict that stores nothing, running
    assert om.runtime.status(result.ids[0]) == "cancelled"
    finished = f"_tasks/{result.ids[0]}.finished.json"
    while not om.storage.exists(finished):  # the predict runs on: Dask cannot stop a thread
        assert time.monotonic() < deadline, "the predict ended"
        time.sleep(0.05)
    assert om.runtime.status(result.ids[0]) == "cancelled", "its value is dropped"
    with pytest.raises(TaskCancelledError):
        om.runtime.result(result.ids[0])
    assert [v.version for v in om.models.versions("later")] == [1]
    # a task's own handle says cancelled as a read by id does, not Dask's error
    started.unlink()
    task = om.runtime.model("busy").predict("X")
    while not started.exists():
        assert time.monotonic() < deadline + 30, "the predict started"
        time.sleep(0.05)
    assert task.cancel() is True
    with pytest.raises(TaskCancelledError, match=r"predict\(busy@v1\) was cancelled"):
        task.get(timeout=30)
    while not om.storage.exists(f"_tasks/{task.id}.finished.json"):  # the worker is free
        assert time.monotonic() < deadline + 60, "the predict ended"
        time.sleep(0.05)


def test_a_canvas_runs_once(om):
    """Newcomer's finding: run() twice submitted every step again (a fit: two versions)."""
    with om.runtime.sequence() as crt:
        crt.model("m").fit("X", "Y")
    crt.run().get(timeout=60)
    with pytest.raises(omfs.errors.UsageError, match="This sequence already ran"):
        crt.run()
    assert [v.version for v in om.models.versions("m")] == [1, 2]


def test_cancelling_a_step_by_id_cancels_the_steps_that_wait_for_it(om, tmp_path):
    """Attacker's finding: the later steps of a sequence whose step was cancelled by id
    (and a mapreduce's reduce) read pending forever, and get() raised Dask's error."""
    from omfs_test_models import SlowPredictor

    started = tmp_path / "started"
    om.models.put(SlowPredictor(seconds=3, started_file=str(started)), "busy")
    om.models.put(LinearRegression().fit(X, Y["y"]), "m")
    with om.runtime.sequence() as crt:
        crt.model("busy").predict("X")
        crt.model("m").predict("X", rName="p2")
        crt.model("m").predict("X", rName="p3")
    result = crt.run()
    deadline = time.monotonic() + 60
    while not started.exists():
        assert time.monotonic() < deadline, "the first step started"
        time.sleep(0.05)
    other = omfs.setup(om.root, cluster=om.runtime.client).runtime  # as another process
    assert other.cancel(result.ids[1]) is True
    assert [om.runtime.status(i) for i in result.ids[1:]] == ["cancelled", "cancelled"]
    error = om.runtime.task(result.ids[2])["error"]
    assert error == f"not run: predict of models/m ({result.ids[1]}) was cancelled"
    with pytest.raises(TaskCancelledError):
        result.get(timeout=60)
    while om.runtime.status(result.ids[0]) != "succeeded":  # the worker is free again
        assert time.monotonic() < deadline, "the first step ended"
        time.sleep(0.05)
    assert not om.datasets.exists("p2") and not om.datasets.exists("p3")


def test_a_reduce_that_raises_keyboardinterrupt_fails_and_the_workers_stay(om):
    """Attacker's finding: model or reduce code raising KeyboardInterrupt stopped each
    worker Dask ran it on."""
    from omfs_test_models import interrupting_reduce

    om.models.put(LinearRegression().fit(X, Y["y"]), "m")
    with om.runtime.mapreduce(reduce=interrupting_reduce) as crt:
        crt.model("m").predict("X")
    result = crt.run()
    with pytest.raises(TaskFailedError, match="KeyboardInterrupt"):
        result.get(timeout=60)
    assert om.runtime.status(result.reduce_id) == "failed"
    assert len(om.runtime.workers()) == 2
