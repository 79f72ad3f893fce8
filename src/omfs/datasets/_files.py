"""Table files in and out: CSV/TSV (optionally compressed), JSON lines, Parquet, Feather and
Excel, read the way pandas users expect, CSV streamed with bounded memory.

``open_table_file`` returns a ``pyarrow.RecordBatchReader`` (CSV, Parquet, Feather, JSON
lines are never read whole) or a pandas DataFrame (JSON, Excel); either goes straight to
``datasets.put``. Errors name the file, and for CSV the line and column.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omfs.errors import OmfsError

__all__ = [
    "COMPRESSIONS",
    "ImportOptions",
    "TableFileError",
    "open_table_file",
    "table_format",
    "write_table_file",
]

#: file suffix -> pyarrow compression name
COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd", ".zstd": "zstd"}
_FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".txt": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".feather": "feather",
    ".arrow": "feather",
    ".xlsx": "excel",
    ".xls": "excel",
}
#: what ``--dtype col=TYPE`` accepts (pandas spellings) as Arrow types
_DTYPES = {
    "int": "int64",
    "int8": "int8",
    "int16": "int16",
    "int32": "int32",
    "int64": "int64",
    "Int64": "int64",
    "float": "float64",
    "float32": "float32",
    "float64": "float64",
    "double": "float64",
    "str": "string",
    "string": "string",
    "object": "string",
    "bool": "bool",
    "boolean": "bool",
    "category": "category",
    "datetime": "timestamp",
    "datetime64": "timestamp",
    "datetime64[ns]": "timestamp",
    "timestamp": "timestamp",
    "date": "date32",
}
_PART_ROWS = 1_000_000
# non-ISO layouts tried after pyarrow's ISO 8601 parser, all unambiguous about day/month
_TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y/%m/%d", "%Y/%m/%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S")


class TableFileError(OmfsError, ValueError):
    """A table file that cannot be read (or written) as asked; the message names it."""


@dataclass
class ImportOptions:
    """How to read a table file; the CLI's ``--sep``, ``--encoding``, ``--parse-dates``,
    ``--dtype`` and ``--skip-bad-lines``."""

    sep: str | None = None
    encoding: str | None = None
    parse_dates: list[str] = field(default_factory=list)
    dtype: dict[str, str] = field(default_factory=dict)
    skip_bad_lines: bool = False
    skipped: int = 0  # filled in while reading: bad lines skipped


def table_format(path: str | os.PathLike[str]) -> tuple[str | None, str | None]:
    """``(format, compression)`` by the file's suffixes; format None when unknown."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    compression = None
    if suffixes and suffixes[-1] in COMPRESSIONS:
        compression = COMPRESSIONS[suffixes.pop()]
    fmt = _FORMATS.get(suffixes[-1]) if suffixes else None
    return fmt, compression


def _arrow_type(column: str, name: str) -> Any:
    import pyarrow as pa

    kind = _DTYPES.get(name) or _DTYPES.get(name.lower())
    if kind is None:
        raise TableFileError(
            f"--dtype {column}={name}: unknown type; use one of {sorted(set(_DTYPES))}"
        )
    if kind == "category":
        return pa.dictionary(pa.int32(), pa.string())
    if kind == "timestamp":
        return pa.timestamp("ns")
    return pa.type_for_alias(kind)


class _CountingFile(io.RawIOBase):
    """A binary file that reports how many bytes were read (for a progress bar)."""

    def __init__(self, path: str, progress: Callable[[int], None] | None):
        self._f = open(path, "rb")  # noqa: SIM115 - closed with this object
        self._progress = progress

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._f.readinto(buffer)
        if n and self._progress:
            self._progress(n)
        return n or 0

    def close(self) -> None:
        self._f.close()
        super().close()


