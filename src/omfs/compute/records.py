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
  (a retry on another worker rewrites the record: it reads ``running`` again),
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

import base64
import contextlib
import io
import json
import os
import random
import re
import socket
import time
from datetime import UTC, datetime
from typing import Any

from omfs._util import pid_exists
from omfs.errors import NotFoundError, TaskFailedError, UnstorableResultError, UsageError
from omfs.objects.metadata import Metadata, utcnow

__all__ = [
    "PREFIX",
    "RETRY_GRACE",
    "STATUSES",
    "TASK_HEARTBEAT",
    "TASK_LOST_AFTER",
    "decode_value",
    "encode_value",
    "finished_doc",
    "lost_reason",
    "new_id",
    "public_row",
    "read_log",
    "read_record",
    "read_result",
    "recent",
    "record_key",
    "record_lost",
    "task_status",
    "task_time",
    "wait_result",
    "write_record",
]

PREFIX = "_tasks"
STATUSES = ("pending", "running", "succeeded", "failed", "cancelled")
_ID = re.compile(r"\d{8}-\d{9}-[0-9a-f]{8}")
_FILES = ("submitted.json", "started.json", "cancelled.json", "finished.json")
#: seconds between the heartbeats of a running task (rewrites of its ``started`` record)
TASK_HEARTBEAT = 5.0
#: a running task whose worker wrote no heartbeat for this long reads ``failed`` (lost)
TASK_LOST_AFTER = 30.0
#: a running task whose worker's process is gone (this host) reads ``failed`` this long
#: after its last heartbeat: time for Dask to start it again on another worker
RETRY_GRACE = 10.0
_HOST = socket.gethostname()
_AGAIN = "submit it again (on workers with more memory if they were killed for it)"
_METADATA_FIELDS = (
    "name", "bucket", "store", "kind", "version", "created", "attributes", "tag", "lineage",
    "context", "history",
)  # fmt: skip


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


# -- values ----------------------------------------------------------------------------------
def encode_value(value: Any) -> tuple[dict[str, Any], bytes | None]:
    """``(document, parquet)`` of a task's value: a frame, series or array as Parquet; a
    version's metadata and plain values as JSON. Anything else: UnstorableResultError."""
    if isinstance(value, Metadata):
        return {"format": "metadata", "value": value.to_dict()}, None
    parquet = _as_parquet(value)
    if parquet is not None:
        return parquet
    plain = _plain(value)
    try:
        json.dumps(plain, allow_nan=True)
    except (TypeError, ValueError):
        raise UnstorableResultError(
            f"A task result of type {type(value).__module__}.{type(value).__qualname__} "
            "cannot be stored safely (omfs stores frames and arrays as Parquet and plain "
            "values as JSON, and never pickles): return a frame, an array or plain values, "
            "or store it yourself with om.models.put / om.datasets.put."
        ) from None
    return {"format": "json", "value": plain}, None


