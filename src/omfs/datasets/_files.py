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
#: the most columns a table file may have unless ``max_columns`` (``--max-columns``) raises
#: it: each column costs ~10 KB while reading and writing Parquet (10^6 columns took 13 GB)
MAX_COLUMNS = 10_000
#: the longest line of a CSV or JSON-lines file unless ``max_line_bytes`` (``--max-line-bytes``)
#: raises it; it is pyarrow's block size, and memory is a small multiple of it
MAX_LINE_BYTES = 8 * 2**20
_LINE_BYTES_CEILING = 2**30  # pyarrow's block size is a 32-bit int
_HEAD_BYTES = 64 * 1024
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
    max_columns: int = MAX_COLUMNS
    max_line_bytes: int = MAX_LINE_BYTES
    skipped: int = 0  # filled in while reading: bad lines skipped

    def check(self) -> None:
        """Refuse limits that cannot work, naming the option."""
        if self.max_columns < 1:
            raise TableFileError(f"--max-columns {self.max_columns}: give at least 1")
        if not 0 < self.max_line_bytes <= _LINE_BYTES_CEILING:
            raise TableFileError(
                f"--max-line-bytes {self.max_line_bytes}: give a size between 1 byte and 1GiB"
            )


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


def _head(path: str, compression: str | None, limit: int) -> bytes:
    """The file's first bytes (decompressed): 64 KiB, and on until the first line ends or
    ``limit + 1`` bytes are in hand, so even a huge first line costs at most ``limit``."""
    import pyarrow as pa

    with pa.input_stream(path, compression=compression) as f:
        head = bytearray(f.read(_HEAD_BYTES))
        ended = b"\n" in head
        while not ended and len(head) <= limit:
            chunk = f.read(min(_HEAD_BYTES, limit + 1 - len(head)))
            if not chunk:
                break
            ended = b"\n" in chunk
            head += chunk
    return bytes(head)


def _first_line(path: str, compression: str | None, head: bytes, limit: int) -> bytes:
    """The first line of ``head``; a first line longer than ``limit`` is refused."""
    end = head.find(b"\n")
    line = head if end == -1 else head[:end]
    if len(line) > limit:
        found = _find_long_line(path, compression, limit)
        raise _long_line_error(path, 1, found[1] if found else None, limit)
    return line


def _sniff_separator(head: bytes, encoding: str | None) -> str:
    """The separator of a CSV file, from its first lines (``,`` when unclear)."""
    text = head[:_HEAD_BYTES].decode(_codec(encoding), errors="replace")
    lines = text.splitlines()[:20]
    if len(lines) > 1 and not text.endswith("\n"):
        lines = lines[:-1]  # the last line may be cut
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def _codec(encoding: str | None) -> str:
    """A Python codec for a first look at the file (the real read reports unknown ones)."""
    import codecs

    try:
        return codecs.lookup(encoding or "utf-8").name
    except LookupError:
        return "latin-1"


def _count_fields(line: bytes, sep: str, encoding: str | None) -> int:
    """How many fields a CSV line holds (quotes respected where the csv module can)."""
    text = line.decode(_codec(encoding), errors="replace")
    try:
        return len(next(csv.reader([text], delimiter=sep), []))
    except csv.Error:  # a field beyond csv's size limit: count separators instead
        return text.count(sep) + 1


def _check_columns(path: str, count: int, options: ImportOptions, *, is_csv: bool = False) -> None:
    """Refuse a table wider than ``max_columns`` before anything is built for its columns."""
    if count > options.max_columns:
        raise TableFileError(
            f"{path}: {count:,} columns, more than the {options.max_columns:,} allowed "
            f"(each costs memory while importing). If that is right, raise the limit, e.g. "
            f"--max-columns {count} (max_columns= in Python)"
            + ("; otherwise check --sep." if is_csv else ".")
        )


def _size_text(size: int) -> str:
    for unit, factor in (("MiB", 2**20), ("KiB", 2**10)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size:,} bytes"


def _long_line_error(path: str, line: int | None, length: int | None, limit: int) -> Any:
    """The refusal of a line longer than ``limit``, naming the option that raises it."""
    if line is not None and length is not None:
        what = f"{path}, line {line}: {length:,} bytes, longer than"
    else:  # no physical line is too long: a quoted value spans lines
        what = f"{path}: a row (with quoted line breaks) is longer than"
    suggest = f"{-(-max(length or 0, 2 * limit) // 10**6) + 1}MB"
    return TableFileError(
        f"{what} the {_size_text(limit)} a line may have. If that is right, raise the limit, "
        f"e.g. --max-line-bytes {suggest} (max_line_bytes= in Python; memory grows with it)."
    )


