"""Stores whose version is one payload file with an immutable JSON sidecar beside it: models
(``_data/<id>.joblib``) and jobs (``_data/<id>.py``, ``.ipynb``), each sidecar
``_data/<id>.json``. What they share: the record's checks, the files a version owns, the
verified read of the payload and the sidecar's check in ``fsck``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from omfs.errors import IntegrityError
from omfs.objects.metadata import Metadata
from omfs.objects.records import CorruptRecord, State, VersionRecord, check_payload_name
from omfs.objects.versioned import VersionedStore
from omfs.storage import StreamHasher

__all__ = ["PayloadStore", "check_payload_info", "sidecar_name"]

_CHUNK = 16 * 2**20
_HEX = frozenset("0123456789abcdef")


def sidecar_name(payload: str) -> str:
    """The sidecar of payload ``<id>.<ext>``: ``<id>.json``."""
    return payload.rsplit(".", 1)[0] + ".json"


def check_payload_info(info: dict[str, Any], suffixes: tuple[str, ...], what: str) -> str:
    """The payload file name of a version record, after checking it ends in one of
    ``suffixes`` (``what`` names them) and that size and sha256 are well formed."""
    payload = check_payload_name(info.get("payload"), "the payload file name")
    if not payload.endswith(suffixes):
        raise CorruptRecord(f"the payload {payload!r} is not {what}")
    size = info.get("size")
    if type(size) is not int or size < 0:
        raise CorruptRecord(f"size must be a whole number, got {size!r}")
    sha = info.get("sha256")
    if not isinstance(sha, str) or len(sha) != 64 or not all(c in _HEX for c in sha):
        raise CorruptRecord("sha256 must be 64 hex digits")
    return payload


class PayloadStore(VersionedStore):
    """A versioned store of one payload file and its sidecar per version."""

    def own_files(self, rec: VersionRecord) -> list[str]:
        payload = rec.info.get("payload")
        return [payload, sidecar_name(payload)] if payload else []

    def payload_sizes(self, meta: Metadata) -> dict[str, int]:
        return {meta.info["payload"]: meta.info["size"]} if "payload" in meta.info else {}

    def export_version(
        self, name: str, rec: VersionRecord, state: State
    ) -> tuple[dict[str, Any], dict[str, int]]:
        info = dict(rec.info)
        return info, ({info["payload"]: info["size"]} if "payload" in info else {})

    def read_payload(self, meta: Metadata, progress: Callable[[int], None] | None = None) -> bytes:
        """The verified payload bytes of one version (hashed while they are read)."""
        key = self.data_key(meta.name, meta.info["payload"])
        chunks = []
        hasher = StreamHasher()
        try:
            with self.storage.open(key, "rb") as f:
                while chunk := f.read(_CHUNK):
                    hasher.update(chunk)
                    chunks.append(chunk)
                    if progress:
                        progress(len(chunk))
        except FileNotFoundError:
            hasher.hexdigest()
            raise self._missing_payload(meta.name, meta.version, meta.info["payload"]) from None
        data = b"".join(chunks)
        self.verify_payload(meta, len(data), hasher.hexdigest())
        return data

    def verify_payload(self, meta: Metadata, size: int, sha256: str) -> None:
        """IntegrityError unless ``size`` and ``sha256`` are what the version's record says."""
        if size != meta.info.get("size") or sha256 != meta.info.get("sha256"):
            what = (
                "is truncated or longer" if size != meta.info.get("size") else "has another sha256"
            )
            noun = self.noun.lower()
            raise IntegrityError(
                f"The payload of {noun} {meta.name!r} version {meta.version} in bucket "
                f"{self.bucket!r} does not match its sidecar (it {what}: {size} bytes, "
                f"sidecar says {meta.info.get('size')}): it was truncated or changed outside "
                f"omfs and was not loaded. Put the {noun} again, or drop that version."
            )

    def _check_version(self, name: str, state: State, rec: VersionRecord) -> list[str]:
        where = f"{self.noun.lower()} {name!r} version {rec.version}"
        payload = rec.info.get("payload")
        if not payload:
            return []
        try:
            self.read_payload(self.metadata_for(name, rec, state.tags))
        except IntegrityError as exc:
            return [f"{where}: {exc}"]
        if state.legacy:
            return []  # the omfs 0.1 layout has no payload sidecars: 'om upgrade' writes them
        side = sidecar_name(payload)
        try:
            doc = json.loads(self.storage.read_bytes(self.data_key(name, side)))
        except FileNotFoundError:
            return [f"{where}: the payload's sidecar {side} is missing"]
        except ValueError:
            return [f"{where}: the payload's sidecar {side} is not JSON"]
        except IntegrityError as exc:  # e.g. a symlink, never followed
            return [f"{where}: {exc}"]
        if not isinstance(doc, dict) or doc.get("sha256") != rec.info.get("sha256"):
            return [f"{where}: the payload's sidecar does not match the log (sha256)"]
        return []
