"""The model store: any object joblib can save, as versioned payloads with JSON sidecars.

Loading a joblib file runs code from it (pickle). omfs verifies each payload's sha256
against its sidecar before unpickling, which catches truncation and tampering of the
payload alone, but it cannot make an untrusted store safe: load models only from stores
you trust.
"""

from __future__ import annotations

import hashlib
import io
import mmap
import platform
import queue
import sys
import threading
from collections.abc import Callable
from typing import Any

from omfs._names import check_name, split_selector
from omfs._storage import unique_name
from omfs._store import VersionedStore
from omfs.errors import IntegrityError, InvalidNameError
from omfs.metadata import Metadata

__all__ = ["ModelStore", "describe_kind", "is_fitted"]

_CHUNK = 16 * 2**20
_LIBRARIES = ("numpy", "scipy", "pandas", "sklearn", "xgboost", "lightgbm", "torch")


class _Hasher:
    """sha256 computed on a second thread (hashlib releases the GIL), so hashing overlaps
    with writing or reading instead of adding a second pass."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=16)
        self._thread = threading.Thread(target=self._run, name="omfs-sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            self.digest.update(chunk)

    def update(self, chunk: bytes) -> None:
        self._queue.put(chunk)

    def hexdigest(self) -> str:
        self._queue.put(None)
        self._thread.join()
        return self.digest.hexdigest()


class _HashingWriter(io.RawIOBase):
    """A write-only file that hashes what passes through on its way to ``target``."""

    def __init__(self, target: Any):
        self._target = target
        self.hasher = _Hasher()
        self.size = 0

    def writable(self) -> bool:
        return True

    def tell(self) -> int:  # joblib aligns arrays by position, as it does for plain files
        return self.size

    def write(self, data: Any) -> int:
        chunk = data if isinstance(data, bytes) else bytes(data)  # immutable for the hasher
        self._target.write(chunk)
        self.hasher.update(chunk)
        self.size += len(chunk)
        return len(chunk)


def describe_kind(obj: Any) -> str:
    """``sklearn.linear_model.LinearRegression`` rather than ``..._base.LinearRegression``."""
    cls = type(obj)
    public = [p for p in cls.__module__.split(".") if not p.startswith("_")]
    return ".".join([*public, cls.__qualname__])


def is_fitted(obj: Any) -> bool | None:
    """True/False for scikit-learn style estimators, None when it cannot be told."""
    if "sklearn" not in sys.modules or not hasattr(obj, "fit"):
        return None
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(obj)
    except NotFittedError:
        return False
    except TypeError:
        return None
    return True


def _library_versions() -> dict[str, str]:
    import joblib

    versions = {"python": platform.python_version(), "joblib": joblib.__version__}
    for name in _LIBRARIES:
        module = sys.modules.get(name)
        if module is not None and getattr(module, "__version__", None):
            versions["scikit-learn" if name == "sklearn" else name] = module.__version__
    return versions


class ModelStore(VersionedStore):
    """Models of one bucket: ``put``, ``get``, ``list``, ``exists``, ``drop``, ``metadata``,
    ``versions``, ``update_attributes``, ``promote``."""

    kind = "models"
    noun = "Model"

    def put(
        self,
        obj: Any,
        name: str,
        *,
        attributes: dict[str, Any] | None = None,
        tag: str | None = None,
        lineage: dict[str, Any] | None = None,
    ) -> Metadata:
        """Save ``obj`` with joblib as a new, immutable version of model ``name``."""
        import joblib

        name = check_name(name)
        if tag is not None:
            _check_tag(tag)
        key = self._data_key(name, unique_name(".joblib"))
        try:
            with self.storage.open(key, "wb") as f:
                writer = _HashingWriter(f)
                joblib.dump(obj, writer)
            info = {
                "payload": key.rsplit("/", 1)[-1],
                "size": writer.size,
                "sha256": writer.hasher.hexdigest(),
                "fitted": is_fitted(obj),
                "libraries": _library_versions(),
            }
            meta = Metadata(
                name=name,
                bucket=self.bucket,
                store=self.kind,
                kind=describe_kind(obj),
                attributes=dict(attributes or {}),
                tag=tag,
                lineage=lineage,
                context=self.storage.url,
                info=info,
            )
            return self._commit(name, lambda _latest: meta, retry=True)
        except BaseException:
            self.storage.delete([key])
            self._forget_if_empty(name)
            raise

    def get(self, name: str, *, version: int | str | None = None) -> Any:
        """Load the latest version, or the one ``name@v3``, ``name@tag`` or ``version=``
        selects. The payload is hashed as it is read and never unpickled on a mismatch."""
        import joblib

        meta = self._resolve(name, version)
        key = self._check_payload_present(meta, meta.info["payload"])
        if self.storage.is_local and meta.info.get("size"):
            # map the file once: hash the mapping, then unpickle from the same mapping
            with (
                open(self.storage.path(key), "rb") as f,
                mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped,
            ):
                self._verify(meta, len(mapped), hashlib.sha256(mapped).hexdigest())
                return joblib.load(mapped)
        return joblib.load(io.BytesIO(self.read_payload(meta)))

    def read_payload(self, meta: Metadata, progress: Callable[[int], None] | None = None) -> bytes:
        """The verified payload bytes of one version (hashed while they are read)."""
        key = self._check_payload_present(meta, meta.info["payload"])
        chunks = []
        hasher = _Hasher()
        with self.storage.open(key, "rb") as f:
            while chunk := f.read(_CHUNK):
                hasher.update(chunk)
                chunks.append(chunk)
                if progress:
                    progress(len(chunk))
        data = b"".join(chunks)
        self._verify(meta, len(data), hasher.hexdigest())
        return data

    def _verify(self, meta: Metadata, size: int, sha256: str) -> None:
        if size != meta.info.get("size") or sha256 != meta.info.get("sha256"):
            what = (
                "is truncated or longer" if size != meta.info.get("size") else "has another sha256"
            )
            raise IntegrityError(
                f"The payload of model {meta.name!r} version {meta.version} in bucket "
                f"{self.bucket!r} does not match its sidecar (it {what}: {size} bytes, "
                f"sidecar says {meta.info.get('size')}): it was truncated or changed outside "
                "omfs and was not loaded. Put the model again, or drop that version."
            )

    def _payload_sizes(self, meta: Metadata) -> dict[str, int]:
        return {meta.info["payload"]: meta.info["size"]} if "payload" in meta.info else {}

    def _renamed_payload(self, info: dict[str, Any], renamed: dict[str, str]) -> dict[str, Any]:
        return {**info, "payload": renamed[info["payload"]]}

    def promote(self, name: str, other: ModelStore, **kwargs: Any) -> Metadata:
        """Copy one version of ``name`` to ``other`` (another bucket or context) as a new
        version there, recording where it came from. See :func:`omfs.promotion.promote`."""
        from omfs.promotion import promote

        return promote(self, name, other, **kwargs)


def _check_tag(tag: str) -> None:
    check_name(tag, "tag")
    _, selector = split_selector(f"x@{tag}")
    if isinstance(selector, int) or "/" in tag:
        raise InvalidNameError(
            f"Invalid tag {tag!r}: it would read as a version number; tags are names such as "
            "'prod' or 'prod-2024'"
        )
