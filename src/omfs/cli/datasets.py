"""``om datasets ...``"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from omfs._util import parse_kv
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
    parse_size,
    promote_command,
    refuse_overwrite,
    report_written,
    require_file,
    restore_command,
)
from omfs.cli._versions import add_commands, version_row
from omfs.cli.app import App, get_app
from omfs.cli.errors import OptionError
from omfs.errors import InvalidFilterError
from omfs.objects.datasets.where import parse_where

cli = typer.Typer(
    rich_markup_mode=None, help="Datasets: Parquet tables and raw files.", no_args_is_help=True
)


@cli.command("list")
def list_(
    ctx: typer.Context,
    pattern: Annotated[str | None, typer.Argument(help="glob, e.g. 'sales/*'")] = None,
) -> None:
    """List datasets (names, one per line when piped)."""
    app = get_app(ctx)
    om = app.omega()
    names = om.datasets.list(pattern)
    if not names:
        om.check_location()  # an empty list from a mistyped root would mislead
    app.table([{"name": n} for n in names], ["name"])


def _parse_dtypes(items: list[str] | None) -> dict[str, str]:
    form = "COLUMN=TYPE (e.g. id=string, qty=Int64)"
    try:
        pairs = parse_kv(items, "--dtype", form=form)
    except ValueError as exc:
        raise OptionError(str(exc)) from None
    for column, kind in pairs:
        if not kind:
            raise OptionError(f"--dtype takes {form}, got {f'{column}='!r}")
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


# the options of `om datasets put`
Path_ = Annotated[
    str,
    typer.Argument(
        help="a table file: .csv, .tsv, .parquet, .jsonl, .json, .feather, .xlsx (text "
        "formats also .gz, .bz2, .zst); - reads stdin (see --format); --raw stores any file"
    ),
]
Append = Annotated[bool, typer.Option("--append", help="append rows instead of replacing")]
Raw = Annotated[bool, typer.Option("--raw", help="store the file as is, whatever its type")]
Sep = Annotated[
    str | None,
    typer.Option("--sep", help="CSV field separator (default: detected; \\t for tab)"),
]
Encoding = Annotated[
    str | None, typer.Option("--encoding", help="text encoding, e.g. latin-1 (default utf-8)")
]
ParseDates = Annotated[
    list[str] | None,
    typer.Option(
        "--parse-dates",
        metavar="COLS",
        help="read these columns as timestamps (comma-separated, repeatable); ISO dates "
        "are detected without it",
    ),
]
Dtype = Annotated[
    list[str] | None,
    typer.Option(
        "--dtype",
        metavar="COL=TYPE",
        help="a column's type: string, int64, float64, bool, category, datetime (repeatable)",
    ),
]
Decimal = Annotated[
    str,
    typer.Option(
        "--decimal", metavar="CHAR", help="CSV decimal point, e.g. , to read 0,038 as a number"
    ),
]
DateFormat = Annotated[
    str | None,
    typer.Option(
        "--date-format",
        metavar="FORMAT",
        help="CSV dates' layout (strptime), e.g. '%d/%m/%Y %H:%M' (default: ISO 8601)",
    ),
]
SkipBadLines = Annotated[
    bool, typer.Option("--skip-bad-lines", help="skip CSV lines with the wrong number of fields")
]
MaxColumns = Annotated[
    int | None,
    typer.Option(
        "--max-columns",
        metavar="N",
        help="refuse a table with more columns (default 10000; each costs memory)",
    ),
]
MaxLineBytes = Annotated[
    str,
    typer.Option(
        "--max-line-bytes",
        metavar="SIZE",
        help="the longest line of a CSV or JSON-lines file (memory grows with it), e.g. 64MB",
    ),
]
StdinFormat = Annotated[
    str | None,
    typer.Option("--format", help="the format of stdin (-): csv, tsv, jsonl, parquet"),
]
Attr = Annotated[list[str] | None, typer.Option("--attr", help="KEY=VALUE attribute")]
AttrJson = Annotated[
    bool, typer.Option("--attr-json", help="read --attr values as JSON (numbers, lists)")
]
Tag = Annotated[str | None, typer.Option(help="tag this version")]
AddColumns = Annotated[
    bool,
    typer.Option(
        "--add-columns",
        help="with --append: let the rows add columns (earlier rows read them as empty)",
    ),
]


@cli.command()
def put(
    ctx: typer.Context,
    path: Path_,
    name: Annotated[str, typer.Argument(help="dataset name, e.g. sales/2024")],
    append: Append = False,
    raw: Raw = False,
    sep: Sep = None,
    encoding: Encoding = None,
    parse_dates: ParseDates = None,
    dtype: Dtype = None,
    skip_bad_lines: SkipBadLines = False,
    decimal: Decimal = ".",
    date_format: DateFormat = None,
    max_columns: MaxColumns = None,
    max_line_bytes: MaxLineBytes = "8MiB",
    fmt: StdinFormat = None,
    attr: Attr = None,
    attr_json: AttrJson = False,
    tag: Tag = None,
    add_columns: AddColumns = False,
) -> None:
    """Store a local file as a new version of a dataset.

    Tables are read streaming (bounded memory): a CSV's separator, ISO dates and types are
    detected; errors name the file and line.
    """
    app = get_app(ctx)
    file = _spool_stdin(f".{fmt or ('bin' if raw else 'csv')}") if path == "-" else Path(path)
    require_file(file)
    how = {"append": append, "attributes": parse_attributes(attr, as_json=attr_json), "tag": tag}
    if add_columns:
        if not append or raw:
            raise OptionError("--add-columns adds columns to appended rows: use it with --append")
        how["new_columns"] = True
    if raw:
        meta = _put_raw(app, file, name, how)
    else:  # an unknown suffix is refused by open_table_file, naming --raw
        options = _import_options(
            sep, encoding, parse_dates, dtype, skip_bad_lines, max_columns, max_line_bytes
        )
        options.decimal, options.date_format = decimal, date_format
        meta = _put_table(app, file, name, options, how)
        if options.skipped:
            app.note(f"skipped {options.skipped} bad line(s) of {path}")
    app.table(
        [version_row(meta)],
        ["version", "kind", "rows", "bytes", "operation"],
        plain=lambda r: f"{name}\tv{r['version']}\t{r['rows'] or r['bytes']}",
    )


def _import_options(
    sep: str | None,
    encoding: str | None,
    parse_dates: list[str] | None,
    dtype: list[str] | None,
    skip_bad_lines: bool,
    max_columns: int | None,
    max_line_bytes: str,
) -> Any:
    """How ``om datasets put`` reads a table file, from its options."""
    from omfs.objects.datasets._files import MAX_COLUMNS, ImportOptions

    return ImportOptions(
        sep=sep,
        encoding=encoding,
        parse_dates=[c.strip() for item in parse_dates or [] for c in item.split(",")],
        dtype=_parse_dtypes(dtype),
        skip_bad_lines=skip_bad_lines,
        max_columns=MAX_COLUMNS if max_columns is None else max_columns,
        max_line_bytes=parse_size(max_line_bytes),
    )


def _put_raw(app: App, file: Path, name: str, how: dict[str, Any]) -> Any:
    """Store ``file`` as it is, with a progress bar of its bytes."""
    with app.progress(f"put {name}", file.stat().st_size) as advance:
        return app.omega().datasets.put(str(file), name, progress=advance, **how)


def _put_table(app: App, file: Path, name: str, options: Any, how: dict[str, Any]) -> Any:
    """Read ``file`` as a table (streaming) and store it, with a progress bar of its bytes."""
    from omfs.objects.datasets._files import open_table_file

    datasets = app.omega().datasets
    with app.progress(f"put {name}", file.stat().st_size) as advance:
        data = open_table_file(file, options, progress=advance)
        return datasets.put(data, name, **how)


def _where(items: list[str] | None) -> dict[str, Any]:
    """``--where`` conditions as keyword filters; a condition that does not parse is a usage
    error (exit status 2)."""
    try:
        return parse_where(items)
    except InvalidFilterError as exc:
        raise OptionError(exc.cli_message()) from None


@cli.command()
def get(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="dataset name, optionally name@vN or name@tag")],
    path: Annotated[
        str,
        typer.Argument(
            help="file to write, by suffix: .csv, .tsv, .parquet, .jsonl, .json, .feather, "
            ".xlsx (with openpyxl; text also .gz); - writes CSV (or --format) to stdout; raw "
            "datasets: any file"
        ),
    ],
    version: Annotated[int | None, typer.Option(help="read this version")] = None,
    at: At = None,
    columns: Annotated[str | None, typer.Option(help="comma-separated columns")] = None,
    where: Annotated[
        list[str] | None,
        typer.Option(
            "--where",
            metavar="COND",
            help="keep rows where COND holds: 'qty>10', 'region==EU', 'name^=A', "
            "'clinic in (east,south)', 'bmi is not null', '`sepal length (cm)`>5' "
            "(repeatable, all must hold; pushed down into the Parquet read)",
        ),
    ] = None,
    fmt: Annotated[
        str | None, typer.Option("--format", help="format for stdout: csv, tsv, jsonl")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="overwrite an existing file")] = False,
) -> None:
    """Write a dataset to a local file."""
    from omfs.objects.datasets._files import nullable_ints, write_table_file

    app = get_app(ctx)
    ds = app.omega().datasets
    meta = ds.metadata(name, version=version, at=at)
    target = None if path == "-" else Path(path)
    if target is not None:
        refuse_overwrite(app, path, force)
    filters = _where(where)
    if meta.kind == "raw":
        if columns or filters:
            app.fail(f"{name} is a raw file: --columns and --where apply to tables")
        _get_raw(app, ds, meta, meta.name, meta.version, target)
    else:
        cols = [c.strip() for c in columns.split(",")] if columns else None
        with app.progress(f"get {name}", None):
            data = ds.get(meta.name, version=meta.version, columns=cols, **filters)
            data = nullable_ints(_without_row_numbers(data, meta), meta.get("columns") or {})
            write_table_file(data, target, fmt)
    if target is not None:
        report_written(app, meta, target)


def _without_row_numbers(data: Any, meta: Any) -> Any:
    """``data`` without the labels that a filtered read keeps for a table stored with a plain
    RangeIndex: they are row numbers, so a file gets the same columns with --where as
    without (a stored index is a column, ``__index_level_0__`` when unnamed, and stays)."""
    import pandas as pd

    index = getattr(data, "index", None)
    if index is None or index.name is not None or isinstance(index, pd.RangeIndex):
        return data
    if "__index_level_0__" in (meta.get("columns") or {}):
        return data
    return data.reset_index(drop=True)


def _get_raw(
    app: App, ds: Any, meta: Any, name: str, version: int | None, target: Path | None
) -> None:
    """Write a raw dataset to ``target`` (its bytes as they are; None: to stdout)."""
    from omfs.objects.datasets._files import table_format

    if target is None:
        for chunk in ds.get(name, version=version, chunksize=8 * 2**20):
            sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
        return
    if table_format(target)[0] is not None:
        stored = meta.get("filename") or "a raw file"
        app.fail(
            f"{name} holds {stored}, not a table: writing it as {target.name} would "
            "give the file a wrong suffix. Choose a file name with its own suffix."
        )
    with app.progress(f"get {name}", meta.get("bytes")) as advance:
        ds.get(name, version=version, local_path=target, progress=advance)


@cli.command()
def head(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="dataset name, optionally name@vN or name@tag")],
    rows: Annotated[int, typer.Option("-n", "--rows", min=1, help="how many rows")] = 10,
    columns: Annotated[str | None, typer.Option(help="comma-separated columns")] = None,
    where: Annotated[
        list[str] | None, typer.Option("--where", metavar="COND", help="as for get")
    ] = None,
) -> None:
    """Show the first rows of a table (reads only what they need)."""
    import pandas as pd

    from omfs.objects.datasets._files import nullable_ints

    app = get_app(ctx)
    ds = app.omega().datasets
    meta = ds.metadata(name)
    if meta.kind == "raw":
        app.fail(
            f"{name} is a raw file ({meta.get('filename') or 'no name'}); `om datasets get` it"
        )
    cols = [c.strip() for c in columns.split(",")] if columns else None
    chunks = ds.get(name, columns=cols, chunksize=rows, **_where(where))
    first = next(iter(chunks), None)
    if first is None:  # no row matched: still the columns, for a piped header
        first = pd.DataFrame(columns=cols or list(meta.get("columns") or {}))
    if isinstance(first, pd.Series):
        first = first.to_frame()
    elif not isinstance(first, pd.DataFrame):
        first = pd.DataFrame(first)
    first = _without_row_numbers(first.head(rows), meta)
    first = nullable_ints(first, meta.get("columns") or {})
    keep_index = not (isinstance(first.index, pd.RangeIndex) and first.index.name is None)
    if keep_index:
        first = first.reset_index()
    records = first.astype(object).where(first.notna(), None).to_dict(orient="records")
    app.table(records, [str(c) for c in first.columns], empty="no rows", header=True)


@cli.command()
def schema(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="dataset name, optionally name@vN or name@tag")],
) -> None:
    """Show a table's columns and types."""
    app = get_app(ctx)
    meta = app.omega().datasets.metadata(name)
    if meta.kind == "raw":
        app.fail(f"{name} is a raw file ({meta.get('filename') or 'no name'}): it has no columns")
    columns = meta.get("columns") or {}
    app.table(
        [{"column": c, "type": t.replace("large_string", "string")} for c, t in columns.items()],
        ["column", "type"],
        title=f"{meta.name} v{meta.version}: {meta.get('rows')} rows",
    )