def _sniff_separator(path: str, compression: str | None, encoding: str | None) -> str:
    """The separator of a CSV file, from its first lines (``,`` when unclear)."""
    import pyarrow as pa

    with pa.input_stream(path, compression=compression) as f:
        head = f.read(64 * 1024)
    text = head.decode(encoding or "utf-8", errors="replace")
    lines = text.splitlines()[:20]
    if len(lines) > 1 and not text.endswith("\n"):
        lines = lines[:-1]  # the last line may be cut
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def _open_csv(
    path: str,
    fmt: str,
    compression: str | None,
    options: ImportOptions,
    progress: Callable[[int], None] | None,
) -> Any:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    sep = options.sep
    if sep is None:
        sep = "\t" if fmt == "tsv" else _sniff_separator(path, compression, options.encoding)
    if sep in ("\\t", "tab"):
        sep = "\t"
    if len(sep) != 1:
        raise TableFileError(f"--sep {sep!r}: the separator must be one character")
    types = {c: _arrow_type(c, t) for c, t in options.dtype.items()}
    for column in options.parse_dates:
        types.setdefault(column, pa.timestamp("ns"))
    bad: dict[str, Any] = {}

    def on_bad_row(row: Any) -> str:
        if options.skip_bad_lines:
            options.skipped += 1
            return "skip"
        bad["row"] = row
        return "error"

    raw = pa.PythonFile(_CountingFile(path, progress), mode="r")
    stream = pa.CompressedInputStream(raw, compression) if compression else raw
    try:
        reader = pcsv.open_csv(
            stream,
            read_options=pcsv.ReadOptions(
                encoding=options.encoding or "utf8", block_size=8 * 2**20, use_threads=False
            ),
            parse_options=pcsv.ParseOptions(delimiter=sep, invalid_row_handler=on_bad_row),
            convert_options=pcsv.ConvertOptions(
                column_types=types,
                timestamp_parsers=[pcsv.ISO8601, *_TIME_FORMATS],
                strings_can_be_null=True,
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError, LookupError) as exc:
        stream.close()
        raise _csv_error(path, exc, bad, options) from None
    undecoded = [f.name for f in reader.schema if pa.types.is_binary(f.type)]
    if undecoded and not options.encoding:
        stream.close()
        raise TableFileError(
            f"{path}: column {undecoded[0]!r} is not UTF-8 text. Give the file's encoding, "
            "e.g. --encoding latin-1 (or cp1252)."
        )
    unknown = [c for c in types if c not in reader.schema.names]
    if unknown:
        stream.close()
        raise TableFileError(
            f"{path}: no column {unknown[0]!r} for --dtype/--parse-dates; the columns are "
            f"{reader.schema.names}"
        )
    return _CsvBatches(reader, stream, path, bad, options)


def _csv_error(path: str, exc: BaseException, bad: dict[str, Any], options: ImportOptions) -> Any:
    text = " ".join(str(exc).split())
    if isinstance(exc, UnicodeDecodeError) or "invalid UTF8" in text or "decode" in text:
        return TableFileError(
            f"{path}: not readable as {options.encoding or 'UTF-8'} text ({text[:120]}). "
            "Give its encoding, e.g. --encoding latin-1."
        )
    if isinstance(exc, LookupError):
        return TableFileError(f"{path}: unknown encoding {options.encoding!r}")
    row = bad.get("row")
    if row is not None:
        line = f"line {row.number}" if row.number is not None else "a line"
        return TableFileError(
            f"{path}, {line}: expected {row.expected_columns} fields, found "
            f"{row.actual_columns} ({row.text[:80]!r}). Fix the line, give the right --sep, "
            "or pass --skip-bad-lines."
        )
    if "conversion error" in text:
        return TableFileError(
            f"{path}: {text}. A later value does not fit the type read from the first rows; "
            "give the column's type, e.g. --dtype NAME=string or --dtype NAME=float64."
        )
    return TableFileError(f"{path}: {text}")


class _CsvBatches:
    """Record batches of a CSV file with date columns as timestamps; errors as
    TableFileError naming the file. Closes the file when done."""

    def __init__(
        self, reader: Any, stream: Any, path: str, bad: dict[str, Any], options: ImportOptions
    ):
        import pyarrow as pa

        self._reader, self._stream, self._path = reader, stream, path
        self._bad, self._options = bad, options
        fields = [
            pa.field(f.name, pa.timestamp("ns")) if pa.types.is_date32(f.type) else f
            for f in reader.schema
        ]
        self.schema = pa.schema(fields)

    def __iter__(self) -> Iterator[Any]:
        import pyarrow as pa

        try:
            while True:
                try:
                    batch = self._reader.read_next_batch()
                except StopIteration:
                    return
                except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
                    raise _csv_error(self._path, exc, self._bad, self._options) from None
                if batch.schema != self.schema:
                    batch = batch.cast(self.schema)
                yield batch
        finally:
            self._stream.close()

    def read_all(self) -> Any:
        import pyarrow as pa

        return pa.Table.from_batches(list(self), schema=self.schema)


def open_table_file(
    path: str | os.PathLike[str],
    options: ImportOptions | None = None,
    progress: Callable[[int], None] | None = None,
) -> Any:
    """A table file as a ``pyarrow.RecordBatchReader`` (streamed) or a DataFrame.

    Raises TableFileError for an unknown suffix (store such a file raw) or a file that
    cannot be read as its suffix says.
    """
    import pyarrow as pa

    options = options or ImportOptions()
    where = os.fspath(path)
    fmt, compression = table_format(where)
    if fmt is None:
        raise TableFileError(
            f"{where}: unknown table format (suffix {''.join(Path(where).suffixes) or 'none'}). "
            "Tables are .csv, .tsv, .parquet, .jsonl, .json, .feather or .xlsx, optionally "
            ".gz/.bz2/.zst; store any other file as it is with --raw."
        )
    if fmt in ("csv", "tsv"):
        batches = _open_csv(where, fmt, compression, options, progress)
        return pa.RecordBatchReader.from_batches(batches.schema, iter(batches))
    if options.sep or options.skip_bad_lines:
        raise TableFileError(f"{where}: --sep and --skip-bad-lines apply to CSV files, not {fmt}")
    convert = bool(options.dtype or options.parse_dates)
    try:
        if fmt == "parquet" and not compression and not convert:
            import pyarrow.parquet as pq

            parquet = pq.ParquetFile(where)
            return pa.RecordBatchReader.from_batches(
                parquet.schema_arrow, parquet.iter_batches(batch_size=_PART_ROWS)
            )
        if fmt == "feather" and not compression and not convert:
            import pyarrow.ipc as ipc

            try:
                return ipc.open_file(where).to_reader()  # type: ignore[attr-defined]
            except AttributeError:
                return pa.RecordBatchReader.from_batches(*_ipc_batches(ipc.open_file(where)))
        if fmt == "jsonl" and not convert:
            import pyarrow.json as pjson

            lines = pjson.open_json(pa.input_stream(where, compression=compression))
            return pa.RecordBatchReader.from_batches(lines.schema, lines)
        frame = _read_with_pandas(where, fmt, compression, options)
    except TableFileError:
        raise
    except ImportError as exc:
        raise TableFileError(
            f"{where}: reading {fmt} needs the package {exc.name!r}; install it (e.g. pip "
            f"install {exc.name})."
        ) from None
    except Exception as exc:
        text = " ".join(str(exc).split())[:200]
        raise TableFileError(f"{where}: cannot be read as {fmt} ({text})") from None
    return frame


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
        return f.read()


def write_table_file(
    data: Any, path: str | os.PathLike[str] | None, fmt: str | None = None
) -> None:
    """Write a table to ``path`` by its suffix (``fmt`` overrides), atomically; ``None``
    writes CSV (or ``fmt``) to stdout."""
    import sys

    import pandas as pd

    if isinstance(data, pd.Series):
        data = data.to_frame()
    elif not isinstance(data, pd.DataFrame):
        data = data.to_pandas() if hasattr(data, "to_pandas") else pd.DataFrame(data)
    compression = None
    if path is not None and fmt is None:
        fmt, compression = table_format(path)
    fmt = fmt or "csv"
    keep_index = not (isinstance(data.index, pd.RangeIndex) and data.index.name is None)
    if path is None:
        if fmt not in ("csv", "tsv", "jsonl"):
            raise TableFileError(f"Cannot write {fmt} to stdout: use csv, tsv or jsonl")
        _write(data, sys.stdout, fmt, keep_index, None)
        return
    target = Path(path)
    if fmt not in ("csv", "tsv", "parquet", "jsonl", "feather"):
        raise TableFileError(
            f"Cannot write a table to {str(target)!r}: use a .csv, .tsv, .parquet, .jsonl or "
            ".feather file (optionally .gz for text), or - for stdout"
        )
    tmp = target.with_name(f".{target.name}.om-tmp")
    try:
        _write(data, tmp, fmt, keep_index, compression)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _write(data: Any, out: Any, fmt: str, keep_index: bool, compression: str | None) -> None:
    options = {"compression": compression} if compression else {}
    if fmt in ("csv", "tsv"):
        data.to_csv(out, sep="\t" if fmt == "tsv" else ",", index=keep_index, **options)
    elif fmt == "parquet":
        data.to_parquet(out)
    elif fmt == "feather":
        (data.reset_index() if keep_index else data).to_feather(out)
    else:
        (data.reset_index() if keep_index else data).to_json(
            out, orient="records", lines=True, date_format="iso", **options
        )
