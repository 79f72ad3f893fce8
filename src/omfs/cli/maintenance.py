"""``om fsck`` and ``om upgrade``."""

from __future__ import annotations

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
    from omfs.maintenance import fsck as run

    problems = run(state.omega(), bucket)
    if problems:
        emit_table(problems, ["bucket", "store", "name", "problem"])
        fail(f"{len(problems)} problem(s) found; see the list above")
    emit_table([], ["bucket", "store", "name", "problem"], empty="no problems found")


def upgrade(bucket: Buckets = None) -> None:
    """Convert datasets and models written by omfs 0.1 to the commit log, in place.

    Each object switches atomically; run it again after an interruption.
    """
    from omfs.maintenance import upgrade as run

    done = run(state.omega(), bucket)
    emit_table(done, ["bucket", "store", "name"], empty="nothing to upgrade")
