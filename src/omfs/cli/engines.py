"""Other engines: ``om sql "select ..."`` (DuckDB over dataset versions, see
:mod:`omfs.ops.sql`) and ``om datasets export-delta`` (a dataset's versions as a Delta table)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from omfs._util import parse_kv
from omfs.cli._common import refuse_overwrite
from omfs.cli.app import App, get_app
from omfs.cli.errors import OptionError

__all__ = ["export_delta", "sql"]

FORMATS = ("table", "csv", "tsv", "jsonl", "parquet")


def sql(
    ctx: typer.Context,
    query: Annotated[
        str,
        typer.Argument(
            help='the query; datasets are its tables: sales, "sales@prod", "sales@v3", '
            '"bucket/sales", "context:bucket/sales@prod" (quote names with @, / or :)'
        ),
    ],
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="table (a table on a terminal, tab-separated lines when piped, JSON with "
            "--json), csv, tsv, jsonl, or parquet (with -o); default: table, or -o's suffix",
        ),
    ] = None,
    output: Annotated[
        str | None, typer.Option("--output", "-o", metavar="FILE", help="write the answer here")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="overwrite an existing file")] = False,
    into: Annotated[
        str | None,
        typer.Option(
            "--into",
            metavar="NAME",
            help="store the answer as a new version of dataset NAME, with the query and the "
            "versions read as its lineage",
        ),
    ] = None,
) -> None:
    """Run a SQL query (DuckDB) over dataset versions and show or write its answer.

    The query reads only the datasets it names (no other files, no COPY TO, INSTALL, LOAD,
    ATTACH or settings): put a file as a dataset to query it.
    """
    app = get_app(ctx)
    if fmt is not None and fmt not in FORMATS:
        app.fail(f"--format takes one of {', '.join(FORMATS)}, got {fmt!r}", 2)
    target = None if output in (None, "-") else Path(output)
    if target is not None:
        refuse_overwrite(app, str(output), force)
    if fmt == "parquet" and target is None:
        app.fail("--format parquet writes a file: give -o FILE", 2)
    om = app.omega()
    if into is not None:
        _report_stored(app, om.sql(query, into=into))
        return
    answer = _frame(om.sql(query, as_arrow=True))
    if target is not None or fmt not in (None, "table"):
        from omfs.objects.datasets._files import write_table_file

        write_table_file(answer, target, fmt if fmt != "table" else None)
        if target is not None:
            if app.as_json:
                app.value({"path": str(target), "rows": len(answer)})
            else:
                print(str(target))
        return
    _show(app, answer)


def _frame(table: Any) -> Any:
    """The answer as a DataFrame whose integer columns stay integers where they hold nulls
    (``5``, not ``5.0``), in a table and in every file format alike."""
    from omfs.objects.datasets._files import nullable_ints

    return nullable_ints(table.to_pandas(), {f.name: f.type for f in table.schema})


def _show(app: App, answer: Any) -> None:
    """The answer as the other commands show rows: a table, tab-separated lines, JSON."""
    records = answer.astype(object).where(answer.notna(), None).to_dict(orient="records")
    app.table(records, [str(c) for c in answer.columns], empty="no rows", header=True)


def _report_stored(app: App, meta: Any) -> None:
    app.table(
        [{"name": meta.name, "version": meta.version, "rows": meta.get("rows")}],
        ["name", "version", "rows"],
        plain=lambda r: f"{r['name']}\tv{r['version']}\t{r['rows']}",
    )


def export_delta(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="dataset name")],
    url: Annotated[str, typer.Argument(help="the Delta table: a folder or s3://bucket/path")],
    option: Annotated[
        list[str] | None,
        typer.Option(
            "--storage-option",
            metavar="KEY=VALUE",
            help="a deltalake storage option, e.g. AWS_ENDPOINT_URL=http://... (repeatable)",
        ),
    ] = None,
) -> None:
    """Write a dataset's versions as the commits of a Delta table (Delta version k holds
    version k+1's rows); a re-run adds the versions since the last export."""
    app = get_app(ctx)
    try:
        options = dict(parse_kv(option, "--storage-option", form="KEY=VALUE"))
    except ValueError as exc:
        raise OptionError(str(exc)) from None
    report = app.omega().datasets.export_delta(name, url, storage_options=options or None)
    if app.as_json:
        app.value(report)
        return
    if report.exported:
        first, last = report.exported[0], report.exported[-1]
        app.note(
            f"exported {name} v{first}..v{last} to {url} (Delta versions {first - 1}..{last - 1})"
        )
    else:
        app.note(f"{url} is up to date (Delta version {report.delta_version})")
