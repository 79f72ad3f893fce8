"""The runtime: model tasks and job runs on a context's Dask cluster, routed by worker
resources.

``om.runtime.require("gpu").model("m").fit("X", "Y").get()`` runs on a worker that offers
the ``gpu`` resource; ``om.runtime.mode(local=True)`` runs the same task in this process.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from omfs.compute._routing import Route, check_satisfiable, describe_workers
from omfs.compute.credentials import cluster_credentials_advice
from omfs.compute.resources import ResourceSpec
from omfs.compute.tasks import FITTING, METHODS, run_model_task
from omfs.errors import ConfigError, MissingCredentialsError, UsageError

if TYPE_CHECKING:
    from omfs.compute.cluster import ClusterHandle
    from omfs.compute.jobs import JobProxy
    from omfs.storage import Storage

__all__ = ["ModelProxy", "ResourceSpec", "Runtime", "TaskResult"]


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


class TaskResult:
    """The outcome of a task: ``get(timeout=None)`` waits for it; ``future`` is the Dask
    future (None in local mode). Errors raised by the task are raised by ``get``.

    ``cancel()`` stops the task; a task that writes (fit, or a result stored with
    ``rName``) checks before it writes, so after a successful ``cancel()`` nothing of it
    is ever written.
    """

    def __init__(
        self,
        future: Any = None,
        *,
        value: Any = None,
        error: BaseException | None = None,
        description: str = "",
        guard: str | None = None,
        forget: Any = None,
        advice: Callable[[], str | None] | None = None,
    ):
        self.future = future
        self._value = value
        self._error = error
        self.description = description
        self._guard = guard
        self._forget = forget  # called once cancelled: the exit no longer waits for it
        self._advice = advice  # why the workers lack credentials this process has

    def get(self, timeout: float | None = None) -> Any:
        """The task's result; raises what the task raised, or TimeoutError after
        ``timeout`` seconds (the task goes on running: call ``get`` again or ``cancel``)."""
        if self.future is not None:
            from distributed import TimeoutError as DaskTimeout

            try:
                return self.future.result(timeout=timeout)
            except MissingCredentialsError as exc:
                raise self._explained(exc) from None
            except (TimeoutError, DaskTimeout):
                if self.future.status in ("finished", "error"):
                    return self.future.result()
                raise TimeoutError(
                    f"{self.description} did not finish within {timeout:g} s; it goes on "
                    "running. Call get() again to wait for it, or cancel() to stop it."
                ) from None
        if self._error is not None:
            raise self._error
        return self._value

    def _explained(self, exc: MissingCredentialsError) -> MissingCredentialsError:
        """``exc`` saying why the workers lack credentials this process has, where known."""
        advice = self._advice() if self._advice is not None else None
        if not advice:
            return exc
        explained = MissingCredentialsError(f"{exc.summary or exc} {advice}")
        explained.summary = exc.summary
        return explained

    def done(self) -> bool:
        return self.future.done() if self.future is not None else True

    def cancel(self) -> bool:
        """Stop the task. True: it will write nothing. False: it had already finished or
        begun to write; ``get()`` returns its result."""
        if self.future is None or self.future.done():
            return False
        if self._guard is not None:
            from distributed import Lock

            # the task takes this lock before it writes; whoever holds it decides
            if not Lock(self._guard).acquire(timeout=5):
                return False
        self.future.cancel()
        if self._forget is not None:
            self._forget()
        return True

    def __repr__(self) -> str:
        state = (
            self.future.status
            if self.future is not None
            else ("error" if self._error else "finished")
        )
        return f"<TaskResult {self.description} {state}>"


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
        return describe_workers(self.client.scheduler_info(n_workers=-1))

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` of this context (connected or started on first use)."""
        return self._cluster.client()

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
        writes = method in FITTING or result_name is not None
        key = f"omfs-{method}-{meta.name.replace('/', '.')}-{uuid.uuid4().hex[:12]}"
        guard = f"{key}-commit" if writes and not self._local else None
        args = (meta, method, X, Y, params, result_name)
        if self._local:
            try:
                return TaskResult(value=run_model_task(self._omega, *args), description=description)
            except Exception as exc:
                return TaskResult(error=exc, description=description)
        if self._omega.storage.protocol == "memory":
            raise ConfigError(
                f"The context {self._omega.root!r} lives in this process's memory, which Dask "
                "workers cannot see.",
                hint="Run the task locally (runtime.mode(local=True), `om runtime --local`), "
                "or use a folder or s3:// root.",
                cli_hint="Run the task locally (`om runtime --local`), or use a folder or s3:// "
                "root.",
            )
        resources, route = self._route(meta)
        check_satisfiable(self.workers(), resources, f"{method} of model {meta.name!r}", route)
        future = self.client.submit(
            run_model_task,
            self._omega,
            *args,
            guard=guard,
            resources=resources or None,
            pure=False,
            key=key,
        )
        handle = self._cluster
        handle.track(future, description)
        storage = self._omega.storage
        return TaskResult(
            future,
            description=description,
            guard=guard,
            forget=lambda: handle.forget(future.key),
            advice=partial(
                cluster_credentials_advice, storage.url, storage.options, handle.kind, route.address
            ),
        )

    def _route(self, meta: Any) -> tuple[dict[str, float], Route]:
        """The resources a task of ``meta`` requires (``require()``, else the model's
        attribute), and where they came from (connects to the cluster)."""
        attribute = meta.attributes.get("require") if self._resources is None else None
        resources = self._resources
        if resources is None:
            resources = ResourceSpec.from_attribute(attribute).as_dict()
        self.client  # noqa: B018 (connected: the handle knows its kind and address)
        return resources, Route(self._cluster.kind, self._cluster.address, attribute)


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
        meta = self._runtime._omega.models.metadata(self.name)
        return self._runtime._run(meta, method, X, Y, params, rName)

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

    def task(
        self, method: str, X: Any = None, Y: Any = None, *, rName: str | None = None, **params: Any
    ) -> TaskResult:
        """Any of :data:`METHODS` by name (what the CLI uses)."""
        if method not in METHODS:
            raise UsageError(f"Unknown model action {method!r}; use one of {list(METHODS)}")
        return self._call(method, X, Y, rName=rName, **params)
