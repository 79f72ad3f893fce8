"""``om buckets ...``"""

from __future__ import annotations

from typing import Annotated

import typer

from omfs.cli._common import asks, confirm, emit_table, emit_value, state

app = typer.Typer(
    rich_markup_mode=None, help="Buckets: top-level folders of a context.", no_args_is_help=True
)


@app.command("list")
def list_() -> None:
    """List the buckets of the context."""
    om = state.omega()
    if not om.storage.exists(""):
        om.check_location()
    emit_table([{"bucket": b} for b in state.omega().buckets], ["bucket"])


@app.command()
def drop(
    bucket: Annotated[str, typer.Argument(help="the bucket to drop")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
) -> None:
    """Drop a bucket: every dataset and model in it, with all their versions."""
    om = state.omega()
    if asks(yes):
        target = om[bucket]
        datasets, models = target.datasets.list(), target.models.list()
        confirm(
            f"Drop bucket {bucket!r} of {om.root} with {len(datasets)} dataset(s) and "
            f"{len(models)} model(s), all versions?",
            yes,
        )
    counts = om.drop_bucket(bucket)
    if state.as_json:
        emit_value({"bucket": bucket, "dropped": counts})
    else:
        print(
            f"om: dropped bucket {bucket} ({counts['datasets']} dataset(s), "
            f"{counts['models']} model(s))"
        )
