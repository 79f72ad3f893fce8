"""``om models ...``"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from omfs._util import atomic_path
from omfs.cli._common import (
    AsName,
    Conditions,
    CreateBucket,
    DryRun,
    Force,
    ToBucket,
    ToContext,
    ToOptions,
    ToRoot,
    drop_command,
    emit_table,
    emit_value,
    fail,
    parse_attributes,
    progress_bar,
    promote_command,
    report_written,
    require_file,
    state,
)
from omfs.cli._versions import add_commands

app = typer.Typer(
    rich_markup_mode=None, help="Models: joblib payloads with JSON sidecars.", no_args_is_help=True
)


def _rows(metas: list[Any]) -> list[dict[str, Any]]:
    return [
        {
            "version": m.version,
            "created": m.created,
            "kind": m.kind,
            "tag": m.tag,
            "fitted": m.get("fitted"),
            "size": m.get("size"),
            "operation": m.get("operation"),
        }
        for m in metas
    ]


@app.command("list")
def list_(
    pattern: Annotated[str | None, typer.Argument(help="glob, e.g. 'churn/*'")] = None,
) -> None:
    """List models."""
    om = state.omega()
    names = om.models.list(pattern)
    if not names:
        om.check_location()  # an empty list from a mistyped root would mislead
    emit_table([{"name": n} for n in names], ["name"])


@app.command()
def put(
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

    require_file(file)
    model = load_model_file(file)
    meta = state.omega().models.put(
        model, name, attributes=parse_attributes(attr, as_json=attr_json), tag=tag
    )
    if not is_estimator(model):
        print(
            f"om: warning: {str(file)!r} holds a {describe_kind(model)}, which has no fit, "
            "predict or transform method: it is stored, but `om runtime` cannot run it",
            file=sys.stderr,
        )
    emit_table(
        _rows([meta]),
        ["version", "kind", "fitted", "size"],
        plain=lambda r: f"{name}\tv{r['version']}\t{r['kind']}",
    )


@app.command()
def get(
    name: Annotated[str, typer.Argument(help="model name, name@vN or name@tag")],
    path: Annotated[Path, typer.Argument(help="joblib file to write")],
    version: Annotated[int | None, typer.Option(help="this version")] = None,
    force: Annotated[bool, typer.Option("--force", help="overwrite an existing file")] = False,
) -> None:
    """Write a model's verified joblib payload to a local file (it is not unpickled)."""
    models = state.omega().models
    meta = models.metadata(name, version=version)
    if path.exists() and not force:
        fail(f"{path} exists; pass --force to overwrite it")
    with atomic_path(path) as tmp, progress_bar(f"get {name}", meta.get("size")) as advance:
        tmp.write_bytes(models.read_payload(meta, progress=advance))
    report_written(meta, path)


@app.command()
def drop(
    name: Annotated[str, typer.Argument(help="model name, or name@vN for one version")],
    force: Annotated[bool, typer.Option("--force", help="no error if it does not exist")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
) -> None:
    """Delete a model with all its versions (or one version)."""
    drop_command("models", name, force, yes)


@app.command()
def restore(name: Annotated[str, typer.Argument(help="model name")]) -> None:
    """Bring back a dropped model with its whole history (until gc collects its files)."""
    meta = state.omega().models.restore(name)
    if state.as_json:
        emit_value({"name": name, "restored": True, "version": meta.version})
    else:
        print(f"om: restored model {name!r} (latest version {meta.version})", file=sys.stderr)


@app.command()
def metadata(
    name: Annotated[str, typer.Argument(help="model name, name@vN or name@tag")],
    version: Annotated[int | None, typer.Option(help="this version")] = None,
) -> None:
    """Show a version's sidecar (JSON)."""
    emit_value(state.omega().models.metadata(name, version=version))


@app.command()
def versions(name: Annotated[str, typer.Argument(help="model name")]) -> None:
    """List the versions of a model."""
    emit_table(
        _rows(state.omega().models.versions(name)),
        ["version", "created", "kind", "tag", "fitted", "size", "operation"],
    )


@app.command()
def promote(
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
    promote_command(
        "models",
        name,
        to_bucket,
        to_root,
        to_options,
        asname,
        dry_run,
        condition,
        to_context,
        create_bucket,
        force,
        with_inputs,
    )


add_commands(app, "models")
