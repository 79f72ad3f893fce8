"""The background cluster of ``om cluster start``: a detached ``dask scheduler``, workers
and the runtime gateway, recorded in ``cluster.json`` of the user's omfs state folder.
Every context without a cluster of its own uses it while it runs, so tasks start in
milliseconds. ``cluster.json`` records the start time and command line of each process,
and only a process that still matches both is ever signalled."""

from __future__ import annotations

import contextlib
import json
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omfs._util import atomic_write
from omfs.compute._tls import ClusterTLS, make_tls
from omfs.compute.identity import ProcessIdentity
from omfs.compute.workers import (
    DASHBOARD_PORT,
    LOOPBACK,
    NO_WORKERS_TIMEOUT,
    START_TIMEOUT,
    WorkerSpec,
    default_workers,
    host_port,
    join_host_port,
    log_tail,
    secure_state_dir,
    state_dir,
    terminate,
    wait_for_workers,
    worker_command,
    worker_env,
)
from omfs.errors import ClusterUnavailableError

__all__ = [
    "BackgroundCluster",
    "StopReport",
    "background",
    "background_tls",
    "gateway",
    "orphaned",
    "start_background",
    "stop_background",
]

_STATE_FILE = "cluster.json"
#: the Unix socket of the background cluster's runtime gateway, beside cluster.json
_GATEWAY_SOCKET = "runtime.sock"
#: the stem of the background cluster's certificate and key files, beside cluster.json
_TLS_STEM = "cluster"


def background_tls() -> ClusterTLS:
    """The certificate and key files of the background cluster."""
    return ClusterTLS.at(state_dir(), _TLS_STEM)


@dataclass(frozen=True)
class BackgroundCluster:
    """What ``cluster.json`` records of a running background cluster."""

    address: str
    scheduler_pid: int
    worker_pids: tuple[int, ...]
    workers: tuple[WorkerSpec, ...]
    started: float
    log: str
    gateway_pid: int | None = None
    #: the identity of each process above; a record without them (older omfs) is never
    #: trusted to signal anything
    processes: tuple[ProcessIdentity, ...] = ()
    dashboard: str | None = None
    #: the job scheduler (``python -m omfs.cli.scheduler``) and the root whose schedules it
    #: fires; None when started without one
    jobs_scheduler_pid: int | None = None
    schedules_root: str | None = None

    @property
    def pids(self) -> tuple[int, ...]:
        """Every process of the cluster, in the order they are stopped (the job scheduler
        first, so that no slot fires on a cluster going away)."""
        front = [p for p in (self.jobs_scheduler_pid, self.gateway_pid) if p is not None]
        return tuple(dict.fromkeys((*front, *self.worker_pids, self.scheduler_pid)))

    def process(self, pid: int) -> Any:
        """The ``psutil.Process`` of ``pid`` when it still runs the process this record says
        omfs started, else None."""
        for identity in self.processes:
            if identity.pid == pid:
                return identity.process()
        return None

    def is_ours(self, pid: int) -> bool:
        return self.process(pid) is not None

    def survivors(self) -> tuple[int, ...]:
        """The processes of the cluster, other than its Dask scheduler, that still run."""
        return tuple(p for p in self.pids if p != self.scheduler_pid and self.is_ours(p))

    def role(self, pid: int) -> str:
        """What process ``pid`` is in this cluster, for messages: ``gateway (pid 12)``."""
        named: dict[int | None, str] = {
            p: f"worker {w.name}" for w, p in zip(self.workers, self.worker_pids, strict=False)
        }
        named |= {self.scheduler_pid: "Dask scheduler", self.gateway_pid: "gateway"}
        named[self.jobs_scheduler_pid] = "job scheduler"
        return f"{named.get(pid, 'process')} (pid {pid})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "scheduler_pid": self.scheduler_pid,
            "worker_pids": list(self.worker_pids),
            "workers": [{"name": w.name, "resources": w.resources} for w in self.workers],
            "started": self.started,
            "log": self.log,
            "gateway_pid": self.gateway_pid,
            "dashboard": self.dashboard,
            "jobs_scheduler_pid": self.jobs_scheduler_pid,
            "schedules_root": self.schedules_root,
            "processes": [p.to_dict() for p in self.processes],
        }


