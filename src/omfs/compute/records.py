"""Task records and results that outlive the process that submitted the task.

Each task has an id (``20260105-141502123-3f2a9c1b``: UTC time of submission to the
millisecond, then random) and files ``_tasks/ID.*`` at the context's root (one folder),
which no listing of datasets, models or buckets shows (names starting with ``_`` are omfs'
own) and which sync leaves alone. Each file is written once, by one process, so no write
races another:

- ``submitted.json`` by the submitter (object, action, route, Dask key), only for a task
  still pending when another process could ask: as the submitter exits, or asks about
  tasks itself (a burst writes none for tasks that end meanwhile),
- ``started.json`` by the worker once the task has run 0.2 s (worker address and name,
  host and pid; a quicker task's ``finished.json`` says where and when it started), and
  rewritten every :data:`TASK_HEARTBEAT` seconds while it runs (its ``beat``): a task whose
  worker died reads ``failed`` ("lost: ...") once that worker's process is gone (this
  host) for :data:`RETRY_GRACE` seconds, or silent for :data:`TASK_LOST_AFTER` seconds
  (settings: ``$OMFS_TASK_RETRY_GRACE``, ``$OMFS_TASK_LOST_AFTER``; a retry on another
  worker rewrites the record: it reads ``running`` again),
- ``finished.json`` by the worker at the end: status, error line, and the value when it
  is plain (JSON) or a version's metadata; a frame or array is Parquet: inside it (base64)
  up to 64 KiB, else ``result.parquet`` beside it,
- ``log.txt``: the log records and warnings the task emitted, and a failure's traceback,
- ``cancelled.json`` by whoever cancelled it, and ``claim.json``, created put-if-absent by
  the first of a writing task's worker (about to write) and a canceller
  (:mod:`omfs.compute.claims`),
- ``finished.json`` by the submitting process (or the background cluster's gateway) when
  Dask gave up on the task without a worker writing it (its workers died: KilledWorker,
  or no worker left to run it); put-if-absent, never over a worker's.

Nothing is ever unpickled from here. Records are written without fsync: a power loss may
lose a record, never a stored version. :func:`omfs.compute.retention.purge` removes
those of tasks that ended longer ago than a retention (``om gc``).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from omfs._util import pid_exists, seconds_setting
from omfs.compute.record_checks import RecordError, load_record
from omfs.compute.record_values import (
    decode_value,
    encode_value,
    export_parquet,
    head_value,
    parquet_source,
    unstorable_part,
)
from omfs.errors import (
    IntegrityError,
    NotFoundError,
    StorageUnavailableError,
    TaskFailedError,
    UnstorableResultError,
    UsageError,
)
from omfs.objects.metadata import utcnow

__all__ = [
    "CLAIM",
    "PREFIX",
    "RETRY_GRACE",
    "STATUSES",
    "TASK_HEARTBEAT",
    "TASK_LOST_AFTER",
    "check_readable",
    "claim_holder",
    "decode_value",
    "encode_value",
    "error_text",
    "export_result",
    "finished_doc",
    "lost_reason",
    "new_id",
    "public_row",
    "read_head",
    "read_log",
    "read_record",
    "read_result",
    "recent",
    "record_key",
    "record_lost",
    "submitted_doc",
    "task_status",
    "task_time",
    "unstorable_part",
    "wait_ended",
    "wait_result",
    "what_of",
    "write_record",
]

PREFIX = "_tasks"
STATUSES = ("pending", "running", "succeeded", "failed", "cancelled")
_ID = re.compile(r"\d{8}-\d{9}-[0-9a-f]{8}")
#: the record a writing task's worker and a canceller race to create (:mod:`.claims`)
CLAIM = "claim.json"
_FILES = ("submitted.json", "started.json", "cancelled.json", "finished.json")
#: seconds between the heartbeats of a running task (rewrites of its ``started`` record)
TASK_HEARTBEAT = 5.0
#: a running task whose worker wrote no heartbeat for this long reads ``failed`` (lost);
#: the default of ``$OMFS_TASK_LOST_AFTER``
TASK_LOST_AFTER = 30.0
#: a running task whose worker's process is gone (this host) reads ``failed`` this long
#: after its last heartbeat: time for Dask to start it again on another worker; the
#: default of ``$OMFS_TASK_RETRY_GRACE``
RETRY_GRACE = 10.0
_HOST = socket.gethostname()
_AGAIN = "submit it again (on workers with more memory if they were killed for it)"


_random = random.Random()
_random_pid = 0


def new_id() -> str:
    """A task id that sorts by submission time: ``YYYYMMDD-HHMMSSmmm-xxxxxxxx`` (UTC, to
    the millisecond).
    (The random part comes from a generator seeded once per process: no system call per
    task, which in a burst costs a GIL hand-off each.)"""
    global _random_pid
    if _random_pid != os.getpid():
        _random.seed(os.urandom(16))
        _random_pid = os.getpid()
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S%f}"[:-3] + f"-{_random.getrandbits(32):08x}"


def task_time(task_id: Any) -> float | None:
    """When task ``task_id`` was submitted (POSIX seconds, read from the id), or None for
    a name that is no task id (the whole name must match, and be a real date and time)."""
    if not isinstance(task_id, str) or not _ID.fullmatch(task_id):
        return None
    try:
        stamp = datetime.strptime(task_id[:18], "%Y%m%d-%H%M%S%f")
    except ValueError:  # 00000000-..., a 13th month, a 61st second
        return None
    return stamp.replace(tzinfo=UTC).timestamp()


def _id_time(task_id: str) -> str | None:
    """When a task was submitted, from its id (a quick task has no submitted record)."""
    at = task_time(task_id)
    return None if at is None else datetime.fromtimestamp(at, UTC).isoformat()


def _checked(task_id: str) -> str:
    if task_time(task_id) is None:
        raise UsageError(
            f"{task_id!r} is not a task id; ids look like 20260105-141502123-3f2a9c1b "
            "(`om runtime tasks` lists them)"
        )
    return task_id


def record_key(task_id: str, name: str) -> str:
    """The key of one record file: ``_tasks/ID.NAME`` (one flat folder: a task costs no
    folder of its own to make, which on a local disk is as slow as the write)."""
    return f"{PREFIX}/{_checked(task_id)}.{name}"


def write_record(storage: Any, task_id: str, name: str, doc: dict[str, Any]) -> None:
    """Write one record file (``submitted``, ``started``, ``finished``, ``cancelled``)."""
    data = json.dumps(doc, default=str).encode()
    storage.write_bytes(record_key(task_id, f"{name}.json"), data, durable=False)


# -- reading ---------------------------------------------------------------------------------
def read_record(storage: Any, task_id: str) -> dict[str, Any]:
    """Everything recorded of one task, with its ``status``; NotFoundError for an id no
    record names. A record file that is not what omfs writes makes the task ``failed``,
    its error naming the file (``unreadable``: :func:`check_readable` raises it)."""
    stem = _checked(task_id) + "."
    for name, default in (
        ("OMFS_TASK_RETRY_GRACE", RETRY_GRACE),
        ("OMFS_TASK_LOST_AFTER", TASK_LOST_AFTER),
    ):
        seconds_setting(name, default)  # a bad setting: refused, not only once a task runs
    present = {n[len(stem) :] for n in storage.list_names(PREFIX, startswith=stem)}
    record: dict[str, Any] = {"id": task_id}
    bad = []
    for name in _FILES:
        if name in present:
            try:
                data = storage.read_bytes(record_key(task_id, name))
            except FileNotFoundError:  # purged between list and read
                continue
            try:
                record[name.removesuffix(".json")] = load_record(name, data)
            except RecordError as exc:
                bad.append(f"{record_key(task_id, name)} ({exc})")
    if len(record) == 1 and not bad:  # a stray log or result alone is no task
        _check_root(storage)
        raise NotFoundError(
            f"No task {task_id!r} in {storage.url} (`om runtime tasks` lists recent ones; "
            "records are kept for the retention of `om gc`)."
        )
    if "cancelled" in record and CLAIM in present:  # a worker that claimed it wrote
        record["worker_claimed"] = claim_holder(storage, task_id) == "worker"
    row = _summary(record, "log.txt" in present)
    if bad:
        row["status"] = "failed"
        row["error"] = row["_unreadable"] = (
            f"unreadable task record {'; '.join(bad)}: not what omfs writes (damaged, or "
            f"written by hand); remove the task's files {PREFIX}/{task_id}.* to drop it"
        )
    return row


def claim_holder(storage: Any, task_id: str) -> str:
    """Who holds task ``task_id``'s claim (:data:`CLAIM`, see :mod:`omfs.compute.claims`):
    ``"worker"``, ``"cancel"``, or ``"unknown"`` (no record, or one that does not say:
    planted or damaged)."""
    try:
        held = json.loads(storage.read_bytes(record_key(task_id, CLAIM))).get("by")
    except (OSError, ValueError, AttributeError):
        return "unknown"
    return held if held in ("worker", "cancel") else "unknown"


def check_readable(row: dict[str, Any]) -> dict[str, Any]:
    """``row``, or IntegrityError when one of its record files is unreadable."""
    if row.get("_unreadable"):
        raise IntegrityError(f"Task {row['id']}: {row['_unreadable']}.")
    return row


def _summary(record: dict[str, Any], has_log: bool) -> dict[str, Any]:
    """One row of a task: id, object, action, route, status, times, worker, error line."""
    submitted = record.get("submitted") or {}
    finished = record.get("finished") or {}
    started = record.get("started") or finished.get("started") or {}
    cancelled = record.get("cancelled")
    status, lost = "pending", None
    if cancelled and record.get("worker_claimed"):
        cancelled = None  # not a cancel that won: the worker claimed the task and wrote
    if cancelled:  # a cancel said yes: a task that writes never did (it claims first), and
        status = "cancelled"  # the value of one that writes nothing (it ran on) is dropped
    elif finished:
        status = finished.get("status", "failed")
    elif started:
        lost = lost_reason(started)
        status = "running" if lost is None else "failed"
    row = {
        "id": record["id"],
        "object": submitted.get("object") or started.get("object") or finished.get("object"),
        "action": submitted.get("action") or started.get("action") or finished.get("action"),
        "route": submitted.get("route", started.get("route", finished.get("route"))),
        "status": status,
        "submitted": submitted.get("at") or _id_time(record["id"]),
        "started": started.get("at"),
        "finished": finished.get("at") or (cancelled or {}).get("at"),
        "worker": started.get("worker"),
        "error": (cancelled or {}).get("error") or finished.get("error") or lost,
        "key": submitted.get("key") or started.get("key"),
        "writes": submitted.get("writes"),
        "has_log": has_log,
    }
    row["_result"] = finished.get("result")
    then = submitted.get("then")
    row["_then"] = [t for t in then if isinstance(t, str)] if isinstance(then, list) else []
    return row


def lost_reason(started: dict[str, Any], at: float | None = None) -> str | None:
    """Why a task its ``started`` record says runs can no longer finish, or None: its
    worker's process is gone (this host) and the retry grace (``$OMFS_TASK_RETRY_GRACE``,
    :data:`RETRY_GRACE` seconds) passed since its last heartbeat, or (elsewhere) it wrote
    none for ``$OMFS_TASK_LOST_AFTER`` (:data:`TASK_LOST_AFTER`) seconds, and for six
    heartbeats at least. A record from a worker that writes no heartbeats is never judged."""
    every = started.get("beat_every")
    if not every:
        return None
    try:
        beat = datetime.fromisoformat(started.get("beat") or started["at"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return None
    silent = (time.time() if at is None else at) - beat
    pid, host = started.get("pid"), started.get("host")
    where = f"worker {started.get('worker')} (pid {pid} on {host})"
    if host == _HOST and isinstance(pid, int):
        if pid_exists(pid) or silent <= seconds_setting("OMFS_TASK_RETRY_GRACE", RETRY_GRACE):
            return None  # alive (a starved heartbeat is no death), or Dask may retry it
        return (
            f"lost: {where} died while running it (the cluster was stopped, or the worker "
            f"was killed or ran out of memory) and no other worker took it up; {_AGAIN}"
        )
    if silent <= max(seconds_setting("OMFS_TASK_LOST_AFTER", TASK_LOST_AFTER), 6 * float(every)):
        return None
    return f"lost: no heartbeat from {where} for {silent:.0f} s (it died?); {_AGAIN}"


def record_lost(
    storage: Any, task_id: str, exc: BaseException, about: dict[str, Any] | None = None
) -> None:
    """Record task ``task_id`` as failed with ``exc``, the error its Dask future ended
    with, unless its worker recorded how it ended (put-if-absent): what the submitting
    process writes when the workers running it died (KilledWorker) or none is left.
    ``about``: its ``submitted`` document (object, action, route: the row shows them).
    Never raises."""
    error = error_text(exc)
    if type(exc).__name__ in ("KilledWorker", "NoValidWorkerError", "NoWorkerError"):
        error = f"lost: the task's worker died and Dask gave up on it ({error}); {_AGAIN}"
    known = {k: v for k, v in (about or {}).items() if k in ("object", "action", "route")}
    data = json.dumps(finished_doc("failed", error, **known), default=str).encode()
    # FileExistsError: the worker's own record says how it ended; any other error: a
    # record only (the caller has the error itself)
    with contextlib.suppress(Exception):
        storage.create(record_key(task_id, "finished.json"), data)


def read_result(storage: Any, task_id: str) -> Any:
    """The value of a finished task; TaskFailedError for a failed one, the record's error
    (TaskCancelledError) for a cancelled one, None-status errors for one not finished,
    IntegrityError for records or a stored value that cannot be read."""
    row, doc, side = _stored(storage, task_id)
    with _readable(row, doc, side):
        return decode_value(doc, lambda: storage.read_bytes(side))


def read_head(storage: Any, task_id: str, rows: int, whole: int) -> dict[str, Any]:
    """``{"value", "rows", "columns"}`` of a finished task (errors as :func:`read_result`):
    a frame or array of at most ``whole`` rows whole, a longer one's first ``rows`` only
    (the rest of its file is never decoded); a plain value whole (rows and columns None)."""
    row, doc, side = _stored(storage, task_id)
    with _readable(row, doc, side):
        if doc.get("format") != "parquet":
            return {"value": decode_value(doc), "rows": None, "columns": None}
        with parquet_source(doc, lambda: storage.open(side)) as source:
            return head_value(doc, source, rows, whole)


def export_result(storage: Any, task_id: str, out: Any, fmt: str) -> int | None:
    """Write the whole value of a finished task to the binary file ``out`` as ``fmt``
    (a frame or array: ``parquet`` or ``csv``, streamed; a plain value: ``json``); the rows
    written (None for a plain value). UsageError for a format the value cannot take."""
    row, doc, side = _stored(storage, task_id)
    tabular = doc.get("format") == "parquet"
    if doc.get("format") != "refused" and tabular != (fmt in ("parquet", "csv")):
        kinds = "a frame or array: write it as .parquet or .csv" if tabular else (
            "a plain value: write it as .json"
        )  # fmt: skip
        raise UsageError(f"The result of task {task_id} ({what_of(row)}) is {kinds}.")
    with _readable(row, doc, side):
        if not tabular:
            decode_value(doc)  # a refused value: its error
            out.write(json.dumps(doc.get("value"), default=str).encode())
            return None
        with parquet_source(doc, lambda: storage.open(side)) as source:
            return export_parquet(source, out, fmt)


def _stored(storage: Any, task_id: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """A succeeded task's row, its result's document and its side file's key; the errors
    of :func:`read_result` for a task that did not succeed."""
    from omfs.errors import TaskCancelledError

    row = check_readable(read_record(storage, task_id))
    if row["status"] == "failed":
        raise TaskFailedError(f"Task {task_id} ({what_of(row)}) failed: {row['error']}")
    if row["status"] == "cancelled":
        why = f": {row['error']}" if row.get("error") else "."
        raise TaskCancelledError(f"Task {task_id} ({what_of(row)}) was cancelled{why}")
    if row["status"] != "succeeded":
        raise TimeoutError(f"Task {task_id} ({what_of(row)}) is {row['status']}")
    doc = row["_result"] or {"format": "json", "value": None}
    return row, doc, record_key(task_id, "result.parquet")


@contextlib.contextmanager
def _readable(row: dict[str, Any], doc: dict[str, Any], side: str) -> Iterator[None]:
    """A stored value that cannot be read (base64, Parquet, metadata, a missing file) as
    one IntegrityError naming the task and the file."""
    try:
        yield
    except (UnstorableResultError, StorageUnavailableError):
        raise
    except Exception as exc:
        inline = doc.get("format") != "parquet" or "inline" in doc
        where = record_key(row["id"], "finished.json") if inline else side
        raise IntegrityError(
            f"The result of task {row['id']} ({what_of(row)}) in {where} cannot be read "
            f"({error_text(exc)}); remove the task's files {PREFIX}/{row['id']}.* and run it "
            "again."
        ) from None


def wait_result(storage: Any, task_id: str, timeout: float | None = None) -> Any:
    """:func:`read_result` once the task has ended (:func:`wait_ended`)."""
    wait_ended(storage, task_id, timeout)
    return read_result(storage, task_id)


def wait_ended(storage: Any, task_id: str, timeout: float | None = None) -> None:
    """Return once the task's records say it ended, polling them (every 20 ms at first,
    then less often, up to 0.5 s); TimeoutError after ``timeout`` seconds."""
    deadline = None if timeout is None else time.monotonic() + timeout
    pause = 0.02
    while True:
        row = check_readable(read_record(storage, task_id))
        if row["status"] not in ("pending", "running"):
            return
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError(
                f"Task {task_id} ({what_of(row)}) is still {row['status']} after {timeout:g} s; "
                "it goes on running (ask again, or `om runtime status ID`)."
            )
        wait = pause if deadline is None else min(pause, max(0.0, deadline - time.monotonic()))
        time.sleep(wait)
        pause = min(0.5, pause * 1.5)


def task_status(storage: Any, task_id: str) -> str:
    """The status the records say (``pending`` when none is written yet)."""
    try:
        return str(read_record(storage, task_id)["status"])
    except NotFoundError:
        return "pending"


def public_row(row: dict[str, Any]) -> dict[str, Any]:
    """A task's row as the API and the CLI show it."""
    return {k: v for k, v in row.items() if not k.startswith("_") and k != "has_log"}


