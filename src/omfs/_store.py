"""What datasets and models share: versioned objects committed atomically under one prefix.

Layout of one object ``name`` in store ``kind`` (``datasets`` or ``models``)::

    {bucket}/{kind}/{name}/_versions/v000001.json   one sidecar per version: the commit
    {bucket}/{kind}/{name}/_data/<uuid>.<ext>         payload files, written before the commit
    {bucket}/{kind}/_index/{name with '/' as '~'}      empty marker: list() is one listing call

A write puts its payload under fresh names, then creates the next ``vNNNNNN.json`` with
put-if-absent semantics (:meth:`Storage.create`). Whoever creates it first wins; the loser
retries on top of the winner (appends, model puts) or fails with CommitConflictError and
removes its payload (replacing puts). Readers only follow sidecars, so a crash at any point
leaves the previous version readable. Version numbers are never reused while the object
exists: dropping one version leaves a small tombstone sidecar.
"""

from __future__ import annotations

import fnmatch
import random
import time
from collections.abc import Callable
from typing import Any

from omfs._names import check_bucket, check_name, split_selector
from omfs._storage import Storage
from omfs.errors import CommitConflictError, IntegrityError, NotFoundError
from omfs.metadata import Metadata, utcnow

__all__ = ["VersionedStore"]

_MAX_ATTEMPTS = 200
_VERSION_WIDTH = 6


def _version_file(version: int) -> str:
    return f"v{version:0{_VERSION_WIDTH}d}.json"


def _parse_version_file(filename: str) -> int | None:
    if filename.startswith("v") and filename.endswith(".json"):
        digits = filename[1:-5]
        if digits.isdigit():
            return int(digits)
    return None


