"""The Dask cluster of a context, connected or started only on first remote use."""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
import time
import weakref
from collections import Counter
from typing import Any

from omfs.compute._routing import WorkerView
from omfs.compute.records import record_lost, write_record
from omfs.errors import ClusterUnavailableError, ConfigError
from omfs.objects.log import commits_made

__all__ = ["ClusterHandle", "LatestVersions", "close_all", "tasks_summary"]

#: the handles of this process that opened a client (see :func:`close_all`)
_connected: weakref.WeakSet[ClusterHandle] = weakref.WeakSet()


def close_all() -> None:
    """Close every client (and private cluster) that omfs opened in this process, waiting
    for their pending tasks first, as happens at exit. For a process that stops a cluster
    itself and goes on (a test session tearing down its scheduler): a client left open
    would try to reconnect to it until the interpreter ends."""
    for handle in list(_connected):
        handle.close()


class ClusterHandle:
    """Holds a context's cluster spec and, once needed, its ``distributed.Client``.

    The spec is a scheduler address (``tcp://host:8786``), a ``distributed.Client``, or None:
    then the background cluster of ``om cluster start`` when it runs, else a private cluster
    (worker subprocesses) started on first use and stopped at exit. Buckets of one context
    share one handle. Tasks are submitted fire-and-forget: a script that ends with tasks
    pending on a cluster that outlives it exits at once, saying which go on running; on a
    private cluster (which stops with the script) it waits for them, saying which.
    """

    def __init__(self, spec: Any = None, *, background: bool = False):
        if spec is not None and not isinstance(spec, str) and not _is_client(spec):
            raise ConfigError(
                f"cluster must be a scheduler address such as 'tcp://host:8786' or a "
                f"distributed.Client, got {type(spec).__name__}"
            )
        self.spec = spec
        self._client: Any = spec if _is_client(spec) else None
        self._private: Any = None
        self._source = "client" if _is_client(spec) else None
        self._background = background  # a client of the background cluster (its gateway)
        self._lock = threading.Lock()
        #: Dask key -> (future, description, (storage, task id, its submitted record, None
        #: once written) or None)
        self._pending: dict[str, tuple[Any, str, Any]] = {}
        self._prune_at = 64
        self._exit_registered = False
        #: the workers as the scheduler last told (routes are checked against it)
        self.view = WorkerView()
        #: models' latest metadata as last read (see :class:`LatestVersions`)
        self.latest = LatestVersions()

    def __repr__(self) -> str:
        return f"ClusterHandle({self.describe()})"

    @property
    def started(self) -> bool:
        """True once a client exists (nothing is started before the first remote task)."""
        return self._client is not None

    @property
    def kind(self) -> str:
        """Who runs the connected cluster: ``background`` (``om cluster start``),
        ``private`` (this process) or ``external`` (a scheduler or Client of the user's)."""
        if self._background or self._source == "background":
            return "background"
        return "private" if self._source == "private" else "external"

    @property
    def address(self) -> str | None:
        """The scheduler's address once connected."""
        return str(self._client.scheduler.address) if self._client is not None else None

    def describe(self) -> str:
        if _is_client(self.spec):
            return f"client of {self.spec.scheduler.address}"
        if isinstance(self.spec, str) and self.spec:  # not a client: an address or None
            return self.spec
        if self._private is not None:
            return f"private cluster at {self._private.address}"
        from omfs.compute.background import background

        running = background()
        if running is not None:
            return f"background cluster at {running.address} (om cluster start)"
        return "private cluster (started on first use; `om cluster start` keeps one running)"

    def client(self) -> Any:
        with self._lock:
            if self._client is None or self._client.status in ("closed", "closing"):
                self._client = self._connect()
                self.view = WorkerView()
                _connected.add(self)
                if not self._exit_registered:
                    # pending tasks are awaited before the interpreter stops its thread
                    # pools (which Dask's client needs to send them), the rest at exit
                    early = getattr(threading, "_register_atexit", None)
                    if early is not None:
                        early(self.at_exit)
                    atexit.register(self.close)
                    self._exit_registered = True
            return self._client

    def _connect(self) -> Any:
        from distributed import Client

        from omfs.compute.background import background, background_tls
        from omfs.compute.private import PrivateCluster
        from omfs.compute.workers import check_reachable, check_speaks_dask

        address, security = self.spec, None
        running = background()
        if running is not None and address in (None, running.address):
            # the background cluster admits only holders of its certificate
            address, security = running.address, background_tls().security()
        if address is not None:
            check_reachable(address)
            check_speaks_dask(address)
            try:
                client = Client(
                    address,
                    timeout=os.environ.get("OMFS_CONNECT_TIMEOUT", "10s"),
                    security=security,
                )
            except OSError as exc:
                raise ClusterUnavailableError(
                    f"Cannot connect to the Dask scheduler at {address} ({exc}). Start it "
                    "(`om cluster start` or `dask scheduler`), or fix --cluster / $OMFS_CLUSTER."
                ) from None
            self._source = "address" if self.spec else "background"
            return client
        try:
            self._private = PrivateCluster()
        except ClusterUnavailableError:
            raise
        except Exception as exc:
            raise ClusterUnavailableError(
                f"Could not start a local Dask cluster ({type(exc).__name__}: {exc}).",
                hint="Start one with `om cluster start`, or run tasks with "
                "runtime.mode(local=True).",
                cli_hint="Start one with `om cluster start`, or run tasks with "
                "`om runtime --local`.",
            ) from exc
        self._source = "private"
        return self._private.client

    # -- tasks --------------------------------------------------------------------------
    def track(self, future: Any, description: str, record: Any = None) -> None:
        """Keep ``future`` (and so its task) alive until it finishes (finished ones are
        dropped as more come: no callback per task; failed ones once their record is
        checked). ``record``: ``(storage, id, doc)`` of its ``submitted`` record, written by
        :meth:`write_records` if still pending then."""
        with self._lock:
            written = (*record, False) if record is not None else None  # its submitted record
            self._pending[future.key] = (future, description, written)
            if len(self._pending) >= self._prune_at:
                self._pending = {k: v for k, v in self._pending.items() if _kept(v)}
                self._prune_at = max(64, 2 * len(self._pending))

    def forget(self, key: str) -> None:
        """Stop keeping the task ``key`` (it was cancelled)."""
        with self._lock:
            self._pending.pop(key, None)

    def pending(self) -> list[tuple[Any, str]]:
        with self._lock:
            return [(f, d) for f, d, _ in self._pending.values() if not f.done()]

    def write_records(self) -> None:
        """Write the ``submitted`` record of each task still pending (so that another
        process can see it), once; and the ``finished`` one of each task Dask gave up on
        without its worker writing it (:meth:`record_failures`)."""
        with self._lock:
            due = [(k, v) for k, v in self._pending.items() if v[2] is not None and not v[2][3]]
            for key, (future, description, (storage, task_id, doc, _)) in due:
                self._pending[key] = (future, description, (storage, task_id, doc, True))
        for _, (future, _, (storage, task_id, doc, _)) in due:
            if not future.done():  # a finished task has its worker's record
                write_record(storage, task_id, "submitted", doc)
        self.record_failures()

    def record_failures(self) -> None:
        """Record the tasks whose futures failed without a worker's record (their workers
        died: KilledWorker, or none was left to run them) as ``failed``, and stop keeping
        them. Cheap when none failed (the background cluster's gateway calls it every
        second)."""
        with self._lock:
            failed = [(k, v) for k, v in self._pending.items() if v[0].status == "error"]
            for key, _ in failed:
                del self._pending[key]
        for _, (future, _, record) in failed:
            if record is not None:
                with contextlib.suppress(Exception):  # the scheduler went away meanwhile
                    record_lost(record[0], record[1], future.exception(timeout=5), record[2])

    def record_abandoned(self, why: str) -> None:
        """Record each tracked task that has not ended as failed with ``why``, unless its
        worker recorded how it ended (put-if-absent): what the background cluster's gateway
        writes as `om cluster stop` ends the cluster (else a task that had not started reads
        pending for good, and `om runtime result` waits for it)."""
        with self._lock:
            due = [(f, r) for f, _, r in self._pending.values() if r is not None]
        for future, record in due:
            if future.status != "finished":
                record_lost(record[0], record[1], ClusterUnavailableError(why), record[2])

    def detach(self) -> None:
        """Let the pending tasks run to their end without this client: write their
        records and hand them to the scheduler as fire-and-forget (one message)."""
        self.write_records()
        pending = [f for f, _ in self.pending()]
        if pending and self._client is not None and self._client.status == "running":
            from distributed import fire_and_forget

            fire_and_forget(pending)

    def wait_pending(self) -> None:
        """Wait for tasks still running, saying once which (Ctrl-C abandons them)."""
        pending = self.pending()
        if not pending:
            return
        names = tasks_summary([d for _, d in pending])
        print(
            f"omfs: waiting for {len(pending)} unfinished task(s) before exiting: {names} "
            "(Ctrl-C abandons them)",
            file=sys.stderr,
        )
        try:
            for future, _ in pending:  # through its own client (not the process's default)
                with contextlib.suppress(Exception):  # a task's error is its caller's
                    future.result()
        except KeyboardInterrupt:
            print(f"omfs: abandoned unfinished task(s): {names}", file=sys.stderr)
            for future, _ in pending:
                future.cancel(force=True)

    def at_exit(self) -> None:
        """As the process ends: write the records of tasks still pending; wait for the tasks
        of a private cluster (it stops with this process); say which tasks go on running
        on a cluster that outlives it (they were submitted fire-and-forget)."""
        if self._source == "private":
            self.write_records()
            self.wait_pending()
            self.record_failures()
            return
        with self._lock:  # each task still pending: its description and task id
            pending = [(d, r and r[1]) for f, d, r in self._pending.values() if not f.done()]
        ids = [task_id for _, task_id in pending if task_id]
        self.detach()
        if pending and self._source in ("background", "address"):
            names = tasks_summary([d for d, _ in pending])
            which = f"id {ids[0]}" if len(ids) == 1 else "ids: `om runtime tasks`"
            if 1 < len(ids) <= 3:
                which = "ids " + ", ".join(ids)
            print(
                f"omfs: {len(pending)} task(s) go on running on the cluster after this "
                f"process exits: {names} ({which}; `om runtime status ID`, "
                "`om runtime result ID`)",
                file=sys.stderr,
            )
        with self._lock:
            self._pending.clear()

    def close(self) -> None:
        """Write queued task records and wait for a private cluster's tasks, then close a
        client and cluster this handle started (not a caller's own client)."""
        if self._source in ("private", "background", "address"):
            self.at_exit()
        with self._lock:
            if self._private is not None:
                self._private.close()
                self._private = None
                self._client = None
            elif self._source in ("background", "address") and self._client is not None:
                self._client.close()
                self._client = None


