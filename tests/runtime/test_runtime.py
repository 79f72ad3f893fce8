"""The runtime on a real cluster: `dask scheduler` + `dask worker` processes."""

from __future__ import annotations

import pickle
import time

import numpy as np
import pytest
from distributed import get_task_stream
from omfs_clusterctx import X, Y, shared_context
from sklearn.linear_model import LinearRegression, LogisticRegression

import omfs
from omfs.compute.tasks import cache_stats, clear_cache
from omfs.errors import ConfigError, InvalidModelError, ResourceUnavailableError

pytestmark = pytest.mark.cluster


@pytest.fixture(params=["local", "s3"])
def cctx(request, tmp_path, dask_processes):
    """A context shared with the cluster's workers, on a folder or on S3."""
    return shared_context(request, tmp_path, dask_processes)


def omfs_tasks(stream):
    return [t for t in stream.data if str(t["key"]).startswith("omfs-")]


def test_require_routes_only_to_the_worker_offering_the_resource(cctx, dask_processes):
    cctx.models.put(LinearRegression(), "mymodel")
    with get_task_stream(dask_processes["client"]) as stream:
        meta = cctx.runtime.require("gpu").model("mymodel").fit("X", "Y").get(timeout=60)
        results = [cctx.runtime.require("gpu").model("mymodel").predict("X") for _ in range(4)]
        preds = [r.get(timeout=60) for r in results]
    tasks = omfs_tasks(stream)
    assert len(tasks) == 5
    assert {t["worker"] for t in tasks} == {dask_processes["workers"]["gpu-worker"]}
    assert meta.version == 2
    np.testing.assert_allclose(preds[0], Y["y"], atol=1e-6)
    assert cctx.runtime._resources is None, "require() must not change om.runtime"


def test_model_bound_routing_and_explicit_require_wins(cctx, dask_processes):
    cctx.models.put(LinearRegression(), "mymodel", attributes={"require": {"label": "gpu"}})
    with get_task_stream(dask_processes["client"]) as stream:
        cctx.runtime.model("mymodel").fit("X", "Y").get(timeout=60)
    assert {t["worker"] for t in omfs_tasks(stream)} == {dask_processes["workers"]["gpu-worker"]}
    with get_task_stream(dask_processes["client"]) as stream:
        cctx.runtime.require("cpu").model("mymodel").predict("X").get(timeout=60)
    assert {t["worker"] for t in omfs_tasks(stream)} == {dask_processes["workers"]["cpu-worker"]}
    # the refitted version keeps the binding
    assert cctx.models.metadata("mymodel").attributes["require"] == {"label": "gpu"}


def test_unsatisfiable_require_fails_fast_naming_the_resource(cctx):
    cctx.models.put(LinearRegression(), "m")
    started = time.monotonic()
    with pytest.raises(ResourceUnavailableError) as info:
        cctx.runtime.require("tpu").model("m").fit("X", "Y")
    assert time.monotonic() - started < 5
    text = str(info.value)
    assert (
        "'tpu'" in text and "gpu-worker offers gpu=1" in text and "cpu-worker offers cpu=1" in text
    )
    with pytest.raises(ResourceUnavailableError, match="enough of gpu=2"):
        cctx.runtime.require(gpu=2).model("m").fit("X", "Y")


def test_same_results_in_local_mode_and_on_the_cluster(cctx):
    cctx.models.put(LinearRegression(), "m")
    remote = cctx.runtime.model("m").fit("X", "Y").get(timeout=60)
    local = cctx.runtime.mode(local=True).model("m").fit("X", "Y").get()
    assert (remote.version, local.version) == (2, 3)
    assert (
        remote.lineage["trained_on"]
        == local.lineage["trained_on"]
        == [
            {"role": "X", "dataset": "X", "version": 1, "columns": None, "bucket": "omega"},
            {"role": "Y", "dataset": "Y", "version": 1, "columns": None, "bucket": "omega"},
        ]
    )
    a = cctx.models.get("m@v2")
    b = cctx.models.get("m@v3")
    np.testing.assert_allclose(a.coef_, b.coef_)
    pr = cctx.runtime.model("m").predict("X[x1,x2]", rName="preds").get(timeout=60)
    pl = cctx.runtime.mode(local=True).model("m").predict("X[x1,x2]", rName="preds").get()
    np.testing.assert_allclose(cctx.datasets.get("preds@v1"), cctx.datasets.get("preds@v2"))
    assert pr.attributes["produced_by"]["model"] == pl.attributes["produced_by"]["model"] == "m"


