"""Arrow schemas of datasets: stored once per object (named by content), and the rules by
which new data must match a dataset's schema to be appended (checked and cast)."""

from __future__ import annotations

import json
from typing import Any

from omfs.errors import SchemaMismatchError

__all__ = [
    "as_stored",
    "check_compatible",
    "conform",
    "pandas_index_columns",
    "pandas_range_index",
    "read_schema",
    "schema_bytes",
    "schema_from_bytes",
    "with_new_columns",
]

_schemas: dict[bytes, Any] = {}


def schema_bytes(schema: Any) -> bytes:
    """The Arrow IPC serialisation of ``schema`` (what the log stores, named by content)."""
    data: bytes = schema.serialize().to_pybytes()
    return data


def schema_from_bytes(data: bytes) -> Any:
    import pyarrow as pa

    schema = _schemas.get(data)
    if schema is None:
        schema = pa.ipc.read_schema(pa.py_buffer(data))
        if len(_schemas) > 64:
            _schemas.clear()
        _schemas[data] = schema
    return schema


def _keeps_dictionary(t: Any) -> bool:
    """Whether Parquet gives a column of type ``t`` back as stored: a dictionary of text
    or bytes does; one of numbers (an integer categorical) comes back as its values, and
    Arrow cannot cast values to a dictionary while it scans."""
    import pyarrow as pa

    if not pa.types.is_dictionary(t):
        return True
    v = t.value_type
    return bool(
        pa.types.is_string(v)
        or pa.types.is_large_string(v)
        or pa.types.is_binary(v)
        or pa.types.is_large_binary(v)
    )


def read_schema(stored: Any) -> Any:
    """The schema a scan of the parts of a dataset stored as ``stored`` reads: each
    dictionary column Parquet cannot give back as one (numbers) as its values."""
    if all(_keeps_dictionary(f.type) for f in stored):
        return stored
    import pyarrow as pa

    fields = [f if _keeps_dictionary(f.type) else f.with_type(f.type.value_type) for f in stored]
    return pa.schema(fields, metadata=stored.metadata)


def as_stored(table: Any, stored: Any) -> Any:
    """``table`` (read with :func:`read_schema`) with the dictionary columns of ``stored``
    that were read as values dictionary-encoded again, as they were put."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for i, f in enumerate(table.schema):
        want = stored.field(f.name).type if f.name in stored.names else f.type
        if pa.types.is_dictionary(want) and not pa.types.is_dictionary(f.type):
            encoded = pc.dictionary_encode(table.column(i)).cast(want)
            table = table.set_column(i, f.with_type(want), encoded)
    return table


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


def check_compatible(
    name: str, bucket: str, schema: Any, kind: str, stored_kind: str, stored: Any
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
        raise SchemaMismatchError(
            f"Cannot append to dataset {name!r} in bucket {bucket!r}: the new data has new "
            f"columns {extra}.",
            hint="Pass new_columns=True to add them (earlier rows read them as null), or "
            "put() without append=True to replace the dataset.",
            cli_hint="Pass --add-columns to add them (earlier rows read them as null), or put "
            "without --append to replace the dataset.",
        )
    else:
        for column, t in have.items():
            if not _assignable(want[column], t):
                kind_name = _pandas_name(want[column])
                raise SchemaMismatchError(
                    f"Cannot append to dataset {name!r} in bucket {bucket!r}: column "
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
            f"Cannot append to dataset {name!r} in bucket {bucket!r}: " + "; ".join(problems) + ".",
            hint="Convert the new data to the dataset's schema, or put() without "
            "append=True to replace the dataset.",
            cli_hint="Convert the new data to the dataset's schema, or put without --append "
            "to replace the dataset.",
        )


def with_new_columns(stored: Any, new: Any) -> Any:
    """``stored`` with the data columns of ``new`` that it lacks added at its end (with their
    pandas metadata): the schema of an append that adds columns. Parts written before it
    lack them, and read them as null."""
    import pyarrow as pa

    old_meta, new_meta = _pandas_meta(stored), _pandas_meta(new)
    index = {c for c in new_meta.get("index_columns", []) if isinstance(c, str)}
    extra = [f for f in new if f.name not in set(stored.names) and f.name not in index]
    if not extra:
        return stored
    metadata = dict(stored.metadata or {})
    if old_meta and new_meta:
        names = {f.name for f in extra}
        added = [c for c in new_meta.get("columns", []) if c.get("field_name") in names]
        old_meta["columns"] = [*old_meta.get("columns", []), *added]
        metadata[b"pandas"] = json.dumps(old_meta).encode()
    return pa.schema([*stored, *extra], metadata=metadata or None)


def conform(
    name: str,
    bucket: str,
    table: Any,
    kind: str,
    stored_kind: str,
    stored: Any,
    new_columns: bool = False,
) -> Any:
    """Check ``table`` against the dataset's schema and cast it to that schema, widened
    where the dataset had only nulls so far (an all-null column takes the new type);
    ``new_columns``: the columns it adds are added to the schema (see
    :func:`with_new_columns`)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if new_columns and stored_kind == kind:
        stored = with_new_columns(stored, table.schema)
    check_compatible(name, bucket, table.schema, kind, stored_kind, stored)
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


def _pandas_meta(schema: Any) -> dict[str, Any]:
    raw = (schema.metadata or {}).get(b"pandas")
    return json.loads(raw) if raw else {}


def pandas_index_columns(schema: Any) -> list[str]:
    return [c for c in _pandas_meta(schema).get("index_columns", []) if isinstance(c, str)]


def pandas_range_index(schema: Any) -> dict[str, Any] | None:
    """The stored RangeIndex descriptor (start, stop, step, name), if the index is one."""
    index = _pandas_meta(schema).get("index_columns", [])
    if len(index) == 1 and isinstance(index[0], dict) and index[0].get("kind") == "range":
        return index[0]
    return None
