"""The audit of every answer: rows buffered in memory, appended in batches to a dataset.

Each model request leaves one row (request id, time, model, version, sha256, latency,
status, rows, and for a shadow the challenger's version and answer). A thread hands the
buffer on every few seconds (or sooner when it is large) and at shutdown, so the audit
costs a list append per request. On a local folder the rows go, encoded in one piece, to a
child process that appends them (:mod:`omfs.serve.audit_writer`; each append is a commit:
Arrow, Parquet, fsyncs, the log), so the server's own thread holds the interpreter lock
for a few milliseconds per batch, not for the commit's many short steps, each of which
made the event loop wait; elsewhere (S3, whose credentials stay in this process; memory)
the thread appends them.
Which version, hence which training data, produced the answer to request X is then a
join of the audit with the models' lineage.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from typing import Any

from omfs.serve.audit_writer import (
    COLUMNS,
    NULLABLE_INTEGERS,
    Writer,
    append_batches,
    append_rows,
    audit_frame,
)

__all__ = [
    "AUDIT_DATASET",
    "COLUMNS",
    "NULLABLE_INTEGERS",
    "Audit",
    "append_batches",
    "audit_frame",
]

log = logging.getLogger("omfs.serve")

#: the dataset of the served bucket that holds the audit, by default
AUDIT_DATASET = "serving/audit"
_MAX_BUFFER = 1_000_000  # rows kept while storage or the child does not take them
_MAX_UNACKED = 64  # batches the child may hold unacknowledged (storage refuses them)
_RESTART_BACKOFF = (0.0, 1.0, 5.0, 30.0, 60.0)  # seconds before restarting a dead child


class Audit:
    """Buffered audit rows of one server, appended to dataset ``name`` of ``datasets``.

    At most ``limit`` rows wait (the oldest beyond are dropped and logged as lost); a send
    to the child waits at most ``send_timeout`` seconds (a stalled child is killed, and the
    rows it holds are appended here), and :meth:`close` at most ``close_timeout``.
    """

    def __init__(
        self,
        datasets: Any,
        name: str = AUDIT_DATASET,
        interval: float = 5.0,
        batch: int = 20000,
        child: bool | None = None,
        *,
        limit: int = _MAX_BUFFER,
        send_timeout: float = 10.0,
        close_timeout: float = 30.0,
    ):
        # imported now, with the server, not by the first append while requests wait
        import pandas  # noqa: F401
        import pyarrow.compute  # noqa: F401

        self.datasets, self.name = datasets, name
        self.interval, self.batch, self.limit = interval, batch, limit
        self.send_timeout, self.close_timeout = send_timeout, close_timeout
        self._rows: deque[tuple[Any, ...]] = deque()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: append from a child process (default: on a local folder; see the module's doc)
        self.child = child if child is not None else _can_fork_writer(datasets)
        self._writer: Writer | None = None
        self._restarts = 0
        self._restart_at = 0.0
        #: rows dropped since the last report (the buffer was full)
        self.dropped = 0

    def add(self, row: tuple[Any, ...]) -> None:
        """Buffer one row (the values of :data:`COLUMNS`, time as epoch seconds)."""
        rows = self._rows
        rows.append(row)
        if len(rows) >= self.batch:
            self._wake.set()
            if len(rows) > self.limit:
                rows.popleft()
                self.dropped += 1

    def start(self) -> None:
        """Start the thread that appends the buffer every ``interval`` seconds."""
        if self.child and self._writer is None:
            self._writer = Writer.start(self.datasets, self.name)
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="omfs-serve-audit")
            self._thread.daemon = True
            self._thread.start()

    def close(self) -> None:
        """Stop the thread and append what is buffered (and wait for the child's appends),
        all within ``close_timeout`` seconds; what cannot be appended is logged as lost."""
        deadline = time.monotonic() + self.close_timeout
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self.close_timeout)
            self._thread = None
        if not self._flush_lock.acquire(timeout=max(deadline - time.monotonic(), 0.1)):
            self._lost(len(self._rows), "the audit's thread is stuck appending")
            return
        try:
            rows = self._take()
            writer, self._writer = self._writer, None
            if writer is not None:
                sent = not rows or writer.send(rows, max(deadline - time.monotonic(), 0.1))
                rows = writer.finish(deadline) if sent else writer.stop()
            self._append(rows, final=True)
        finally:
            self._flush_lock.release()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            self.flush()

    def _take(self) -> list[tuple[Any, ...]]:
        """The buffered rows, taken out (and a report of those dropped)."""
        if self.dropped:
            dropped, self.dropped = self.dropped, 0
            self._lost(dropped, f"more than {self.limit} rows waited")
        return [self._rows.popleft() for _ in range(len(self._rows))]

    def _lost(self, count: int, why: str) -> None:
        if count:
            log.error("%d audit rows lost: %s (dataset %r)", count, why, self.name)

    def flush(self) -> int:
        """Append the buffered rows now (or hand them to the child, which appends them in
        order); returns how many. On a storage failure the rows stay buffered for the next
        try (and the failure is logged); while the child is gone, this thread appends (and
        the child is started again, after a pause if it died again soon)."""
        with self._flush_lock:
            rows = self._take()
            writer = self._child()
            if writer is None:
                return self._append(rows)
            if not rows:
                writer.drain()
                return 0
            if writer.send(rows, self.send_timeout) and len(writer.unacked) <= _MAX_UNACKED:
                return len(rows)
            log.error("the audit's child process does not take the rows: the server appends")
            self._writer = None
            return self._append(writer.stop())

    def _child(self) -> Writer | None:
        """The child to send to: the running one, or a new one when it is due."""
        writer = self._writer
        if writer is not None and not writer.alive():
            log.error("the audit's child process ended (code %s)", writer.process.returncode)
            self._writer = None
            self._append(writer.stop())
            writer = None
        if writer is None and self.child and time.monotonic() >= self._restart_at:
            pause = _RESTART_BACKOFF[min(self._restarts, len(_RESTART_BACKOFF) - 1)]
            self._restart_at = time.monotonic() + pause
            self._restarts += 1
            writer = self._writer = Writer.start(self.datasets, self.name)
        elif writer is not None and writer.acked:
            self._restarts = 0
        return writer

    def _append(self, rows: list[Any], final: bool = False) -> int:
        """Append ``rows`` in this thread; on a failure keep them for the next try (at most
        ``limit``) or, at the end, log them as lost."""
        if not rows:
            return 0
        try:
            append_rows(self.datasets, self.name, rows)
        except Exception as exc:
            log.error("cannot append %d rows to the audit %r: %s", len(rows), self.name, exc)
            if final:
                self._lost(len(rows), "storage refused the last append")
                return 0
            kept = rows[-self.limit :]
            self._lost(len(rows) - len(kept), f"more than {self.limit} rows waited")
            self._rows.extendleft(reversed(kept))
            return 0
        return len(rows)


def _can_fork_writer(datasets: Any) -> bool:
    """Whether a child process can append for this server: a local folder (a child would
    not see a ``memory://`` store, nor S3 credentials passed in code) on a POSIX system."""
    return bool(datasets.storage.is_local) and os.name == "posix"