def _plain(value: Any) -> Any:
    """numpy scalars as Python numbers; lists, tuples and dicts walked."""
    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        return value.item()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _as_parquet(value: Any) -> tuple[dict[str, Any], bytes] | None:
    """A frame, series or 1-/2-d array as Parquet (an array without pandas: a burst of
    small predicts pays ~0.3 ms each); None for anything else."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    doc: dict[str, Any] = {"format": "parquet"}
    try:
        if isinstance(value, np.ndarray):
            if value.ndim not in (1, 2):
                return None
            doc |= {"type": "ndarray", "ndim": value.ndim}
            columns = value.T if value.ndim == 2 else [value]
            table = pa.table({str(i): pa.array(c) for i, c in enumerate(columns)})
        else:
            table = _pandas_table(value, doc)
            if table is None:
                return None
    except (pa.ArrowException, TypeError, ValueError):
        return None  # e.g. a column of arbitrary objects: refused by encode_value
    out = io.BytesIO()
    pq.write_table(table, out)
    return doc, out.getvalue()


def _pandas_table(value: Any, doc: dict[str, Any]) -> Any:
    """A pandas frame or series as an Arrow table (index kept); None for anything else."""
    import sys

    pd = sys.modules.get("pandas")  # a value can only be a pandas one once pandas is in
    if pd is None:
        return None
    import pyarrow as pa

    if isinstance(value, pd.Series):
        doc |= {"type": "series", "name": value.name}
        value = value.to_frame(name="value" if value.name is None else str(value.name))
    elif isinstance(value, pd.DataFrame):
        doc["type"] = "frame"
    else:
        return None
    return pa.Table.from_pandas(value, preserve_index=True)


def decode_value(doc: dict[str, Any], parquet: Any = None) -> Any:
    """The value :func:`encode_value` stored (``parquet``: a callable reading its bytes)."""
    fmt = doc.get("format")
    if fmt == "json":
        return doc.get("value")
    if fmt == "metadata":
        fields = dict(doc["value"])
        fields.pop("format", None)
        known = {k: fields.pop(k) for k in _METADATA_FIELDS if k in fields}
        return Metadata(**known, info=fields)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        # ParquetFile, not read_table: no pyarrow.dataset import (the CLI's start-up)
        data = base64.b64decode(doc["inline"]) if "inline" in doc else parquet()
        table = pq.ParquetFile(io.BytesIO(data)).read()
        if doc.get("type") == "ndarray":  # no pandas either
            import numpy as np

            columns = [c.to_numpy(zero_copy_only=False) for c in table.columns]
            return columns[0] if doc.get("ndim") == 1 else np.column_stack(columns)
        frame = table.to_pandas()
        if doc.get("type") == "series":
            series = frame.iloc[:, 0]
            series.name = doc.get("name")
            return series
        return frame
    raise UnstorableResultError(doc.get("refused") or "The task's result was not stored.")


# -- reading ---------------------------------------------------------------------------------
def read_record(storage: Any, task_id: str) -> dict[str, Any]:
    """Everything recorded of one task, with its ``status``; NotFoundError for an id no
    record names."""
    stem = _checked(task_id) + "."
    present = {n[len(stem) :] for n in storage.list_names(PREFIX, startswith=stem)}
    if not present:
        raise NotFoundError(
            f"No task {task_id!r} in {storage.url} (`om runtime tasks` lists recent ones; "
            "records are kept for the retention of `om gc`)."
        )
    record: dict[str, Any] = {"id": task_id}
    for name in _FILES:
        if name in present:
            with _tolerant():
                record[name.removesuffix(".json")] = json.loads(
                    storage.read_bytes(record_key(task_id, name))
                )
    return _summary(record, "log.txt" in present)


class _tolerant:
    """Skip a record file that vanished or is half-written (purged between list and read)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> bool:
        return kind is not None and issubclass(kind, FileNotFoundError | ValueError)


def _summary(record: dict[str, Any], has_log: bool) -> dict[str, Any]:
    """One row of a task: id, object, action, route, status, times, worker, error line."""
    submitted = record.get("submitted") or {}
    finished = record.get("finished") or {}
    started = record.get("started") or finished.get("started") or {}
    cancelled = record.get("cancelled")
    status, lost = "pending", None
    if finished:
        status = finished.get("status", "failed")
    elif cancelled:
        status = "cancelled"
    elif started:
        lost = lost_reason(started)
        status = "running" if lost is None else "failed"
    row = {
        "id": record["id"],
        "object": submitted.get("object") or started.get("object"),
        "action": submitted.get("action") or started.get("action"),
        "route": submitted.get("route", started.get("route")),
        "status": status,
        "submitted": submitted.get("at"),
        "started": started.get("at"),
        "finished": finished.get("at") or (cancelled or {}).get("at"),
        "worker": started.get("worker"),
        "error": finished.get("error") or (cancelled or {}).get("error") or lost,
        "key": submitted.get("key") or started.get("key"),
        "writes": submitted.get("writes"),
        "has_log": has_log,
    }
    row["_result"] = finished.get("result")
    return row


