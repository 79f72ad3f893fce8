"""``om runtime ...``"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from omfs.cli._common import emit_table, emit_value, fail, parse_params, state
from omfs.compute.resources import ResourceSpec

app = typer.Typer(
    rich_markup_mode=None,
    help="Runtime: model tasks on the context's Dask cluster.",
    no_args_is_help=True,
)


class _RuntimeOptions:
    require: list[str] = []
    local: bool = False


options = _RuntimeOptions()


@app.callback()
def _runtime_options(
    require: Annotated[
        list[str] | None,
        typer.Option(
            "--require", help="route to workers offering LABEL or NAME=AMOUNT (repeatable)"
        ),
    ] = None,
    local: Annotated[bool, typer.Option("--local", help="run in this process, no cluster")] = False,
) -> None:
    options.require = list(require or [])
    options.local = local


def _runtime() -> Any:
    from omfs.cli.gateway import with_requirements

    try:
        runtime = with_requirements(state.omega().runtime, options.require)
    except ValueError as exc:
        fail(str(exc))
    return runtime.mode(local=options.local)


def _gateway(om: Any) -> Any:
    """The background cluster's gateway socket, when this context's tasks go there."""
    if options.local:
        return None
    from omfs.compute.processes import background, gateway

    running = background()
    spec = om.runtime.cluster.spec
    if running is None or (spec is not None and spec != running.address):
        return None  # a scheduler of its own (an address or a Client): connect to it here
    return gateway(running)


@app.command()
def model(
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
    import os

    from omfs.cli.gateway import model_command, request

    spec = {
        "name": name,
        "action": action,
        "x": x,
        "y": y,
        "result": result,
        "params": parse_params(param),
        "timeout": timeout,
        "require": options.require,
        "local": options.local,
    }
    debug = bool(os.environ.get("OMFS_DEBUG"))
    om = state.omega()
    path = _gateway(om)
    if path is not None:  # the background cluster's gateway: no Dask import here
        storage = om.storage
        context = {
            "root": storage.url,
            "storage_options": storage.options,
            "bucket": om.bucket,
            "unsafe_commits": storage.unsafe_commits,
            "durable": storage.durable,
        }
        answer = request(path, {"context": context, "task": spec, "debug": debug})
    else:
        answer = model_command(om, spec, debug=debug)
    for line in answer.get("notice") or []:
        print(line, file=sys.stderr)
    if "error" in answer:
        if debug and answer.get("traceback"):
            print(answer["traceback"], file=sys.stderr, end="")
        fail(str(answer["error"]), int(answer.get("code") or 1))
    if "meta" in answer:
        meta = answer["meta"]
        if state.as_json:
            emit_value(meta)
        else:
            print(f"{meta['store']}\t{meta['name']}\tv{meta['version']}")
        return
    emit_value(answer.get("value"))


@app.command()
def workers() -> None:
    """List the cluster's workers and the resources they offer."""
    rows = _runtime().workers()
    for row in rows:
        row["resources"] = (
            ResourceSpec(row["resources"]).text() if not state.as_json else row["resources"]
        )
    emit_table(rows, ["address", "name", "resources", "nthreads", "memory_limit"])
