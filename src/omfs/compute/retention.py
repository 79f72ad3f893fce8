"""Which task records ``om gc`` removes: :func:`purge`.

The records of a task that ended (``finished``, or ``cancelled`` before it started) go once
its id is older than the retention. Those of a task that has not ended stay: removing them
would make a running task vanish from ``status`` and ``cancel`` (and a later claim to
write would find no cancel). They go only once the worker running it reads lost (the
liveness rules of :func:`~omfs.compute.records.lost_reason`), or once they are far older
than the retention (:data:`UNFINISHED_FACTOR` times it, at least :data:`UNFINISHED_FLOOR`):
a task that never got a worker stays ``pending`` for good. A name under ``_tasks/`` that
is no task id is left alone and reported.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

from omfs.compute.records import PREFIX, lost_reason, record_key, task_time

__all__ = ["UNFINISHED_FACTOR", "UNFINISHED_FLOOR", "purge"]

#: the records of a task that never ended go once this many times the retention old
UNFINISHED_FACTOR = 10
#: ... and never before they are this old (seconds: 7 days), whatever the retention
UNFINISHED_FLOOR = 7 * 86400.0


def purge(
    storage: Any, older_than: float, *, dry_run: bool = False
) -> tuple[list[str], list[dict[str, str]]]:
    """Remove the records of the tasks that ended and were submitted more than
    ``older_than`` seconds ago (see the module). Returns the ids removed, and what was
    left alone: ``{"name", "why"}`` for each task kept and each stray name."""
    now = time.time()
    files: dict[str, dict[str, str]] = {}  # id -> {suffix: file name}
    for name in storage.list_names(PREFIX):
        stem, _, rest = name.partition(".")
        files.setdefault(stem, {})[rest] = name
    gone: list[str] = []
    kept: list[dict[str, str]] = []
    for task_id in sorted(files):
        stamp = task_time(task_id)
        if stamp is None:
            kept.append({"name": task_id, "why": "not a task id (no date in it); left alone"})
        elif now - stamp > older_than:
            why = _kept_because(storage, task_id, set(files[task_id]), now - stamp, older_than)
            if why is None:
                gone.append(task_id)
            else:
                kept.append({"name": task_id, "why": why})
    if not dry_run and gone:
        storage.delete([f"{PREFIX}/{name}" for i in gone for name in files[i].values()])
    return gone, kept


def _kept_because(
    storage: Any, task_id: str, present: set[str], age: float, retention: float
) -> str | None:
    """Why the records of task ``task_id`` (older than the retention) stay, or None."""
    bound = max(UNFINISHED_FACTOR * retention, UNFINISHED_FLOOR)
    if "finished.json" in present or age > bound:
        return None
    if "started.json" not in present:
        if "cancelled.json" in present:
            return None  # cancelled before any worker started it
        state = "pending"
    elif _lost(storage, task_id):
        return None
    else:
        state = "running"
    return (
        f"{state} (no finished record): its records stay until it ends, or until they are "
        f"{bound / 86400:g} days old"
    )


def _lost(storage: Any, task_id: str) -> bool:
    """Whether the task's ``started`` record says its worker is gone (unreadable: no)."""
    with contextlib.suppress(Exception):
        started = json.loads(storage.read_bytes(record_key(task_id, "started.json")))
        return isinstance(started, dict) and lost_reason(started) is not None
    return False
