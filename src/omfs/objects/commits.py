"""The versioned-object protocol, writing side: every change to an object is one commit,
conditional on the state it was computed from.

A write puts its payload under fresh names, then creates the next commit with
put-if-absent semantics. Every change to an existing object (a new version, a dropped
version, an attribute update, a tag move, dropping the object) is such a commit, so each is
conditional on the state it was computed from: a writer that loses the race re-reads and
re-applies its change (appends, model puts, attribute updates, drops) or fails with
CommitConflictError (replacing puts), and no update is lost.
"""

from __future__ import annotations

import contextlib
import functools
import random
import time
import unicodedata
from collections.abc import Callable
from typing import Any, TypeVar, cast

from omfs.errors import CommitConflictError, FormatError, InvalidNameError
from omfs.names import check_new_name, look_alike, split_selector
from omfs.objects import lease as _lease
from omfs.objects.base import ADOPTING, VersionedBase
from omfs.objects.layout import checkpoint_file, checkpoint_seq, commit_file
from omfs.objects.records import Commit, State, apply, dumps

__all__ = ["CommittingStore", "NeedsFullState", "leased"]


_MAX_ATTEMPTS = 200
#: retry jitter from a generator of omfs's own: never the global one a user may have seeded
_jitter = random.Random()
_F = TypeVar("_F", bound=Callable[..., Any])


def leased(position: int) -> Callable[[_F], _F]:
    """Run the decorated store method holding a gc lease (:mod:`omfs.objects.lease`) on the
    object its argument ``position`` (after ``self``) names, as ``name`` or ``name@v3``."""

    def decorate(method: _F) -> _F:
        @functools.wraps(method)
        def wrapper(self: CommittingStore, *args: Any, **kwargs: Any) -> Any:
            spec = args[position] if len(args) > position else kwargs["name"]
            with self.lease(split_selector(spec)[0]):
                return method(self, *args, **kwargs)

        return cast(_F, wrapper)

    return decorate


class NeedsFullState(Exception):
    """Raised by a change that was handed a head (the latest and tagged versions only) but
    needs a version the head no longer holds: ``commit`` reads the full state and calls
    the change again."""


