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
from omfs.objects.datasets.schema import pandas_index_columns, pandas_range_index, read_schema
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
        at that time. Filtered rows keep the labels an unfiltered read gives them, as pandas
        filtering does (a RangeIndex's, computed from the parts' row counts).
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
        read_columns = _with_index_columns(schema, columns)
        labels = _row_labels(rec.kind, schema, parts)
        if chunksize is not None:
            if int(chunksize) < 1:
                raise UsageError(f"chunksize must be a positive number of rows, got {chunksize!r}")
            dataset = arrow_dataset(self.storage, keys, parts, schema, whole_file_limit=0)
            batches = self._batches(dataset, schema, keys, parts, read_columns, expr, labels)
            chunks = self._iter_chunks(rec, schema, batches, labels, int(chunksize))
            return _checked(chunks, self.storage, keys, parts)
        if expr is not None and labels is not None:  # keep the rows' labels, as pandas does
            return self._read_labelled(base, rec, schema, keys, parts, read_columns, expr, labels)
        table = self._read_table(base, rec, schema, keys, parts, read_columns, expr)
        return _convert.from_table(
            table, rec.kind, rec.info, whole=columns is None and expr is None, schema=schema
        )

    def _read_labelled(
        self,
        name: str,
        rec: VersionRecord,
        schema: Any,
        keys: list[str],
        parts: list[Part],
        read_columns: list[str] | None,
        expr: Any,
        labels: Any,
    ) -> Any:
        """The rows ``expr`` selects, labelled as an unfiltered read labels them."""
        import numpy as np
        import pyarrow as pa

        dataset = arrow_dataset(self.storage, keys, parts, schema)
        names = list(schema.names) if read_columns is None else read_columns
        batches, positions = [], []
        try:
            for batch, where in _selected(self.storage, dataset, keys, parts, names, expr):
                batches.append(batch)
                positions.append(where)
        except FileNotFoundError:
            self._raise_missing_part(name, rec, parts)
            raise
        except (OSError, pa.ArrowException) as exc:
            raise damaged_part(self.storage, keys, parts) or exc from None
        read = dataset.schema
        fields = pa.schema([read.field(n) for n in names], metadata=schema.metadata)
        table = pa.Table.from_batches(batches, schema=fields)
        obj = _convert.from_table(table, rec.kind, rec.info, whole=False, schema=schema)
        obj.index = labels[np.concatenate(positions) if positions else np.empty(0, np.int64)]
        return obj

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
        if any(_lacks_columns(p, schema) for p in parts):  # written before columns were added
            ddf = _read_parts_lazily(self.storage.fs, paths, schema, columns, dnf)
        else:
            ddf = dd.read_parquet(
                paths, filesystem=self.storage.fs, columns=columns, filters=dnf or None
            )
        if rec.kind == _convert.KIND_SERIES:
            series = ddf[_convert.SERIES_COLUMN]
            return series.rename(rec.info.get("series_name"))
        return ddf

    def _batches(
        self,
        dataset: Any,
        schema: Any,
        keys: list[str],
        parts: list[Part],
        read_columns: list[str] | None,
        expr: Any,
        labels: Any,
    ) -> Iterator[tuple[Any, Any]]:
        """``(batch, positions)`` of the selected rows, one row group of one part at a time;
        ``positions`` (the rows' places in the version) only where a filter needs them."""
        if expr is not None and labels is not None:
            names = list(schema.names) if read_columns is None else read_columns
            yield from _selected(self.storage, dataset, keys, parts, names, expr, False)
            return
        for fragment in dataset.get_fragments(filter=expr):
            for row_group in fragment.split_by_row_group(filter=expr, schema=dataset.schema):
                batches = row_group.to_batches(
                    schema=dataset.schema,
                    columns=read_columns,
                    filter=expr,
                    batch_readahead=0,
                    fragment_readahead=0,
                    use_threads=False,
                )
                for batch in batches:
                    yield batch, None

    def _iter_chunks(
        self,
        rec: VersionRecord,
        schema: Any,
        batches: Iterator[tuple[Any, Any]],
        labels: Any,
        chunksize: int,
    ) -> Iterator[Any]:
        """Frames of ``chunksize`` rows from ``batches``, labelled as a whole read would."""
        import numpy as np
        import pyarrow as pa

        pending: list[Any] = []
        where: list[Any] = []
        buffered = 0
        offset = 0

        def emit() -> Any:
            nonlocal offset
            table = pa.Table.from_batches(pending, schema=pending[0].schema)
            table = table.replace_schema_metadata(schema.metadata)
            obj = _convert.from_table(table, rec.kind, rec.info, whole=False, schema=schema)
            if hasattr(obj, "index") and labels is not None:
                positions = np.concatenate(where) if where else None
                obj.index = (
                    labels[offset : offset + len(obj)] if positions is None else (labels[positions])
                )
            offset += table.num_rows
            return obj

        for batch, positions in batches:
            while batch.num_rows:
                take = min(chunksize - buffered, batch.num_rows)
                pending.append(batch.slice(0, take))
                if positions is not None:
                    where.append(positions[:take])
                    positions = positions[take:]
                buffered += take
                batch = batch.slice(take)
                if buffered == chunksize:
                    yield emit()
                    pending, where, buffered = [], [], 0
        if pending:
            yield emit()

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


