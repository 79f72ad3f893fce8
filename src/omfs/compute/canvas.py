"""Task canvases: ``sequence()``, ``parallel()`` and ``mapreduce()``.

Steps are collected in a ``with`` block and submitted together by ``run()``: each step is a
task with its own id, record and route, and a sequence's steps depend on each other in the
scheduler, so no step waits for a round trip through this client. Each step reads its
model's latest version as it starts (a ``predict`` after a ``fit`` uses the fitted one).

    with om.runtime.sequence() as crt:
        crt.model("m").fit("X", "Y")
        crt.require("gpu").model("m").predict("X", rName="p")
    crt.run().get()
"""

from __future__ import annotations

import contextlib
from concurrent.futures import CancelledError
from dataclasses import dataclass, field
from typing import Any

from omfs.compute.records import new_id, submitted_doc, what_of, write_record
from omfs.compute.resources import ResourceSpec
from omfs.compute.tasks import FITTING, METHODS, record_run, run_recorded
from omfs.errors import TaskCancelledError, TaskFailedError, UsageError
from omfs.objects.metadata import utcnow

__all__ = ["Canvas", "CanvasResult", "cancel_later", "reduce_name", "run_reduce", "run_step"]


@dataclass
class _Step:
    name: str
    method: str
    X: Any = None
    Y: Any = None
    params: dict[str, Any] = field(default_factory=dict)
    result_name: str | None = None
    route: dict[str, float] | None = None  # None: the model's attribute, else the runtime's

    def label(self, index: int) -> str:
        return f"step {index + 1} ({self.method} of model {self.name!r})"

    @property
    def writes(self) -> bool:
        """Whether the step stores something (a fit, a result with ``rName``): it claims
        the task before it writes, so a cancel that said yes holds."""
        return self.method in FITTING or self.result_name is not None


def run_step(
    omega: Any,
    task_id: str,
    step: _Step,
    label: str,
    route: dict[str, float],
    *after: Any,
    then: tuple[str, ...] = (),
) -> Any:
    """One step on a worker: the model's latest version, then :func:`run_recorded`. A
    failure is raised naming the step, and the later steps of its sequence (the task ids
    ``then``) are recorded as cancelled by it, since they will never run (``after``: the
    steps it waits for, unused)."""
    try:
        meta = omega.models.metadata(step.name)
        args = (meta, step.method, step.X, step.Y, step.params, step.result_name)
        return run_recorded(omega, task_id, *args, route=route, guard=step.writes)
    except Exception as exc:
        for later in then:
            doc = {"at": utcnow(), "error": f"not run: {label} failed"}
            write_record(omega.storage, later, "cancelled", doc)
        raise TaskFailedError(f"{label} failed: {type(exc).__name__}: {exc}") from None


def run_reduce(omega: Any, task_id: str, reduce: Any, route: dict[str, float], *values: Any) -> Any:
    """The reduce step of a mapreduce, ``reduce(list_of_values)``, recorded as task
    ``task_id`` as any step is (its value outlives the client)."""

    def work(claim: Any) -> Any:
        try:
            return reduce(list(values))
        except Exception as exc:
            raise TaskFailedError(f"the reduce step failed: {type(exc).__name__}: {exc}") from None

    what = reduce_name(reduce)
    return record_run(omega.storage, task_id, work, action="reduce", what=what, route=route)


def reduce_name(reduce: Any) -> str:
    """``module.function`` of a reduce (what its task record names)."""
    name = getattr(reduce, "__qualname__", None) or type(reduce).__qualname__
    return f"{getattr(reduce, '__module__', None) or '?'}.{name}"


class _StepProxy:
    """``crt.model(name)``: each method adds one step."""

    def __init__(self, canvas: Canvas, name: str, route: dict[str, float] | None):
        self._canvas, self._name, self._route = canvas, name, route

    def task(
        self, method: str, X: Any = None, Y: Any = None, *, rName: str | None = None, **params: Any
    ) -> Canvas:
        if method not in METHODS:
            raise UsageError(f"Unknown model action {method!r}; use one of {list(METHODS)}")
        step = _Step(self._name, method, X, Y, dict(params), rName, self._route)
        self._canvas.steps.append(step)
        return self._canvas

    def __getattr__(self, method: str) -> Any:
        if method not in METHODS:
            raise AttributeError(method)
        return lambda X=None, Y=None, rName=None, **params: self.task(
            method, X, Y, rName=rName, **params
        )


