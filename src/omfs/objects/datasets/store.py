"""The dataset store: versioned Parquet tables (and raw files) under one bucket.

A version's ``info`` in the log holds the parts it adds (``add``: file, rows, size and
per-column statistics), the version it appends to (``parent``, None for a replacing put),
the id of its Arrow schema (stored once per object, named by content), and running totals.
The part list of a version is its parent's parts plus its own: an append records only the
part it adds, whatever the history.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterator
from typing import Any

from omfs.errors import (
    CommitConflictError,
    IntegrityError,
    InvalidTypeError,
    SchemaMismatchError,
    UnknownColumnError,
    UsageError,
)
from omfs.names import check_name, check_tag
from omfs.objects.datasets import _convert
from omfs.objects.datasets._filters import build_filter, keywords_to_dnf
from omfs.objects.datasets._parts import arrow_dataset, damaged_part, validate_part, write_part
from omfs.objects.log import Commit, State, VersionRecord, _Corrupt, _dict, _int, _list
from omfs.objects.metadata import Metadata
from omfs.objects.versioned import VersionedStore, leased
from omfs.storage import unique_name

__all__ = ["DatasetStore"]

_RAW_CHUNK = 8 * 2**20
#: a streamed put (a RecordBatchReader, e.g. a CSV file) writes a part per this much Arrow data
_STREAM_PART_BYTES = 64 * 2**20
#: ``compact()`` merges parts into files of about this size.
COMPACT_TARGET = 128 * 2**20
_SCHEMA_ID = re.compile(r"[0-9a-f]{32}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_schemas: dict[bytes, Any] = {}


def _schema_bytes(schema: Any) -> bytes:
    return schema.serialize().to_pybytes()


def _schema_from_bytes(data: bytes) -> Any:
    import pyarrow as pa

    schema = _schemas.get(data)
    if schema is None:
        schema = pa.ipc.read_schema(pa.py_buffer(data))
        if len(_schemas) > 64:
            _schemas.clear()
        _schemas[data] = schema
    return schema


def _plain_type(t: Any) -> Any:
    import pyarrow as pa

    return t.value_type if pa.types.is_dictionary(t) else t


def _is_null(t: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_null(t))


def _widened(stored: Any, new: Any) -> Any:
    """``stored`` with each all-null column given the new data's type for it."""
    import pyarrow as pa

    fields = []
    for f in stored:
        have = new.field(f.name).type if f.name in new.names else None
        if _is_null(f.type) and have is not None and not _is_null(have):
            fields.append(f.with_type(have))
        else:
            fields.append(f)
    if all(a.type == b.type for a, b in zip(fields, stored, strict=True)):
        return stored
    return pa.schema(fields, metadata=stored.metadata)


def _assignable(want: Any, have: Any) -> bool:
    """True when values of Arrow type ``have`` may be appended to a column of type ``want``
    (the cast then checks each value: an int column takes floats only if they are whole)."""
    import pyarrow as pa

    if _is_null(have) or _is_null(want):
        return True
    w, h = _plain_type(want), _plain_type(have)
    if w == h:
        return True
    numeric = (pa.types.is_integer, pa.types.is_floating)
    if any(f(w) for f in numeric) and any(f(h) for f in numeric):
        return True
    text = (pa.types.is_string, pa.types.is_large_string)
    if any(f(w) for f in text) and any(f(h) for f in text):
        return True
    temporal = (pa.types.is_timestamp, pa.types.is_date)
    return any(f(w) for f in temporal) and any(f(h) for f in temporal)


_PANDAS_NAMES = {"int64": "Int64", "double": "float64", "string": "string", "bool": "boolean"}


def _pandas_name(t: Any) -> str:
    text = str(_plain_type(t))
    if text.startswith("timestamp"):
        return "datetime64[ns]"
    return _PANDAS_NAMES.get(text, text)


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
    return write_part(storage, key, table, row_group_size)


