"""The ``om`` command line: one Typer app per noun, thin calls into the library."""

from __future__ import annotations

from typing import Annotated

import typer

from omfs.cli import buckets, cluster, contexts, datasets, maintenance, models, runtime
from omfs.cli._common import quiet_libraries, run_with_errors, state

__all__ = ["app", "main"]

app = typer.Typer(
    name="om",
    help="omfs: datasets, models and runtime tasks in contexts and buckets.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(datasets.app, name="datasets")
app.add_typer(models.app, name="models")
app.add_typer(buckets.app, name="buckets")
app.add_typer(contexts.app, name="contexts")
app.add_typer(runtime.app, name="runtime")
app.add_typer(cluster.app, name="cluster")
app.command("fsck")(maintenance.fsck)
app.command("upgrade")(maintenance.upgrade)
app.command("gc")(maintenance.gc)


@app.callback()
def _options(
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
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="show the logs of Dask and storage")
    ] = False,
) -> None:
    state.root, state.bucket, state.cluster, state.as_json = root, bucket, cluster, as_json
    state.context = context
    quiet_libraries(verbose)


def main() -> None:
    """Entry point of the ``om`` script."""
    run_with_errors(app)
