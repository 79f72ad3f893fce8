"""The clusters omfs starts are private (issue 17, item 8): only holders of the certificate
made for them at start can connect, every listener is on 127.0.0.1, no dashboard runs
unless asked for.

The probe runs in a process of its own: as the owner with plain clients (no certificate),
and, when the tests run as root, as another user (uid 65534) who can read nothing in the
state folder. It repeats the reported attack: a task that would create a file as the owner.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import dask
import psutil
import pytest

import omfs
from omfs.compute._tls import ClusterTLS
from omfs.compute.processes import PrivateCluster

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

NOBODY = 65534
needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="running a client as another user (uid 65534) needs root"
)

#: argv[1]: JSON {address, cert, key, marker, drop}. Prints what each attempt gave.
_PROBE = r"""
import json, os, sys
args = json.loads(sys.argv[1])
from distributed import Client
from distributed.security import Security
import distributed.comm.tcp, ssl  # everything a client needs, before privileges drop

other = Security.temporary()  # a certificate, but not the cluster's
owner_cert = open(args["cert"]).read() if args["drop"] else None
owner_key = open(args["key"]).read() if args["drop"] else None
if args["drop"]:
    os.setgroups([])
    os.setgid(args["drop"])
    os.setuid(args["drop"])

def make_marker(path):
    open(path, "w").write("ran")
    return os.getuid()

report = {"uid": os.getuid()}
for what in ("cert", "key"):
    try:
        open(args[what]).read()
        report["read_" + what] = "read"
    except OSError as exc:
        report["read_" + what] = type(exc).__name__
address = args["address"]
attempts = {
    "plain tcp": (address.replace("tls://", "tcp://"), None),
    "tls without certificate": (address, None),
    "tls with another certificate": (address, other),
}
for name, (where, security) in attempts.items():
    try:
        with Client(where, security=security, timeout=3) as client:
            client.submit(make_marker, args["marker"], pure=False).result(timeout=10)
        report[name] = "ran"
    except Exception as exc:
        report[name] = "refused: " + type(exc).__name__
if owner_cert:  # control: the same process, given the certificate, does connect
    security = Security(
        require_encryption=True, tls_ca_file=owner_cert,
        tls_client_cert=owner_cert, tls_client_key=owner_key,
    )
    with Client(address, security=security, timeout=10) as client:
        report["holder's task ran as uid"] = client.submit(os.getuid, pure=False).result()
