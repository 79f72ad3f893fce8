"""``om runtime ...``"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from omfs.cli._common import emit_table, emit_value, fail, one_line, parse_params, state

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
    runtime = state.omega().runtime
    if options.require:
        label = None
        amounts: dict[str, float] = {}
        for item in options.require:
            name, sep, amount = item.partition("=")
            if sep:
                try:
                    amounts[name] = float(amount)
                except ValueError:
                    fail(f"--require {item!r}: the amount must be a number")
            elif label is None:
                label = name
            else:
                amounts[name] = 1
        runtime = runtime.require(label, **amounts)
    return runtime.mode(local=options.local)


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
    proxy = _runtime().model(name)
    task = proxy.task(action, x, y, rName=result, **parse_params(param))
    outcome = _wait(task, timeout)
    if hasattr(outcome, "to_dict") and hasattr(outcome, "version"):
        if state.as_json:
            emit_value(outcome)
        else:
            print(f"{outcome.store}\t{outcome.name}\tv{outcome.version}")
        return
    if hasattr(outcome, "tolist"):
        outcome = outcome.tolist()
    emit_value(outcome)


def _wait(task: Any, timeout: float | None) -> Any:
    """The task's result; a timeout cancels it, Ctrl-C too, a task error is one line."""
    import os

    from omfs.errors import TaskCancelledError

    try:
        return task.get(timeout=timeout)
    except TimeoutError:
        if task.cancel():
            fail(
                f"{task.description} did not finish within {timeout:g} s; it was cancelled "
                "and wrote nothing. Give a longer --timeout, or none to wait."
            )
        print(
            f"om: {task.description} was already writing its result at the timeout; waiting for it",
            file=sys.stderr,
        )
        return task.get()
    except KeyboardInterrupt:
        task.cancel()
        raise
    except TaskCancelledError as exc:
        fail(one_line(exc))
    except Exception as exc:
        if os.environ.get("OMFS_DEBUG"):
            raise
        from omfs.errors import OmfsError

        if isinstance(exc, OmfsError):
            fail(one_line(exc))
        fail(
            f"{task.description} failed: {type(exc).__name__}: {one_line(exc)} "
            "(OMFS_DEBUG=1 shows the worker's traceback)"
        )


@app.command()
def workers() -> None:
    """List the cluster's workers and the resources they offer."""
    rows = _runtime().workers()
    for row in rows:
        row["resources"] = (
            ",".join(f"{k}={v:g}" for k, v in sorted(row["resources"].items()))
            if not state.as_json
            else row["resources"]
        )
    emit_table(rows, ["address", "name", "resources", "nthreads", "memory_limit"])
