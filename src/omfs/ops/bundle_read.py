"""Reading a bundle as hostile input: the manifest and every member are checked before
any byte is imported (see :mod:`omfs.ops.bundle`).

Only a plain tar is opened (compressed ones are refused), only regular members with omfs'
own file names are accepted, and members are read in chunks of :data:`CHUNK` bytes, never
more than they declare; documents are parsed whole and refused above :data:`MAX_DOCUMENT`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from omfs.errors import FormatError, IntegrityError, InvalidNameError, NotFoundError
from omfs.names import check_bucket
from omfs.objects.log import is_payload_file
from omfs.ops.common import STORES
from omfs.ops.inventory import CHECKPOINT, COMMIT, SCHEMA, is_sidecar, valid_name

__all__ = [
    "BUNDLE_FORMAT",
    "CHUNK",
    "MANIFEST",
    "MAX_DOCUMENT",
    "Bundle",
    "BundleFiles",
    "Member",
    "Refused",
    "open_bundle",
]

MANIFEST = "omfs-bundle.json"
BUNDLE_FORMAT = 1
#: Members are read and written in pieces of this many bytes.
CHUNK = 1 << 20
#: The largest manifest, commit, checkpoint or schema an import parses.
MAX_DOCUMENT = 32 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")
_COMPRESSED = (
    (b"\x1f\x8b", "gzip", "gunzip"),
    (b"BZh", "bzip2", "bunzip2"),
    (b"\xfd7zXZ\x00", "xz", "unxz"),
    (b"\x28\xb5\x2f\xfd", "zstd", "unzstd"),
)


class Refused(Exception):
    """One object of the bundle that fails a check: it is left out, the others go on."""


@dataclass
class Member:
    """One file of the bundle: where its bytes start in the tar, and what the manifest says."""

    path: str
    size: int
    sha256: str
    offset: int = -1


@dataclass
class Bundle:
    """A bundle whose manifest was checked: its objects, and each member where it starts."""

    where: str
    objects: list[tuple[str, str, str]]  # (bucket, store, name)
    files: dict[str, Member] = field(default_factory=dict)
    owned: dict[tuple[str, str, str], list[str]] = field(default_factory=dict)

    def of(self, bucket: str, store: str, name: str) -> dict[str, Member]:
        """The files of one object: its own folder and its index marker."""
        return {p: self.files[p] for p in self.owned.get((bucket, store, name), [])}

    def chunks(self, member: Member, limit: int | None = None) -> Iterator[bytes]:
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
        """A whole document of the bundle (at most :data:`MAX_DOCUMENT` bytes)."""
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
                tar.members.clear()  # type: ignore[attr-defined]  # iterate in constant memory
                yield member
    except (tarfile.TarError, EOFError) as exc:
        raise _bad(where, f"it is not a readable tar file ({exc})") from None


def open_bundle(where: str) -> Bundle:
    """Read the manifest and check every member against it, before any byte is imported."""
    _sniff(where)
    manifest: Member | None = None
    for member in _members(where):
        if member.name == MANIFEST:
            _check_member(where, member)
            manifest = Member(MANIFEST, member.size, "", member.offset_data)
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


def _parse_manifest(where: str, doc: Any) -> Bundle:
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
    bundle = Bundle(where, [])
    for item in objects:
        parts = item.split("/", 2) if isinstance(item, str) else []
        if len(parts) != 3 or not _bucket_ok(parts[0]) or parts[1] not in STORES:
            raise _bad(where, f"its manifest names the object {str(item)[:80]!r}, not "
                       "'bucket/datasets|models/name'")  # fmt: skip
        if not valid_name(parts[2]):
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
        bundle.files[path] = Member(path, size, sha)
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


def _bundle_path_ok(path: str) -> bool:
    """``bucket/store/name.../_log|_data/file`` or ``bucket/store/_index/name``."""
    parts = path.split("/")
    if len(parts) < 4 or parts[1] not in STORES or not _bucket_ok(parts[0]):
        return False
    if parts[2] == "_index":
        return len(parts) == 4 and valid_name(parts[3].replace("~", "/"))
    if len(parts) < 5 or not valid_name("/".join(parts[2:-2])):
        return False
    folder, filename = parts[-2], parts[-1]
    if folder == "_data":
        return is_payload_file(filename) or is_sidecar(filename)
    return folder == "_log" and bool(
        COMMIT.fullmatch(filename)
        or CHECKPOINT.fullmatch(filename)
        or SCHEMA.fullmatch(filename)
        or filename == "_last.json"
    )


class BundleFiles:
    """The bundle seen as a read-only storage, so that :class:`ObjectLog` reads and
    validates its documents exactly as it reads a store's."""

    is_local = True

    def __init__(self, bundle: Bundle):
        self.bundle = bundle
        self.url = f"bundle:{os.path.abspath(bundle.where)}"

    def read_bytes(self, key: str) -> bytes:
        return self.bundle.read(key)

    def path(self, key: str) -> str:
        return f"{self.bundle.where}:{key}"
