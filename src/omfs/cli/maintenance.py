"""``om fsck``, ``om upgrade`` and ``om gc``."""

from __future__ import annotations

from typing import Annotated

import typer

from omfs.cli.app import get_app

Buckets = Annotated[
    list[str] | None,
    typer.Option("--bucket", help="only this bucket (repeatable); default: every bucket"),
]


def fsck(ctx: typer.Context, bucket: Buckets = None) -> None:
    """Verify every live version: its log, and its payload files' presence, size and sha256.

    Exits with 1 when something is wrong, after listing every problem.
    """
    from omfs.ops.fsck import fsck as run

    app = get_app(ctx)
    problems = run(app.omega(), bucket)
    if problems:
        app.table(problems, ["bucket", "store", "name", "problem"])
        app.fail(f"{len(problems)} problem(s) found; see the list above")
    app.table([], ["bucket", "store", "name", "problem"], empty="no problems found")


def upgrade(ctx: typer.Context, bucket: Buckets = None) -> None:
    """Convert datasets and models in the format-1 layout (sidecars in _versions/, from
    before the commit log) to the commit log, in place.

    Each object switches atomically; run it again after an interruption.
    """
    from omfs.ops.fsck import upgrade as run

    app = get_app(ctx)
    done = run(app.omega(), bucket)
    app.table(done, ["bucket", "store", "name"], empty="nothing to upgrade")


def gc(
    ctx: typer.Context,
    bucket: Buckets = None,
    grace: Annotated[
        str,
        typer.Option(help="only files older than this, e.g. 1h, 2d; at least 10min unless --force"),
    ] = "1h",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="list, delete nothing")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="accept a grace below the 10min floor")
    ] = False,
    task_retention: Annotated[
        str | None,
        typer.Option(help="runtime task records older than this go (default 7d)"),
    ] = None,
) -> None:
    """Remove files no live version references: payloads of crashed or dropped writes,
    temporary files, superseded checkpoints, index markers of objects with no version.
    Objects being written (they hold a gc lease) are left alone and listed as skipped.
    Without --bucket, also the runtime's task records older than --task-retention
    ($OMFS_TASK_RETENTION, default 7d)."""
    app = get_app(ctx)
    report = app.omega().gc(
        buckets=bucket, grace=grace, dry_run=dry_run, force=force, task_retention=task_retention
    )
    files, tasks = report["files"], report.get("tasks") or []
    verb = "would remove" if dry_run else "removed"
    if files or not tasks or app.as_json:  # "nothing to remove" only when nothing is
        app.table(files, ["bucket", "store", "key", "bytes", "why"], empty="nothing to remove")
    if files:
        app.note(f"{verb} {len(files)} file(s), {report['bytes']:,} bytes")
    if tasks:
        app.note(f"{verb} the records of {len(tasks)} runtime task(s)")
    for skip in report["skipped"]:
        app.note(f"skipped {skip['store']} {skip['name']!r}: {skip['why']}")
