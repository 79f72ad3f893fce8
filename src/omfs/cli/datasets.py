"""``om datasets ...``"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from omfs._util import parse_kv
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
    parse_size,
    progress_bar,
    promote_command,
    report_written,
    require_file,
    state,
)
from omfs.cli._versions import add_commands

app = typer.Typer(
    rich_markup_mode=None, help="Datasets: Parquet tables and raw files.", no_args_is_help=True
)


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
    om = state.omega()
    names = om.datasets.list(pattern)
    if not names:
        om.check_location()  # an empty list from a mistyped root would mislead
    emit_table([{"name": n} for n in names], ["name"])


def _parse_dtypes(items: list[str] | None) -> dict[str, str]:
    form = "COLUMN=TYPE (e.g. id=string, qty=Int64)"
    try:
        pairs = parse_kv(items, "--dtype", form=form)
    except ValueError as exc:
        fail(str(exc), 2)
    for column, kind in pairs:
        if not kind:
            fail(f"--dtype takes {form}, got {f'{column}='!r}", 2)
    return dict(pairs)


def _spool_stdin(suffix: str) -> Path:
    """Standard input in a temporary file (removed at exit) with the given suffix."""
    import atexit
    import shutil
    import tempfile

    fd, name = tempfile.mkstemp(prefix="om-stdin-", suffix=suffix)
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(sys.stdin.buffer, out, 8 * 2**20)
    atexit.register(lambda: Path(name).unlink(missing_ok=True))
    return Path(name)


@app.command()
def put(
    path: Annotated[
        str,
        typer.Argument(
            help="a table file: .csv, .tsv, .parquet, .jsonl, .json, .feather, .xlsx (text "
            "formats also .gz, .bz2, .zst); - reads stdin (see --format); --raw stores any file"
        ),
    ],
    name: Annotated[str, typer.Argument(help="dataset name, e.g. sales/2024")],
    append: Annotated[
        bool, typer.Option("--append", help="append rows instead of replacing")
    ] = False,
    raw: Annotated[
        bool, typer.Option("--raw", help="store the file as is, whatever its type")
    ] = False,
    sep: Annotated[
        str | None,
        typer.Option("--sep", help="CSV field separator (default: detected; \\t for tab)"),
    ] = None,
    encoding: Annotated[
        str | None, typer.Option("--encoding", help="text encoding, e.g. latin-1 (default utf-8)")
    ] = None,
    parse_dates: Annotated[
        list[str] | None,
        typer.Option(
            "--parse-dates",
            metavar="COLS",
            help="read these columns as timestamps (comma-separated, repeatable); ISO dates "
            "are detected without it",
        ),
    ] = None,
    dtype: Annotated[
        list[str] | None,
        typer.Option(
            "--dtype",
            metavar="COL=TYPE",
            help="a column's type: string, int64, float64, bool, category, datetime (repeatable)",
        ),
    ] = None,
    skip_bad_lines: Annotated[
        bool,
        typer.Option("--skip-bad-lines", help="skip CSV lines with the wrong number of fields"),
    ] = False,
    max_columns: Annotated[
        int | None,
        typer.Option(
            "--max-columns",
            metavar="N",
            help="refuse a table with more columns (default 10000; each costs memory)",
        ),
    ] = None,
    max_line_bytes: Annotated[
        str,
        typer.Option(
            "--max-line-bytes",
            metavar="SIZE",
            help="the longest line of a CSV or JSON-lines file (memory grows with it), e.g. 64MB",
        ),
    ] = "8MiB",
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="the format of stdin (-): csv, tsv, jsonl, parquet"),
    ] = None,
    attr: Annotated[list[str] | None, typer.Option("--attr", help="KEY=VALUE attribute")] = None,
    attr_json: Annotated[
        bool, typer.Option("--attr-json", help="read --attr values as JSON (numbers, lists)")
    ] = False,
    tag: Annotated[str | None, typer.Option(help="tag this version")] = None,
) -> None:
    """Store a local file as a new version of a dataset.

    Tables are read streaming (bounded memory): a CSV's separator, ISO dates and types are
    detected; errors name the file and line.
    """
    from omfs.objects.datasets._files import MAX_COLUMNS, ImportOptions, open_table_file

    if path == "-":
        file = _spool_stdin(f".{fmt or ('bin' if raw else 'csv')}")
    else:
        file = Path(path)
        require_file(file)
    om = state.omega()
    attributes = parse_attributes(attr, as_json=attr_json)
    size = file.stat().st_size
    if raw:
        with progress_bar(f"put {name}", size) as advance:
            meta = om.datasets.put(
                str(file), name, append=append, attributes=attributes, tag=tag, progress=advance
            )
    else:  # an unknown suffix is refused by open_table_file, naming --raw
        options = ImportOptions(
            sep=sep,
            encoding=encoding,
            parse_dates=[c.strip() for item in parse_dates or [] for c in item.split(",")],
            dtype=_parse_dtypes(dtype),
            skip_bad_lines=skip_bad_lines,
            max_columns=MAX_COLUMNS if max_columns is None else max_columns,
            max_line_bytes=parse_size(max_line_bytes),
        )
        with progress_bar(f"put {name}", size) as advance:
            data = open_table_file(file, options, progress=advance)
            meta = om.datasets.put(data, name, append=append, attributes=attributes, tag=tag)
        if options.skipped:
            print(f"om: skipped {options.skipped} bad line(s) of {path}", file=sys.stderr)
    emit_table(
        _version_rows([meta]),
        ["version", "kind", "rows", "bytes", "operation"],
        plain=lambda r: f"{name}\tv{r['version']}\t{r['rows'] or r['bytes']}",
    )


_WHERE = re.compile(r"^\s*([^<>=!~\s]+)\s*(==|=|!=|<=|>=|<|>|~=|\^=)\s*(.*?)\s*$")
_WHERE_OPS = {
    "==": "eq",
    "=": "eq",
    "!=": "ne",
    "<": "lt",
    "<=": "lte",
    ">": "gt",
    ">=": "gte",
    "~=": "contains",
    "^=": "startswith",
}


def parse_where(items: list[str] | None) -> dict[str, Any]:
    """``--where 'qty>10'`` as the API's keyword filters (``qty__gt="10"``), values as text
    that the store casts to the column's type."""
    out: dict[str, Any] = {}
    for item in items or []:
        match = _WHERE.match(item)
        if not match or not match.group(3):
            fail(
                f"--where {item!r}: use COLUMN OP VALUE with OP one of == != < <= > >= ~= "
                "(contains) ^= (starts with), e.g. --where 'qty>10'",
                2,
            )
        column, op, value = match.groups()  # type: ignore[union-attr]
        value = value.strip("'\"")
        key = f"{column}__{_WHERE_OPS[op]}"
        if key in out:
            fail(f"--where gives {column} {op} twice; combine them into one", 2)
        out[key] = value
    return out


