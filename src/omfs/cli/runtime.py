"""``om runtime ...``"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from omfs.cli._common import parse_params, refuse_overwrite
from omfs.cli.app import App, get_app
from omfs.cli.errors import OptionError, debugging
from omfs.cli.output import is_terminal, summarise
from omfs.compute.resources import ResourceSpec

cli = typer.Typer(
    rich_markup_mode=None,
    help="Runtime: model tasks on the context's Dask cluster.",
    no_args_is_help=True,
)


_REQUIRE_HELP = (
    "route to workers offering LABEL or NAME=AMOUNT (repeatable); 'none': any worker, "
    "whatever the model's attributes require"
)
Require = Annotated[
    list[str] | None, typer.Option("--require", metavar="LABEL|NAME=AMOUNT", help=_REQUIRE_HELP)
]
Local = Annotated[bool, typer.Option("--local", help="run in this process, no cluster")]


def _seconds(value: float | None) -> float | None:
    """``--timeout``: a finite number of seconds, 0 or more."""
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise typer.BadParameter(f"{value} is not a number of seconds (0 or more)")
    return value


@cli.callback()
def _runtime_options(ctx: typer.Context, require: Require = None, local: Local = False) -> None:
    """The options may also follow the command (`om runtime model m fit X --require gpu`)."""
    app = get_app(ctx)
    app.require = list(require or [])
    app.local = local


def _command_options(ctx: typer.Context, require: list[str] | None, local: bool) -> App:
    """The run's App with a command's own --require / --local added to the group's."""
    app = get_app(ctx)
    app.require = [*app.require, *(require or [])]
    app.local = app.local or local
    return app


def _runtime(app: App) -> Any:
    from omfs.cli.gateway import with_requirements

    runtime = with_requirements(app.omega().runtime, app.require)
    return runtime.mode(local=app.local)


def gateway_socket(om: Any, local: bool) -> Any:
    """The background cluster's gateway socket, when this context's tasks go there."""
    if local:
        return None
    from omfs.compute.processes import background, gateway

    running = background()
    spec = om.runtime.cluster.spec
    if running is None or (spec is not None and spec != running.address):
        return None  # a scheduler of its own (an address or a Client): connect to it here
    return gateway(running)


@cli.command()
def model(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="model name")],
    action: Annotated[
        str,
        typer.Argument(
            help="fit, partial_fit, predict, predict_proba, decision_function, transform, score, "
            "gridsearch"
        ),
    ],
    x: Annotated[
        str | None, typer.Argument(metavar="[X]", help="input dataset, e.g. sales or 'sales[a,b]'")
    ] = None,
    y: Annotated[str | None, typer.Argument(metavar="[Y]", help="target dataset")] = None,
    result: Annotated[
        str | None, typer.Option("--result", help="store the output as this dataset")
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", help="KEY=VALUE passed to the method")
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(metavar="SECONDS", help="seconds to wait for the result", callback=_seconds),
    ] = None,
    require: Require = None,
    local: Local = False,
    run_async: Annotated[
        bool, typer.Option("--async", help="print the task's id and return at once")
    ] = False,
    param_grid: Annotated[
        str | None,
        typer.Option(help="gridsearch: the candidates as JSON, e.g. '{\"C\": [0.1, 1, 10]}'"),
    ] = None,
) -> None:
    """Run a model task and print its result.

    With --timeout, a task that has not finished is cancelled and writes nothing (or, if it
    was already writing, its result is waited for and shown). With --async, the task's id
    is printed at once and the task runs on: `om runtime result ID` gives its result.
    """
    app = _command_options(ctx, require, local)
    if run_async and (timeout is not None or app.local):
        other = "--timeout" if timeout is not None else "--local"
        raise OptionError(
            f"--async and {other} do not go together: --async returns at once and the task "
            "runs on the cluster; drop one of them."
        )
    spec: dict[str, Any] = {"name": name, "action": action, "x": x, "y": y, "result": result}
    spec |= {"params": parse_params(param), "timeout": timeout, "async": run_async}
    spec["param_grid"] = param_grid
    spec |= {"require": app.require, "local": app.local}
    answer = _run_task(app, spec)
    _show_cut(app, answer, action, str(answer.get("task_id")))


