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
- each object's commits and checkpoints are parsed and validated by :mod:`omfs._log`
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

import contextlib
import hashlib
import json
import os
import re
import socket
import tarfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from omfs import _lease
from omfs._log import (
    CHECKPOINT_INTERVAL,
    ObjectLog,
    State,
    _dumps,
    checkpoint_file,
    commit_file,
    is_payload_file,
)
from omfs._log import (
    FORMAT as LOG_FORMAT,
)
from omfs._names import check_bucket, check_name
from omfs.errors import FormatError, IntegrityError, InvalidNameError, NotFoundError, OmfsError

__all__ = ["CHUNK", "MAX_DOCUMENT", "STAGING", "clean_staging", "export", "import_"]

MANIFEST = "omfs-bundle.json"
BUNDLE_FORMAT = 1
#: Members are read and written in pieces of this many bytes.
CHUNK = 1 << 20
#: The largest manifest, commit, checkpoint or schema an import parses.
MAX_DOCUMENT = 32 << 20
#: The folder of the target root where imports stage payloads (hidden from every listing).
STAGING = ".omfs-import"
_OWNER = "_owner.json"
_STORES = ("datasets", "models")
_COMMIT = re.compile(r"(\d{20})\.json")
_CHECKPOINT = re.compile(r"(\d{20})\.checkpoint\.json")
_SCHEMA = re.compile(r"s-([0-9a-f]{32})\.schema")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_MAX_SIDECAR = 1 << 20
#: Leftovers of an import on another machine are removed once untouched for this long.
_FOREIGN_STAGING_AGE = 24 * 3600
_COMPRESSED = (
    (b"\x1f\x8b", "gzip", "gunzip"),
    (b"BZh", "bzip2", "bunzip2"),
    (b"\xfd7zXZ\x00", "xz", "unxz"),
    (b"\x28\xb5\x2f\xfd", "zstd", "unzstd"),
)


