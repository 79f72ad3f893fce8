"""The dataset store: versioned Parquet tables (and raw files) under one bucket.

Its parts: the protocol hooks and what a version holds (:mod:`.versions`), the schema rules
(:mod:`.schema`), ``put`` (:mod:`.write`), ``get`` (:mod:`.read`), ``compact``
(:mod:`.compact`), other engines (:mod:`.engines`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from omfs.errors import UsageError
from omfs.objects.datasets.compact import COMPACT_TARGET, DatasetCompactor
from omfs.objects.datasets.engines import DatasetEngines
from omfs.objects.datasets.read import DatasetReader
from omfs.objects.datasets.write import DatasetWriter
from omfs.objects.metadata import Metadata

__all__ = ["COMPACT_TARGET", "DatasetStore"]


class DatasetStore(DatasetWriter, DatasetReader, DatasetCompactor, DatasetEngines):
    """Datasets of one bucket: ``put``, ``put_file``, ``get``, ``list``, ``exists``, ``drop``,
    ``metadata``, ``versions``, ``compact``, ``promote``; for other engines
    ``to_arrow_dataset``, ``to_polars`` and ``export_delta``."""

    def put_file(
        self,
        path: str | os.PathLike[str],
        name: str,
        *,
        append: bool = False,
        attributes: dict[str, Any] | None = None,
        tag: str | None = None,
        progress: Callable[[int], None] | None = None,
        **options: Any,
    ) -> Metadata:
        """Import a table file (CSV, TSV, Parquet, JSON lines, JSON, Feather, Excel) as a new
        version of ``name``, streamed, as ``om datasets put`` does (``put(path)`` stores a
        file raw). ``options``, as the command's: ``sep``, ``encoding``, ``parse_dates``
        (list), ``dtype`` (dict), ``decimal`` (``","`` reads ``0,038``), ``date_format``
        (strptime, e.g. ``"%d/%m/%Y %H:%M"``), ``skip_bad_lines``, ``max_columns``,
        ``max_line_bytes``."""
        from omfs.objects.datasets._files import ImportOptions, open_table_file

        known = set(ImportOptions.__dataclass_fields__) - {"skipped"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise UsageError(
                f"put_file({str(path)!r}, {name!r}): unknown option {unknown[0]!r}; the "
                f"options are {sorted(known)}"
            )
        data = open_table_file(path, ImportOptions(**options), progress)
        meta: Metadata = self.put(data, name, append=append, attributes=attributes, tag=tag)
        return meta

    # -- promotion --------------------------------------------------------------------------
    def promote(self, name: str, other: DatasetStore | str, **kwargs: Any) -> Metadata:
        """Copy one version of ``name`` to ``other`` (another bucket or context) as a new
        version there, recording where it came from; ``other`` may name a context of the
        config file (``"prod"``, ``"prod:bucket"``). See :func:`omfs.objects.promote.promote`."""
        from omfs.objects.promote import promote

        meta: Metadata = promote(self, name, other, **kwargs)
        return meta
