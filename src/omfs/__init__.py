"""omfs: a local-first store and runtime for data science.

``import omfs as om`` gives the default context: ``om.datasets``, ``om.models``,
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
from omfs.context import Omega, info, setup

if TYPE_CHECKING:
    from omfs.datasets import DatasetStore
    from omfs.models import ModelStore
    from omfs.runtime import Runtime

    datasets: DatasetStore
    models: ModelStore
    runtime: Runtime
    buckets: list[str]

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
    "models",
    "runtime",
    "setup",
    "sync",
]
__version__ = "0.1.0"

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


def sync(source: Any, target: Any, **kwargs: Any) -> dict[str, Any]:
    """Replicate datasets and models with their history: see :func:`omfs.replication.sync`."""
    from omfs.replication import sync as _sync

    return _sync(source, target, **kwargs)


def export(source: Any, names: Any, path: Any) -> dict[str, Any]:
    """Write objects with their history to a tar bundle: see :func:`omfs.bundle.export`."""
    from omfs.bundle import export as _export

    return _export(source, names, path)


def import_(path: Any, target: Any, **kwargs: Any) -> dict[str, Any]:
    """Import a bundle into a context: see :func:`omfs.bundle.import_`."""
    from omfs.bundle import import_ as _import

    return _import(path, target, **kwargs)


def gc(
    *,
    grace: Any = "1h",
    dry_run: bool = False,
    buckets: list[str] | None = None,
    force: bool = False,
) -> Any:
    """Garbage collection in the default context: see :meth:`Omega.gc`."""
    return get_default().gc(grace=grace, dry_run=dry_run, buckets=buckets, force=force)


def __getattr__(name: str) -> Any:  # PEP 562: the module is the default instance
    if name in ("root", "bucket", "storage"):
        return getattr(get_default(), name)
    raise AttributeError(f"module 'omfs' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), "datasets", "models", "runtime", "buckets"])


def _default_attribute(name: str) -> property:
    """A module property for the default context's ``name``.

    ``omfs.datasets`` etc. are also subpackages; importing one makes the import system set
    the module attribute, which the setter keeps aside so that the property still wins.
    """

    def get(module: types.ModuleType) -> Any:
        return getattr(get_default(), name)

    def set_(module: types.ModuleType, value: Any) -> None:
        module.__dict__.setdefault("_subpackages", {})[name] = value

    return property(get, set_)


class _OmfsModule(types.ModuleType):
    """The module is the default instance: ``om.datasets``, ``om["bucket"]`` and so on."""

    datasets = _default_attribute("datasets")
    models = _default_attribute("models")
    runtime = _default_attribute("runtime")
    buckets = _default_attribute("buckets")

    def __getitem__(self, bucket: str) -> Omega:
        return get_default()[bucket]


_module = sys.modules[__name__]
for _name in ("datasets", "models", "runtime"):  # submodules imported before the swap
    if isinstance(_module.__dict__.get(_name), types.ModuleType):
        _module.__dict__.setdefault("_subpackages", {})[_name] = _module.__dict__.pop(_name)
_module.__class__ = _OmfsModule
