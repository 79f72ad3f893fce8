"""The worker processes omfs starts itself (for the background and the private cluster
alike): their command line, environment, start-up wait and stop, and the checks of a
scheduler address before a client connects to it.

Workers run as ``python -m distributed.cli.dask_worker`` processes, so the user's script
is never imported again in a worker (multiprocessing's *spawn*, which ``LocalCluster``
uses, re-runs an unguarded script in every child).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from omfs.compute._tls import ClusterTLS, secure_folder
from omfs.compute.resources import ResourceSpec
from omfs.errors import ClusterUnavailableError

__all__ = [
    "DASHBOARD_PORT",
    "LOOPBACK",
    "NO_WORKERS_TIMEOUT",
    "QUIET_SETTINGS",
    "START_TIMEOUT",
    "WorkerSpec",
    "check_reachable",
    "check_speaks_dask",
    "default_workers",
    "host_port",
    "join_host_port",
    "log_tail",
    "parse_worker_spec",
    "quiet_settings",
    "secure_state_dir",
    "state_dir",
    "terminate",
    "wait_for_workers",
    "worker_command",
    "worker_env",
]

LOOPBACK = "127.0.0.1"
#: the scheduler's dashboard port when asked for (as Dask's)
DASHBOARD_PORT = 8787
#: Dask settings of the processes omfs starts with no dashboard to show: Dask's defaults
#: check each event loop every 20 ms and sample the machine's CPU, memory and network every
#: 0.5 s for the dashboard's charts. Idle, that cost two workers and their scheduler 0.1 CPU
#: second a second, taken from the tasks (a grid search on two cores ran 6% slower). Memory
#: limits are still checked every 100 ms. The environment overrides each.
QUIET_SETTINGS = {
    "distributed.admin.tick.interval": "200ms",
    "distributed.admin.system-monitor.interval": "2s",
}
START_TIMEOUT = float(os.environ.get("OMFS_CLUSTER_START_TIMEOUT", "90"))
#: a task whose resources no worker offers any more fails after this (Dask: never)
NO_WORKERS_TIMEOUT = "30s"


def state_dir() -> Path:
    """The user's omfs state folder: ``$OMFS_STATE_DIR``, else the user's state folder
    (platformdirs; on Linux ``$XDG_STATE_HOME/omfs``, i.e. ``~/.local/state/omfs``)."""
    if os.environ.get("OMFS_STATE_DIR"):
        return Path(os.environ["OMFS_STATE_DIR"]).expanduser()
    folder: Path = platformdirs.user_state_path("omfs", appauthor=False)
    return folder


def secure_state_dir() -> Path:
    """The state folder, made (or tightened to) mode 0700: it holds the clusters' keys."""
    return secure_folder(state_dir())


@dataclass(frozen=True)
class WorkerSpec:
    """One worker process: a name and the resources it offers (``{"gpu": 1}``)."""

    name: str
    resources: dict[str, float] = field(default_factory=dict)

    def resource_text(self) -> str:
        return ResourceSpec(self.resources).text()


def parse_worker_spec(text: str) -> dict[str, float]:
    """``"gpu=1,memory=16e9"`` or ``"gpu"`` (amount 1) as a resources dict (see
    :meth:`ResourceSpec.parse <omfs.compute.resources.ResourceSpec.parse>`)."""
    return ResourceSpec.parse(text).as_dict()


def default_workers(n: int | None = None) -> list[WorkerSpec]:
    count = n if n is not None else min(2, os.cpu_count() or 1)
    return [WorkerSpec(f"worker-{i}") for i in range(count)]


def host_port(address: str) -> tuple[str, int]:
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
    from omfs.storage import connection_problem

    problem = connection_problem(*host_port(address), timeout)
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
        sock = socket.create_connection(host_port(address), timeout=timeout)
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


