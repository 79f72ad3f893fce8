"""The reports of the operations, written down once: what ``omfs.sync``, ``omfs.import_``,
``omfs.export``, ``gc``, ``fsck`` and a dry-run ``promote`` return.

The sync report is a typed object (:class:`SyncReport`, rows :class:`SyncRow`) whose
``to_dict()`` is what ``om sync --json`` prints; the others are plain dicts at run time (the
CLI prints them as JSON and users index them: ``report["objects"]``), and these
``TypedDict`` classes give their shape to readers and to the type checker. A row's
``action`` is always set once the row is in a report.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal, NotRequired, TypedDict

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
    "copy", "unchanged", "diverged", "behind", "rebased", "would rebase", "dropped", "refused"
]
ImportAction = Literal["copy", "unchanged", "diverged", "refused"]


# -- sync -----------------------------------------------------------------------------------
class RebasedVersion(TypedDict):
    """A source version re-committed on the target by a rebase, and its new number."""

    source_version: int
    target_version: int


@dataclass
class SyncRow:
    """One object of a sync: what was done and what travelled.

    ``action`` is ``copy``, ``unchanged``, ``diverged`` (both sides have versions the other
    lacks; left unchanged), ``behind`` (the target holds all of the source's history and
    more; nothing to copy), ``rebased``, ``would rebase`` (a dry run), ``dropped`` or
    ``refused``. The optional fields are None where they do not apply (and are left out of
    :meth:`to_dict`)."""

    bucket: str
    store: str  # "datasets" or "models"
    name: str
    source_commits: int = 0
    target_commits: int = 0
    bytes: int = 0
    files: int = 0
    action: SyncAction | None = None
    source_versions: list[int] | None = None  # diverged, behind, rebased
    target_versions: list[int] | None = None
    error: str | None = None  # refused: the object and the file that failed its check
    where: Literal["source", "target"] | None = None  # dropped: the side that dropped it
    message: str | None = None  # dropped: how to make the sides agree
    conflicts: list[str] | None = None  # rebase: tags moved on both sides
    rebased: list[RebasedVersion] | None = None
    tags: dict[str, int | None] | None = None  # rebase: tag -> version (None: removed)
    repaired: list[str] | None = None  # copy: files the target lacked, copied again

    def to_dict(self) -> dict[str, Any]:
        """The row as JSON-ready data (what ``om sync --json`` prints), without the fields
        that do not apply."""
        return {f.name: v for f in fields(self) if (v := getattr(self, f.name)) is not None}


@dataclass
class SyncReport:
    """What :func:`omfs.sync` returns (and :class:`~omfs.errors.DivergedError` carries):
    per object a row (:class:`SyncRow`), and the totals."""

    source: str
    target: str
    dry_run: bool
    objects: list[SyncRow]
    copied: int = 0
    unchanged: int = 0
    diverged: int = 0
    behind: int = 0
    rebased: int = 0
    dropped: int = 0
    conflicts: list[str] = field(default_factory=list)
    refused: int = 0
    bytes: int = 0
    runs: int = 0  # job runs copied with their jobs
    schedules: int = 0  # job schedules copied with their jobs (a newer one is never replaced)

    @classmethod
    def of(cls, source: str, target: str, dry_run: bool, rows: list[SyncRow]) -> SyncReport:
        """The report of ``rows``, its totals counted from them."""

        def count(action: str) -> int:
            return sum(r.action == action for r in rows)

        return cls(
            source, target, dry_run, rows, copied=count("copy"), unchanged=count("unchanged"),
            diverged=count("diverged"), behind=count("behind"), rebased=count("rebased"),
            dropped=count("dropped"), conflicts=[c for r in rows for c in r.conflicts or []],
            refused=count("refused"), bytes=sum(r.bytes for r in rows),
        )  # fmt: skip

    def rows(self, *actions: str) -> list[SyncRow]:
        """The rows whose action is one of ``actions``."""
        return [r for r in self.objects if r.action in actions]

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (what ``om sync --json`` prints)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["objects"] = [r.to_dict() for r in self.objects]
        out["conflicts"] = list(self.conflicts)
        return out


def refused(row: SyncRow, why: str) -> SyncRow:
    """Mark ``row`` refused: nothing of the object was copied (the target is as it was)."""
    row.action, row.files, row.bytes = "refused", 0, 0
    row.error = f"{row.bucket}/{row.store}/{row.name} was not synced: {why}"
    return row


def diverged(row: SyncRow, src: Storage, dst: Storage, action: SyncAction = "diverged") -> SyncRow:
    """Mark ``row`` diverged (or ``behind``), with the versions each side holds."""
    where = (row.bucket, row.store, row.name)
    row.action = action
    row.source_versions = versions(src, *where)
    row.target_versions = versions(dst, *where)
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