class CommittingStore(VersionedBase):
    """The writing side of the protocol: ``commit`` a change, ``bury`` a hidden log, hold a
    gc ``lease``, ``adopt`` another history (the source side of a rebase)."""

    def lease(self, name: str) -> contextlib.AbstractContextManager[_lease.Lease]:
        """A gc lease on ``name`` for a write's block: gc leaves its files alone."""
        where = self._where(name)
        return _lease.holding(self.storage, self.bucket, self.kind, name, where)

    def _check_lease(self, name: str) -> None:
        """Refuse a commit whose write's gc lease lapsed (its files may be gone)."""
        lease = _lease.held(self.storage, self.bucket, self.kind, name)
        if lease is not None:
            lease.check()

    def adopt(self, name: str, journal: dict[str, Any]) -> None:
        """Switch ``name``'s log to the history in ``journal`` (see :func:`adopt_journal`):
        the journal first, then the marker says so (from then on readers read the journal's
        state), then the log files are rewritten, then marker and journal are cleared."""
        self.storage.write_bytes(self._adopt_key(name), dumps(journal))
        self.storage.write_bytes(self._index_key(name), ADOPTING)
        self.finish_adopt(name)

    def finish_adopt(self, name: str) -> None:
        """Complete a switch to another history from its journal (idempotent: a killed
        rebase is finished by the next writer or sync)."""
        log = self.object_log(name)
        try:
            doc = log.load(self._adopt_key(name))
        except FileNotFoundError:
            doc = None
        if doc is not None:
            try:
                self._adopted_state(name)  # validates the journal before it is followed
                commits = {int(k): v.encode() for k, v in doc["commits"].items()}
                checkpoints = {int(k): v.encode() for k, v in doc["checkpoints"].items()}
                common, old, hint = int(doc["common"]), int(doc["old"]), doc["hint"].encode()
            except (KeyError, ValueError, TypeError, AttributeError) as exc:
                raise log.corrupt(self._adopt_key(name), f"a bad rebase journal: {exc}") from None
            for seq in sorted(commits):
                self.storage.write_bytes(log.key(commit_file(seq)), commits[seq])
            top = max(commits, default=common)
            stale = [log.key(commit_file(s)) for s in range(top + 1, old + 1)]
            stale += [  # the old history's checkpoints (the journal holds the new one's, and
                # those up to the common commit are of the history both sides share)
                log.key(f)
                for f in log.files()
                if (cp := checkpoint_seq(f)) is not None and cp > common and cp not in checkpoints
            ]
            self.storage.delete(stale)
            for seq, body in sorted(checkpoints.items()):
                self.storage.write_bytes(log.key(checkpoint_file(seq)), body)
            self.storage.write_bytes(log.hint_key, hint)
        if self._marker(name):
            self.storage.write_bytes(self._index_key(name), b"")
        self.storage.delete([self._adopt_key(name)])

    def _check_live(self, name: str, state: State, number: int) -> None:
        """Raise NotFoundError unless version ``number`` is live in ``state``. A head that
        does not hold it (another writer moved the tag or made the version that kept it
        there) says nothing of it: the caller's commit then reads the full state."""
        if not state.complete and state.exists and number not in state.records:
            raise NeedsFullState
        rec = state.records.get(number)
        if not state.exists or rec is None or rec.dropped is not None:
            raise self._not_found(name, f" at version {number}")

    # -- writing ---------------------------------------------------------------------------
    def commit(
        self,
        name: str,
        change: Callable[[State], Commit],
        *,
        retry: bool,
        expected_next: int | None = None,
        full: bool = False,
    ) -> State:
        """Commit ``change(state)`` on top of the newest state, atomically.

        Args: ``change`` computes the Commit from the newest state (it may raise to refuse);
        with ``retry=True`` it is called again when another writer committed first, else
        that is a CommitConflictError. ``expected_next``: the next version number the
        caller saw before writing its payload (a replacing write fails when another version
        was created meanwhile). ``full=True`` hands ``change`` the complete state; a change
        handed a head may raise ``NeedsFullState`` to get it. Returns the state after it:
        ``commit("m", lambda s: Commit(op="tag", moves=[TagMove("prod", 2)]), retry=True)``.
        """
        marker = self._marker(name)
        if marker:
            self.finish_adopt(name)
        state = self._writable_state(name, full)
        listed = marker is not None
        if not listed and state.exists:
            state = self._finish_interrupted_drop(name, state, full)
        log = self.object_log(name)
        for attempt in range(_MAX_ATTEMPTS):
            if expected_next is not None and state.next_version != expected_next:
                raise self._conflict(name, state.next_version - 1)
            try:
                commit = change(state)
            except NeedsFullState:  # a head was not enough: the same change on every record
                full = True
                state = self._writable_state(name, full)
                continue
            if listed and state.exists and not apply(state, commit, "").exists:
                # the object stops existing: hiding it (the marker) is the readers' point
                self.storage.write_bytes(self._dropping_key(name), b"")
                self.storage.delete([self._index_key(name)])
                listed = False
            self._check_lease(name)
            try:
                new = log.try_commit(state, commit)
            except FileExistsError:
                if not retry:
                    raise self._conflict(name, state.next_version) from None
                time.sleep(_jitter.uniform(0.001, 0.01) * min(attempt + 1, 20))
                state = self._writable_state(name, full)
                continue
            if new.exists and not listed:
                # a new object (or one a retry kept alive): listing it is the readers' point
                self.storage.write_bytes(self._index_key(name), b"")
            elif not new.exists:
                self.storage.delete([self._dropping_key(name), self._index_key(name)])
            return new
        raise CommitConflictError(
            f"Gave up committing {self._where(name)} after {_MAX_ATTEMPTS} attempts: other "
            "writers kept committing first. Nothing of this write became visible; try again."
        )

    def bury(self, name: str, state: State) -> State:
        """Commit a tombstone on a log that no reader sees (gc of a killed write or drop)."""
        log = self.object_log(name)
        for _ in range(_MAX_ATTEMPTS):
            if not state.exists:
                return state
            try:
                return log.try_commit(state, Commit(op="delete", delete=True))
            except FileExistsError:
                state = self.state(name, full=True, reader=False)
        return state

    def _finish_interrupted_drop(self, name: str, state: State, full: bool) -> State:
        """A live log without a marker: a drop that was killed after hiding the object
        (its intent file says so) is completed with a tombstone; otherwise it is a first
        write in flight or killed before its marker, and writes go on on top of it."""
        try:
            self.storage.read_bytes(self._dropping_key(name))
        except FileNotFoundError:
            return state
        with contextlib.suppress(FileExistsError):  # else someone moved on: read that
            self.object_log(name).try_commit(state, Commit(op="delete", delete=True))
        self.storage.delete([self._dropping_key(name)])
        return self._writable_state(name, full)

    def _writable_state(self, name: str, full: bool) -> State:
        state = self.state(name, full=full, reader=False)
        if state.legacy:
            raise FormatError(
                f"{self._where(name)} is in the format-1 layout (sidecars in _versions/, from "
                "before the commit log). It "
                "can be read as it is; to write to it, convert it first with 'om upgrade' "
                "(or store.upgrade(name))."
            )
        return state

    def _next_state(self, name: str) -> State:
        """The state a new write starts from (refuses the format-1 layout; completes a drop
        that was killed after it hid the object, so the write starts afresh)."""
        marker = self._marker(name)
        if marker:
            self.finish_adopt(name)
        state = self._writable_state(name, full=False)
        if state.exists and marker is None:
            state = self._finish_interrupted_drop(name, state, full=False)
        if not state.exists:
            self._check_new_name(name)
        return state

    def _check_new_name(self, name: str) -> None:
        """Refuse a new name that Windows reserves, or that looks like an existing one: on a
        case-insensitive disk (macOS, Windows) ``Sales`` and ``sales`` would be one folder,
        and ``sales`` read with a Cyrillic a (U+0430) or in fullwidth letters is ``sales``
        to a person. Costs the one listing of the index that the case check always took."""
        check_new_name(name, f"{self.noun.lower()} name")
        other = look_alike(name, self._names())
        if other is None:
            return
        where = f"{other!r} exists in bucket {self.bucket!r}"
        if other.casefold() == name.casefold():
            why = "names that differ only in case would collide on case-insensitive disks"
        else:
            odd = [
                f"{c!r} is {unicodedata.name(c, f'U+{ord(c):04X}')}"
                for c in dict.fromkeys(name + other)
                if not c.isascii()
            ]
            why = f"the two look alike ({', '.join(odd) or 'same letters'})"
        raise InvalidNameError(
            f"Cannot create {self.noun.lower()} {name!r}: {where}, and {why}. Use {other!r}, "
            "or a name that reads differently."
        )

    def _conflict(self, name: str, version: int) -> CommitConflictError:
        return CommitConflictError(
            f"Another writer committed version {version} of {self._where(name)} while this "
            "write was running. Nothing of this write became visible; read the new version "
            "and write again."
        )
