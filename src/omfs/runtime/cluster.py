"""The Dask cluster of a context, connected or started only on first remote use."""

from __future__ import annotations

import atexit
import os
import threading
from typing import Any

from omfs.errors import ConfigError

__all__ = ["ClusterHandle"]


class ClusterHandle:
    """Holds a context's cluster spec and, once needed, its ``distributed.Client``.

    The spec is a scheduler address (``tcp://host:8786``), a ``distributed.Client``, or None
    for a LocalCluster with process workers started on first use and closed at exit.
    Buckets of one context share one handle.
    """

    def __init__(self, spec: Any = None):
        if spec is not None and not isinstance(spec, str) and not _is_client(spec):
            raise ConfigError(
                f"cluster must be a scheduler address such as 'tcp://host:8786' or a "
                f"distributed.Client, got {type(spec).__name__}"
            )
        self.spec = spec
        self._client: Any = spec if _is_client(spec) else None
        self._cluster: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ClusterHandle({self.describe()})"

    @property
    def started(self) -> bool:
        """True once a client exists (nothing is started before the first remote task)."""
        return self._client is not None

    def describe(self) -> str:
        if _is_client(self.spec):
            return f"client of {self.spec.scheduler.address}"
        return self.spec or "LocalCluster (started on first use)"

    def client(self) -> Any:
        with self._lock:
            if self._client is None or self._client.status in ("closed", "closing"):
                self._client = self._connect()
            return self._client

    def _connect(self) -> Any:
        from distributed import Client, LocalCluster

        if isinstance(self.spec, str):
            try:
                return Client(self.spec, timeout=os.environ.get("OMFS_CONNECT_TIMEOUT", "10s"))
            except OSError as exc:
                raise ConfigError(
                    f"Cannot reach the Dask scheduler at {self.spec!r} ({exc}). Start it "
                    "(`dask scheduler`), or fix --cluster / $OMFS_CLUSTER."
                ) from None
        import dask

        with dask.config.set({"distributed.scheduler.no-workers-timeout": "30s"}):
            self._cluster = LocalCluster(
                processes=True,
                n_workers=min(2, os.cpu_count() or 1),
                threads_per_worker=1,
                dashboard_address=None,
            )
        atexit.register(self.close)
        return Client(self._cluster)

    def close(self) -> None:
        """Close a client and cluster that this handle started (not a caller's own client)."""
        with self._lock:
            if self._cluster is not None:
                if self._client is not None:
                    self._client.close()
                self._cluster.close()
                self._cluster = None
                self._client = None
            elif isinstance(self.spec, str) and self._client is not None:
                self._client.close()
                self._client = None


def _is_client(obj: Any) -> bool:
    return type(obj).__name__ == "Client" and type(obj).__module__.startswith("distributed")