def what_of(row: dict[str, Any]) -> str:
    """A task's row in words: ``fit of models/m@v3``."""
    return f"{row.get('action')} of {row.get('object')}"


def read_log(storage: Any, task_id: str) -> str:
    """The log and warnings the task captured ("" when it emitted none)."""
    row = check_readable(read_record(storage, task_id))
    if not row["has_log"]:
        return ""
    data: bytes = storage.read_bytes(record_key(task_id, "log.txt"))
    return data.decode(errors="replace")


def recent(storage: Any, limit: int = 20) -> list[dict[str, Any]]:
    """The ``limit`` most recently submitted tasks, newest first."""
    ids = sorted(_ids(storage), reverse=True)
    if not ids:
        _check_root(storage)
    rows = []
    for task_id in ids[: max(0, limit)]:
        try:
            rows.append(read_record(storage, task_id))
        except NotFoundError:  # purged meanwhile
            continue
    return rows


def _check_root(storage: Any) -> None:
    """NotFoundError for a context root that does not exist (a typo?), as datasets say."""
    from omfs.config import DEFAULT_BUCKET
    from omfs.objects.buckets import bucket_problem

    problem = bucket_problem(storage, DEFAULT_BUCKET)
    if problem:
        raise NotFoundError(problem[0].upper() + problem[1:])


def _ids(storage: Any) -> set[str]:
    """The ids that some record names."""
    ids = {n.split(".", 1)[0] for n in storage.list_names(PREFIX)}
    return {i for i in ids if task_time(i) is not None}


def error_text(exc: BaseException) -> str:
    """An exception as ``Type: first line of its message``."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def submitted_doc(
    action: str, what: str, route: dict[str, float], key: str, writes: bool, **extra: Any
) -> dict[str, Any]:
    """A task's ``submitted`` record (object ``what``, its Dask ``key``, whether it
    ``writes``), written when its submitter exits or asks about tasks (a canvas's steps: at
    once), so that other processes see it and can cancel it by id."""
    doc = {"at": utcnow(), "action": action, "object": what, "route": route, "key": key}
    return doc | {"writes": writes, **extra}


def finished_doc(status: str, error: str | None = None, **extra: Any) -> dict[str, Any]:
    """The ``finished.json`` document."""
    return {"status": status, "at": utcnow(), "error": error, **extra}
