"""Contexts and buckets: :class:`Omega` and :func:`setup`.

A context is a storage root (any fsspec URL) plus its runtime cluster. A bucket is a
top-level folder of the root; ``om["name"]`` gives the same context on another bucket.
"""

from __future__ import annotations

import os
from functools import cached_property
from typing import TYPE_CHECKING, Any

from omfs import config
from omfs.names import check_bucket
from omfs.storage import Storage

if TYPE_CHECKING:
    from omfs.compute import Runtime
    from omfs.compute.cluster import ClusterHandle
    from omfs.objects.datasets import DatasetStore
    from omfs.objects.jobs import JobStore
    from omfs.objects.models import ModelStore
    from omfs.ops.reports import GcReport

__all__ = ["Omega", "info", "setup"]


class Omega:
    """One context on one bucket: ``datasets``, ``models``, ``jobs``, ``runtime`` and
    ``buckets``."""

    def __init__(
        self,
        storage: Storage,
        bucket: str = config.DEFAULT_BUCKET,
        cluster: Any = None,
        *,
        _cluster_handle: ClusterHandle | None = None,
    ):
        self.storage = storage
        self.bucket = check_bucket(bucket)
        if _cluster_handle is None:
            from omfs.compute.cluster import ClusterHandle

            _cluster_handle = ClusterHandle(cluster)
        self._cluster = _cluster_handle

    @property
    def root(self) -> str:
        """The context's root URL."""
        return self.storage.url

    @property
    def cluster(self) -> ClusterHandle:
        """The context's cluster: its spec (an address, a Client, or None for the background
        or a private cluster), connected on first use; shared by all buckets."""
        return self._cluster

    def __repr__(self) -> str:
        return f"Omega(root={self.root!r}, bucket={self.bucket!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Omega)
            and self.storage == other.storage
            and self.bucket == other.bucket
        )

    def __hash__(self) -> int:
        return hash((self.storage.url, self.bucket))

    def __getitem__(self, bucket: str) -> Omega:
        """The same context (storage and runtime) on another bucket."""
        return Omega(self.storage, bucket, _cluster_handle=self._cluster)

    def __reduce__(self) -> tuple[Any, ...]:
        # what travels to a worker: root URL and non-secret options (Storage pickles so)
        return (Omega, (self.storage, self.bucket))

    @cached_property
    def datasets(self) -> DatasetStore:
        from omfs.objects.datasets import DatasetStore

        return DatasetStore(self.storage, self.bucket, self)

    @cached_property
    def models(self) -> ModelStore:
        from omfs.objects.models import ModelStore

        return ModelStore(self.storage, self.bucket, self)

    @cached_property
    def jobs(self) -> JobStore:
        from omfs.objects.jobs import JobStore

        return JobStore(self.storage, self.bucket, self)

    @cached_property
    def runtime(self) -> Runtime:
        from omfs.compute import Runtime

        return Runtime(self, self._cluster)

    def sql(self, query: str, *, as_arrow: bool = False, into: str | None = None) -> Any:
        """Run a SQL query in DuckDB over dataset versions, named as tables: ``sales``,
        ``"sales@prod"``, ``"sales@v3"``, ``"bucket/sales"``, ``"context:bucket/sales@tag"``.

        Returns a pandas DataFrame (a pyarrow Table with ``as_arrow=True``); ``into=NAME``
        stores the answer as a new version of dataset NAME, its lineage naming the query and
        the versions read, and returns its metadata. The query reads only the datasets it
        names: another file, ``COPY ... TO``, ``INSTALL``/``LOAD``, ``ATTACH`` and settings
        are refused (QueryError); put a file as a dataset to query it. See
        :func:`omfs.ops.sql.sql`.

        Example::

            om.sql('select region, sum(qty) from "sales@prod" group by 1')
        """
        from omfs.ops.sql import sql

        def open_context(spec: str) -> DatasetStore:
            name, _, bucket = spec.partition(":")
            return setup(context=name, bucket=bucket or None).datasets

        return sql(self.datasets, query, as_arrow=as_arrow, into=into, open_context=open_context)

    def gc(
        self,
        *,
        grace: Any = "1h",
        dry_run: bool = False,
        buckets: list[str] | None = None,
        force: bool = False,
        task_retention: Any = None,
    ) -> GcReport:
        """Remove files no live version references, older than ``grace`` (all buckets by
        default; below 10 minutes only with ``force=True``). See
        :func:`omfs.ops.gc.collect_garbage`. Without ``buckets``, also the runtime's task
        records older than ``task_retention`` (default ``$OMFS_TASK_RETENTION`` or 7d):
        their ids are the report's ``tasks`` (a task that has not ended stays: see
        :func:`omfs.compute.retention.purge`; it and stray names are in ``skipped``)."""
        from omfs._util import parse_duration
        from omfs.compute.records import PREFIX
        from omfs.compute.retention import purge
        from omfs.ops.gc import collect_garbage
        from omfs.ops.reports import GcSkip

        if task_retention is None:
            task_retention = os.environ.get("OMFS_TASK_RETENTION") or "7d"
        keep = parse_duration(task_retention).total_seconds()  # a bad one: before any removal
        report = collect_garbage(self, buckets=buckets, grace=grace, dry_run=dry_run, force=force)
        if buckets is None:
            report["tasks"], kept = purge(self.storage, keep, dry_run=dry_run)
            report["skipped"] += [
                GcSkip(bucket="", store=PREFIX, name=k["name"], why=k["why"]) for k in kept
            ]
        return report

    @property
    def buckets(self) -> list[str]:
        """Names of the buckets in this context (always includes this one)."""
        from omfs.objects.versioned import bucket_names

        return sorted({*bucket_names(self.storage), self.bucket})

    def check_location(self) -> None:
        """Raise NotFoundError when this bucket or the context's root does not exist (for
        reads: a typo in the root or bucket would otherwise read as empty)."""
        from omfs.errors import NotFoundError
        from omfs.objects.versioned import bucket_problem

        problem = bucket_problem(self.storage, self.bucket)
        if problem:
            raise NotFoundError(problem[0].upper() + problem[1:])

    def drop_bucket(self, bucket: str) -> dict[str, int]:
        """Drop every dataset, model and job of ``bucket`` (each with all its versions), then the
        bucket's folder. Returns how many of each were dropped."""
        from omfs.errors import NotFoundError
        from omfs.objects.versioned import bucket_names, bucket_problem

        target = self[bucket]
        if target.bucket not in bucket_names(self.storage):
            problem = bucket_problem(self.storage, target.bucket)
            if problem or target.bucket != self.bucket:
                raise NotFoundError(f"Cannot drop bucket {bucket!r}: {problem or 'it is empty'}")
        counts = {}
        for store in (target.datasets, target.models, target.jobs):
            names = store.list()
            for name in names:
                store.drop(name, force=True)
            counts[store.kind] = len(names)
        self.storage.delete_tree(target.bucket)
        return counts