def _run_task(app: App, spec: dict[str, Any]) -> dict[str, Any]:
    """Run the task: through the background cluster's gateway where there is one (no Dask
    import here), else in this process."""
    from omfs.cli.gateway import model_command, request

    om = app.omega()
    path = gateway_socket(om, app.local)
    if path is None:
        if spec.get("async") and not app.local and om.cluster.spec is None and not _outlives():
            app.fail(
                "--async needs a cluster that outlives this command, and none runs: start "
                "one with `om cluster start` (or give --cluster / $OMFS_CLUSTER)."
            )
        return model_command(om, spec, debug=debugging())
    answer = request(path, {"context": context_of(om), "task": spec, "debug": debugging()})
    return _with_credentials_advice(answer, om.storage.url)


def _outlives() -> bool:
    """Whether a background cluster runs (its gateway may be gone: then this process
    submits to it with a client of its own, fire-and-forget)."""
    from omfs.compute.processes import background

    return background() is not None


def context_of(om: Any) -> dict[str, Any]:
    """What the gateway needs to open ``om``'s context and bucket."""
    storage = om.storage
    return {
        "root": storage.url,
        "storage_options": storage.options,
        "bucket": om.bucket,
        "unsafe_commits": storage.unsafe_commits,
        "durable": storage.durable,
    }


def _with_credentials_advice(answer: dict[str, Any], url: str) -> dict[str, Any]:
    """The gateway's answer, saying so where the background cluster lacks credentials that
    this shell has (the cluster keeps the environment of the shell that started it)."""
    if answer.get("kind") != "MissingCredentialsError":
        return answer
    from omfs.compute.credentials import cluster_credentials_advice

    advice = cluster_credentials_advice(url, {}, "background")
    if advice:
        answer["error"] = f"{answer.get('summary') or answer['error']} {advice}"
    return answer


def _show_answer(app: App, answer: dict[str, Any], action: str) -> None:
    """Print the gateway's (or :func:`model_command`'s) answer: notices, then the stored
    result's metadata, the value, or the error."""
    for line in answer.get("notice") or []:
        print(line, file=sys.stderr)
    if "error" in answer:
        if debugging() and answer.get("traceback"):
            print(answer["traceback"], file=sys.stderr, end="")
        app.fail(str(answer["error"]), int(answer.get("code") or 1))
    if "id" in answer and "value" not in answer and "meta" not in answer:
        if app.as_json:
            app.value({"id": answer["id"], "task": answer.get("description")})
        else:
            print(answer["id"])
    elif "meta" not in answer:
        _show_value(app, action, answer.get("value"))
    elif app.as_json:
        app.value(answer["meta"])
    else:
        meta = answer["meta"]
        print(f"{meta['store']}\t{meta['name']}\tv{meta['version']}")
        search = (meta.get("lineage") or {}).get("task") or {}
        if action == "gridsearch" and search.get("method") == "gridsearch":
            table = search.get("table") or {}
            print(
                f"best of {search.get('candidates')} candidates: {json.dumps(search.get('params'))}"
                f", score {search.get('score')}; the table: datasets {table.get('dataset')} "
                f"v{table.get('version')}",
                file=sys.stderr,
            )


def _show_value(app: App, action: str, value: Any) -> None:
    """A task's value: rows (predictions, a frame) as a table, tab-separated lines when
    piped; a single value (a score) as it is; JSON with --json. A long result on a
    terminal is summarised (--result stores it)."""
    table = None if app.as_json else value_rows(action, value)
    if table is None or (is_terminal() and summarise(value) is not None):
        app.value(value)
        return
    app.table(*table, header=True)


