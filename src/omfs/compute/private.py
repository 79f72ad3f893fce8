"""A private cluster: a scheduler in this process and ``dask worker`` subprocesses, started
on a context's first remote task when no background cluster runs; the workers exit when
this process does (``--death-timeout``)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from pathlib import Path

from omfs.compute._tls import make_tls
from omfs.compute.identity import pid_exists
from omfs.compute.workers import (
    LOOPBACK,
    NO_WORKERS_TIMEOUT,
    WorkerSpec,
    default_workers,
    join_host_port,
    quiet_settings,
    secure_state_dir,
    terminate,
    wait_for_workers,
    worker_command,
    worker_env,
)

__all__ = ["PrivateCluster"]


class PrivateCluster:
    """A scheduler in this process and ``dask worker`` subprocesses; ``close()`` (or this
    process ending) stops them. They speak TLS with a certificate made for this cluster."""

    def __init__(self, workers: list[WorkerSpec] | None = None):
        import logging

        import dask
        from distributed import Client, LocalCluster

        specs = workers or default_workers()
        folder = secure_state_dir()
        _remove_dead_private_files(folder)
        (folder / "logs").mkdir(mode=0o700, exist_ok=True)
        stem = f"private-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.log = folder / "logs" / f"{stem}.log"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.tls = make_tls(folder, stem)
        try:
            security = self.tls.security()
            settings = {
                **quiet_settings(),
                "distributed.scheduler.no-workers-timeout": NO_WORKERS_TIMEOUT,
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
                    scheduler_kwargs={
                        "dashboard": False,
                        "dashboard_address": join_host_port(LOOPBACK, 0),
                    },
                )
            self.address = self._cluster.scheduler_address
            with open(self.log, "ab") as out:
                for spec in specs:
                    self.procs.append(
                        subprocess.Popen(
                            worker_command([self.address], spec, 10, self.tls),
                            env=worker_env(),
                            stdin=subprocess.DEVNULL,
                            stdout=out,
                            stderr=subprocess.STDOUT,
                        )
                    )
            self.client = Client(self._cluster, security=security)
            wait_for_workers(self.client, len(specs), self.procs, self.log)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()
        terminate(self.procs)
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
        if pid.isdigit() and not pid_exists(int(pid)):
            with contextlib.suppress(OSError):
                path.unlink()
