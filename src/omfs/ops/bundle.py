"""Bundles: objects with their whole history in one plain tar file, for air-gapped moves.

``export`` writes the named objects' log and payload files and a manifest (every file's
path, size and sha256). ``import_`` treats the bundle as hostile until proven otherwise:

- only a plain tar is opened (compressed ones are refused: decompress first), and only
  regular members with omfs' own file names are accepted: sparse members, links, devices,
  folders, absolute or ``..`` paths are refused before any byte is read;
- every member is read in chunks of :data:`CHUNK` bytes, never more than its declared size,
  so memory stays bounded whatever the bundle says; documents (the manifest, commits,
  checkpoints, schemas) are parsed whole, as a read does, and refused above
  :data:`MAX_DOCUMENT` bytes;
- each object's commits and checkpoints are parsed and validated by :mod:`omfs.objects.log`
  exactly as a read validates them, and each payload the object needs is checked while it
  streams against the size and sha256 that the validated log records (and the manifest);
- a payload the target already holds is never overwritten; commits are created with
  put-if-absent, so a target that moved on is reported as diverged and left unchanged;
- payloads are staged inside the target root (:data:`STAGING`, a folder listings, sync
  and fsck never look at) and placed under their final names only once checked; the
  staging folder is removed at the end, and what a killed import left there is removed by
  the next import or by ``gc``.

An object that fails a check is refused and left as it was; the others are imported, then
:class:`~omfs.errors.IntegrityError` names every refused object.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING

from omfs._util import atomic_path
from omfs.errors import IntegrityError, NotFoundError
from omfs.names import check_name
from omfs.ops.bundle_import import import_
from omfs.ops.bundle_read import BUNDLE_FORMAT, CHUNK, MANIFEST, MAX_DOCUMENT
from omfs.ops.common import STORES, Context, SyncError, is_context
from omfs.ops.reports import BundleFile, BundleManifest
from omfs.ops.staging import STAGING, clean_staging

if TYPE_CHECKING:
    from omfs.objects.versioned import VersionedStore
    from omfs.storage import Storage

__all__ = [
    "CHUNK",
    "MANIFEST",
    "MAX_DOCUMENT",
    "STAGING",
    "BundleManifest",
    "clean_staging",
    "export",
    "import_",
]


# -- export -------------------------------------------------------------------------------
def _objects_of(
    source: Context | VersionedStore, names: Sequence[str]
) -> list[tuple[Storage, str, str]]:
    """``(storage, bucket, store/name)`` of each name: ``NAME`` (a dataset or model of the
    context's bucket), ``datasets/NAME``, ``models/NAME`` or ``jobs/NAME``; a store takes
    plain names."""
    from omfs.objects.versioned import VersionedStore

    out = []
    for spec in names:
        stores: list[VersionedStore]
        if isinstance(source, VersionedStore):
            stores = [source]
            name = spec
        elif is_context(source):
            kind, _, rest = spec.partition("/")
            if kind in STORES and rest:
                stores, name = [getattr(source, kind)], rest
            else:
                stores, name = [source.datasets, source.models, source.jobs], spec
        else:
            raise SyncError(f"export takes a context or a store, got {source!r}")
        found = [s for s in stores if s.exists(name)]
        if not found:
            raise NotFoundError(
                f"Cannot export {spec!r}: no dataset, model or job of that name in bucket "
                f"{stores[0].bucket!r} of {stores[0].storage.url!r}"
            )
        if len(found) > 1:
            raise SyncError(
                f"{spec!r} names objects of several stores ({', '.join(s.kind for s in found)}):"
                f" say STORE/{spec}, e.g. {found[0].kind}/{spec}"
            )
        out.append((found[0].storage, found[0].bucket, f"{found[0].kind}/{check_name(name)}"))
    return out


class _Hashing:
    """A reader that hashes what passes through it (export streams members through it)."""

    def __init__(self, stream: IO[bytes]):
        self.stream = stream
        self.digest = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.stream.read(n)
        self.digest.update(data)
        self.size += len(data)
        return data


def _export_keys(storage: Storage, bucket: str, obj: str) -> list[str]:
    """The keys of one object: its log and payload files (no temporary ones), its marker."""
    store, name = obj.split("/", 1)
    keys = [
        key
        for key, _, _ in storage.inventory(f"{bucket}/{obj}")
        if key.split("/")[-2] in ("_log", "_data") and not key.rsplit("/", 1)[-1].startswith(".")
    ]
    keys.append(f"{bucket}/{store}/_index/{name.replace('/', '~')}")
    return sorted(keys)


def _refuse_symlink(storage: Storage, key: str) -> None:
    """A file of a local root that is a symlink is not exported (it may point anywhere)."""
    if storage.is_local and os.path.islink(storage.local(storage.path(key))):
        raise IntegrityError(
            f"{storage.path(key)!r} is a symbolic link, not a file omfs wrote; nothing was "
            "exported. Replace it with the file itself (or drop that version), then export."
        )


def export(
    source: Context | VersionedStore, names: Sequence[str], path: str | os.PathLike[str]
) -> BundleManifest:
    """Write the named objects (logs and payloads, whole history) to a plain tar file at
    ``path``, with a manifest of every file's size and sha256. Returns the manifest.

    Files stream into the tar in chunks; the tar appears at ``path`` only when complete."""
    objects = _objects_of(source, names)
    where = os.fspath(path)
    files: list[BundleFile] = []
    with atomic_path(where) as tmp, tarfile.open(tmp, "w:", format=tarfile.PAX_FORMAT) as tar:
        for storage, bucket, obj in objects:
            for key in _export_keys(storage, bucket, obj):
                _refuse_symlink(storage, key)
                info = tarfile.TarInfo(key)
                info.size = storage.size(key)
                with storage.open(key, "rb") as f:
                    reader = _Hashing(f)
                    tar.addfile(info, reader)
                files.append(
                    {"path": key, "size": reader.size, "sha256": reader.digest.hexdigest()}
                )
        manifest: BundleManifest = {
            "format": BUNDLE_FORMAT,
            "objects": [f"{bucket}/{obj}" for _, bucket, obj in objects],
            "files": files,
        }
        body = json.dumps(manifest, indent=1).encode()
        info = tarfile.TarInfo(MANIFEST)
        info.size = len(body)
        tar.addfile(info, _Hashing(_BytesReader(body)))  # type: ignore[arg-type]
    return manifest


class _BytesReader:
    """A reader of bytes in memory (the manifest goes into the tar through it)."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def read(self, n: int = -1) -> bytes:
        end = len(self.data) if n < 0 else self.pos + n
        out = self.data[self.pos : end]
        self.pos += len(out)
        return out
