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
import sys
from typing import Any

from omfs.errors import InvalidModelError
from omfs.names import check_name, check_tag
from omfs.objects.metadata import Metadata, utcnow
from omfs.objects.payloads import PayloadStore, check_payload_info, sidecar_name
from omfs.objects.records import (
    Commit,
    CorruptRecord,
    State,
    VersionRecord,
    dumps,
)
from omfs.objects.versioned import leased
from omfs.storage import HashingWriter as _HashingWriter
from omfs.storage import unique_name

__all__ = ["ModelStore", "describe_kind", "is_estimator", "is_fitted", "load_model_file"]

_LIBRARIES = ("numpy", "scipy", "pandas", "sklearn", "xgboost", "lightgbm", "torch")


def is_estimator(obj: Any) -> bool:
    """True for objects with the methods runtime tasks call (fit, predict or transform)."""
    return any(callable(getattr(obj, m, None)) for m in ("fit", "predict", "transform"))


def load_model_file(path: Any) -> Any:
    """Load a model saved with ``joblib.dump`` (or pickle) from a local file, with a clear
    error when it is not one: empty, truncated, text, or needing a module not installed."""
    import os

    import joblib

    where = os.fspath(path)
    try:
        size = os.path.getsize(where)
    except OSError as exc:
        raise InvalidModelError(f"Cannot read the model file {where!r}: {exc.strerror}") from None
    if size == 0:
        raise InvalidModelError(
            f"The model file {where!r} is empty. Save a model with joblib.dump(model, path)."
        )
    try:
        return joblib.load(where)
    except ModuleNotFoundError as exc:
        with open(where, "rb") as f:
            head = f.read(2)
        if head[:1] == b"\x80" or head[:2] in (b"\x78\x9c", b"\x1f\x8b"):  # pickle / zlib / gzip
            raise InvalidModelError(
                f"The model file {where!r} needs the module {exc.name!r}, which is not "
                "installed here. Install it, then try again."
            ) from None
        reason = "it is not a joblib or pickle file"
    except (EOFError, MemoryError):
        reason = "it is truncated"
    except Exception as exc:
        reason = f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
    raise InvalidModelError(
        f"Cannot load the model file {where!r}: {reason}. Save a model with "
        "joblib.dump(model, path) and pass that file."
    )


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


class ModelStore(PayloadStore):
    """Models of one bucket: ``put``, ``get``, ``list``, ``exists``, ``drop``, ``metadata``,
    ``versions``, ``update_attributes``, ``promote``.

    Each payload ``_data/<id>.joblib`` has an immutable sidecar ``_data/<id>.json`` beside
    it (name, bucket, version, kind, size, sha256, library versions, created, the attributes
    at put time and the lineage: :meth:`describe_version`), so the file describes itself to
    a person or a tool that finds it without omfs.
    """

    kind = "models"
    noun = "Model"

    def validate_info(self, info: dict[str, Any], kind: str) -> None:
        if "payload" not in info:
            raise CorruptRecord("a model version names its payload")
        check_payload_info(info, (".joblib",), "a .joblib file")
        if info.get("fitted") not in (True, False, None):
            raise CorruptRecord("fitted must be true, false or null")
        libraries = info.get("libraries", {})
        if not isinstance(libraries, dict) or not all(
            isinstance(v, str) for v in libraries.values()
        ):
            raise CorruptRecord("libraries must map names to version strings")

    def import_info(
        self, name: str, kind: str, info: dict[str, Any], renamed: dict[str, str], created: str
    ) -> dict[str, Any]:
        return {**info, "payload": renamed[info["payload"]]}  # its sidecar: describe_version

    def _legacy_info(self, name: str, info: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in info.items() if k != "tag"}

    def _upgrade_record(self, name: str, rec: VersionRecord) -> VersionRecord:
        self.describe_version(name, rec)
        return rec

    def describe_version(self, name: str, rec: VersionRecord) -> None:
        """Write the payload's sidecar: what the payload is (kind, size, sha256, library
        versions, fitted, created) and the version it is written as (name, bucket, version,
        the attributes at that time, lineage), so the folder explains itself without omfs.

        Written just before the commit that makes it a version (again on a retry that
        renumbers it), never after: later attribute updates and tags live in the log only.
        Sync, bundles and rebase copy a sidecar byte for byte, so it says where the payload
        was first written; a promotion writes its copy's own."""
        info = rec.info
        doc = {
            "format": 2,
            "name": name,
            "bucket": self.bucket,
            "version": rec.version,
            "kind": rec.kind,
            "created": rec.created,
            "size": info["size"],
            "sha256": info["sha256"],
            "libraries": info.get("libraries", {}),
            "fitted": info.get("fitted"),
            "attributes": rec.attributes,
            "lineage": rec.lineage,
        }
        key = self.data_key(name, sidecar_name(info["payload"]))
        self.storage.write_bytes(key, dumps(doc))

    @leased(1)
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
            check_tag(tag)
        self._next_state(name)  # refuses the old layout before anything is written
        payload = unique_name(".joblib")
        key = self.data_key(name, payload)
        written = [key, self.data_key(name, sidecar_name(payload))]
        try:
            with self.storage.open(key, "wb") as f:
                writer = _HashingWriter(f)
                joblib.dump(obj, writer)
            info = {
                "payload": payload,
                "size": writer.size,
                "sha256": writer.hasher.hexdigest(),
                "fitted": is_fitted(obj),
                "libraries": _library_versions(),
            }
            created = utcnow()
            kind = describe_kind(obj)

            def change(state: State) -> Commit:
                rec = VersionRecord(
                    version=state.next_version,
                    created=created,
                    kind=kind,
                    op="put",
                    attributes=dict(attributes or {}),
                    tag=tag,
                    lineage=lineage,
                    info=info,
                )
                self.describe_version(name, rec)  # the sidecar names the version it becomes
                return Commit(op="put", version=rec)

            state = self.commit(name, change, retry=True)
            return self.metadata_for(name, state.latest_record(), state.tags)
        except BaseException:
            self.storage.delete(written)
            raise

    def get(self, name: str, *, version: int | str | None = None, at: Any = None) -> Any:
        """Load the latest version, or the one ``name@v3``, ``name@tag`` or ``version=``
        selects (``at=``: as selected at that time). The payload is hashed as it is read and
        never unpickled on a mismatch."""
        import joblib

        meta = self._resolve(name, version, at)
        key = self.data_key(meta.name, meta.info["payload"])
        if self.storage.is_local and meta.info.get("size"):
            # map the file once: hash the mapping, then unpickle from the same mapping
            try:
                f = self.storage.open(key, "rb")  # a symlink is refused, never followed
            except FileNotFoundError:
                raise self._missing_payload(meta.name, meta.version, meta.info["payload"]) from None
            with f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                self.verify_payload(meta, len(mapped), hashlib.sha256(mapped).hexdigest())
                return joblib.load(mapped)
        return joblib.load(io.BytesIO(self.read_payload(meta)))

    def promote(self, name: str, other: ModelStore | str, **kwargs: Any) -> Metadata:
        """Copy one version of ``name`` to ``other`` (another bucket or context) as a new
        version there, recording where it came from; ``other`` may name a context of the
        config file (``"prod"``, ``"prod:bucket"``). See :func:`omfs.objects.promote.promote`."""
        from omfs.objects.promote import promote

        meta: Metadata = promote(self, name, other, **kwargs)
        return meta
