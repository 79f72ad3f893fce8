"""Dask workers (and schedulers) that omfs starts itself, as plain processes.

Two kinds, both made of ``python -m distributed.cli.dask_worker`` processes, so the
user's script is never imported again in a worker (multiprocessing's *spawn*, which
``LocalCluster`` uses, re-runs an unguarded script in every child):

- the **background cluster** of ``om cluster start``: a detached ``dask scheduler`` and
  workers, recorded in ``cluster.json`` of the user's omfs state folder. Every context
  without a cluster of its own uses it while it runs, so tasks start in milliseconds.
- a **private cluster**, started on a context's first remote task when no background
  cluster runs: the scheduler runs in this process, the workers are subprocesses that
  exit when it does (``--death-timeout``).

Both are private: they speak TLS with a certificate made for them at start (see
:mod:`omfs.runtime._tls`), every listener binds 127.0.0.1 unless told a host, and their
HTTP servers serve nothing unless the dashboard is asked for. ``cluster.json`` records the
start time and command line of each process, and only a process that still matches both
is ever signalled.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omfs.errors import ClusterUnavailableError, ConfigError
from omfs.runtime._tls import ClusterTLS, make_tls, secure_folder, write_private

__all__ = [
    "BackgroundCluster",
    "PrivateCluster",
    "ProcessIdentity",
    "StopReport",
    "WorkerSpec",
    "background",
    "background_tls",
    "check_reachable",
    "check_speaks_dask",
    "gateway",
    "parse_worker_spec",
    "start_background",
    "state_dir",
    "stop_background",
]

_STATE_FILE = "cluster.json"
#: the Unix socket of the background cluster's runtime gateway, beside cluster.json
_GATEWAY_SOCKET = "runtime.sock"
#: the stem of the background cluster's certificate and key files, beside cluster.json
_TLS_STEM = "cluster"
#: the address every process binds unless the user gives a host
LOOPBACK = "127.0.0.1"
#: the scheduler's dashboard port when asked for (as Dask's)
DASHBOARD_PORT = 8787
_START_TIMEOUT = float(os.environ.get("OMFS_CLUSTER_START_TIMEOUT", "90"))
#: a task whose resources no worker offers any more fails after this (Dask: never)
_NO_WORKERS_TIMEOUT = "30s"


def state_dir() -> Path:
    """The user's omfs state folder: ``$OMFS_STATE_DIR``, else ``$XDG_STATE_HOME/omfs``
    (``~/.local/state/omfs``)."""
    if os.environ.get("OMFS_STATE_DIR"):
        return Path(os.environ["OMFS_STATE_DIR"]).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return Path(base) / "omfs"


def _secure_state_dir() -> Path:
    """The state folder, made (or tightened to) mode 0700: it holds the clusters' keys."""
    return secure_folder(state_dir())


def background_tls() -> ClusterTLS:
    """The certificate and key files of the background cluster."""
    return ClusterTLS.at(state_dir(), _TLS_STEM)


@dataclass(frozen=True)
class WorkerSpec:
    """One worker process: a name and the resources it offers (``{"gpu": 1}``)."""

    name: str
    resources: dict[str, float] = field(default_factory=dict)

    def resource_text(self) -> str:
        return ",".join(f"{k}={v:g}" for k, v in sorted(self.resources.items()))


def parse_worker_spec(text: str) -> dict[str, float]:
    """``"gpu=1,memory=16e9"`` or ``"gpu"`` (amount 1) as a resources dict."""
    resources: dict[str, float] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, amount = item.partition("=")
        name = name.strip()
        if not name or not name.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(
                f"Invalid worker resource {item!r}: use NAME or NAME=AMOUNT, e.g. gpu=1"
            )
        try:
            value = float(amount) if sep else 1.0
        except ValueError:
            raise ConfigError(
                f"Invalid worker resource {item!r}: the amount must be a number, e.g. gpu=1"
            ) from None
        if value <= 0:
            raise ConfigError(f"Invalid worker resource {item!r}: the amount must be positive")
        resources[name] = value
    return resources


def _host_port(address: str) -> tuple[str, int]:
    rest = address.split("://", 1)[-1]
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        raise ClusterUnavailableError(
            f"{address!r} is not a scheduler address such as 'tcp://host:8786'."
        )
    return host.strip("[]"), int(port)


def check_reachable(address: str, timeout: float = 3.0) -> None:
    """Fail at once when nothing listens at ``address`` (Dask's client would retry until
    its timeout)."""
    from omfs._storage import connection_problem

    problem = connection_problem(*_host_port(address), timeout)
    if problem is None:
        return
    cause = problem[1]
    raise ClusterUnavailableError(
        f"Cannot reach the Dask scheduler at {address}: {cause}. Start it (`om cluster "
        "start`, or `dask scheduler`), or fix --cluster / $OMFS_CLUSTER."
    )


