"""What every reader of a table file shares: the options, the error, the format of a file
by its suffix, the first bytes and line of a file, the column limit, the too-long-line
error, and the record batches of a streamed text table (CSV, JSON lines)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omfs.errors import TableFileError

__all__ = [
    "COMPRESSIONS",
    "HEAD_BYTES",
    "MAX_COLUMNS",
    "MAX_LINE_BYTES",
    "PART_ROWS",
    "Batches",
    "ImportOptions",
    "TableFileError",
    "check_columns",
    "find_long_line",
    "first_line",
    "long_line_error",
    "read_head",
    "size_text",
    "stream_error",
    "table_format",
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
PART_ROWS = 1_000_000
#: the most columns a table file may have unless ``max_columns`` (``--max-columns``) raises
#: it: each column costs ~10 KB while reading and writing Parquet (10^6 columns took 13 GB)
MAX_COLUMNS = 10_000
#: the longest line of a CSV or JSON-lines file unless ``max_line_bytes`` (``--max-line-bytes``)
#: raises it; it is pyarrow's block size, and memory is a small multiple of it
MAX_LINE_BYTES = 8 * 2**20
_LINE_BYTES_CEILING = 2**30  # pyarrow's block size is a 32-bit int
HEAD_BYTES = 64 * 1024


@dataclass
class ImportOptions:
    """How to read a table file; the CLI's ``--sep``, ``--encoding``, ``--parse-dates``,
    ``--dtype``, ``--skip-bad-lines``, ``--decimal`` (``","`` reads ``0,038`` as a number)
    and ``--date-format`` (strptime, e.g. ``"%d/%m/%Y %H:%M"``; else ISO dates)."""

    sep: str | None = None
    encoding: str | None = None
    parse_dates: list[str] = field(default_factory=list)
    dtype: dict[str, str] = field(default_factory=dict)
    decimal: str = "."
    date_format: str | None = None
    skip_bad_lines: bool = False
    max_columns: int = MAX_COLUMNS
    max_line_bytes: int = MAX_LINE_BYTES
    skipped: int = 0  # filled in while reading: bad lines skipped

    def check(self) -> None:
        """Refuse limits that cannot work, naming the option."""
        if len(self.decimal) != 1 or self.decimal.isdigit():
            raise TableFileError(f"--decimal {self.decimal!r}: give one character, e.g. ,")
        if self.date_format is not None and "%" not in self.date_format:
            raise TableFileError(
                f"--date-format {self.date_format!r}: give a strptime format, e.g. '%d/%m/%Y'"
            )
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


def read_head(path: str, compression: str | None, limit: int) -> bytes:
    """The file's first bytes (decompressed): 64 KiB, and on until the first line ends or
    ``limit + 1`` bytes are in hand, so even a huge first line costs at most ``limit``."""
    import pyarrow as pa

    with pa.input_stream(path, compression=compression) as f:
        head = bytearray(f.read(HEAD_BYTES))
        ended = b"\n" in head
        while not ended and len(head) <= limit:
            chunk = f.read(min(HEAD_BYTES, limit + 1 - len(head)))
            if not chunk:
                break
            ended = b"\n" in chunk
            head += chunk
    return bytes(head)


def first_line(path: str, compression: str | None, head: bytes, limit: int) -> bytes:
    """The first line of ``head``; a first line longer than ``limit`` is refused."""
    end = head.find(b"\n")
    line = head if end == -1 else head[:end]
    if len(line) > limit:
        found = find_long_line(path, compression, limit)
        raise long_line_error(path, 1, found[1] if found else None, limit)
    return line


def check_columns(path: str, count: int, options: ImportOptions, *, is_csv: bool = False) -> None:
    """Refuse a table wider than ``max_columns`` before anything is built for its columns."""
    if count > options.max_columns:
        raise TableFileError(
            f"{path}: {count:,} columns, more than the {options.max_columns:,} allowed "
            f"(each costs memory while importing). If that is right, raise the limit, e.g. "
            f"--max-columns {count} (max_columns= in Python)"
            + ("; otherwise check --sep." if is_csv else ".")
        )


def size_text(size: int) -> str:
    for unit, factor in (("MiB", 2**20), ("KiB", 2**10)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size:,} bytes"


def long_line_error(path: str, line: int | None, length: int | None, limit: int) -> TableFileError:
    """The refusal of a line longer than ``limit``, naming the option that raises it."""
    if line is not None and length is not None:
        what = f"{path}, line {line}: {length:,} bytes, longer than"
    else:  # no physical line is too long: a quoted value spans lines
        what = f"{path}: a row (with quoted line breaks) is longer than"
    suggest = f"{-(-max(length or 0, 2 * limit) // 10**6) + 1}MB"
    return TableFileError(
        f"{what} the {size_text(limit)} a line may have. If that is right, raise the limit, "
        f"e.g. --max-line-bytes {suggest} (max_line_bytes= in Python; memory grows with it)."
    )


def find_long_line(path: str, compression: str | None, limit: int) -> tuple[int, int] | None:
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
    nothing (``find_long_line`` has checked the physical lines already)."""
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


def stream_error(
    path: str, compression: str | None, exc: BaseException, options: ImportOptions
) -> TableFileError | None:
    """A pyarrow block-size failure as the line (or the row whose quoted values span
    lines) that is too long; None for other errors."""
    text = str(exc)
    if "straddl" not in text and "out of sync" not in text:
        return None
    limit = options.max_line_bytes
    found = find_long_line(path, compression, limit)
    if found is None:
        row = _find_long_row(path, compression, limit)
        if row is not None:
            return _long_row_error(path, *row, limit)
    line, length = found if found is not None else (None, None)
    return long_line_error(path, line, length, limit)


def _long_row_error(path: str, line: int, length: int, limit: int) -> TableFileError:
    """The refusal of a row whose quoted values span lines and exceed ``limit`` bytes."""
    suggest = f"{-(-max(length, 2 * limit) // 10**6) + 1}MB"
    return TableFileError(
        f"{path}, line {line}: the row starting there holds a quoted value that spans lines, "
        f"{length:,} bytes in all, longer than the {size_text(limit)} a row may have; "
        f"nothing was imported. If that is right, raise the limit, e.g. --max-line-bytes "
        f"{suggest} (max_line_bytes= in Python; memory grows with it)."
    )


class Batches:
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
