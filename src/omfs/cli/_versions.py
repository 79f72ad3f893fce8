"""Commands that datasets, models and jobs share: tags, their history, rollback and pruning.

Declared once and added to both nouns by :func:`add_commands`. (No ``from __future__
import annotations`` here: Typer reads the annotations, which use the noun of each app.)
"""

from typing import Annotated, Any

import typer

from omfs.cli._common import At
from omfs.cli.app import App, get_app

_HISTORY = ["tag", "version", "previous", "at", "user", "reason", "source"]
_VERSIONS = {
    "datasets": ["version", "created", "kind", "rows", "bytes", "tags", "operation"],
    "models": ["version", "created", "kind", "tags", "fitted", "size", "operation"],
    "jobs": ["version", "created", "kind", "tags", "filename", "size", "operation"],
}

Reason = Annotated[str | None, typer.Option(help="why, kept in the history")]


def add_commands(cli: typer.Typer, noun: str) -> None:
    """Register ``metadata``, ``versions``, ``tag``, ``untag``, ``tags``, ``history``,
    ``rollback`` and ``prune``."""
    _add_version_commands(cli, noun)
    _add_tag_commands(cli, noun)
    _add_history_commands(cli, noun)
    _add_prune(cli, noun)


def version_row(meta: Any) -> dict[str, Any]:
    """A version as ``versions`` lists it (and ``put`` reports it): ``tags`` are the tags
    that point at it now."""
    row = {"version": meta.version, "created": meta.created, "kind": meta.kind, "tags": meta.tags}
    keys = ("rows", "bytes", "fitted", "size", "filename", "operation")
    return row | {k: meta.get(k) for k in keys}


def _tag_cells(app: App, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` with their ``tags`` as a list with --json, else joined by commas."""
    if app.as_json:
        return rows
    return [{**r, "tags": ",".join(r["tags"])} for r in rows]


def _add_version_commands(cli: typer.Typer, noun: str) -> None:
    """``metadata`` and ``versions``, both with ``--at``."""
    what = noun[:-1]

    @cli.command("metadata", help=f"Show a {what} version's metadata (JSON), with its tags.")
    def metadata(
        ctx: typer.Context,
        name: Annotated[str, typer.Argument(help=f"{what} name, name@vN or name@tag")],
        version: Annotated[int | None, typer.Option(help="this version")] = None,
        at: At = None,
    ) -> None:
        app = get_app(ctx)
        app.value(app.store(noun).metadata(name, version=version, at=at))

    @cli.command(
        "versions",
        help=f"List the versions of a {what}, each with the tags that point at it now "
        "(--at: then).",
    )
    def versions(
        ctx: typer.Context,
        name: Annotated[str, typer.Argument(help=f"{what} name")],
        at: At = None,
    ) -> None:
        app = get_app(ctx)
        rows = [version_row(m) for m in app.store(noun).versions(name, at=at)]
        app.table(_tag_cells(app, rows), _VERSIONS[noun])


def _show_tag(app: App, meta: Any, tag: str) -> None:
    app.table(
        [{"name": meta.name, "tag": tag, "version": meta.version}], ["name", "tag", "version"]
    )


def _add_tag_commands(cli: typer.Typer, noun: str) -> None:
    """``tag``, ``untag`` and ``tags``."""
    what = noun[:-1]  # "dataset" / "model"

    @cli.command("tag")
    def tag(
        ctx: typer.Context,
        spec: Annotated[str, typer.Argument(help=f"{what} and version, e.g. NAME@v3")],
        tag: Annotated[str, typer.Argument(help="tag to point there, e.g. prod")],
        reason: Reason = None,
    ) -> None:
        """Point a tag at a version (moving it if it pointed elsewhere)."""
        app = get_app(ctx)
        _show_tag(app, app.store(noun).tag(spec, tag, reason=reason), tag)

    @cli.command("untag")
    def untag(
        ctx: typer.Context,
        name: Annotated[str, typer.Argument(help=f"{what} name")],
        tag: Annotated[str, typer.Argument(help="tag to remove")],
        reason: Reason = None,
    ) -> None:
        """Remove a tag (the removal is kept in the history)."""
        get_app(ctx).store(noun).untag(name, tag, reason=reason)

    @cli.command("tags")
    def tags(ctx: typer.Context, name: Annotated[str, typer.Argument(help=f"{what} name")]) -> None:
        """List a name's tags and the versions they point at."""
        app = get_app(ctx)
        rows = [{"tag": t, "version": v} for t, v in app.store(noun).tags(name).items()]
        app.table(rows, ["tag", "version"])


def _add_history_commands(cli: typer.Typer, noun: str) -> None:
    """``history`` and ``rollback``."""
    what = noun[:-1]

    @cli.command("history")
    def history(
        ctx: typer.Context,
        name: Annotated[str, typer.Argument(help=f"{what} name")],
        tag: Annotated[str | None, typer.Option(help="only this tag")] = None,
    ) -> None:
        """Every tag move, oldest first: version, previous version, time, user, reason."""
        app = get_app(ctx)
        app.table(app.store(noun).tag_history(name, tag), _HISTORY)

    @cli.command("rollback")
    def rollback(
        ctx: typer.Context,
        name: Annotated[str, typer.Argument(help=f"{what} name")],
        tag: Annotated[str, typer.Argument(help="tag to move back")],
        reason: Reason = None,
    ) -> None:
        """Move a tag back to the version it pointed at before its last move."""
        app = get_app(ctx)
        _show_tag(app, app.store(noun).rollback(name, tag, reason=reason), tag)


def _add_prune(cli: typer.Typer, noun: str) -> None:
    what = noun[:-1]

    @cli.command("prune")
    def prune(
        ctx: typer.Context,
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
        app = get_app(ctx)
        store = app.store(noun)
        which = {"keep_last": keep_last, "older_than": older_than}
        if not dry_run and app.asks(yes):
            _confirm_prune(app, store, name, store.prune(name, dry_run=True, **which), yes)
        dropped = store.prune(name, dry_run=dry_run, **which)
        verb = "would drop" if dry_run else "dropped"
        app.table(
            [{"name": name, verb: v} for v in dropped],
            ["name", verb],
            empty=f"{name}: no version to drop",
        )


def _confirm_prune(app: App, store: Any, name: str, doomed: list[int], yes: bool) -> None:
    """Ask before dropping ``doomed`` versions (nothing to ask when there are none)."""
    if doomed:
        listed = ", ".join(f"v{v}" for v in doomed)
        app.confirm(
            f"Drop {len(doomed)} version(s) of {store.noun.lower()} {name!r} in bucket "
            f"{store.bucket!r}: {listed}?",
            yes,
        )