# -- export -------------------------------------------------------------------------------
def _objects_of(source: Any, names: Sequence[str]) -> list[tuple[Any, str, str]]:
    """``(storage, bucket, store/name)`` of each name: ``NAME`` (a dataset or model of the
    context's bucket), ``datasets/NAME`` or ``models/NAME``; a store takes plain names."""
    from omfs._store import VersionedStore
    from omfs.context import Omega
    from omfs.replication import SyncError

    out = []
    for spec in names:
        if isinstance(source, VersionedStore):
            stores = [source]
            name = spec
        elif isinstance(source, Omega):
            kind, _, rest = spec.partition("/")
            if kind in _STORES and rest:
                stores, name = [getattr(source, kind)], rest
            else:
                stores, name = [source.datasets, source.models], spec
        else:
            raise SyncError(f"export takes a context or a store, got {source!r}")
        found = [s for s in stores if s.exists(name)]
        if not found:
            raise NotFoundError(
                f"Cannot export {spec!r}: no dataset or model of that name in bucket "
                f"{stores[0].bucket!r} of {stores[0].storage.url!r}"
            )
        if len(found) > 1:
            raise SyncError(
                f"{spec!r} is both a dataset and a model: say datasets/{spec} or models/{spec}"
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


def _export_keys(storage: Any, bucket: str, obj: str) -> list[str]:
    store, name = obj.split("/", 1)
    keys = [
        key
        for key, _, _ in storage.inventory(f"{bucket}/{obj}")
        if key.split("/")[-2] in ("_log", "_data") and not key.rsplit("/", 1)[-1].startswith(".")
    ]
    keys.append(f"{bucket}/{store}/_index/{name.replace('/', '~')}")
    return sorted(keys)


def _refuse_symlink(storage: Any, key: str) -> None:
    """A file of a local root that is a symlink is not exported (it may point anywhere)."""
    if storage.is_local and os.path.islink(storage.local(storage.path(key))):
        raise IntegrityError(
            f"{storage.path(key)!r} is a symbolic link, not a file omfs wrote; nothing was "
            "exported. Replace it with the file itself (or drop that version), then export."
        )


def export(source: Any, names: Sequence[str], path: Any) -> dict[str, Any]:
    """Write the named objects (logs and payloads, whole history) to a plain tar file at
    ``path``, with a manifest of every file's size and sha256. Returns the manifest.

    Files stream into the tar in chunks; the tar appears at ``path`` only when complete."""
    from omfs._storage import unique_name

    objects = _objects_of(source, names)
    where = os.fspath(path)
    tmp = os.path.join(os.path.dirname(os.path.abspath(where)), f".{unique_name('.tar')}")
    files = []
    try:
        with tarfile.open(tmp, "w:", format=tarfile.PAX_FORMAT) as tar:
            for storage, bucket, obj in objects:
                for key in _export_keys(storage, bucket, obj):
                    _refuse_symlink(storage, key)
                    info = tarfile.TarInfo(key)
                    info.size = storage.size(key)
                    with storage.open(key, "rb") as f:
                        reader = _Hashing(f)
                        tar.addfile(info, reader)  # type: ignore[arg-type]
                    files.append(
                        {"path": key, "size": reader.size, "sha256": reader.digest.hexdigest()}
                    )
            manifest = {
                "format": BUNDLE_FORMAT,
                "objects": [f"{bucket}/{obj}" for _, bucket, obj in objects],
                "files": files,
            }
            body = json.dumps(manifest, indent=1).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size = len(body)
            tar.addfile(info, _Hashing(_BytesReader(body)))  # type: ignore[arg-type]
        os.replace(tmp, where)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return manifest


class _BytesReader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def read(self, n: int = -1) -> bytes:
        end = len(self.data) if n < 0 else self.pos + n
        out = self.data[self.pos : end]
        self.pos += len(out)
        return out


# -- reading a bundle ---------------------------------------------------------------------
@dataclass
class _Member:
    """One file of the bundle: where its bytes start in the tar, and what the manifest says."""

    path: str
    size: int
    sha256: str
    offset: int = -1


@dataclass
class _Bundle:
    where: str
    objects: list[tuple[str, str, str]]  # (bucket, store, name)
    files: dict[str, _Member] = field(default_factory=dict)
    owned: dict[tuple[str, str, str], list[str]] = field(default_factory=dict)

    def of(self, bucket: str, store: str, name: str) -> dict[str, _Member]:
        """The files of one object: its own folder and its index marker."""
        return {p: self.files[p] for p in self.owned.get((bucket, store, name), [])}

    def chunks(self, member: _Member, limit: int | None = None) -> Iterator[bytes]:
        """The bytes of ``member`` in chunks, never more than its declared size, checked
        against the manifest's sha256 at the end (IntegrityError naming the member)."""
        if limit is not None and member.size > limit:
            raise IntegrityError(
                f"{self.where}: the member {member.path} declares {member.size:,} bytes, more "
                f"than omfs reads for such a file ({limit:,}); the bundle was not made by om "
                "export"
            )
        digest = hashlib.sha256()
        remaining = member.size
        with open(self.where, "rb") as f:
            f.seek(member.offset)
            while remaining:
                chunk = f.read(min(CHUNK, remaining))
                if not chunk:
                    raise IntegrityError(
                        f"{self.where}: the member {member.path} is cut short (the bundle is "
                        "truncated)"
                    )
                remaining -= len(chunk)
                digest.update(chunk)
                yield chunk
        if digest.hexdigest() != member.sha256:
            raise IntegrityError(
                f"{self.where}: the member {member.path} does not match its sha256 in the "
                "manifest (the bundle is damaged)"
            )

    def read(self, path: str) -> bytes:
        member = self.files.get(path)
        if member is None:
            raise FileNotFoundError(path)
        return b"".join(self.chunks(member, MAX_DOCUMENT))


def _bad(where: str, why: str) -> IntegrityError:
    return IntegrityError(
        f"{where} is not a usable omfs bundle: {why}; nothing was imported. `om import` takes "
        "a plain tar written by `om export`."
    )


def _sniff(where: str) -> None:
    """Refuse a missing path, a folder, or a compressed file, before tarfile sees it."""
    try:
        with open(where, "rb") as f:
            head = f.read(8)
    except FileNotFoundError:
        raise NotFoundError(f"No bundle at {where!r}: the file does not exist") from None
    except IsADirectoryError:
        raise _bad(where, "it is a folder") from None
    for magic, kind, tool in _COMPRESSED:
        if head.startswith(magic):
            raise _bad(
                where,
                f"it is {kind}-compressed, and omfs opens plain tar files only (a compressed "
                f"member can expand without bound). Decompress it first (e.g. `{tool}`) if "
                "you trust where it came from",
            )


def _check_member(where: str, member: tarfile.TarInfo) -> None:
    """Only regular files with omfs' own paths: no sparse members, links, devices, folders."""
    if member.issparse():
        what = "a sparse file"
    elif member.issym() or member.islnk():
        what = "a link"
    elif member.isdir():
        what = "a folder"
    elif not member.isreg():
        what = "a device or other special file"
    elif member.name != MANIFEST and not _bundle_path_ok(member.name):
        what = "not an omfs file"
    else:
        return
    raise _bad(where, f"the member {member.name[:200]!r} is {what}")


def _members(where: str) -> Iterator[tarfile.TarInfo]:
    """The members' headers, one at a time (tarfile keeps none of them)."""
    try:
        with tarfile.open(where, "r:") as tar:
            while True:
                member = tar.next()
                if member is None:
                    return
                tar.members.clear()  # iterate in constant memory
                yield member
    except (tarfile.TarError, EOFError) as exc:
        raise _bad(where, f"it is not a readable tar file ({exc})") from None


def _open_bundle(where: str) -> _Bundle:
    """Read the manifest and check every member against it, before any byte is imported."""
    _sniff(where)
    manifest: _Member | None = None
    for member in _members(where):
        if member.name == MANIFEST:
            _check_member(where, member)
            manifest = _Member(MANIFEST, member.size, "", member.offset_data)
    if manifest is None:
        raise _bad(where, f"it holds no {MANIFEST}")
    if manifest.size > MAX_DOCUMENT:
        raise _bad(where, f"its manifest declares {manifest.size:,} bytes")
    with open(where, "rb") as f:
        f.seek(manifest.offset)
        try:
            doc = json.loads(f.read(manifest.size))
        except ValueError as exc:
            raise _bad(where, f"its manifest is not JSON ({exc})") from None
    bundle = _parse_manifest(where, doc)
    seen: set[str] = set()
    for member in _members(where):
        _check_member(where, member)
        if member.name == MANIFEST:
            continue
        entry = bundle.files.get(member.name)
        if entry is None:
            raise _bad(where, f"the member {member.name!r} is not an omfs file of the manifest")
        if member.name in seen:
            raise _bad(where, f"the member {member.name!r} appears twice")
        if member.size != entry.size:
            raise _bad(
                where,
                f"the member {member.name} has {member.size:,} bytes, the manifest says "
                f"{entry.size:,}",
            )
        seen.add(member.name)
        entry.offset = member.offset_data
    missing = sorted(set(bundle.files) - seen)
    if missing:
        raise _bad(where, f"files of the manifest are missing: {missing[:3]}")
    return bundle


def _parse_manifest(where: str, doc: Any) -> _Bundle:
    """The manifest, every field checked (a clear refusal, never a KeyError/IndexError)."""
    if not isinstance(doc, dict):
        raise _bad(where, "its manifest is not a JSON object")
    fmt = doc.get("format")
    if fmt != BUNDLE_FORMAT:
        if type(fmt) is int and fmt > BUNDLE_FORMAT:
            raise FormatError(
                f"{where} was written in bundle format {fmt} by a newer omfs; this omfs "
                f"reads bundle format {BUNDLE_FORMAT}. Upgrade omfs to import it."
            )
        raise FormatError(
            f"{where} says bundle format {str(fmt)[:40]!r}, which omfs does not know (it "
            f"writes format {BUNDLE_FORMAT}); nothing was imported."
        )
    objects, files = doc.get("objects"), doc.get("files")
    if not isinstance(objects, list) or not isinstance(files, list):
        raise _bad(where, "its manifest lacks the lists 'objects' and 'files'")
    bundle = _Bundle(where, [])
    for item in objects:
        parts = item.split("/", 2) if isinstance(item, str) else []
        if len(parts) != 3 or not _bucket_ok(parts[0]) or parts[1] not in _STORES:
            raise _bad(where, f"its manifest names the object {str(item)[:80]!r}, not "
                       "'bucket/datasets|models/name'")  # fmt: skip
        if not _valid_name(parts[2]):
            raise _bad(where, f"its manifest names the object {item[:80]!r}, an invalid name")
        if tuple(parts) in bundle.objects:
            raise _bad(where, f"its manifest names {item!r} twice")
        bundle.objects.append((parts[0], parts[1], parts[2]))
    for entry in files:
        if not isinstance(entry, dict):
            raise _bad(where, "an entry of its manifest's files is not a JSON object")
        path, size, sha = entry.get("path"), entry.get("size"), entry.get("sha256")
        if not isinstance(path, str) or not _bundle_path_ok(path):
            raise _bad(where, f"its manifest lists {str(path)[:80]!r}, not an omfs file")
        if (
            type(size) is not int
            or size < 0
            or not isinstance(sha, str)
            or not _SHA256.fullmatch(sha)
        ):
            raise _bad(where, f"its manifest gives {path} no valid size and sha256")
        if path in bundle.files:
            raise _bad(where, f"its manifest lists {path} twice")
        bundle.files[path] = _Member(path, size, sha)
    for path in bundle.files:
        owner = _owner_of(path)
        if owner not in bundle.objects:
            raise _bad(where, f"its manifest lists {path}, a file of no object it names")
        bundle.owned.setdefault(owner, []).append(path)
    return bundle


def _owner_of(path: str) -> tuple[str, str, str]:
    """The object a (valid) bundle path belongs to."""
    parts = path.split("/")
    if parts[2] == "_index":
        return parts[0], parts[1], parts[3].replace("~", "/")
    return parts[0], parts[1], "/".join(parts[2:-2])


def _bucket_ok(bucket: str) -> bool:
    try:
        check_bucket(bucket)
    except InvalidNameError:
        return False
    return True


def _valid_name(name: str) -> bool:
    try:
        return check_name(name) == name
    except InvalidNameError:
        return False


def _is_sidecar(filename: str) -> bool:
    stem, _, ext = filename.partition(".")
    return ext == "json" and is_payload_file(f"{stem}.joblib")


def _bundle_path_ok(path: str) -> bool:
    """``bucket/store/name.../_log|_data/file`` or ``bucket/store/_index/name``."""
    parts = path.split("/")
    if len(parts) < 4 or parts[1] not in _STORES or not _bucket_ok(parts[0]):
        return False
    if parts[2] == "_index":
        return len(parts) == 4 and _valid_name(parts[3].replace("~", "/"))
    if len(parts) < 5 or not _valid_name("/".join(parts[2:-2])):
        return False
    folder, filename = parts[-2], parts[-1]
    if folder == "_data":
        return is_payload_file(filename) or _is_sidecar(filename)
    return folder == "_log" and bool(
        _COMMIT.fullmatch(filename)
        or _CHECKPOINT.fullmatch(filename)
        or _SCHEMA.fullmatch(filename)
        or filename == "_last.json"
    )


class _BundleFiles:
    """The bundle seen as a read-only storage, so that :class:`ObjectLog` reads and
    validates its documents exactly as it reads a store's."""

    is_local = True

    def __init__(self, bundle: _Bundle):
        self.bundle = bundle
        self.url = f"bundle:{os.path.abspath(bundle.where)}"

    def read_bytes(self, key: str) -> bytes:
        return self.bundle.read(key)

    def path(self, key: str) -> str:
        return f"{self.bundle.where}:{key}"


# -- import -------------------------------------------------------------------------------
class _Refused(Exception):
    """One object of the bundle that fails a check: it is left out, the others go on."""


@dataclass
class _Plan:
    """What one object of the bundle holds, validated as a read validates it (what it needs
    of the target is known once it is replayed on the target's state: see ``_checked``)."""

    source: tuple[str, str, str]
    bucket: str  # the target bucket
    commits: list[int]
    checkpoints: list[int]
    marker: bool
    log: ObjectLog  # the bundle's log of it (errors name its members)
    parsed: dict[int, Any] = field(default_factory=dict)  # seq -> the validated commit
    states: dict[int, State] = field(default_factory=dict)  # seq -> the validated checkpoint
    members: dict[str, _Member] = field(default_factory=dict)  # its members by path
    schema_members: dict[str, _Member] = field(default_factory=dict)  # schema id -> member


def import_(
    path: Any,
    target: Any,
    *,
    bucket: str | None = None,
    create_bucket: bool = False,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Import a bundle written by :func:`export` into ``target`` (a context or a context
    name) with the rules of :func:`omfs.sync`: history kept, a target that diverged is
    reported and left alone.

    ``bucket``: import every object into that bucket (default: each into the bucket it was
    exported from). A target bucket that does not exist in a context that has others is
    refused unless ``create_bucket=True``. Everything is checked before it reaches the
    target (see :mod:`omfs.bundle`); an object that fails is left out and, once the others
    are imported, an IntegrityError names it (its ``report`` attribute holds the report).
    """
    from omfs.replication import _resolve

    dst = _resolve(target)
    where = os.fspath(path)
    bundle = _open_bundle(where)
    targets = _target_buckets(bundle, dst, bucket, create_bucket, where)
    rows: list[dict[str, Any]] = []
    if not dry_run:
        clean_staging(dst.storage)
    with _Staging(dst.storage, enabled=not dry_run) as stage:
        for obj in bundle.objects:
            with _lease.scope():  # a gc lease on the object while it is written, until done
                rows.append(_import_object(bundle, obj, targets[obj], dst, stage, dry_run))
    report = {
        "source": where,
        "target": dst.root,
        "dry_run": dry_run,
        "objects": rows,
        **{k: sum(r["action"] == k for r in rows) for k in ("unchanged", "diverged", "refused")},
        "copied": sum(r["action"] == "copy" for r in rows),
        "bytes": sum(r["bytes"] for r in rows),
    }
    refused = [r for r in rows if r["action"] == "refused"]
    if refused:
        done = len(rows) - len(refused)
        error = IntegrityError(
            f"{len(refused)} object(s) of {where} were refused and left unchanged in the "
            f"target ({done} other(s) imported): "
            + "; ".join(f"{r['bucket']}/{r['store']}/{r['name']}: {r['problem']}" for r in refused)
        )
        error.report = report  # type: ignore[attr-defined]
        raise error
    return report


def _target_buckets(
    bundle: _Bundle, dst: Any, bucket: str | None, create_bucket: bool, where: str
) -> dict[tuple[str, str, str], str]:
    """Each object's target bucket; refuses a missing bucket (unless ``create_bucket``) and
    two objects of the bundle that would land on one name."""
    from omfs._store import bucket_problem

    chosen = check_bucket(bucket) if bucket is not None else None
    targets = {obj: chosen or obj[0] for obj in bundle.objects}
    landing: dict[tuple[str, str, str], tuple[str, str, str]] = {}
    for obj, tb in targets.items():
        other = landing.setdefault((tb, obj[1], obj[2]), obj)
        if other != obj:
            raise OmfsError(
                f"Cannot import {where} into bucket {tb!r}: it holds {obj[1]}/{obj[2]} of "
                f"buckets {other[0]!r} and {obj[0]!r}, which would land on one object. Import "
                "without bucket= (each keeps its bucket)."
            )
    if not create_bucket:
        for tb in sorted(set(targets.values())):
            problem = bucket_problem(dst.storage, tb, creating=True)
            if problem:
                named = sorted({o[0] for o in bundle.objects})
                raise NotFoundError(
                    f"Cannot import {where} (objects of bucket(s) {', '.join(named)}): "
                    f"{problem.replace('; writing creates a new bucket', '')} Pass "
                    "create_bucket=True to create it, or bucket= to import into another."
                )
    return targets


def _row(obj: tuple[str, str, str], tb: str) -> dict[str, Any]:
    row: dict[str, Any] = {"bucket": tb, "store": obj[1], "name": obj[2], "bytes": 0, "files": 0}
    if tb != obj[0]:
        row["from_bucket"] = obj[0]
    return row


def _import_object(
    bundle: _Bundle, obj: tuple[str, str, str], tb: str, dst: Any, stage: _Staging, dry_run: bool
) -> dict[str, Any]:
    row = _row(obj, tb)
    try:
        plan = _validate(bundle, obj, tb, dst)
        _apply(bundle, plan, dst, stage, dry_run, row)
    except (_Refused, OmfsError) as exc:
        if isinstance(exc, OmfsError) and not isinstance(exc, IntegrityError):
            raise  # the target itself failed (storage down, no access): not the bundle's fault
        row.update(action="refused", problem=" ".join(str(exc).split()))
    return row


def _validate(bundle: _Bundle, obj: tuple[str, str, str], tb: str, dst: Any) -> _Plan:
    """Parse and validate one object of the bundle as a read would; what it needs."""
    sbucket, kind, name = obj
    store = getattr(dst[tb], kind)
    files = bundle.of(*obj)
    identity = {"store": kind, "bucket": sbucket, "name": name}
    prefix = f"{sbucket}/{kind}/{name}"
    log = ObjectLog(_BundleFiles(bundle), prefix, identity, store.validate_info)  # type: ignore[arg-type]
    commits, checkpoints, schemas = [], [], {}
    for path, member in files.items():
        filename = path.rsplit("/", 1)[-1]
        if match := _COMMIT.fullmatch(filename):
            commits.append(int(match.group(1)))
        elif match := _CHECKPOINT.fullmatch(filename):
            checkpoints.append(int(match.group(1)))
        elif match := _SCHEMA.fullmatch(filename):
            schemas[match.group(1)] = member
    if not commits:
        raise _Refused("the bundle holds no commit of it")
    commits.sort()
    # parsed and validated: IntegrityError naming the member
    parsed = {seq: log._commit_at(seq) for seq in commits}
    states = {
        seq: log._load_parsed(
            log.key(checkpoint_file(seq)), lambda d, seq=seq: log._parse_checkpoint(d, seq)
        )
        for seq in sorted(checkpoints)
    }
    for schema_id in schemas:
        log.read_schema(schema_id)  # content-addressed: checks its content against its name
    head = log.head()
    if head.seq != commits[-1]:
        raise _Refused(f"commit {head.seq + 1} is missing from the bundle")
    if not log.full(head).exists:
        raise _Refused("the bundle holds it dropped")
    # what it needs of the target is known once it is replayed on the target's state
    return _Plan(
        source=obj,
        bucket=tb,
        commits=commits,
        checkpoints=sorted(checkpoints),
        marker=f"{sbucket}/{kind}/_index/{name.replace('/', '~')}" in files,
        log=log,
        parsed=parsed,  # type: ignore[arg-type]
        states=states,
        members=files,
        schema_members=schemas,
    )


def _needed(
    bundle: _Bundle, store: Any, prefix: str, state: State, files: dict[str, _Member]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every payload a live version reads, with the size and sha256 the log records; the
    manifest's entry for it must agree (the member's bytes are checked as they stream)."""
    expected: dict[str, tuple[int, str | None]] = {}
    sidecars: dict[str, tuple[_Member | None, str]] = {}
    for rec in state.live():
        for filename, size, sha in _recorded(store, state, rec):
            if expected.setdefault(filename, (size, sha)) != (size, sha):
                raise _Refused(f"its log records two sizes or hashes for {filename}")
        if store.kind == "models":
            side = _sidecar_of(rec.info["payload"])
            sidecars[side] = (files.get(f"{prefix}/_data/{side}"), rec.info["sha256"])
    payloads: dict[str, tuple[_Member | None, str | None]] = {}
    for filename, (size, sha) in sorted(expected.items()):
        member = files.get(f"{prefix}/_data/{filename}")
        if member is not None and (
            member.size != size or (sha is not None and member.sha256 != sha)
        ):
            raise _Refused(
                f"the member {member.path} of {bundle.where} does not match what the bundle's "
                f"log records for it (size {size:,}"
                + (f", sha256 {sha[:12]}…" if sha else "")
                + f"; the member has {member.size:,} bytes, sha256 {member.sha256[:12]}…)"
            )
        payloads[filename] = (member, sha)
    return payloads, sidecars


def _recorded(store: Any, state: State, rec: Any) -> list[tuple[str, int, str | None]]:
    """``(file, size, sha256 or None)`` of each payload version ``rec`` reads, as the
    validated records say (a raw file's record holds its sha256; a part holds one where its
    writer recorded it)."""
    info = rec.info
    if store.kind == "models":
        return [(info["payload"], info["size"], info["sha256"])]
    try:
        parts = store._parts_of("", state, rec)
    except IntegrityError as exc:
        raise _Refused(str(exc)) from None
    raw = rec.kind == "raw" and len(parts) == 1
    return [
        (p["file"], p["size"], p.get("sha256") or (info.get("sha256") if raw else None))
        for p in parts
    ]


def _sidecar_of(payload: str) -> str:
    return f"{payload.split('.', 1)[0]}.json"


def _apply(
    bundle: _Bundle, plan: _Plan, dst: Any, stage: _Staging, dry_run: bool, row: dict[str, Any]
) -> None:
    """Fast-forward the target to the bundle's history, or report it diverged."""
    sbucket, kind, name = plan.source
    storage = dst.storage
    src_prefix = f"{sbucket}/{kind}/{name}"
    prefix = f"{plan.bucket}/{kind}/{name}"
    have: dict[str, int] = {}
    target_commits: list[int] = []
    for key, size, _ in storage.inventory(prefix):
        rest = key[len(prefix) + 1 :]
        if rest.count("/") == 1 and not rest.rsplit("/", 1)[-1].startswith("."):
            have[rest] = size
            if match := _COMMIT.fullmatch(rest.removeprefix("_log/")):
                target_commits.append(int(match.group(1)))
    marker = f"{plan.bucket}/{kind}/_index/{name.replace('/', '~')}"
    listed = storage.exists(marker)
    tip = max(target_commits, default=0)
    row.update(source_commits=plan.commits[-1], target_commits=tip)

    def commit_bytes(seq: int, filename: str) -> bytes:
        return _rebucket(bundle.read(f"{src_prefix}/_log/{filename}"), plan.bucket)

    if tip and (tip not in plan.commits or commit_bytes(tip, commit_file(tip)) != (
        storage.read_bytes(f"{prefix}/_log/{commit_file(tip)}")
    )):  # fmt: skip
        row["action"] = "diverged"
        return
    new_commits = [s for s in plan.commits if s > tip]
    # the bundle's commits after the shared tip, replayed on the target's own state there:
    # a head or a checkpoint that contradicts it refuses the object (see ObjectLog.replay)
    final, good = _checked(plan, dst, tip, have)
    store = getattr(dst[plan.bucket], kind)
    needed, needed_sidecars = _needed(bundle, store, src_prefix, final, plan.members)
    needed_schemas = {
        sid: plan.schema_members.get(sid)
        for rec in final.live()
        if isinstance(sid := rec.info.get("schema"), str)
    }
    payloads = {f: v for f, v in needed.items() if f"_data/{f}" not in have}
    sidecars = {f: v for f, v in needed_sidecars.items() if f"_data/{f}" not in have}
    schemas = {s: m for s, m in needed_schemas.items() if f"_log/s-{s}.schema" not in have}
    for filename, (member, _) in {**payloads, **sidecars}.items():
        if member is None:
            raise _Refused(
                f"the payload {filename} is missing from the bundle (the log names it, the "
                "target has no copy)"
            )
    for sid, member in schemas.items():
        if member is None:
            raise _Refused(f"the schema s-{sid}.schema is missing from the bundle")
    newest = plan.commits[-1]
    checkpoints = [s for s in sorted(good) if s > tip or f"_log/{checkpoint_file(s)}" not in have]
    if not (new_commits or payloads or sidecars or schemas or checkpoints or not listed):
        row["action"] = "unchanged"
        return
    row["action"] = "copy"
    row["files"] = len(new_commits) + len(payloads) + len(sidecars) + len(schemas)
    row["bytes"] = sum(m.size for m, _ in payloads.values())
    if dry_run:
        return
    # payloads and schemas first (checked as they stream), then the commits in order, then
    # the index marker: readers see the old history or the new one
    # the object's files are all staged and checked before the first one is placed
    placed = []
    for filename, (member, sha) in sorted(payloads.items()):
        placed.append((stage.stage(bundle, member, sha), f"{prefix}/_data/{filename}"))
    for filename, (member, sha) in sorted(sidecars.items()):
        _check_sidecar(bundle, member, sha)
        placed.append((stage.stage(bundle, member, None), f"{prefix}/_data/{filename}"))
    for sid, member in sorted(schemas.items()):
        placed.append((stage.stage(bundle, member, None), f"{prefix}/_log/s-{sid}.schema"))
    where = f"{kind[:-1]} {name!r} in bucket {plan.bucket!r} of context {storage.url!r}"
    _lease.take(storage, plan.bucket, kind, name, where)  # gc keeps off what it places
    for staged, key in placed:
        _put_if_absent(storage, staged, key)
    # a checkpoint the target holds after its tip was left by a killed restore: never read
    stale = [f"{prefix}/_log/{checkpoint_file(c)}" for c in _checkpoints_of(have) if c > tip]
    if stale:
        storage.delete(stale)
    _lease.check_held(storage, plan.bucket, kind, name)  # else gc may have removed them
    for seq in new_commits:
        try:
            storage.create(f"{prefix}/_log/{commit_file(seq)}", commit_bytes(seq, commit_file(seq)))
        except FileExistsError:
            row["action"] = "diverged"  # another writer committed meanwhile: a prefix landed
            return
    if not listed:
        storage.write_bytes(marker, b"")
    for seq in checkpoints:
        with contextlib.suppress(FileExistsError):
            storage.create(
                f"{prefix}/_log/{checkpoint_file(seq)}", commit_bytes(seq, checkpoint_file(seq))
            )
    hint = {"format": LOG_FORMAT, "store": kind, "bucket": plan.bucket, "name": name,
            "seq": newest, "checkpoint": _hint_checkpoint(final, good, have, tip)}  # fmt: skip
    storage.write_bytes(f"{prefix}/_log/_last.json", _dumps(hint))


def _checked(plan: _Plan, dst: Any, tip: int, have: dict[str, int]) -> tuple[State, dict]:
    """The object's complete state after the bundle's commits, replayed on the target's
    state at ``tip`` with every head and checkpoint checked, and the checkpoints to place."""
    from omfs.replication import _checked_history, _shared_state

    _, kind, name = plan.source
    target = getattr(dst[plan.bucket], kind)._log(name)
    listed = _checkpoints_of(have)
    anchor, before = _shared_state(target, tip, listed)
    parsed = {s: c for s, c in plan.parsed.items() if s > tip}
    states = {s: c for s, c in plan.states.items() if s >= tip}
    if tip in states and (tip % CHECKPOINT_INTERVAL or tip in listed):
        del states[tip]  # only a regular checkpoint the target lacks is placed at its tip
    return _checked_history(plan.log, anchor, before, parsed, states, tip)


def _checkpoints_of(have: dict[str, int]) -> list[int]:
    """The checkpoints among the target's files of one object (``_log/...``)."""
    return [
        int(m.group(1))
        for f in have
        if f.startswith("_log/") and (m := _CHECKPOINT.fullmatch(f.removeprefix("_log/")))
    ]


def _hint_checkpoint(final: State, good: dict, have: dict[str, int], tip: int) -> int:
    """The newest checkpoint the imported log holds: a checked one, or the target's own."""
    own = [c for c in _checkpoints_of(have) if c <= tip]
    usable = [c for c in [*good, *own] if final.base < c <= final.seq]
    return max(usable, default=0)


def _rebucket(data: bytes, bucket: str) -> bytes:
    """A validated log document, naming ``bucket`` (imports into another bucket)."""
    doc = json.loads(data)
    if doc.get("bucket") == bucket:
        return data
    doc["bucket"] = bucket
    return _dumps(doc)


def _check_sidecar(bundle: _Bundle, member: _Member, sha: str) -> None:
    """A model payload's sidecar describes that payload (as fsck checks it)."""
    try:
        doc = json.loads(b"".join(bundle.chunks(member, _MAX_SIDECAR)))
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or doc.get("sha256") != sha:
        raise _Refused(
            f"the member {member.path} of {bundle.where} does not describe its payload (sha256)"
        )


# -- staging inside the target --------------------------------------------------------------
def _process_started(pid: int) -> float | None:
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


class _Staging:
    """A folder of the target root, owned by this process, where payloads land while they
    are checked; each is then placed under its final name, never over an existing file."""

    def __init__(self, storage: Any, enabled: bool = True):
        from omfs._storage import unique_name

        self.storage = storage
        self.enabled = enabled
        self.folder = f"{STAGING}/{unique_name()}"
        self.started = False
        self.count = 0

    def __enter__(self) -> _Staging:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.started:
            self.storage.delete_tree(self.folder)

    def _start(self) -> None:
        owner = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": _process_started(os.getpid()),
        }
        self.storage.write_bytes(f"{self.folder}/{_OWNER}", json.dumps(owner).encode())
        self.started = True

    def stage(self, bundle: _Bundle, member: _Member, sha: str | None) -> str:
        """Stream ``member`` into the staging folder, checking it against the manifest and
        ``sha`` (what the log records); the staged key."""
        if not self.started:
            self._start()
        self.count += 1
        staged = f"{self.folder}/{self.count}"
        digest = hashlib.sha256()
        kwargs = {} if self.storage.is_local else {"block_size": 5 * 2**20}
        with self.storage.open(staged, "wb", **kwargs) as out:
            for chunk in bundle.chunks(member):
                digest.update(chunk)
                out.write(chunk)
        if sha is not None and digest.hexdigest() != sha:
            raise _Refused(
                f"the member {member.path} of {bundle.where} does not match the sha256 its log "
                "records"
            )
        return staged


def _put_if_absent(storage: Any, staged: str, key: str) -> None:
    """Give the staged file the name ``key``, unless a file has it: a payload in the target
    is never overwritten (a local hard link fails if the name exists)."""
    if storage.is_local:
        from omfs._storage import fsync_dir

        path = storage.local(storage.path(key))  # never through a linked folder
        if storage.durable:
            fd = os.open(storage.path(staged), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.link(storage.path(staged), path)
            if storage.durable:
                fsync_dir(os.path.dirname(path))
        return
    if not storage.exists(key):
        storage.copy([staged], storage, [key])


def clean_staging(storage: Any, older_than: float | None = None) -> list[str]:
    """Remove what killed imports left in the staging folder of ``storage``: folders whose
    owner (a process of this machine) is gone, and folders untouched since ``older_than``
    (seconds since the epoch; default a day ago). Returns the folders removed."""
    cutoff = time.time() - _FOREIGN_STAGING_AGE if older_than is None else older_than
    host = socket.gethostname()
    removed = []
    for folder in storage.list_dirs(STAGING):
        key = f"{STAGING}/{folder}"
        try:
            owner = json.loads(storage.read_bytes(f"{key}/{_OWNER}"))
        except (FileNotFoundError, ValueError):
            owner = None
        if isinstance(owner, dict) and owner.get("host") == host:
            pid = owner.get("pid")
            alive = type(pid) is int and _process_started(pid) == owner.get("started")
            stale = not alive
        else:
            newest = max((m for _, _, m in storage.walk(key)), default=0.0)
            stale = newest <= cutoff
        if stale:
            storage.delete_tree(key)
            removed.append(key)
    return removed
