"""Dropping, restoring and pruning objects and versions, and updating a version's
attributes: changes that keep or remove payload files."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from omfs.errors import (
    CommitConflictError,
    IntegrityError,
    InvalidTypeError,
    NotFoundError,
    RestoreError,
    UsageError,
)
from omfs.names import check_name, split_selector
from omfs.objects import log as _log
from omfs.objects.commits import CommittingStore
from omfs.objects.layout import COLLECT_OP
from omfs.objects.metadata import Metadata, utcnow
from omfs.objects.records import Commit, State
from omfs.objects.times import at_or_before, parse_duration

__all__ = ["LifecycleMixin"]


class LifecycleMixin(CommittingStore):
    """``drop``, ``restore``, ``prune`` and ``update_attributes`` of a store."""

    def drop(self, name: str, *, force: bool = False) -> bool:
        """Delete ``name`` with all its versions, or one version with ``name@v3``.

        Raises NotFoundError when it does not exist, unless ``force=True``; returns whether
        something was dropped. Dropping the object commits a tombstone first (from then on
        readers see nothing of it), then deletes its files.
        """
        base, selector = split_selector(name)
        try:
            if selector is not None:
                self._drop_version(base, name)
                return True
            before = self.state(base, full=True)
            if not before.exists:
                raise self._not_found(base)
        except NotFoundError:
            if force:
                return False
            raise
        if before.legacy:
            self._drop_legacy(base, before)
            return True
        self.commit(base, lambda _s: Commit(op="delete", delete=True), retry=True)
        return True  # its files stay for restore() until gc collects them (after the grace)

    def restore(self, name: str) -> Metadata:
        """Bring back an object dropped with ``drop(name)``, with its whole history
        (versions, tags, tag history), while gc has not collected its files. Returns the
        latest version's metadata. Refused (RestoreError, one line) when it exists, was never
        stored, or gc collected what it needs.

        It holds a gc lease and checks the files it brings back after taking it; a gc that
        decided before the lease to collect them claims the object first with a commit of
        its own (see :mod:`omfs.ops.gc`), so exactly one of the two wins."""
        name = check_name(name)
        with self.lease(name):
            return self._restore(name)

    def _restore(self, name: str) -> Metadata:
        marker = self._marker(name)
        if marker:
            self.finish_adopt(name)
        state = self._writable_state(name, full=False)
        if state.exists:
            if marker is not None:
                raise RestoreError(f"Cannot restore {self._where(name)}: it exists (not dropped).")
            # a drop killed after it hid the object, or a restore killed before it listed it
            self.storage.delete([self._dropping_key(name)])
            self.storage.write_bytes(self._index_key(name), b"")
            return self.metadata(name)
        before = self._before_drop(name, state)
        self.storage.delete([self._dropping_key(name)])  # else a writer would drop it again
        log = self.object_log(name)
        restored = replace(before, seq=state.seq + 1, checkpoint=state.seq + 1, complete=True)
        log.write_checkpoint(restored)  # the restore commit's head names it: readers start there
        try:
            self._check_lease(name)
            log.try_commit(state, Commit(op="restore"), head=restored)
        except (FileExistsError, CommitConflictError) as exc:
            self.storage.delete([log.key(_log.checkpoint_file(restored.seq))])
            if isinstance(exc, CommitConflictError):
                raise RestoreError(
                    f"Cannot restore {self._where(name)}: {exc} (nothing was restored)."
                ) from None
            found = log.commit_at(state.seq + 1)
            if found is not None and found[0].op == COLLECT_OP:  # gc claimed it meanwhile
                raise self._collected(name, state.seq) from None
            raise self._conflict(name, state.next_version) from None
        self.storage.write_bytes(self._index_key(name), b"")
        return self.metadata(name)

    def _collected(self, name: str, seq: int) -> RestoreError:
        return RestoreError(
            f"Cannot restore {self._where(name)}: gc already collected the files of its "
            f"history (dropped at commit {seq}); it cannot be brought back here."
        )

    def _before_drop(self, name: str, state: State) -> State:
        """The complete state just before the drop that ``state`` (a tombstone) ends, with
        every file it needs still there; else RestoreError."""
        if state.seq == 0 or not state.deleted or state.seq < 2:
            raise RestoreError(
                f"Cannot restore {self._where(name)}: there is no dropped object of that name."
            )
        gone = self._collected(name, state.seq)
        log = self.object_log(name)
        last = log.commit_at(state.seq)
        if last is not None and last[0].op == COLLECT_OP:  # gc's claim: its files are gone
            raise gone
        found = log.commit_at(state.seq - 1)
        if found is None:
            raise gone
        try:
            before = log.full(found[1])
        except IntegrityError:
            raise gone from None
        if not before.exists:
            raise RestoreError(
                f"Cannot restore {self._where(name)}: there is no dropped object of that name."
            )
        data: set[str] = set(self.storage.list_names(f"{self._prefix(name)}/_data"))
        logs = set(log.files())
        for rec in before.live():
            schema = rec.info.get("schema")
            if not set(self.version_files(before, rec)) <= data or (
                isinstance(schema, str) and f"s-{schema}.schema" not in logs
            ):
                raise gone
        return before

    def _drop_version(self, name: str, spec: str) -> None:
        """Commit that one version is dropped, then delete the payload no live version uses."""
        _, rec, _ = self.select(spec)
        number = rec.version

        def change(state: State) -> Commit:
            self._check_live(name, state, number)
            return Commit(op="drop-version", drops=[number])

        state = self.commit(name, change, retry=True, full=True)
        self._delete_unused(name, state, [number])

    def _drop_legacy(self, name: str, state: State) -> None:
        self.storage.delete([self._index_key(name)])
        self.storage.delete_tree(f"{self._prefix(name)}/_versions")
        self.storage.delete_tree(f"{self._prefix(name)}/_data")

    def prune(
        self,
        name: str,
        *,
        keep_last: int | None = None,
        older_than: Any = None,
        dry_run: bool = False,
    ) -> list[int]:
        """Drop old versions of ``name``: those not among the ``keep_last`` newest and (with
        ``older_than``, e.g. ``"30d"``) created longer ago than that. The latest version and
        a version a tag points at are never dropped (only :meth:`drop` removes an object),
        nor a payload file that a kept version still uses. One commit drops them all, then
        the files go. Returns the versions dropped (or, with ``dry_run=True``, that would
        be)."""
        if keep_last is None and older_than is None:
            raise UsageError("prune() needs keep_last=, older_than= or both")
        if keep_last is not None and (type(keep_last) is not int or keep_last < 0):
            raise UsageError(f"keep_last must be a whole number >= 0, got {keep_last!r}")
        cutoff = None
        if older_than is not None:
            cutoff = datetime.now(UTC) - parse_duration(older_than)
        name = check_name(name)

        def chosen(state: State) -> list[int]:
            live = state.live()
            if keep_last is not None:
                live = live[: max(0, len(live) - keep_last)]
            kept = {state.latest, *state.tags.values()}
            return [
                r.version
                for r in live
                if r.version not in kept and (cutoff is None or at_or_before(r.created, cutoff))
            ]

        state = self.state(name, full=True)
        if not state.exists:
            raise self._not_found(name)
        if dry_run or not chosen(state):
            return chosen(state)
        picked: list[int] = []

        def change(state: State) -> Commit:
            picked[:] = chosen(state)
            return Commit(op="prune", drops=list(picked))

        state = self.commit(name, change, retry=True, full=True)
        self._delete_unused(name, state, picked)
        return picked

    def _delete_unused(self, name: str, state: State, dropped: list[int]) -> None:
        """Delete the payload files of ``dropped`` versions that no live version uses."""
        still_used: set[str] = set()
        for live in state.live():
            still_used.update(self.version_files(state, live))
        unused: set[str] = set()
        for number in dropped:
            unused.update(self.version_files(state, state.records[number]))
        self.storage.delete(self.data_key(name, f) for f in unused - still_used)

    def update_attributes(
        self, name: str, attributes: dict[str, Any], *, version: int | None = None
    ) -> Metadata:
        """Merge ``attributes`` into one version's metadata without touching its payload.

        The change is a commit of its own, recorded in the version's ``history``; concurrent
        updates are all kept (each re-applies on top of the other).
        """
        if not isinstance(attributes, dict):
            raise InvalidTypeError(f"attributes must be a dict, got {type(attributes).__name__}")
        base, rec, head = self.select(name, version)
        number = rec.version
        needs_full = head.complete or number not in head.records

        def change(state: State) -> Commit:
            self._check_live(base, state, number)
            return Commit(op="update-attributes", attributes=(number, dict(attributes), utcnow()))

        state = self.commit(base, change, retry=True, full=needs_full)
        return self.metadata_for(base, state.records[number], state.tags)
