"""The reports of the operations, written down once: what ``omfs.sync``, ``omfs.import_``,
``omfs.export``, ``gc``, ``fsck`` and a dry-run ``promote`` return.

They are plain dicts at run time (the CLI prints them as JSON and users index them:
``report["objects"]``); these ``TypedDict`` classes give their shape to readers and to the
type checker. A row's ``action`` is always set once the row is in a report.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, NotRequired, TypedDict

# promotion is part of the object protocol: its plan is defined beside it, and listed here
from omfs.objects.promote import PromotePlan, PromoteSide
from omfs.ops.inventory import versions

if TYPE_CHECKING:
    from omfs.storage import Storage

__all__ = [
    "BundleFile",
    "BundleManifest",
    "FsckProblem",
    "GcFile",
    "GcReport",
    "GcSkip",
    "ImportReport",
    "ImportRow",
    "PromotePlan",
    "PromoteSide",
    "RebasedVersion",
    "SyncReport",
    "SyncRow",
    "UpgradeRow",
    "diverged",
    "refused",
]

SyncAction = Literal[
    "copy", "unchanged", "diverged", "rebased", "would rebase", "dropped", "refused"
]
ImportAction = Literal["copy", "unchanged", "diverged", "refused"]


# -- sync -----------------------------------------------------------------------------------
class RebasedVersion(TypedDict):
    """A source version re-committed on the target by a rebase, and its new number."""

    source_version: int
    target_version: int


class SyncRow(TypedDict):
    """One object of a sync: what was done and what travelled."""

    bucket: str
    store: str  # "datasets" or "models"
    name: str
    action: NotRequired[SyncAction]
    source_commits: int
    target_commits: int
    bytes: int
    files: int
    source_versions: NotRequired[list[int]]  # diverged, rebased
    target_versions: NotRequired[list[int]]
    error: NotRequired[str]  # refused: the object and the file that failed its check
    where: NotRequired[Literal["source", "target"]]  # dropped: the side that dropped it
    message: NotRequired[str]  # dropped: how to make the sides agree
    conflicts: NotRequired[list[str]]  # rebase: tags moved on both sides
    rebased: NotRequired[list[RebasedVersion]]
    tags: NotRequired[dict[str, int | None]]  # rebase: tag -> version moved to (None: removed)
    repaired: NotRequired[list[str]]  # copy: files the target lacked, copied again


class SyncReport(TypedDict):
    """What :func:`omfs.sync` returns: per object a row, and the totals."""

    source: str
    target: str
    dry_run: bool
    objects: list[SyncRow]
    copied: int
    unchanged: int
    diverged: int
    rebased: int
    dropped: int
    conflicts: list[str]
    refused: int
    bytes: int


def refused(row: SyncRow, why: str) -> SyncRow:
    """Mark ``row`` refused: nothing of the object was copied (the target is as it was)."""
    where = f"{row['bucket']}/{row['store']}/{row['name']}"
    row.update({"action": "refused", "files": 0, "bytes": 0})
    row["error"] = f"{where} was not synced: {why}"
    return row


def diverged(row: SyncRow, src: Storage, dst: Storage) -> SyncRow:
    """Mark ``row`` diverged, with the versions each side holds."""
    where = (row["bucket"], row["store"], row["name"])
    row["action"] = "diverged"
    row["source_versions"] = versions(src, *where)
    row["target_versions"] = versions(dst, *where)
    return row


# -- bundles --------------------------------------------------------------------------------
class BundleFile(TypedDict):
    """One file of a bundle, as its manifest lists it."""

    path: str
    size: int
    sha256: str


class BundleManifest(TypedDict):
    """What :func:`omfs.export` writes into the bundle and returns."""

    format: int
    objects: list[str]  # "bucket/store/name"
    files: list[BundleFile]


class ImportRow(TypedDict):
    """One object of a bundle import."""

    bucket: str  # the target bucket
    store: str
    name: str
    bytes: int
    files: int
    action: NotRequired[ImportAction]
    from_bucket: NotRequired[str]  # when imported into another bucket than it was exported from
    source_commits: NotRequired[int]
    target_commits: NotRequired[int]
    problem: NotRequired[str]  # refused: why


class ImportReport(TypedDict):
    """What :func:`omfs.import_` returns (also ``IntegrityError.report`` when it refuses)."""

    source: str
    target: str
    dry_run: bool
    objects: list[ImportRow]
    unchanged: int
    diverged: int
    refused: int
    copied: int
    bytes: int


# -- gc and fsck ----------------------------------------------------------------------------
class GcFile(TypedDict):
    """A file gc deletes (or, in a dry run, would delete), and why."""

    bucket: str
    store: str
    key: str
    bytes: int
    why: str


class GcSkip(TypedDict):
    """An object gc left alone, and why."""

    bucket: str
    store: str
    name: str
    why: str


class GcReport(TypedDict):
    """What ``gc`` returns."""

    files: list[GcFile]
    bytes: int
    dry_run: bool
    skipped: list[GcSkip]
    #: the runtime's task records removed (``Omega.gc`` of a whole context)
    tasks: NotRequired[list[str]]


class FsckProblem(TypedDict):
    """One problem ``fsck`` found."""

    bucket: str
    store: str
    name: str
    problem: str


class UpgradeRow(TypedDict):
    """One object ``upgrade`` converted from the omfs 0.1 layout."""

    bucket: str
    store: str
    name: str
