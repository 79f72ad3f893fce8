"""``/v1/datasets/{name}``: read a dataset (columns, filters, four formats), streamed in
chunks; put or append one with a write token."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

from omfs.errors import InvalidFilterError
from omfs.objects.datasets.where import parse_where
from omfs.serve.bodies import DEFAULT_MAX_COLUMNS, Problem, check_width, decode_json, frame_of

__all__ = ["FORMATS", "dataset_chunks", "read_upload"]

#: ``format=`` -> content type
FORMATS = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
    "arrow": "application/vnd.apache.arrow.stream",
}
CHUNK_ROWS = 50_000


def read_options(query: Any) -> tuple[str, list[str] | None, dict[str, Any]]:
    """``format``, ``columns`` and ``where`` of a dataset request's query string."""
    fmt = query.get("format", "json")
    if fmt not in FORMATS:
        raise Problem(400, f"format={fmt!r} is not one of {', '.join(FORMATS)}")
    columns = query.get("columns")
    names = [c.strip() for c in columns.split(",") if c.strip()] if columns else None
    try:
        filters = parse_where(query.getlist("where"))
    except InvalidFilterError as exc:  # said as the query string writes it
        raise Problem(400, str(exc).replace("--where", "where=", 1)) from None
    return fmt, names, filters


def dataset_chunks(
    datasets: Any, name: str, fmt: str, columns: list[str] | None, filters: dict[str, Any]
) -> Iterator[bytes]:
    """The bytes of the answer, one chunk of rows at a time. The first chunk is read
    before this returns, so a bad name, column or filter is an error, not a cut stream."""
    meta = datasets.metadata(name)
    if meta.kind == "raw":
        raise Problem(400, f"dataset {name!r} is a raw file: read it with om datasets get")
    frames = datasets.get(name, columns=columns, chunksize=CHUNK_ROWS, **filters)
    first = next(frames, None)
    if first is None:  # no row matches: an empty table that keeps the columns and types
        first = datasets.get(name, columns=columns, **filters)
    return _encode(first, frames, fmt)


def _encode(first: Any, frames: Iterator[Any], fmt: str) -> Iterator[bytes]:
    import pyarrow as pa

    def tables() -> Iterator[Any]:
        if first is not None:
            yield pa.Table.from_pandas(first, preserve_index=False)
        for frame in frames:
            yield pa.Table.from_pandas(frame, preserve_index=False)

    if fmt == "json":
        return _json_chunks(first, frames)
    if fmt == "csv":
        return _csv_chunks(first, frames)
    return _arrow_chunks(tables(), fmt)


def _json_chunks(first: Any, frames: Iterator[Any]) -> Iterator[bytes]:
    import msgspec

    columns = [str(c) for c in first.columns] if first is not None else []
    yield b'{"columns":' + msgspec.json.encode(columns) + b',"data":['
    sep = b""
    for frame in _frames(first, frames):
        rows = frame.astype(object).where(frame.notna(), None).values.tolist()
        if rows:
            yield sep + msgspec.json.encode(rows, enc_hook=str)[1:-1]
            sep = b","
    yield b"]}"


def _csv_chunks(first: Any, frames: Iterator[Any]) -> Iterator[bytes]:
    header = True
    for frame in _frames(first, frames):
        yield frame.to_csv(index=False, header=header).encode()
        header = False


def _frames(first: Any, frames: Iterator[Any]) -> Iterator[Any]:
    if first is not None:
        yield first
        yield from frames


def _arrow_chunks(tables: Iterator[Any], fmt: str) -> Iterator[bytes]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    writer: Any = None
    for table in tables:
        if writer is None:
            if fmt == "parquet":
                writer = pq.ParquetWriter(sink, table.schema)
            else:
                writer = pa.ipc.new_stream(sink, table.schema)
        writer.write_table(table)
        yield _drain(sink)
    if writer is not None:
        writer.close()
    yield _drain(sink)


def _drain(sink: io.BytesIO) -> bytes:
    data = sink.getvalue()
    sink.seek(0)
    sink.truncate()
    return data


def read_upload(body: bytes, content_type: str, max_columns: int = DEFAULT_MAX_COLUMNS) -> Any:
    """A dataset upload as a DataFrame: JSON (``{"columns", "data"}`` or a list of
    records), ``text/csv``, Parquet or Arrow IPC; 400 for a number too large to store."""
    try:
        frame = _upload_frame(body, content_type, max_columns)
    except OverflowError as exc:
        raise Problem(400, f"a number in the body is too large to store: {exc}") from None
    check_width(len(frame.columns), max_columns)
    return frame


def _upload_frame(body: bytes, content_type: str, max_columns: int) -> Any:
    import pandas as pd
    import pyarrow as pa

    if content_type.startswith(FORMATS["parquet"]):
        import pyarrow.parquet as pq

        try:
            return pq.read_table(pa.BufferReader(body)).to_pandas()
        except Exception as exc:
            raise Problem(400, f"the body is not a readable Parquet file: {exc}") from None
    if content_type.startswith(FORMATS["arrow"]):
        try:
            return pa.ipc.open_stream(body).read_all().to_pandas()
        except Exception as exc:
            raise Problem(400, f"the body is not a readable Arrow stream: {exc}") from None
    if not content_type.startswith("text/csv"):
        records = decode_json(body)
        if isinstance(records, list):
            if not records or not all(isinstance(r, dict) for r in records):
                raise Problem(400, "a JSON list body must be a non-empty list of records")
            return pd.DataFrame.from_records(records)
    frame = frame_of(body, content_type, max_columns)
    columns = frame.columns or [f"c{i}" for i in range(len(frame.data[0]))]
    return pd.DataFrame(frame.data, columns=columns)
