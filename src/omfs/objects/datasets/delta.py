"""The Delta bridge: a dataset's versions as the commits of a Delta table (deltalake).

Delta version k holds the rows of omfs version k+1: an append (a version whose parent is
the version before it) is a Delta append of its own parts; any other version (a put, a
compaction, the first version after a drop) a Delta overwrite with all its parts; a
dropped version an overwrite with no rows, so the numbering holds. Each commit records
the omfs name and version and a digest of its parts in its commit info: a re-run continues
after the last version exported, and refuses a table that does not continue this dataset.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from omfs.errors import MissingExtraError, OmfsError, SyncError

__all__ = [
    "DELTA_EXTRA",
    "DeltaExport",
    "DeltaStep",
    "delta_errors",
    "parts_digest",
    "write_steps",
]

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")

DELTA_EXTRA = "pip install 'omfs[delta]'"


@dataclass
class DeltaExport:
    """What ``export_delta`` did: the omfs versions it wrote as Delta versions (none when
    the table was up to date), and the Delta table's latest version after it."""

    name: str
    url: str
    exported: list[int] = field(default_factory=list)
    delta_version: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DeltaStep:
    """One omfs version to write: ``mode`` (append or overwrite), its rows as an Arrow
    dataset (None: no rows, a dropped version, with ``schema``), and its parts' digest."""

    version: int
    mode: str
    rows: Any
    schema: Any
    digest: str


def deltalake_module() -> Any:
    try:
        import deltalake
    except ImportError:
        raise MissingExtraError(
            f"Exporting to Delta needs deltalake, which is not installed: {DELTA_EXTRA}"
        ) from None
    return deltalake


@contextlib.contextmanager
def delta_errors(url: str) -> Iterator[None]:
    """deltalake's errors (several lines, terminal colours) as one line of SyncError."""
    deltalake = deltalake_module()
    try:
        yield
    except OmfsError:
        raise
    except (OSError, deltalake.exceptions.DeltaError) as exc:
        lines = [line.strip(" \t\u21b3") for line in _ANSI.sub("", str(exc)).splitlines()]
        detail = "; ".join(line for line in lines if line)[:300] or type(exc).__name__
        raise SyncError(
            f"Cannot export to the Delta table at {url!r}: {detail}. Give a folder (or an "
            "s3:// URL) that is a Delta table exported from this dataset, or does not exist."
        ) from None


def parts_digest(files: list[str]) -> str:
    """A short digest of a version's part files: what identifies its rows across re-runs."""
    return hashlib.sha256(json.dumps(files).encode()).hexdigest()[:32]


def exported_up_to(
    url: str, name: str, storage_options: dict[str, str] | None, digest_of: Any
) -> int:
    """The last omfs version already in the Delta table at ``url`` (0 for no table);
    SyncError when the table is not this dataset's export, version for version.
    ``digest_of(v)`` is the parts digest of live version v (None when dropped)."""
    deltalake = deltalake_module()
    if not deltalake.DeltaTable.is_deltatable(url, storage_options=storage_options):
        return 0
    table = deltalake.DeltaTable(url, storage_options=storage_options)
    latest = int(table.version())
    info = (table.history(1) or [{}])[0]
    recorded = info.get("omfs.version")
    if info.get("omfs.name") != name or recorded != str(latest + 1):
        if info.get("omfs.name") is None:
            why = "it was not written by omfs's export_delta"
        else:
            why = f"it records {info.get('omfs.name')!r} version {recorded!r}"
        raise SyncError(
            f"The Delta table at {url!r} has diverged from dataset {name!r}: its version "
            f"{latest} was not written by export_delta as version {latest + 1} of {name!r} "
            f"({why}). Export to a new URL."
        )
    digest = digest_of(latest + 1)
    if digest is not None and info.get("omfs.parts") not in (digest, None):
        raise SyncError(
            f"The Delta table at {url!r} has diverged from dataset {name!r}: its version "
            f"{latest} holds other rows than version {latest + 1} holds now (was the dataset "
            "dropped and put again?). Export to a new URL."
        )
    return latest + 1


def _delta_schema(schema: Any) -> Any:
    """``schema`` as Delta takes it: dictionaries as their values, no pandas metadata."""
    import pyarrow as pa

    fields = [
        f.with_type(f.type.value_type) if pa.types.is_dictionary(f.type) else f for f in schema
    ]
    return pa.schema(fields)


def _reader(step: DeltaStep) -> Any:
    """The rows of ``step`` as a stream of record batches in Delta's types."""
    import pyarrow as pa

    target = _delta_schema(step.schema)

    def batches() -> Iterator[Any]:
        if step.rows is None:
            return
        for batch in step.rows.to_batches():
            yield batch.cast(target) if batch.schema != target else batch

    return pa.RecordBatchReader.from_batches(target, batches())


def write_steps(
    url: str,
    name: str,
    steps: list[DeltaStep],
    storage_options: dict[str, str] | None,
) -> int | None:
    """Write ``steps`` as consecutive Delta commits; the table's latest version after."""
    deltalake = deltalake_module()
    latest = None
    for step in steps:
        metadata = {
            "omfs.name": name,
            "omfs.version": str(step.version),
            "omfs.parts": step.digest,
            "omfs.rows": "dropped" if step.rows is None else "kept",
        }
        deltalake.write_deltalake(
            url,
            _reader(step),
            mode=step.mode,
            schema_mode="merge" if step.mode == "append" else "overwrite",
            storage_options=storage_options,
            commit_properties=deltalake.CommitProperties(custom_metadata=metadata),
        )
        latest = step.version - 1
    return latest
