"""The audit's appends and the child process that makes them on a local folder.

The server sends each batch, numbered, through a pipe it never blocks on for long (a
stalled child is killed, not waited for); the child appends it (one commit, whose
attributes name the writer and the batch) and acknowledges it on a second pipe. The
server keeps every batch not yet acknowledged: when the child dies, the batches it did
not commit (read from the commits' attributes) are appended by the server, so each row
is appended exactly once. This module imports only what the appends need (not the
server's web stack), so the child stays small.
"""

from __future__ import annotations

import logging
import os
import select
import struct
import time
from collections import OrderedDict
from typing import Any

__all__ = ["COLUMNS", "NULLABLE_INTEGERS", "Writer", "append_batches", "append_rows", "audit_frame"]

log = logging.getLogger("omfs.serve")

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
#: the columns read back as pandas' nullable Int64 (a row without a version holds null)
NULLABLE_INTEGERS = ("version", "shadow_version")
#: the commit attribute naming the writer and the last batch a commit holds
BATCH_ATTRIBUTE = "omfs_audit_batch"
#: a test hook: "noack" makes the child end after a commit, before acknowledging it
TEST_ENV = "OMFS_AUDIT_CHILD_TEST"
_HEADER = struct.Struct("<QQ")  # payload length, batch number
_ACK = struct.Struct("<Q")


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


def append_rows(datasets: Any, name: str, rows: list[Any], batch: str | None = None) -> None:
    """Append audit ``rows`` to dataset ``name`` (one commit; ``batch`` names it in its
    attributes). Columns someone added to the audit are filled with nulls."""
    from omfs.errors import SchemaMismatchError

    frame = audit_frame(rows)
    attributes = {BATCH_ATTRIBUTE: batch} if batch else None
    try:
        datasets.put(frame, name, append=True, attributes=attributes)
    except SchemaMismatchError:
        schema = datasets.to_arrow_dataset(name).schema
        extra = [f for f in schema if f.name not in frame.columns]
        if not extra:
            raise
        import pyarrow as pa

        for field in extra:
            frame[field.name] = pa.nulls(len(frame), field.type).to_pandas()
        datasets.put(frame, name, append=True, attributes=attributes)


def committed_batch(datasets: Any, name: str, writer: str) -> int:
    """The number of the last batch ``writer`` committed to dataset ``name`` (0: none)."""
    last = 0
    if not datasets.exists(name):
        return 0
    for meta in datasets.versions(name)[-1000:]:
        found = str(meta.attributes.get(BATCH_ATTRIBUTE, ""))
        if found.startswith(writer + ":"):
            last = max(last, int(found.rpartition(":")[2]))
    return last


