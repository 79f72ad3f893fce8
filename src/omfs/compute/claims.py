"""Who decides the fate of a task that writes: its worker, about to write, or a canceller.

A task that writes (a fit, a result stored with ``rName``, a gridsearch's final step) and
whoever cancels it race for one record, ``_tasks/ID.claim.json``, created put-if-absent in
the context: exactly one of them makes it. The worker that makes it writes (a cancel after
that says the task had begun to write); a canceller that makes it has cancelled the task
(its worker then writes nothing and records ``cancelled``). The record lives in storage,
so the decision holds whatever becomes of the cancelling process (a CLI that exits at
once) or of the Dask cluster.
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any

from omfs.compute.records import CLAIM, claim_holder, record_key, write_record
from omfs.errors import TaskCancelledError
from omfs.objects.metadata import utcnow

__all__ = ["CLAIM", "cancel_task", "claim", "claim_write", "claimed_by_worker"]

WORKER, CANCEL = "worker", "cancel"


def claim(storage: Any, task_id: str, by: str) -> str:
    """Create task ``task_id``'s claim record for ``by`` (``"worker"`` or ``"cancel"``)
    unless it exists; returns who holds it: ``by`` when this call made it, else the other
    party, or ``"unknown"`` for a record that does not say (planted or damaged)."""
    key = record_key(task_id, CLAIM)
    doc = {"by": by, "at": utcnow(), "host": socket.gethostname(), "pid": os.getpid()}
    try:
        storage.create(key, json.dumps(doc).encode())
        return by
    except FileExistsError:
        return claim_holder(storage, task_id)


def claimed_by_worker(storage: Any, task_id: str) -> bool:
    """Whether a worker holds task ``task_id``'s claim: it has begun to write (which it
    may do before any other record of the task shows)."""
    return claim_holder(storage, task_id) == WORKER


def claim_write(storage: Any, task_id: str, description: str) -> None:
    """On the worker, right before a task's first write: claim it, or stop with
    TaskCancelledError (a canceller claimed it first). A claim by an earlier attempt of
    this task (a worker that died; Dask runs it again) lets this one write."""
    if claim(storage, task_id, WORKER) != WORKER:
        raise TaskCancelledError(f"{description} was cancelled before it wrote anything.")


def cancel_task(future: Any, storage: Any, task_id: str, writes: bool) -> bool:
    """Cancel a task (fire-and-forget too) and record it: False, and nothing done, when it
    writes and its worker claimed the right to write first."""
    ended = record_key(task_id, "finished.json")
    if writes and claim(storage, task_id, CANCEL) != CANCEL:
        return False
    if not writes and storage.exists(ended):  # it ended meanwhile: its value stands
        return False
    write_record(storage, task_id, "cancelled", {"at": utcnow()})
    if not writes and storage.exists(ended):  # it ended as this cancel was written
        storage.delete([record_key(task_id, "cancelled.json")])
        return False
    future.cancel(force=True)
    return True
