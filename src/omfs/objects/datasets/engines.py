"""Other engines read a version: a pyarrow dataset of exactly its parts (DuckDB, Polars,
Spark through Arrow), and a Delta table of the dataset's history (:mod:`.delta`).

The pyarrow dataset is the one ``get`` reads: its fragments carry each part's statistics
from the log as guarantees and its size as known, so a filter skips parts without opening
them and object storage is never asked for a size nor listed.
"""

from __future__ import annotations

import os
from typing import Any

from omfs.errors import InvalidTypeError
from omfs.objects.datasets import _convert
from omfs.objects.datasets._parts import arrow_dataset
from omfs.objects.datasets.versions import DatasetVersions
from omfs.objects.records import Part, State

__all__ = ["DatasetEngines"]


class DatasetEngines(DatasetVersions):
    """``to_arrow_dataset``, ``to_polars`` and ``export_delta`` of the dataset store."""

    def to_arrow_dataset(
        self,
        name: str,
        *,
        version: int | str | None = None,
        at: Any = None,
        strings_as_dictionary: bool = False,
    ) -> Any:
        """The version ``name`` selects (``sales``, ``sales@prod``, ``sales@v3``; ``at=`` an
        ISO 8601 time) as a ``pyarrow.dataset.Dataset`` of exactly its parts, typed as
        stored (columns added later read as null in older parts). Filters skip parts by the
        statistics omfs keeps; nothing is listed and no part is read before a scan needs it.
        ``strings_as_dictionary=True`` reads string columns as dictionary arrays, as Parquet
        stores them: engines that take those as they are (DuckDB) skip decoding each value.

        Example::

            import duckdb
            sales = om.datasets.to_arrow_dataset("sales@prod")
            duckdb.sql("select region, sum(qty) from sales group by 1")
        """
        base, rec, state = self.select(name, version, at=at)
        if rec.kind == _convert.KIND_RAW:
            raise InvalidTypeError(
                f"Dataset {base!r} is a raw file, not a table: it has no Arrow dataset. "
                "Read its bytes with get()."
            )
        parts = self.parts_of(base, state, rec)
        keys = [self.data_key(base, p["file"]) for p in parts]
        dataset = arrow_dataset(self.storage, keys, parts, self._schema(base, rec))
        if strings_as_dictionary:
            dataset = _strings_as_dictionary(dataset, [p["size"] for p in parts])
        return dataset

    def local_parts(self, name: str, version: int, paths: list[str]) -> list[Part]:
        """The part records of version ``version`` of ``name`` stored at ``paths`` (paths of
        its Arrow dataset's fragments), each checked present on a local folder: a part gone
        is the IntegrityError ``get`` raises, before an engine that reads the files itself
        (DuckDB's ``read_parquet``) stumbles on it."""
        base, rec, state = self.select(name, version)
        by_path = {
            self.storage.path(self.data_key(base, p["file"])): p
            for p in self.parts_of(base, state, rec)
        }
        for path in paths:
            if self.storage.is_local and not os.path.lexists(path):
                raise self._missing_payload(base, rec.version, path.rsplit("/", 1)[-1])
        return [by_path[path] for path in paths]

    def to_polars(
        self,
        name: str,
        *,
        version: int | str | None = None,
        at: Any = None,
        lazy: bool = True,
    ) -> Any:
        """The version ``name`` selects as a Polars ``LazyFrame`` (filters and column
        selections are pushed into the Arrow dataset); ``lazy=False`` collects it."""
        import polars as pl

        frame = pl.scan_pyarrow_dataset(self.to_arrow_dataset(name, version=version, at=at))
        return frame if lazy else frame.collect()

    def export_delta(
        self, name: str, url: str, *, storage_options: dict[str, str] | None = None
    ) -> Any:
        """Write the versions of dataset ``name`` as the commits of a Delta table at ``url``
        (a folder or ``s3://...``; ``storage_options`` as deltalake takes them): Delta
        version k holds omfs version k+1's rows, appends as appends, other versions as
        overwrites, a dropped version as an overwrite with no rows. A re-run writes only
        the versions since the last export, and refuses a table that has diverged.

        Returns a :class:`~omfs.objects.datasets.delta.DeltaExport`.
        """
        from omfs.objects.datasets.delta import (
            DeltaExport,
            delta_errors,
            exported_up_to,
            write_steps,
        )

        base, rec, _ = self.select(name)
        if rec.kind == _convert.KIND_RAW:
            raise InvalidTypeError(f"Dataset {base!r} is a raw file: it has no Delta table.")
        state = self.state(base, full=True)
        with delta_errors(url):
            done = exported_up_to(
                url, base, storage_options, lambda v: self._delta_digest(base, state, v)
            )
            newest = rec.version  # the latest: select() without a selector
            steps = [self._delta_step(base, state, v) for v in range(done + 1, newest + 1)]
            latest = write_steps(url, base, steps, storage_options)
        return DeltaExport(
            base, url, [s.version for s in steps], done - 1 if latest is None else latest
        )

    def _delta_digest(self, name: str, state: State, version: int) -> str | None:
        from omfs.objects.datasets.delta import parts_digest

        rec = state.records.get(version)
        if rec is None or rec.dropped is not None:
            return None
        return parts_digest([p["file"] for p in self.parts_of(name, state, rec)])

    def _delta_step(self, name: str, state: State, version: int) -> Any:
        """What Delta version ``version - 1`` is written from."""
        from omfs.objects.datasets.delta import DeltaStep

        rec = state.records.get(version)
        if rec is None or rec.dropped is not None:
            latest = state.latest_record()
            schema = self._schema(name, rec if rec is not None else latest)
            return DeltaStep(version, "overwrite", None, schema, "")
        schema = self._schema(name, rec)
        parts = self.parts_of(name, state, rec)
        digest = self._delta_digest(name, state, version) or ""
        before = state.records.get(version - 1)
        if rec.info.get("parent") == version - 1 and before is not None and not before.dropped:
            parts = rec.info.get("add") or []
            mode = "append"
        else:
            mode = "overwrite"
        keys = [self.data_key(name, p["file"]) for p in parts]
        rows = arrow_dataset(self.storage, keys, parts, schema)
        return DeltaStep(version, mode, rows, schema, digest)


def _strings_as_dictionary(dataset: Any, sizes: list[int]) -> Any:
    """``dataset`` (its fragments in the order of ``sizes``) with its string columns read
    as dictionary arrays; the fragments keep their statistics and known sizes."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    text = (pa.types.is_string, pa.types.is_large_string)
    strings = [f.name for f in dataset.schema if any(t(f.type) for t in text)]
    if not strings:
        return dataset
    fmt = ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(dictionary_columns=strings))
    fragments = [
        fmt.make_fragment(
            f.path,
            filesystem=dataset.filesystem,
            partition_expression=f.partition_expression,
            file_size=size,
        )
        for f, size in zip(dataset.get_fragments(), sizes, strict=True)
    ]
    schema = pa.schema(
        [
            f.with_type(pa.dictionary(pa.int32(), f.type)) if f.name in strings else f
            for f in dataset.schema
        ],
        metadata=dataset.schema.metadata,
    )
    return ds.FileSystemDataset(fragments, schema, fmt, dataset.filesystem)
