"""Running jobs: ``om.runtime.job("nightly").run(**params)`` on the routed runtime.

The client checks the route, creates the run record (:mod:`omfs.objects.jobs.runs`) and
submits :func:`execute_run`; the worker (or this process, in local mode) claims the record,
keeps it alive with a heartbeat, runs the script or notebook with its output captured, and
rewrites the record with how it ended. A script runs as ``__main__`` with ``om`` (the
job's own context and bucket) and ``params``; if it defines ``run(om, **params)``, that is
called and its JSON return value is the run's result. A notebook runs with nbclient, ``om``
and the parameters injected after the cell tagged ``parameters`` (papermill's convention).

For a scheduler, :func:`start_run` with a ``slot`` creates the record keyed by job and slot
with put-if-absent: of several schedulers only the one that created it submits the run.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from omfs.compute._routing import check_satisfiable, describe_workers
from omfs.compute.resources import ResourceSpec
from omfs.compute.runner import execute_run
from omfs.errors import ConfigError, JobFailedError, UsageError
from omfs.objects.jobs.runs import (
    RESERVED_PARAMS,
    RunRecord,
    RunStore,
    new_run_id,
    now,
    slot_run_id,
)

if TYPE_CHECKING:
    from omfs.compute.cluster import ClusterHandle

__all__ = ["JobProxy", "RunHandle", "RunResult", "execute_run", "start_run"]


def start_run(
    om: Any, name: str, params: dict[str, Any], *, slot: datetime | None = None
) -> RunResult | None:
    """Start a run of job ``name`` of context ``om`` on its runtime (routed by the job's
    attributes). With ``slot`` (a tz-aware datetime) the run id is derived from the job and
    slot and the record is created with put-if-absent: None when it exists already (another
    scheduler won the slot), and only the winner submits."""
    proxy: JobProxy = om.runtime.job(name)
    return proxy.start(params, slot=slot)


class RunResult:
    """A started run: ``get(timeout=None)`` waits and returns its :class:`RunRecord` (or
    raises JobFailedError); ``run_id``, ``record()`` (as it is now), ``cancel()``."""

    def __init__(
        self, future: Any, store: RunStore, rec: RunRecord, value: Any = None, cluster: Any = None
    ):
        self.future = future
        self.cluster = cluster  # the Dask future (None: it ran in this process)
        self._value = value
        self.store = store
        self.run_id = rec.id
        self.job = rec.job

    def __repr__(self) -> str:
        return f"<RunResult job={self.job!r} run={self.run_id!r}>"

    def record(self) -> RunRecord:
        """The run record as it is now (a run whose worker died reads as failed)."""
        return self.store.read(self.job, self.run_id)

    def done(self) -> bool:
        return self.future is None or bool(self.future.done())

    def _wait(self, timeout: float | None) -> dict[str, Any]:
        if self.future is None:
            return dict(self._value)
        from distributed import TimeoutError as DaskTimeout

        try:
            return dict(self.future.result(timeout=timeout))
        except (TimeoutError, DaskTimeout):
            raise TimeoutError(
                f"Run {self.run_id} of job {self.job!r} did not finish within {timeout:g} s; "
                "it goes on running. Call get() again to wait for it."
            ) from None

    def get(self, timeout: float | None = None) -> RunRecord:
        """The finished run's record; JobFailedError when the job raised or its worker died."""
        try:
            doc = self._wait(timeout)
        except TimeoutError:
            raise
        except Exception:
            rec = self.record()  # the task was lost (its worker died): the record says how
            if rec.status == "failed":
                raise failure(rec) from None
            raise
        rec = RunRecord.from_dict(doc)
        if rec.status == "failed":
            raise failure(rec)
        return rec

    def cancel(self) -> bool:
        """Cancel a run that no worker has started (True); one that started runs on."""
        rec = self.store.read(self.job, self.run_id, seen=False)
        if rec.worker is not None or rec.status != "running" or self.done():
            return False
        self.future.cancel()
        self.cluster.forget(self.future.key)
        self.store.write(replace(rec, status="cancelled", finished=now(), error="cancelled"))
        return True


#: What :func:`start_run` returns (the scheduler's name for it).
RunHandle = RunResult


