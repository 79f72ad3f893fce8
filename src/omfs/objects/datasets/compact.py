"""``compact``: rewrite a dataset's many small parts into few large ones, as a new version
with the same rows, order and dtypes."""

from __future__ import annotations

from typing import Any

from omfs.errors import CommitConflictError, InvalidTypeError
from omfs.objects.commits import leased
from omfs.objects.datasets import _convert
from omfs.objects.datasets.schema import as_stored, read_schema
from omfs.objects.datasets.versions import DatasetVersions
from omfs.objects.metadata import Metadata, utcnow
from omfs.objects.records import Commit, Part, State, VersionRecord
from omfs.storage import HashingWriter, unique_name

__all__ = ["COMPACT_TARGET", "DatasetCompactor"]

#: ``compact()`` merges parts into files of about this size.
COMPACT_TARGET = 128 * 2**20


class DatasetCompactor(DatasetVersions):
    """``compact`` of the dataset store."""

    @leased(0)
    def compact(self, name: str, *, target_size: int = COMPACT_TARGET) -> Metadata:
        """Rewrite the latest version's many small parts into few of about ``target_size``
        bytes, as a new version with the same rows, order and dtypes. Older versions stay
        readable; appends committed meanwhile are kept on top. Returns the new version's
        metadata (the latest unchanged when there is nothing to merge)."""
        base, rec, state = self.select(name, full=True)
        if rec.kind == _convert.KIND_RAW:
            raise InvalidTypeError(
                f"Dataset {base!r} is a raw file: there are no parts to compact."
            )
        parts = self.parts_of(base, state, rec)
        groups: list[list[Part]] = []
        for part in parts:
            if groups and sum(p["size"] for p in groups[-1]) + part["size"] <= target_size:
                groups[-1].append(part)
            else:
                groups.append([part])
        if all(len(g) == 1 for g in groups):
            return self.metadata_for(base, rec, state.tags)
        schema = self._schema(base, rec)
        new_parts: list[Part] = []
        written: list[str] = []
        try:
            for group in groups:
                if len(group) == 1:
                    new_parts.append(group[0])
                    continue
                merged = self._merge_parts(base, group, schema)
                written.append(merged["file"])
                new_parts.append(merged)

            def change(state: State) -> Commit:
                latest = state.records[state.latest]  # type: ignore[index]
                now = self.parts_of(base, state, latest)
                if [p["file"] for p in now[: len(parts)]] != [p["file"] for p in parts] or (
                    latest.info.get("schema") != rec.info.get("schema")
                ):
                    raise CommitConflictError(
                        f"Dataset {base!r} in bucket {self.bucket!r} was replaced while it was "
                        "being compacted; nothing was changed. Compact it again."
                    )
                add = new_parts + now[len(parts) :]
                info = {k: v for k, v in latest.info.items() if k not in ("add", "parent")}
                info.update(parts=len(add), bytes=sum(p["size"] for p in add))
                new = VersionRecord(
                    version=state.next_version,
                    created=utcnow(),
                    kind=latest.kind,
                    op="compact",
                    attributes=dict(latest.attributes),
                    info={**info, "parent": None, "add": add},
                )
                return Commit(op="compact", version=new)

            state = self.commit(base, change, retry=True, full=True)
            return self.metadata_for(base, state.latest_record(), state.tags)
        except BaseException:
            self.storage.delete(self.data_key(base, f) for f in written)
            raise

    def _merge_parts(self, name: str, group: list[Part], schema: Any) -> Part:
        """Write the rows of ``group`` as one part, one row group at a time."""
        import pyarrow.parquet as pq

        key = self.data_key(name, unique_name(".parquet"))
        with self.storage.open(key, "wb") as f:
            out = HashingWriter(f)  # its sha256 as it is written
            with pq.ParquetWriter(out, schema) as writer:
                rows = self._copy_rows(name, group, schema, writer)
        return {
            "file": key.rsplit("/", 1)[-1],
            "rows": rows,
            "size": out.size,
            "sha256": out.hasher.hexdigest(),
            "stats": _merged_stats(group),
        }

    def _copy_rows(self, name: str, group: list[Part], schema: Any, writer: Any) -> int:
        """Write the rows of the parts of ``group`` to ``writer``, one row group at a time."""
        import pyarrow.parquet as pq

        rows = 0
        for part in group:
            with self.storage.open(self.data_key(name, part["file"]), "rb") as f:
                reader = pq.ParquetFile(f)
                for i in range(reader.num_row_groups):
                    table = _with_columns(reader.read_row_group(i), schema)
                    table = as_stored(table.cast(read_schema(schema)), schema)
                    writer.write_table(table)
                    rows += table.num_rows
        return rows


def _with_columns(table: Any, schema: Any) -> Any:
    """``table`` with the columns of ``schema`` in its order, those it lacks as nulls (a part
    written before an append added columns)."""
    import pyarrow as pa

    if table.schema.names == schema.names:
        return table
    have = set(table.schema.names)
    columns = [
        table.column(f.name) if f.name in have else pa.nulls(table.num_rows, f.type) for f in schema
    ]
    return pa.Table.from_arrays(columns, names=schema.names)


def _merged_stats(parts: list[Part]) -> dict[str, list[Any]]:
    """The statistics of parts written as one: min of mins, max of maxes, sum of nulls."""
    out: dict[str, list[Any]] = {}
    for column in parts[0].get("stats", {}):
        found = [p.get("stats", {}).get(column) for p in parts]
        values = [v for v in found if v is not None]
        if len(values) < len(found):
            continue
        nulls = sum(v[2] for v in values)
        bounds = [v for v in values if v[0] is not None]
        if len(bounds) < len([p for p, v in zip(parts, values, strict=True) if v[2] < p["rows"]]):
            out[column] = [None, None, nulls]
            continue
        try:
            lo = min(v[0] for v in bounds) if bounds else None
            hi = max(v[1] for v in bounds) if bounds else None
        except TypeError:
            lo = hi = None
        out[column] = [lo, hi, nulls]
    return out
