"""Format 1 (omfs 0.1, ``_versions/v000001.json`` sidecars): read as it is; ``upgrade``
converts an object to the commit log in place."""

from __future__ import annotations

import json
from typing import Any

from omfs.errors import IntegrityError
from omfs.names import check_name
from omfs.objects.commits import CommittingStore
from omfs.objects.records import (
    DROPPED_KIND,
    Commit,
    CorruptRecord,
    State,
    VersionRecord,
    validate_record,
)

__all__ = ["LegacyMixin"]


class LegacyMixin(CommittingStore):
    """Reads the format-1 layout (``_legacy_state``) and upgrades it (``upgrade``)."""

    def _legacy_state(self, name: str) -> State | None:
        """The state of an object written in the format-1 layout, or None if there is none."""
        paths = self.paths(name)
        files = self.storage.list_names(paths.legacy_folder)
        numbers = sorted(
            int(f[1:-5])
            for f in files
            if f.startswith("v") and f.endswith(".json") and f[1:-5].isdigit()
        )
        if not numbers:
            return None
        records = {number: self._legacy_record(name, number) for number in numbers}
        live = [v for v in numbers if records[v].dropped is None]
        tags: dict[str, int] = {}
        for v in live:
            tag = records[v].tag
            if tag:
                tags[tag] = v
        return State(
            next_version=numbers[-1] + 1,
            latest=live[-1] if live else None,
            tags=tags,
            records=records,
            legacy=True,
        )

    def _legacy_record(self, name: str, number: int) -> VersionRecord:
        """Version ``number``'s sidecar as a record, checked (IntegrityError naming it)."""
        key = self.paths(name).legacy_key(number)
        try:
            doc = json.loads(self.storage.read_bytes(key))
            if not isinstance(doc, dict) or doc.get("format") != 1:
                raise ValueError("not a format-1 sidecar")
            identity = (doc.get("name"), doc.get("bucket"), doc.get("store"))
            if identity != (name, self.bucket, self.kind) or doc.get("version") != number:
                raise ValueError("it names another object or version")
            if doc.get("dropped"):
                created = str(doc.get("created", ""))
                return VersionRecord(number, created, DROPPED_KIND, "put", dropped="legacy")
            return validate_record(self._legacy_doc(name, number, doc), self.validate_info)
        except (ValueError, TypeError, KeyError, CorruptRecord) as exc:
            raise IntegrityError(
                f"The metadata file {self.storage.path(key)!r} is corrupt ({exc}); omfs did "
                "not follow it. Restore it from a backup or drop that version."
            ) from None

    def _legacy_doc(self, name: str, number: int, doc: dict[str, Any]) -> dict[str, Any]:
        """A format-1 sidecar as the JSON form of a format-2 record."""
        known = {"format", "name", "bucket", "store", "kind", "version", "created"}
        known |= {"attributes", "tag", "lineage", "context", "history"}
        info = {k: v for k, v in doc.items() if k not in known}
        return {
            "v": number,
            "created": doc.get("created"),
            "kind": doc.get("kind"),
            "op": info.pop("operation", "put"),
            "attributes": doc.get("attributes"),
            "tag": doc.get("tag"),
            "lineage": doc.get("lineage"),
            "history": doc.get("history"),
            "info": self._legacy_info(name, info),
        }

    def upgrade(self, name: str) -> bool:
        """Convert one object from the omfs 0.1 layout to the commit log, in place.

        Schemas and payload sidecars are written first, then one commit holding every
        version appears atomically (readers see the old layout until then, the new after);
        the old sidecars are removed last. An upgrade killed after its commit left some of
        them: running it again removes them. Returns False when there was nothing to do.
        """
        name = check_name(name)
        log = self.object_log(name)
        if log.head().seq:
            return self._finish_upgrade(name)
        legacy = self._legacy_state(name)
        if legacy is None:
            return False
        with self.lease(name):
            records = {
                v: (rec if rec.dropped else self._upgrade_record(name, rec))
                for v, rec in legacy.records.items()
            }
            state = State(
                seq=1,
                next_version=legacy.next_version,
                latest=legacy.latest,
                tags=legacy.tags,
                records=records,
                checkpoint=1,
            )
            log.write_checkpoint(state)
            self._check_lease(name)
            try:
                log.try_commit(State(seq=0, checkpoint=1), Commit(op="upgrade"), head=state)
            except FileExistsError:
                return self._finish_upgrade(name)
        self.storage.delete_tree(self._legacy_folder(name))
        return True

    def _legacy_folder(self, name: str) -> str:
        return f"{self._prefix(name)}/_versions"

    def _finish_upgrade(self, name: str) -> bool:
        """Remove the format-1 sidecars an upgrade killed after its commit left behind (the
        log, which has commits, is what every reader follows); True if there were any."""
        if not self.storage.list_names(self._legacy_folder(name)):
            return False
        self.storage.delete_tree(self._legacy_folder(name))
        return True

    def upgrade_all(self) -> list[str]:
        """Upgrade every object of this store in this bucket; the names converted."""
        return [n for n in self.list() if self.upgrade(n)]
