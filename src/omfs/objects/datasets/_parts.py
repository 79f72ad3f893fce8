"""Parquet parts: writing them with their statistics, and reading a set of them back.

Each part's row count, byte size and per-column min / max / null count are recorded in the
log when it is written. A read builds one pyarrow ``FileSystemDataset`` whose fragments carry
those statistics as guarantees and their sizes as known, so pyarrow skips every part whose
statistics cannot match a filter without opening it, and never asks the storage for a size.
On object storage a part up to :data:`WHOLE_FILE_LIMIT` is fetched with one GET.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from typing import Any, cast

from omfs.objects.datasets._filters import all_of
from omfs.objects.datasets.schema import read_schema
from omfs.objects.records import CorruptRecord, Part, as_dict, as_int, check_payload_name

__all__ = [
    "arrow_dataset",
    "check_part_bytes",
    "damaged_part",
    "part_stats",
    "validate_part",
    "write_part",
]

#: Parts up to this size are read from object storage in one request.
WHOLE_FILE_LIMIT = 64 * 2**20
_MAX_STAT_TEXT = 128
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _temporal(t: Any) -> bool:
    import pyarrow as pa

    return bool(
        pa.types.is_timestamp(t)
        or pa.types.is_date(t)
        or pa.types.is_time(t)
        or pa.types.is_duration(t)
    )


def _encode(value: Any, t: Any) -> Any:
    """A min or max as JSON: numbers, short strings, booleans; temporal types as integers."""
    import pyarrow as pa

    if value is None or not value.is_valid:
        return None
    if _temporal(t):
        return value.cast(pa.int64()).as_py() if not pa.types.is_date32(t) else value.value
    out = value.as_py()
    if isinstance(out, bool | int | str) and not (
        isinstance(out, str) and len(out) > _MAX_STAT_TEXT
    ):
        return out
    if isinstance(out, float) and math.isfinite(out):
        return out
    return None


def _float_bounds(column: Any) -> tuple[Any, Any]:
    """Min and max of a null-free float column, or (None, None) if it holds a NaN (Arrow's
    min/max skip NaN, so a range would not hold for every row)."""

    lows, highs = [], []
    for chunk in column.chunks:
        if len(chunk):
            values = chunk.to_numpy(zero_copy_only=False)
            lows.append(values.min())
            highs.append(values.max())
    lo, hi = min(lows), max(highs)  # a NaN anywhere makes these NaN
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return None, None
    return float(lo), float(hi)


def part_stats(table: Any) -> dict[str, list[Any]]:
    """``{column: [min, max, null_count]}``. Bounds are kept for null-free columns whose
    values compare (numbers, booleans, short strings, temporal types) and never for a
    float column holding NaN: a part's bounds must hold for every one of its rows."""
    import pyarrow as pa
    import pyarrow.compute as pc

    stats: dict[str, list[Any]] = {}
    for field, column in zip(table.schema, table.columns, strict=True):
        t = field.type
        nulls = column.null_count
        lo = hi = None
        if nulls == 0 and len(column):
            try:
                if pa.types.is_floating(t):
                    lo, hi = _float_bounds(column)
                elif (
                    pa.types.is_integer(t)
                    or pa.types.is_boolean(t)
                    or pa.types.is_string(t)
                    or pa.types.is_large_string(t)
                    or _temporal(t)
                ):
                    mm = pc.min_max(column)
                    lo, hi = _encode(mm["min"], t), _encode(mm["max"], t)
            except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):
                lo = hi = None
            if lo is None or hi is None:
                lo = hi = None
        stats[field.name] = [lo, hi, nulls]
    return stats