class VersionedStore:
    """Base of DatasetStore and ModelStore: naming, listing, versions, commits, drop."""

    kind: str = ""  # "datasets" or "models", set by subclasses
    noun: str = ""  # "Dataset" or "Model", for messages

    def __init__(self, storage: Storage, bucket: str, context: Any = None):
        self.storage = storage
        self.bucket = check_bucket(bucket)
        self._context = context  # the Omega this store belongs to (for promotion, runtime)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.storage.url!r}, bucket={self.bucket!r})"

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is type(self)
            and self.storage == other.storage  # type: ignore[attr-defined]
            and self.bucket == other.bucket  # type: ignore[attr-defined]
        )

    def __hash__(self) -> int:
        return hash((type(self), self.storage.url, self.bucket))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.storage, self.bucket))

    # -- keys -----------------------------------------------------------------------------
    def _prefix(self, name: str) -> str:
        return f"{self.bucket}/{self.kind}/{name}"

    def _version_key(self, name: str, version: int) -> str:
        return f"{self._prefix(name)}/_versions/{_version_file(version)}"

    def _data_key(self, name: str, filename: str) -> str:
        return f"{self._prefix(name)}/_data/{filename}"

    def _index_key(self, name: str) -> str:
        return f"{self.bucket}/{self.kind}/_index/{name.replace('/', '~')}"

    def _where(self, name: str) -> str:
        noun = self.noun.lower()
        return f"{noun} {name!r} in bucket {self.bucket!r} of context {self.storage.url!r}"

    def _not_found(self, name: str, detail: str = "") -> NotFoundError:
        return NotFoundError(
            f"{self.noun} {name!r} does not exist{detail} in bucket {self.bucket!r} of context "
            f"{self.storage.url!r}. list() shows the {self.kind} there."
        )

    # -- reading versions -------------------------------------------------------------------
    def _version_numbers(self, name: str) -> list[int]:
        files = self.storage.list(f"{self._prefix(name)}/_versions")
        return sorted(v for v in map(_parse_version_file, files) if v is not None)

    def _read_version(self, name: str, version: int) -> Metadata:
        key = self._version_key(name, version)
        try:
            data = self.storage.read_bytes(key)
        except FileNotFoundError:
            raise self._not_found(name, f" at version {version}") from None
        return Metadata.from_json(data, where=self.storage.path(key))

    def _live(self, name: str, numbers: list[int] | None = None) -> list[Metadata]:
        """All live (not dropped) versions, oldest first."""
        numbers = self._version_numbers(name) if numbers is None else numbers
        metas = [self._read_version(name, v) for v in numbers]
        return [m for m in metas if not m.info.get("dropped")]

    def _latest(self, name: str, numbers: list[int] | None = None) -> Metadata | None:
        numbers = self._version_numbers(name) if numbers is None else numbers
        for v in reversed(numbers):
            meta = self._read_version(name, v)
            if not meta.info.get("dropped"):
                return meta
        return None

    def _resolve(self, spec: str, version: int | str | None = None) -> Metadata:
        """The metadata that ``spec`` (``name``, ``name@v3``, ``name@tag``) selects."""
        name, selector = split_selector(spec)
        if version is not None and selector is not None and version != selector:
            raise ValueError(
                f"{spec!r} selects a version and version={version!r} selects another; give only one"
            )
        selector = version if version is not None else selector
        if selector is None:
            meta = self._latest(name)
            if meta is None:
                raise self._not_found(name)
            return meta
        if isinstance(selector, int):
            meta = self._read_version(name, selector)
            if meta.info.get("dropped"):
                raise self._not_found(name, f" at version {selector} (it was dropped)")
            return meta
        tagged = [m for m in self._live(name) if m.tag == selector]
        if not tagged:
            raise self._not_found(name, f" with tag {selector!r}")
        return tagged[-1]

    # -- public reading API ----------------------------------------------------------------
    def list(self, pattern: str | None = None) -> list[str]:
        """Names in this bucket, sorted; ``pattern`` is a glob (``sales/*``, ``*2024*``)."""
        names = [
            f.replace("~", "/")
            for f in self.storage.list(f"{self.bucket}/{self.kind}/_index")
            if not f.startswith(".")
        ]
        if pattern is not None:
            names = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        return sorted(names)

    def exists(self, name: str) -> bool:
        """True when ``name`` (or the version it selects) exists."""
        try:
            self._resolve(name)
        except NotFoundError:
            return False
        return True

    def metadata(self, name: str, *, version: int | str | None = None) -> Metadata:
        """The metadata of the latest version, or of the one ``name@v3``/``version=`` selects."""
        return self._resolve(name, version)

    def versions(self, name: str) -> list[Metadata]:
        """Every live version of ``name``, oldest first."""
        name = check_name(name)
        metas = self._live(name)
        if not metas:
            raise self._not_found(name)
        return metas

    def update_attributes(
        self, name: str, attributes: dict[str, Any], *, version: int | None = None
    ) -> Metadata:
        """Merge ``attributes`` into one version's metadata without touching its payload.

        The change is recorded in the sidecar's ``history``.
        """
        meta = self._resolve(name, version)
        before = dict(meta.attributes)
        meta.attributes = {**meta.attributes, **attributes}
        meta.history.append(
            {"at": utcnow(), "op": "update-attributes", "before": before, "set": attributes}
        )
        self.storage.write_bytes(self._version_key(meta.name, meta.version), meta.to_json())
        return meta

    # -- writing ---------------------------------------------------------------------------
    def _commit(
        self,
        name: str,
        build: Callable[[Metadata | None], Metadata],
        *,
        retry: bool,
        expected: int | None = None,
    ) -> Metadata:
        """Create the next version from ``build(latest_live_or_None)``, atomically.

        ``expected`` is the version number the caller read before writing its payload; a
        non-retrying commit fails when another writer has moved past it.
        """
        self.storage.write_bytes(self._index_key(name), b"")
        for attempt in range(_MAX_ATTEMPTS):
            numbers = self._version_numbers(name)
            top = numbers[-1] if numbers else 0
            if not retry and expected is not None and top != expected:
                raise self._conflict(name, top)
            meta = build(self._latest(name, numbers))
            meta.version = top + 1
            try:
                self.storage.create(self._version_key(name, meta.version), meta.to_json())
                return meta
            except FileExistsError:
                if not retry:
                    raise self._conflict(name, top + 1) from None
                time.sleep(random.uniform(0.001, 0.01) * min(attempt + 1, 20))
        raise CommitConflictError(
            f"Gave up committing {self._where(name)} after {_MAX_ATTEMPTS} attempts: other "
            "writers kept committing first. Nothing of this write became visible; try again."
        )

    def _conflict(self, name: str, version: int) -> CommitConflictError:
        return CommitConflictError(
            f"Another writer committed version {version} of {self._where(name)} while this "
            "write was running. Nothing of this write became visible; read the new version "
            "and write again."
        )

    def _forget_if_empty(self, name: str) -> None:
        """After a failed first write: remove the listing marker if no version exists."""
        if not self._version_numbers(name):
            self.storage.delete([self._index_key(name)])

    def drop(self, name: str, *, force: bool = False) -> bool:
        """Delete ``name`` with all its versions, or one version with ``name@v3``.

        Raises NotFoundError when it does not exist, unless ``force=True``; returns whether
        something was dropped.
        """
        base, selector = split_selector(name)
        try:
            if selector is not None:
                self._drop_version(self._resolve(name))
                return True
            numbers = self._version_numbers(base)
            if not numbers:
                raise self._not_found(base)
        except NotFoundError:
            if force:
                self._forget_if_empty(base)
                return False
            raise
        # oldest sidecars first: until the last one goes, readers still see the latest version
        self.storage.delete([self._version_key(base, v) for v in numbers[:-1]])
        self.storage.delete([self._version_key(base, numbers[-1])])
        self.storage.delete([self._index_key(base)])
        self.storage.delete_tree(f"{self._prefix(base)}/_data")
        self.storage.delete_tree(f"{self._prefix(base)}/_versions")
        return True

    def _drop_version(self, meta: Metadata) -> None:
        """Replace one version's sidecar by a tombstone, then delete its unshared payload."""
        live = [m for m in self._live(meta.name) if m.version != meta.version]
        tomb = Metadata(
            name=meta.name,
            bucket=meta.bucket,
            store=meta.store,
            kind=meta.kind,
            version=meta.version,
            context=meta.context,
            info={"dropped": True, "dropped_at": utcnow()},
        )
        self.storage.write_bytes(self._version_key(meta.name, meta.version), tomb.to_json())
        still_used = {f for m in live for f in self._payload_files(m)}
        self.storage.delete(
            self._data_key(meta.name, f) for f in self._payload_files(meta) if f not in still_used
        )
        if not live:
            self.storage.delete([self._index_key(meta.name)])

    def _payload_files(self, meta: Metadata) -> list[str]:
        """File names under ``_data/`` that ``meta`` refers to."""
        return list(self._payload_sizes(meta))

    def _payload_sizes(self, meta: Metadata) -> dict[str, int]:
        """Each file under ``_data/`` that ``meta`` refers to, with its size in bytes."""
        raise NotImplementedError

    def _renamed_payload(self, info: dict[str, Any], renamed: dict[str, str]) -> dict[str, Any]:
        """``info`` with its payload file names replaced per ``renamed`` (for copies)."""
        raise NotImplementedError

    def _check_payload_present(self, meta: Metadata, filename: str) -> str:
        key = self._data_key(meta.name, filename)
        if not self.storage.exists(key):
            raise IntegrityError(
                f"The payload {filename!r} of {self._where(meta.name)} version {meta.version} "
                "is missing. The version's sidecar refers to a file that was deleted outside "
                "omfs; drop that version or restore the file."
            )
        return key