def _read_identity(doc: dict[str, Any]) -> ProcessIdentity:
    pid, created, cmdline = doc["pid"], doc["create_time"], doc["cmdline"]
    if type(pid) is not int or not isinstance(created, (int, float)):
        raise TypeError("bad process identity")
    if not isinstance(cmdline, list) or not all(isinstance(a, str) for a in cmdline):
        raise TypeError("bad process command line")
    return ProcessIdentity(pid, float(created), tuple(cmdline))


def _read_state(path: Path) -> BackgroundCluster | None:
    """``cluster.json``, validated (None when absent or not one of ours)."""
    try:
        doc = json.loads(path.read_text())
        address = doc["address"]
        host_port(address)
        pids = [doc["scheduler_pid"], *doc["worker_pids"]]
        gateway_pid, jobs_pid = doc.get("gateway_pid"), doc.get("jobs_scheduler_pid")
        pids += [p for p in (gateway_pid, jobs_pid) if p is not None]
        if not all(type(p) is int and p > 1 for p in pids):
            return None
        workers = tuple(
            WorkerSpec(str(w["name"]), {str(k): float(v) for k, v in w["resources"].items()})
            for w in doc["workers"]
        )
        dashboard = doc.get("dashboard")
        return BackgroundCluster(
            address=str(address),
            scheduler_pid=pids[0],
            worker_pids=tuple(doc["worker_pids"]),
            workers=workers,
            started=float(doc["started"]),
            log=str(doc["log"]),
            gateway_pid=gateway_pid,
            processes=tuple(_read_identity(p) for p in doc.get("processes") or ()),
            dashboard=None if dashboard is None else str(dashboard),
            jobs_scheduler_pid=jobs_pid,
            schedules_root=_text_or_none(doc.get("schedules_root")),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError, ClusterUnavailableError):
        return None


def _text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def background() -> BackgroundCluster | None:
    """The running background cluster, or None. A stale record is removed; one whose Dask
    scheduler died while other processes of it run is kept (:func:`orphaned`)."""
    path = state_dir() / _STATE_FILE
    record = _read_state(path)
    if record is None:
        return None
    if not record.is_ours(record.scheduler_pid):
        if not record.survivors():
            with contextlib.suppress(OSError):
                path.unlink()
        return None
    return record


def orphaned() -> BackgroundCluster | None:
    """The record of a background cluster whose Dask scheduler died (killed) while some of
    its other processes still run, which ``om cluster stop`` stops; else None."""
    record = _read_state(state_dir() / _STATE_FILE)
    if record is None or record.is_ours(record.scheduler_pid) or not record.survivors():
        return None
    return record


def start_background(
    workers: list[WorkerSpec] | None = None,
    *,
    port: int = 0,
    host: str | None = None,
    dashboard: bool = False,
    schedules: dict[str, Any] | None = None,
) -> BackgroundCluster:
    """Start a detached scheduler and workers on this machine and record them.

    They listen on ``host`` (127.0.0.1 by default) and accept only clients that present the
    certificate made here (:func:`background_tls`); the scheduler's dashboard runs only
    when ``dashboard`` is asked for. ``schedules`` (``root``, ``storage_options``,
    ``bucket``, ``cluster``): also run a job scheduler for that context's schedules, whose
    runs go to this cluster (see :mod:`omfs.cli.scheduler`).
    """
    _refuse_second()
    specs = workers or default_workers()
    folder = secure_state_dir()
    launch = _Launch(
        tls=make_tls(folder, _TLS_STEM),
        host=host or LOOPBACK,
        port=port,
        dashboard=dashboard,
        log=folder / "cluster.log",
        scheduler_file=folder / "scheduler.json",
    )
    procs: list[subprocess.Popen[bytes]] = []  # every process started so far, for the cleanup
    try:
        _spawn_scheduler_and_workers(launch, specs, procs)
        address, link = _wait_until_ready(launch, procs, len(specs))
        gateway_proc = _start_gateway(
            address, procs[0].pid, launch.tls, launch.log, launch.detached
        )
        procs.append(gateway_proc)
        jobs = None if schedules is None else _start_jobs_scheduler(schedules, launch)
        procs += [jobs] if jobs is not None else []
        identities = tuple(_identity_of(p, launch.log) for p in procs)
    except BaseException:
        terminate(procs)
        launch.tls.remove()
        raise
    record = BackgroundCluster(
        address=address,
        scheduler_pid=procs[0].pid,
        worker_pids=tuple(p.pid for p in procs[1 : len(specs) + 1]),
        workers=tuple(specs),
        started=time.time(),
        log=str(launch.log),
        gateway_pid=gateway_proc.pid,
        processes=identities,
        dashboard=link,
        jobs_scheduler_pid=None if jobs is None else jobs.pid,
        schedules_root=None if schedules is None else str(schedules["root"]),
    )
    atomic_write(folder / _STATE_FILE, json.dumps(record.to_dict(), indent=2).encode(), mode=0o600)
    return record


