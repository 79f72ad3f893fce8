"""What the operations share: :class:`SyncError`, telling a context by its shape, and a
store of one bucket of a storage.

Operations sit below the context layer (:mod:`omfs.context` opens contexts and offers
``gc``), so they never import it: the facade (:func:`omfs.sync`, :func:`omfs.import_`)
resolves context names and hands the operations the contexts; a store reaches another
bucket of its storage through :func:`store_of` (from :mod:`omfs.objects.stores`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from omfs.errors import SyncError
from omfs.objects import lease as _lease
from omfs.objects.stores import STORES, store_of

if TYPE_CHECKING:
    from omfs.objects.datasets import DatasetStore
    from omfs.objects.jobs import JobStore
    from omfs.objects.models import ModelStore
    from omfs.storage import Storage

__all__ = [
    "STORES",
    "Context",
    "SyncError",
    "check_context",
    "is_context",
    "lease_target",
    "store_of",
]


class Context(Protocol):
    """What the operations use of a context; :class:`omfs.Omega` is one. A protocol, so
    that this layer names no class of the context layer above it."""

    storage: Storage
    bucket: str

    @property
    def root(self) -> str: ...

    @property
    def buckets(self) -> list[str]: ...

    @property
    def datasets(self) -> DatasetStore: ...

    @property
    def models(self) -> ModelStore: ...

    @property
    def jobs(self) -> JobStore: ...

    def __getitem__(self, bucket: str) -> Context: ...


def is_context(obj: object) -> bool:
    """Whether ``obj`` is a context (an :class:`omfs.Omega`), told by its shape: its class
    has the stores and buckets, the instance a storage (no store is opened to tell)."""
    kind = type(obj)
    return all(hasattr(kind, a) for a in ("datasets", "models", "root", "__getitem__")) and (
        hasattr(obj, "storage")
    )


def check_context(ctx: Any, operation: str) -> Context:
    """``ctx`` itself when it is a context, else SyncError. Names of contexts in the config
    file are resolved above this layer (:func:`omfs.sync`, :func:`omfs.import_`)."""
    if is_context(ctx):
        return ctx  # type: ignore[no-any-return]
    hint = "; omfs.sync and omfs.import_ also take context names" if isinstance(ctx, str) else ""
    raise SyncError(f"{operation} takes contexts (omfs.setup(...)), got {ctx!r}{hint}")


def lease_target(storage: Storage, bucket: str, store: str, name: str) -> None:
    """Hold a gc lease on ``name`` in ``storage`` until the object's sync is done, taken
    only once it is known to write there (an unchanged object costs no request)."""
    where = f"{store[:-1]} {name!r} in bucket {bucket!r} of context {storage.url!r}"
    _lease.take(storage, bucket, store, name, where)
