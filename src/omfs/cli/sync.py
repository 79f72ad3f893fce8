"""``om sync``, ``om push`` and ``om pull``: replicate buckets between contexts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from omfs.cli._common import CreateBucket, refuse_overwrite
from omfs.cli.app import App, get_app
from omfs.cli.errors import error_line

if TYPE_CHECKING:
    from omfs.ops.reports import ImportReport, SyncReport

Buckets = Annotated[
    list[str] | None, typer.Option("--bucket", help="only this bucket (repeatable; default all)")
]
Names = Annotated[
    list[str] | None,
    typer.Option("--name", metavar="PATTERN", help="only names matching (glob, repeatable)"),
]
DryRun = Annotated[bool, typer.Option("--dry-run", help="say what would be copied")]
Rebase = Annotated[
    bool,
    typer.Option(
        "--rebase",
        help="re-commit the versions of a diverged object that only the source (for push "
        "and pull: this context) has on top of the other side's, whose history is kept as "
        "it is; both sides end equal",
    ),
]
Remote = Annotated[
    str | None,
    typer.Option("--remote", help="the remote context (default: `remote` in the config file)"),
]


#: how each command shows an object whose source is behind its target
_BEHIND = {"push": "behind: pull first", "pull": "ahead: push first"}


def _run(
    app: App,
    source: Any,
    target: Any,
    chosen: dict[str, Any],
    dry_run: bool,
    rebase: bool = False,
    command: str = "sync",
) -> SyncReport:
    """Sync the ``buckets`` and ``names`` ``chosen``, print the report, fail on divergence
    (with the hint naming --rebase) and on refused objects."""
    report = _sync(app, source, target, chosen, dry_run, rebase)
    _finish(app, report, dry_run, command)
    return report


def _finish(app: App, report: SyncReport, dry_run: bool, command: str) -> None:
    """Print ``report`` and fail (one line) when objects diverged, were refused or dropped
    in the target."""
    _show_report(app, report, dry_run, command)
    refused = report.rows("refused")
    if refused and not app.as_json:
        for r in refused:  # one line each: the object and the file that failed its check
            app.note(f"refused: {r.error}")
    _explain(app, report)
    diverged = report.rows("diverged")
    if diverged:
        names_ = ", ".join(
            f"{r.bucket}/{r.store}/{r.name} (source v{r.source_versions}, "
            f"target v{r.target_versions})"
            for r in diverged
        )
        more = f"; {len(refused)} refused (see above)" if refused else ""
        app.fail(
            f"{len(diverged)} object(s) diverged and were left unchanged: {names_}{more}. "
            f"`om {command} --rebase` re-commits this side's versions on top of the other's."
        )
    if refused:
        app.fail(
            f"{len(refused)} object(s) refused: the source does not hold what its log records "
            "(see above); they were left unchanged in the target, the others were synced"
        )


def _sync(
    app: App, source: Any, target: Any, chosen: dict[str, Any], dry_run: bool, rebase: bool
) -> SyncReport:
    """Run :func:`omfs.sync` (with a progress bar on a terminal); its report, also when
    objects diverged (the others were synced)."""
    import omfs
    from omfs.errors import DivergedError

    if dry_run:
        return omfs.sync(source, target, dry_run=True, rebase=rebase, **chosen)
    total = objects = None
    if app.shows_progress():  # the bar's totals: a dry run, only where a bar is shown
        plan = omfs.sync(source, target, dry_run=True, **chosen)
        total, objects = plan.bytes, len(plan.objects)
    with app.progress("sync", total, objects) as advance:
        try:
            return omfs.sync(
                source,
                target,
                rebase=rebase,
                progress=advance,
                on_object=lambda row: advance(objects=1),
                **chosen,
            )
        except DivergedError as exc:
            report: SyncReport = exc.report
            return report


def _show_report(app: App, report: SyncReport, dry_run: bool, command: str) -> None:
    """The report: whole with --json, else a row per object that changed."""
    if app.as_json:
        app.value(report)
        return
    shown = {"behind": _BEHIND.get(command, "behind: target is ahead")}
    if dry_run:
        shown["copy"] = "would copy"
    rows = [
        {
            "bucket": r.bucket,
            "object": f"{r.store}/{r.name}",
            "action": shown.get(r.action or "", r.action),
            "commits": f"{r.target_commits} -> {r.source_commits}",
            "bytes": r.bytes,
        }
        for r in report.objects
        if r.action != "unchanged"
    ]
    app.table(
        rows,
        ["bucket", "object", "action", "commits", "bytes"],
        empty=f"nothing to copy ({report.unchanged} object(s) already in sync)",
    )


def _explain(app: App, report: SyncReport) -> None:
    """One line per tag conflict of a rebase and per object dropped on one side; a drop in
    the target fails the command (the object was not synced)."""
    if app.as_json:
        return
    for line in report.conflicts:
        app.note(f"conflict: {line}")
    dropped = report.rows("dropped")
    for r in dropped:
        if r.where == "source" and r.message:
            app.note(r.message)
    in_target = [r.message or "" for r in dropped if r.where == "target"]
    if in_target:
        app.fail("; ".join(in_target))


def sync(
    ctx: typer.Context,
    from_context: Annotated[str, typer.Option("--from-context", help="source context")],
    to_context: Annotated[str, typer.Option("--to-context", help="target context")],
    bucket: Buckets = None,
    name: Names = None,
    dry_run: DryRun = False,
    rebase: Rebase = False,
) -> None:
    """Replicate datasets and models with their history from one context to another."""
    chosen = {"buckets": bucket, "names": name}
    _run(get_app(ctx), from_context, to_context, chosen, dry_run, rebase, "sync")


def _remote(app: App, remote: str | None) -> str:
    from omfs import config

    chosen = remote or config.remote()
    if chosen is None:
        app.fail(
            'no remote context: pass --remote NAME or set remote = "NAME" in the config file', 2
        )
    return chosen


def push(
    ctx: typer.Context,
    remote: Remote = None,
    bucket: Buckets = None,
    name: Names = None,
    dry_run: DryRun = False,
    rebase: Rebase = False,
) -> None:
    """Sync this context (--context, --root or the default) to the remote context."""
    app = get_app(ctx)
    chosen = {"buckets": bucket, "names": name}
    _run(app, app.omega(), _remote(app, remote), chosen, dry_run, rebase, "push")


def pull(
    ctx: typer.Context,
    remote: Remote = None,
    bucket: Buckets = None,
    name: Names = None,
    dry_run: DryRun = False,
    rebase: Rebase = False,
) -> None:
    """Sync the remote context to this one. With --rebase, as git's pull --rebase: the
    remote's history stays as it is, and this context's own versions of a diverged object
    are re-committed on top of it (and published, so both sides end equal)."""
    app = get_app(ctx)
    here, there = app.omega(), _remote(app, remote)
    chosen = {"buckets": bucket, "names": name}
    if not rebase:
        _run(app, there, here, chosen, dry_run, command="pull")
        return
    _finish(app, _pull_rebase(app, here, there, chosen, dry_run), dry_run, "pull")


def _pull_rebase(
    app: App, here: Any, there: Any, chosen: dict[str, Any], dry_run: bool
) -> SyncReport:
    """``pull --rebase``: the remote's history comes here; then this side's versions of each
    object that diverged (or that the remote lacks) go on top of the remote's, and are
    published. One report: the rows of the second step replace the first's."""
    import glob

    from omfs.ops.reports import SyncReport

    first = _sync(app, there, here, chosen, dry_run, rebase=False)
    todo = first.rows("diverged", "behind")
    if not todo:
        return first
    buckets = sorted({r.bucket for r in todo})
    names = sorted({glob.escape(r.name) for r in todo})
    second = _sync(app, here, there, {"buckets": buckets, "names": names}, dry_run, True)
    done = {(r.bucket, r.store, r.name): r for r in second.objects}
    rows = [done.pop((r.bucket, r.store, r.name), r) for r in first.objects]
    return SyncReport.of(first.source, first.target, dry_run, rows + list(done.values()))