def _refuse_second() -> None:
    """One background cluster per user: refuse to start another while one runs."""
    running = background()
    if running is not None:
        raise ClusterUnavailableError(
            f"A background cluster already runs at {running.address}; stop it first "
            "(`om cluster stop`)."
        )
    left = orphaned()
    if left is not None:
        raise ClusterUnavailableError(
            f"The Dask scheduler of the background cluster at {left.address} died, but "
            f"{', '.join(map(left.role, left.survivors()))} still run; stop them first "
            "(`om cluster stop`)."
        )


@dataclass(frozen=True)
class _Launch:
    """Where and how the processes of one background cluster start."""

    tls: ClusterTLS
    host: str
    port: int
    dashboard: bool
    log: Path
    scheduler_file: Path
    #: Popen options of a process that outlives this one (own session, no terminal)
    detached: dict[str, Any] = field(default_factory=lambda: _detached_options())


def _detached_options(profile: bool = False) -> dict[str, Any]:
    env = worker_env(profile=profile)
    env.setdefault("DASK_DISTRIBUTED__SCHEDULER__NO_WORKERS_TIMEOUT", NO_WORKERS_TIMEOUT)
    return {
        "env": env,
        "stdin": subprocess.DEVNULL,
        "stderr": subprocess.STDOUT,
        "start_new_session": True,
    }


def _spawn_scheduler_and_workers(
    launch: _Launch, specs: list[WorkerSpec], procs: list[subprocess.Popen[bytes]]
) -> None:
    """Start the scheduler, then one process per worker spec (appended to ``procs``)."""
    launch.scheduler_file.unlink(missing_ok=True)
    detached = launch.detached
    with open(launch.log, "ab") as out:
        command = _scheduler_command(
            launch.scheduler_file, launch.tls, launch.host, launch.port, launch.dashboard
        )
        workers = detached
        if launch.dashboard:  # its pages chart the machine and the workers' profiles
            workers = _detached_options(profile=True)
        env = _scheduler_env(workers["env"], launch.dashboard)
        procs.append(subprocess.Popen(command, stdout=out, **{**workers, "env": env}))
        where = ["--scheduler-file", str(launch.scheduler_file)]
        for spec in specs:
            command = worker_command(where, spec, 60, launch.tls, launch.host)
            procs.append(subprocess.Popen(command, stdout=out, **workers))


def _wait_until_ready(
    launch: _Launch, procs: list[subprocess.Popen[bytes]], workers: int
) -> tuple[str, str | None]:
    """Wait for the scheduler and its ``workers``; its address and dashboard link."""
    from distributed import Client

    _wait_for_path(launch.scheduler_file, procs[0], "The Dask scheduler", launch.log)
    security = launch.tls.security()
    with Client(
        scheduler_file=str(launch.scheduler_file), timeout="30s", security=security
    ) as client:
        wait_for_workers(client, workers, procs[1:], launch.log)
        return client.scheduler.address, client.dashboard_link if launch.dashboard else None


def _scheduler_command(
    scheduler_file: Path, tls: ClusterTLS, host: str, port: int, dashboard: bool
) -> list[str]:
    http = (
        ["--dashboard", "--dashboard-address", join_host_port(host, DASHBOARD_PORT)]
        if dashboard
        else ["--no-dashboard", "--dashboard-address", join_host_port(host, 0)]
    )
    return [
        sys.executable,
        "-m",
        "distributed.cli.dask_scheduler",
        "--host",
        host,
        "--port",
        str(port),
        "--protocol",
        "tls",
        *tls.cli_args(),
        *http,
        "--scheduler-file",
        str(scheduler_file),
    ]


def _scheduler_env(env: dict[str, str], dashboard: bool) -> dict[str, str]:
    """Without the dashboard, the scheduler's HTTP server (which Dask always starts, and
    which has no TLS) serves nothing: no metrics, no logs, no task names."""
    return env if dashboard else {**env, "DASK_DISTRIBUTED__SCHEDULER__HTTP__ROUTES": "[]"}


