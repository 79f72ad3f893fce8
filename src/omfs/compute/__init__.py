"""The runtime: model tasks and job runs on a context's Dask cluster, routed by worker
resources.

``om.runtime.require("gpu").model("m").fit("X", "Y").get()`` runs on a worker that offers
the ``gpu`` resource; ``om.runtime.mode(local=True)`` runs the same task in this process.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from omfs.compute._routing import Route, fetch_workers, ping_workers
from omfs.compute.canvas import Canvas, CanvasResult, cancel_later, run_local
from omfs.compute.canvas import submit as submit_canvas
from omfs.compute.claims import cancel_task, claimed_by_worker
from omfs.compute.credentials import cluster_credentials_advice
from omfs.compute.gridsearch import check_search, run_here, submit_gridsearch
from omfs.compute.records import (
    check_readable,
    new_id,
    public_row,
    read_log,
    read_record,
    recent,
    submitted_doc,
    wait_result,
)
from omfs.compute.resources import ResourceSpec
from omfs.compute.task_result import TaskResult
from omfs.compute.tasks import FITTING, METHODS, run_recorded
from omfs.errors import ConfigError, NotFoundError, UsageError
from omfs.objects.metadata import utcnow

if TYPE_CHECKING:
    from omfs.compute.cluster import ClusterHandle
    from omfs.compute.jobs import JobProxy
    from omfs.storage import Storage

__all__ = ["Canvas", "CanvasResult", "ModelProxy", "ResourceSpec", "Runtime", "TaskResult"]


class _Context(Protocol):
    """What the runtime uses of a context (an :class:`omfs.Omega`, which pickles to its
    root and bucket when it travels with a task). The runtime does not import the context
    module: the context sits above it and hands itself and its cluster in."""

    @property
    def storage(self) -> Storage: ...

    @property
    def root(self) -> str: ...

    @property
    def models(self) -> Any: ...


class Runtime:
    """Submits model tasks for one context and bucket. ``require`` and ``mode`` return a new
    Runtime for the chain they start; ``om.runtime`` itself never changes."""

    def __init__(
        self,
        omega: _Context,
        cluster: ClusterHandle,
        *,
        resources: dict[str, float] | None = None,
        local: bool = False,
    ):
        self._omega = omega
        self._cluster = cluster  # the context's: shared by its buckets and their runtimes
        self._resources = resources  # None: not said by the caller (model attributes apply)
        self._local = local

    def __repr__(self) -> str:
        where = "local" if self._local else self._cluster.describe()
        return f"Runtime({where}, require={self._resources})"

    @property
    def omega(self) -> Any:
        """The context (and bucket) this runtime runs tasks for."""
        return self._omega

    @property
    def resources(self) -> dict[str, float] | None:
        """The route this runtime's chain asked for (None: each model's own attribute)."""
        return self._resources

    @property
    def cluster(self) -> ClusterHandle:
        """The context's cluster handle (its spec, and its client once connected)."""
        return self._cluster

    def require(self, label: str | None = None, **resources: float) -> Runtime:
        """Route the chain to workers offering ``label`` (amount 1) and/or ``resources``."""
        spec = ResourceSpec.of(label, **resources)
        return Runtime(self._omega, self._cluster, resources=spec.as_dict(), local=self._local)

    def mode(self, local: bool = True) -> Runtime:
        """``local=True`` runs tasks in this process (no cluster is started)."""
        return Runtime(self._omega, self._cluster, resources=self._resources, local=local)

    def model(self, name: str) -> ModelProxy:
        return ModelProxy(self, name)

    def job(self, name: str) -> JobProxy:
        """``job("nightly").run(**params)``: run a stored job on this chain's route (see
        :mod:`omfs.compute.jobs`)."""
        from omfs.compute.jobs import JobProxy

        return JobProxy(
            self._omega, self._cluster, name, resources=self._resources, local=self._local
        )

    def workers(self) -> list[dict[str, Any]]:
        """The cluster's workers and the resources each offers."""
        return fetch_workers(self.client)

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` of this context (connected or started on first use)."""
        return self._cluster.client()

    # -- tasks by id (any process that opens the same context) ------------------------------
    def result(self, task_id: str, timeout: float | None = None) -> Any:
        """The value of task ``task_id``, waiting up to ``timeout`` seconds (None: until it
        ends). Raises TaskFailedError / TaskCancelledError for a task that failed or was
        cancelled, TimeoutError when it has not finished in time."""
        self._cluster.write_records()
        return wait_result(self._omega.storage, task_id, timeout)

    def status(self, task_id: str) -> str:
        """``pending``, ``running``, ``succeeded``, ``failed`` or ``cancelled``."""
        self._cluster.write_records()
        return str(check_readable(read_record(self._omega.storage, task_id))["status"])

    def task(self, task_id: str) -> dict[str, Any]:
        """Everything recorded of task ``task_id``: object, action, route, status, times,
        worker, error line."""
        self._cluster.write_records()
        return public_row(check_readable(read_record(self._omega.storage, task_id)))

    def tasks(self, limit: int = 20) -> list[dict[str, Any]]:
        """The ``limit`` most recently submitted tasks of this context, newest first."""
        self._cluster.write_records()
        return [public_row(r) for r in recent(self._omega.storage, limit)]

    def log(self, task_id: str) -> str:
        """The log records and warnings task ``task_id`` emitted (and a failure's traceback)."""
        self._cluster.write_records()
        return read_log(self._omega.storage, task_id)

    def cancel(self, task_id: str) -> bool:
        """Cancel task ``task_id`` (submitted by any process): True when it will write
        nothing, ever (a record in the context says so), False when it had finished or
        already begun to write. Model code already running keeps its worker's thread until
        it returns; then the task ends ``cancelled`` without writing."""
        self._cluster.write_records()
        try:
            row = read_record(self._omega.storage, task_id)
        except NotFoundError:  # a task that began to write at once may show nothing else yet
            if claimed_by_worker(self._omega.storage, task_id):
                return False
            raise
        if row["status"] not in ("pending", "running") or not row.get("key"):
            return False
        from distributed import Future

        future: Any = Future(row["key"], self.client)
        writes = bool(row.get("action") in FITTING or row.get("writes"))
        if not cancel_task(future, self._omega.storage, task_id, writes):
            return False
        cancel_later(self._omega.storage, task_id, row)  # Dask drops what waits for it
        return True

    def _gridsearch(
        self, name: str, X: Any, Y: Any, parameters: Any, cv: Any, scoring: Any
    ) -> TaskResult:
        meta = self._omega.models.metadata(name)
        description = f"gridsearch({meta.name}@v{meta.version})"
        check_search(self._omega, meta, parameters, Y)  # refused here, before anything runs
        if self._local:
            try:
                value, task_id = run_here(self._omega, meta, X, Y, parameters, cv, scoring)
            except Exception as exc:
                return TaskResult(error=exc, description=description)
            return TaskResult(value=value, description=description, id=task_id)
        self._check_shared()
        resources, route = self._route(meta)
        what = f"gridsearch of model {meta.name!r}"
        self._cluster.view.check(self.client, resources, what, route)
        at = utcnow()  # before its candidates can start
        final, task_id, _ = submit_gridsearch(self, meta, X, Y, parameters, cv, scoring, resources)
        where = f"models/{meta.name}@v{meta.version}"
        doc = submitted_doc("gridsearch", where, resources, final.key, True, at=at)
        self._cluster.latest.fitting(meta.bucket, meta.name, final)
        return self._tracked(final, task_id, description, True, doc, route)

    # -- canvases ----------------------------------------------------------------------------
    def sequence(self) -> Canvas:
        """Steps that run one after the other (each waits for the one before in the
        scheduler); ``run().get()`` is the last one's value. A failing step stops it."""
        return Canvas(self, "sequence")

    def parallel(self) -> Canvas:
        """Steps that run side by side; ``run().getall()`` is every value in order."""
        return Canvas(self, "parallel")

    def mapreduce(self, reduce: Any = None) -> Canvas:
        """Map steps side by side, then ``reduce(values)`` (a callable importable on the
        workers) on this runtime's route; ``run().get()`` is its value."""
        return Canvas(self, "mapreduce", reduce)

    def run_canvas(self, canvas: Canvas) -> CanvasResult:
        """Submit a canvas's steps (what ``Canvas.run()`` calls)."""
        if self._local:
            return run_local(self._omega, canvas)
        self._check_shared()
        handle, client = self._cluster, self.client

        def route_of(step: Any) -> dict[str, float]:
            route, attribute = step.route, None
            if route is None:  # the model's own attribute, as for a single task
                meta = handle.latest.get(self._omega.models, step.name)
                attribute = meta.attributes.get("require")
                route = ResourceSpec.from_attribute(attribute).as_dict()
            where = Route(handle.kind, handle.address, attribute)
            handle.view.check(client, route, f"{step.method} of model {step.name!r}", where)
            return dict(route)

        return submit_canvas(self, canvas, route_of)

    def ping(self, timeout: float = 10) -> list[dict[str, Any]]:
        """Each worker that would take a task on this route answers: address, name,
        resources and round-trip time (ms). ResourceUnavailableError when none does."""
        client = self.client  # connected: the handle knows its kind and address
        route = Route(self._cluster.kind, self._cluster.address, None)
        return ping_workers(client, self._resources or {}, timeout, route)

    def _run(
        self,
        meta: Any,
        method: str,
        X: Any,
        Y: Any,
        params: dict[str, Any],
        result_name: str | None,
    ) -> TaskResult:
        description = f"{method}({meta.name}@v{meta.version})"
        task_id = new_id()
        writes = method in FITTING or result_name is not None
        key = f"omfs-{method}-{meta.name.replace('/', '.')}-{task_id}"
        guard = writes and not self._local
        args = (meta, method, X, Y, params, result_name)
        if self._local:
            try:
                value = run_recorded(self._omega, task_id, *args)
                return TaskResult(value=value, description=description, id=task_id)
            except Exception as exc:
                return TaskResult(error=exc, description=description, id=task_id)
        self._check_shared()
        resources, route = self._route(meta)
        handle, client = self._cluster, self.client
        handle.view.check(client, resources, f"{method} of model {meta.name!r}", route)
        future = client.submit(
            run_recorded,
            self._omega,
            task_id,
            *args,
            guard=guard,
            route=resources,
            resources=resources or None,
            pure=False,
            key=key,
        )
        where = f"models/{meta.name}@v{meta.version}"
        submitted = submitted_doc(method, where, resources, key, writes, bucket=meta.bucket)
        if method in FITTING:  # the next task reads the version this one makes
            handle.latest.fitting(meta.bucket, meta.name, future)
        return self._tracked(future, task_id, description, guard, submitted, route)

    def _route(self, meta: Any) -> tuple[dict[str, float], Route]:
        """The resources a task of ``meta`` requires (``require()``, else the model's
        attribute), and where they came from (connects to the cluster)."""
        attribute = meta.attributes.get("require") if self._resources is None else None
        resources = self._resources
        if resources is None:
            resources = ResourceSpec.from_attribute(attribute).as_dict()
        self.client  # noqa: B018 (connected: the handle knows its kind and address)
        return resources, Route(self._cluster.kind, self._cluster.address, attribute)

    def _tracked(
        self,
        future: Any,
        task_id: str,
        description: str,
        guard: bool,
        doc: dict[str, Any],
        route: Route | None = None,
    ) -> TaskResult:
        """A submitted task, kept until it finishes; as this process exits, tasks still
        pending become fire-and-forget (they run to their end) and get their record."""
        handle = self._cluster
        storage = self._omega.storage
        handle.track(future, description, (storage, task_id, doc))
        address = route.address if route is not None else handle.address
        return TaskResult(
            future,
            description=description,
            guard=guard,
            forget=lambda: handle.forget(future.key),
            id=task_id,
            storage=storage,
            about=doc,
            advice=partial(
                cluster_credentials_advice, storage.url, storage.options, handle.kind, address
            ),
        )

    def _check_shared(self) -> None:
        """Refuse a context in this process's memory: workers cannot see it."""
        if self._omega.storage.protocol == "memory":
            raise ConfigError(
                f"The context {self._omega.root!r} lives in this process's memory, which Dask "
                "workers cannot see.",
                hint="Run the task locally (runtime.mode(local=True), `om runtime --local`), "
                "or use a folder or s3:// root.",
                cli_hint="Run the task locally (`om runtime --local`), or use a folder or s3:// "
                "root.",
            )


class ModelProxy:
    """``runtime.model(name)``: each method submits one task and returns a TaskResult.

    ``X`` and ``Y`` are dataset names (read on the worker, with ``"name[a,b]"`` selecting
    columns) or data sent with the task.
    """

    def __init__(self, runtime: Runtime, name: str):
        self._runtime = runtime
        self.name = name

    def __repr__(self) -> str:
        return f"ModelProxy({self.name!r}, {self._runtime!r})"

    def _call(
        self, method: str, X: Any = None, Y: Any = None, *, rName: str | None = None, **params: Any
    ) -> TaskResult:
        runtime = self._runtime
        models = runtime._omega.models
        if runtime._local:
            meta = models.metadata(self.name)
        else:
            meta = runtime.cluster.latest.get(models, self.name)
        return runtime._run(meta, method, X, Y, params, rName)

    def fit(self, X: Any = None, Y: Any = None, **params: Any) -> TaskResult:
        return self._call("fit", X, Y, **params)

    def partial_fit(self, X: Any = None, Y: Any = None, **params: Any) -> TaskResult:
        return self._call("partial_fit", X, Y, **params)

    def predict(self, X: Any, rName: str | None = None, **params: Any) -> TaskResult:
        return self._call("predict", X, rName=rName, **params)

    def predict_proba(self, X: Any, rName: str | None = None, **params: Any) -> TaskResult:
        return self._call("predict_proba", X, rName=rName, **params)

    def decision_function(self, X: Any, rName: str | None = None, **params: Any) -> TaskResult:
        return self._call("decision_function", X, rName=rName, **params)

    def transform(self, X: Any, rName: str | None = None, **params: Any) -> TaskResult:
        return self._call("transform", X, rName=rName, **params)

    def score(self, X: Any, Y: Any = None, **params: Any) -> TaskResult:
        return self._call("score", X, Y, **params)

    def gridsearch(
        self, X: Any, Y: Any = None, *, parameters: Any, cv: Any = 3, scoring: Any = None
    ) -> TaskResult:
        """Cross-validate every combination of ``parameters`` (``{"C": [0.1, 1, 10]}``),
        one task per candidate spread over the route's workers; the best is refit on all
        the data and stored as the model's next version (its lineage names the search,
        parameters and score), the table as dataset ``<model>_gridsearch``. ``get()``
        returns the new version's metadata."""
        return self._runtime._gridsearch(self.name, X, Y, parameters, cv, scoring)

    def task(
        self, method: str, X: Any = None, Y: Any = None, *, rName: str | None = None, **params: Any
    ) -> TaskResult:
        """Any of :data:`METHODS` by name (what the CLI uses)."""
        if method not in METHODS:
            raise UsageError(f"Unknown model action {method!r}; use one of {list(METHODS)}")
        return self._call(method, X, Y, rName=rName, **params)