def value_rows(action: str, value: Any) -> tuple[list[dict[str, Any]], list[str]] | None:
    """A task's value as rows and columns: a list gives one row per item (a column per
    item of a nested list: ``predict_proba``); a frame (``{column: {index: value}}``) a row
    per index with the index first. None for a single value."""
    if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
        columns = [str(c) for c in value]
        index = list(next(iter(value.values())))
        rows = [{"index": i, **{str(c): value[c].get(i) for c in value}} for i in index]
        return rows, ["index", *columns]
    if not isinstance(value, list):
        return None
    if value and all(isinstance(v, list) for v in value):
        width = max(len(v) for v in value)
        columns = [f"{action}_{k}" for k in range(width)]
        return [dict(zip(columns, v, strict=False)) for v in value], columns
    return [{action: v} for v in value], [action]


@cli.command()
def workers(ctx: typer.Context, local: Local = False) -> None:
    """List the cluster's workers and the resources they offer."""
    app = _command_options(ctx, None, local)
    rows = _runtime(app).workers()
    for row in rows:
        row["resources"] = (
            ResourceSpec(row["resources"]).text() if not app.as_json else row["resources"]
        )
    columns = ["address", "name", "resources", "nthreads", "memory_limit"]
    app.table(rows, columns, empty="no workers: tasks wait for one (`om cluster status`)")


# -- tasks by id: read from the context's records (no cluster needed) ----------------------
@cli.command()
def result(
    ctx: typer.Context,
    task_id: Annotated[str, typer.Argument(metavar="ID", help="the task's id")],
    timeout: Annotated[
        float | None,
        typer.Option(help="seconds to wait for it (default: until it ends)", callback=_seconds),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            help="write the whole value to FILE: .parquet or .csv (a frame or array), "
            ".json (a plain value)",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="with --output: overwrite FILE")] = False,
) -> None:
    """Print the result of task ID (waiting for it to end), from any machine that opens
    the same context. A frame or array of over 1,000 rows shows its first 10 (only those
    are read) and its size; --output FILE writes all of it."""
    from omfs.cli.gateway import request, result_command

    app = get_app(ctx)
    if output is not None:
        _write_result(app, task_id, timeout, output, force)
        return
    om = app.omega()
    spec = {"id": task_id, "timeout": timeout}
    path = gateway_socket(om, app.local)
    if path is None:  # read here (the gateway has pyarrow loaded: it answers faster)
        answer = result_command(om, spec, debug=debugging())
    else:
        payload = {"context": context_of(om), "result": spec, "debug": debugging()}
        answer = request(path, payload)
    _show_cut(app, answer, str(answer.get("action") or "result"), task_id)


def _show_cut(app: App, answer: dict[str, Any], action: str, task_id: str) -> None:
    """:func:`_show_answer`, and for a value cut to a preview (``truncated``) the line that
    says its size and how to get all of it (``--json``: inside the JSON)."""
    cut = answer.pop("truncated", None)
    if cut is not None and app.as_json:
        app.value(
            {"truncated": True, **cut, "value": answer["value"], "note": _cut_line(task_id, cut)}
        )
        return
    _show_answer(app, answer, action)
    if cut is not None:  # on stderr when piped: stdout stays the rows
        print(_cut_line(task_id, cut), file=sys.stdout if is_terminal() else sys.stderr)


def _cut_line(task_id: str, cut: dict[str, Any]) -> str:
    """The line under a preview: the value's size and how to get all of it."""
    if "rows" in cut:
        size, suffix = f"{cut['rows']:,} rows x {cut['columns']} columns", "FILE.parquet` (or .csv)"
    else:
        what = "items" if "items" in cut else "characters"
        size, suffix = f"{cut[what]:,} {what} (cut at 1 MB)", "FILE.json`"
    return f"{size}; `om runtime result {task_id} --output {suffix} writes all of it"


_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".json": "json"}


