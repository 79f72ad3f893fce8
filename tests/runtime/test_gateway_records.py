"""With `om cluster start` running: hostile task records read through the gateway are one
line each, and `--async` still submits when the gateway has died (fire-and-forget through
the CLI's own client)."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression

import omfs
from omfs.compute.records import finished_doc, write_record

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

BAD = "20260101-000000000-00000001"
DAMAGED = "20260101-000000000-00000002"


def test_gateway_reads_hostile_records_and_async_outlives_a_dead_gateway(tmp_path, om_script):
    root = tmp_path / "ctx"
    om = omfs.setup(root)
    om.datasets.put(pd.DataFrame({"x": np.arange(10.0)}), "X")
    om.models.put(LinearRegression().fit(np.arange(10.0)[:, None], np.arange(10.0)), "m")
    om.storage.write_bytes(f"_tasks/{BAD}.finished.json", b"[1,2,3]")
    write_record(
        om.storage, DAMAGED, "finished", finished_doc("succeeded", result={"format": "parquet"})
    )
    om.storage.write_bytes(f"_tasks/{DAMAGED}.result.parquet", b"garbage")
    state = tmp_path / "state"
    env = {**os.environ, "OMFS_STATE_DIR": str(state), "OMFS_ROOT": str(root)}
    env.pop("OMFS_CLUSTER", None)
    run = functools.partial(subprocess.run, capture_output=True, text=True, env=env, timeout=120)
    assert run([om_script, "cluster", "start", "--workers", "1"]).returncode == 0
    try:
        assert (state / "runtime.sock").is_socket()
        for task_id, part in ((BAD, f"_tasks/{BAD}.finished.json"), (DAMAGED, "result.parquet")):
            out = run([om_script, "runtime", "result", task_id])  # through the gateway
            assert out.returncode == 1 and len(out.stderr.splitlines()) == 1, out.stderr
            assert part in out.stderr and task_id in out.stderr and "remove" in out.stderr
        listed = run([om_script, "--json", "runtime", "tasks"])
        assert {r["id"]: r["status"] for r in json.loads(listed.stdout)} == {
            BAD: "failed",
            DAMAGED: "succeeded",
        }
        gateway_pid = json.loads((state / "cluster.json").read_text())["gateway_pid"]
        os.kill(gateway_pid, signal.SIGKILL)
        out = run([om_script, "runtime", "model", "m", "predict", "X", "--async"])
        assert out.returncode == 0, out.stderr
        task_id = out.stdout.strip()
        got = run([om_script, "--json", "runtime", "result", task_id, "--timeout", "60"])
        assert got.returncode == 0, got.stderr
        np.testing.assert_allclose(json.loads(got.stdout), np.arange(10.0), atol=1e-6)
    finally:
        assert run([om_script, "cluster", "stop"]).returncode == 0
