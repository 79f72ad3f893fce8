"""Request bodies as model input, and answers as JSON.

Accepted bodies (JSON unless said):

- omega|ml's ``{"columns": [...], "data": [[...], ...]}``;
- MLflow's ``{"dataframe_split": {"columns", "data"}}``, ``{"dataframe_records": [{...}]}``,
  ``{"instances": [[...]]}`` and ``{"inputs": [[...]] | {"col": [...]}}``;
- ``text/csv`` with a header line.
"""

from __future__ import annotations

import io
import sys
from typing import Any

import msgspec

__all__ = [
    "DEFAULT_MAX_COLUMNS",
    "MAX_DENSE_VALUES",
    "MLFLOW_KEYS",
    "Frame",
    "Problem",
    "check_width",
    "decode_json",
    "frame_of",
    "model_input",
    "plain_values",
    "to_list",
]

#: the most columns a request may carry, by default (413 above)
DEFAULT_MAX_COLUMNS = 10_000

#: the body forms of MLflow's scoring protocol
MLFLOW_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")
_FORMS = (
    '{"columns": [...], "data": [[...]]}, or MLflow\'s dataframe_split, dataframe_records, '
    "instances or inputs, or text/csv"
)

_decoder = msgspec.json.Decoder()


class Problem(Exception):
    """A request that cannot be answered, with its HTTP status and a message naming why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class Frame(msgspec.Struct):
    """Rows of a request: column names (None when the body gave none) and row lists."""

    columns: list[str] | None
    data: list[list[Any]]


def decode_json(body: bytes) -> Any:
    """The JSON document of ``body``; 400 naming the problem when it is empty or not JSON."""
    if not body.strip():
        raise Problem(400, f"the request body is empty; send {_FORMS}")
    try:
        return _decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise Problem(400, f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise Problem(400, "the request body's JSON is nested too deeply") from None


def check_width(width: int, max_columns: int) -> None:
    """413 when a request carries more than ``max_columns`` columns."""
    if width > max_columns:
        raise Problem(
            413, f"the request has {width} columns; this server takes at most {max_columns}"
        )


def frame_of(body: bytes, content_type: str, max_columns: int = DEFAULT_MAX_COLUMNS) -> Frame:
    """The rows a model request carries, in any accepted form, with at most
    ``max_columns`` columns."""
    frame = _any_frame(body, content_type, max_columns)
    check_width(len(frame.data[0]), max_columns)
    return frame


def _any_frame(body: bytes, content_type: str, max_columns: int) -> Frame:
    if content_type.startswith("text/csv"):
        return _csv_frame(body, max_columns)
    if content_type and not content_type.startswith("application/json"):
        raise Problem(415, f"unsupported content type {content_type!r}; send JSON or text/csv")
    doc = decode_json(body)
    if not isinstance(doc, dict):
        raise Problem(400, f"the body must be a JSON object: {_FORMS}")
    if "data" in doc:
        return _split(doc, "the body")
    given = [k for k in MLFLOW_KEYS if k in doc]
    if len(given) != 1:
        what = "none" if not given else " and ".join(given)
        raise Problem(400, f"the body gives {what} of the accepted forms; send one: {_FORMS}")
    value = doc[given[0]]
    if given[0] == "dataframe_split":
        if not isinstance(value, dict):
            raise Problem(400, 'dataframe_split must be {"columns": [...], "data": [[...]]}')
        return _split(value, "dataframe_split")
    if given[0] == "dataframe_records":
        return _records(value, "dataframe_records")
    return _tensor(value, given[0])


def _split(doc: dict[str, Any], where: str) -> Frame:
    columns, data = doc.get("columns"), doc.get("data")
    if columns is not None and (
        not isinstance(columns, list) or not all(isinstance(c, str) for c in columns)
    ):
        raise Problem(400, f"{where}: columns must be a list of names")
    return _rows(columns, data, where)


def _rows(columns: list[str] | None, data: Any, where: str) -> Frame:
    if not isinstance(data, list) or not data:
        raise Problem(400, f"{where}: data must be a non-empty list of rows")
    if not all(isinstance(row, list) for row in data):
        if any(isinstance(row, (list, dict)) for row in data):
            raise Problem(400, f"{where}: every row must be a list of values")
        data = [[value] for value in data]  # one column, one value per row
    width = len(columns) if columns is not None else len(data[0])
    for i, row in enumerate(data):
        if len(row) != width:
            raise Problem(422, f"{where}: row {i} has {len(row)} values, expected {width}")
    return Frame(columns, data)


def _records(value: Any, where: str) -> Frame:
    if not isinstance(value, list) or not value or not all(isinstance(r, dict) for r in value):
        raise Problem(400, f"{where} must be a non-empty list of {{column: value}} records")
    columns = list(value[0])
    for i, record in enumerate(value):
        if list(record) != columns and set(record) != set(columns):
            raise Problem(422, f"{where}: record {i} has other columns than record 0")
    return Frame(columns, [[record[c] for c in columns] for record in value])


def _tensor(value: Any, where: str) -> Frame:
    if isinstance(value, dict):  # columnar: {"col": [values], ...}
        columns = list(value)
        cols = [v if isinstance(v, list) else [v] for v in value.values()]
        if not cols or len({len(c) for c in cols}) != 1:
            raise Problem(422, f"{where}: every column must have the same number of values")
        return _rows(columns, [list(r) for r in zip(*cols, strict=True)], where)
    if isinstance(value, list) and value and all(isinstance(r, dict) for r in value):
        return _records(value, where)
    return _rows(None, value, where)


def _csv_frame(body: bytes, max_columns: int) -> Frame:
    import pandas as pd

    if not body.strip():
        raise Problem(400, f"the request body is empty; send {_FORMS}")
    end = body.find(b"\n")
    check_width(body[: end if end >= 0 else len(body)].count(b",") + 1, max_columns)
    try:
        df = pd.read_csv(io.BytesIO(body))
    except Exception as exc:
        raise Problem(400, f"the CSV body cannot be read: {exc}") from None
    if df.empty:
        raise Problem(400, _no_rows(df.columns))
    if df.isna().to_numpy().any():  # pandas fills a short row with missing values
        _check_csv_rows(body, len(df.columns))
    return Frame([str(c) for c in df.columns], df.astype(object).values.tolist())


def _no_rows(header: Any) -> str:
    """Why a CSV body of one line has no rows: send a header line, then the rows."""
    first = ",".join(str(c) for c in header)
    expected = "a CSV body is a header line naming the columns, then one line per row"
    if all(_is_number(c) for c in header):
        return f"the CSV body's only line ({first}) looks like a row, not a header: {expected}"
    return f"the CSV body has a header line ({first}) but no rows: {expected}"


def _is_number(text: Any) -> bool:
    try:
        float(str(text))
    except ValueError:
        return False
    return True


def _check_csv_rows(body: bytes, width: int) -> None:
    """422 naming the first row of a CSV body with fewer values than its header."""
    import csv

    lines = csv.reader(io.StringIO(body.decode("utf-8", "replace")))
    next(lines, None)
    rows = (row for row in lines if row)  # pandas skips blank lines too
    for i, row in enumerate(rows):
        if len(row) < width:
            raise Problem(422, f"the CSV body: row {i} has {len(row)} values, expected {width}")


def model_input(frame: Frame, features: tuple[str, ...] | None, n_features: int | None) -> Any:
    """What the model's method takes: a DataFrame in the model's column order when it was
    fitted with column names, else a float array. 422 for wrong columns or non-numbers."""
    import numpy as np

    if features is not None:
        return _named_input(frame, features)
    width = len(frame.data[0])
    if n_features is not None and width != n_features:
        raise Problem(422, f"the model expects {n_features} columns, the request gives {width}")
    try:
        return np.asarray(frame.data, dtype=np.float64)
    except (ValueError, TypeError):
        raise Problem(422, _non_numeric(frame)) from None


def _named_input(frame: Frame, features: tuple[str, ...]) -> Any:
    import pandas as pd

    columns = frame.columns
    if columns is None:
        if len(frame.data[0]) != len(features):
            raise Problem(
                422,
                f"the model expects the columns {list(features)}, the request gives "
                f"{len(frame.data[0])} unnamed values per row",
            )
        columns = list(features)
    missing = [f for f in features if f not in columns]
    if missing:
        raise Problem(422, f"the request lacks the columns {missing} the model expects")
    if len(set(columns)) != len(columns):
        twice = sorted({c for c in columns if columns.count(c) > 1})
        raise Problem(422, f"the request names the columns {twice} more than once")
    data = frame.data
    if list(columns) != list(features):
        # the model's columns in its order, picked from the rows: selecting the columns of
        # a DataFrame instead costs several times building it
        where = [columns.index(f) for f in features]
        data = [[row[i] for i in where] for row in data]
    return pd.DataFrame(data, columns=list(features))


def _non_numeric(frame: Frame) -> str:
    for i, row in enumerate(frame.data):
        for j, value in enumerate(row):
            try:
                float(value)
            except (ValueError, TypeError):
                column = frame.columns[j] if frame.columns else f"#{j}"
                return f"non-numeric data: row {i}, column {column} holds {value!r}"
    return "the data cannot be read as numbers"


#: the most values a sparse answer may have once dense (422 above): a million values are
#: 8 MB in memory and several MB of JSON
MAX_DENSE_VALUES = 1_000_000


def to_list(result: Any, model: str = "", version: int = 0, action: str = "call") -> list[Any]:
    """A model's answer as JSON-ready lists: a numeric numpy array at once (the common case);
    anything else (sparse matrices, pandas objects, arrays of objects, lists) through
    :func:`plain_values`. ``model``, ``version`` and ``action`` name the call in errors."""
    import numpy as np

    if type(result) is np.ndarray and result.dtype.kind in "biufU":
        out: list[Any] = result.tolist()
        return out
    return plain_values(result, f"model {model}@v{version}'s {action}()")


def plain_values(result: Any, who: str) -> list[Any]:
    """``result`` as lists of JSON values: a sparse matrix dense (422 when it would have
    more than :data:`MAX_DENSE_VALUES`), numpy and pandas scalars as Python ones, missing
    values as null; 500 naming ``who`` and the type for a value JSON has no form for."""
    sparse = sys.modules.get("scipy.sparse")
    if sparse is not None and sparse.issparse(result):
        result = _dense(result, who)
    if hasattr(result, "to_numpy") and not hasattr(result, "tolist"):
        result = result.to_numpy()  # a DataFrame
    values = result.tolist() if hasattr(result, "tolist") else result
    try:
        out: list[Any] = msgspec.to_builtins(list(values), enc_hook=_plain)
    except (TypeError, ValueError) as exc:
        what = f"a {_type_name(result)}"
        detail = exc.args[0] if isinstance(exc, _Unsendable) else str(exc)
        raise Problem(
            500, f"{who} answered {what} holding {detail}, which cannot be sent as JSON"
        ) from None
    return out


def _dense(matrix: Any, who: str) -> Any:
    rows, columns = matrix.shape
    if rows * columns <= MAX_DENSE_VALUES:
        return matrix.toarray()
    most = MAX_DENSE_VALUES // columns if columns else 0
    fix = (
        f"send at most {most} rows per request"
        if most
        else "even one row is wider than that: load the model with omfs and call it in Python"
    )
    raise Problem(
        422,
        f"{who} answered a sparse {rows} x {columns} matrix: {rows * columns} values as "
        f"JSON, more than this server sends ({MAX_DENSE_VALUES}); {fix}",
    )


class _Unsendable(TypeError):
    """A value JSON has no form for; its message is the value's type."""


def _plain(value: Any) -> Any:
    """msgspec's hook for a value it does not know: numpy arrays and scalars, pandas' times
    and missing values."""
    import datetime

    import numpy as np

    if type(value).__name__ in ("NAType", "NaTType"):
        return None
    if isinstance(value, np.datetime64):
        return None if np.isnat(value) else str(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):  # a list of arrays (rows)
        return value.tolist()
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()  # pandas' Timestamp (msgspec takes only exact datetimes)
    raise _Unsendable(f"{_type_name(value)} values")


def _type_name(value: Any) -> str:
    kind = type(value)
    module = kind.__module__.split(".")[0]
    name = kind.__name__ if module == "builtins" else f"{module}.{kind.__name__}"
    dtype = getattr(value, "dtype", None)
    return f"{name} of {dtype}" if dtype is not None and not callable(dtype) else name
