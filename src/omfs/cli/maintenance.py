"""``om fsck``, ``om upgrade`` and ``om gc``."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from omfs.cli._common import emit_table, fail, state

Buckets = Annotated[
    list[str] | None,
    typer.Option("--bucket", help="only this bucket (repeatable); default: every bucket"),
]


def fsck(bucket: Buckets = None) -> None:
    """Verify every live version: its log, and its payload files' presence, size and sha256.

    Exits with 1 when something is wrong, after listing every problem.
    """
    from omfs.ops.fsck import fsck as run

    problems = run(state.omega(), bucket)
    if problems:
        emit_table(problems, ["bucket", "store", "name", "problem"])
        fail(f"{len(problems)} problem(s) found; see the list above")
    emit_table([], ["bucket", "store", "name", "problem"], empty="no problems found")


def upgrade(bucket: Buckets = None) -> None:
    """Convert datasets and models written by omfs 0.1 to the commit log, in place.

    Each object switches atomically; run it again after an interruption.
    """
    from omfs.ops.fsck import upgrade as run

    done = run(state.omega(), bucket)
    emit_table(done, ["bucket", "store", "name"], empty="nothing to upgrade")


def gc(
    bucket: Buckets = None,
    grace: Annotated[
        str,
        typer.Option(help="only files older than this, e.g. 1h, 2d; at least 10min unless --force"),
    ] = "1h",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="list, delete nothing")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="accept a grace below the 10min floor")
    ] = False,
) -> None:
    """Remove files no live version references: payloads of crashed or dropped writes,
    temporary files, superseded checkpoints, index markers of objects with no version.
    Objects being written (they hold a gc lease) are left alone and listed as skipped."""
    from omfs.ops.gc import collect_garbage

    report = collect_garbage(
        state.omega(), buckets=bucket, grace=grace, dry_run=dry_run, force=force
    )
    files = report["files"]
    verb = "would remove" if dry_run else "removed"
    emit_table(files, ["bucket", "store", "key", "bytes", "why"], empty="nothing to remove")
    print(f"om: {verb} {len(files)} file(s), {report['bytes']:,} bytes", file=sys.stderr)
    for skip in report["skipped"]:
        print(f"om: skipped {skip['store']} {skip['name']!r}: {skip['why']}", file=sys.stderr)
