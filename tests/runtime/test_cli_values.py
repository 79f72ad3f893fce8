"""`om runtime` shows a task's value the same way whichever path ran it: the synchronous
command refuses what `om runtime result ID` refuses, and both head a column alike."""

from __future__ import annotations

import json

import pytest
from omfs_clusterctx import X, Y
from omfs_test_models import ChattyPredictor
from sklearn.linear_model import LinearRegression

import omfs

pytestmark = pytest.mark.cluster


def test_sync_command_refuses_what_result_refuses(tmp_path, dask_processes, cli):
    root = tmp_path / "ctx"
    om = omfs.setup(root)
    om.datasets.put(X, "X")
    env = {"OMFS_ROOT": str(root), "OMFS_CLUSTER": dask_processes["address"]}
    for returns, inner in (("set-in-dict", "holding a builtins.set at ['a']"), ("object", "")):
        om.models.put(ChattyPredictor(returns=returns), "weird")
        for where in ([], ["--local"]):
            sync = cli("runtime", *where, "model", "weird", "predict", "X", env=env)
            assert sync.code == 1 and sync.stdout == "", sync.stdout
            (line,) = sync.stderr.splitlines()
            assert "cannot be stored safely" in line and inner in line
            task = cli("runtime", *where, "model", "weird", "predict", "X", "--async", env=env)
            if where:
                continue  # --async needs a cluster
            by_id = cli("runtime", "result", task.stdout.strip(), "--timeout", "60", env=env)
            assert by_id.code == 1 and by_id.stderr.splitlines() == [line]


def test_result_by_id_heads_its_column_with_the_action(tmp_path, dask_processes, cli):
    root = tmp_path / "ctx"
    om = omfs.setup(root)
    om.datasets.put(X, "X")
    om.models.put(LinearRegression().fit(X, Y["y"]), "m")
    env = {"OMFS_ROOT": str(root), "OMFS_CLUSTER": dask_processes["address"]}
    sync = cli("runtime", "model", "m", "predict", "X", env=env)
    task_id = cli("runtime", "model", "m", "predict", "X", "--async", env=env).stdout.strip()
    by_id = cli("runtime", "result", task_id, "--timeout", "60", env=env)
    assert by_id.code == sync.code == 0, by_id.stderr + sync.stderr
    assert by_id.stdout.splitlines()[0] == sync.stdout.splitlines()[0] == "predict"
    assert by_id.stdout == sync.stdout
    assert json.loads(cli("--json", "runtime", "result", task_id, env=env).stdout)[0] > -1e9
