"""``om runtime ...``"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from omfs.cli._common import parse_params
from omfs.cli.app import App, get_app
from omfs.cli.errors import debugging
from omfs.compute.resources import ResourceSpec

cli = typer.Typer(
    rich_markup_mode=None,
    help="Runtime: model tasks on the context's Dask cluster.",
    no_args_is_help=True,
)


@cli.callback()
def _runtime_options(
    ctx: typer.Context,
    require: Annotated[
        list[str] | None,
        typer.Option(
            "--require", help="route to workers offering LABEL or NAME=AMOUNT (repeatable)"
        ),
    ] = None,
    local: Annotated[bool, typer.Option("--local", help="run in this process, no cluster")] = False,
) -> None:
    app = get_app(ctx)
    app.require = list(require or [])
    app.local = local


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
    timeout: Annotated[float | None, typer.Option(help="seconds to wait for the result")] = None,
) -> None:
    """Run a model task and print its result.

    With --timeout, a task that has not finished is cancelled and writes nothing (or, if it
    was already writing, its result is waited for and shown).
    """
    app = get_app(ctx)
    spec: dict[str, Any] = {"name": name, "action": action, "x": x, "y": y, "result": result}
    spec |= {"params": parse_params(param), "timeout": timeout}
    spec |= {"require": app.require, "local": app.local}
    _show_answer(app, _run_task(app, spec))


def _run_task(app: App, spec: dict[str, Any]) -> dict[str, Any]:
    """Run the task: through the background cluster's gateway where there is one (no Dask
    import here), else in this process."""
    from omfs.cli.gateway import model_command, request

    om = app.omega()
    path = gateway_socket(om, app.local)
    if path is None:
        return model_command(om, spec, debug=debugging())
    return request(path, {"context": context_of(om), "task": spec, "debug": debugging()})


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


def _show_answer(app: App, answer: dict[str, Any]) -> None:
    """Print the gateway's (or :func:`model_command`'s) answer: notices, then the stored
    result's metadata, the value, or the error."""
    for line in answer.get("notice") or []:
        print(line, file=sys.stderr)
    if "error" in answer:
        if debugging() and answer.get("traceback"):
            print(answer["traceback"], file=sys.stderr, end="")
        app.fail(str(answer["error"]), int(answer.get("code") or 1))
    if "meta" not in answer:
        app.value(answer.get("value"))
    elif app.as_json:
        app.value(answer["meta"])
    else:
        meta = answer["meta"]
        print(f"{meta['store']}\t{meta['name']}\tv{meta['version']}")


@cli.command()
def workers(ctx: typer.Context) -> None:
    """List the cluster's workers and the resources they offer."""
    app = get_app(ctx)
    rows = _runtime(app).workers()
    for row in rows:
        row["resources"] = (
            ResourceSpec(row["resources"]).text() if not app.as_json else row["resources"]
        )
    app.table(rows, ["address", "name", "resources", "nthreads", "memory_limit"])
