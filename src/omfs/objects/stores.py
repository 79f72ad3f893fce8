"""The stores of a bucket, by kind: how code that sits beside both stores (promotion with
its inputs, the operations) opens the ``datasets`` or ``models`` store of a bucket.

The stores are looked up by name when first asked for, so that a module which only needs
"the store of this kind" (:mod:`omfs.objects.promote`, imported by both stores) makes
neither store import the other: ``datasets`` and ``models`` stay independent.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from omfs.objects.versioned import VersionedStore
    from omfs.storage import Storage

__all__ = ["STORES", "store_of"]

#: The stores of a bucket, as they appear in keys (``bucket/datasets/...``).
STORES = ("datasets", "models")

#: Each kind's store class: (its package, the class name).
_CLASSES = {
    "datasets": ("omfs.objects.datasets", "DatasetStore"),
    "models": ("omfs.objects.models", "ModelStore"),
}


def store_of(storage: Storage, bucket: str, kind: str) -> VersionedStore:
    """The ``kind`` store (``"datasets"`` or ``"models"``) of ``bucket`` on ``storage``."""
    if kind not in _CLASSES:
        raise ValueError(f"No store {kind!r}: a bucket holds {' and '.join(STORES)}")
    package, name = _CLASSES[kind]
    store: VersionedStore = getattr(importlib.import_module(package), name)(storage, bucket)
    return store
