"""Table files in and out: CSV/TSV (optionally compressed), JSON lines, Parquet, Feather and
Excel, read the way pandas users expect, CSV streamed with bounded memory.

``open_table_file`` returns a ``pyarrow.RecordBatchReader`` (CSV, Parquet, Feather, JSON
lines are never read whole) or a pandas DataFrame (JSON, Excel); either goes straight to
``datasets.put``. Errors name the file, and for CSV the line and column. This module reads
CSV; the other formats are :mod:`._readers`, what they share :mod:`._tables`.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from omfs._util import atomic_path
from omfs.objects.datasets._csv_values import conversion_error
from omfs.objects.datasets._readers import open_other as _open_other
from omfs.objects.datasets._tables import (
    COMPRESSIONS,
    MAX_COLUMNS,
    ImportOptions,
    TableFileError,
    table_format,
)
from omfs.objects.datasets._tables import HEAD_BYTES as _HEAD_BYTES
from omfs.objects.datasets._tables import Batches as _Batches
from omfs.objects.datasets._tables import check_columns as _check_columns
from omfs.objects.datasets._tables import first_line as _first_line
from omfs.objects.datasets._tables import read_head as _head
from omfs.objects.datasets._tables import stream_error as _stream_error

__all__ = [
    "COMPRESSIONS",
    "MAX_COLUMNS",
    "ImportOptions",
    "TableFileError",
    "nullable_ints",
    "open_table_file",
    "table_format",
    "write_table_file",
]

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
# non-ISO layouts tried after pyarrow's ISO 8601 parser, all unambiguous about day/month
_TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y/%m/%d", "%Y/%m/%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S")


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


def _sniff_separator(head: bytes, encoding: str | None, decimal: str = ".") -> str | None:
    """The separator of a CSV file, from its first lines (``,`` when unclear); never the
    decimal point, and None when the header holds it and nothing else is clear."""
    text = head[:_HEAD_BYTES].decode(_codec(encoding), errors="replace")
    lines = text.splitlines()[:20]
    if len(lines) > 1 and not text.endswith("\n"):
        lines = lines[:-1]  # the last line may be cut
    candidates = ",;\t|".replace(decimal, "")
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters=candidates).delimiter
    except csv.Error:
        return None if lines and decimal in lines[0] else candidates[0]


def _codec(encoding: str | None) -> str:
    """A Python codec for a first look at the file (the real read reports unknown ones)."""
    import codecs

    try:
        return codecs.lookup(encoding or "utf-8").name
    except LookupError:
        return "latin-1"


def _fields(line: bytes, sep: str, encoding: str | None) -> list[str]:
    """The fields of a CSV line (quotes respected where the csv module can)."""
    text = line.decode(_codec(encoding), errors="replace").rstrip("\r")
    try:
        return next(csv.reader([text], delimiter=sep), [])
    except csv.Error:  # a field beyond csv's size limit: split at separators instead
        return text.split(sep)


def _open_csv(
    path: str,
    fmt: str,
    compression: str | None,
    options: ImportOptions,
    progress: Callable[[int], None] | None,
) -> Any:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    sep, names = _layout(path, fmt, compression, options)
    types = _column_types(options)
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
    explain = _csv_explainer(path, compression, bad, options, names)
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
            # than a block is refused (see stream_error)
            parse_options=pcsv.ParseOptions(
                delimiter=sep, newlines_in_values=True, invalid_row_handler=on_bad_row
            ),
            convert_options=_convert_options(types, options),
        )
        _check_schema(path, reader.schema, types, options)
    except (pa.ArrowInvalid, UnicodeDecodeError, LookupError, TableFileError) as exc:
        stream.close()
        raise exc if isinstance(exc, TableFileError) else explain(exc) from None
    schema = pa.schema(
        pa.field(f.name, pa.timestamp("ns")) if pa.types.is_date32(f.type) else f
        for f in reader.schema
    )
    return _Batches(reader, schema, raw, stream, explain, progress)


def _layout(
    path: str, fmt: str, compression: str | None, options: ImportOptions
) -> tuple[str, list[str]]:
    """The file's separator (given, or detected from its first lines) and column names;
    too many columns are refused from the header line alone."""
    head = _head(path, compression, options.max_line_bytes)
    header = _first_line(path, compression, head, options.max_line_bytes)
    sep = options.sep
    if sep is None:
        sep = "\t" if fmt == "tsv" else _sniff_separator(head, options.encoding, options.decimal)
    if sep is None:
        raise TableFileError(
            f"{path}: the field separator is not clear, and it cannot be the decimal point "
            f"{options.decimal!r}; give it with --sep, e.g. --sep ';'"
        )
    if sep in ("\\t", "tab"):
        sep = "\t"
    if len(sep) != 1:
        raise TableFileError(f"--sep {sep!r}: the separator must be one character")
    if sep == options.decimal:
        raise TableFileError(
            f"--decimal {options.decimal!r} is also the field separator; give the file's "
            "separator with --sep, e.g. --sep ';'"
        )
    names = _fields(header, sep, options.encoding)
    _check_columns(path, len(names), options, is_csv=True)
    return sep, names


def _column_types(options: ImportOptions) -> dict[str, Any]:
    """The Arrow types the user asked for: ``--dtype``, and timestamps for ``--parse-dates``."""
    import pyarrow as pa

    types = {c: _arrow_type(c, t) for c, t in options.dtype.items()}
    for column in options.parse_dates:
        types.setdefault(column, pa.timestamp("ns"))
    return types


def _convert_options(types: dict[str, Any], options: ImportOptions) -> Any:
    """pyarrow's conversion of CSV text: the given types, the decimal point, and dates in
    ``--date-format`` or else ISO 8601 and a few layouts that cannot swap day and month."""
    import pyarrow.csv as pcsv

    given = [options.date_format] if options.date_format else []  # other columns: ISO still
    parsers = [*given, pcsv.ISO8601, *_TIME_FORMATS]
    return pcsv.ConvertOptions(
        column_types=types,
        timestamp_parsers=parsers,
        strings_can_be_null=True,
        decimal_point=options.decimal,
    )


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
    path: str,
    compression: str | None,
    bad: dict[str, Any],
    options: ImportOptions,
    names: list[str],
) -> Callable[[BaseException], TableFileError]:
    def explain(exc: BaseException) -> TableFileError:
        return (
            _stream_error(path, compression, exc, options)
            or conversion_error(path, " ".join(str(exc).split()), names, options)
            or _csv_error(path, exc, bad, options)
        )

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
    return TableFileError(f"{path}: {text}")


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
    if options.sep or options.skip_bad_lines or options.decimal != "." or options.date_format:
        raise TableFileError(
            f"{where}: --sep, --skip-bad-lines, --decimal and --date-format apply to CSV "
            f"files, not {fmt}"
        )
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


def nullable_ints(data: Any, types: Mapping[str, Any]) -> Any:
    """``data`` with its integer columns (``types``: column -> Arrow type, as a dataset's
    ``columns`` metadata or a table's schema says) that pandas read as float because they
    hold nulls, as pandas' nullable ``Int64``: a file then says ``5``, not ``5.0``."""
    import pandas as pd

    if isinstance(data, pd.Series):
        data = data.to_frame()
    if not isinstance(data, pd.DataFrame):
        return data
    found = {
        column: "UInt64" if str(kind).startswith("uint") else "Int64"
        for column, kind in types.items()
        if str(kind).startswith(("int", "uint"))
        and column in data.columns
        and data[column].dtype.kind == "f"
    }
    return data.astype(found) if found else data


def write_table_file(
    data: Any, path: str | os.PathLike[str] | None, fmt: str | None = None
) -> None:
    """Write a table to ``path`` by its suffix (``fmt`` overrides), atomically; ``None``
    writes CSV (or ``fmt``) to stdout. ``.json`` is a list of records (what ``put`` reads
    back), ``.xlsx`` needs the package openpyxl."""
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
    if fmt not in _WRITES:
        raise TableFileError(
            f"Cannot write a table to {str(target)!r}: use a .csv, .tsv, .parquet, .jsonl, "
            ".json, .feather or .xlsx file (optionally .gz for text), or - for stdout"
        )
    if fmt == "excel":
        _check_excel(data, target)
    with atomic_path(target) as tmp:
        _write(data, tmp, fmt, keep_index, compression)


_WRITES = ("csv", "tsv", "parquet", "jsonl", "json", "feather", "excel")


def _check_excel(data: Any, target: Path) -> None:
    """Refuse, before anything is written, what an .xlsx file cannot be made of here."""
    try:
        import openpyxl  # noqa: F401
    except ImportError:
        raise TableFileError(
            f"Writing {target.name} needs the package openpyxl: pip install openpyxl "
            "(or write .csv or .parquet)"
        ) from None
    zoned = [str(c) for c in data.columns if getattr(data[c].dtype, "tz", None) is not None]
    if zoned or getattr(data.index, "tz", None) is not None:
        raise TableFileError(
            f"Cannot write {target.name}: Excel holds no time zones (column(s) "
            f"{', '.join(zoned) or 'index'}); write .csv or .parquet, or convert them first"
        )


def _write(data: Any, out: Any, fmt: str, keep_index: bool, compression: str | None) -> None:
    options = {"compression": compression} if compression else {}
    if fmt in ("csv", "tsv"):
        data.to_csv(out, sep="\t" if fmt == "tsv" else ",", index=keep_index, **options)
    elif fmt == "parquet":
        data.to_parquet(out)
    elif fmt == "feather":
        (data.reset_index() if keep_index else data).to_feather(out)
    elif fmt == "excel":
        (data.reset_index() if keep_index else data).to_excel(out, index=False, engine="openpyxl")
    else:
        (data.reset_index() if keep_index else data).to_json(
            out, orient="records", lines=fmt == "jsonl", date_format="iso", **options
        )
