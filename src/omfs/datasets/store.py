"""The dataset store: versioned Parquet tables (and raw files) under one bucket."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable, Iterator
from typing import Any

from omfs._names import check_name
from omfs._storage import unique_name
from omfs._store import VersionedStore
from omfs.datasets import _convert
from omfs.datasets._filters import build_filter, keywords_to_dnf
from omfs.errors import IntegrityError, SchemaMismatchError
from omfs.metadata import Metadata

__all__ = ["DatasetStore"]

_RAW_CHUNK = 8 * 2**20


def _schema_to_text(schema: Any) -> str:
    return base64.b64encode(schema.serialize().to_pybytes()).decode("ascii")


def _schema_from_text(text: str) -> Any:
    import pyarrow as pa

    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))


def _plain_type(t: Any) -> Any:
    import pyarrow as pa

    return t.value_type if pa.types.is_dictionary(t) else t


def _is_null(t: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_null(t))


def _write_part(storage: Any, key: str, table: Any, row_group_size: int | None) -> dict[str, Any]:
    """Write one Parquet part file; module-level so Dask can run it on workers."""
    import pyarrow.parquet as pq

    options = {"row_group_size": row_group_size} if row_group_size else {}
    if storage.is_local:
        path = storage.path(key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        pq.write_table(table, path, **options)
        size = os.path.getsize(path)
    else:
        with storage.open(key, "wb") as f:
            pq.write_table(table, f, **options)
            size = f.tell()
    return {"file": key.rsplit("/", 1)[-1], "rows": table.num_rows, "size": size}


def _write_dask_partition(
    storage: Any, key: str, frame: Any, schema: Any, row_group_size: int | None
) -> dict[str, Any]:
    import pyarrow as pa

    table = pa.Table.from_pandas(frame, preserve_index=True)
    try:
        table = table.cast(schema)
    except (pa.ArrowInvalid, ValueError) as exc:
        raise SchemaMismatchError(
            f"A partition of the Dask DataFrame does not match its meta ({exc}); fix the "
            "partition dtypes, e.g. with ddf.astype(...)"
        ) from None
    return _write_part(storage, key, table, row_group_size)


class DatasetStore(VersionedStore):
    """Datasets of one bucket: ``put``, ``get``, ``list``, ``exists``, ``drop``, ``metadata``,
    ``versions``, ``promote``."""

    kind = "datasets"
    noun = "Dataset"

    # -- put --------------------------------------------------------------------------------
    def put(
        self,
        obj: Any,
        name: str,
        *,
        attributes: dict[str, Any] | None = None,
        append: bool = False,
        tag: str | None = None,
        row_group_size: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> Metadata:
        """Store ``obj`` as a new version of dataset ``name`` (``append=True`` adds rows).

        Returns the metadata of the version that was committed.
        """
        name = check_name(name)
        if tag is not None:
            check_name(tag, "tag")
        if isinstance(obj, str) and not os.path.isfile(obj):
            raise FileNotFoundError(
                f"Cannot put {obj!r} as dataset {name!r}: a string is read as the path of a "
                "local file, and no such file exists. Pass a DataFrame, bytes or a file object "
                "to store other data."
            )
        if isinstance(obj, str) or _convert.is_raw(obj):
            if append:
                raise TypeError(
                    f"Cannot append a raw file to dataset {name!r}: raw files are stored "
                    "whole. Put it without append=True to store a new version."
                )
            return self._put_raw(obj, name, attributes, tag, progress)
        numbers = self._version_numbers(name)
        expected = numbers[-1] if numbers else 0
        prev = self._latest(name, numbers) if append else None
        written: list[str] = []
        try:
            if _convert.is_dask(obj):
                parts, schema, kind, info = self._write_dask(obj, name, prev, row_group_size)
            else:
                keep_index = prev is not None and any(
                    c.startswith("__index_level_") for c in prev.info.get("columns", {})
                )
                table, kind, info = _convert.to_table(obj, name, preserve_index=keep_index)
                if prev is not None:
                    table = self._conform(name, table, kind, prev)
                parts = [
                    _write_part(
                        self.storage,
                        self._data_key(name, unique_name(".parquet")),
                        table,
                        row_group_size,
                    )
                ]
                schema = table.schema
            written = [p["file"] for p in parts]

            def build(latest: Metadata | None) -> Metadata:
                base_parts: list[dict[str, Any]] = []
                details = dict(info)
                if append and latest is not None:
                    self._check_compatible(name, schema, kind, latest)
                    base_parts = list(latest.info["parts"])
                    details = {
                        k: latest.info[k]
                        for k in ("shape", "dtype", "series_name", "index_freq", "source")
                        if k in latest.info
                    }
                    if kind == _convert.KIND_ARRAY:
                        rows = sum(p["rows"] for p in base_parts + parts)
                        details["shape"] = [rows, *latest.info["shape"][1:]]
                    details.pop("index_freq", None)  # appended rows rarely keep a frequency
                    if "categories" in latest.info or "categories" in info:
                        details["categories"] = _convert.merge_categories(
                            latest.info.get("categories", {}), info.get("categories", {})
                        )
                    stored_schema = latest.info["schema"]
                else:
                    stored_schema = _schema_to_text(schema)
                all_parts = base_parts + parts
                return Metadata(
                    name=name,
                    bucket=self.bucket,
                    store=self.kind,
                    kind=kind,
                    attributes=dict(
                        attributes
                        if attributes is not None
                        else (latest.attributes if append and latest else {})
                    ),
                    tag=tag,
                    context=self.storage.url,
                    info={
                        "operation": "append" if append and latest is not None else "put",
                        "rows": sum(p["rows"] for p in all_parts),
                        "bytes": sum(p["size"] for p in all_parts),
                        "columns": {f.name: str(f.type) for f in schema},
                        **details,
                        "parts": all_parts,
                        "schema": stored_schema,
                    },
                )

            return self._commit(name, build, retry=append, expected=None if append else expected)
        except BaseException:
            self.storage.delete(self._data_key(name, f) for f in written)
            self._forget_if_empty(name)
            raise

    def _write_dask(
        self, ddf: Any, name: str, prev: Metadata | None, row_group_size: int | None
    ) -> tuple[list[dict[str, Any]], Any, str, dict[str, Any]]:
        import dask
        import pyarrow as pa

        schema = pa.Schema.from_pandas(ddf._meta, preserve_index=True)
        if prev is not None:
            empty = self._conform(name, schema.empty_table(), _convert.KIND_FRAME, prev)
            schema = empty.schema
        keys = [self._data_key(name, unique_name(".parquet")) for _ in range(ddf.npartitions)]
        tasks = [
            dask.delayed(_write_dask_partition)(self.storage, key, part, schema, row_group_size)
            for key, part in zip(keys, ddf.to_delayed(), strict=True)
        ]
        try:
            parts = list(dask.compute(*tasks))
        except BaseException:
            self.storage.delete(keys)
            raise
        return parts, schema, _convert.KIND_FRAME, {"source": "dask"}

    def _check_compatible(self, name: str, schema: Any, kind: str, latest: Metadata) -> None:
        if latest.kind != kind:
            raise SchemaMismatchError(
                f"Cannot append a {kind} to dataset {name!r}, which holds a {latest.kind}. "
                "Append the same kind of object, or put() without append=True to replace it."
            )
        stored = _schema_from_text(latest.info["schema"])
        problems = []
        if list(stored.names) != list(schema.names):
            missing = [n for n in stored.names if n not in schema.names]
            extra = [n for n in schema.names if n not in stored.names]
            if missing or extra:
                problems.append(
                    f"the new data lacks columns {missing} and has extra columns {extra}"
                    if missing and extra
                    else f"the new data lacks columns {missing}"
                    if missing
                    else f"the new data has extra columns {extra}"
                )
        for field in schema:
            if field.name in stored.names and not problems:
                want = stored.field(field.name).type
                if _plain_type(want) != _plain_type(field.type) and not _is_null(field.type):
                    problems.append(
                        f"column {field.name!r} is {want} in the dataset but {field.type} in "
                        "the new data"
                    )
        if problems:
            raise SchemaMismatchError(
                f"Cannot append to dataset {name!r} in bucket {self.bucket!r}: "
                + "; ".join(problems)
                + ". Convert the new data to the dataset's schema, or put() without "
                "append=True to replace the dataset."
            )

    def _conform(self, name: str, table: Any, kind: str, prev: Metadata) -> Any:
        """Check ``table`` against the dataset's schema and cast it to exactly that schema."""
        self._check_compatible(name, table.schema, kind, prev)
        stored = _schema_from_text(prev.info["schema"])
        table = table.select(stored.names)
        try:
            return table.cast(stored)
        except (ValueError, TypeError) as exc:
            raise SchemaMismatchError(
                f"Cannot append to dataset {name!r}: the new data cannot be converted to the "
                f"dataset's schema ({exc})."
            ) from None

    def _put_raw(
        self,
        obj: Any,
        name: str,
        attributes: dict[str, Any] | None,
        tag: str | None,
        progress: Callable[[int], None] | None,
    ) -> Metadata:
        filename = None
        if isinstance(obj, str | os.PathLike):
            filename = os.path.basename(os.fspath(obj))
            source: Any = open(obj, "rb")  # noqa: SIM115 - closed below
        elif isinstance(obj, bytes | bytearray | memoryview):
            import io

            source = io.BytesIO(bytes(obj))
        else:
            source = obj
            filename = os.path.basename(str(getattr(obj, "name", ""))) or None
        numbers = self._version_numbers(name)
        key = self._data_key(name, unique_name(".bin"))
        digest, size = hashlib.sha256(), 0
        try:
            with self.storage.open(key, "wb") as out:
                while chunk := source.read(_RAW_CHUNK):
                    if isinstance(chunk, str):
                        chunk = chunk.encode()
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                    if progress:
                        progress(len(chunk))
            info = {
                "operation": "put",
                "filename": filename,
                "bytes": size,
                "sha256": digest.hexdigest(),
                "parts": [{"file": key.rsplit("/", 1)[-1], "rows": 0, "size": size}],
            }
            meta = Metadata(
                name=name,
                bucket=self.bucket,
                store=self.kind,
                kind=_convert.KIND_RAW,
                attributes=dict(attributes or {}),
                tag=tag,
                context=self.storage.url,
                info=info,
            )
            return self._commit(
                name, lambda _latest: meta, retry=False, expected=numbers[-1] if numbers else 0
            )
        except BaseException:
            self.storage.delete([key])
            self._forget_if_empty(name)
            raise
        finally:
            if isinstance(obj, str | os.PathLike | bytes | bytearray | memoryview):
                source.close()

    # -- get --------------------------------------------------------------------------------
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
        **filter_kw: Any,
    ) -> Any:
        """Read dataset ``name`` back as the kind it was stored as.

        ``columns`` and ``filters`` (DNF tuples, or keywords such as ``a__gt=1``) are pushed
        down into the Parquet read; ``lazy=True`` gives a Dask DataFrame; ``chunksize=N`` an
        iterator of frames of N rows. Raw files come back as bytes, or are written to
        ``local_path``.
        """
        meta = self._resolve(name, version)
        if meta.kind == _convert.KIND_RAW:
            if columns is not None or filters is not None or filter_kw or lazy:
                raise TypeError(
                    f"Dataset {meta.name!r} is a raw file: columns, filters and lazy do not "
                    "apply. Read it as bytes, with chunksize=, or into local_path=."
                )
            return self._get_raw(meta, chunksize, local_path, progress)
        if local_path is not None:
            raise TypeError("local_path= applies to raw files; use columns/filters for tables")
        schema = _schema_from_text(meta.info["schema"])
        paths = [
            self.storage.path(self._data_key(meta.name, p["file"])) for p in meta.info["parts"]
        ]
        names = list(schema.names)
        if columns is not None:
            columns = [columns] if isinstance(columns, str) else list(columns)
            unknown = [c for c in columns if c not in names]
            if unknown:
                raise KeyError(
                    f"Dataset {meta.name!r} has no columns {unknown}; it has "
                    f"{[n for n in names if not n.startswith('__index_level')]}"
                )
        if lazy:
            return self._get_lazy(meta, paths, columns, filters, filter_kw, names)
        expr = build_filter(filters, filter_kw, names)
        if chunksize is not None:
            if int(chunksize) < 1:
                raise ValueError(f"chunksize must be a positive number of rows, got {chunksize!r}")
            return self._iter_chunks(meta, schema, paths, columns, expr, int(chunksize))
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(
                paths[0] if len(paths) == 1 else paths,
                filesystem=self.storage.arrow_filesystem(),
                columns=columns,
                filters=expr,
                use_pandas_metadata=True,
                schema=schema,
            )
        except FileNotFoundError:
            for p in meta.info["parts"]:
                self._check_payload_present(meta, p["file"])
            raise
        return _convert.from_table(
            table, meta.kind, meta.info, whole=columns is None and expr is None
        )

    def _get_lazy(
        self,
        meta: Metadata,
        paths: list[str],
        columns: list[str] | None,
        filters: Any,
        filter_kw: dict[str, Any],
        names: list[str],
    ) -> Any:
        import dask.dataframe as dd

        if meta.kind not in (_convert.KIND_FRAME, _convert.KIND_SERIES, _convert.KIND_ARROW):
            raise TypeError(
                f"Dataset {meta.name!r} holds a {meta.kind}; lazy=True gives Dask DataFrames "
                "of tables only. Read it with lazy=False."
            )
        dnf = list(filters or [])
        if filter_kw:
            extra = keywords_to_dnf(filter_kw, names)
            if dnf and isinstance(dnf[0], list):
                dnf = [conj + extra for conj in dnf]
            else:
                dnf = dnf + extra
        ddf = dd.read_parquet(
            paths, filesystem=self.storage.fs, columns=columns, filters=dnf or None
        )
        if meta.kind == _convert.KIND_SERIES:
            series = ddf[_convert._SERIES_COLUMN]
            return series.rename(meta.info.get("series_name"))
        return ddf

    def _iter_chunks(
        self,
        meta: Metadata,
        schema: Any,
        paths: list[str],
        columns: list[str] | None,
        expr: Any,
        chunksize: int,
    ) -> Iterator[Any]:
        import pyarrow as pa
        import pyarrow.dataset as ds

        dataset = ds.dataset(
            paths, schema=schema, format="parquet", filesystem=self.storage.arrow_filesystem()
        )
        read_columns = None
        if columns is not None:
            index_columns = [
                c for c in _pandas_index_columns(schema) if c in schema.names and c not in columns
            ]
            read_columns = columns + index_columns
        pending: list[Any] = []
        buffered = 0
        offset = 0

        def emit(batches: list[Any]) -> Any:
            nonlocal offset
            table = pa.Table.from_batches(batches, schema=batches[0].schema)
            table = table.replace_schema_metadata(schema.metadata)
            obj = _convert.from_table(table, meta.kind, meta.info, whole=False)
            rng = _pandas_range_index(schema)
            if hasattr(obj, "index") and rng is not None:
                import pandas as pd

                if expr is None and len(meta.info["parts"]) == 1:
                    # unfiltered rows of one part: continue the stored range exactly
                    start, step = (
                        rng.get("start", 0) + offset * rng.get("step", 1),
                        rng.get("step", 1),
                    )
                    obj.index = pd.RangeIndex(
                        start, start + len(obj) * step, step, name=rng.get("name")
                    )
                else:  # as a whole read would number them
                    obj.index = pd.RangeIndex(offset, offset + len(obj))
            offset += table.num_rows
            return obj

        for batch in dataset.to_batches(columns=read_columns, filter=expr, batch_size=chunksize):
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
        meta: Metadata,
        chunksize: int | None,
        local_path: str | os.PathLike[str] | None,
        progress: Callable[[int], None] | None,
    ) -> Any:
        key = self._check_payload_present(meta, meta.info["parts"][0]["file"])
        if chunksize is not None:
            return self.storage.iter_chunks(key, int(chunksize))
        digest = hashlib.sha256()
        if local_path is None:
            data = self.storage.read_bytes(key)
            digest.update(data)
            self._verify(meta, digest.hexdigest())
            return data
        target = os.fspath(local_path)
        tmp = f"{target}.{unique_name('.part')}"
        try:
            with open(tmp, "wb") as out:
                for chunk in self.storage.iter_chunks(key):
                    digest.update(chunk)
                    out.write(chunk)
                    if progress:
                        progress(len(chunk))
            self._verify(meta, digest.hexdigest())
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return target

    def _verify(self, meta: Metadata, sha256: str) -> None:
        if sha256 != meta.info.get("sha256"):
            raise IntegrityError(
                f"The payload of dataset {meta.name!r} version {meta.version} does not match "
                "its recorded sha256: it was changed or truncated outside omfs."
            )

    def _payload_sizes(self, meta: Metadata) -> dict[str, int]:
        return {p["file"]: p["size"] for p in meta.info.get("parts", [])}

    def _renamed_payload(self, info: dict[str, Any], renamed: dict[str, str]) -> dict[str, Any]:
        return {**info, "parts": [{**p, "file": renamed[p["file"]]} for p in info["parts"]]}

    # -- promotion --------------------------------------------------------------------------
    def promote(self, name: str, other: DatasetStore, **kwargs: Any) -> Metadata:
        """Copy one version of ``name`` to ``other`` (another bucket or context) as a new
        version there, recording where it came from. See :func:`omfs.promotion.promote`."""
        from omfs.promotion import promote

        return promote(self, name, other, **kwargs)


def _pandas_meta(schema: Any) -> dict[str, Any]:
    import json

    raw = (schema.metadata or {}).get(b"pandas")
    return json.loads(raw) if raw else {}


def _pandas_index_columns(schema: Any) -> list[str]:
    return [c for c in _pandas_meta(schema).get("index_columns", []) if isinstance(c, str)]


def _pandas_range_index(schema: Any) -> dict[str, Any] | None:
    """The stored RangeIndex descriptor (start, stop, step, name), if the index is one."""
    index = _pandas_meta(schema).get("index_columns", [])
    if len(index) == 1 and isinstance(index[0], dict) and index[0].get("kind") == "range":
        return index[0]
    return None