class Canvas:
    """Steps collected in a ``with`` block; ``run()`` submits them (``kind``: sequence,
    parallel or mapreduce)."""

    def __init__(self, runtime: Any, kind: str, reduce: Any = None):
        self._runtime = runtime
        self.kind = kind
        self.reduce = reduce
        self.steps: list[_Step] = []
        self.ran = False

    def __enter__(self) -> Canvas:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def model(self, name: str) -> _StepProxy:
        return _StepProxy(self, name, self._runtime.resources)

    def require(self, label: str | None = None, **resources: float) -> _Routed:
        """Route the steps added through it to workers offering ``label``/``resources``."""
        return _Routed(self, ResourceSpec.of(label, **resources).as_dict())

    def run(self) -> CanvasResult:
        if self.ran:
            raise UsageError(
                f"This {self.kind} already ran (its steps would run twice): collect the "
                f"steps of another in a new `with om.runtime.{self.kind}() as crt:` block."
            )
        if not self.steps:
            raise UsageError(f"The {self.kind} has no steps: add some with crt.model(...).")
        if self.kind == "mapreduce" and not callable(self.reduce):
            raise UsageError(
                "mapreduce(reduce=...) needs a callable of the list of values, such as "
                "mapreduce(reduce=sum)"
            )
        result: CanvasResult = self._runtime.run_canvas(self)
        self.ran = True
        return result


class _Routed:
    def __init__(self, canvas: Canvas, route: dict[str, float]):
        self._canvas, self._route = canvas, route

    def model(self, name: str) -> _StepProxy:
        return _StepProxy(self._canvas, name, self._route)


class CanvasResult:
    """The submitted steps: ``get()`` is the last step's value (a mapreduce: the reduced
    value), ``getall()`` every step's in order; ``ids`` the steps' task ids, ``id`` the id
    of the task whose value ``get()`` returns (a mapreduce's reduce step: ``reduce_id``).
    Each is readable with ``om.runtime.result(id)`` from any process."""

    def __init__(
        self,
        futures: list[Any],
        ids: list[str],
        final: Any = None,
        reduce_id: str | None = None,
    ):
        self.futures = futures
        self.ids = ids
        self.reduce_id = reduce_id
        self.id = reduce_id if reduce_id is not None else ids[len(futures) - 1]
        self._final = final if final is not None else futures[-1]

    def get(self, timeout: float | None = None) -> Any:
        return _value(self._final, timeout)

    def getall(self, timeout: float | None = None) -> list[Any]:
        return [_value(f, timeout) for f in self.futures]


def _value(future: Any, timeout: float | None) -> Any:
    if isinstance(future, _Done):
        return future.result()
    try:
        return future.result(timeout=timeout)
    except CancelledError:  # Dask's FutureCancelledError: say it as a read by id does
        raise TaskCancelledError(f"{future.key} was cancelled.") from None


class _Reduce:
    """The reduce step's future: an error that is not the reduce's own (it could not be
    loaded where the cluster runs: Dask's "Error during deserialization of the task
    graph") names the reduce and what to do."""

    def __init__(self, future: Any, reduce: Any):
        self.future, self.reduce = future, reduce

    def result(self, timeout: float | None = None) -> Any:
        try:
            return self.future.result(timeout=timeout)
        except (TaskFailedError, TimeoutError):
            raise
        except CancelledError:
            raise TaskCancelledError(
                f"the reduce step ({self.future.key}) was cancelled."
            ) from None
        except Exception as exc:
            name = reduce_name(self.reduce)
            text = " ".join(str(exc).split())  # Dask's message spans lines: all of it
            text = text if len(text) <= 300 else text[:297] + "..."
            if not _cannot_load(exc):
                raise TaskFailedError(
                    f"the reduce step ({name}) failed: {type(exc).__name__}: {text}"
                ) from None
            module = getattr(self.reduce, "__module__", None) or "?"
            text = text if text.endswith((".", "...")) else text + "."
            raise TaskFailedError(
                f"the reduce step ({name}) did not run: {type(exc).__name__}: "
                f"{text} A reduce must be importable where the cluster runs: install "
                f"module {module!r} on the scheduler and workers, or define the function "
                "in the script you run."
            ) from None