class Writer:
    """The server's end of one child process that appends the batches it is sent."""

    def __init__(self, process: Any, data: int, acks: int, ident: str, datasets: Any, name: str):
        self.process, self.data, self.acks, self.ident = process, data, acks, ident
        self.datasets, self.name = datasets, name
        self.seq = 0
        #: batches sent and not acknowledged yet, by number
        self.unacked: OrderedDict[int, list[Any]] = OrderedDict()
        self.acked = False

    @classmethod
    def start(cls, datasets: Any, name: str) -> Writer | None:
        """Start the child (None, logged, when it cannot start): a fresh interpreter that
        runs only this module, its working directory not on ``sys.path`` (``-P``: a module
        planted there is not imported), in its own session (a Ctrl-C reaches the server)."""
        import pickle
        import subprocess
        import sys

        data_r, data_w = os.pipe()
        ack_r, ack_w = os.pipe()
        code = (
            f"from omfs.serve.audit_writer import append_batches; append_batches({data_r}, {ack_w})"
        )
        try:
            process = subprocess.Popen(
                [sys.executable, "-P", "-c", code], pass_fds=(data_r, ack_w), start_new_session=True
            )
        except (OSError, ValueError) as exc:
            for fd in (data_r, data_w, ack_r, ack_w):
                os.close(fd)
            log.warning("the audit appends in the server's thread (no child process: %s)", exc)
            return None
        os.close(data_r)
        os.close(ack_w)
        os.set_blocking(data_w, False)
        os.set_blocking(ack_r, False)
        writer = cls(
            process, data_w, ack_r, f"{os.getpid()}-{process.pid}-{time.time_ns()}", datasets, name
        )
        first = pickle.dumps((datasets.storage, datasets.bucket, name, writer.ident))
        if not writer.write(_HEADER.pack(len(first), 0) + first, time.monotonic() + 10):
            log.warning("the audit appends in the server's thread (the child ended)")
            writer.stop()
            return None
        return writer

    def alive(self) -> bool:
        """Whether the child runs (a dead one is reaped)."""
        return self.process.poll() is None

    def send(self, rows: list[Any], timeout: float) -> bool:
        """Hand ``rows`` over as the next batch within ``timeout`` seconds; False when the
        child is gone or does not read (the batch then stays unacknowledged)."""
        import msgspec

        self.drain()
        self.seq += 1
        self.unacked[self.seq] = rows
        payload = msgspec.msgpack.encode(rows)
        return self.write(
            _HEADER.pack(len(payload), self.seq) + payload, time.monotonic() + timeout
        )

    def write(self, message: bytes, deadline: float) -> bool:
        """Write all of ``message`` to the child by ``deadline`` (the pipe never blocks)."""
        view = memoryview(message)
        poller = select.poll()
        poller.register(self.data, select.POLLOUT)
        while view:
            try:
                view = view[os.write(self.data, view) :]
                continue
            except BlockingIOError:
                pass
            except OSError:
                return False
            left = deadline - time.monotonic()
            if left <= 0 or not self.alive():
                return False
            poller.poll(min(left, 0.5) * 1000)
        return True

    def drain(self) -> None:
        """Forget the batches the child acknowledged."""
        while True:
            try:
                chunk = os.read(self.acks, 8 * 1024)
            except BlockingIOError:
                return
            if not chunk:
                return
            self.acked = True
            (last,) = _ACK.unpack(chunk[-_ACK.size :])
            for seq in [s for s in self.unacked if s <= last]:
                del self.unacked[seq]

    def finish(self, deadline: float) -> list[Any]:
        """End of the batches: wait (until ``deadline``) for the child to append what it
        holds and end, else kill it; the rows it did not commit, for the caller to append."""
        import subprocess

        os.close(self.data)
        self.data = -1
        try:
            code = self.process.wait(max(deadline - time.monotonic(), 0.1))
            if code:
                log.error("the audit's child process ended with code %s", code)
        except subprocess.TimeoutExpired:
            log.error("the audit's child process did not finish in time: the server appends")
        return self.stop()

    def stop(self) -> list[Any]:
        """Kill the child (if it runs), reap it, and return the rows of the batches it did
        not commit (acknowledged or recorded in the audit's commits), in order."""
        if self.alive():
            self.process.kill()
        self.process.wait()
        self.drain()
        for fd in (self.data, self.acks):
            if fd >= 0:
                os.close(fd)
        self.data = self.acks = -1
        if not self.unacked:
            return []
        done = committed_batch(self.datasets, self.name, self.ident)
        return [row for seq, rows in self.unacked.items() if seq > done for row in rows]


def _read(fd: int, size: int) -> bytes | None:
    """Exactly ``size`` bytes from ``fd`` (None at the end of the pipe)."""
    parts, left = [], size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _message(fd: int) -> tuple[int, bytes] | None:
    header = _read(fd, _HEADER.size)
    if header is None:
        return None
    length, seq = _HEADER.unpack(header)
    payload = _read(fd, length)
    return None if payload is None else (seq, payload)


def append_batches(fd: int, ack: int) -> None:
    """The audit's child process: append each batch read from pipe ``fd``, in order, and
    acknowledge it on pipe ``ack``, until the pipe closes; a batch storage refuses is kept
    and tried again with the next (and at the end). The first message names the context's
    storage, bucket, the dataset and this writer."""
    import pickle
    import signal

    import msgspec

    from omfs.context import Omega

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server ends it: it closes the pipe
    first = _message(fd)
    if first is None:
        return
    storage, bucket, name, ident = pickle.loads(first[1])
    datasets = Omega(storage, bucket).datasets
    pending: list[Any] = []
    last = 0
    while (message := _message(fd)) is not None or pending:
        if message is not None:
            last = message[0]
            pending += msgspec.msgpack.decode(message[1])
        try:
            append_rows(datasets, name, pending, f"{ident}:{last}")
        except Exception as exc:
            log.error("cannot append %d rows to the audit %r: %s", len(pending), name, exc)
            if message is None:
                return  # the end, and storage refuses: the server appends them
            continue
        pending = []
        if os.environ.get(TEST_ENV) == "noack":
            raise SystemExit(3)
        os.write(ack, _ACK.pack(last))