def test_all_model_methods_and_inline_data(cctx):
    yc = (Y["y"] > Y["y"].median()).astype(int)
    cctx.models.put(LogisticRegression(), "clf")
    cctx.runtime.model("clf").fit(X, yc).get(timeout=60)
    proxy = cctx.runtime.model("clf")
    assert proxy.predict_proba(X).get(timeout=60).shape == (30, 2)
    assert proxy.decision_function(X).get(timeout=60).shape == (30,)
    assert 0.5 < proxy.score(X, yc).get(timeout=60) <= 1.0
    result = proxy.predict(X)
    assert result.future is not None and result.done() in (True, False)
    assert list(result.get(timeout=60)) == list(cctx.models.get("clf").predict(X))
    cctx.models.put(LinearRegression(), "nope-fit")
    with pytest.raises(ValueError):  # raised on the worker, re-raised here with its type
        cctx.runtime.model("nope-fit").fit(np.ones((3, 2)), np.ones(4)).get(timeout=60)
    with pytest.raises(InvalidModelError, match=r"has no transform\(\) method"):
        cctx.runtime.mode(local=True).model("clf").transform(X).get()


def test_worker_model_cache(cctx, dask_processes):
    client = dask_processes["client"]
    gpu = dask_processes["workers"]["gpu-worker"]
    cctx.models.put(LinearRegression().fit(X, Y), "cached")
    client.run(clear_cache, workers=[gpu])
    for _ in range(3):
        cctx.runtime.require("gpu").model("cached").predict("X").get(timeout=60)
    stats = client.run(cache_stats, workers=[gpu])[gpu]
    assert stats["loads"] == 1 and stats["hits"] == 2
    cctx.models.put(LinearRegression().fit(X, Y), "cached")  # a new version is loaded anew
    cctx.runtime.require("gpu").model("cached").predict("X").get(timeout=60)
    assert client.run(cache_stats, workers=[gpu])[gpu]["loads"] == 2


def test_credentials_stay_out_of_the_task(s3_root_factory, s3_options, dask_processes):
    """Workers read S3 with their own environment's credentials; the task carries none."""
    options = {**s3_options, "key": "omfs-test-key", "secret": "omfs-test-secret"}
    om = omfs.setup(s3_root_factory(), storage_options=options, cluster=dask_processes["client"])
    om.datasets.put(X, "X")
    om.models.put(LinearRegression().fit(X, Y), "m")
    payload = pickle.dumps(om)
    assert b"omfs-test-secret" not in payload and b"omfs-test-key" not in payload
    out = om.runtime.model("m").predict("X").get(timeout=60)
    assert len(out) == 30


def test_memory_context_is_refused_for_remote_tasks(dask_processes):
    om = omfs.setup("memory://rt-mem", cluster=dask_processes["client"])
    om.models.put(LinearRegression(), "m")
    with pytest.raises(ConfigError, match="mode\\(local=True\\)"):
        om.runtime.model("m").fit(X, Y)
    assert om.runtime.mode(local=True).model("m").fit(X, Y).get().version == 2


def test_workers_lists_resources(cctx):
    rows = {w["name"]: w for w in cctx.runtime.workers()}
    assert rows["gpu-worker"]["resources"] == {"gpu": 1}
    assert rows["cpu-worker"]["resources"] == {"cpu": 1}


def test_local_mode_never_starts_a_cluster(tmp_path):
    om = omfs.setup(tmp_path / "c")
    om.datasets.put(X, "X")
    om.datasets.put(Y, "Y")
    om.models.put(LinearRegression(), "m")
    om.runtime.mode(local=True).model("m").fit("X", "Y").get()
    om["other"].runtime.mode(local=True)
    assert om._cluster.started is False
