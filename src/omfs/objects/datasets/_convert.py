"""Turning the objects users store into Arrow tables and back, exactly.

Each stored dataset records its ``kind`` (what ``get`` gives back) and small details that
Parquet's pandas metadata does not keep (a Series' name, an array's shape, an index freq).
"""

from __future__ import annotations

import io
import os
from typing import Any

from omfs.errors import InvalidTypeError, UsageError
from omfs.objects.datasets.schema import as_stored

__all__ = ["from_table", "is_dask", "is_raw", "is_stream", "to_table"]

KIND_FRAME = "pandas.DataFrame"
KIND_SERIES = "pandas.Series"
KIND_ARRAY = "numpy.ndarray"
KIND_ARROW = "pyarrow.Table"
KIND_RAW = "raw"
SERIES_COLUMN = "__series__"


def is_dask(obj: Any) -> bool:
    module = type(obj).__module__
    return module.startswith("dask.") and type(obj).__name__ == "DataFrame"


def is_stream(obj: Any) -> bool:
    """A ``pyarrow.RecordBatchReader``: stored batch by batch, never read whole."""
    return type(obj).__name__ == "RecordBatchReader" and type(obj).__module__.startswith("pyarrow")


def is_raw(obj: Any) -> bool:
    if isinstance(obj, bytes | bytearray | memoryview | io.IOBase):
        return True
    if isinstance(obj, os.PathLike):
        return True
    return hasattr(obj, "read") and callable(obj.read)


_MAX_CATEGORIES = 100_000


def _freq_info(index: Any) -> dict[str, Any]:
    freq = getattr(index, "freqstr", None)
    return {"index_freq": freq} if freq else {}


def _category_info(frame: Any) -> dict[str, Any]:
    """Categorical columns' full categories: Parquet keeps only the values that occur."""
    import json

    out = {}
    for column, dtype in frame.dtypes.items():
        if getattr(dtype, "name", "") != "category" or not isinstance(column, str):
            continue
        values = dtype.categories.tolist()
        if len(values) > _MAX_CATEGORIES:
            continue
        try:
            json.dumps(values)
        except (TypeError, ValueError):
            continue
        out[column] = {
            "categories": values,
            "ordered": bool(dtype.ordered),
            "dtype": str(dtype.categories.dtype),
        }
    return {"categories": out} if out else {}


