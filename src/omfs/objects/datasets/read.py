"""Reading datasets: ``get`` as the kind they were stored as, with columns and filters
pushed down into the Parquet read, lazily (Dask), in chunks, or a raw file whole."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from typing import Any

from omfs._util import atomic_path
from omfs.errors import IntegrityError, InvalidTypeError, UnknownColumnError, UsageError
from omfs.objects.datasets import _convert
from omfs.objects.datasets._filters import build_filter, keywords_to_dnf
from omfs.objects.datasets._parts import arrow_dataset, damaged_part
from omfs.objects.datasets.schema import pandas_index_columns, pandas_range_index
from omfs.objects.datasets.versions import DatasetVersions
from omfs.objects.records import Part, VersionRecord

__all__ = ["DatasetReader"]


class DatasetReader(DatasetVersions):
    """``get`` of the dataset store."""

    def get(
        self,
        name: str,
        *,
        version: int | str | None = None,
        columns: list[str] | None = None,
        filters: Any = None,
        lazy: bool = False,
        chunksize: int | None = None,
        local_path: str | os.PathLike[str] | None = None,
        progress: Callable[[int], None] | None = None,
        at: Any = None,
        **filter_kw: Any,
    ) -> Any:
        """Read dataset ``name`` back as the kind it was stored as.

        ``columns`` and ``filters`` (DNF tuples, or keywords such as ``a__gt=1``) are pushed
        down into the Parquet read: parts whose statistics cannot match are not opened.
        ``lazy=True`` gives a Dask DataFrame; ``chunksize=N`` an iterator of frames of N rows
        (one row group in memory at a time). Raw files come back as bytes, or are written
        to ``local_path``. ``at=`` (ISO 8601) reads what ``name`` or ``name@tag`` selected
        at that time.
        """
        base, rec, state = self.select(name, version, at=at)
        parts = self.parts_of(base, state, rec)
        if rec.kind == _convert.KIND_RAW:
            if columns is not None or filters is not None or filter_kw or lazy:
                raise InvalidTypeError(
                    f"Dataset {base!r} is a raw file: columns, filters and lazy do not "
                    "apply. Read it as bytes, with chunksize=, or into local_path=."
                )
            return self._get_raw(base, rec, parts, chunksize, local_path, progress)
        if local_path is not None:
            raise InvalidTypeError(
                "local_path= applies to raw files; use columns/filters for tables"
            )
        schema = self._schema(base, rec)
        keys = [self.data_key(base, p["file"]) for p in parts]
        if columns is not None:
            columns = _checked_columns(base, schema, columns)
        if lazy:
            return self._get_lazy(base, rec, schema, keys, parts, columns, filters, filter_kw)
        expr = _filter_expr(schema, filters, filter_kw)
        read_columns = None
        if columns is not None:
            index = [c for c in pandas_index_columns(schema) if c in schema.names]
            read_columns = columns + [c for c in index if c not in columns]
        if chunksize is not None:
            if int(chunksize) < 1:
                raise UsageError(f"chunksize must be a positive number of rows, got {chunksize!r}")
            dataset = arrow_dataset(self.storage, keys, parts, schema, whole_file_limit=0)
            chunks = self._iter_chunks(rec, schema, dataset, read_columns, expr, int(chunksize))
            return _checked(chunks, self.storage, keys, parts)
        table = self._read_table(base, rec, schema, keys, parts, read_columns, expr)
        return _convert.from_table(
            table, rec.kind, rec.info, whole=columns is None and expr is None
        )

    def _read_table(
        self,
        name: str,
        rec: VersionRecord,
        schema: Any,
        keys: list[str],
        parts: list[Part],
        read_columns: list[str] | None,
        expr: Any,
    ) -> Any:
        """The rows of ``parts`` that ``expr`` selects, as one Arrow table; a missing or
        damaged part is named (IntegrityError)."""
        import pyarrow as pa

        dataset = arrow_dataset(self.storage, keys, parts, schema)
        try:
            table = dataset.to_table(columns=read_columns, filter=expr)
        except FileNotFoundError:
            self._raise_missing_part(name, rec, parts)
            raise
        except (OSError, pa.ArrowException) as exc:
            raise damaged_part(self.storage, keys, parts) or exc from None
        return table.replace_schema_metadata(schema.metadata)

    def _raise_missing_part(self, name: str, rec: VersionRecord, parts: list[Part]) -> None:
        for p in parts:
            self._check_payload_present(name, rec.version, p["file"])

    def _get_lazy(
        self,
        name: str,
        rec: VersionRecord,
        schema: Any,
        keys: list[str],
        parts: list[Part],
        columns: list[str] | None,
        filters: Any,
        filter_kw: dict[str, Any],
    ) -> Any:
        import dask.dataframe as dd

        if rec.kind not in (_convert.KIND_FRAME, _convert.KIND_SERIES, _convert.KIND_ARROW):
            raise InvalidTypeError(
                f"Dataset {name!r} holds a {rec.kind}; lazy=True gives Dask DataFrames "
                "of tables only. Read it with lazy=False."
            )
        names = list(schema.names)
        dnf = list(filters or [])
        if filter_kw:
            extra = keywords_to_dnf(filter_kw, names)
            if dnf and isinstance(dnf[0], list):
                dnf = [conj + extra for conj in dnf]
            else:
                dnf = dnf + extra
        self.storage.check_regular((k, p["size"]) for k, p in zip(keys, parts, strict=True))
        paths = [self.storage.path(k) for k in keys]
        if dnf:  # only the parts whose statistics can match
            expr = build_filter(dnf, {}, names)
            dataset = arrow_dataset(self.storage, keys, parts, schema)
            matching = {f.path for f in dataset.get_fragments(filter=expr)}
            paths = [p for p in paths if p in matching] or paths[:1]
        ddf = dd.read_parquet(
            paths, filesystem=self.storage.fs, columns=columns, filters=dnf or None
        )
        if rec.kind == _convert.KIND_SERIES:
            series = ddf[_convert.SERIES_COLUMN]
            return series.rename(rec.info.get("series_name"))
        return ddf

    def _iter_chunks(
        self,
        rec: VersionRecord,
        schema: Any,
        dataset: Any,
        read_columns: list[str] | None,
        expr: Any,
        chunksize: int,
    ) -> Iterator[Any]:
        """Frames of ``chunksize`` rows, reading one row group of one part at a time."""
        import pyarrow as pa

        pending: list[Any] = []
        buffered = 0
        offset = 0
        rng = pandas_range_index(schema)
        single = len(dataset.files) == 1

        def emit(batches: list[Any]) -> Any:
            nonlocal offset
            table = pa.Table.from_batches(batches, schema=batches[0].schema)
            table = table.replace_schema_metadata(schema.metadata)
            obj = _convert.from_table(table, rec.kind, rec.info, whole=False)
            if hasattr(obj, "index") and rng is not None:
                import pandas as pd

                if expr is None and single:
                    # unfiltered rows of one part: continue the stored range exactly
                    step = rng.get("step", 1)
                    start = rng.get("start", 0) + offset * step
                    obj.index = pd.RangeIndex(
                        start, start + len(obj) * step, step, name=rng.get("name")
                    )
                else:  # as a whole read would number them
                    obj.index = pd.RangeIndex(offset, offset + len(obj))
            offset += table.num_rows
            return obj

        for fragment in dataset.get_fragments(filter=expr):
            for row_group in fragment.split_by_row_group(filter=expr, schema=schema):
                batches = row_group.to_batches(
                    schema=schema,
                    columns=read_columns,
                    filter=expr,
                    batch_size=chunksize,
                    batch_readahead=0,
                    fragment_readahead=0,
                    use_threads=False,
                )
                for batch in batches:
                    while batch.num_rows:
                        take = min(chunksize - buffered, batch.num_rows)
                        pending.append(batch.slice(0, take))
                        buffered += take
                        batch = batch.slice(take)
                        if buffered == chunksize:
                            yield emit(pending)
                            pending, buffered = [], 0
        if pending:
            yield emit(pending)

    def _get_raw(
        self,
        name: str,
        rec: VersionRecord,
        parts: list[Part],
        chunksize: int | None,
        local_path: str | os.PathLike[str] | None,
        progress: Callable[[int], None] | None,
    ) -> Any:
        key = self.data_key(name, parts[0]["file"])
        if chunksize is not None:
            return self.storage.iter_chunks(key, int(chunksize))
        digest = hashlib.sha256()
        try:
            if local_path is None:
                data = self.storage.read_bytes(key)
                digest.update(data)
                self._verify(name, rec, digest.hexdigest())
                return data
            target = os.fspath(local_path)
            with atomic_path(target) as tmp:
                with open(tmp, "wb") as out:
                    for chunk in self.storage.iter_chunks(key):
                        digest.update(chunk)
                        out.write(chunk)
                        if progress:
                            progress(len(chunk))
                self._verify(name, rec, digest.hexdigest())
            return target
        except FileNotFoundError:
            raise self._missing_payload(name, rec.version, parts[0]["file"]) from None

    def _verify(self, name: str, rec: VersionRecord, sha256: str) -> None:
        if sha256 != rec.info.get("sha256"):
            raise IntegrityError(
                f"The payload of dataset {name!r} version {rec.version} does not match "
                "its recorded sha256: it was changed or truncated outside omfs."
            )


def _checked(
    chunks: Iterator[Any], storage: Any, keys: list[str], parts: list[Part]
) -> Iterator[Any]:
    """``chunks``, with a damaged part named (IntegrityError) instead of pyarrow's error."""
    import pyarrow as pa

    try:
        yield from chunks
    except FileNotFoundError:
        raise
    except (OSError, pa.ArrowException) as exc:
        raise damaged_part(storage, keys, parts) or exc from None


def _checked_columns(name: str, schema: Any, columns: Any) -> list[str]:
    """``columns`` as a list, each a column of the dataset (else KeyError naming them)."""
    names = list(schema.names)
    columns = [columns] if isinstance(columns, str) else list(columns)
    unknown = [c for c in columns if c not in set(names)]
    if unknown:
        raise UnknownColumnError(
            f"Dataset {name!r} has no columns {unknown}; it has "
            f"{[n for n in names if not n.startswith('__index_level')]}"
        )
    return [str(c) for c in columns]


def _filter_expr(schema: Any, filters: Any, filter_kw: dict[str, Any]) -> Any:
    """The Arrow expression of ``filters`` and ``filter_kw`` (None when there are none)."""
    floats = frozenset(f.name for f in schema if str(f.type) in ("float", "double", "halffloat"))
    types = {f.name: f.type for f in schema}
    return build_filter(filters, filter_kw, list(schema.names), floats, types)
