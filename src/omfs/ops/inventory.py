"""What each side of a sync holds, and what a validated log says its files must be.

:func:`inventory` reads one bucket of a storage from one recursive listing: per object its
commits, checkpoints, schemas, payloads, hint and index marker, keeping only files with
omfs' own names (a hostile store cannot make a sync write outside an object's folder).
:func:`expected_files` turns validated log records into what each payload, sidecar and
schema must be (size, sha256, content), which :meth:`Storage.copy_verified` checks as the
bytes travel. Sync, rebase and bundles share these.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from omfs.errors import InvalidNameError, OmfsError
from omfs.names import check_name
from omfs.objects.log import is_payload_file
from omfs.objects.stores import SIDECAR_STORES
from omfs.ops.common import STORES, store_of
from omfs.storage import Expected

if TYPE_CHECKING:
    from omfs.objects.log import ObjectLog, VersionRecord
    from omfs.storage import Storage

__all__ = [
    "CHECKPOINT",
    "COMMIT",
    "SCHEMA",
    "ObjectFiles",
    "common_commit",
    "expected_files",
    "inventory",
    "is_dropped",
    "is_sidecar",
    "listed",
    "listed_size",
    "same_commit",
    "source_log",
    "valid_name",
    "versions",
]

COMMIT = re.compile(r"(\d{20})\.json")
CHECKPOINT = re.compile(r"(\d{20})\.checkpoint\.json")
SCHEMA = re.compile(r"s-([0-9a-f]{32})\.schema")


@dataclass
class ObjectFiles:
    """What one side holds of one object: {file: size} of its log and payloads."""

    commits: dict[int, tuple[int, Any]] = field(default_factory=dict)  # seq -> (size, md5)
    checkpoints: dict[int, int] = field(default_factory=dict)
    schemas: dict[str, int] = field(default_factory=dict)
    data: dict[str, int] = field(default_factory=dict)
    hint: bool = False
    listed: bool = False
    adopting: bool = False  # the marker says a rebase is switching its log (adopt)

    @property
    def seq(self) -> int:
        return max(self.commits, default=0)


def inventory(storage: Storage, bucket: str) -> dict[tuple[str, str], ObjectFiles]:
    """Every object of ``bucket`` on ``storage`` from one recursive listing; files that do
    not match omfs' own patterns are ignored (never copied)."""
    objects: dict[tuple[str, str], ObjectFiles] = {}
    for key, size, md5 in storage.inventory(bucket):
        parts = key.split("/")
        if len(parts) < 4 or parts[0] != bucket or parts[1] not in STORES:
            continue
        store = parts[1]
        if parts[2] == "_index" and len(parts) == 4:
            name = parts[3].replace("~", "/")
            if valid_name(name):
                obj = objects.setdefault((store, name), ObjectFiles())
                obj.listed, obj.adopting = True, size > 0
            continue
        if len(parts) < 5 or parts[-2] not in ("_log", "_data"):
            continue
        name = "/".join(parts[2:-2])
        filename = parts[-1]
        if not valid_name(name):
            continue
        obj = objects.setdefault((store, name), ObjectFiles())
        if parts[-2] == "_data":
            if is_payload_file(filename) or is_sidecar(filename):
                obj.data[filename] = size
        elif match := COMMIT.fullmatch(filename):
            obj.commits[int(match.group(1))] = (size, md5)
        elif match := CHECKPOINT.fullmatch(filename):
            obj.checkpoints[int(match.group(1))] = size
        elif SCHEMA.fullmatch(filename):
            obj.schemas[filename] = size
        elif filename == "_last.json":
            obj.hint = True
    return objects


def valid_name(name: str) -> bool:
    """Whether ``name`` is an object name as the name rules write it."""
    try:
        return check_name(name) == name
    except InvalidNameError:
        return False


def is_sidecar(filename: str) -> bool:
    """Whether ``filename`` is a model's or job's payload JSON sidecar."""
    stem, _, ext = filename.partition(".")
    return ext == "json" and is_payload_file(f"{stem}.joblib")


