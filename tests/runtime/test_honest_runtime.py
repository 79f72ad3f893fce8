"""The runtime as a newcomer meets it: a plain script with no main guard, the background
cluster of `om cluster`, timeouts that cancel, one-line errors, Ctrl-C."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest
from omfs_test_models import SlowRegressor
from sklearn.linear_model import LinearRegression
from sklearn.preprocessing import StandardScaler

import omfs

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

X = pd.DataFrame({"x": np.arange(10.0)})
Y = pd.DataFrame({"y": 2 * np.arange(10.0)})
FIT = ("runtime", "model", "m", "fit", "X", "Y")
WORKERS = ("runtime", "workers")


def _context(root, model=None):
    om = omfs.setup(root)
    om.datasets.put(X, "X")
    om.datasets.put(Y, "Y")
    om.models.put(model if model is not None else LinearRegression(), "m")
    return om


@pytest.fixture
def state_env(tmp_path, monkeypatch):
    """An omfs state folder of this test's own (where `om cluster start` records itself)."""
    folder = tmp_path / "state"
    monkeypatch.setenv("OMFS_STATE_DIR", str(folder))
    env = {**os.environ, "OMFS_STATE_DIR": str(folder)}
    env.pop("OMFS_CLUSTER", None)
    return env


def test_plain_script_without_main_guard_runs_remote_tasks(tmp_path, state_env):
    root = tmp_path / "ctx"
    script = tmp_path / "train.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import pandas as pd
            from sklearn.linear_model import LinearRegression
            import omfs

            om = omfs.setup({str(root)!r})
            om.datasets.put(pd.DataFrame({{"x": range(10)}}), "X")
            om.datasets.put(pd.DataFrame({{"y": range(10)}}), "Y")
            om.models.put(LinearRegression(), "m")
            print(om.runtime.model("m").fit("X", "Y").get().version)
            om.runtime.model("m").fit("X", "Y")  # never waited for: must not be dropped
            """
        )
    )
    out = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env=state_env,
        cwd=tmp_path,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["2"]
    assert "Nanny failed" not in out.stderr and "Traceback" not in out.stderr
    assert "waiting for 1 unfinished task(s) before exiting: fit(m@v2)" in out.stderr
    om = omfs.setup(root)
    # one put per dataset and model, two fits: nothing written twice by a re-import
    assert [m.version for m in om.models.versions("m")] == [1, 2, 3]
    assert [m.version for m in om.datasets.versions("X")] == [1]
    assert not list((tmp_path / "state" / "logs").glob("*.log")), "worker logs left behind"


def test_background_cluster_is_used_by_cli_and_setup(tmp_path, state_env, om_script):
    root = tmp_path / "ctx"
    jobs = _context(root).jobs
    (tmp_path / "tick.py").write_text("def run(om):\n    return 1\n")
    jobs.put(tmp_path / "tick.py", "tick", attributes={"require": {"label": "gpu"}})
    jobs.schedule("tick", every="1s")

    def om(*args, check=True):
        out = subprocess.run(
            [om_script, "--root", str(root), *args],
            capture_output=True,
            text=True,
            env=state_env,
            timeout=120,
        )
        if check:
            assert out.returncode == 0, out.stderr
        return out

    assert om("cluster", "status", check=False).returncode == 3
    started = om("cluster", "start", "--worker", "gpu=1", "--workers", "1")
    try:
        assert "cluster started at tls://127.0.0.1:" in started.stdout
        again = om("cluster", "start", check=False)
        assert again.returncode == 1 and "already runs at" in again.stderr
        status = om("--json", "cluster", "status").stdout
        assert '"running": true' in status and '"gpu": 1.0' in status
        log = (tmp_path / "state" / "cluster.log").read_text(errors="replace")
        assert json.loads(status)["jobs_scheduler_running"] is True, log[-3000:]
        assert "job scheduler pid" in om("cluster", "status").stdout
        began = time.monotonic()
        assert om("runtime", "--require", "gpu", "model", "m", "fit", "X", "Y").stdout.split() == [
            "models",
            "m",
            "v2",
        ]
        first = time.monotonic() - began
        rows = om("runtime", "workers").stdout.splitlines()
        assert sorted(r.split("\t")[1] for r in rows) == ["gpu-0", "worker-0"]
        # the cluster's job scheduler fires the context's schedule, on the routed worker
        deadline = time.monotonic() + 60
        while not [r for r in jobs.runs("tick") if r.status == "succeeded"]:
            assert time.monotonic() < deadline, jobs.runs("tick")
            time.sleep(0.2)
        ran = next(r for r in jobs.runs("tick") if r.status == "succeeded")
        assert ran.slot and [ran.worker, "gpu-0"] in [r.split("\t")[:2] for r in rows]
        # setup() without a cluster uses the background one too (no private cluster started)
        ctx = omfs.setup(root)
        assert "background cluster at" in repr(ctx.runtime)
        assert ctx.runtime.model("m").predict("X").get(timeout=60).shape == (10,)
        assert ctx._cluster._private is None
        ctx._cluster.close()
        assert first < 30  # the figure is in benchmarks/runtime_latency.py; this only guards
    finally:
        stopped = om("cluster", "stop")
    assert "stopped the cluster" in stopped.stdout
    assert om("cluster", "status", check=False).returncode == 3
    assert "no background cluster" in om("cluster", "stop").stdout


def test_cli_tasks_go_through_the_gateway_without_importing_dask(tmp_path, state_env, om_script):
    """With `om cluster start` running, `om runtime model` sends its task to the cluster's
    gateway: the CLI process never imports distributed, and timeouts, Ctrl-C and worker
    errors behave as in a CLI with its own client."""
    root = tmp_path / "ctx"
    om = _context(root, SlowRegressor(seconds=4))
    om.models.put(LinearRegression(), "unfitted")
    om.models.put(StandardScaler().set_output(transform="pandas").fit(X), "scaler")
    env = {**state_env, "OMFS_ROOT": str(root)}
    run = functools.partial(subprocess.run, capture_output=True, text=True, env=env, timeout=120)
    assert run([om_script, "cluster", "start", "--workers", "1"]).returncode == 0
    try:
        socket = tmp_path / "state" / "runtime.sock"
        assert f"gateway {socket}" in run([om_script, "cluster", "status"]).stdout
        probe = (
            "import sys\nfrom omfs.cli import main\nsys.argv = ['om', *sys.argv[1:]]\n"
            "try:\n    main()\nfinally:\n"
            "    print('distributed imported:', 'distributed' in sys.modules, file=sys.stderr)\n"
        )
        out = run([sys.executable, "-c", probe, "--json", "runtime", "model", "m", "fit", "X", "Y"])
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["version"] == 2
        assert out.stderr.strip() == "distributed imported: False"
        # `om runtime ping` asks the gateway too (a route no worker offers: one line)
        out = run([sys.executable, "-c", probe, "--json", "runtime", "ping"])
        assert out.returncode == 0, out.stderr
        assert [r["address"][:16] for r in json.loads(out.stdout)] == ["tls://127.0.0.1:"]
        assert out.stderr.strip() == "distributed imported: False"
        out = run([om_script, "runtime", "ping", "--require", "tpu"])
        assert out.returncode == 1 and len(out.stderr.splitlines()) == 1, out.stderr
        assert "om cluster start --worker tpu=1" in out.stderr
        # a timeout cancels the task in the cluster: nothing is written later
        out = run([om_script, *FIT, "--timeout", "1"])
        assert out.returncode == 1
        assert out.stderr.splitlines() == [
            "om: error: fit(m@v2) did not finish within 1 s; it was cancelled and wrote "
            "nothing. Give a longer --timeout, or none to wait."
        ]
        # Ctrl-C closes the connection; the gateway cancels the task
        proc = subprocess.Popen([om_script, *FIT], env=env, stderr=subprocess.PIPE, text=True)
        time.sleep(2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130 and err.splitlines() == ["om: error: interrupted"]
        time.sleep(6)  # both fits (4 s) would be over by now
        assert [m.version for m in om.models.versions("m")] == [1, 2]
        # a worker's error is one line; OMFS_DEBUG=1 shows its traceback
        predict = [om_script, "runtime", "model", "unfitted", "predict", "X"]
        out = run(predict)
        assert out.returncode == 1 and len(out.stderr.splitlines()) == 1, out.stderr
        assert out.stderr.startswith("om: error: predict(unfitted@v1) failed: NotFittedError")
        debug = run(predict, env={**env, "OMFS_DEBUG": "1"})
        assert debug.returncode == 1 and "check_is_fitted" in debug.stderr
        # --local runs in the CLI's own process, and prints what the gateway's answer does
        for model, action in (("m", "predict"), ("scaler", "transform")):
            task = ["runtime", "model", model, action, "X"]
            remote = run([om_script, "--json", *task])
            local = run([om_script, "--json", "runtime", "--local", *task[1:]])
            assert remote.returncode == local.returncode == 0, remote.stderr + local.stderr
            assert json.loads(remote.stdout) == json.loads(local.stdout)
        assert list(json.loads(local.stdout)) == ["x"]  # a frame prints as its to_dict()
        # `om jobs run` goes through the gateway too: a run on a worker, no Dask imported here
        (tmp_path / "job.py").write_text("def run(om, n=1):\n    return n * 2\n")
        (tmp_path / "bad.py").write_text("raise ValueError('no data')\n")
        om.jobs.put(tmp_path / "job.py", "job")
        om.jobs.put(tmp_path / "bad.py", "bad")
        out = run([sys.executable, "-c", probe, "--json", "jobs", "run", "job", "--param", "n=4"])
        assert out.returncode == 0, out.stderr
        (rec,) = json.loads(out.stdout)
        assert rec["status"] == "succeeded" and rec["result"] == 8
        assert rec["worker"].startswith("tls://127.0.0.1:")
        assert out.stderr.strip() == "distributed imported: False"
        out = run([om_script, "jobs", "run", "bad"])
        assert out.returncode == 1 and len(out.stderr.splitlines()) == 1, out.stderr
        assert "Job 'bad' v1 failed" in out.stderr and "ValueError: no data" in out.stderr
    finally:
        assert run([om_script, "cluster", "stop"]).returncode == 0
    assert not socket.exists()


def test_cluster_start_refuses_bad_worker_specs(tmp_path, state_env, om_script):
    out = subprocess.run(
        [om_script, "cluster", "start", "--worker", "gpu=lots"],
        capture_output=True,
        text=True,
        env=state_env,
    )
    assert out.returncode == 1
    assert out.stderr.strip() == (
        "om: error: Invalid worker resource 'gpu=lots': the amount must be a number, e.g. gpu=1"
    )


def test_refused_scheduler_is_reported_at_once(tmp_path, om_script):
    om = omfs.setup(tmp_path / "ctx", cluster="tcp://127.0.0.1:1")
    began = time.monotonic()
    with pytest.raises(omfs.errors.ClusterUnavailableError, match="refused the connection"):
        om.runtime.workers()
    assert time.monotonic() - began < 2
    out = subprocess.run(
        [om_script, "--root", str(tmp_path / "ctx"), "--cluster", "tcp://127.0.0.1:1", *WORKERS],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        "om: error: Cannot reach the Dask scheduler at tcp://127.0.0.1:1: 127.0.0.1:1 refused "
        "the connection. Start it (`om cluster start`, or `dask scheduler`), or fix --cluster "
        "/ $OMFS_CLUSTER."
    ]


def _slow_context(tmp_path, seconds):
    root = tmp_path / "ctx"
    return root, _context(root, SlowRegressor(seconds=seconds))


def test_cli_timeout_cancels_and_nothing_is_written_later(tmp_path, dask_processes, om_script):
    root, om = _slow_context(tmp_path, 4)
    began = time.monotonic()
    out = subprocess.run(
        [
            om_script,
            "--root",
            str(root),
            "--cluster",
            dask_processes["address"],
            *FIT,
            "--timeout",
            "1",
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        "om: error: fit(m@v1) did not finish within 1 s; it was cancelled and wrote nothing. "
        "Give a longer --timeout, or none to wait."
    ]
    assert time.monotonic() - began < 20
    time.sleep(6)  # the fit (4 s) is over by now: it must not have committed
    assert [m.version for m in om.models.versions("m")] == [1]


def test_api_cancel_of_a_running_fit_writes_nothing(tmp_path, dask_processes):
    root, _ = _slow_context(tmp_path, 3)
    om = omfs.setup(root, cluster=dask_processes["address"])
    task = om.runtime.model("m").fit("X", "Y")
    with pytest.raises(TimeoutError, match=r"fit\(m@v1\) did not finish within 0.5 s; it goes on"):
        task.get(timeout=0.5)
    assert task.cancel() is True
    time.sleep(5)
    assert [m.version for m in om.models.versions("m")] == [1]
    # a task that finished cannot be cancelled; its result stays
    done = om.runtime.model("m").fit("X", "Y")
    assert done.get(timeout=60).version == 2
    assert done.cancel() is False
    om._cluster.close()


def test_worker_error_is_one_line_and_debug_shows_the_traceback(
    tmp_path, dask_processes, om_script
):
    root = tmp_path / "ctx"
    _context(root)  # an unfitted LinearRegression: predict raises NotFittedError on the worker
    env = {**os.environ, "OMFS_ROOT": str(root), "OMFS_CLUSTER": dask_processes["address"]}
    cmd = [om_script, "runtime", "model", "m", "predict", "X"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert out.returncode == 1
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("om: error: predict(m@v1) failed: NotFittedError: This ")
    assert lines[0].endswith("(OMFS_DEBUG=1 shows the worker's traceback)")
    debug = subprocess.run(cmd, capture_output=True, text=True, env={**env, "OMFS_DEBUG": "1"})
    assert debug.returncode == 1 and "Traceback" in debug.stderr
    assert "check_is_fitted" in debug.stderr, "the worker's own frames are shown"


def test_a_model_without_the_method_is_a_clear_error(tmp_path, dask_processes):
    om = omfs.setup(tmp_path / "ctx", cluster=dask_processes["address"])
    om.datasets.put(X, "X")
    om.models.put({"not": "a model"}, "m")
    with pytest.raises(omfs.errors.InvalidModelError, match=r"builtins.dict, which has no fit"):
        om.runtime.model("m").fit("X").get(timeout=60)


def test_ctrl_c_cancels_the_task_and_exits_130(tmp_path, dask_processes, om_script):
    root, om = _slow_context(tmp_path, 4)
    proc = subprocess.Popen(
        [om_script, "--root", str(root), "--cluster", dask_processes["address"], *FIT],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not any(dask_processes["client"].processing().values()):
        assert time.monotonic() < deadline, "the task never started"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err.splitlines() == ["om: error: interrupted"]
    time.sleep(6)
    assert [m.version for m in om.models.versions("m")] == [1]


def test_background_cluster_advice_routing_and_credentials(
    tmp_path, state_env, om_script, s3_server, s3_root_factory, s3_options
):
    """Where omfs runs the cluster, a routing error names `om cluster start --worker`, says
    when the requirement came from the model's attributes (`--require none` overrides it),
    and --require may follow the action. A cluster started without the S3 credentials this
    shell has is named as the cause, with how to restart it."""
    local = tmp_path / "ctx"
    om = _context(local)
    om.models.put(LinearRegression(), "bound", attributes={"require": "gpu"})
    s3_root = s3_root_factory()
    remote = omfs.setup(s3_root, storage_options=s3_options)
    remote.datasets.put(X, "X")
    remote.datasets.put(Y, "Y")
    remote.models.put(LinearRegression(), "m")
    bare = {k: v for k, v in state_env.items() if not k.startswith("AWS_ACCESS_KEY_ID")}
    bare = {k: v for k, v in bare.items() if k != "AWS_SECRET_ACCESS_KEY"}
    bare |= {"AWS_ENDPOINT_URL": s3_server, "AWS_EC2_METADATA_DISABLED": "true"}
    shell = {**state_env, "AWS_ENDPOINT_URL": s3_server}

    def om_(*args, env=shell):
        return subprocess.run(
            [om_script, *args], capture_output=True, text=True, env=env, timeout=120
        )

    assert om_("cluster", "start", "--workers", "1", env=bare).returncode == 0
    try:
        out = om_("--root", str(local), *FIT, "--require", "gpu")
        assert out.returncode == 1, out.stderr
        assert "No worker can run fit of model 'm': it requires gpu=1" in out.stderr
        assert "`om cluster stop && om cluster start --worker gpu=1`" in out.stderr
        assert "dask worker" not in out.stderr and "from the model" not in out.stderr
        out = om_("--root", str(local), "runtime", "model", "bound", "fit", "X", "Y")
        assert out.returncode == 1
        assert "The requirement comes from the model's attributes (require='gpu')" in out.stderr
        assert "--require none for any worker" in out.stderr
        out = om_("--root", str(local), "runtime", "model", "bound", "fit", "X", "Y", "--require",
                  "none")  # fmt: skip
        assert out.returncode == 0, out.stderr
        out = om_("--root", s3_root, *FIT)
        assert out.returncode == 1
        assert out.stderr.startswith(f"om: error: No usable credentials for {s3_root} ("), out
        assert (
            "This shell has them (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), but the background "
            "cluster that ran the task was started without them. Restart it from a shell that "
            "has them: `om cluster stop && om cluster start`." in out.stderr
        )
        assert "Set them in the environment" not in out.stderr
        assert len(out.stderr.splitlines()) == 1
        # the same in Python: this process has them, the background cluster's workers not
        with pytest.raises(omfs.errors.MissingCredentialsError) as info:
            remote.runtime.model("m").fit("X", "Y").get(timeout=60)
        assert "This shell has them (AWS_ACCESS_KEY_ID" in str(info.value)
        remote._cluster.close()
    finally:
        assert om_("cluster", "stop").returncode == 0