def write_part(
    storage: Any, key: str, table: Any, row_group_size: int | None, stats: bool = True
) -> Part:
    """Write one Parquet part; module-level so Dask can run it on workers."""
    import pyarrow.parquet as pq

    from omfs.storage import HashingWriter

    options = {"row_group_size": row_group_size} if row_group_size else {}
    if storage.is_local:
        path = storage.local(storage.path(key))  # never through a linked folder
        os.makedirs(os.path.dirname(path), exist_ok=True)
        out = open(path, "wb")  # noqa: SIM115 - closed below
    else:
        out = storage.open(key, "wb")
    with out:
        # hashed on a second thread as it is written: its sha256 without reading it back
        writer = HashingWriter(out)
        pq.write_table(table, writer, **options)
    part: Part = {
        "file": key.rsplit("/", 1)[-1],
        "rows": table.num_rows,
        "size": writer.size,
        "sha256": writer.hasher.hexdigest(),
    }
    if stats:
        part["stats"] = part_stats(table)
    return part


def validate_part(part: Any) -> Part:
    """A part record read from the log, checked: a plain file name and whole numbers."""
    part = as_dict(part, "a part", optional=False)
    check_payload_name(part.get("file"))
    as_int(part.get("rows"), "rows", 0)
    as_int(part.get("size"), "size", 0)
    sha = part.get("sha256")  # parts written before omfs recorded it have none
    if sha is not None and not (isinstance(sha, str) and _SHA256.fullmatch(sha)):
        raise CorruptRecord("a part's sha256 must be 64 hex digits")
    for column, value in as_dict(part.get("stats"), "stats").items():
        if not isinstance(value, list) or len(value) != 3:
            raise CorruptRecord(f"the statistics of column {column!r} are not [min, max, nulls]")
        lo, hi, nulls = value
        as_int(nulls, "a null count", 0)
        for v in (lo, hi):
            if v is not None and not isinstance(v, bool | int | float | str):
                raise CorruptRecord(f"a statistic of column {column!r} is not a plain value")
    return cast(Part, part)


