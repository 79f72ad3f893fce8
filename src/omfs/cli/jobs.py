"""``om jobs ...``"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from omfs.cli._common import (
    AsName,
    At,
    CreateBucket,
    DryRun,
    Force,
    NoError,
    ToBucket,
    ToContext,
    ToOptions,
    ToRoot,
    Yes,
    drop_command,
    parse_attributes,
    parse_params,
    promote_command,
    require_file,
    restore_command,
    write_payload_command,
)
from omfs.cli._versions import add_commands, version_row
from omfs.cli.app import App, get_app

cli = typer.Typer(
    rich_markup_mode=None,
    help="Jobs: Python scripts and notebooks, versioned, run on the context's runtime.",
    no_args_is_help=True,
)

_RUN_COLUMNS = ["id", "status", "version", "started", "finished", "worker", "error"]


def _rows(metas: list[Any]) -> list[dict[str, Any]]:
    return [version_row(m) for m in metas]


@cli.command("list")
def list_(
    ctx: typer.Context,
    pattern: Annotated[str | None, typer.Argument(help="glob, e.g. 'reports/*'")] = None,
) -> None:
    """List jobs."""
    app = get_app(ctx)
    om = app.omega()
    names = om.jobs.list(pattern)
    if not names:
        om.check_location()  # an empty list from a mistyped root would mislead
    app.table([{"name": n} for n in names], ["name"])


@cli.command()
def put(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="a Python script (.py) or notebook (.ipynb)")],
    name: Annotated[str, typer.Argument(help="job name")],
    attr: Annotated[list[str] | None, typer.Option("--attr", help="KEY=VALUE attribute")] = None,
    tag: Annotated[str | None, typer.Option(help="tag this version")] = None,
    attr_json: Annotated[
        bool, typer.Option("--attr-json", help="read --attr values as JSON (numbers, lists)")
    ] = False,
) -> None:
    """Store a script or notebook as a new version of a job."""
    app = get_app(ctx)
    require_file(file)
    meta = app.omega().jobs.put(
        file, name, attributes=parse_attributes(attr, as_json=attr_json), tag=tag
    )
    app.table(
        _rows([meta]),
        ["version", "kind", "filename", "size"],
        plain=lambda r: f"{name}\tv{r['version']}\t{r['kind']}",
    )


@cli.command()
def get(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="job name, name@vN or name@tag")],
    path: Annotated[Path, typer.Argument(help="file to write")],
    version: Annotated[int | None, typer.Option(help="this version")] = None,
    at: At = None,
    force: Annotated[bool, typer.Option("--force", help="overwrite an existing file")] = False,
) -> None:
    """Write a job's verified script or notebook to a local file."""
    selected = {"version": version, "at": at}
    write_payload_command(get_app(ctx), "jobs", name, path, selected, force)


@cli.command()
def drop(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="job name, or name@vN for one version")],
    force: NoError = False,
    yes: Yes = False,
) -> None:
    """Delete a job with all its versions (or one version); its runs stay."""
    drop_command(get_app(ctx), "jobs", name, force, yes)


@cli.command()
def restore(ctx: typer.Context, name: Annotated[str, typer.Argument(help="job name")]) -> None:
    """Bring back a dropped job with its whole history (until gc collects its files)."""
    restore_command(get_app(ctx), "jobs", name)


@cli.command()
def promote(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="job name, name@vN or name@tag")],
    to_bucket: ToBucket = None,
    to_root: ToRoot = None,
    to_options: ToOptions = None,
    to_context: ToContext = None,
    asname: AsName = None,
    dry_run: DryRun = False,
    create_bucket: CreateBucket = False,
    force: Force = False,
    with_schedule: Annotated[
        bool,
        typer.Option("--with-schedule", help="copy the job's schedule too (else it stays)"),
    ] = False,
) -> None:
    """Copy a job version to another bucket or context (dev -> prod); its schedule only
    with --with-schedule."""
    how = {"asname": asname, "create_bucket": create_bucket, "force": force}
    how["with_schedule"] = with_schedule
    target = (to_bucket, to_root, to_options, to_context)
    promote_command(get_app(ctx), "jobs", name, target, how, dry_run)


@cli.command()
def run(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="job name")],
    param: Annotated[
        list[str] | None, typer.Option("--param", help="KEY=VALUE parameter (JSON where it parses)")
    ] = None,
    require: Annotated[
        list[str] | None,
        typer.Option("--require", help="route to workers offering LABEL or NAME=AMOUNT"),
    ] = None,
    local: Annotated[bool, typer.Option("--local", help="run in this process, no cluster")] = False,
    run_async: Annotated[
        bool, typer.Option("--async", help="print the run id and return; do not wait")
    ] = False,
) -> None:
    """Run a job and print its run record (a failed run exits non-zero).

    With the background cluster running (`om cluster start`), the run goes through its
    gateway: no Dask client starts in this command.
    """
    from omfs.cli.errors import debugging
    from omfs.cli.gateway import job_command, request
    from omfs.cli.runtime import context_of, gateway_socket
    from omfs.objects.jobs.runs import RunRecord

    app = get_app(ctx)
    om = app.omega()
    spec: dict[str, Any] = {"name": name, "params": parse_params(param)}
    spec["require"] = list(require or [])
    spec |= {"local": local, "async": run_async}
    path = gateway_socket(om, local)
    if path is None:
        answer = job_command(om, spec, debug=debugging())
    else:
        answer = request(path, {"context": context_of(om), "job": spec, "debug": debugging()})
    if "error" in answer:
        app.fail(str(answer["error"]), int(answer.get("code") or 1))
    rec = RunRecord.from_dict(answer["run"])
    if run_async:
        app.table([{"id": rec.id}], ["id"])
        return
    _show_runs(app, [rec])