def merge_categories(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Categories after an append: the stored ones, then new values in order of appearance."""
    merged = dict(old)
    for column, spec in new.items():
        if column in merged:
            known = merged[column]["categories"]
            extra = [v for v in spec["categories"] if v not in set(known)]
            merged[column] = {**merged[column], "categories": known + extra}
        else:
            merged[column] = spec
    return merged


def _restore_categories(frame: Any, spec: dict[str, Any]) -> Any:
    import pandas as pd

    for column, cat in spec.items():
        if column in frame.columns and getattr(frame[column].dtype, "name", "") == "category":
            dtype = pd.CategoricalDtype(
                pd.Index(cat["categories"], dtype=cat["dtype"]), ordered=cat["ordered"]
            )
            frame[column] = frame[column].astype(dtype)
    return frame


def to_table(obj: Any, name: str, preserve_index: bool = False) -> tuple[Any, str, dict[str, Any]]:
    """Return ``(pyarrow.Table, kind, info)`` for a tabular object.

    ``preserve_index=True`` stores even a RangeIndex as a column (as Dask-written datasets do).
    """
    keep = True if preserve_index else None
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    if isinstance(obj, pa.Table):
        return obj, KIND_ARROW, {}
    if isinstance(obj, pa.RecordBatch):
        return pa.Table.from_batches([obj]), KIND_ARROW, {}
    if isinstance(obj, pd.Series):
        frame = obj.to_frame(name=SERIES_COLUMN)
        series_name = obj.name
        if series_name is not None and not isinstance(series_name, str | int | float | bool):
            series_name = str(series_name)
        info = {"series_name": series_name, **_freq_info(obj.index), **_category_info(frame)}
        return _from_pandas(frame, name, keep), KIND_SERIES, info
    if isinstance(obj, pd.DataFrame):
        info = {**_freq_info(obj.index), **_category_info(obj)}
        return _from_pandas(obj, name, keep), KIND_FRAME, info
    if isinstance(obj, np.ndarray):
        if obj.dtype.names:
            raise InvalidTypeError(
                f"Cannot store a structured numpy array as dataset {name!r}: pass "
                "pandas.DataFrame(array) instead."
            )
        if obj.ndim == 0:
            raise InvalidTypeError(
                f"Cannot store a 0-d numpy array as dataset {name!r}: it has no rows."
            )
        flat = obj.reshape(len(obj), -1) if obj.ndim > 1 else obj.reshape(-1, 1)
        arrays = [pa.array(flat[:, i]) for i in range(flat.shape[1])]
        table = pa.Table.from_arrays(arrays, names=[str(i) for i in range(flat.shape[1])])
        return table, KIND_ARRAY, {"shape": list(obj.shape), "dtype": obj.dtype.str}
    if isinstance(obj, list | tuple) and all(isinstance(r, dict) for r in obj):
        return (
            _from_pandas(pd.DataFrame.from_records(list(obj)), name),
            KIND_FRAME,
            {"source": "records"},
        )
    if isinstance(obj, dict):
        return _from_pandas(pd.DataFrame(obj), name), KIND_FRAME, {"source": "dict"}
    raise InvalidTypeError(
        f"Cannot store a {type(obj).__module__}.{type(obj).__qualname__} as dataset {name!r}. "
        "Datasets take pandas DataFrames and Series, numpy arrays, pyarrow Tables, Dask "
        "DataFrames, lists of records, dicts of columns, and raw files (bytes, file objects, "
        "local paths);",
        hint="store other objects with om.models.put().",
        cli_hint="store other objects with `om models put`.",
    )


def _from_pandas(frame: Any, name: str, preserve_index: bool | None = None) -> Any:
    import pyarrow as pa

    if frame.columns.has_duplicates:
        dupes = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
        raise UsageError(
            f"Cannot store dataset {name!r}: duplicate column names {dupes}. Rename them first."
        )
    try:
        return pa.Table.from_pandas(frame, preserve_index=preserve_index)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise InvalidTypeError(
            f"Cannot store dataset {name!r}: a column holds values Parquet cannot represent "
            f"({exc}). Convert mixed-type object columns to one type first."
        ) from None


def from_table(table: Any, kind: str, info: dict[str, Any], whole: bool, schema: Any = None) -> Any:
    """Turn a table read from Parquet back into the stored kind.

    ``whole`` is True when every row was read, so details such as an index frequency or an
    array's exact shape can be restored. ``schema``: the stored schema, whose dictionary
    columns of numbers (read as their values) are encoded again.
    """
    import numpy as np

    if schema is not None:
        table = as_stored(table, schema)

    if kind == KIND_ARROW:
        return table
    if kind == KIND_ARRAY:
        shape = info["shape"]
        columns = [table.column(i).to_numpy() for i in range(table.num_columns)]
        flat = np.column_stack(columns) if columns else np.empty((table.num_rows, 0))
        flat = flat.astype(np.dtype(info["dtype"]), copy=False)
        if len(shape) == 1:
            return flat.reshape(-1)
        if table.num_columns == int(np.prod(shape[1:])):
            return flat.reshape(-1, *shape[1:])
        return flat
    frame = table.to_pandas()
    if info.get("categories"):
        frame = _restore_categories(frame, info["categories"])
    if whole and info.get("index_freq"):
        frame.index = _with_freq(frame.index, info["index_freq"])
    if kind == KIND_SERIES:
        series = frame[SERIES_COLUMN]
        series.name = info.get("series_name")
        return series
    return frame


def _with_freq(index: Any, freq: str) -> Any:
    import pandas as pd

    try:
        if isinstance(index, pd.DatetimeIndex):
            return pd.DatetimeIndex(index, freq=freq)
        if isinstance(index, pd.TimedeltaIndex):
            return pd.TimedeltaIndex(index, freq=freq)
    except ValueError:
        pass
    return index