def check_speaks_dask(address: str, timeout: float = 5.0) -> None:
    """Fail at once when the server at a ``tcp://`` ``address`` is not a Dask scheduler: one
    that answers with bytes that do not start a Dask message (an HTTP or SSH server on that
    port: Dask's client would read them as a frame length and try to allocate exabytes), or
    one that stays silent (an HTTP server waits for a request: Dask's client would wait for
    ever). A Dask scheduler greets every new connection with its handshake at once."""
    import socket
    import struct

    if address.split("://", 1)[0] not in ("tcp", address):
        return  # tls:// and others: their own handshake says it
    try:
        sock = socket.create_connection(_host_port(address), timeout=timeout)
    except OSError:  # gone: the client says what it finds
        return
    with sock:
        try:
            head = _receive(sock, 8)
        except TimeoutError:
            raise ClusterUnavailableError(
                f"{address} is not a Dask scheduler: it accepted a connection but sent no "
                f"Dask handshake within {timeout:g} s (another server listens on that port?). "
                "Fix --cluster / $OMFS_CLUSTER, or start a scheduler with `om cluster start`."
            ) from None
        except OSError:
            return
        if head is None:
            return
        (size,) = struct.unpack("<Q", head)
        try:
            body = _receive(sock, 8) if 16 <= size <= 2**20 else None
        except OSError:
            body = None
        frames = struct.unpack("<Q", body)[0] if body is not None else 0
    if not 1 <= frames <= size // 8:
        raise ClusterUnavailableError(
            f"{address} is not a Dask scheduler: it answered {head!r}..., which is not the "
            "Dask protocol (another server listens on that port?). Fix --cluster / "
            "$OMFS_CLUSTER, or start a scheduler with `om cluster start`."
        )


def _receive(sock: Any, size: int) -> bytes | None:
    """Exactly ``size`` bytes from ``sock``, or None when it closes first."""
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _env() -> dict[str, str]:
    """The environment of worker processes: this one's, plus its import path (so models
    defined in the user's modules unpickle there)."""
    paths = [p for p in sys.path if p and os.path.isdir(p)]
    extra = os.environ.get("PYTHONPATH", "")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*paths, *([extra] if extra else [])])}
    env.pop("DASK_LOGGING__DISTRIBUTED", None)  # the CLI's quiet: workers log to their file
    # a worker's HTTP server (Prometheus metrics, health) serves nothing: it has no TLS
    env["DASK_DISTRIBUTED__WORKER__HTTP__ROUTES"] = "[]"
    return env


def _worker_command(
    address_args: list[str],
    spec: WorkerSpec,
    death_timeout: int,
    tls: ClusterTLS,
    host: str = LOOPBACK,
) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "distributed.cli.dask_worker",
        *address_args,
        "--name",
        spec.name,
        "--nthreads",
        "1",
        "--no-nanny",
        "--no-dashboard",
        "--dashboard-address",
        _join(host, 0),
        "--host",
        host,
        "--protocol",
        "tls",
        *tls.cli_args(),
        "--death-timeout",
        str(death_timeout),
    ]
    if spec.resources:
        cmd += ["--resources", spec.resource_text()]
    return cmd


