"""The dataset store's side of the versioned-object protocol: what a version's ``info``
holds and how it is checked, its parts (its parents' and its own), its schema, and its
export to and import from another store.

A version's ``info`` in the log holds the parts it adds (``add``: file, rows, size, sha256
and per-column statistics), the version it appends to (``parent``, None for a replacing
put), the id of its Arrow schema (stored once per object, named by content), and running
totals. The part list of a version is its parent's parts plus its own: an append records
only the part it adds, whatever the history.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import replace
from typing import Any

from omfs.errors import IntegrityError
from omfs.objects.datasets import _convert
from omfs.objects.datasets._parts import validate_part
from omfs.objects.datasets.schema import schema_bytes, schema_from_bytes
from omfs.objects.metadata import Metadata
from omfs.objects.records import CorruptRecord, Part, State, VersionRecord, as_dict, as_int, as_list
from omfs.objects.versioned import VersionedStore
from omfs.storage import Storage

__all__ = ["DatasetVersions"]

_SCHEMA_ID = re.compile(r"[0-9a-f]{32}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class DatasetVersions(VersionedStore):
    """The protocol hooks of the dataset store (``DatasetStore`` adds put, get, compact)."""

    kind = "datasets"
    noun = "Dataset"

    # -- the log's view of a version --------------------------------------------------------
    def validate_info(self, info: dict[str, Any], kind: str) -> None:
        add = as_list(info.get("add"), "add")
        for part in add:
            validate_part(part)
        if kind == _convert.KIND_RAW:
            if len(add) != 1 or not isinstance(info.get("sha256"), str):
                raise CorruptRecord("a raw file has exactly one part and a sha256")
        elif "schema" not in info and "schema_inline" not in info:
            raise CorruptRecord("a table version names its schema")
        parent = info.get("parent")
        if parent is not None:
            as_int(parent, "parent")
        for key in ("rows", "bytes", "parts"):
            if key in info:
                as_int(info[key], key, 0)
        schema = info.get("schema")
        if schema is not None and not (isinstance(schema, str) and _SCHEMA_ID.fullmatch(schema)):
            raise CorruptRecord(f"the schema id {str(schema)[:40]!r} is not 32 hex digits")
        if "schema_inline" in info and not isinstance(info["schema_inline"], str):
            raise CorruptRecord("schema_inline must be a string")
        sha = info.get("sha256")
        if sha is not None and not (isinstance(sha, str) and _SHA256.fullmatch(sha)):
            raise CorruptRecord("sha256 must be 64 hex digits")
        if "shape" in info:
            shape = as_list(info["shape"], "shape")
            for n in shape:
                as_int(n, "a dimension", 0)
        for key in ("dtype", "index_freq", "source", "filename"):
            if info.get(key) is not None and not isinstance(info[key], str):
                raise CorruptRecord(f"{key} must be a string")
        as_dict(info.get("categories"), "categories")

    def _public_info(self, name: str, rec: VersionRecord) -> dict[str, Any]:
        info = {k: v for k, v in rec.info.items() if k not in ("add", "schema_inline", "parent")}
        if rec.kind != _convert.KIND_RAW and rec.dropped is None:
            schema = self._schema(name, rec)
            info["columns"] = {f.name: str(f.type) for f in schema}
        return info

    def _schema(self, name: str, rec: VersionRecord) -> Any:
        inline = rec.info.get("schema_inline")
        if inline is not None:
            return schema_from_bytes(base64.b64decode(inline))
        return schema_from_bytes(self.object_log(name).read_schema(rec.info["schema"]))

    def parts_of(self, name: str, state: State, rec: VersionRecord) -> list[Part]:
        """Every part version ``rec`` reads, oldest first (its parents' parts, then its own)."""
        chain = [rec]
        while chain[-1].info.get("parent") is not None:
            parent = chain[-1].info["parent"]
            if parent >= chain[-1].version:
                raise IntegrityError(
                    f"The log of {self._where(name)} is corrupt: version {chain[-1].version} "
                    f"names version {parent} as its parent. Run 'om fsck'."
                )
            if parent not in state.records:
                if not state.complete:
                    state = self.object_log(name).full(state)
                    continue
                raise IntegrityError(
                    f"The log of {self._where(name)} is corrupt: version {chain[-1].version} "
                    f"appends to version {parent}, which it does not hold. Run 'om fsck'."
                )
            chain.append(state.records[parent])
        return [part for r in reversed(chain) for part in r.info.get("add") or []]

    #: Kept for ops.bundle until it calls ``parts_of``.
    _parts_of = parts_of

    def own_files(self, rec: VersionRecord) -> list[str]:
        return [p["file"] for p in rec.info.get("add") or []]

    def version_files(self, state: State, rec: VersionRecord) -> list[str]:
        return [p["file"] for p in self.parts_of("", state, rec)]

    def parts(self, name: str, *, version: int | str | None = None) -> list[Part]:
        """The part files of a version: file, rows, size and per-column [min, max, nulls]."""
        base, rec, state = self.select(name, version)
        return [Part(**p) for p in self.parts_of(base, state, rec)]

    def payload_sizes(self, meta: Metadata) -> dict[str, int]:
        return {p["file"]: p["size"] for p in self.parts(meta.name, version=meta.version)}

    def export_version(
        self, name: str, rec: VersionRecord, state: State
    ) -> tuple[dict[str, Any], dict[str, int]]:
        parts = self.parts_of(name, state, rec)
        info = {k: v for k, v in rec.info.items() if k not in ("add", "parent", "schema")}
        info.update(parent=None, add=parts)
        if rec.kind != _convert.KIND_RAW:
            info["schema_inline"] = base64.b64encode(schema_bytes(self._schema(name, rec))).decode()
        return info, {p["file"]: p["size"] for p in parts}

    def import_info(
        self, name: str, kind: str, info: dict[str, Any], renamed: dict[str, str], created: str
    ) -> dict[str, Any]:
        info = {**info, "add": [{**p, "file": renamed[p["file"]]} for p in info["add"]]}
        inline = info.pop("schema_inline", None)
        if inline is not None:
            info["schema"] = self.object_log(name).write_schema(base64.b64decode(inline))
        return info

    def _legacy_info(self, name: str, info: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in info.items() if k not in ("parts", "schema", "columns")}
        parts = info.get("parts") or []
        out["add"] = [{"file": p["file"], "rows": p["rows"], "size": p["size"]} for p in parts]
        out["parent"] = None
        out["parts"] = len(parts)
        out.setdefault("rows", sum(p["rows"] for p in parts))
        out.setdefault("bytes", sum(p["size"] for p in parts))
        if info.get("schema"):
            out["schema_inline"] = info["schema"]
        return out

    def _upgrade_record(self, name: str, rec: VersionRecord) -> VersionRecord:
        info = dict(rec.info)
        inline = info.pop("schema_inline", None)
        if inline is not None:
            info["schema"] = self.object_log(name).write_schema(base64.b64decode(inline))
        return replace(rec, info=info)

    def _check_version(self, name: str, state: State, rec: VersionRecord) -> list[str]:
        problems = []
        where = f"dataset {name!r} version {rec.version}"
        try:
            parts = self.parts_of(name, state, rec)
            if rec.kind != _convert.KIND_RAW:
                self._schema(name, rec)
        except (IntegrityError, FileNotFoundError) as exc:
            return [f"{where}: {exc}"]
        for part in parts:
            key = self.data_key(name, part["file"])
            try:
                size = self.storage.size(key)
            except FileNotFoundError:
                problems.append(f"{where}: part {part['file']} is missing")
                continue
            if size != part["size"]:
                problems.append(
                    f"{where}: part {part['file']} has {size} bytes, the log says {part['size']}"
                )
            elif part.get("sha256") and sha256_of(self.storage, key) != part["sha256"]:
                problems.append(f"{where}: part {part['file']} does not match its sha256")
        if rec.kind == _convert.KIND_RAW and not problems and parts:
            digest = hashlib.sha256()
            for chunk in self.storage.iter_chunks(self.data_key(name, parts[0]["file"])):
                digest.update(chunk)
            if digest.hexdigest() != rec.info.get("sha256"):
                problems.append(f"{where}: the raw payload does not match its sha256")
        return problems

    def appended_details(
        self, latest: VersionRecord, kind: str, info: dict[str, Any], parts: list[Part]
    ) -> dict[str, Any]:
        """The details of a version that appends ``parts`` to ``latest``: running totals,
        merged categories (the hook a rebase calls to replay an append on another history).

        Returns the new version's ``info`` without its parts, parent and schema.
        """
        keep = ("shape", "dtype", "series_name", "source", "categories")
        details = {k: latest.info[k] for k in keep if k in latest.info}
        rows = sum(p["rows"] for p in parts)
        details["rows"] = latest.info.get("rows", 0) + rows
        details["bytes"] = latest.info.get("bytes", 0) + sum(p["size"] for p in parts)
        details["parts"] = latest.info.get("parts", 0) + len(parts)
        if kind == _convert.KIND_ARRAY and "shape" in details:
            details["shape"] = [details["rows"], *details["shape"][1:]]
        if "categories" in latest.info or "categories" in info:
            details["categories"] = _convert.merge_categories(
                latest.info.get("categories", {}), info.get("categories", {})
            )
        return details  # an index freq rarely survives an append: not carried over


def sha256_of(storage: Storage, key: str) -> str:
    """The sha256 of the file at ``key``, read in chunks."""
    digest = hashlib.sha256()
    for chunk in storage.iter_chunks(key):
        digest.update(chunk)
    return digest.hexdigest()
