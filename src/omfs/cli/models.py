"""``om models ...``"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from omfs.cli._common import (
    AsName,
    At,
    Conditions,
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
    promote_command,
    require_file,
    restore_command,
    write_payload_command,
)
from omfs.cli._versions import add_commands, version_row
from omfs.cli.app import get_app

cli = typer.Typer(
    rich_markup_mode=None, help="Models: joblib payloads with JSON sidecars.", no_args_is_help=True
)


@cli.command("list")
def list_(
    ctx: typer.Context,
    pattern: Annotated[str | None, typer.Argument(help="glob, e.g. 'churn/*'")] = None,
) -> None:
    """List models."""
    app = get_app(ctx)
    om = app.omega()
    names = om.models.list(pattern)
    if not names:
        om.check_location()  # an empty list from a mistyped root would mislead
    app.table([{"name": n} for n in names], ["name"])


@cli.command()
def put(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="a joblib or pickle file (it is loaded: trust it)")],
    name: Annotated[str, typer.Argument(help="model name")],
    attr: Annotated[list[str] | None, typer.Option("--attr", help="KEY=VALUE attribute")] = None,
    tag: Annotated[str | None, typer.Option(help="tag this version")] = None,
    attr_json: Annotated[
        bool, typer.Option("--attr-json", help="read --attr values as JSON (numbers, lists)")
    ] = False,
) -> None:
    """Store a model saved with joblib as a new version."""
    from omfs.objects.models.store import describe_kind, is_estimator, load_model_file

    app = get_app(ctx)
    require_file(file)
    model = load_model_file(file)
    meta = app.omega().models.put(
        model, name, attributes=parse_attributes(attr, as_json=attr_json), tag=tag
    )
    if not is_estimator(model):
        app.note(
            f"warning: {str(file)!r} holds a {describe_kind(model)}, which has no fit, "
            "predict or transform method: it is stored, but `om runtime` cannot run it"
        )
    app.table(
        [version_row(meta)],
        ["version", "kind", "fitted", "size"],
        plain=lambda r: f"{name}\tv{r['version']}\t{r['kind']}",
    )


@cli.command()
def get(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="model name, name@vN or name@tag")],
    path: Annotated[Path, typer.Argument(help="joblib file to write")],
    version: Annotated[int | None, typer.Option(help="this version")] = None,
    at: At = None,
    force: Annotated[bool, typer.Option("--force", help="overwrite an existing file")] = False,
) -> None:
    """Write a model's verified joblib payload to a local file (it is not unpickled)."""
    selected = {"version": version, "at": at}
    write_payload_command(get_app(ctx), "models", name, path, selected, force)


@cli.command()
def drop(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="model name, or name@vN for one version")],
    force: NoError = False,
    yes: Yes = False,
) -> None:
    """Delete a model with all its versions (or one version)."""
    drop_command(get_app(ctx), "models", name, force, yes)


@cli.command()
def restore(ctx: typer.Context, name: Annotated[str, typer.Argument(help="model name")]) -> None:
    """Bring back a dropped model with its whole history (until gc collects its files)."""
    restore_command(get_app(ctx), "models", name)


@cli.command()
def promote(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="model name, name@vN or name@tag")],
    to_bucket: ToBucket = None,
    to_root: ToRoot = None,
    to_options: ToOptions = None,
    to_context: ToContext = None,
    asname: AsName = None,
    dry_run: DryRun = False,
    condition: Conditions = None,
    create_bucket: CreateBucket = False,
    force: Force = False,
    with_inputs: Annotated[
        bool,
        typer.Option(
            "--with-inputs", help="also promote the dataset versions the model was trained on"
        ),
    ] = False,
) -> None:
    """Copy a model version to another bucket or context, with lineage."""
    how = {"asname": asname, "conditions": condition, "create_bucket": create_bucket}
    how = {**how, "force": force, **({"with_inputs": True} if with_inputs else {})}
    target = (to_bucket, to_root, to_options, to_context)
    promote_command(get_app(ctx), "models", name, target, how, dry_run)


add_commands(cli, "models")
