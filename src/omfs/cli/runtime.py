"""``om runtime ...``"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from omfs.cli._common import parse_params
from omfs.cli.app import App, get_app
from omfs.cli.errors import debugging
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
            help="fit, partial_fit, predict, predict_proba, decision_function, transform, score"
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
        float | None, typer.Option(metavar="SECONDS", help="seconds to wait for the result")
    ] = None,
    require: Require = None,
    local: Local = False,
) -> None:
    """Run a model task and print its result.

    With --timeout, a task that has not finished is cancelled and writes nothing (or, if it
    was already writing, its result is waited for and shown).
    """
    app = _command_options(ctx, require, local)
    spec: dict[str, Any] = {"name": name, "action": action, "x": x, "y": y, "result": result}
    spec |= {"params": parse_params(param), "timeout": timeout}
    spec |= {"require": app.require, "local": app.local}
    _show_answer(app, _run_task(app, spec), action)


def _run_task(app: App, spec: dict[str, Any]) -> dict[str, Any]:
    """Run the task: through the background cluster's gateway where there is one (no Dask
    import here), else in this process."""
    from omfs.cli.gateway import model_command, request

    om = app.omega()
    path = gateway_socket(om, app.local)
    if path is None:
        return model_command(om, spec, debug=debugging())
    answer = request(path, {"context": context_of(om), "task": spec, "debug": debugging()})
    return _with_credentials_advice(answer, om.storage.url)


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
    if "meta" not in answer:
        _show_value(app, action, answer.get("value"))
    elif app.as_json:
        app.value(answer["meta"])
    else:
        meta = answer["meta"]
        print(f"{meta['store']}\t{meta['name']}\tv{meta['version']}")


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
    app.table(rows, ["address", "name", "resources", "nthreads", "memory_limit"])