def _show_runs(app: App, records: list[Any]) -> None:
    rows = [r.to_dict() for r in records]
    if app.as_json:
        app.value(rows)
        return
    shown = [{**r, "result": json.dumps(r["result"], default=str)} for r in rows]
    app.table(shown, _RUN_COLUMNS + (["result"] if any(r["result"] for r in rows) else []))


@cli.command()
def runs(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="job name")],
    limit: Annotated[int, typer.Option("-n", "--limit", help="at most this many (0: all)")] = 20,
) -> None:
    """List a job's runs, newest first (the 20 newest unless -n says otherwise)."""
    app = get_app(ctx)
    records = app.omega().jobs.runs(name)
    _show_runs(app, records[:limit] if limit > 0 else records)


@cli.command()
def log(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="run id (from `om jobs runs NAME`)")],
    job: Annotated[str | None, typer.Option(help="the run's job (saves a listing)")] = None,
) -> None:
    """Print the captured stdout and stderr of a run."""
    import sys

    app = get_app(ctx)
    output = app.omega().jobs.log(run_id, job=job)
    if app.as_json:
        app.value(output)
        return
    sys.stdout.write(output["stdout"])
    sys.stderr.write(output["stderr"])


# -- schedules ---------------------------------------------------------------------------------
def _show_schedules(app: App, schedules: list[Any], columns: list[str]) -> None:
    """Schedules as a table (or, with --json, each whole, with its ``when`` line)."""
    rows = [{"when": s.describe(), **s.to_dict()} for s in schedules]
    if app.as_json:
        app.value(rows)
        return
    for row in rows:
        row["params"] = json.dumps(row["params"]) if row["params"] else "-"
    app.table(rows, columns)


@cli.command()
def schedule(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="job name")],
    cron: Annotated[
        str | None, typer.Option(help="five cron fields, e.g. '0 6 * * 1-5' (wall time in --tz)")
    ] = None,
    tz: Annotated[str, typer.Option(help="IANA time zone of --cron, e.g. Europe/Zurich")] = "UTC",
    every: Annotated[str | None, typer.Option(help="an interval: 30s, 5min, 1h, 1d")] = None,
    catchup: Annotated[
        str, typer.Option(help="missed slots after a downtime: skip, latest or all")
    ] = "skip",
    overlap: Annotated[
        str, typer.Option(help="a slot while the previous run runs: skip or allow")
    ] = "skip",
    param: Annotated[
        list[str] | None, typer.Option("--param", help="KEY=VALUE for each run (JSON if it parses)")
    ] = None,
) -> None:
    """Run a job on a schedule (replacing its schedule); `om scheduler run` fires it."""
    app = get_app(ctx)
    if (cron is None) == (every is None):
        app.fail("give one of --cron EXPR or --every INTERVAL", 2)
    made = app.omega().jobs.schedule(
        name, cron=cron, every=every, tz=tz, params=parse_params(param),
        catchup=catchup, overlap=overlap,
    )  # fmt: skip
    _show_schedules(app, [made], ["job", "when", "catchup", "overlap", "params"])


@cli.command()
def unschedule(ctx: typer.Context, name: Annotated[str, typer.Argument(help="job name")]) -> None:
    """Remove a job's schedule (its runs stay)."""
    app = get_app(ctx)
    app.omega().jobs.unschedule(name)
    if app.as_json:
        app.value({"name": name, "unscheduled": True})
    else:
        app.note(f"job {name!r} is no longer scheduled")


@cli.command()
def schedules(ctx: typer.Context) -> None:
    """List the bucket's job schedules."""
    app = get_app(ctx)
    _show_schedules(
        app,
        app.omega().jobs.schedules(),
        ["job", "when", "catchup", "overlap", "params", "created"],
    )


@cli.command("next")
def next_(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="job name")],
    n: Annotated[int, typer.Option("-n", min=1, max=1000, help="how many slots")] = 5,
) -> None:
    """Show a job's next slots (in its schedule's time zone)."""
    app = get_app(ctx)
    slots = app.omega().jobs.next_runs(name, n=n)
    app.table([{"slot": s.isoformat()} for s in slots], ["slot"])


add_commands(cli, "jobs")
