"""Commands that datasets and models share: tags, their history, rollback and pruning.

Declared once and added to both nouns by :func:`add_commands`. (No ``from __future__
import annotations`` here: Typer reads the annotations, which use the noun of each app.)
"""

from typing import Annotated, Any

import typer

from omfs.cli._common import asks, confirm, emit_table, state

_HISTORY = ["tag", "version", "previous", "at", "user", "reason", "source"]


def _store(noun: str) -> Any:
    return getattr(state.omega(), noun)


def add_commands(app: typer.Typer, noun: str) -> None:
    """Register ``tag``, ``untag``, ``tags``, ``history``, ``rollback`` and ``prune``."""
    what = noun[:-1]  # "dataset" / "model"

    @app.command("tag")
    def tag(
        spec: Annotated[str, typer.Argument(help=f"{what} and version, e.g. NAME@v3")],
        tag: Annotated[str, typer.Argument(help="tag to point there, e.g. prod")],
        reason: Annotated[str | None, typer.Option(help="why, kept in the history")] = None,
    ) -> None:
        """Point a tag at a version (moving it if it pointed elsewhere)."""
        meta = _store(noun).tag(spec, tag, reason=reason)
        emit_table(
            [{"name": meta.name, "tag": tag, "version": meta.version}], ["name", "tag", "version"]
        )

    @app.command("untag")
    def untag(
        name: Annotated[str, typer.Argument(help=f"{what} name")],
        tag: Annotated[str, typer.Argument(help="tag to remove")],
        reason: Annotated[str | None, typer.Option(help="why, kept in the history")] = None,
    ) -> None:
        """Remove a tag (the removal is kept in the history)."""
        _store(noun).untag(name, tag, reason=reason)

    @app.command("tags")
    def tags(name: Annotated[str, typer.Argument(help=f"{what} name")]) -> None:
        """List a name's tags and the versions they point at."""
        rows = [{"tag": t, "version": v} for t, v in _store(noun).tags(name).items()]
        emit_table(rows, ["tag", "version"])

    @app.command("history")
    def history(
        name: Annotated[str, typer.Argument(help=f"{what} name")],
        tag: Annotated[str | None, typer.Option(help="only this tag")] = None,
    ) -> None:
        """Every tag move, oldest first: version, previous version, time, user, reason."""
        emit_table(_store(noun).tag_history(name, tag), _HISTORY)

    @app.command("rollback")
    def rollback(
        name: Annotated[str, typer.Argument(help=f"{what} name")],
        tag: Annotated[str, typer.Argument(help="tag to move back")],
        reason: Annotated[str | None, typer.Option(help="why, kept in the history")] = None,
    ) -> None:
        """Move a tag back to the version it pointed at before its last move."""
        meta = _store(noun).rollback(name, tag, reason=reason)
        emit_table(
            [{"name": meta.name, "tag": tag, "version": meta.version}], ["name", "tag", "version"]
        )

    @app.command("prune")
    def prune(
        name: Annotated[str, typer.Argument(help=f"{what} name")],
        keep_last: Annotated[
            int | None, typer.Option(help="keep this many newest versions", min=0)
        ] = None,
        older_than: Annotated[
            str | None, typer.Option(help="drop only versions older than this, e.g. 30d")
        ] = None,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="say what would go")] = False,
        yes: Annotated[
            bool, typer.Option("--yes", "-y", help="do not ask for confirmation")
        ] = False,
    ) -> None:
        """Drop old versions; the latest version, tagged versions and the payloads kept
        versions use stay. Asks on a terminal first (--yes: do not ask)."""
        if keep_last is None and older_than is None:
            raise typer.BadParameter("give --keep-last, --older-than or both")
        store = _store(noun)
        if not dry_run and asks(yes):
            doomed = store.prune(name, keep_last=keep_last, older_than=older_than, dry_run=True)
            if doomed:
                listed = ", ".join(f"v{v}" for v in doomed)
                confirm(
                    f"Drop {len(doomed)} version(s) of {what} {name!r} in bucket "
                    f"{store.bucket!r}: {listed}?",
                    yes,
                )
        dropped = store.prune(name, keep_last=keep_last, older_than=older_than, dry_run=dry_run)
        verb = "would drop" if dry_run else "dropped"
        emit_table(
            [{"name": name, verb: v} for v in dropped],
            ["name", verb],
            empty=f"{name}: no version to drop",
        )