def _guarantee(schema: Any, part: Part) -> Any:
    """What every row of ``part`` satisfies, as a pyarrow expression (None: nothing known)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    terms = []
    rows = part["rows"]
    names = set(schema.names)
    for column, (lo, hi, nulls) in part.get("stats", {}).items():
        if column not in names:
            continue
        t = schema.field(column).type
        field = pc.field(column)
        if rows and nulls == rows:
            terms.append(field.is_null())
            continue
        if lo is None or hi is None or nulls:
            continue  # with nulls, a range would not hold for every row
        try:
            if _temporal(t):
                physical = pa.int32() if pa.types.is_date32(t) else pa.int64()
                lo_s = pa.scalar(lo, physical).cast(t)
                hi_s = pa.scalar(hi, physical).cast(t)
            else:
                lo_s, hi_s = pa.scalar(lo, t), pa.scalar(hi, t)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
            continue
        terms.append((field >= lo_s) & (field <= hi_s))
    return all_of(terms)


def arrow_dataset(
    storage: Any,
    keys: list[str],
    parts: list[Part],
    schema: Any,
    whole_file_limit: int = WHOLE_FILE_LIMIT,
) -> Any:
    """A pyarrow dataset over ``parts`` (stored at ``keys``), with statistics and sizes,
    typed as ``schema`` but for dictionaries of numbers, read as their values
    (:func:`~omfs.objects.datasets.schema.read_schema`)."""
    import pyarrow.dataset as ds

    schema = read_schema(schema)

    fmt = ds.ParquetFileFormat()
    # locally, a stat per part: a symlink or a size other than the log's is refused before
    # pyarrow opens it (on object storage the reads themselves check, without a request)
    storage.check_regular((k, p["size"]) for k, p in zip(keys, parts, strict=True))
    filesystem = _filesystem(storage, keys, parts, whole_file_limit)
    fragments = []
    for key, part in zip(keys, parts, strict=True):
        guarantee = _guarantee(schema, part)
        kwargs: dict[str, Any] = {"file_size": part["size"]}
        if guarantee is not None:
            kwargs["partition_expression"] = guarantee
        fragments.append(fmt.make_fragment(storage.path(key), filesystem=filesystem, **kwargs))
    return ds.FileSystemDataset(fragments, schema, fmt, filesystem)


def _filesystem(storage: Any, keys: list[str], parts: list[Part], limit: int) -> Any:
    if storage.is_local:
        return storage.arrow_filesystem()
    import pyarrow.fs as pafs

    if storage.protocol == "memory":
        limit = 2**62  # already in memory: never stream
    sizes = {storage.path(k): p["size"] for k, p in zip(keys, parts, strict=True)}
    shas = {storage.path(k): p.get("sha256") for k, p in zip(keys, parts, strict=True)}
    return pafs.PyFileSystem(_known_size_handler()(storage, sizes, shas, limit))


def check_part_bytes(path: str, data: bytes, size: int, sha256: str | None) -> None:
    """Refuse the whole bytes of a part read from ``path`` unless they have the size and
    (where the log records it) the sha256 of the log (IntegrityError naming the file)."""
    from omfs.storage import size_error

    if len(data) != size:
        raise size_error(path, len(data), size)
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise sha_error(path)


def sha_error(path: str) -> Any:
    from omfs.errors import IntegrityError

    return IntegrityError(
        f"{path!r} does not match the sha256 its log records: it was changed outside omfs, "
        "so it was not read. Restore it from a copy, or drop that version ('om fsck' lists "
        "every such problem)."
    )


def damaged_part(storage: Any, keys: list[str], parts: list[Part]) -> Any:
    """After a read failed: the IntegrityError naming the first part that is not what the
    log records (a symlink, another size, another sha256), or None when all check out.
    Only run on the failure path, where its requests cost nothing that matters."""
    from omfs.errors import IntegrityError
    from omfs.storage import size_error

    for key, part in zip(keys, parts, strict=True):
        path = storage.path(key)
        try:
            storage.check_regular([(key, part["size"])])
            size = storage.size(key)
        except IntegrityError as exc:
            return exc
        except FileNotFoundError:
            continue  # the caller names a missing part its own way
        if size != part["size"]:
            return size_error(path, size, part["size"])
        if part.get("sha256") is not None:
            digest = hashlib.sha256()
            for chunk in storage.iter_chunks(key):
                digest.update(chunk)
            if digest.hexdigest() != part["sha256"]:
                return sha_error(path)
    return None


_HANDLER: Any = None


def _known_size_handler() -> Any:
    """fsspec for pyarrow, using the sizes the log knows: small files in one GET, larger
    ones opened with their size (no HEAD request either way). Defined on first use, so that
    importing omfs does not import pyarrow."""
    global _HANDLER
    if _HANDLER is None:
        import pyarrow as pa
        import pyarrow.fs as pafs

        class KnownSizeHandler(pafs.FSSpecHandler):  # type: ignore[misc]
            def __init__(
                self,
                storage: Any,
                sizes: dict[str, int],
                shas: dict[str, str | None],
                limit: int,
            ):
                super().__init__(storage.fs)
                self.storage = storage
                self.sizes = sizes
                self.shas = shas
                self.limit = limit
                # the part read last: a read that opens a part for its footer, then for its
                # row groups (a filter that keeps row positions) fetches it once
                self.last: tuple[str, bytes] | None = None

            def open_input_file(self, path: str) -> Any:
                size = self.sizes.get(path)
                if size is not None and size <= self.limit:
                    last = self.last
                    if last is not None and last[0] == path:
                        return pa.BufferReader(last[1])
                    # read whole anyway: its size and sha256 are checked at no extra request
                    data = self.storage.cat_path(path)
                    check_part_bytes(path, data, size, self.shas.get(path))
                    self.last = (path, data)
                    return pa.BufferReader(data)
                if size is not None:
                    return pa.PythonFile(self.fs.open(path, mode="rb", size=size), mode="r")
                return super().open_input_file(path)

        _HANDLER = KnownSizeHandler
    return _HANDLER