@cli.command()
def drop(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="dataset name, or name@vN for one version")],
    force: NoError = False,
    yes: Yes = False,
) -> None:
    """Delete a dataset with all its versions (or one version)."""
    drop_command(get_app(ctx), "datasets", name, force, yes)


@cli.command()
def restore(ctx: typer.Context, name: Annotated[str, typer.Argument(help="dataset name")]) -> None:
    """Bring back a dropped dataset with its whole history (until gc collects its files)."""
    restore_command(get_app(ctx), "datasets", name)


@cli.command()
def compact(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="dataset name")],
    target_size: Annotated[
        str, typer.Option(help="size of the merged parts, e.g. 128MB, 1GB")
    ] = "128MB",
) -> None:
    """Merge a dataset's small parts into few large ones, as a new version (same rows)."""
    app = get_app(ctx)
    ds = app.omega().datasets
    before = ds.metadata(name)
    meta = ds.compact(name, target_size=parse_size(target_size))
    if meta.version == before.version:
        app.note(f"{name} v{meta.version} has nothing to merge ({meta['parts']} parts)")
    rows = [
        {
            "version": meta.version,
            "parts before": before["parts"],
            "parts": meta["parts"],
            "rows": meta["rows"],
            "bytes": meta["bytes"],
        }
    ]
    app.table(rows, ["version", "parts before", "parts", "rows", "bytes"])


@cli.command()
def promote(
    ctx: typer.Context,
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
    how = {"asname": asname, "conditions": condition, "create_bucket": create_bucket}
    target = (to_bucket, to_root, to_options, to_context)
    promote_command(get_app(ctx), "datasets", name, target, {**how, "force": force}, dry_run)


add_commands(cli, "datasets")
