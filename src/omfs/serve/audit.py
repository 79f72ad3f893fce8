"""The audit of every answer: rows buffered in memory, appended in batches to a dataset.

Each model request leaves one row (request id, time, model, version, sha256, latency,
status, rows, and for a shadow the challenger's version and answer). A thread hands the
buffer on every few seconds (or sooner when it is large) and at shutdown, so the audit
costs a list append per request. On a local folder the rows go, encoded in one piece, to a
child process that appends them (each append is a commit: Arrow, Parquet, fsyncs, the
log), so the server's own thread holds the interpreter lock for a few milliseconds per
batch, not for the commit's many short steps, each of which made the event loop wait;
elsewhere (S3, whose credentials stay in this process; memory) the thread appends them.
Which version, hence which training data, produced the answer to request X is then a
join of the audit with the models' lineage.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from typing import Any

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
#: the audit's columns, in order
COLUMNS = (
    "request_id",
    "time",
    "model",
    "version",
    "sha256",
    "action",
    "status",
    "latency_ms",
    "rows",
    "error",
    "shadow_version",
    "shadow_sha256",
    "shadow_predictions",
)
_MAX_BUFFER = 1_000_000  # rows kept while storage refuses the appends
#: the columns read back as pandas' nullable Int64 (a row without a version holds null)
NULLABLE_INTEGERS = ("version", "shadow_version")


def _schema() -> Any:
    import pyarrow as pa

    string, integer = pa.string(), pa.int64()
    types = {
        "time": pa.timestamp("us", tz="UTC"),
        "version": integer,
        "status": integer,
        "latency_ms": pa.float64(),
        "rows": integer,
        "shadow_version": integer,
    }
    return pa.schema([(c, types.get(c, string)) for c in COLUMNS])


class Audit:
    """Buffered audit rows of one server, appended to dataset ``name`` of ``datasets``."""

    def __init__(
        self,
        datasets: Any,
        name: str = AUDIT_DATASET,
        interval: float = 5.0,
        batch: int = 20000,
        child: bool | None = None,
    ):
        # imported now, with the server, not by the first append while requests wait
        import pandas  # noqa: F401
        import pyarrow.compute  # noqa: F401

        self.datasets, self.name = datasets, name
        self.interval, self.batch = interval, batch
        self._rows: deque[tuple[Any, ...]] = deque()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: append from a child process (default: on a local folder; see the module's doc)
        self.child = child if child is not None else _can_fork_writer(datasets)
        self._writer: _Writer | None = None

    def add(self, row: tuple[Any, ...]) -> None:
        """Buffer one row (the values of :data:`COLUMNS`, time as epoch seconds)."""
        self._rows.append(row)
        if len(self._rows) >= self.batch:
            self._wake.set()

    def start(self) -> None:
        """Start the thread that appends the buffer every ``interval`` seconds."""
        if self.child and self._writer is None:
            self._writer = _Writer.start(self.datasets, self.name)
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="omfs-serve-audit")
            self._thread.daemon = True
            self._thread.start()

    def close(self) -> None:
        """Stop the thread and append what is buffered (and wait for the child's appends)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self.flush()
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            self.flush()

    def flush(self) -> int:
        """Append the buffered rows now (or hand them to the child, which appends them in
        order); returns how many. On a storage failure the rows stay buffered for the next
        try (and the failure is logged); if the child is gone, this thread appends."""
        with self._flush_lock:
            rows = [self._rows.popleft() for _ in range(len(self._rows))]
            if not rows:
                return 0
            if self._writer is not None:
                if self._writer.send(rows):
                    return len(rows)
                self._writer = None
            try:
                self.datasets.put(audit_frame(rows), self.name, append=True)
            except Exception as exc:
                log.error("cannot append %d rows to the audit %r: %s", len(rows), self.name, exc)
                self._rows.extendleft(reversed(rows[-_MAX_BUFFER:]))
                return 0
            return len(rows)


def audit_frame(rows: list[Any]) -> Any:
    """The pandas DataFrame of audit ``rows`` (sequences of :data:`COLUMNS`' values, time as
    epoch seconds), typed as the audit's schema; versions as nullable integers."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    schema = _schema()
    columns = list(zip(*rows, strict=True))
    arrays = []
    for i, field in enumerate(schema):
        values: Any = columns[i]
        if field.name == "time":
            seconds = pa.array(values, pa.float64())
            micros = pc.multiply(seconds, 1_000_000.0).cast(pa.int64(), safe=False)
            arrays.append(micros.cast(field.type))
        else:
            arrays.append(pa.array(values, field.type))
    table = pa.Table.from_arrays(arrays, schema=schema)
    frame = table.to_pandas()
    for column in NULLABLE_INTEGERS:
        frame[column] = table.column(column).to_pandas(
            types_mapper={pa.int64(): pd.Int64Dtype()}.get
        )
    return frame


def _can_fork_writer(datasets: Any) -> bool:
    """Whether a child process can append for this server: a local folder (a child would
    not see a ``memory://`` store, nor S3 credentials passed in code) on a POSIX system."""
    return bool(datasets.storage.is_local) and os.name == "posix"


class _Writer:
    """The child process that appends the batches the server sends it through a pipe."""

    def __init__(self, process: Any, conn: Any):
        self.process, self.conn = process, conn

    @classmethod
    def start(cls, datasets: Any, name: str) -> _Writer | None:
        """Start the child (None, logged, when it cannot start: the thread appends). A fresh
        interpreter that runs only this module (not the server's main script, as
        multiprocessing's spawn would); the context travels pickled, without credentials."""
        import pickle
        import subprocess
        import sys
        from multiprocessing.connection import Connection

        read, write = os.pipe()
        code = f"from omfs.serve.audit import append_batches; append_batches({read})"
        try:
            process = subprocess.Popen(  # its own session: a Ctrl-C reaches the server only
                [sys.executable, "-c", code], pass_fds=(read,), start_new_session=True
            )
        except (OSError, ValueError) as exc:
            os.close(read)
            os.close(write)
            log.warning("the audit appends in the server's thread (no child process: %s)", exc)
            return None
        os.close(read)
        writer = cls(process, Connection(write, readable=False))
        try:
            writer.conn.send_bytes(pickle.dumps((datasets.storage, datasets.bucket, name)))
        except OSError as exc:  # it ended at once
            log.warning("the audit appends in the server's thread (the child ended: %s)", exc)
            writer.close()
            return None
        return writer

    def send(self, rows: list[tuple[Any, ...]]) -> bool:
        """Hand ``rows`` over (one message); False when the child is gone."""
        import msgspec

        try:
            self.conn.send_bytes(msgspec.msgpack.encode(rows))
            return True
        except (OSError, ValueError) as exc:
            log.error("the audit's child process is gone (%s): appending here", exc)
            return False

    def close(self, timeout: float = 120) -> None:
        """End of the rows: the child appends what it holds and exits; wait for it."""
        import subprocess

        self.conn.close()
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.error("the audit's child process did not finish in %.0f s", timeout)
            self.process.kill()
            return
        if code:
            log.error("the audit's child process ended with code %s", code)


def append_batches(fd: int) -> None:
    """The audit's child process: append each batch read from pipe ``fd``, in order, until
    the pipe closes; a batch storage refuses is kept and tried again with the next (and at
    the end). The first message names the context's storage, bucket and the dataset."""
    import pickle
    import signal
    from multiprocessing.connection import Connection

    import msgspec

    from omfs.context import Omega

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server ends it: it closes the pipe
    conn = Connection(fd, writable=False)
    storage, bucket, name = pickle.loads(conn.recv_bytes())
    datasets = Omega(storage, bucket).datasets
    pending: list[Any] = []
    done = False
    while not done:
        try:
            pending += msgspec.msgpack.decode(conn.recv_bytes())
        except EOFError:
            done = True
        if not pending:
            continue
        try:
            datasets.put(audit_frame(pending), name, append=True)
            pending = []
        except Exception as exc:
            log.error("cannot append %d rows to the audit %r: %s", len(pending), name, exc)
            pending = pending[-_MAX_BUFFER:]
