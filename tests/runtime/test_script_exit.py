"""A script whose last line submits a fit exits quietly: the fit goes on running on the
cluster, and no callback of this process fires after the interpreter shut down."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from omfs_clusterctx import X, Y
from sklearn.linear_model import LinearRegression

import omfs
from omfs.compute.cluster import tasks_summary

pytestmark = pytest.mark.cluster


def test_a_fit_on_the_last_line_exits_without_an_error(tmp_path, dask_processes):
    root = tmp_path / "ctx"
    om = omfs.setup(root)
    om.datasets.put(X, "X")
    om.datasets.put(Y, "Y")
    om.models.put(LinearRegression().fit(X, Y["y"]), "m")
    script = textwrap.dedent(
        f"""
        import omfs
        om = omfs.setup({str(root)!r}, cluster={dask_processes["address"]!r})
        om.runtime.model("m").predict("X").get()
        om.runtime.model("m").fit("X", "Y")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "ERROR" not in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert "1 task(s) go on running on the cluster after this process exits: fit(m@v1) (" in (
        out.stderr
    )


def test_the_exit_notice_of_a_burst_is_a_summary():
    burst = ["predict(m@v7)"] * 999 + ["fit(m@v7)", "score(a@v1)", "score(a@v1)", "x(b@v1)"]
    assert tasks_summary(burst) == "predict(m@v7) x999, score(a@v1) x2, fit(m@v7), x(b@v1)"
    burst += ["y(c@v1)"]
    assert tasks_summary(burst) == "predict(m@v7) x999, score(a@v1) x2, fit(m@v7) and 2 more kinds"
    assert tasks_summary(["fit(m@v1)"]) == "fit(m@v1)"


def test_the_task_after_a_fit_reads_the_version_it_made(tmp_path, dask_processes):
    om = omfs.setup(tmp_path / "ctx", cluster=dask_processes["client"])
    om.datasets.put(X, "X")
    om.datasets.put(Y, "Y")
    om.models.put(LinearRegression(), "m")
    runtime = om.runtime.model("m")
    fit = runtime.fit("X", "Y")
    assert fit.description == "fit(m@v1)"
    assert runtime.predict("X").description == "predict(m@v1)"  # cached while it runs
    assert fit.get(timeout=60).version == 2
    assert runtime.predict("X").description == "predict(m@v2)"  # cached before: read again
