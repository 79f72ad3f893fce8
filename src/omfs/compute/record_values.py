"""A task's value as its record stores it: frames and arrays as Parquet, a version's
metadata and plain values as JSON, anything else refused. Nothing is ever pickled, and the
one :func:`encode_value` decides what is stored (and so what ``om runtime`` shows)."""

from __future__ import annotations

import base64
import io
from typing import Any

from omfs.compute.record_checks import MAX_DEPTH
from omfs.errors import UnstorableResultError
from omfs.objects.metadata import Metadata

__all__ = [
    "decode_value",
    "encode_value",
    "export_parquet",
    "head_value",
    "parquet_source",
    "unstorable_part",
]

_METADATA_FIELDS = (
    "name", "bucket", "store", "kind", "version", "created", "attributes", "tag", "lineage",
    "context", "history",
)  # fmt: skip


def encode_value(value: Any) -> tuple[dict[str, Any], bytes | None]:
    """``(document, parquet)`` of a task's value: a frame, series or array as Parquet; a
    version's metadata and plain values as JSON. Anything else: UnstorableResultError."""
    if isinstance(value, Metadata):
        return {"format": "metadata", "value": value.to_dict()}, None
    parquet = _as_parquet(value)
    if parquet is not None:
        return parquet
    try:
        plain = _plain(value)
        where = unstorable_part(plain)
    except RecursionError:
        where = ("...", f"nesting deeper than {MAX_DEPTH} levels")
    if where is not None:
        path, part = where
        what = f"type {part}" if not path else f"type {_type_name(type(value))} holding {part}"
        if path and not part.startswith("nesting"):
            what = f"type {_type_name(type(value))} holding a {part} at {path}"
        raise UnstorableResultError(
            f"A task result of {what} cannot be stored safely (omfs stores frames and "
            "arrays as Parquet and plain values as JSON, and never pickles): return a frame, "
            "an array or plain values, or store it yourself with om.models.put / "
            "om.datasets.put."
        )
    return {"format": "json", "value": plain}, None


def unstorable_part(plain: Any) -> tuple[str, str] | None:
    """Where in ``plain`` (a path such as ``['a'][0]``, "" for the value itself) sits the
    first part JSON cannot hold faithfully, and its type; None when it all can."""
    todo: list[tuple[Any, str, int]] = [(plain, "", 0)]
    while todo:
        item, path, level = todo.pop()
        if level > MAX_DEPTH:
            return "...", f"nesting deeper than {MAX_DEPTH} levels"
        if isinstance(item, float) or item is None or isinstance(item, str | bool | int):
            continue
        if isinstance(item, list):
            todo.extend((v, f"{path}[{i}]", level + 1) for i, v in enumerate(item))
        elif isinstance(item, dict) and all(isinstance(k, str | int) for k in item):
            todo.extend((v, f"{path}[{k!r}]", level + 1) for k, v in item.items())
        else:
            return path, _type_name(type(item))
    return None


def _type_name(kind: type) -> str:
    return f"{kind.__module__}.{kind.__qualname__}"


