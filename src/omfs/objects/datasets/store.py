"""The dataset store: versioned Parquet tables (and raw files) under one bucket.

Its parts: the protocol hooks and what a version holds (:mod:`.versions`), the schema rules
(:mod:`.schema`), ``put`` (:mod:`.write`), ``get`` (:mod:`.read`), ``compact``
(:mod:`.compact`).
"""

from __future__ import annotations

from typing import Any

from omfs.objects.datasets.compact import COMPACT_TARGET, DatasetCompactor
from omfs.objects.datasets.read import DatasetReader
from omfs.objects.datasets.write import DatasetWriter
from omfs.objects.metadata import Metadata

__all__ = ["COMPACT_TARGET", "DatasetStore"]


class DatasetStore(DatasetWriter, DatasetReader, DatasetCompactor):
    """Datasets of one bucket: ``put``, ``get``, ``list``, ``exists``, ``drop``, ``metadata``,
    ``versions``, ``compact``, ``promote``."""

    # -- promotion --------------------------------------------------------------------------
    def promote(self, name: str, other: DatasetStore | str, **kwargs: Any) -> Metadata:
        """Copy one version of ``name`` to ``other`` (another bucket or context) as a new
        version there, recording where it came from; ``other`` may name a context of the
        config file (``"prod"``, ``"prod:bucket"``). See :func:`omfs.objects.promote.promote`."""
        from omfs.objects.promote import promote

        meta: Metadata = promote(self, name, other, **kwargs)
        return meta
