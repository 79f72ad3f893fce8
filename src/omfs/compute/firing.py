"""The scheduler's real ``fire``: a slot it wins becomes a run of the job.

Where the run executes: on the context's cluster when it has one (an address or client
given to ``omfs.setup``, ``$OMFS_CLUSTER`` or the config file, or the background cluster of
``om cluster start``), routed by the job's attributes exactly as
``om.runtime.job(name).run()`` routes it; otherwise in the scheduler's own process, in a
thread of its own (a scheduler never starts a private cluster for itself).

Either way the run record keyed by job and slot is created with put-if-absent first
(:meth:`omfs.compute.jobs.JobProxy.claim`), and only the scheduler that created it goes
on. A run executed in the scheduler's process is claimed with that process as its worker,
so its heartbeat tells every other machine whether it still runs: a scheduler killed
between its claim and the run's end leaves a record that reads ``failed`` (lost) at the
next look, on this host at once, elsewhere after :data:`~omfs.objects.jobs.runs.LOST_AFTER`
seconds.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from omfs.compute.jobs import execute_run, start_run
from omfs.objects.jobs.runs import RunRecord

__all__ = ["JobFiring", "runs_in_scheduler"]

log = logging.getLogger("omfs.scheduler")


def runs_in_scheduler(om: Any) -> bool:
    """Whether a scheduled run of ``om``'s context executes in the scheduler's process (no
    cluster named and no background cluster running, or a ``memory://`` root that workers
    cannot see) rather than on a cluster."""
    if om.storage.protocol == "memory":
        return True
    if om.runtime.cluster.spec is not None:
        return False
    from omfs.compute.background import background

    return background() is None


class JobFiring:
    """``fire`` and ``is_running`` for :class:`omfs.compute.scheduler.Scheduler`, starting
    real runs. ``on_start(om, run_id, job, slot, where)`` is told of each run this
    scheduler won (``where``: ``"here"`` or ``"cluster"``)."""

    def __init__(self, on_start: Callable[[Any, str, str, datetime, str], None] | None = None):
        self.on_start = on_start
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()

    def __call__(self, om: Any, job: str, slot: datetime, params: dict[str, Any]) -> bool:
        """Start job ``job`` of ``om`` for ``slot``: True when this call won the slot."""
        if runs_in_scheduler(om):
            rec = self._claim_here(om, job, slot, params)
            if rec is None:
                return False
            run_id, where = rec.id, "here"
        else:
            started = start_run(om, job, params, slot=slot)
            if started is None:
                return False
            run_id, where = started.run_id, "cluster"
        if self.on_start is not None:
            self.on_start(om, run_id, job, slot, where)
        return True

    def is_running(self, om: Any, job: str) -> bool:
        """Whether a recent run of ``job`` is still running (its process alive)."""
        return bool(om.jobs.run_store.running(job))

    def _claim_here(
        self, om: Any, job: str, slot: datetime, params: dict[str, Any]
    ) -> RunRecord | None:
        worker = f"scheduler on {socket.gethostname()} (pid {os.getpid()})"
        claimed = om.runtime.mode(local=True).job(job).claim(params, slot=slot, worker=worker)
        if claimed is None:
            return None
        rec: RunRecord = claimed[0]
        thread = threading.Thread(
            target=self._execute, args=(om, rec), name=f"omfs-run-{rec.id}", daemon=True
        )
        with self._lock:
            self._threads.add(thread)
        thread.start()
        return rec

    def _execute(self, om: Any, rec: RunRecord) -> None:
        try:
            execute_run(om, rec.to_dict())
        except Exception:  # storage gone mid-run: the record's heartbeat stops, it reads lost
            log.exception("scheduler: run %s of job %r could not finish", rec.id, rec.job)
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def running(self) -> int:
        """How many runs execute in this process now."""
        with self._lock:
            return len(self._threads)

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the runs executing in this process (at most ``timeout`` seconds); how
        many still run."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                threads = list(self._threads)
            if not threads:
                return 0
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return len(threads)
            threads[0].join(left)
