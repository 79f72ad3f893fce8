"""The audit of every answer: rows buffered in memory, appended in batches to a dataset.

Each model request leaves one row (request id, time, model, version, sha256, latency,
status, rows, and for a shadow the challenger's version and answer). A thread appends the
buffer to the dataset every few seconds (or sooner when it is large) and at shutdown, so
the audit costs a list append per request. Which version, hence which training data,
produced the answer to request X is then a join of the audit with the models' lineage.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any

__all__ = ["AUDIT_DATASET", "COLUMNS", "Audit"]

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
        self, datasets: Any, name: str = AUDIT_DATASET, interval: float = 5.0, batch: int = 20000
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

    def add(self, row: tuple[Any, ...]) -> None:
        """Buffer one row (the values of :data:`COLUMNS`, time as epoch seconds)."""
        self._rows.append(row)
        if len(self._rows) >= self.batch:
            self._wake.set()

    def start(self) -> None:
        """Start the thread that appends the buffer every ``interval`` seconds."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="omfs-serve-audit")
            self._thread.daemon = True
            self._thread.start()

    def close(self) -> None:
        """Stop the thread and append what is buffered."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self.flush()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            self.flush()

    def flush(self) -> int:
        """Append the buffered rows now; returns how many were written. On a storage
        failure the rows stay buffered for the next try (and the failure is logged)."""
        with self._flush_lock:
            rows = [self._rows.popleft() for _ in range(len(self._rows))]
            if not rows:
                return 0
            try:
                self.datasets.put(self._table(rows).to_pandas(), self.name, append=True)
            except Exception as exc:
                log.error("cannot append %d rows to the audit %r: %s", len(rows), self.name, exc)
                self._rows.extendleft(reversed(rows[-_MAX_BUFFER:]))
                return 0
            return len(rows)

    def _table(self, rows: list[tuple[Any, ...]]) -> Any:
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
        return pa.Table.from_arrays(arrays, schema=schema)