def failure(rec: RunRecord) -> JobFailedError:
    """The error of a failed run, naming the job, version, run id and the error line."""
    return JobFailedError(
        f"Job {rec.job!r} v{rec.version} failed (run {rec.id}): {rec.error}.",
        hint=f"Its output: om.jobs.log({rec.id!r})",
        cli_hint=f"Its output: `om jobs log {rec.id}`.",
    )


class JobProxy:
    """``runtime.job(name)``: ``run(**params)`` starts a run and returns a RunResult."""

    def __init__(
        self,
        omega: Any,
        cluster: ClusterHandle,
        name: str,
        *,
        resources: dict[str, float] | None,
        local: bool,
    ):
        self.omega = omega
        self.cluster = cluster
        self.name = name
        self.resources = resources  # None: the job's attributes say
        self.local = local

    def __repr__(self) -> str:
        return f"JobProxy({self.name!r}, local={self.local}, require={self.resources})"

    def run(self, **params: Any) -> RunResult:
        """Start a run with ``params`` (JSON values); ``.get()`` waits for its record."""
        started = self.start(params)
        assert started is not None  # only a slot can be taken already
        return started

    def start(self, params: dict[str, Any], *, slot: datetime | None = None) -> RunResult | None:
        """Start a run (see :func:`start_run`); None when ``slot``'s run exists already."""
        claimed = self.claim(params, slot=slot)
        if claimed is None:
            return None
        rec, resources = claimed
        return self._submit(rec, resources, self.omega.jobs.run_store)

    def claim(
        self, params: dict[str, Any], *, slot: datetime | None = None, worker: str | None = None
    ) -> tuple[RunRecord, dict[str, float]] | None:
        """Check the route and create the run's record (with put-if-absent: None when
        ``slot``'s run exists already); the record and the resources it needs. ``worker``:
        the caller runs it itself, now (its heartbeat then says whether it still does)."""
        meta = self.omega.jobs.metadata(self.name)
        params = _json_params(params, meta.name)
        resources = self._route(meta)
        rec = RunRecord(
            id=slot_run_id(slot) if slot is not None else new_run_id(),
            job=meta.name,
            version=meta.version,
            params=params,
            slot=slot.isoformat() if slot is not None else None,
            bucket=self.omega.bucket,
            kind=meta.kind,
            worker=worker,
        ).owned_here()
        if not self.omega.jobs.run_store.create(rec):
            return None
        return rec, resources

    def _route(self, meta: Any) -> dict[str, float]:
        """The resources the run needs, checked against the workers (before anything is
        written: an unsatisfiable route fails fast)."""
        if self.local:
            return {}
        if self.omega.storage.protocol == "memory":
            raise ConfigError(
                f"The context {self.omega.root!r} lives in this process's memory, which Dask "
                "workers cannot see.",
                hint="Run the job locally (runtime.mode(local=True)), or use a folder or s3:// "
                "root.",
                cli_hint="Run it with --local, or use a folder or s3:// root.",
            )
        resources = self.resources
        if resources is None:
            resources = ResourceSpec.from_attribute(meta.attributes.get("require")).as_dict()
        workers = describe_workers(self.cluster.client().scheduler_info(n_workers=-1))
        check_satisfiable(workers, resources, f"job {meta.name!r}")
        return resources

    def _submit(self, rec: RunRecord, resources: dict[str, float], store: RunStore) -> RunResult:
        if self.local:
            return RunResult(None, store, rec, value=execute_run(self.omega, rec.to_dict()))
        future = self.cluster.client().submit(
            execute_run,
            self.omega,
            rec.to_dict(),
            resources=resources or None,
            pure=False,
            key=f"omfs-job-{rec.job.replace('/', '.')}-{rec.id}",
        )
        self.cluster.track(future, f"job {rec.job}@v{rec.version} run {rec.id}")
        return RunResult(future, store, rec, cluster=self.cluster)


def _json_params(params: dict[str, Any], name: str) -> dict[str, Any]:
    reserved = [k for k in RESERVED_PARAMS if k in params]
    if reserved:
        raise UsageError(
            f"Job {name!r} cannot take a parameter named {reserved[0]!r}: a job already "
            f"has {' and '.join(repr(k) for k in RESERVED_PARAMS)}. Rename the parameter."
        )
    try:
        return dict(json.loads(json.dumps(params, allow_nan=False)))
    except (TypeError, ValueError) as exc:
        raise UsageError(
            f"The parameters of job {name!r} must be JSON values (text, numbers, lists, "
            f"dicts): {exc}"
        ) from None
