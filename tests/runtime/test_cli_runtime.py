"""`om runtime` as a user runs it, with $OMFS_ROOT and $OMFS_CLUSTER set."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pandas as pd
from distributed import get_task_stream
from sklearn.linear_model import LinearRegression

import omfs


def test_seed_command_line(tmp_path, dask_processes, om_script):
    OM = om_script
    root = tmp_path / "ctx"
    om = omfs.setup(root)
    om.datasets.put(pd.DataFrame({"x": np.arange(20.0)}), "X")
    om.datasets.put(pd.DataFrame({"y": 2 * np.arange(20.0)}), "Y")
    om.models.put(LinearRegression(), "mymodel")
    env = {**os.environ, "OMFS_ROOT": str(root), "OMFS_CLUSTER": dask_processes["address"]}

    def run(*args):
        out = subprocess.run([OM, *args], capture_output=True, text=True, env=env)
        assert out.returncode == 0, out.stderr
        return out.stdout

    with get_task_stream(dask_processes["client"]) as stream:
        assert run("runtime", "--require", "gpu", "model", "mymodel", "fit", "X", "Y").split() == [
            "models",
            "mymodel",
            "v2",
        ]
        # the runtime's options may also follow the action
        out = run(
            "runtime",
            "model",
            "mymodel",
            "predict",
            "X[x]",
            "--result",
            "preds",
            "--require",
            "gpu",
        )
    assert out.split() == ["datasets", "preds", "v1"]
    ours = ("omfs-fit-mymodel-", "omfs-predict-mymodel-")  # not an earlier test's task ending
    workers = {t["worker"] for t in stream.data if str(t["key"]).startswith(ours)}
    assert workers == {dask_processes["workers"]["gpu-worker"]}
    preds = om.datasets.get("preds")  # a column on the input's index
    np.testing.assert_allclose(preds["predict"], 2 * np.arange(20.0), atol=1e-9)

    score = json.loads(run("runtime", "--local", "model", "mymodel", "score", "X", "Y"))
    assert score == 1.0
    listed = json.loads(run("--json", "runtime", "workers"))
    assert {w["name"]: w["resources"] for w in listed} == {
        "gpu-worker": {"gpu": 1},
        "cpu-worker": {"cpu": 1},
    }

    bad = subprocess.run(
        [OM, "runtime", "model", "mymodel", "fit", "X", "Y", "--require", "tpu"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert bad.returncode == 1 and "'tpu'" in bad.stderr and "Traceback" not in bad.stderr
    # a scheduler of the user's own: the advice is `dask worker` at its address
    assert f'`dask worker {dask_processes["address"]} --resources "tpu=1"`' in bad.stderr