def _with_index_columns(schema: Any, columns: list[str] | None) -> list[str] | None:
    """``columns`` and the stored index columns (None: every column)."""
    if columns is None:
        return None
    index = [c for c in pandas_index_columns(schema) if c in schema.names]
    return columns + [c for c in index if c not in columns]


#: the column that holds whether a row is selected, while reading rows with their positions
_SELECTED = "__omfs_selected__"


def _row_labels(kind: str, schema: Any, parts: list[Part]) -> Any:
    """The RangeIndex an unfiltered read of a frame or series stored with one gives (the
    stored range when the row count matches it, else 0..rows-1, as pyarrow does); None
    when the index is stored as columns (they carry the labels) or there is none."""
    import pandas as pd

    rng = pandas_range_index(schema)
    if rng is None or kind not in (_convert.KIND_FRAME, _convert.KIND_SERIES):
        return None
    rows = sum(p["rows"] for p in parts)
    stored = pd.RangeIndex(
        rng.get("start", 0), rng.get("stop", 0), rng.get("step", 1), name=rng.get("name")
    )
    return stored if len(stored) == rows else pd.RangeIndex(rows)


def _selected(
    storage: Any,
    dataset: Any,
    keys: list[str],
    parts: list[Part],
    names: list[str],
    expr: Any,
    threads: bool = True,
) -> Iterator[tuple[Any, Any]]:
    """``(batch, positions)``: the rows ``expr`` selects, part by part, with their places
    among all the version's rows (from the parts' row counts in the log and their row
    groups'). Parts and row groups whose statistics cannot match are still skipped; the
    filter is evaluated as a column of the read instead of dropping rows inside it."""
    import itertools

    import numpy as np
    import pyarrow.compute as pc

    rows = itertools.accumulate((p["rows"] for p in parts), initial=0)
    starts = dict(zip((storage.path(k) for k in keys), rows, strict=False))
    projection = {**{n: pc.field(n) for n in names}, _SELECTED: expr}
    for fragment in dataset.get_fragments(filter=expr):
        fragment.ensure_complete_metadata()
        groups = fragment.row_groups
        first = dict(
            zip(
                (g.id for g in groups),
                itertools.accumulate((g.num_rows for g in groups), initial=starts[fragment.path]),
                strict=False,
            )
        )
        read = dataset.schema  # dictionaries of numbers scan as their plain values
        subset = fragment.subset(filter=expr, schema=read)
        # streaming (no threads): one row group at a time, so a first chunk reads one
        pieces = [subset] if threads else subset.split_by_row_group(filter=expr, schema=read)
        quiet = {} if threads else {"batch_readahead": 0, "fragment_readahead": 0}
        for piece in pieces:
            spans = [np.arange(first[g.id], first[g.id] + g.num_rows) for g in piece.row_groups]
            positions = np.concatenate(spans) if spans else np.empty(0, np.int64)
            done = 0
            scan = piece.to_batches(schema=read, columns=projection, use_threads=threads, **quiet)
            for batch in scan:
                keep = batch.column(_SELECTED)
                where = pc.filter(positions[done : done + batch.num_rows], keep).to_numpy()
                done += batch.num_rows
                yield batch.filter(keep).select(names), where


def _lacks_columns(part: Part, schema: Any) -> bool:
    """True when ``part``'s statistics show it lacks columns of ``schema`` (a part written
    before an append added them; parts without statistics predate that)."""
    stats = part.get("stats") or {}
    return bool(stats) and any(n not in stats for n in schema.names)


def _read_parts_lazily(
    fs: Any, paths: list[str], schema: Any, columns: list[str] | None, dnf: list[Any]
) -> Any:
    """A Dask DataFrame of one partition per part, each read with the dataset's ``schema``
    (columns a part lacks read as null, which Dask's own reader refuses)."""
    import dask.dataframe as dd

    meta = _read_part(None, fs, schema, columns, [])
    return dd.from_map(_read_part, paths, fs=fs, schema=schema, columns=columns, dnf=dnf, meta=meta)


def _read_part(path: str | None, fs: Any, schema: Any, columns: Any, dnf: list[Any]) -> Any:
    """One part as pandas, read with ``schema`` (None: no rows, the frame's meta)."""
    import pyarrow.parquet as pq

    if path is None:
        table = schema.empty_table()
        if columns is not None:
            table = table.select(columns + pandas_index_columns(schema))
    else:
        table = pq.read_table(
            path,
            filesystem=fs,
            schema=schema,
            columns=columns,
            filters=dnf or None,
            use_pandas_metadata=True,
        )
    return table.to_pandas()


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
    schema = read_schema(schema)  # what the scan it filters reads
    floats = frozenset(f.name for f in schema if str(f.type) in ("float", "double", "halffloat"))
    types = {f.name: f.type for f in schema}
    return build_filter(filters, filter_kw, list(schema.names), floats, types)
