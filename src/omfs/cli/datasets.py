"""``om datasets ...``"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from omfs.cli._common import (
    AsName,
    Conditions,
    DryRun,
    ToBucket,
    ToContext,
    ToOptions,
    ToRoot,
    drop_command,
    emit_table,
    emit_value,
    fail,
    parse_attributes,
    parse_size,
    progress_bar,
    promote_command,
    report_written,
    state,
)
from omfs.cli._versions import add_commands

app = typer.Typer(help="Datasets: Parquet tables and raw files.", no_args_is_help=True)

_TABLE_SUFFIXES = {
    ".csv",
    ".tsv",
    ".parquet",
    ".pq",
    ".jsonl",
    ".ndjson",
    ".json",
    ".feather",
    ".arrow",
}


def read_table_file(path: Path) -> Any:
    import pandas as pd

    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if suffix in (".jsonl", ".ndjson"):
        return pd.read_json(path, lines=True)
    if suffix == ".json":
        return pd.read_json(path)
    return pd.read_feather(path)


def write_table_file(df: Any, path: Path) -> None:
    """Write by suffix, atomically: a failed write leaves no partial file."""
    import pandas as pd

    suffix = path.suffix.lower()
    if isinstance(df, pd.Series):
        df = df.to_frame()
    elif not isinstance(df, pd.DataFrame):
        df = pd.DataFrame(df) if not hasattr(df, "to_pandas") else df.to_pandas()
    tmp = path.with_name(f".{path.name}.om-tmp")
    keep_index = not (isinstance(df.index, pd.RangeIndex) and df.index.name is None)
    try:
        if suffix in (".csv", ".tsv"):
            df.to_csv(tmp, sep="\t" if suffix == ".tsv" else ",", index=keep_index)
        elif suffix in (".parquet", ".pq"):
            df.to_parquet(tmp)
        elif suffix in (".jsonl", ".ndjson"):
            (df.reset_index() if keep_index else df).to_json(tmp, orient="records", lines=True)
        else:
            fail(
                f"Cannot write a table to {str(path)!r}: use a .csv, .tsv, .parquet or .jsonl file"
            )
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _version_rows(metas: list[Any]) -> list[dict[str, Any]]:
    return [
        {
            "version": m.version,
            "created": m.created,
            "kind": m.kind,
            "rows": m.get("rows"),
            "bytes": m.get("bytes"),
            "tag": m.tag,
            "operation": m.get("operation"),
        }
        for m in metas
    ]


@app.command("list")
def list_(
    pattern: Annotated[str | None, typer.Argument(help="glob, e.g. 'sales/*'")] = None,
) -> None:
    """List datasets (names, one per line when piped)."""
    names = state.omega().datasets.list(pattern)
    emit_table([{"name": n} for n in names], ["name"])


@app.command()
def put(
    path: Annotated[
        Path, typer.Argument(help="CSV, Parquet, JSON lines, Feather; other files are stored raw")
    ],
    name: Annotated[str, typer.Argument(help="dataset name, e.g. sales/2024")],
    append: Annotated[
        bool, typer.Option("--append", help="append rows instead of replacing")
    ] = False,
    raw: Annotated[
        bool, typer.Option("--raw", help="store the file as is, whatever its type")
    ] = False,
    attr: Annotated[list[str] | None, typer.Option("--attr", help="KEY=VALUE attribute")] = None,
    tag: Annotated[str | None, typer.Option(help="tag this version")] = None,
) -> None:
    """Store a local file as a new version of a dataset."""
    if not path.is_file():
        fail(f"No such file: {str(path)!r}")
    om = state.omega()
    attributes = parse_attributes(attr)
    if raw or path.suffix.lower() not in _TABLE_SUFFIXES:
        with progress_bar(f"put {name}", path.stat().st_size) as advance:
            meta = om.datasets.put(
                str(path), name, append=append, attributes=attributes, tag=tag, progress=advance
            )
    else:
        meta = om.datasets.put(
            read_table_file(path), name, append=append, attributes=attributes, tag=tag
        )
    emit_table(
        _version_rows([meta]),
        ["version", "kind", "rows", "bytes", "operation"],
        plain=lambda r: f"{name}\tv{r['version']}\t{r['rows'] or r['bytes']}",
    )


@app.command()
def get(
    name: Annotated[str, typer.Argument(help="dataset name, optionally name@vN")],
    path: Annotated[
        Path, typer.Argument(help="file to write: .csv, .parquet or .jsonl (raw: any)")
    ],
    version: Annotated[int | None, typer.Option(help="read this version")] = None,
    columns: Annotated[str | None, typer.Option(help="comma-separated columns")] = None,
) -> None:
    """Write a dataset to a local file."""
    ds = state.omega().datasets
    meta = ds.metadata(name, version=version)
    if meta.kind == "raw":
        with progress_bar(f"get {name}", meta.get("bytes")) as advance:
            ds.get(name, version=version, local_path=path, progress=advance)
    else:
        cols = [c.strip() for c in columns.split(",")] if columns else None
        write_table_file(ds.get(name, version=version, columns=cols), path)
    report_written(meta, path)


@app.command()
def drop(
    name: Annotated[str, typer.Argument(help="dataset name, or name@vN for one version")],
    force: Annotated[bool, typer.Option("--force", help="no error if it does not exist")] = False,
) -> None:
    """Delete a dataset with all its versions (or one version)."""
    drop_command("datasets", name, force)


@app.command()
def metadata(
    name: Annotated[str, typer.Argument(help="dataset name, optionally name@vN")],
    version: Annotated[int | None, typer.Option(help="this version")] = None,
) -> None:
    """Show a version's metadata (JSON)."""
    meta = state.omega().datasets.metadata(name, version=version).to_dict()
    emit_value(meta)


@app.command()
def versions(name: Annotated[str, typer.Argument(help="dataset name")]) -> None:
    """List the versions of a dataset."""
    metas = state.omega().datasets.versions(name)
    emit_table(
        _version_rows(metas), ["version", "created", "kind", "rows", "bytes", "tag", "operation"]
    )


@app.command()
def compact(
    name: Annotated[str, typer.Argument(help="dataset name")],
    target_size: Annotated[
        str, typer.Option(help="size of the merged parts, e.g. 128MB, 1GB")
    ] = "128MB",
) -> None:
    """Merge a dataset's small parts into few large ones, as a new version (same rows)."""
    ds = state.omega().datasets
    before = ds.metadata(name)
    meta = ds.compact(name, target_size=parse_size(target_size))
    if meta.version == before.version:
        print(
            f"om: {name} v{meta.version} has nothing to merge ({meta['parts']} parts)",
            file=sys.stderr,
        )
    rows = [
        {
            "version": meta.version,
            "parts before": before["parts"],
            "parts": meta["parts"],
            "rows": meta["rows"],
            "bytes": meta["bytes"],
        }
    ]
    emit_table(rows, ["version", "parts before", "parts", "rows", "bytes"])


@app.command()
def promote(
    name: Annotated[str, typer.Argument(help="dataset name, optionally name@vN")],
    to_bucket: ToBucket = None,
    to_root: ToRoot = None,
    to_options: ToOptions = None,
    to_context: ToContext = None,
    asname: AsName = None,
    dry_run: DryRun = False,
    condition: Conditions = None,
) -> None:
    """Copy a dataset version to another bucket or context, with lineage."""
    promote_command(
        "datasets", name, to_bucket, to_root, to_options, asname, dry_run, condition, to_context
    )


add_commands(app, "datasets")
