"""Whole-context upkeep: verify every live version (``fsck``) and convert stores written by
omfs 0.1 to the commit log (``upgrade``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from omfs.ops.common import Context
from omfs.ops.reports import FsckProblem, UpgradeRow

if TYPE_CHECKING:
    from omfs.objects.versioned import VersionedStore

__all__ = ["FsckProblem", "UpgradeRow", "fsck", "upgrade"]


def _stores(omega: Context, buckets: list[str] | None) -> list[VersionedStore]:
    """The datasets, models and jobs stores of ``buckets`` (default: all of the context's)."""
    chosen = buckets if buckets is not None else omega.buckets
    return [s for b in chosen for s in (omega[b].datasets, omega[b].models, omega[b].jobs)]


def fsck(omega: Context, buckets: list[str] | None = None) -> list[FsckProblem]:
    """Check every object of ``buckets`` (default: all): its log reads and validates, and
    every live version's payload files are present, of their recorded size, and (models,
    jobs, raw files) of their recorded sha256; a job's run records read. Returns one row
    per problem; [] means all is well."""
    problems: list[FsckProblem] = []
    for store in _stores(omega, buckets):
        for name in store.list():
            for problem in store.fsck(name):
                problems.append(
                    {"bucket": store.bucket, "store": store.kind, "name": name, "problem": problem}
                )
    return problems


def upgrade(omega: Context, buckets: list[str] | None = None) -> list[UpgradeRow]:
    """Convert every object of ``buckets`` (default: all) written in the omfs 0.1 layout;
    one row per object converted. Objects already on the log are left as they are."""
    done: list[UpgradeRow] = []
    for store in _stores(omega, buckets):
        for name in store.upgrade_all():
            done.append({"bucket": store.bucket, "store": store.kind, "name": name})
    return done