def _write_result(app: App, task_id: str, timeout: float | None, output: Path, force: bool) -> None:
    """``--output FILE``: the task's whole value written to FILE (whole or not at all),
    streamed from the stored file (never two copies of it in memory)."""
    from omfs._util import atomic_path
    from omfs.compute.records import export_result, wait_ended

    fmt = _SUFFIXES.get(output.suffix.lower())
    if fmt is None:
        raise OptionError(
            f"--output {output}: name a .parquet or .csv file (a frame or array) or a .json "
            "file (a plain value)."
        )
    refuse_overwrite(app, output, force)
    if output.is_dir():
        app.fail(f"{output} is a folder: name a file in it, e.g. {output / ('result.' + fmt)}")
    om = app.omega()
    om.runtime.status(task_id)  # this process's own pending tasks recorded first
    wait_ended(om.storage, task_id, timeout)
    try:
        with atomic_path(output) as tmp, open(tmp, "wb") as out:
            rows = export_result(om.storage, task_id, out, fmt)
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as exc:
        app.fail(
            f"cannot write {output}: {exc.strerror or exc} (its folder must exist and be writable)"
        )
    if app.as_json:
        app.value({"id": task_id, "path": str(output), "rows": rows})
    else:
        print(str(output))


@cli.command()
def status(
    ctx: typer.Context,
    task_id: Annotated[str, typer.Argument(metavar="ID", help="the task's id")],
) -> None:
    """Print the status of task ID: pending, running, succeeded, failed or cancelled."""
    app = get_app(ctx)
    row = app.omega().runtime.task(task_id)
    if app.as_json:
        app.value(row)
    else:
        print(row["status"] + (f"\t{row['error']}" if row.get("error") else ""))


_TASK_COLUMNS = [
    "id", "object", "action", "status", "submitted", "started", "finished", "worker", "error",
]  # fmt: skip


@cli.command()
def tasks(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("-n", "--limit", min=1, help="how many, newest first")] = 20,
) -> None:
    """List the context's most recent tasks, newest first."""
    app = get_app(ctx)
    rows = app.omega().runtime.tasks(limit=limit)
    if not app.as_json:
        for row in rows:
            row["route"] = ResourceSpec(row.get("route") or {}).text()
    app.table(rows, [*_TASK_COLUMNS[:3], "route", *_TASK_COLUMNS[3:]], empty="no tasks yet")


@cli.command()
def log(
    ctx: typer.Context,
    task_id: Annotated[str, typer.Argument(metavar="ID", help="the task's id")],
) -> None:
    """Print the log records and warnings task ID emitted (and a failure's traceback)."""
    app = get_app(ctx)
    text = app.omega().runtime.log(task_id)
    if app.as_json:
        app.value({"id": task_id, "log": text})
    else:
        print(text, end="")


@cli.command()
def cancel(
    ctx: typer.Context,
    task_id: Annotated[str, typer.Argument(metavar="ID", help="the task's id")],
) -> None:
    """Cancel task ID; exits 1 when it had already finished or begun to write."""
    app = get_app(ctx)
    if not _runtime(app).cancel(task_id):
        app.fail(f"Task {task_id} had already finished or begun to write; it was not cancelled.")
    print(f"cancelled {task_id}")


@cli.command()
def ping(
    ctx: typer.Context,
    require: Annotated[
        list[str] | None,
        typer.Option("--require", help="the route: LABEL or NAME=AMOUNT (repeatable)"),
    ] = None,
) -> None:
    """Ping each worker that would take a task on this route (--require): its address,
    name, resources and round-trip time."""
    from omfs.cli.gateway import ping_command, request

    app = get_app(ctx)
    app.require = [*app.require, *(require or [])]
    om = app.omega()
    spec = {"require": app.require}
    path = gateway_socket(om, app.local)
    if path is None and om.cluster.spec is None and not _outlives():
        # a private cluster started for a ping would answer for workers gone a moment later
        app.fail(
            "no cluster runs to ping: start one with `om cluster start` (or give --cluster "
            "/ $OMFS_CLUSTER)",
            3,
        )
    if path is None:  # a cluster of its own: ask it from here
        answer = ping_command(om, spec, debug=debugging())
    else:  # the background cluster's gateway has a client already (no Dask import here)
        answer = request(path, {"context": context_of(om), "ping": spec, "debug": debugging()})
    if "error" in answer:
        _show_answer(app, answer, "ping")  # one line, and exits
    rows = answer["rows"]
    for row in rows:
        if not app.as_json:
            row["resources"] = ResourceSpec(row["resources"]).text()
    app.table(rows, ["address", "name", "resources", "rtt_ms", "state"])
