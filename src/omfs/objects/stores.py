"""The stores of a bucket, by kind: how code that sits beside both stores (promotion with
its inputs, the operations) opens the ``datasets``, ``models`` or ``jobs`` store of a bucket.

The stores are looked up by name when first asked for, so that a module which only needs
"the store of this kind" (:mod:`omfs.objects.promote`, imported by both stores) makes
no store import another: ``datasets``, ``models`` and ``jobs`` stay independent.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from omfs.objects.versioned import VersionedStore
    from omfs.storage import Storage

__all__ = ["SIDECAR_STORES", "STORES", "store_of"]

#: The stores of a bucket, as they appear in keys (``bucket/datasets/...``).
STORES = ("datasets", "models", "jobs")
#: The stores whose version is one payload file with a JSON sidecar beside it (its size and
#: sha256): what sync, bundles and gc expect of their ``_data/`` files.
SIDECAR_STORES = ("models", "jobs")

#: Each kind's store class: (its package, the class name).
_CLASSES = {
    "datasets": ("omfs.objects.datasets", "DatasetStore"),
    "models": ("omfs.objects.models", "ModelStore"),
    "jobs": ("omfs.objects.jobs", "JobStore"),
}


def store_of(storage: Storage, bucket: str, kind: str) -> VersionedStore:
    """The ``kind`` store (``"datasets"``, ``"models"`` or ``"jobs"``) of ``bucket``."""
    if kind not in _CLASSES:
        raise ValueError(f"No store {kind!r}: a bucket holds {', '.join(STORES)}")
    package, name = _CLASSES[kind]
    store: VersionedStore = getattr(importlib.import_module(package), name)(storage, bucket)
    return store