def _find_long_line(path: str, compression: str | None, limit: int) -> tuple[int, int] | None:
    """``(line number, length)`` of the first line longer than ``limit`` bytes, read in
    1 MiB chunks (bounded memory); None when every line fits."""
    import pyarrow as pa

    line, start, offset = 1, 0, 0  # start: where the current line begins
    found: int | None = None  # the long line's number, once seen; read on to its end
    with pa.input_stream(path, compression=compression) as f:
        while chunk := f.read(2**20):
            pos = 0
            while (end := chunk.find(b"\n", pos)) != -1:
                length = offset + end - start
                if found is not None or length > limit:
                    return line, length
                line, start, pos = line + 1, offset + end + 1, end + 1
                last = chunk.rfind(b"\n")
                if limit >= len(chunk) and last >= pos:  # the lines inside this chunk fit
                    line += chunk.count(b"\n", pos, last) + 1
                    start, pos = offset + last + 1, last + 1
            offset += len(chunk)
            if offset - start > limit:
                found = line
    return (line, offset - start) if found is not None else None


def _find_long_row(path: str, compression: str | None, limit: int) -> tuple[int, int] | None:
    """``(line, length)`` of the first CSV row longer than ``limit`` bytes whose quoted
    values span lines (``line``: where the row starts), read in 1 MiB chunks (bounded
    memory); None when every row fits. Jumps from quote to quote: a line without one costs
    nothing (``_find_long_line`` has checked the physical lines already)."""
    import pyarrow as pa

    line, row_line, row_start, offset, quoted = 1, 1, 0, 0, False
    long = False
    with pa.input_stream(path, compression=compression) as f:
        while chunk := f.read(2**20):
            pos = 0
            while pos <= len(chunk):
                quote = chunk.find(b'"', pos)
                end = quote if quote != -1 else len(chunk)
                if quoted:
                    line += chunk.count(b"\n", pos, end)
                else:
                    newline = chunk.find(b"\n", pos, end)
                    if newline != -1:
                        if long or offset + newline - row_start > limit:
                            return row_line, offset + newline - row_start
                        last = chunk.rfind(b"\n", pos, end)
                        line += chunk.count(b"\n", pos, last + 1)
                        row_line, row_start = line, offset + last + 1
                long = long or offset + end - row_start > limit
                if quote == -1:
                    break
                quoted, pos = not quoted, quote + 1
            offset += len(chunk)
    return (row_line, offset - row_start) if long else None


def _stream_error(
    path: str, compression: str | None, exc: BaseException, options: ImportOptions
) -> TableFileError | None:
    """A pyarrow block-size failure as the line (or the row whose quoted values span
    lines) that is too long; None for other errors."""
    text = str(exc)
    if "straddl" not in text and "out of sync" not in text:
        return None
    limit = options.max_line_bytes
    found = _find_long_line(path, compression, limit)
    if found is None:
        row = _find_long_row(path, compression, limit)
        if row is not None:
            return _long_row_error(path, *row, limit)
    line, length = found if found is not None else (None, None)
    return _long_line_error(path, line, length, limit)


def _long_row_error(path: str, line: int, length: int, limit: int) -> Any:
    """The refusal of a row whose quoted values span lines and exceed ``limit`` bytes."""
    suggest = f"{-(-max(length, 2 * limit) // 10**6) + 1}MB"
    return TableFileError(
        f"{path}, line {line}: the row starting there holds a quoted value that spans lines, "
        f"{length:,} bytes in all, longer than the {_size_text(limit)} a row may have; "
        f"nothing was imported. If that is right, raise the limit, e.g. --max-line-bytes "
        f"{suggest} (max_line_bytes= in Python; memory grows with it)."
    )