@app.command()
def get(
    name: Annotated[str, typer.Argument(help="dataset name, optionally name@vN or name@tag")],
    path: Annotated[
        str,
        typer.Argument(
            help="file to write, by suffix: .csv, .tsv, .parquet, .jsonl, .feather (text also "
            ".gz); - writes CSV (or --format) to stdout; raw datasets: any file"
        ),
    ],
    version: Annotated[int | None, typer.Option(help="read this version")] = None,
    columns: Annotated[str | None, typer.Option(help="comma-separated columns")] = None,
    where: Annotated[
        list[str] | None,
        typer.Option(
            "--where",
            metavar="COND",
            help="keep rows where COND holds, e.g. 'qty>10', 'region==EU', 'name^=A' "
            "(repeatable, all must hold; pushed down into the Parquet read)",
        ),
    ] = None,
    fmt: Annotated[
        str | None, typer.Option("--format", help="format for stdout: csv, tsv, jsonl")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="overwrite an existing file")] = False,
) -> None:
    """Write a dataset to a local file."""
    from omfs.objects.datasets._files import table_format, write_table_file

    ds = state.omega().datasets
    meta = ds.metadata(name, version=version)
    to_stdout = path == "-"
    target = Path(path)
    if not to_stdout and target.exists() and not force:
        fail(f"{path} exists; pass --force to overwrite it")
    filters = parse_where(where)
    if meta.kind == "raw":
        if columns or filters:
            fail(f"{name} is a raw file: --columns and --where apply to tables")
        if not to_stdout and table_format(target)[0] is not None:
            stored = meta.get("filename") or "a raw file"
            fail(
                f"{name} holds {stored}, not a table: writing it as {target.name} would "
                "give the file a wrong suffix. Choose a file name with its own suffix."
            )
        if to_stdout:
            for chunk in ds.get(name, version=version, chunksize=8 * 2**20):
                sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
            return
        with progress_bar(f"get {name}", meta.get("bytes")) as advance:
            ds.get(name, version=version, local_path=target, progress=advance)
    else:
        cols = [c.strip() for c in columns.split(",")] if columns else None
        with progress_bar(f"get {name}", None):
            data = ds.get(name, version=version, columns=cols, **filters)
            write_table_file(data, None if to_stdout else target, fmt)
        if to_stdout:
            return
    report_written(meta, target)


