"""``om buckets ...``"""

from __future__ import annotations

from typing import Annotated

import typer

from omfs.cli.app import get_app

cli = typer.Typer(
    rich_markup_mode=None, help="Buckets: top-level folders of a context.", no_args_is_help=True
)


@cli.command("list")
def list_(ctx: typer.Context) -> None:
    """List the buckets of the context."""
    app = get_app(ctx)
    om = app.omega()
    if not om.storage.exists(""):
        om.check_location()
    app.table([{"bucket": b} for b in om.buckets], ["bucket"])


@cli.command()
def drop(
    ctx: typer.Context,
    bucket: Annotated[str, typer.Argument(help="the bucket to drop")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
) -> None:
    """Drop a bucket: every dataset and model in it, with all their versions."""
    app = get_app(ctx)
    om = app.omega()
    if app.asks(yes):
        target = om[bucket]
        datasets, models = target.datasets.list(), target.models.list()
        app.confirm(
            f"Drop bucket {bucket!r} of {om.root} with {len(datasets)} dataset(s) and "
            f"{len(models)} model(s), all versions?",
            yes,
        )
    counts = om.drop_bucket(bucket)
    if app.as_json:
        app.value({"bucket": bucket, "dropped": counts})
    else:
        print(
            f"om: dropped bucket {bucket} ({counts['datasets']} dataset(s), "
            f"{counts['models']} model(s))"
        )
