"""Readers of JSON lines (streamed), Parquet and Feather (streamed where no type
conversion is asked for), and of JSON and Excel (through pandas)."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any

from omfs.objects.datasets._tables import (
    PART_ROWS,
    Batches,
    ImportOptions,
    TableFileError,
    check_columns,
    first_line,
    read_head,
    stream_error,
)

__all__ = ["open_other"]


def open_other(
    path: str,
    fmt: str,
    compression: str | None,
    convert: bool,
    options: ImportOptions,
    progress: Callable[[int], None] | None,
) -> Any:
    """Parquet, Feather and JSON lines as a RecordBatchReader (streamed) where no type
    conversion is asked for; otherwise (and JSON, Excel) a DataFrame read by pandas."""
    import pyarrow as pa

    if fmt == "parquet" and not compression and not convert:
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(path)
        return pa.RecordBatchReader.from_batches(
            parquet.schema_arrow, parquet.iter_batches(batch_size=PART_ROWS)
        )
    if fmt == "feather" and not compression and not convert:
        import pyarrow.ipc as ipc

        try:
            return ipc.open_file(path).to_reader()
        except AttributeError:
            return pa.RecordBatchReader.from_batches(*_ipc_batches(ipc.open_file(path)))
    if fmt == "jsonl" and not convert:
        lines = _open_jsonl(path, compression, options, progress)
        return pa.RecordBatchReader.from_batches(lines.schema, iter(lines))
    return _read_with_pandas(path, fmt, compression, options)


def _open_jsonl(
    path: str,
    compression: str | None,
    options: ImportOptions,
    progress: Callable[[int], None] | None,
) -> Batches:
    """JSON lines streamed a block of ``max_line_bytes`` at a time (a native file, as CSV)."""
    import pyarrow as pa
    import pyarrow.json as pjson

    head = read_head(path, compression, options.max_line_bytes)
    first_line(path, compression, head, options.max_line_bytes)

    def explain(exc: BaseException) -> TableFileError:
        text = " ".join(str(exc).split())[:200]
        return stream_error(path, compression, exc, options) or TableFileError(
            f"{path}: cannot be read as jsonl ({text})"
        )

    raw = pa.OSFile(path)
    stream = pa.CompressedInputStream(raw, compression) if compression else raw
    try:
        reader = pjson.open_json(
            stream,
            read_options=pjson.ReadOptions(block_size=options.max_line_bytes, use_threads=False),
        )
    except pa.ArrowInvalid as exc:
        stream.close()
        raise explain(exc) from None
    if len(reader.schema) > options.max_columns:
        stream.close()
        check_columns(path, len(reader.schema), options)
    return Batches(reader, reader.schema, raw, stream, explain, progress)


def _ipc_batches(reader: Any) -> tuple[Any, Iterator[Any]]:
    return reader.schema, (reader.get_batch(i) for i in range(reader.num_record_batches))


def _read_with_pandas(path: str, fmt: str, compression: str | None, options: ImportOptions) -> Any:
    import pandas as pd

    pandas_compression = {"gzip": "gzip", "bz2": "bz2", "zstd": "zstd"}.get(compression or "")
    if fmt == "excel":
        frame = pd.read_excel(path)
    elif fmt == "jsonl":
        frame = pd.read_json(path, lines=True, compression=pandas_compression)
    elif fmt == "json":
        frame = pd.read_json(path, compression=pandas_compression)
    elif fmt == "parquet":
        frame = pd.read_parquet(io.BytesIO(_decompressed(path, compression)))
    else:
        frame = pd.read_feather(io.BytesIO(_decompressed(path, compression)))
    for column in options.parse_dates:
        frame[column] = pd.to_datetime(frame[column])
    for column, name in options.dtype.items():
        frame[column] = frame[column].astype(name)
    return frame


def _decompressed(path: str, compression: str | None) -> bytes:
    import pyarrow as pa

    with pa.input_stream(path, compression=compression) as f:
        data: bytes = f.read()
    return data
