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
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omfs.errors import ClusterUnavailableError, ConfigError

__all__ = [
    "BackgroundCluster",
    "PrivateCluster",
    "WorkerSpec",
    "background",
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


def check_speaks_dask(address: str, timeout: float = 3.0) -> None:
    """Fail at once when the server at a ``tcp://`` ``address`` answers with bytes that do
    not start a Dask message (an HTTP or SSH server on that port): Dask's client would read
    them as a frame length and try to allocate exabytes. A Dask scheduler greets every new
    connection with a short handshake; a server that stays silent is left to the client."""
    import socket
    import struct

    if address.split("://", 1)[0] not in ("tcp", address):
        return  # tls:// and others: their own handshake says it
    try:
        with socket.create_connection(_host_port(address), timeout=timeout) as sock:
            head = _receive(sock, 8)
            if head is None:
                return
            (size,) = struct.unpack("<Q", head)
            body = _receive(sock, 8) if 16 <= size <= 2**20 else None
            frames = struct.unpack("<Q", body)[0] if body is not None else 0
    except OSError:  # silent, or gone: the client says what it finds
        return
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
    return env


def _worker_command(address_args: list[str], spec: WorkerSpec, death_timeout: int) -> list[str]:
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
        "--host",
        "127.0.0.1",
        "--death-timeout",
        str(death_timeout),
    ]
    if spec.resources:
        cmd += ["--resources", spec.resource_text()]
    return cmd


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
    process ending) stops them."""

    def __init__(self, workers: list[WorkerSpec] | None = None):
        import logging

        from distributed import Client, LocalCluster

        specs = workers or default_workers()
        folder = state_dir() / "logs"
        folder.mkdir(parents=True, exist_ok=True)
        self.log = folder / f"private-{os.getpid()}.log"
        import dask

        with dask.config.set({"distributed.scheduler.no-workers-timeout": _NO_WORKERS_TIMEOUT}):
            self._cluster = LocalCluster(
                n_workers=0,
                processes=False,
                dashboard_address=None,
                silence_logs=logging.CRITICAL,
                host="127.0.0.1",
                protocol="tcp",
            )
        self.address = self._cluster.scheduler_address
        self.procs: list[subprocess.Popen] = []
        try:
            with open(self.log, "ab") as out:
                for spec in specs:
                    self.procs.append(
                        subprocess.Popen(
                            _worker_command([self.address], spec, death_timeout=10),
                            env=_env(),
                            stdin=subprocess.DEVNULL,
                            stdout=out,
                            stderr=subprocess.STDOUT,
                        )
                    )
            self.client = Client(self._cluster)
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
        with contextlib.suppress(Exception):
            self._cluster.close()
        with contextlib.suppress(OSError):
            self.log.unlink()


# -- the background cluster of `om cluster start` ------------------------------------------
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "scheduler_pid": self.scheduler_pid,
            "worker_pids": list(self.worker_pids),
            "workers": [{"name": w.name, "resources": w.resources} for w in self.workers],
            "started": self.started,
            "log": self.log,
            "gateway_pid": self.gateway_pid,
        }


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
        return BackgroundCluster(
            address=str(address),
            scheduler_pid=pids[0],
            worker_pids=tuple(doc["worker_pids"]),
            workers=workers,
            started=float(doc["started"]),
            log=str(doc["log"]),
            gateway_pid=gateway_pid,
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError, ClusterUnavailableError):
        return None


def _is_ours(pid: int) -> bool:
    """True when ``pid`` still runs a Dask process or the runtime gateway (not a reused
    pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: trust the pid if it exists
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True
    return b"distributed.cli" in cmdline or b"omfs.runtime.gateway" in cmdline


def background() -> BackgroundCluster | None:
    """The running background cluster, or None (a stale record is removed)."""
    path = state_dir() / _STATE_FILE
    record = _read_state(path)
    if record is None:
        return None
    if not _is_ours(record.scheduler_pid):
        with contextlib.suppress(OSError):
            path.unlink()
        return None
    return record


def start_background(
    workers: list[WorkerSpec] | None = None, *, port: int = 0
) -> BackgroundCluster:
    """Start a detached scheduler and workers on this machine and record them."""
    from distributed import Client

    running = background()
    if running is not None:
        raise ClusterUnavailableError(
            f"A background cluster already runs at {running.address}; stop it first "
            "(`om cluster stop`)."
        )
    specs = workers or default_workers()
    folder = state_dir()
    folder.mkdir(parents=True, exist_ok=True)
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
    with open(log, "ab") as out:
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "distributed.cli.dask_scheduler",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--no-dashboard",
                    "--scheduler-file",
                    str(scheduler_file),
                ],
                stdout=out,
                **detached,
            )
        )
        for spec in specs:
            cmd = _worker_command(["--scheduler-file", str(scheduler_file)], spec, 60)
            procs.append(subprocess.Popen(cmd, stdout=out, **detached))
    try:
        _wait_for_path(scheduler_file, procs[0], "The Dask scheduler", log)
        with Client(scheduler_file=str(scheduler_file), timeout="30s") as client:
            _wait_for_workers(client, len(specs), procs[1:], log)
            address = client.scheduler.address
        gateway = _start_gateway(address, procs[0].pid, log, detached)
    except BaseException:
        _terminate(procs)
        raise
    record = BackgroundCluster(
        address=address,
        scheduler_pid=procs[0].pid,
        worker_pids=tuple(p.pid for p in procs[1:]),
        workers=tuple(specs),
        started=time.time(),
        log=str(log),
        gateway_pid=gateway.pid,
    )
    tmp = folder / f".{_STATE_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(record.to_dict(), indent=2))
    os.replace(tmp, folder / _STATE_FILE)
    return record


def _start_gateway(
    address: str, scheduler_pid: int, log: Path, detached: dict[str, Any]
) -> subprocess.Popen:
    """Start the runtime gateway (see :mod:`omfs.runtime.gateway`); wait for its socket."""
    path = state_dir() / _GATEWAY_SOCKET
    path.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "omfs.runtime.gateway", address, str(path), str(scheduler_pid)]
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
    if record is None or record.gateway_pid is None or not _is_ours(record.gateway_pid):
        return None
    path = state_dir() / _GATEWAY_SOCKET
    return path if path.is_socket() else None


def stop_background() -> BackgroundCluster | None:
    """Stop the background cluster (None when none runs)."""
    record = background()
    path = state_dir() / _STATE_FILE
    if record is None:
        return None
    gateway_pid = () if record.gateway_pid is None else (record.gateway_pid,)
    pids = [p for p in (*gateway_pid, *record.worker_pids, record.scheduler_pid) if _is_ours(p)]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while any(_is_ours(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in pids:
        if _is_ours(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    for leftover in (path, state_dir() / _GATEWAY_SOCKET):
        with contextlib.suppress(OSError):
            leftover.unlink()
    return record