def _cannot_load(exc: BaseException) -> bool:
    """Whether ``exc`` says the cluster could not load a task (Dask's "Error during
    deserialization of the task graph", an import error)."""
    text = f"{type(exc).__name__} {exc}"
    return "deserializ" in text or "ModuleNotFoundError" in text or "ImportError" in text


class _Done:
    """A step run in this process (local mode): its value or error."""

    def __init__(self, value: Any = None, error: BaseException | None = None):
        self.value, self.error = value, error

    def result(self, timeout: float | None = None) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


def run_local(omega: Any, canvas: Canvas) -> CanvasResult:
    """A canvas in this process: its steps one after the other (a sequence stops at the
    first failure)."""
    done: list[Any] = []
    ids = []
    for index, step in enumerate(canvas.steps):
        ids.append(new_id())
        try:
            done.append(_Done(run_step(omega, ids[-1], step, step.label(index), {})))
        except TaskFailedError as exc:
            done.append(_Done(error=exc))
            if canvas.kind == "sequence":
                break
    final = reduce_id = None
    if canvas.kind == "mapreduce":
        reduce_id = new_id()
        try:
            values = [d.result() for d in done]
            final = _Done(run_reduce(omega, reduce_id, canvas.reduce, {}, *values))
        except TaskFailedError as exc:
            final = _Done(error=exc)
    return CanvasResult(done, ids, final, reduce_id)


def submit(runtime: Any, canvas: Canvas, route_of: Any) -> CanvasResult:
    """Submit the canvas's steps to the cluster in one go (see the module's docstring);
    ``route_of(step)`` gives each step's resources."""
    client = runtime.client
    omega = runtime.omega
    storage = omega.storage
    futures: list[Any] = []
    ids = [new_id() for _ in canvas.steps]
    reduce_id = new_id() if canvas.kind == "mapreduce" else None
    for index, step in enumerate(canvas.steps):
        route = route_of(step)
        label = step.label(index)
        sequence = canvas.kind == "sequence"
        after, then = (futures[-1:], tuple(ids[index + 1 :])) if sequence else ([], ())
        key = f"omfs-{canvas.kind}-{step.method}-{step.name.replace('/', '.')}-{ids[index]}"
        future = client.submit(
            run_step, omega, ids[index], step, label, route, *after, then=then,
            resources=route or None, pure=False, key=key,
        )  # fmt: skip
        futures.append(future)
        later = list(then) if sequence else [reduce_id] if reduce_id else []
        doc = submitted_doc(step.method, f"models/{step.name}", route, key, step.writes)
        doc["then"] = later  # cancelled with it (:func:`cancel_later`)
        runtime.cluster.track(future, f"{step.method}({step.name})", (storage, ids[index], doc))
    if reduce_id is None:
        runtime.cluster.write_records()  # a few steps: another process can cancel them now
        return CanvasResult(futures, ids)
    route = runtime.resources or {}
    key = f"omfs-reduce-{reduce_id}"
    final = client.submit(
        run_reduce, omega, reduce_id, canvas.reduce, route, *futures,
        resources=route or None, pure=False, key=key,
    )  # fmt: skip
    doc = submitted_doc("reduce", reduce_name(canvas.reduce), route, key, False)
    runtime.cluster.track(final, "reduce", (storage, reduce_id, doc))
    runtime.cluster.write_records()
    return CanvasResult(futures, ids, _Reduce(final, canvas.reduce), reduce_id)


def cancel_later(storage: Any, task_id: str, row: dict[str, Any]) -> None:
    """Once canvas step ``task_id`` (its record ``row``) is cancelled, record the steps
    that waited for it (``then`` of its submitted record: a sequence's later steps, a
    mapreduce's reduce) as cancelled too: Dask drops them, and nothing else would say so."""
    for later in row.get("_then") or []:
        doc = {"at": utcnow(), "error": f"not run: {what_of(row)} ({task_id}) was cancelled"}
        with contextlib.suppress(UsageError):  # not an id (a planted record)
            write_record(storage, later, "cancelled", doc)