@app.command()
def head(
    name: Annotated[str, typer.Argument(help="dataset name, optionally name@vN or name@tag")],
    rows: Annotated[int, typer.Option("-n", "--rows", min=1, help="how many rows")] = 10,
    columns: Annotated[str | None, typer.Option(help="comma-separated columns")] = None,
    where: Annotated[
        list[str] | None, typer.Option("--where", metavar="COND", help="as for get")
    ] = None,
) -> None:
    """Show the first rows of a table (reads only what they need)."""
    import pandas as pd

    ds = state.omega().datasets
    meta = ds.metadata(name)
    if meta.kind == "raw":
        fail(f"{name} is a raw file ({meta.get('filename') or 'no name'}); `om datasets get` it")
    cols = [c.strip() for c in columns.split(",")] if columns else None
    chunks = ds.get(name, columns=cols, chunksize=rows, **parse_where(where))
    first = next(iter(chunks), None)
    if first is None:
        first = pd.DataFrame()
    if isinstance(first, pd.Series):
        first = first.to_frame()
    elif not isinstance(first, pd.DataFrame):
        first = pd.DataFrame(first)
    first = first.head(rows)
    keep_index = not (isinstance(first.index, pd.RangeIndex) and first.index.name is None)
    if keep_index:
        first = first.reset_index()
    records = first.astype(object).where(first.notna(), None).to_dict(orient="records")
    emit_table(records, [str(c) for c in first.columns], empty="no rows")


@app.command()
def schema(
    name: Annotated[str, typer.Argument(help="dataset name, optionally name@vN or name@tag")],
) -> None:
    """Show a table's columns and types."""
    meta = state.omega().datasets.metadata(name)
    if meta.kind == "raw":
        fail(f"{name} is a raw file ({meta.get('filename') or 'no name'}): it has no columns")
    columns = meta.get("columns") or {}
    emit_table(
        [{"column": c, "type": t.replace("large_string", "string")} for c, t in columns.items()],
        ["column", "type"],
        title=f"{meta.name} v{meta.version}: {meta.get('rows')} rows",
    )


@app.command()
def drop(
    name: Annotated[str, typer.Argument(help="dataset name, or name@vN for one version")],
    force: Annotated[bool, typer.Option("--force", help="no error if it does not exist")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
) -> None:
    """Delete a dataset with all its versions (or one version)."""
    drop_command("datasets", name, force, yes)


@app.command()
def restore(name: Annotated[str, typer.Argument(help="dataset name")]) -> None:
    """Bring back a dropped dataset with its whole history (until gc collects its files)."""
    meta = state.omega().datasets.restore(name)
    if state.as_json:
        emit_value({"name": name, "restored": True, "version": meta.version})
    else:
        print(f"om: restored dataset {name!r} (latest version {meta.version})", file=sys.stderr)


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
    create_bucket: CreateBucket = False,
    force: Force = False,
) -> None:
    """Copy a dataset version to another bucket or context, with lineage."""
    promote_command(
        "datasets",
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
    )


add_commands(app, "datasets")
