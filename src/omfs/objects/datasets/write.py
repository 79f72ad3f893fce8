"""Writing datasets: ``put`` of a table (pandas, NumPy, Arrow, a stream of record batches, a
Dask DataFrame) or of a raw file, as a new version or appended to the latest.

The payload is written first under fresh names; one commit then makes it visible. On any
failure the files written are removed and nothing of the write is visible.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import IO, Any

from omfs.errors import InvalidTypeError, SchemaMismatchError, UsageError
from omfs.names import check_name, check_tag
from omfs.objects.commits import leased
from omfs.objects.datasets import _convert
from omfs.objects.datasets._parts import write_part
from omfs.objects.datasets.schema import conform, schema_bytes
from omfs.objects.datasets.versions import DatasetVersions
from omfs.objects.metadata import Metadata, utcnow
from omfs.objects.records import Commit, Part, State, VersionRecord
from omfs.storage import Storage, unique_name

__all__ = ["DatasetWriter"]

_RAW_CHUNK = 8 * 2**20
#: a streamed put (a RecordBatchReader, e.g. a CSV file) writes a part per this much Arrow data
_STREAM_PART_BYTES = 64 * 2**20


@dataclass(frozen=True)
class _Written:
    """The parts a put wrote, with the schema, kind and store-specific details of the data."""

    parts: list[Part]
    schema: Any
    kind: str
    info: dict[str, Any]


class DatasetWriter(DatasetVersions):
    """``put`` of the dataset store."""

    @leased(1)
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
        new_columns: bool = False,
        lineage: dict[str, Any] | None = None,
    ) -> Metadata:
        """Store ``obj`` as a new version of dataset ``name`` (``append=True`` adds rows).

        ``new_columns=True`` (with ``append=True``, for DataFrames and Arrow tables) lets the
        rows add columns: earlier rows read them as null. Without it, an append whose data
        has columns the dataset lacks is refused. ``lineage`` records where the data came
        from (``om.sql(..., into=)`` names the query and the versions it read). Returns the
        metadata of the version that was committed.
        """
        name = check_name(name)
        if tag is not None:
            check_tag(tag)
        if new_columns and not append:
            raise UsageError(
                f"new_columns=True adds columns to the rows appended to dataset {name!r}; "
                "pass append=True too (a put without it replaces the columns anyway)."
            )
        if isinstance(obj, str) or _convert.is_raw(obj):
            self._check_raw_put(obj, name, append)
            return self._put_raw(obj, name, attributes, tag, progress)
        state = self._next_state(name)
        prev = self._appended_to(name, state) if append else None
        stored = self._schema(name, prev) if prev is not None else None
        written: list[str] = []
        try:
            new = self._write_table(obj, name, prev, stored, (row_group_size, new_columns))
            written = [p["file"] for p in new.parts]
            schema_id = self._schema_id(name, prev, stored, new.schema)
            # what the latest version must still hold for this append to go on top of it
            # (schemas are content-addressed: a racing first write of the same schema agrees)
            expected = prev.info.get("schema") if prev is not None else schema_id
            change = self._put_change(name, new, schema_id, expected, append, attributes, tag)
            change = _with_lineage(change, lineage)
            state = self.commit(
                name, change, retry=append, expected_next=None if append else state.next_version
            )
            return self.metadata_for(name, state.latest_record(), state.tags)
        except BaseException:
            self.storage.delete(self.data_key(name, f) for f in written)
            raise

    def _check_raw_put(self, obj: Any, name: str, append: bool) -> None:
        """Refuse a path that is no file, and an append of a raw file."""
        if isinstance(obj, str) and not os.path.isfile(obj):
            raise FileNotFoundError(
                f"Cannot put {obj!r} as dataset {name!r}: a string is read as the path of a "
                "local file, and no such file exists. Pass a DataFrame, bytes or a file object "
                "to store other data."
            )
        if append:
            raise InvalidTypeError(
                f"Cannot append a raw file to dataset {name!r}: raw files are stored whole.",
                hint="Put it without append=True to store a new version.",
                cli_hint="Put it without --append to store a new version.",
            )

    def _appended_to(self, name: str, state: State) -> VersionRecord | None:
        """The latest version an append goes on top of (None for a new dataset)."""
        prev = state.latest_record() if state.exists else None
        if prev is not None and prev.kind == _convert.KIND_RAW:
            raise SchemaMismatchError(
                f"Cannot append to dataset {name!r}: it holds a raw file.",
                hint="Put the data without append=True to store a new version.",
                cli_hint="Put the data without --append to store a new version.",
            )
        return prev

    def _write_table(
        self,
        obj: Any,
        name: str,
        prev: VersionRecord | None,
        stored: Any,
        how: tuple[int | None, bool],
    ) -> _Written:
        """Write ``obj`` as parts (conformed to ``stored``, the schema appended to); ``how``:
        the row group size, and whether the rows may add columns."""
        row_group_size, new_columns = how
        if _convert.is_dask(obj):
            return _Written(*self._write_dask(obj, name, stored, how))
        if _convert.is_stream(obj):
            parts, schema = self._write_stream(obj, name, prev, stored, how)
            return _Written(parts, schema, _convert.KIND_FRAME, {})
        keep_index = stored is not None and any(
            c.startswith("__index_level_") for c in stored.names
        )
        table, kind, info = _convert.to_table(obj, name, preserve_index=keep_index)
        if prev is not None:
            table = self._conform(name, table, kind, prev.kind, stored, new_columns)
        key = self.data_key(name, unique_name(".parquet"))
        return _Written(
            [write_part(self.storage, key, table, row_group_size)], table.schema, kind, info
        )

    def _schema_id(self, name: str, prev: VersionRecord | None, stored: Any, schema: Any) -> str:
        """The id of ``schema``: the appended version's when it is the same, else stored."""
        if prev is not None and "schema" in prev.info and schema.equals(stored):
            return str(prev.info["schema"])
        return self.object_log(name).write_schema(schema_bytes(schema))

    def _put_change(
        self,
        name: str,
        new: _Written,
        schema_id: str,
        expected: Any,
        append: bool,
        attributes: dict[str, Any] | None,
        tag: str | None,
    ) -> Callable[[State], Commit]:
        """The change a put commits: a version appended to the latest, or a new one."""

        def change(state: State) -> Commit:
            latest = state.latest_record() if state.exists else None
            if append and latest is not None:
                self._check_not_replaced(name, latest, expected, new.kind)
                details = self.appended_details(latest, new.kind, new.info, new.parts)
                parent: int | None = latest.version
                attrs = latest.attributes if attributes is None else attributes
                op = "append"
            else:
                details, parent, op = _totals(new.info, new.parts), None, "put"
                attrs = attributes or {}
            rec = VersionRecord(
                version=state.next_version,
                created=utcnow(),
                kind=new.kind,
                op=op,
                attributes=dict(attrs),
                tag=tag,
                info={**details, "schema": schema_id, "parent": parent, "add": new.parts},
            )
            return Commit(op=op, version=rec)

        return change

    def _check_not_replaced(
        self, name: str, latest: VersionRecord, expected: Any, kind: str
    ) -> None:
        if latest.info.get("schema") != expected or latest.kind != kind:
            raise SchemaMismatchError(
                f"Dataset {name!r} in bucket {self.bucket!r} was replaced (or given new "
                "columns) by another writer while this append was running; nothing was "
                "appended. Read the new version and append again."
            )

    def _write_stream(
        self, reader: Any, name: str, prev: Any, stored: Any, how: tuple[int | None, bool]
    ) -> tuple[list[Part], Any]:
        """Write a RecordBatchReader as parts of about ``_STREAM_PART_BYTES`` each, holding
        one part in memory at a time; nothing is left behind on failure."""
        import pyarrow as pa

        row_group_size, new_columns = how
        parts: list[Part] = []
        pending: list[Any] = []
        size = 0
        schema = reader.schema

        def flush() -> None:
            nonlocal pending, size, schema
            table = pa.Table.from_batches(pending, schema=reader.schema)
            if prev is not None:
                table = self._conform(
                    name, table, _convert.KIND_FRAME, prev.kind, stored, new_columns
                )
            schema = table.schema
            key = self.data_key(name, unique_name(".parquet"))
            parts.append(write_part(self.storage, key, table, row_group_size))
            pending, size = [], 0

        try:
            for batch in reader:
                pending.append(batch)
                size += batch.nbytes
                if size >= _STREAM_PART_BYTES:
                    flush()
            if pending or not parts:
                flush()
        except BaseException:
            self.storage.delete(self.data_key(name, p["file"]) for p in parts)
            raise
        return parts, schema

    def _write_dask(
        self, ddf: Any, name: str, stored: Any, how: tuple[int | None, bool]
    ) -> tuple[list[Part], Any, str, dict[str, Any]]:
        import pyarrow as pa
        from dask.base import compute
        from dask.delayed import delayed

        row_group_size, new_columns = how
        schema = pa.Schema.from_pandas(ddf._meta, preserve_index=True)
        if stored is not None:
            empty = self._conform(
                name,
                schema.empty_table(),
                _convert.KIND_FRAME,
                _convert.KIND_FRAME,
                stored,
                new_columns,
            )
            schema = empty.schema
        keys = [self.data_key(name, unique_name(".parquet")) for _ in range(ddf.npartitions)]
        tasks = [
            delayed(_write_dask_partition)(self.storage, key, part, schema, row_group_size)
            for key, part in zip(keys, ddf.to_delayed(), strict=True)
        ]
        try:
            parts = list(compute(*tasks))
        except BaseException:
            self.storage.delete(keys)
            raise
        return parts, schema, _convert.KIND_FRAME, {"source": "dask"}

    def _conform(
        self,
        name: str,
        table: Any,
        kind: str,
        stored_kind: str,
        stored: Any,
        new_columns: bool = False,
    ) -> Any:
        """``table`` checked against the dataset's schema and cast to it (``new_columns``:
        the columns it adds are added to the schema)."""
        if new_columns and kind not in (_convert.KIND_FRAME, _convert.KIND_ARROW):
            raise InvalidTypeError(
                f"Cannot add columns to dataset {name!r}, which holds a {kind}: new_columns "
                "applies to DataFrames and Arrow tables."
            )
        return conform(name, self.bucket, table, kind, stored_kind, stored, new_columns)

    # -- raw files ----------------------------------------------------------------------------
    def _put_raw(
        self,
        obj: Any,
        name: str,
        attributes: dict[str, Any] | None,
        tag: str | None,
        progress: Callable[[int], None] | None,
    ) -> Metadata:
        """Store a file, bytes or a binary file object whole, as a new version."""
        source, filename, owned = _raw_source(obj)
        try:
            state = self._next_state(name)
            key = self.data_key(name, unique_name(".bin"))
            try:
                sha256, size = _copy_raw(self.storage, source, key, progress)
                info = {
                    "filename": filename,
                    "rows": 0,
                    "bytes": size,
                    "parts": 1,
                    "sha256": sha256,
                    "parent": None,
                    "add": [{"file": key.rsplit("/", 1)[-1], "rows": 0, "size": size}],
                }
                change = _raw_change(info, attributes, tag)
                state = self.commit(name, change, retry=False, expected_next=state.next_version)
                return self.metadata_for(name, state.latest_record(), state.tags)
            except BaseException:
                self.storage.delete([key])
                raise
        finally:
            if owned:
                source.close()


