"""omfs: a local-first store and runtime for data science.

``import omfs as om`` gives the default context: ``om.datasets``, ``om.models``, ``om.jobs``,
``om.runtime``, ``om.buckets`` and ``om["bucket"]`` work with no configuration (a folder
in your home directory). ``om.setup(...)`` opens other contexts. Heavy libraries (pyarrow,
s3fs, dask, scikit-learn) are imported only when first used.
"""

from __future__ import annotations

import sys
import threading
import types
from typing import TYPE_CHECKING, Any

from omfs import errors
from omfs._version import __version__ as __version__
from omfs.context import Omega, info, setup

if TYPE_CHECKING:
    import os
    from collections.abc import Sequence

    from omfs.compute import Runtime
    from omfs.objects.datasets import DatasetStore
    from omfs.objects.jobs import JobStore
    from omfs.objects.models import ModelStore
    from omfs.objects.versioned import VersionedStore
    from omfs.ops.reports import BundleManifest, GcReport, ImportReport, SyncReport

    datasets: DatasetStore
    models: ModelStore
    jobs: JobStore
    runtime: Runtime
    buckets: list[str]
    root: str
    bucket: str

__all__ = [
    "Omega",
    "buckets",
    "datasets",
    "errors",
    "export",
    "gc",
    "get_default",
    "import_",
    "info",
    "jobs",
    "models",
    "runtime",
    "setup",
    "sql",
    "sync",
]

_default: Omega | None = None
_default_lock = threading.Lock()


def get_default() -> Omega:
    """The default context, opened from the environment and config on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = setup()
        return _default


def _reset_default() -> None:
    """Forget the default context, so the next use reads the environment again."""
    global _default
    with _default_lock:
        _default = None


def _context(ctx: Omega | str) -> Omega:
    """A context given as itself or by its name in the config file (sync and import)."""
    if isinstance(ctx, Omega):
        return ctx
    if isinstance(ctx, str):
        return setup(context=ctx)
    from omfs.ops.common import SyncError

    raise SyncError(f"sync takes contexts (omfs.setup(...) or a context name), got {ctx!r}")


def sync(source: Omega | str, target: Omega | str, **kwargs: Any) -> SyncReport:
    """Replicate datasets and models with their history from ``source`` to ``target``
    (contexts, or names of contexts in the config file): see :func:`omfs.ops.sync.sync`
    for the options (``buckets``, ``names``, ``dry_run``, ``rebase``, ``progress``,
    ``on_object``) and the report."""
    from omfs.ops.sync import sync as _sync

    return _sync(_context(source), _context(target), **kwargs)


def export(
    source: Omega | VersionedStore, names: Sequence[str], path: str | os.PathLike[str]
) -> BundleManifest:
    """Write objects with their history to a tar bundle: see :func:`omfs.ops.bundle.export`."""
    from omfs.ops.bundle import export as _export

    return _export(source, names, path)


def import_(path: str | os.PathLike[str], target: Omega | str, **kwargs: Any) -> ImportReport:
    """Import a bundle into a context (or the name of one in the config file): see
    :func:`omfs.ops.bundle_import.import_`."""
    from omfs.ops.bundle_import import import_ as _import

    return _import(path, _context(target), **kwargs)


def gc(
    *,
    grace: Any = "1h",
    dry_run: bool = False,
    buckets: list[str] | None = None,
    force: bool = False,
) -> GcReport:
    """Garbage collection in the default context (as :meth:`Omega.gc`): see
    :func:`omfs.ops.gc.collect_garbage`."""
    from omfs.ops.gc import collect_garbage

    return collect_garbage(
        get_default(), grace=grace, dry_run=dry_run, buckets=buckets, force=force
    )


def sql(query: str, *, as_arrow: bool = False, into: str | None = None) -> Any:
    """SQL over dataset versions in the default context (as :meth:`Omega.sql`)."""
    return get_default().sql(query, as_arrow=as_arrow, into=into)


#: What the module answers for the default context (PEP 562): ``om.datasets`` and so on.
_DEFAULT_ATTRIBUTES = frozenset(
    {"datasets", "models", "jobs", "runtime", "buckets", "root", "bucket"}
)


def __getattr__(name: str) -> Any:  # PEP 562: the module is the default context
    if name in _DEFAULT_ATTRIBUTES:
        return getattr(get_default(), name)
    raise AttributeError(f"module 'omfs' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_DEFAULT_ATTRIBUTES])


class _OmfsModule(types.ModuleType):
    """``om["bucket"]``: the one thing PEP 562 cannot give a module (no ``__getitem__``)."""

    def __getitem__(self, bucket: str) -> Omega:
        return get_default()[bucket]


sys.modules[__name__].__class__ = _OmfsModule