def lost_reason(started: dict[str, Any], at: float | None = None) -> str | None:
    """Why a task its ``started`` record says runs can no longer finish, or None: its
    worker's process is gone (this host) and :data:`RETRY_GRACE` seconds passed since its
    last heartbeat, or (elsewhere) it wrote none for :data:`TASK_LOST_AFTER` seconds. A
    record from a worker that writes no heartbeats is never judged."""
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
        if pid_exists(pid) or silent <= RETRY_GRACE:
            return None  # alive (a starved heartbeat is no death), or Dask may retry it
        return (
            f"lost: {where} died while running it (killed? out of memory?) and no other "
            f"worker took it up; {_AGAIN}"
        )
    if silent <= max(TASK_LOST_AFTER, 6 * float(every)):
        return None
    return f"lost: no heartbeat from {where} for {silent:.0f} s (it died?); {_AGAIN}"


def record_lost(storage: Any, task_id: str, exc: BaseException) -> None:
    """Record task ``task_id`` as failed with ``exc``, the error its Dask future ended
    with, unless its worker recorded how it ended (put-if-absent): what the submitting
    process writes when the workers running it died (KilledWorker) or none is left. Never
    raises."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    error = f"{type(exc).__name__}: {first}"
    if type(exc).__name__ in ("KilledWorker", "NoValidWorkerError", "NoWorkerError"):
        error = f"lost: the task's worker died and Dask gave up on it ({error}); {_AGAIN}"
    data = json.dumps(finished_doc("failed", error), default=str).encode()
    # FileExistsError: the worker's own record says how it ended; any other error: a
    # record only (the caller has the error itself)
    with contextlib.suppress(Exception):
        storage.create(record_key(task_id, "finished.json"), data)


def read_result(storage: Any, task_id: str) -> Any:
    """The value of a finished task; TaskFailedError for a failed one, the record's error
    (TaskCancelledError) for a cancelled one, None-status errors for one not finished."""
    from omfs.errors import TaskCancelledError

    row = read_record(storage, task_id)
    if row["status"] == "failed":
        raise TaskFailedError(f"Task {task_id} ({_what(row)}) failed: {row['error']}")
    if row["status"] == "cancelled":
        raise TaskCancelledError(f"Task {task_id} ({_what(row)}) was cancelled.")
    if row["status"] != "succeeded":
        raise TimeoutError(f"Task {task_id} ({_what(row)}) is {row['status']}")
    doc = row["_result"] or {"format": "json", "value": None}
    return decode_value(doc, lambda: storage.read_bytes(record_key(task_id, "result.parquet")))


def wait_result(storage: Any, task_id: str, timeout: float | None = None) -> Any:
    """:func:`read_result` once the task has ended, polling its records (every 20 ms at
    first, then less often, up to 0.5 s); TimeoutError after ``timeout`` seconds."""
    deadline = None if timeout is None else time.monotonic() + timeout
    pause = 0.02
    while True:
        row = read_record(storage, task_id)
        if row["status"] not in ("pending", "running"):
            return read_result(storage, task_id)
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError(
                f"Task {task_id} ({_what(row)}) is still {row['status']} after {timeout:g} s; "
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


def _what(row: dict[str, Any]) -> str:
    return f"{row.get('action')} of {row.get('object')}"


def read_log(storage: Any, task_id: str) -> str:
    """The log and warnings the task captured ("" when it emitted none)."""
    row = read_record(storage, task_id)
    if not row["has_log"]:
        return ""
    data: bytes = storage.read_bytes(record_key(task_id, "log.txt"))
    return data.decode(errors="replace")


def recent(storage: Any, limit: int = 20) -> list[dict[str, Any]]:
    """The ``limit`` most recently submitted tasks, newest first."""
    ids = sorted(_ids(storage), reverse=True)
    rows = []
    for task_id in ids[: max(0, limit)]:
        try:
            rows.append(read_record(storage, task_id))
        except NotFoundError:  # purged meanwhile
            continue
    return rows


def _ids(storage: Any) -> set[str]:
    """The ids that some record names."""
    ids = {n.split(".", 1)[0] for n in storage.list_names(PREFIX)}
    return {i for i in ids if task_time(i) is not None}


def finished_doc(status: str, error: str | None = None, **extra: Any) -> dict[str, Any]:
    """The ``finished.json`` document."""
    return {"status": status, "at": utcnow(), "error": error, **extra}
