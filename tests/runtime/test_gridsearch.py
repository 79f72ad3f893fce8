"""Grid search on the cluster: candidates over the route's workers, the best stored."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from distributed import get_task_stream
from sklearn.linear_model import Ridge

import omfs

pytestmark = pytest.mark.cluster

rng = np.random.default_rng(0)
X = pd.DataFrame(rng.random((60, 3)), columns=["a", "b", "c"])
Y = pd.DataFrame({"y": X["a"] * 3 + X["b"] + rng.normal(0, 0.1, 60)})


def test_gridsearch_stores_the_best_version_and_the_table(tmp_path, dask_processes, cli):
    om = omfs.setup(tmp_path / "ctx", cluster=dask_processes["client"])
    om.datasets.put(X, "X")
    om.datasets.put(Y, "Y")
    om.models.put(Ridge(), "m")
    with get_task_stream(dask_processes["client"]) as stream:
        task = (
            om.runtime.require("gpu")
            .model("m")
            .gridsearch("X", "Y", parameters={"alpha": [0.001, 1, 1000]}, cv=3)
        )
        meta = task.get(timeout=120)
    assert meta.version == 2
    search = meta.lineage["task"]
    assert search["method"] == "gridsearch" and search["params"] == {"alpha": "0.001"}
    assert search["candidates"] == 3 and search["score"] > 0.9
    assert om.models.get("m").alpha == 0.001
    table = om.datasets.get("m_gridsearch")
    assert list(table["param_alpha"]) == ["0.001", "1", "1000"] and list(table["rank"]) == [1, 2, 3]
    workers = {t["worker"] for t in stream.data if "gridsearch" in str(t["key"])}
    assert workers == {dask_processes["workers"]["gpu-worker"]}
    assert om.runtime.result(task.id).version == 2

    env = {"OMFS_ROOT": str(tmp_path / "ctx"), "OMFS_CLUSTER": dask_processes["address"]}
    grid = json.dumps({"alpha": [0.01, 10]})
    out = cli("runtime", "model", "m", "gridsearch", "X", "Y", "--param-grid", grid, env=env)
    assert out.code == 0, out.stderr
    assert out.stdout.split() == ["models", "m", "v3"]
    bad = cli("runtime", "model", "m", "gridsearch", "X", "Y", "--param-grid", "{", env=env)
    assert bad.code == 1 and "--param-grid is not JSON" in bad.stderr