def _open_csv(
    path: str,
    fmt: str,
    compression: str | None,
    options: ImportOptions,
    progress: Callable[[int], None] | None,
) -> Any:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    head = _head(path, compression, options.max_line_bytes)
    header = _first_line(path, compression, head, options.max_line_bytes)
    sep = options.sep
    if sep is None:
        sep = "\t" if fmt == "tsv" else _sniff_separator(head, options.encoding)
    if sep in ("\\t", "tab"):
        sep = "\t"
    if len(sep) != 1:
        raise TableFileError(f"--sep {sep!r}: the separator must be one character")
    del head
    _check_columns(path, _count_fields(header, sep, options.encoding), options, is_csv=True)
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

    # a native file: pyarrow reads ahead on its own thread, and a Python file object there
    # could abort the process (std::terminate) when an error ends the read early
    raw = pa.OSFile(path)
    stream = pa.CompressedInputStream(raw, compression) if compression else raw
    explain = _csv_explainer(path, compression, bad, options)
    try:
        reader = pcsv.open_csv(
            stream,
            read_options=pcsv.ReadOptions(
                encoding=options.encoding or "utf8",
                block_size=options.max_line_bytes,
                use_threads=False,
            ),
            # quote-aware blocks: a quoted value with line breaks is never cut at a block's
            # end (read as a short row, or the rest of it as rows of its own); one longer
            # than a block is refused (see _stream_error)
            parse_options=pcsv.ParseOptions(
                delimiter=sep, newlines_in_values=True, invalid_row_handler=on_bad_row
            ),
            convert_options=pcsv.ConvertOptions(
                column_types=types,
                timestamp_parsers=[pcsv.ISO8601, *_TIME_FORMATS],
                strings_can_be_null=True,
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError, LookupError) as exc:
        stream.close()
        raise explain(exc) from None
    try:
        _check_schema(path, reader.schema, types, options)
    except TableFileError:
        stream.close()
        raise
    schema = pa.schema(
        pa.field(f.name, pa.timestamp("ns")) if pa.types.is_date32(f.type) else f
        for f in reader.schema
    )
    return _Batches(reader, schema, raw, stream, explain, progress)


def _check_schema(path: str, schema: Any, types: dict[str, Any], options: ImportOptions) -> None:
    """Refuse what the CSV reader made of the first block: too wide, undecoded text, or
    --dtype/--parse-dates naming a column the file does not have."""
    import pyarrow as pa

    _check_columns(path, len(schema), options, is_csv=True)
    undecoded = [f.name for f in schema if pa.types.is_binary(f.type)]
    if undecoded and not options.encoding:
        raise TableFileError(
            f"{path}: column {undecoded[0]!r} is not UTF-8 text. Give the file's encoding, "
            "e.g. --encoding latin-1 (or cp1252)."
        )
    unknown = [c for c in types if c not in schema.names]
    if unknown:
        raise TableFileError(
            f"{path}: no column {unknown[0]!r} for --dtype/--parse-dates; the columns are "
            f"{schema.names}"
        )


def _csv_explainer(
    path: str, compression: str | None, bad: dict[str, Any], options: ImportOptions
) -> Callable[[BaseException], TableFileError]:
    def explain(exc: BaseException) -> TableFileError:
        return _stream_error(path, compression, exc, options) or _csv_error(path, exc, bad, options)

    return explain


def _csv_error(
    path: str, exc: BaseException, bad: dict[str, Any], options: ImportOptions
) -> TableFileError:
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


class _Batches:
    """Record batches of a streamed text table (CSV, JSON lines) cast to ``schema``; read
    errors as TableFileError (``explain``); progress in bytes of the file. Closes the file
    when done."""

    def __init__(
        self,
        reader: Any,
        schema: Any,
        raw: Any,
        stream: Any,
        explain: Callable[[BaseException], TableFileError],
        progress: Callable[[int], None] | None,
    ):
        self._reader, self.schema, self._raw, self._stream = reader, schema, raw, stream
        self._explain, self._progress, self._reported = explain, progress, 0

    def __iter__(self) -> Iterator[Any]:
        import pyarrow as pa

        try:
            while True:
                try:
                    batch = self._reader.read_next_batch()
                except StopIteration:
                    return
                except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
                    raise self._explain(exc) from None
                self._advance()
                if batch.schema != self.schema:
                    batch = batch.cast(self.schema)
                yield batch
        finally:
            self._advance()
            # drop pyarrow's reader now, so it stops reading ahead while Arrow is alive,
            # not in the interpreter's teardown (where a busy reader thread aborts)
            self._reader = None
            self._stream.close()

    def _advance(self) -> None:
        if self._progress is not None and not self._raw.closed:
            position = self._raw.tell()
            self._progress(position - self._reported)
            self._reported = position

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
    options.check()
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
        table = _open_other(where, fmt, compression, convert, options, progress)
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
    width = len(table.columns) if hasattr(table, "iloc") else len(table.schema)
    _check_columns(where, width, options)  # before a single Parquet column is written
    return table


def _open_other(
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
            parquet.schema_arrow, parquet.iter_batches(batch_size=_PART_ROWS)
        )
    if fmt == "feather" and not compression and not convert:
        import pyarrow.ipc as ipc

        try:
            return ipc.open_file(path).to_reader()  # type: ignore[attr-defined]
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
) -> _Batches:
    """JSON lines streamed a block of ``max_line_bytes`` at a time (a native file, as CSV)."""
    import pyarrow as pa
    import pyarrow.json as pjson

    head = _head(path, compression, options.max_line_bytes)
    _first_line(path, compression, head, options.max_line_bytes)

    def explain(exc: BaseException) -> TableFileError:
        text = " ".join(str(exc).split())[:200]
        return _stream_error(path, compression, exc, options) or TableFileError(
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
        _check_columns(path, len(reader.schema), options)
    return _Batches(reader, reader.schema, raw, stream, explain, progress)


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
