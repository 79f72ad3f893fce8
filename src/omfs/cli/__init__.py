"""The ``om`` command line: one Typer app per noun, thin calls into the library."""

from __future__ import annotations

from typing import Annotated

import typer

from omfs.cli import (
    buckets,
    cluster,
    contexts,
    datasets,
    engines,
    jobs,
    maintenance,
    models,
    runtime,
    scheduler,
    serve,
    sync,
    ui,
)
from omfs.cli._common import parse_storage_options
from omfs.cli.app import App, OmGroup, get_app, quiet_libraries
from omfs.cli.errors import interrupts_reported

__all__ = ["app", "main"]

app = typer.Typer(
    name="om",
    help="omfs: datasets, models, jobs and runtime tasks in contexts and buckets. Global options "
    "(--root, --storage-option, --bucket, --context, --cluster, --json, -v) may also follow "
    "the command.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    cls=OmGroup,
)
app.add_typer(datasets.cli, name="datasets")
app.add_typer(models.cli, name="models")
app.add_typer(jobs.cli, name="jobs")
app.add_typer(buckets.cli, name="buckets")
app.add_typer(contexts.cli, name="contexts")
app.add_typer(runtime.cli, name="runtime")
app.add_typer(cluster.cli, name="cluster")
app.add_typer(scheduler.cli, name="scheduler")
app.command("fsck")(maintenance.fsck)
app.command("upgrade")(maintenance.upgrade)
app.command("gc")(maintenance.gc)
app.command("sync")(sync.sync)
app.command("push")(sync.push)
app.command("pull")(sync.pull)
app.command("export")(sync.export)
app.command("import")(sync.import_)
app.command("serve")(serve.serve)
app.command("ui")(ui.ui)
app.command("sql")(engines.sql)
datasets.cli.command("export-delta")(engines.export_delta)


@app.command("info")
def info(ctx: typer.Context) -> None:
    """Show the root, bucket, cluster and storage in effect, and where each came from."""
    import omfs

    run = get_app(ctx)
    found = omfs.info(run.root, bucket=run.bucket, context=run.context, cluster=run.cluster)
    if run.as_json:
        run.value(found)
        return
    for key in ("root", "bucket", "context", "cluster", "storage"):
        source = found["sources"].get(key, "")
        value = found[key] if found[key] is not None else "-"
        print(f"{key:<9} {value}" + (f"  ({source})" if source and source != "not set" else ""))
    print(f"{'config':<9} {found['config_file']}")
    print(f"{'state':<9} {found['state_folder']}")
    print(f"{'version':<9} omfs {found['version']}")


def _show_version(value: bool) -> None:
    if value:
        import omfs

        print(f"omfs {omfs.__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    ctx: typer.Context,
    root: Annotated[
        str | None, typer.Option(help="context root URL or folder [env: OMFS_ROOT]")
    ] = None,
    bucket: Annotated[
        str | None, typer.Option(help="bucket [env: OMFS_BUCKET; default: omega]")
    ] = None,
    cluster: Annotated[
        str | None, typer.Option(help="Dask scheduler address [env: OMFS_CLUSTER]")
    ] = None,
    context: Annotated[
        str | None, typer.Option(help="a named context of the config file [env: OMFS_CONTEXT]")
    ] = None,
    storage_option: Annotated[
        list[str] | None,
        typer.Option(
            "--storage-option",
            help="KEY=VALUE storage option of --root, e.g. client_kwargs.endpoint_url=URL or "
            "anon=true (repeatable; dotted keys nest)",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="show the logs of Dask and storage")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_show_version, help="show the version"),
    ] = False,
) -> None:
    """Build the :class:`~omfs.cli.app.App` every command of this run takes."""
    run = get_app(ctx)
    run.root, run.bucket, run.cluster, run.context = root, bucket, cluster, context
    run.storage_options = parse_storage_options(storage_option, "--storage-option")
    run.as_json = run.as_json or as_json
    quiet_libraries(verbose)


def main() -> None:
    """Entry point of the ``om`` script: one :class:`~omfs.cli.app.App` per run; Ctrl-C
    ends it in one line."""
    run = App()
    with interrupts_reported(run.fail):
        app(obj=run)