def _raw_source(obj: Any) -> tuple[IO[Any], str | None, bool]:
    """The stream to read a raw put from, the file name to record, and whether the put
    opened it (and so closes it)."""
    if isinstance(obj, str | os.PathLike):
        return open(obj, "rb"), os.path.basename(os.fspath(obj)), True
    if isinstance(obj, bytes | bytearray | memoryview):
        return io.BytesIO(bytes(obj)), None, True
    return obj, os.path.basename(str(getattr(obj, "name", ""))) or None, False


def _copy_raw(
    storage: Storage, source: IO[Any], key: str, progress: Callable[[int], None] | None
) -> tuple[str, int]:
    """Copy ``source`` to ``key`` in chunks; its sha256 and size."""
    digest, size = hashlib.sha256(), 0
    with storage.open(key, "wb") as out:
        while chunk := source.read(_RAW_CHUNK):
            if isinstance(chunk, str):
                chunk = chunk.encode()
            digest.update(chunk)
            out.write(chunk)
            size += len(chunk)
            if progress:
                progress(len(chunk))
    return digest.hexdigest(), size


def _raw_change(
    info: dict[str, Any], attributes: dict[str, Any] | None, tag: str | None
) -> Callable[[State], Commit]:
    def change(state: State) -> Commit:
        rec = VersionRecord(
            version=state.next_version,
            created=utcnow(),
            kind=_convert.KIND_RAW,
            op="put",
            attributes=dict(attributes or {}),
            tag=tag,
            info=info,
        )
        return Commit(op="put", version=rec)

    return change


