"""The Dask cluster of a context, connected or started only on first remote use."""

from __future__ import annotations

import atexit
import os
import sys
import threading
import weakref
from typing import Any

from omfs.errors import ClusterUnavailableError, ConfigError

__all__ = ["ClusterHandle", "close_all"]

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
    share one handle. Tasks submitted through it are kept until they finish: a script that
    ends with tasks pending waits for them, saying which.
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
        self._pending: dict[str, tuple[Any, str]] = {}
        self._exit_registered = False

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
                _connected.add(self)
                if not self._exit_registered:
                    # pending tasks are awaited before the interpreter stops its thread
                    # pools (which Dask's client needs to send them), the rest at exit
                    early = getattr(threading, "_register_atexit", None)
                    if early is not None:
                        early(self.wait_pending)
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
    def track(self, future: Any, description: str) -> None:
        """Keep ``future`` (and so its task) alive until it finishes."""
        key = future.key
        with self._lock:
            self._pending[key] = (future, description)
        future.add_done_callback(lambda f: self._pending.pop(f.key, None))

    def forget(self, key: str) -> None:
        """Stop keeping the task ``key`` (it was cancelled)."""
        with self._lock:
            self._pending.pop(key, None)

    def pending(self) -> list[tuple[Any, str]]:
        with self._lock:
            return [(f, d) for f, d in self._pending.values() if not f.done()]

    def wait_pending(self) -> None:
        """Wait for tasks still running, saying once which (Ctrl-C abandons them)."""
        pending = self.pending()
        if not pending:
            return
        from distributed import wait

        names = ", ".join(d for _, d in pending)
        print(
            f"omfs: waiting for {len(pending)} unfinished task(s) before exiting: {names} "
            "(Ctrl-C abandons them)",
            file=sys.stderr,
        )
        try:
            wait([f for f, _ in pending])
        except KeyboardInterrupt:
            print(f"omfs: abandoned unfinished task(s): {names}", file=sys.stderr)
            for future, _ in pending:
                future.cancel()

    def close(self) -> None:
        """Wait for pending tasks, then close a client and cluster this handle started (not
        a caller's own client)."""
        if self._source in ("private", "background", "address"):
            self.wait_pending()
        with self._lock:
            if self._private is not None:
                self._private.close()
                self._private = None
                self._client = None
            elif self._source in ("background", "address") and self._client is not None:
                self._client.close()
                self._client = None


def _is_client(obj: Any) -> bool:
    return type(obj).__name__ == "Client" and type(obj).__module__.startswith("distributed")