def export(
    ctx: typer.Context,
    names: Annotated[
        list[str], typer.Argument(help="NAME, datasets/NAME or models/NAME (repeatable)")
    ],
    output: Annotated[str, typer.Option("-o", "--output", help="the bundle (.tar) to write")],
    force: Annotated[bool, typer.Option("--force", help="overwrite an existing file")] = False,
) -> None:
    """Write objects with their whole history to a tar bundle (for air-gapped moves)."""
    import omfs

    app = get_app(ctx)
    refuse_overwrite(app, output, force)
    manifest = omfs.export(app.omega(), names, output)
    size = sum(f["size"] for f in manifest["files"])
    if app.as_json:
        app.value({"path": output, "objects": manifest["objects"], "bytes": size})
    else:
        print(f"om: wrote {output}: {len(manifest['objects'])} object(s), {size:,} bytes")


def import_(
    ctx: typer.Context,
    bundle: Annotated[str, typer.Argument(help="a bundle written by `om export`")],
    to_context: Annotated[
        str | None, typer.Option("--to-context", help="target context (default: this one)")
    ] = None,
    dry_run: DryRun = False,
    create_bucket: CreateBucket = False,
) -> None:
    """Import a bundle: history kept, diverged objects reported and left unchanged.

    With --bucket every object goes into that bucket; without it each keeps the bucket it
    was exported from."""
    import omfs
    from omfs.errors import IntegrityError

    app = get_app(ctx)
    target = to_context if to_context is not None else app.omega()
    options = {"bucket": app.bucket, "create_bucket": create_bucket, "dry_run": dry_run}
    try:
        report = omfs.import_(bundle, target, **options)
    except IntegrityError as exc:
        partial: ImportReport | None = getattr(exc, "report", None)  # what was done before
        if partial is None:
            raise
        _import_table(app, partial)
        app.fail(error_line(exc))
    _import_table(app, report)
    diverged = [r for r in report["objects"] if r["action"] == "diverged"]
    if diverged:
        app.fail(f"{len(diverged)} object(s) diverged and were left unchanged")


def _import_table(app: App, report: ImportReport) -> None:
    if app.as_json:
        app.value(report)
        return
    app.table(
        [
            {"object": f"{r['bucket']}/{r['store']}/{r['name']}", "action": r["action"]}
            for r in report["objects"]
        ],
        ["object", "action"],
    )