def same_commit(
    source: Storage, target: Storage, key: str, a: tuple[int, Any], b: tuple[int, Any]
) -> bool:
    """Whether commit ``key`` is the same on both sides, from the listings where they
    tell (size, and the MD5 that object stores list), else by reading."""
    if a[0] != b[0]:
        return False
    if a[1] is not None and a[1] == b[1]:
        return True
    listed, local = (a[1], target) if a[1] is not None else (b[1], source)
    if listed is not None and local.is_local:
        digest = hashlib.md5(local.read_bytes(key), usedforsecurity=False).hexdigest()
        if digest == listed:
            return True
    # different or unknown digests (an ETag is not always an MD5): the bytes decide
    return bool(source.read_bytes(key) == target.read_bytes(key))


def common_commit(
    src: Storage, dst: Storage, prefix: str, have: ObjectFiles, want: ObjectFiles
) -> int:
    """The newest commit both sides hold byte for byte (0: none)."""
    for seq in sorted((s for s in want.commits if s in have.commits), reverse=True):
        key = f"{prefix}/_log/{seq:020d}.json"
        if same_commit(src, dst, key, have.commits[seq], want.commits[seq]):
            return seq
    return 0


def listed(obj: ObjectFiles, key: str) -> bool:
    """Whether the listing of ``obj`` holds the payload or schema ``key``."""
    folder, filename = key.rsplit("/", 2)[-2:]
    return filename in (obj.data if folder == "_data" else obj.schemas)


def listed_size(obj: ObjectFiles, key: str) -> int:
    """The listed size of the payload or schema ``key`` of ``obj`` (0: not listed)."""
    folder, filename = key.rsplit("/", 2)[-2:]
    return (obj.data if folder == "_data" else obj.schemas).get(filename, 0)


def expected_files(
    prefix: str, store: str, records: Sequence[VersionRecord]
) -> dict[str, Expected]:
    """What the validated ``records`` say of the files they name: each payload's size and
    sha256 (a dataset part written before omfs recorded its sha256: its size), a model's
    or job's payload sidecar, a dataset schema (named by its content's hash)."""
    out: dict[str, Expected] = {}
    for rec in records:
        info = rec.info
        if store in SIDECAR_STORES:
            payload = info.get("payload")
            if payload:
                key = f"{prefix}/_data/{payload}"
                out[key] = Expected(key, info["size"], info["sha256"])
                side = f"{prefix}/_data/{payload.rsplit('.', 1)[0]}.json"
                out[side] = Expected(side, check=_sidecar_check(info["size"], info["sha256"]))
            continue
        raw_sha = info.get("sha256") if rec.kind == "raw" else None
        for part in info.get("add") or []:
            key = f"{prefix}/_data/{part['file']}"
            out[key] = Expected(key, part["size"], part.get("sha256") or raw_sha)
        schema = info.get("schema")
        if schema:
            key = f"{prefix}/_log/s-{schema}.schema"
            out[key] = Expected(key, check=functools.partial(_schema_check, schema))
    return out


def _sidecar_check(size: int, sha256: str) -> Callable[[bytes], str | None]:
    def check(data: bytes) -> str | None:
        try:
            doc = json.loads(data)
        except ValueError:
            return "the model payload's sidecar is not JSON"
        if not isinstance(doc, dict) or doc.get("sha256") != sha256 or doc.get("size") != size:
            return "the model payload's sidecar does not match the log (size, sha256)"
        return None

    return check


def _schema_check(schema_id: str, data: bytes) -> str | None:
    if hashlib.sha256(data).hexdigest()[:32] != schema_id:
        return "the schema's content does not match its name"
    return None


def versions(storage: Storage, bucket: str, store: str, name: str) -> list[int]:
    """The live versions of ``name`` on one side ([] when it has none or its log fails)."""
    try:
        return [m.version for m in store_of(storage, bucket, store).versions(name)]
    except OmfsError:
        return []


def is_dropped(storage: Storage, bucket: str, store: str, name: str) -> bool:
    """True when the log of ``name`` ends with a drop (its tombstone)."""
    try:
        return bool(store_of(storage, bucket, store).object_log(name).head().deleted)
    except OmfsError:
        return False


def source_log(storage: Storage, bucket: str, store: str, name: str) -> ObjectLog:
    """The commit log of one object of the source, with its store's validation."""
    return store_of(storage, bucket, store).object_log(name)