def info(
    root: str | os.PathLike[str] | None = None,
    *,
    bucket: str | None = None,
    context: str | None = None,
    cluster: Any = None,
) -> dict[str, Any]:
    """What a ``setup()`` with these arguments would use, and where each setting comes
    from: root, bucket, context, cluster, storage protocol and options (credentials left
    out), the config file and the omfs version. Nothing is connected or started."""
    from omfs._version import __version__
    from omfs.compute.cluster import ClusterHandle
    from omfs.compute.workers import state_dir
    from omfs.storage import public_options

    settings = config.resolve(root, bucket, cluster, None, context)
    storage = Storage(settings.root, settings.storage_options)
    handle = ClusterHandle(settings.cluster)
    sources = dict(settings.sources)
    if settings.cluster is None:
        sources["cluster"] = "built-in default"
    return {
        "version": __version__,
        "root": storage.url,
        "bucket": settings.bucket,
        "context": settings.context,
        "cluster": handle.describe(),
        "storage": storage.protocol,
        "storage_options": public_options(settings.storage_options),
        "config_file": str(config.config_path()),
        "state_folder": str(state_dir()),
        "sources": {
            key: sources.get(key, "not set")
            for key in ("context", "root", "bucket", "cluster", "storage_options")
        },
    }


def setup(
    root: str | os.PathLike[str] | None = None,
    *,
    bucket: str | None = None,
    storage_options: dict[str, Any] | None = None,
    cluster: Any = None,
    context: str | None = None,
    unsafe_commits: bool = False,
) -> Omega:
    """Open a context.

    ``context="prod"`` opens a context named in the config file (``$OMFS_CONTEXT`` and the
    file's ``default`` name one too).

    ``root`` is a local folder or fsspec URL (``s3://bucket/prefix``, ``memory://name``);
    ``None`` means ``$OMFS_ROOT``, then the config file, then ``~/.omfs``. ``bucket``
    defaults to ``$OMFS_BUCKET`` or ``omega``. ``cluster`` is a Dask scheduler address or a
    ``distributed.Client``; ``None`` means ``$OMFS_CLUSTER``, else a LocalCluster started on
    first remote use: the background cluster of ``om cluster start`` when it runs, else
    a private one stopped at exit.

    Writes need an atomic put-if-absent, which omfs has for local folders, ``memory://``
    and S3 (S3-compatible servers are checked to honour ``If-None-Match`` on first write);
    other protocols are refused for writes unless ``unsafe_commits=True``.
    """
    settings = config.resolve(root, bucket, cluster, storage_options, context)
    storage = Storage(settings.root, settings.storage_options, unsafe_commits=unsafe_commits)
    storage.check_root()
    return Omega(storage, settings.bucket, settings.cluster)