class LatestVersions:
    """Each model's latest metadata as this process last read it, reused for ``ttl``
    seconds, so that a burst of tasks reads it once, not once per task (four small reads).
    Any commit this process makes (a put) forgets every entry; a fit submitted from here
    forgets its model's, and again as it ends. Another process's new version is seen
    within ``ttl``."""

    def __init__(self, ttl: float = 1.0):
        self.ttl = ttl
        self._entries: dict[tuple[str, str], tuple[Any, float, int]] = {}
        self._fits: dict[tuple[str, str], list[Any]] = {}

    def get(self, models: Any, spec: str) -> Any:
        key = (models.bucket, spec)
        self._fitted(models.bucket, spec.split("@")[0])
        hit = self._entries.get(key)
        made = commits_made()
        if hit is not None and time.monotonic() - hit[1] < self.ttl and hit[2] == made:
            return hit[0]
        meta = models.metadata(spec)
        self._entries[key] = (meta, time.monotonic(), made)
        return meta

    def fitting(self, bucket: str, name: str, future: Any) -> None:
        """Forget model ``name`` now and again once ``future`` (a fit of it) is done, as the
        next :meth:`get` sees it (no done-callback: one could fire after the interpreter
        shut down the executor it runs in)."""
        self.forget(bucket, name)
        self._fits.setdefault((bucket, name), []).append(future)

    def _fitted(self, bucket: str, name: str) -> None:
        fits = self._fits.get((bucket, name))
        if fits and any(f.done() for f in fits):
            self.forget(bucket, name)
            running = [f for f in fits if not f.done()]
            if running:
                self._fits[(bucket, name)] = running
            else:
                del self._fits[(bucket, name)]

    def forget(self, bucket: str, name: str) -> None:
        for key in [k for k in self._entries if k[0] == bucket and k[1].split("@")[0] == name]:
            self._entries.pop(key, None)


def tasks_summary(descriptions: list[str], shown: int = 3) -> str:
    """Tasks in a few words: each description with its count, the most frequent
    ``shown`` ones (``predict(m@v7) x999, fit(m@v1) and 2 more kinds``)."""
    counts = Counter(descriptions).most_common()
    shown = shown + 1 if len(counts) == shown + 1 else shown  # never "and 1 more kind"
    text = ", ".join(d if n == 1 else f"{d} x{n}" for d, n in counts[:shown])
    more = len(counts) - shown
    return text + (f" and {more} more kind{'s' if more > 1 else ''}" if more > 0 else "")


def _kept(entry: tuple[Any, str, Any]) -> bool:
    """Whether a tracked task is still kept: not done, or failed with its record not yet
    checked (:meth:`ClusterHandle.record_failures`)."""
    future = entry[0]
    return not future.done() or (entry[2] is not None and future.status == "error")


def _is_client(obj: Any) -> bool:
    return type(obj).__name__ == "Client" and type(obj).__module__.startswith("distributed")