print(json.dumps(report))
"""


def _probe(address: str, cert: Path, key: Path, marker: Path, *, drop: int = 0) -> dict:
    args = {"address": address, "cert": str(cert), "key": str(key), "marker": str(marker)}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps({**args, "drop": drop})],
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


def _assert_refused(report: dict, marker: Path) -> None:
    for attempt in ("plain tcp", "tls without certificate", "tls with another certificate"):
        assert report[attempt].startswith("refused: "), (attempt, report)
    assert not marker.exists(), "a client without the certificate ran a task"


@pytest.fixture(scope="module")
def open_base():
    """A folder another user may enter (pytest's own are 0700), so that only the modes omfs
    gives the state folder and its files keep that user out."""
    base = Path(tempfile.mkdtemp(prefix="omfs-security-"))
    os.chmod(base, 0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def background(open_base, om_script):
    """`om cluster start` with a state folder of this module's own; stopped at the end."""
    env = {**os.environ, "OMFS_STATE_DIR": str(open_base / "state")}
    env.pop("OMFS_CLUSTER", None)
    run = {"capture_output": True, "text": True, "env": env, "timeout": 120}
    started = subprocess.run([om_script, "--json", "cluster", "start", "--workers", "1"], **run)
    assert started.returncode == 0, started.stderr
    record = json.loads(started.stdout)
    yield {"record": record, "state": open_base / "state", "env": env}
    stopped = subprocess.run([om_script, "cluster", "stop"], **run)
    assert stopped.returncode == 0, stopped.stderr
    assert "om: stopped the cluster at" in stopped.stdout
    assert not any(psutil.pid_exists(p["pid"]) for p in record["processes"])


def _listeners(pids: list[int]) -> list[tuple[str, int]]:
    found = []
    for pid in pids:
        for conn in psutil.Process(pid).net_connections(kind="inet"):
            if conn.status == psutil.CONN_LISTEN:
                found.append((conn.laddr.ip, conn.laddr.port))
    return found


def _serves_http(port: int) -> list[str]:
    """What of Dask's HTTP pages (metrics, scheduler info and logs, dashboard) ``port``
    serves."""
    served = []
    for page in ("/metrics", "/info/main/workers.html", "/json/counts.json", "/status"):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{page}", timeout=3):
                served.append(page)
        except (urllib.error.URLError, OSError):
            pass  # 404, or a TLS port that does not speak plain HTTP
    return served


def test_background_cluster_admits_only_holders_of_its_certificate(background, tmp_path):
    record, state = background["record"], background["state"]
    assert record["address"].startswith("tls://127.0.0.1:")
    # the state folder and the certificate, key and record in it are the owner's only
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    for name in ("cluster-cert.pem", "cluster-key.pem", "cluster.json"):
        assert stat.S_IMODE((state / name).stat().st_mode) == 0o600, name
    # every process listens on 127.0.0.1 only; no dashboard, and Dask's HTTP servers serve
    # nothing (their metrics and the scheduler's info pages have no TLS)
    listeners = _listeners([p["pid"] for p in record["processes"]])
    assert listeners and {ip for ip, _ in listeners} == {"127.0.0.1"}, listeners
    assert 8787 not in {port for _, port in listeners}
    assert record["dashboard"] is None
    assert [(port, _serves_http(port)) for _, port in listeners if _serves_http(port)] == []
    marker = tmp_path / "ran-as-owner"
    _assert_refused(_probe(record["address"], state / "x", state / "y", marker), marker)


def test_omfs_clients_load_the_background_clusters_certificate(
    background, tmp_path, monkeypatch, om_script
):
    """setup() without a cluster and the CLI's own client connect (the CLI through the
    gateway: test_honest_runtime)."""
    env = background["env"]
    monkeypatch.setenv("OMFS_STATE_DIR", env["OMFS_STATE_DIR"])
    monkeypatch.delenv("OMFS_CLUSTER", raising=False)
    om = omfs.setup(tmp_path / "ctx")
    assert [w["name"] for w in om.runtime.workers()] == ["worker-0"]
    assert om._cluster._source == "background"
    om._cluster.close()
    status = subprocess.run(
        [om_script, "--root", str(tmp_path / "ctx"), "runtime", "workers"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert status.returncode == 0 and "worker-0" in status.stdout, status.stderr


@needs_root
def test_another_user_can_neither_read_the_certificate_nor_run_a_task(background, open_base):
    record, state = background["record"], background["state"]
    marker = open_base / "ran-as-owner"  # where uid 65534 could have made it, had it run
    report = _probe(
        record["address"], state / "cluster-cert.pem", state / "cluster-key.pem", marker,
        drop=NOBODY,
    )  # fmt: skip
    assert report["uid"] == NOBODY
    assert report["read_cert"] == report["read_key"] == "PermissionError"
    _assert_refused(report, marker)
    assert report["holder's task ran as uid"] == os.geteuid(), "the control must connect"
    # the files' own modes keep them out too, not only the folder's
    os.chmod(state, 0o755)
    try:
        assert _read_as_nobody(state / "cluster-key.pem") == "PermissionError"
        assert _read_as_nobody(state / "cluster.json") == "PermissionError"
    finally:
        os.chmod(state, 0o700)


def _read_as_nobody(path: Path) -> str:
    """Open ``path`` as uid 65534 (privileges dropped once Python runs: uid 65534 may not
    be able to run this interpreter itself)."""
    code = (
        "import os, sys\nos.setgroups([]); os.setgid(65534); os.setuid(65534)\n"
        "try:\n    open(sys.argv[1]).read(); print('read')\n"
        "except OSError as exc:\n    print(type(exc).__name__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60
    )
    return out.stdout.strip() or out.stderr


@pytest.fixture(scope="module")
def private(open_base):
    """A private cluster (what setup() starts on first remote use without `om cluster`)."""
    state = open_base / "private-state"
    old = os.environ.get("OMFS_STATE_DIR")
    os.environ["OMFS_STATE_DIR"] = str(state)
    try:
        cluster = PrivateCluster()
    finally:
        if old is None:
            del os.environ["OMFS_STATE_DIR"]
        else:
            os.environ["OMFS_STATE_DIR"] = old
    yield cluster, state
    cluster.close()
    assert not list(state.glob("*.pem")), "the private cluster's certificate is removed"


def test_private_cluster_admits_only_holders_of_its_certificate(private, tmp_path):
    cluster, state = private
    assert cluster.address.startswith("tls://127.0.0.1:")
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    for path in (cluster.tls.cert, cluster.tls.key):
        assert path.parent == state and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert cluster.client.submit(os.getpid, pure=False).result(timeout=60) in {
        p.pid for p in cluster.procs
    }
    # no dashboard reads Dask's sampling profiler here: it is off (it slowed CPU-bound work)
    profiling = cluster.client.run(lambda: dask.config.get("distributed.worker.profile.enabled"))
    assert set(profiling.values()) == {False}, profiling
    # what Dask's nanny sets (omfs's workers run without one), and quieter loops
    seen = cluster.client.run(
        lambda: (
            os.environ.get("OMP_NUM_THREADS"),
            os.environ.get("PYTHONHASHSEED"),
            dask.config.get("distributed.admin.tick.interval"),
        )
    )
    assert set(seen.values()) == {("1", "6640", "200ms")}, seen
    workers = _listeners([p.pid for p in cluster.procs])
    scheduler = cluster._cluster.scheduler
    ours = [scheduler.address, *[s.address for s in scheduler.services.values()]]
    assert {ip for ip, _ in workers} == {"127.0.0.1"}, workers
    assert all("127.0.0.1" in str(a) for a in ours), ours
    assert 8787 not in {port for _, port in workers}
    assert _serves_http(scheduler.services["dashboard"].port) == []
    marker = tmp_path / "ran-as-owner"
    _assert_refused(_probe(cluster.address, state / "x", state / "y", marker), marker)


@needs_root
def test_another_user_cannot_use_the_private_cluster(private, open_base):
    cluster, _ = private
    marker = open_base / "ran-as-owner-private"
    report = _probe(cluster.address, cluster.tls.cert, cluster.tls.key, marker, drop=NOBODY)
    assert report["read_cert"] == report["read_key"] == "PermissionError"
    _assert_refused(report, marker)
    assert report["holder's task ran as uid"] == os.geteuid()


@pytest.mark.parametrize("host", ["127.0.0.1", "10.1.2.3"])
@pytest.mark.parametrize("dashboard", [False, True])
def test_every_listener_binds_the_host_and_the_dashboard_runs_only_when_asked(
    tmp_path, host, dashboard
):
    """What `om cluster start [--host H] [--dashboard]` runs (the processes themselves:
    above)."""
    from omfs.compute import background, processes, workers

    tls = ClusterTLS.at(tmp_path, "c")
    scheduler = background._scheduler_command(tmp_path / "s.json", tls, host, 0, dashboard)
    worker = workers.worker_command(["ADDRESS"], processes.WorkerSpec("w"), 60, tls, host)
    for cmd in (scheduler, worker):
        assert cmd[cmd.index("--host") + 1] == host
        assert cmd[cmd.index("--protocol") + 1] == "tls"
        assert cmd[cmd.index("--tls-key") + 1] == str(tls.key)
    assert worker[worker.index("--dashboard-address") + 1] == f"{host}:0"
    assert "--no-dashboard" in worker
    http = scheduler[scheduler.index("--dashboard-address") + 1]
    assert http == (f"{host}:8787" if dashboard else f"{host}:0")
    assert ("--dashboard" if dashboard else "--no-dashboard") in scheduler
    env = background._scheduler_env({}, dashboard)
    assert env.get("DASK_DISTRIBUTED__SCHEDULER__HTTP__ROUTES") == (None if dashboard else "[]")


def test_the_state_folder_is_made_or_tightened_to_0700_and_never_a_shared_one(tmp_path):
    from omfs.compute._tls import make_tls, secure_folder
    from omfs.errors import ClusterUnavailableError

    made = secure_folder(tmp_path / "new" / "omfs")
    assert stat.S_IMODE(made.stat().st_mode) == 0o700
    old = tmp_path / "old"  # as an older omfs left it
    old.mkdir(mode=0o755)
    os.chmod(old, 0o755)
    assert stat.S_IMODE(secure_folder(old).stat().st_mode) == 0o700
    tls = make_tls(old, "c")
    assert {stat.S_IMODE(p.stat().st_mode) for p in (tls.cert, tls.key)} == {0o600}
    (tmp_path / "link").symlink_to(old)
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    for folder, problem in ((tmp_path / "link", "symbolic link"), (shared, "shared")):
        with pytest.raises(ClusterUnavailableError, match=problem):
            secure_folder(folder)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777, "a shared folder is left as it was"


def test_the_users_dask_settings_win_over_omfs_quiet_ones(monkeypatch):
    """Attacker's finding: omfs's quieter settings overrode a user's Dask YAML file. Each
    applies only where the user's configuration leaves Dask's default; an environment
    variable of the user's wins too, and a dashboard keeps Dask's defaults."""
    from omfs.compute.workers import quiet_settings, worker_env

    assert quiet_settings()["distributed.admin.tick.interval"] == "200ms"
    with dask.config.set({"distributed.admin.tick.interval": "10ms"}):  # as a YAML file does
        assert "distributed.admin.tick.interval" not in quiet_settings()
        assert "DASK_DISTRIBUTED__ADMIN__TICK__INTERVAL" not in worker_env()
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.setenv("DASK_DISTRIBUTED__ADMIN__SYSTEM_MONITOR__INTERVAL", "300ms")
    env = worker_env()
    assert env["OMP_NUM_THREADS"] == "3" and env["OPENBLAS_NUM_THREADS"] == "1"
    assert env["DASK_DISTRIBUTED__ADMIN__SYSTEM_MONITOR__INTERVAL"] == "300ms"
    assert env["DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED"] == "False"
    loud = worker_env(profile=True)
    assert not any(k.startswith("DASK_DISTRIBUTED__ADMIN__TICK") for k in loud)
    assert "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED" not in loud