def worker_env(*, profile: bool = False) -> dict[str, str]:
    """The environment of worker processes: this one's, plus its import path (so models
    defined in the user's modules unpickle there). Dask's sampling profiler is off and
    :data:`QUIET_SETTINGS` apply unless ``profile`` (a dashboard shows them) or the
    environment says otherwise: nothing else reads them, and they cost a CPU-bound grid
    search about 10% of its time."""
    paths = [p for p in sys.path if p and os.path.isdir(p)]
    extra = os.environ.get("PYTHONPATH", "")
    env = {**_nanny_environ(), **os.environ}
    env["PYTHONPATH"] = os.pathsep.join([*paths, *([extra] if extra else [])])
    env.pop("DASK_LOGGING__DISTRIBUTED", None)  # the CLI's quiet: workers log to their file
    # a worker's HTTP server (Prometheus metrics, health) serves nothing: it has no TLS
    env["DASK_DISTRIBUTED__WORKER__HTTP__ROUTES"] = "[]"
    if not profile:
        for key, value in quiet_settings().items():
            env.setdefault(_env_name(key), str(value))
    return env


def quiet_settings() -> dict[str, Any]:
    """:data:`QUIET_SETTINGS` and the profiler off, each only where the user's Dask
    configuration (a YAML file, a ``DASK_*`` variable) leaves Dask's default: theirs wins."""
    import dask
    import distributed.config  # noqa: F401  (Dask's defaults of those settings)

    defaults = dask.config.merge(*dask.config.defaults)
    wanted = {**QUIET_SETTINGS, "distributed.worker.profile.enabled": False}
    return {
        key: value
        for key, value in wanted.items()
        if dask.config.get(key, None) == dask.config.get(key, None, config=defaults)
    }


def _env_name(key: str) -> str:
    """The environment variable that sets Dask setting ``key``."""
    return "DASK_" + key.upper().replace(".", "__").replace("-", "_")


def _nanny_environ() -> dict[str, str]:
    """What Dask's nanny sets in the process of a worker it starts (omfs's workers run
    without one): ``distributed.nanny.pre-spawn-environ`` and ``.environ`` (one BLAS and
    OpenMP thread per worker thread, as joblib's process pool does, so two workers on two
    cores do not fight over four busy-waiting BLAS threads) and a fixed PYTHONHASHSEED (so
    every worker hashes a key as the others do). The environment overrides each."""
    import dask
    import distributed.config  # noqa: F401  (Dask's defaults of those settings)

    env: dict[str, str] = {}
    for key in ("distributed.nanny.pre-spawn-environ", "distributed.nanny.environ"):
        settings = dask.config.get(key, default={}) or {}
        env |= {k: str(v) for k, v in settings.items() if v is not None}
    if env.get("PYTHONHASHSEED") in (None, "0"):
        env["PYTHONHASHSEED"] = "6640"  # the seed Dask's nanny uses
    return env


def worker_command(
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
        join_host_port(host, 0),
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


def join_host_port(host: str, port: int) -> str:
    """``host:port``, with brackets around an IPv6 host."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def log_tail(path: Path, lines: int = 5) -> str:
    with contextlib.suppress(OSError):
        text = path.read_text(errors="replace").strip().splitlines()
        errors = [line for line in text if "Error" in line or "error" in line]
        return " | ".join((errors or text)[-lines:])
    return ""


def wait_for_workers(client: Any, n: int, procs: list[subprocess.Popen[bytes]], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while len(client.scheduler_info(n_workers=-1)["workers"]) < n:
        dead = [p for p in procs if p.poll() is not None]
        if dead:
            raise ClusterUnavailableError(
                f"A Dask worker exited while starting (exit code {dead[0].returncode}): "
                f"{log_tail(log) or 'no output'}. Its log: {log}"
            )
        if time.monotonic() > deadline:
            raise ClusterUnavailableError(
                f"The Dask workers did not start within {START_TIMEOUT:g} s. Their log: {log}"
            )
        time.sleep(0.05)


def terminate(procs: list[subprocess.Popen[bytes]], wait: float = 5.0) -> None:
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