def _totals(info: dict[str, Any], parts: list[Part]) -> dict[str, Any]:
    """``info`` with the rows, bytes and part count of a replacing put."""
    details = dict(info)
    details["rows"] = sum(p["rows"] for p in parts)
    details["bytes"] = sum(p["size"] for p in parts)
    details["parts"] = len(parts)
    return details


def _write_dask_partition(
    storage: Any, key: str, frame: Any, schema: Any, row_group_size: int | None
) -> Part:
    import pyarrow as pa

    table = pa.Table.from_pandas(frame, preserve_index=True)
    try:
        if set(table.schema.names) == set(schema.names):
            table = table.select(schema.names)  # the dataset's column order
        table = table.cast(schema)
    except (pa.ArrowInvalid, ValueError) as exc:
        raise SchemaMismatchError(
            f"A partition of the Dask DataFrame does not match its meta ({exc}); fix the "
            "partition dtypes, e.g. with ddf.astype(...)"
        ) from None
    return write_part(storage, key, table, row_group_size)


def _with_lineage(
    change: Callable[[State], Commit], lineage: dict[str, Any] | None
) -> Callable[[State], Commit]:
    """``change``, its new version recording ``lineage`` (where given)."""
    if not lineage:
        return change

    def with_lineage(state: State) -> Commit:
        commit = change(state)
        assert commit.version is not None  # a put always adds a version
        return replace(commit, version=replace(commit.version, lineage=dict(lineage)))

    return with_lineage
