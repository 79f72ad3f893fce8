"""Whole-context upkeep: verify every live version (``fsck``) and convert stores written by
omfs 0.1 to the commit log (``upgrade``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from omfs.context import Omega

__all__ = ["fsck", "upgrade"]


def _stores(omega: Omega, buckets: list[str] | None) -> list[Any]:
    chosen = buckets if buckets is not None else omega.buckets
    return [store for b in chosen for store in (omega[b].datasets, omega[b].models)]


def fsck(omega: Omega, buckets: list[str] | None = None) -> list[dict[str, str]]:
    """Check every object of ``buckets`` (default: all): its log reads and validates, and
    every live version's payload files are present, of their recorded size, and (models,
    raw files) of their recorded sha256. Returns one row per problem; [] means all is well."""
    problems = []
    for store in _stores(omega, buckets):
        for name in store.list():
            for problem in store.fsck(name):
                problems.append(
                    {"bucket": store.bucket, "store": store.kind, "name": name, "problem": problem}
                )
    return problems


def upgrade(omega: Omega, buckets: list[str] | None = None) -> list[dict[str, str]]:
    """Convert every object of ``buckets`` (default: all) written in the omfs 0.1 layout;
    one row per object converted. Objects already on the log are left as they are."""
    done = []
    for store in _stores(omega, buckets):
        for name in store.upgrade_all():
            done.append({"bucket": store.bucket, "store": store.kind, "name": name})
    return done