def _merged_stats(parts: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """The statistics of parts written as one: min of mins, max of maxes, sum of nulls."""
    out: dict[str, list[Any]] = {}
    for column in parts[0].get("stats", {}):
        values = [p.get("stats", {}).get(column) for p in parts]
        if any(v is None for v in values):
            continue
        nulls = sum(v[2] for v in values)
        bounds = [v for v in values if v[0] is not None]
        if len(bounds) < len([p for p, v in zip(parts, values, strict=True) if v[2] < p["rows"]]):
            out[column] = [None, None, nulls]
            continue
        try:
            lo = min(v[0] for v in bounds) if bounds else None
            hi = max(v[1] for v in bounds) if bounds else None
        except TypeError:
            lo = hi = None
        out[column] = [lo, hi, nulls]
    return out


class DatasetStore(VersionedStore):
    """Datasets of one bucket: ``put``, ``get``, ``list``, ``exists``, ``drop``, ``metadata``,
    ``versions``, ``compact``, ``promote``."""

    kind = "datasets"
    noun = "Dataset"

    # -- the log's view of a version --------------------------------------------------------
    def validate_info(self, info: dict[str, Any], kind: str) -> None:
        add = _list(info.get("add"), "add")
        for part in add:
            validate_part(part)
        if kind == _convert.KIND_RAW:
            if len(add) != 1 or not isinstance(info.get("sha256"), str):
                raise _Corrupt("a raw file has exactly one part and a sha256")
        elif "schema" not in info and "schema_inline" not in info:
            raise _Corrupt("a table version names its schema")
        parent = info.get("parent")
        if parent is not None:
            _int(parent, "parent")
        for key in ("rows", "bytes", "parts"):
            if key in info:
                _int(info[key], key, 0)
        schema = info.get("schema")
        if schema is not None and not (isinstance(schema, str) and _SCHEMA_ID.fullmatch(schema)):
            raise _Corrupt(f"the schema id {str(schema)[:40]!r} is not 32 hex digits")
        if "schema_inline" in info and not isinstance(info["schema_inline"], str):
            raise _Corrupt("schema_inline must be a string")
        sha = info.get("sha256")
        if sha is not None and not (isinstance(sha, str) and _SHA256.fullmatch(sha)):
            raise _Corrupt("sha256 must be 64 hex digits")
        if "shape" in info:
            shape = _list(info["shape"], "shape")
            for n in shape:
                _int(n, "a dimension", 0)
        for key in ("dtype", "index_freq", "source", "filename"):
            if info.get(key) is not None and not isinstance(info[key], str):
                raise _Corrupt(f"{key} must be a string")
        _dict(info.get("categories"), "categories")

    def _public_info(self, name: str, rec: VersionRecord) -> dict[str, Any]:
        info = {k: v for k, v in rec.info.items() if k not in ("add", "schema_inline", "parent")}
        if rec.kind != _convert.KIND_RAW and rec.dropped is None:
            schema = self._schema(name, rec)
            info["columns"] = {f.name: str(f.type) for f in schema}
        return info

    def _schema(self, name: str, rec: VersionRecord) -> Any:
        inline = rec.info.get("schema_inline")
        if inline is not None:
            import base64

            return _schema_from_bytes(base64.b64decode(inline))
        return _schema_from_bytes(self.object_log(name).read_schema(rec.info["schema"]))

    def _parts_of(self, name: str, state: State, rec: VersionRecord) -> list[dict[str, Any]]:
        """Every part version ``rec`` reads, oldest first (its parents' parts, then its own)."""
        chain = [rec]
        while chain[-1].info.get("parent") is not None:
            parent = chain[-1].info["parent"]
            if parent >= chain[-1].version:
                raise IntegrityError(
                    f"The log of {self._where(name)} is corrupt: version {chain[-1].version} "
                    f"names version {parent} as its parent. Run 'om fsck'."
                )
            if parent not in state.records:
                if not state.complete:
                    state = self.object_log(name).full(state)
                    continue
                raise IntegrityError(
                    f"The log of {self._where(name)} is corrupt: version {chain[-1].version} "
                    f"appends to version {parent}, which it does not hold. Run 'om fsck'."
                )
            chain.append(state.records[parent])
        return [part for r in reversed(chain) for part in r.info.get("add") or []]

    def own_files(self, rec: VersionRecord) -> list[str]:
        return [p["file"] for p in rec.info.get("add") or []]

    def version_files(self, state: State, rec: VersionRecord) -> list[str]:
        return [p["file"] for p in self._parts_of("", state, rec)]

    def parts(self, name: str, *, version: int | str | None = None) -> list[dict[str, Any]]:
        """The part files of a version: file, rows, size and per-column [min, max, nulls]."""
        base, rec, state = self.select(name, version)
        return [dict(p) for p in self._parts_of(base, state, rec)]

    def payload_sizes(self, meta: Metadata) -> dict[str, int]:
        return {p["file"]: p["size"] for p in self.parts(meta.name, version=meta.version)}

    def export_version(
        self, name: str, rec: VersionRecord, state: State
    ) -> tuple[dict[str, Any], dict[str, int]]:
        import base64

        parts = self._parts_of(name, state, rec)
        info = {k: v for k, v in rec.info.items() if k not in ("add", "parent", "schema")}
        info.update(parent=None, add=parts)
        if rec.kind != _convert.KIND_RAW:
            info["schema_inline"] = base64.b64encode(
                _schema_bytes(self._schema(name, rec))
            ).decode()
        return info, {p["file"]: p["size"] for p in parts}

    def import_info(
        self, name: str, kind: str, info: dict[str, Any], renamed: dict[str, str], created: str
    ) -> dict[str, Any]:
        import base64

        info = {**info, "add": [{**p, "file": renamed[p["file"]]} for p in info["add"]]}
        inline = info.pop("schema_inline", None)
        if inline is not None:
            info["schema"] = self.object_log(name).write_schema(base64.b64decode(inline))
        return info

    def _legacy_info(self, name: str, info: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in info.items() if k not in ("parts", "schema", "columns")}
        parts = info.get("parts") or []
        out["add"] = [{"file": p["file"], "rows": p["rows"], "size": p["size"]} for p in parts]
        out["parent"] = None
        out["parts"] = len(parts)
        out.setdefault("rows", sum(p["rows"] for p in parts))
        out.setdefault("bytes", sum(p["size"] for p in parts))
        if info.get("schema"):
            out["schema_inline"] = info["schema"]
        return out

    def _upgrade_record(self, name: str, rec: VersionRecord) -> VersionRecord:
        import base64
        from dataclasses import replace

        info = dict(rec.info)
        inline = info.pop("schema_inline", None)
        if inline is not None:
            info["schema"] = self.object_log(name).write_schema(base64.b64decode(inline))
        return replace(rec, info=info)

    def _check_version(self, name: str, state: State, rec: VersionRecord) -> list[str]:
        problems = []
        where = f"dataset {name!r} version {rec.version}"
        try:
            parts = self._parts_of(name, state, rec)
            if rec.kind != _convert.KIND_RAW:
                self._schema(name, rec)
        except (IntegrityError, FileNotFoundError) as exc:
            return [f"{where}: {exc}"]
        for part in parts:
            key = self.data_key(name, part["file"])
            try:
                size = self.storage.size(key)
            except FileNotFoundError:
                problems.append(f"{where}: part {part['file']} is missing")
                continue
            if size != part["size"]:
                problems.append(
                    f"{where}: part {part['file']} has {size} bytes, the log says {part['size']}"
                )
            elif part.get("sha256") and _sha256_of(self.storage, key) != part["sha256"]:
                problems.append(f"{where}: part {part['file']} does not match its sha256")
        if rec.kind == _convert.KIND_RAW and not problems and parts:
            digest = hashlib.sha256()
            for chunk in self.storage.iter_chunks(self.data_key(name, parts[0]["file"])):
                digest.update(chunk)
            if digest.hexdigest() != rec.info.get("sha256"):
                problems.append(f"{where}: the raw payload does not match its sha256")
        return problems

    # -- put --------------------------------------------------------------------------------
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
    ) -> Metadata:
        """Store ``obj`` as a new version of dataset ``name`` (``append=True`` adds rows).

        Returns the metadata of the version that was committed.
        """
        name = check_name(name)
        if tag is not None:
            check_tag(tag)
        if isinstance(obj, str) and not os.path.isfile(obj):
            raise FileNotFoundError(
                f"Cannot put {obj!r} as dataset {name!r}: a string is read as the path of a "
                "local file, and no such file exists. Pass a DataFrame, bytes or a file object "
                "to store other data."
            )
        if isinstance(obj, str) or _convert.is_raw(obj):
            if append:
                raise InvalidTypeError(
                    f"Cannot append a raw file to dataset {name!r}: raw files are stored whole.",
                    hint="Put it without append=True to store a new version.",
                    cli_hint="Put it without --append to store a new version.",
                )
            return self._put_raw(obj, name, attributes, tag, progress)
        state = self._next_state(name)
        prev = state.records[state.latest] if append and state.exists else None  # type: ignore[index]
        if prev is not None and prev.kind == _convert.KIND_RAW:
            raise SchemaMismatchError(
                f"Cannot append to dataset {name!r}: it holds a raw file.",
                hint="Put the data without append=True to store a new version.",
                cli_hint="Put the data without --append to store a new version.",
            )
        stored = self._schema(name, prev) if prev is not None else None
        parts: list[dict[str, Any]] = []
        written: list[str] = []
        try:
            if _convert.is_dask(obj):
                parts, schema, kind, info = self._write_dask(obj, name, stored, row_group_size)
            elif _convert.is_stream(obj):
                parts, schema = self._write_stream(obj, name, prev, stored, row_group_size)
                kind, info = _convert.KIND_FRAME, {}
            else:
                keep_index = stored is not None and any(
                    c.startswith("__index_level_") for c in stored.names
                )
                table, kind, info = _convert.to_table(obj, name, preserve_index=keep_index)
                if prev is not None:
                    table = self._conform(name, table, kind, prev.kind, stored)
                parts = [
                    write_part(
                        self.storage,
                        self.data_key(name, unique_name(".parquet")),
                        table,
                        row_group_size,
                    )
                ]
                schema = table.schema
            written = [p["file"] for p in parts]
            schema_id = (
                prev.info.get("schema")
                if prev is not None and "schema" in prev.info and schema.equals(stored)
                else self.object_log(name).write_schema(_schema_bytes(schema))
            )
            # what the latest version must still hold for this append to go on top of it
            # (schemas are content-addressed: a racing first write of the same schema agrees)
            expected = prev.info.get("schema") if prev is not None else schema_id

            def change(state: State) -> Commit:
                latest = state.records[state.latest] if state.exists else None  # type: ignore[index]
                if append and latest is not None:
                    if latest.info.get("schema") != expected or latest.kind != kind:
                        raise SchemaMismatchError(
                            f"Dataset {name!r} in bucket {self.bucket!r} was replaced by "
                            "another writer while this append was running; nothing was "
                            "appended. Read the new version and append again."
                        )
                    details = self.appended_details(latest, kind, info, parts)
                    parent: int | None = latest.version
                    attrs = latest.attributes if attributes is None else attributes
                    op = "append"
                else:
                    details, parent, op = dict(info), None, "put"
                    attrs = attributes or {}
                    details["rows"] = sum(p["rows"] for p in parts)
                    details["bytes"] = sum(p["size"] for p in parts)
                    details["parts"] = len(parts)
                rec = VersionRecord(
                    version=state.next_version,
                    created=_now(),
                    kind=kind,
                    op=op,
                    attributes=dict(attrs),
                    tag=tag,
                    info={**details, "schema": schema_id, "parent": parent, "add": parts},
                )
                return Commit(op=op, version=rec)

            state = self.commit(
                name, change, retry=append, expected_next=None if append else state.next_version
            )
            return self.metadata_for(name, state.records[state.latest])  # type: ignore[index]
        except BaseException:
            self.storage.delete(self.data_key(name, f) for f in written)
            raise

    def _write_stream(
        self, reader: Any, name: str, prev: Any, stored: Any, row_group_size: int | None
    ) -> tuple[list[dict[str, Any]], Any]:
        """Write a RecordBatchReader as parts of about ``_STREAM_PART_BYTES`` each, holding
        one part in memory at a time; nothing is left behind on failure."""
        import pyarrow as pa

        parts: list[dict[str, Any]] = []
        pending: list[Any] = []
        size = 0
        schema = reader.schema

        def flush() -> None:
            nonlocal pending, size, schema
            table = pa.Table.from_batches(pending, schema=reader.schema)
            if prev is not None:
                table = self._conform(name, table, _convert.KIND_FRAME, prev.kind, stored)
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

    def appended_details(
        self, latest: VersionRecord, kind: str, info: dict[str, Any], parts: list[dict[str, Any]]
    ) -> dict[str, Any]:
        keep = ("shape", "dtype", "series_name", "source", "categories")
        details = {k: latest.info[k] for k in keep if k in latest.info}
        rows = sum(p["rows"] for p in parts)
        details["rows"] = latest.info.get("rows", 0) + rows
        details["bytes"] = latest.info.get("bytes", 0) + sum(p["size"] for p in parts)
        details["parts"] = latest.info.get("parts", 0) + len(parts)
        if kind == _convert.KIND_ARRAY and "shape" in details:
            details["shape"] = [details["rows"], *details["shape"][1:]]
        if "categories" in latest.info or "categories" in info:
            details["categories"] = _convert.merge_categories(
                latest.info.get("categories", {}), info.get("categories", {})
            )
        return details  # an index freq rarely survives an append: not carried over

    def _write_dask(
        self, ddf: Any, name: str, stored: Any, row_group_size: int | None
    ) -> tuple[list[dict[str, Any]], Any, str, dict[str, Any]]:
        import dask
        import pyarrow as pa

        schema = pa.Schema.from_pandas(ddf._meta, preserve_index=True)
        if stored is not None:
            empty = self._conform(
                name, schema.empty_table(), _convert.KIND_FRAME, _convert.KIND_FRAME, stored
            )
            schema = empty.schema
        keys = [self.data_key(name, unique_name(".parquet")) for _ in range(ddf.npartitions)]
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

    def _check_compatible(
        self, name: str, schema: Any, kind: str, stored_kind: str, stored: Any
    ) -> None:
        """Refuse data whose kind, columns or types differ from the dataset's (O(columns))."""
        if stored_kind != kind:
            raise SchemaMismatchError(
                f"Cannot append a {kind} to dataset {name!r}, which holds a {stored_kind}.",
                hint="Append the same kind of object, or put() without append=True to replace it.",
                cli_hint="Append the same kind of object, or put without --append to replace it.",
            )
        want = {f.name: f.type for f in stored}
        have = {f.name: f.type for f in schema}
        problems = []
        missing = [n for n in want if n not in have]
        extra = [n for n in have if n not in want]
        if missing and extra:
            problems.append(f"the new data lacks columns {missing} and has extra columns {extra}")
        elif missing:
            problems.append(f"the new data lacks columns {missing}")
        elif extra:
            problems.append(f"the new data has extra columns {extra}")
        else:
            for column, t in have.items():
                if not _assignable(want[column], t):
                    kind_name = _pandas_name(want[column])
                    raise SchemaMismatchError(
                        f"Cannot append to dataset {name!r} in bucket {self.bucket!r}: column "
                        f"{column!r} is {_plain_type(want[column])} in the dataset but {t} in "
                        "the new data.",
                        hint=f"Convert it: df.astype({{{column!r}: {kind_name!r}}}) in Python, "
                        f"or --dtype {column}={kind_name} with `om datasets put`; or put "
                        "without append=True to replace the dataset.",
                        cli_hint=f"Convert it with --dtype {column}={kind_name}, or put without "
                        "--append to replace the dataset.",
                    )
        if problems:
            raise SchemaMismatchError(
                f"Cannot append to dataset {name!r} in bucket {self.bucket!r}: "
                + "; ".join(problems)
                + ".",
                hint="Convert the new data to the dataset's schema, or put() without "
                "append=True to replace the dataset.",
                cli_hint="Convert the new data to the dataset's schema, or put without --append "
                "to replace the dataset.",
            )

    def _conform(self, name: str, table: Any, kind: str, stored_kind: str, stored: Any) -> Any:
        """Check ``table`` against the dataset's schema and cast it to that schema, widened
        where the dataset had only nulls so far (an all-null column takes the new type)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        self._check_compatible(name, table.schema, kind, stored_kind, stored)
        if table.schema.names != stored.names:
            table = table.select(stored.names)
        target = _widened(stored, table.schema)
        try:
            return table.cast(target)
        except (ValueError, TypeError, pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
        for f in target:  # which column, and why
            try:
                pc.cast(table.column(f.name), f.type, safe=True)
            except (ValueError, TypeError, pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                detail = " ".join(str(exc).split())[:160]
                raise SchemaMismatchError(
                    f"Cannot append to dataset {name!r}: column {f.name!r} is "
                    f"{_plain_type(f.type)} in the dataset, and the new "
                    f"{table.schema.field(f.name).type} values cannot be converted without "
                    f"loss ({detail}).",
                    hint="Round or convert them first (e.g. "
                    f"df[{f.name!r}].round().astype({_pandas_name(f.type)!r})), or put without "
                    "append=True to replace the dataset with the new type.",
                    cli_hint="Round or convert them first, or put without --append to replace "
                    "the dataset with the new type.",
                ) from None
        raise SchemaMismatchError(
            f"Cannot append to dataset {name!r}: the new data cannot be converted to the "
            "dataset's schema."
        )

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
        state = self._next_state(name)
        key = self.data_key(name, unique_name(".bin"))
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
                "filename": filename,
                "rows": 0,
                "bytes": size,
                "parts": 1,
                "sha256": digest.hexdigest(),
                "parent": None,
                "add": [{"file": key.rsplit("/", 1)[-1], "rows": 0, "size": size}],
            }

            def change(state: State) -> Commit:
                rec = VersionRecord(
                    version=state.next_version,
                    created=_now(),
                    kind=_convert.KIND_RAW,
                    op="put",
                    attributes=dict(attributes or {}),
                    tag=tag,
                    info=info,
                )
                return Commit(op="put", version=rec)

            state = self.commit(name, change, retry=False, expected_next=state.next_version)
            return self.metadata_for(name, state.records[state.latest])  # type: ignore[index]
        except BaseException:
            self.storage.delete([key])
            raise
        finally:
            if isinstance(obj, str | os.PathLike | bytes | bytearray | memoryview):
                source.close()

    # -- compact ------------------------------------------------------------------------------
    @leased(0)
    def compact(self, name: str, *, target_size: int = COMPACT_TARGET) -> Metadata:
        """Rewrite the latest version's many small parts into few of about ``target_size``
        bytes, as a new version with the same rows, order and dtypes. Older versions stay
        readable; appends committed meanwhile are kept on top. Returns the new version's
        metadata (the latest unchanged when there is nothing to merge)."""
        base, rec, state = self.select(name, full=True)
        if rec.kind == _convert.KIND_RAW:
            raise InvalidTypeError(
                f"Dataset {base!r} is a raw file: there are no parts to compact."
            )
        parts = self._parts_of(base, state, rec)
        groups: list[list[dict[str, Any]]] = []
        for part in parts:
            if groups and sum(p["size"] for p in groups[-1]) + part["size"] <= target_size:
                groups[-1].append(part)
            else:
                groups.append([part])
        if all(len(g) == 1 for g in groups):
            return self.metadata_for(base, rec)
        schema = self._schema(base, rec)
        new_parts: list[dict[str, Any]] = []
        written: list[str] = []
        try:
            for group in groups:
                if len(group) == 1:
                    new_parts.append(group[0])
                    continue
                merged = self._merge_parts(base, group, schema)
                written.append(merged["file"])
                new_parts.append(merged)

            def change(state: State) -> Commit:
                latest = state.records[state.latest]  # type: ignore[index]
                now = self._parts_of(base, state, latest)
                if [p["file"] for p in now[: len(parts)]] != [p["file"] for p in parts] or (
                    latest.info.get("schema") != rec.info.get("schema")
                ):
                    raise CommitConflictError(
                        f"Dataset {base!r} in bucket {self.bucket!r} was replaced while it was "
                        "being compacted; nothing was changed. Compact it again."
                    )
                add = new_parts + now[len(parts) :]
                info = {k: v for k, v in latest.info.items() if k not in ("add", "parent")}
                info.update(parts=len(add), bytes=sum(p["size"] for p in add))
                new = VersionRecord(
                    version=state.next_version,
                    created=_now(),
                    kind=latest.kind,
                    op="compact",
                    attributes=dict(latest.attributes),
                    info={**info, "parent": None, "add": add},
                )
                return Commit(op="compact", version=new)

            state = self.commit(base, change, retry=True, full=True)
            return self.metadata_for(base, state.records[state.latest])  # type: ignore[index]
        except BaseException:
            self.storage.delete(self.data_key(base, f) for f in written)
            raise

    def _merge_parts(self, name: str, group: list[dict[str, Any]], schema: Any) -> dict[str, Any]:
        """Write the rows of ``group`` as one part, one row group at a time."""
        import pyarrow.parquet as pq

        from omfs.storage import HashingWriter

        key = self.data_key(name, unique_name(".parquet"))
        with self.storage.open(key, "wb") as f:
            out = HashingWriter(f)  # its sha256 as it is written
            with pq.ParquetWriter(out, schema) as writer:
                rows = self._copy_rows(name, group, schema, writer)
        return {
            "file": key.rsplit("/", 1)[-1],
            "rows": rows,
            "size": out.size,
            "sha256": out.hasher.hexdigest(),
            "stats": _merged_stats(group),
        }

    def _copy_rows(self, name: str, group: list[dict[str, Any]], schema: Any, writer: Any) -> int:
        """Write the rows of the parts of ``group`` to ``writer``, one row group at a time."""
        import pyarrow.parquet as pq

        rows = 0
        for part in group:
            with self.storage.open(self.data_key(name, part["file"]), "rb") as f:
                reader = pq.ParquetFile(f)
                for i in range(reader.num_row_groups):
                    table = reader.read_row_group(i).cast(schema)
                    writer.write_table(table)
                    rows += table.num_rows
        return rows

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
        parts = self._parts_of(base, state, rec)
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
        names = list(schema.names)
        if columns is not None:
            columns = [columns] if isinstance(columns, str) else list(columns)
            unknown = [c for c in columns if c not in set(names)]
            if unknown:
                raise UnknownColumnError(
                    f"Dataset {base!r} has no columns {unknown}; it has "
                    f"{[n for n in names if not n.startswith('__index_level')]}"
                )
        floats = frozenset(
            f.name for f in schema if str(f.type) in ("float", "double", "halffloat")
        )
        types = {f.name: f.type for f in schema}
        expr = build_filter(filters, filter_kw, names, floats, types) if not lazy else None
        if lazy:
            return self._get_lazy(base, rec, schema, keys, parts, columns, filters, filter_kw)
        read_columns = None
        if columns is not None:
            index = [c for c in _pandas_index_columns(schema) if c in names and c not in columns]
            read_columns = columns + index
        if chunksize is not None:
            if int(chunksize) < 1:
                raise UsageError(f"chunksize must be a positive number of rows, got {chunksize!r}")
            dataset = arrow_dataset(self.storage, keys, parts, schema, whole_file_limit=0)
            chunks = self._iter_chunks(rec, schema, dataset, read_columns, expr, int(chunksize))
            return _checked(chunks, self.storage, keys, parts)
        import pyarrow as pa

        dataset = arrow_dataset(self.storage, keys, parts, schema)
        try:
            table = dataset.to_table(columns=read_columns, filter=expr)
        except FileNotFoundError:
            self._raise_missing_part(base, rec, parts)
            raise
        except (OSError, pa.ArrowException) as exc:
            raise damaged_part(self.storage, keys, parts) or exc from None
        table = table.replace_schema_metadata(schema.metadata)
        return _convert.from_table(
            table, rec.kind, rec.info, whole=columns is None and expr is None
        )

    def _raise_missing_part(
        self, name: str, rec: VersionRecord, parts: list[dict[str, Any]]
    ) -> None:
        for p in parts:
            self._check_payload_present(name, rec.version, p["file"])

    def _get_lazy(
        self,
        name: str,
        rec: VersionRecord,
        schema: Any,
        keys: list[str],
        parts: list[dict[str, Any]],
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
            series = ddf[_convert._SERIES_COLUMN]
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
        rng = _pandas_range_index(schema)
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
        parts: list[dict[str, Any]],
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
            tmp = f"{target}.{unique_name('.part')}"
            try:
                with open(tmp, "wb") as out:
                    for chunk in self.storage.iter_chunks(key):
                        digest.update(chunk)
                        out.write(chunk)
                        if progress:
                            progress(len(chunk))
                self._verify(name, rec, digest.hexdigest())
                os.replace(tmp, target)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
            return target
        except FileNotFoundError:
            raise self._missing_payload(name, rec.version, parts[0]["file"]) from None

    def _verify(self, name: str, rec: VersionRecord, sha256: str) -> None:
        if sha256 != rec.info.get("sha256"):
            raise IntegrityError(
                f"The payload of dataset {name!r} version {rec.version} does not match "
                "its recorded sha256: it was changed or truncated outside omfs."
            )

    # -- promotion --------------------------------------------------------------------------
    def promote(self, name: str, other: DatasetStore | str, **kwargs: Any) -> Metadata:
        """Copy one version of ``name`` to ``other`` (another bucket or context) as a new
        version there, recording where it came from; ``other`` may name a context of the
        config file (``"prod"``, ``"prod:bucket"``). See :func:`omfs.ops.promote.promote`."""
        from omfs.ops.promote import promote

        return promote(self, name, other, **kwargs)


def _sha256_of(storage: Any, key: str) -> str:
    digest = hashlib.sha256()
    for chunk in storage.iter_chunks(key):
        digest.update(chunk)
    return digest.hexdigest()


def _checked(
    chunks: Iterator[Any], storage: Any, keys: list[str], parts: list[dict[str, Any]]
) -> Iterator[Any]:
    """``chunks``, with a damaged part named (IntegrityError) instead of pyarrow's error."""
    import pyarrow as pa

    try:
        yield from chunks
    except FileNotFoundError:
        raise
    except (OSError, pa.ArrowException) as exc:
        raise damaged_part(storage, keys, parts) or exc from None


def _now() -> str:
    from omfs.objects.metadata import utcnow

    return utcnow()


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