def _identity_of(proc: subprocess.Popen[bytes], log: Path) -> ProcessIdentity:
    """The identity of ``proc`` once its own command line shows: ``Popen`` returns when the
    new program replaced the forked one, a moment before the kernel shows its arguments
    (read at once, the job scheduler's identity was empty and it read as stopped)."""
    args: Any = proc.args
    wanted = [str(a) for a in args]
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        identity = ProcessIdentity.of(proc.pid)
        if identity is None or proc.poll() is not None:
            raise ClusterUnavailableError(
                "A process of the cluster exited while starting: "
                f"{log_tail(log) or 'no output'}. Its log: {log}"
            )
        if list(identity.cmdline) == wanted:
            return identity
        if time.monotonic() > deadline:
            raise ClusterUnavailableError(
                f"A process of the cluster (pid {proc.pid}) did not show its command "
                f"{shlex.join(wanted)!r} in {START_TIMEOUT:.0f} s (it shows "
                f"{shlex.join(identity.cmdline)!r}). Its log: {log}"
            )
        time.sleep(0.01)


def _start_gateway(
    address: str, scheduler_pid: int, tls: ClusterTLS, log: Path, detached: dict[str, Any]
) -> subprocess.Popen[bytes]:
    """Start the runtime gateway (see :mod:`omfs.cli.gateway`); wait for its socket."""
    path = state_dir() / _GATEWAY_SOCKET
    path.unlink(missing_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "omfs.cli.gateway",
        address,
        str(path),
        str(scheduler_pid),
        str(tls.cert),
        str(tls.key),
    ]
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, **detached)
    try:
        _wait_for_path(path, proc, "The runtime gateway", log)
    except BaseException:
        terminate([proc])
        raise
    return proc


def _start_jobs_scheduler(context: dict[str, Any], launch: _Launch) -> subprocess.Popen[bytes]:
    """Start the job scheduler of the context ``context`` describes; it reads that on its
    standard input (storage options may hold secrets: never on a command line)."""
    cmd = [sys.executable, "-m", "omfs.cli.scheduler"]
    with open(launch.log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, **{**launch.detached, "stdin": subprocess.PIPE})
    assert proc.stdin is not None
    try:
        proc.stdin.write(json.dumps(context).encode() + b"\n")
        proc.stdin.close()
    except BaseException:
        terminate([proc])
        raise
    return proc


def _wait_for_path(path: Path, proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    """Wait until ``proc`` has made ``path`` (its sign of being ready), or say it failed."""
    deadline = time.monotonic() + START_TIMEOUT
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise ClusterUnavailableError(
                f"{what} did not start: {log_tail(log) or 'no output'}. Its log: {log}"
            )
        time.sleep(0.05)


def gateway(record: BackgroundCluster | None) -> Path | None:
    """The socket of the runtime gateway of ``record`` (the running background cluster,
    from :func:`background`), when the gateway runs too."""
    if record is None or record.gateway_pid is None or not record.is_ours(record.gateway_pid):
        return None
    path = state_dir() / _GATEWAY_SOCKET
    return path if path.is_socket() else None


@dataclass(frozen=True)
class StopReport:
    """What ``stop_background`` did: the pids it stopped, and those ``cluster.json`` named
    that it left alone (not the processes omfs started), with what runs there now."""

    record: BackgroundCluster
    stopped: tuple[int, ...]
    left_alone: tuple[tuple[int, str], ...]


def _what_runs(pid: int) -> str:
    identity = ProcessIdentity.of(pid)
    if identity is None:
        return "no longer runs"
    command = " ".join(identity.cmdline) or "a process without a command line"
    return f"runs `{command if len(command) <= 80 else command[:77] + '...'}`"


def stop_background() -> StopReport | None:
    """Stop the background cluster: signal only the processes that still match what
    ``cluster.json`` recorded at start (None when there is no valid record)."""
    path = state_dir() / _STATE_FILE
    record = _read_state(path)
    if record is None:
        return None
    import psutil

    ours = {pid: proc for pid in record.pids if (proc := record.process(pid)) is not None}
    left = tuple((pid, _what_runs(pid)) for pid in record.pids if pid not in ours)
    for proc in ours.values():
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(list(ours.values()), timeout=10)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=5)
    for leftover in (path, state_dir() / _GATEWAY_SOCKET):
        with contextlib.suppress(OSError):
            leftover.unlink()
    background_tls().remove()
    return StopReport(record, tuple(ours), left)