def _join(host: str, port: int) -> str:
    """``host:port``, with brackets around an IPv6 host."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _tail(path: Path, lines: int = 5) -> str:
    with contextlib.suppress(OSError):
        text = path.read_text(errors="replace").strip().splitlines()
        errors = [line for line in text if "Error" in line or "error" in line]
        return " | ".join((errors or text)[-lines:])
    return ""


def _wait_for_workers(client: Any, n: int, procs: list[subprocess.Popen], log: Path) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    while len(client.scheduler_info(n_workers=-1)["workers"]) < n:
        dead = [p for p in procs if p.poll() is not None]
        if dead:
            raise ClusterUnavailableError(
                f"A Dask worker exited while starting (exit code {dead[0].returncode}): "
                f"{_tail(log) or 'no output'}. Its log: {log}"
            )
        if time.monotonic() > deadline:
            raise ClusterUnavailableError(
                f"The Dask workers did not start within {_START_TIMEOUT:g} s. Their log: {log}"
            )
        time.sleep(0.05)


def _terminate(procs: list[subprocess.Popen], wait: float = 5.0) -> None:
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(OSError):
                p.terminate()
    deadline = time.monotonic() + wait
    for p in procs:
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                p.kill()
                p.wait(5)


def default_workers(n: int | None = None) -> list[WorkerSpec]:
    count = n if n is not None else min(2, os.cpu_count() or 1)
    return [WorkerSpec(f"worker-{i}") for i in range(count)]


# -- a private cluster: scheduler in this process, workers as subprocesses ----------------
class PrivateCluster:
    """A scheduler in this process and ``dask worker`` subprocesses; ``close()`` (or this
    process ending) stops them. They speak TLS with a certificate made for this cluster."""

    def __init__(self, workers: list[WorkerSpec] | None = None):
        import logging

        import dask
        from distributed import Client, LocalCluster

        specs = workers or default_workers()
        folder = _secure_state_dir()
        _remove_dead_private_files(folder)
        (folder / "logs").mkdir(mode=0o700, exist_ok=True)
        stem = f"private-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.log = folder / "logs" / f"{stem}.log"
        self.procs: list[subprocess.Popen] = []
        self.tls = make_tls(folder, stem)
        try:
            security = self.tls.security()
            settings = {
                "distributed.scheduler.no-workers-timeout": _NO_WORKERS_TIMEOUT,
                "distributed.scheduler.http.routes": [],  # no TLS there: serve nothing
            }
            with dask.config.set(settings):
                self._cluster = LocalCluster(
                    n_workers=0,
                    processes=False,
                    silence_logs=logging.CRITICAL,
                    host=LOOPBACK,
                    protocol="tls",
                    security=security,
                    dashboard_address=None,
                    scheduler_kwargs={"dashboard": False, "dashboard_address": _join(LOOPBACK, 0)},
                )
            self.address = self._cluster.scheduler_address
            with open(self.log, "ab") as out:
                for spec in specs:
                    self.procs.append(
                        subprocess.Popen(
                            _worker_command([self.address], spec, 10, self.tls),
                            env=_env(),
                            stdin=subprocess.DEVNULL,
                            stdout=out,
                            stderr=subprocess.STDOUT,
                        )
                    )
            self.client = Client(self._cluster, security=security)
            _wait_for_workers(self.client, len(specs), self.procs, self.log)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()
        _terminate(self.procs)
        cluster = getattr(self, "_cluster", None)
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close()
        self.tls.remove()
        with contextlib.suppress(OSError):
            self.log.unlink()


def _remove_dead_private_files(folder: Path) -> None:
    """Remove the certificate files and logs of private clusters whose process died
    without closing them (killed)."""
    for path in [*folder.glob("private-*-*.pem"), *folder.glob("logs/private-*.log")]:
        pid = path.name.split("-")[1].split(".")[0]
        if pid.isdigit() and not _pid_exists(int(pid)):
            with contextlib.suppress(OSError):
                path.unlink()


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- the background cluster of `om cluster start` ------------------------------------------
@dataclass(frozen=True)
class ProcessIdentity:
    """What omfs saw of a process it started: its pid, start time and exact command line.
    A pid is signalled only while both still match (never a reused pid, nor another
    process named in an edited ``cluster.json``)."""

    pid: int
    create_time: float
    cmdline: tuple[str, ...]

    @classmethod
    def of(cls, pid: int) -> ProcessIdentity | None:
        """The identity of the running process ``pid`` (None when it does not run)."""
        import psutil

        try:
            proc = psutil.Process(pid)
            with proc.oneshot():
                return cls(pid, proc.create_time(), tuple(proc.cmdline()))
        except psutil.Error:
            return None

    def process(self) -> Any:
        """The ``psutil.Process`` of ``pid`` while it runs the very process recorded (same
        start time and command line), else None. psutil re-checks the start time before it
        signals, so a pid reused after this check is not signalled either."""
        import psutil

        try:
            proc = psutil.Process(self.pid)
            with proc.oneshot():
                same = (
                    abs(proc.create_time() - self.create_time) < 0.005
                    and tuple(proc.cmdline()) == self.cmdline
                )
        except psutil.Error:
            return None
        return proc if same else None

    def to_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "create_time": self.create_time, "cmdline": list(self.cmdline)}


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

    @property
    def pids(self) -> tuple[int, ...]:
        """Every process of the cluster, in the order they are stopped."""
        gateway = () if self.gateway_pid is None else (self.gateway_pid,)
        return tuple(dict.fromkeys((*gateway, *self.worker_pids, self.scheduler_pid)))

    def process(self, pid: int) -> Any:
        """The ``psutil.Process`` of ``pid`` when it still runs the process this record says
        omfs started, else None."""
        for identity in self.processes:
            if identity.pid == pid:
                return identity.process()
        return None

    def is_ours(self, pid: int) -> bool:
        return self.process(pid) is not None

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
        _host_port(address)
        pids = [doc["scheduler_pid"], *doc["worker_pids"]]
        gateway_pid = doc.get("gateway_pid")
        if gateway_pid is not None:
            pids.append(gateway_pid)
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
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError, ClusterUnavailableError):
        return None


def background() -> BackgroundCluster | None:
    """The running background cluster, or None (a stale record is removed)."""
    path = state_dir() / _STATE_FILE
    record = _read_state(path)
    if record is None:
        return None
    if not record.is_ours(record.scheduler_pid):
        with contextlib.suppress(OSError):
            path.unlink()
        return None
    return record


def start_background(
    workers: list[WorkerSpec] | None = None,
    *,
    port: int = 0,
    host: str | None = None,
    dashboard: bool = False,
) -> BackgroundCluster:
    """Start a detached scheduler and workers on this machine and record them.

    They listen on ``host`` (127.0.0.1 by default) and accept only clients that present the
    certificate made here (:func:`background_tls`); the scheduler's dashboard runs only
    when ``dashboard`` is asked for.
    """
    from distributed import Client

    running = background()
    if running is not None:
        raise ClusterUnavailableError(
            f"A background cluster already runs at {running.address}; stop it first "
            "(`om cluster stop`)."
        )
    specs = workers or default_workers()
    host = host or LOOPBACK
    folder = _secure_state_dir()
    tls = make_tls(folder, _TLS_STEM)
    security = tls.security()
    scheduler_file = folder / "scheduler.json"
    scheduler_file.unlink(missing_ok=True)
    log = folder / "cluster.log"
    env = _env()
    env.setdefault("DASK_DISTRIBUTED__SCHEDULER__NO_WORKERS_TIMEOUT", _NO_WORKERS_TIMEOUT)
    detached: dict[str, Any] = {
        "env": env,
        "stdin": subprocess.DEVNULL,
        "stderr": subprocess.STDOUT,
        "start_new_session": True,
    }
    procs: list[subprocess.Popen] = []
    try:
        with open(log, "ab") as out:
            procs.append(
                subprocess.Popen(
                    _scheduler_command(scheduler_file, tls, host, port, dashboard),
                    stdout=out,
                    **{**detached, "env": _scheduler_env(env, dashboard)},
                )
            )
            where = ["--scheduler-file", str(scheduler_file)]
            for spec in specs:
                cmd = _worker_command(where, spec, 60, tls, host)
                procs.append(subprocess.Popen(cmd, stdout=out, **detached))
        _wait_for_path(scheduler_file, procs[0], "The Dask scheduler", log)
        with Client(scheduler_file=str(scheduler_file), timeout="30s", security=security) as client:
            _wait_for_workers(client, len(specs), procs[1:], log)
            address = client.scheduler.address
            link = client.dashboard_link if dashboard else None
        procs.append(_start_gateway(address, procs[0].pid, tls, log, detached))
        identities = tuple(_identity_of(p, log) for p in procs)
    except BaseException:
        _terminate(procs)
        tls.remove()
        raise
    record = BackgroundCluster(
        address=address,
        scheduler_pid=procs[0].pid,
        worker_pids=tuple(p.pid for p in procs[1:-1]),
        workers=tuple(specs),
        started=time.time(),
        log=str(log),
        gateway_pid=procs[-1].pid,
        processes=identities,
        dashboard=link,
    )
    write_private(folder / _STATE_FILE, json.dumps(record.to_dict(), indent=2).encode())
    return record


def _scheduler_command(
    scheduler_file: Path, tls: ClusterTLS, host: str, port: int, dashboard: bool
) -> list[str]:
    http = (
        ["--dashboard", "--dashboard-address", _join(host, DASHBOARD_PORT)]
        if dashboard
        else ["--no-dashboard", "--dashboard-address", _join(host, 0)]
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


def _identity_of(proc: subprocess.Popen, log: Path) -> ProcessIdentity:
    identity = ProcessIdentity.of(proc.pid)
    if identity is None or proc.poll() is not None:
        raise ClusterUnavailableError(
            f"A process of the cluster exited while starting: {_tail(log) or 'no output'}. "
            f"Its log: {log}"
        )
    return identity


def _start_gateway(
    address: str, scheduler_pid: int, tls: ClusterTLS, log: Path, detached: dict[str, Any]
) -> subprocess.Popen:
    """Start the runtime gateway (see :mod:`omfs.runtime.gateway`); wait for its socket."""
    path = state_dir() / _GATEWAY_SOCKET
    path.unlink(missing_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "omfs.runtime.gateway",
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
        _terminate([proc])
        raise
    return proc


def _wait_for_path(path: Path, proc: subprocess.Popen, what: str, log: Path) -> None:
    """Wait until ``proc`` has made ``path`` (its sign of being ready), or say it failed."""
    deadline = time.monotonic() + _START_TIMEOUT
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise ClusterUnavailableError(
                f"{what} did not start: {_tail(log) or 'no output'}. Its log: {log}"
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