def _plain(value: Any) -> Any:
    """numpy scalars as Python numbers; lists, tuples and dicts walked."""
    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        return value.item()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _as_parquet(value: Any) -> tuple[dict[str, Any], bytes] | None:
    """A frame, series or 1-/2-d array as Parquet (an array without pandas: a burst of
    small predicts pays ~0.3 ms each); None for anything else."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    doc: dict[str, Any] = {"format": "parquet"}
    try:
        if isinstance(value, np.ndarray):
            if value.ndim not in (1, 2):
                return None
            doc |= {"type": "ndarray", "ndim": value.ndim}
            columns = value.T if value.ndim == 2 else [value]
            table = pa.table({str(i): pa.array(c) for i, c in enumerate(columns)})
        else:
            table = _pandas_table(value, doc)
            if table is None:
                return None
    except (pa.ArrowException, TypeError, ValueError):
        return None  # e.g. a column of arbitrary objects: refused by encode_value
    out = io.BytesIO()
    pq.write_table(table, out)
    return doc, out.getvalue()


def _pandas_table(value: Any, doc: dict[str, Any]) -> Any:
    """A pandas frame or series as an Arrow table (index kept); None for anything else."""
    import sys

    pd = sys.modules.get("pandas")  # a value can only be a pandas one once pandas is in
    if pd is None:
        return None
    import pyarrow as pa

    if isinstance(value, pd.Series):
        doc |= {"type": "series", "name": value.name}
        value = value.to_frame(name="value" if value.name is None else str(value.name))
    elif isinstance(value, pd.DataFrame):
        doc["type"] = "frame"
    else:
        return None
    return pa.Table.from_pandas(value, preserve_index=True)


def decode_value(doc: dict[str, Any], parquet: Any = None) -> Any:
    """The value :func:`encode_value` stored (``parquet``: a callable reading its bytes)."""
    fmt = doc.get("format")
    if fmt == "json":
        return doc.get("value")
    if fmt == "metadata":
        fields = dict(doc["value"])
        fields.pop("format", None)
        known = {k: fields.pop(k) for k in _METADATA_FIELDS if k in fields}
        return Metadata(**known, info=fields)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        # ParquetFile, not read_table: no pyarrow.dataset import (the CLI's start-up)
        data = base64.b64decode(doc["inline"]) if "inline" in doc else parquet()
        return _from_table(doc, pq.ParquetFile(io.BytesIO(data)).read())
    raise UnstorableResultError(doc.get("refused") or "The task's result was not stored.")


def _from_table(doc: dict[str, Any], table: Any) -> Any:
    """An Arrow table as the array, series or frame ``doc`` says was stored."""
    if doc.get("type") == "ndarray":  # no pandas either
        import numpy as np

        columns = [c.to_numpy(zero_copy_only=False) for c in table.columns]
        return columns[0] if doc.get("ndim") == 1 else np.column_stack(columns)
    frame = table.to_pandas()
    if doc.get("type") == "series":
        series = frame.iloc[:, 0]
        series.name = doc.get("name")
        return series
    return frame


def parquet_source(doc: dict[str, Any], open_side: Any) -> Any:
    """A binary file over a stored Parquet value: its inline bytes, else ``open_side()``."""
    if "inline" in doc:
        return io.BytesIO(base64.b64decode(doc["inline"]))
    return open_side()


def head_value(doc: dict[str, Any], source: Any, rows: int, whole: int) -> dict[str, Any]:
    """``{"value", "rows", "columns"}``: the value stored as Parquet in ``source``, whole
    when it has at most ``whole`` rows, else its first ``rows`` (only those are decoded),
    with its size as the file's metadata gives it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(source)
    total = parquet.metadata.num_rows
    want = total if total <= whole else rows
    batches = []
    if want > 0:
        for batch in parquet.iter_batches(batch_size=want, use_threads=False):
            batches.append(batch.slice(0, want))
            want -= batches[-1].num_rows
            if want <= 0:
                break  # the next batch is never decoded
    table = pa.Table.from_batches(batches, schema=parquet.schema_arrow)
    return {"value": _from_table(doc, table), "rows": total, "columns": _width(parquet)}


def _width(parquet: Any) -> int:
    """How many columns a stored value has (a frame's index columns not counted)."""
    return len(parquet.schema_arrow.names) - len(_index_columns(parquet))


def _index_columns(parquet: Any) -> list[str]:
    """The columns that hold a stored frame's index (pandas' metadata names them)."""
    meta = parquet.schema_arrow.pandas_metadata or {}
    return [c for c in meta.get("index_columns", []) if isinstance(c, str)]


def export_parquet(source: Any, out: Any, fmt: str) -> int:
    """Write the Parquet value in ``source`` to the binary file ``out``, as the stored bytes
    (``fmt`` "parquet") or as CSV a batch at a time (an index column as ``index``); its rows."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(source)  # its footer read: no bytes copied from a non-Parquet file
    if fmt == "parquet":
        source.seek(0)
        shutil.copyfileobj(source, out, 2**20)
        return int(parquet.metadata.num_rows)
    import pyarrow.csv as pacsv

    index = _index_columns(parquet)
    names = [
        ("index" if len(index) == 1 else f"level_{index.index(n)}") if n in index else n
        for n in parquet.schema_arrow.names
    ]
    schema = pa.schema([f.with_name(n) for f, n in zip(parquet.schema_arrow, names, strict=True)])
    written = 0
    with pacsv.CSVWriter(out, schema) as writer:
        for batch in parquet.iter_batches(batch_size=65536, use_threads=False):
            writer.write_batch(pa.RecordBatch.from_arrays(batch.columns, schema=schema))
            written += batch.num_rows
    return written
