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
:mod:`omfs.compute._tls`), every listener binds 127.0.0.1 unless told a host, and their
HTTP servers serve nothing unless the dashboard is asked for. ``cluster.json`` records the
start time and command line of each process, and only a process that still matches both
is ever signalled.

This module gathers the public names of the modules that do each part:
:mod:`~omfs.compute.workers` (worker processes, address checks, the state folder),
:mod:`~omfs.compute.private`, :mod:`~omfs.compute.background` and
:mod:`~omfs.compute.identity` (who a process is).
"""

from __future__ import annotations

from omfs.compute.background import (
    BackgroundCluster,
    StopReport,
    background,
    background_tls,
    gateway,
    orphaned,
    start_background,
    stop_background,
)
from omfs.compute.identity import ProcessIdentity
from omfs.compute.private import PrivateCluster
from omfs.compute.workers import (
    DASHBOARD_PORT,
    LOOPBACK,
    WorkerSpec,
    check_reachable,
    check_speaks_dask,
    default_workers,
    parse_worker_spec,
    state_dir,
)

__all__ = [
    "DASHBOARD_PORT",
    "LOOPBACK",
    "BackgroundCluster",
    "PrivateCluster",
    "ProcessIdentity",
    "StopReport",
    "WorkerSpec",
    "background",
    "background_tls",
    "check_reachable",
    "check_speaks_dask",
    "default_workers",
    "gateway",
    "orphaned",
    "parse_worker_spec",
    "start_background",
    "state_dir",
    "stop_background",
]
