"""What datasets and models share: versioned objects, each with its own commit log.

Layout of one object ``name`` in store ``datasets`` or ``models``::

    {bucket}/{store}/{name}/_log/...       the commit log (see :mod:`omfs._log`)
    {bucket}/{store}/{name}/_data/<id>.*   payload files, written before their commit
    {bucket}/{store}/_index/{name, '/' as '~'}   empty marker: list() is one listing call

A write puts its payload under fresh names, then creates the next commit with
put-if-absent semantics. Every change to an existing object (a new version, a dropped
version, an attribute update, a tag move, dropping the object) is such a commit, so each is
conditional on the state it was computed from: a writer that loses the race re-reads and
re-applies its change (appends, model puts, attribute updates, drops) or fails with
CommitConflictError (replacing puts), and no update is lost. Readers follow the log only, so
a crash at any point leaves the previous state readable.

Stores written by omfs 0.1 (``_versions/v000001.json`` sidecars) are read as they are;
writing to them needs ``om upgrade`` (:meth:`VersionedStore.upgrade`) first.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import random
import re
import time
import unicodedata
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from omfs import _lease, _log
from omfs._log import Commit, ObjectLog, State, TagMove, VersionRecord
from omfs._names import (
    check_bucket,
    check_name,
    check_new_name,
    check_tag,
    look_alike,
    split_selector,
)
from omfs._storage import Storage
from omfs.errors import (
    CommitConflictError,
    FormatError,
    IntegrityError,
    InvalidNameError,
    NotFoundError,
    RestoreError,
)
from omfs.metadata import Metadata, utcnow

__all__ = ["VersionedStore", "leased", "parse_duration", "parse_time"]

_MAX_ATTEMPTS = 200
_F = Any


def leased(position: int) -> Callable[[_F], _F]:
    """Run the decorated store method holding a gc lease (:mod:`omfs._lease`) on the
    object its argument ``position`` (after ``self``) names, as ``name`` or ``name@v3``."""

    def decorate(method: _F) -> _F:
        @functools.wraps(method)
        def wrapper(self: VersionedStore, *args: Any, **kwargs: Any) -> Any:
            spec = args[position] if len(args) > position else kwargs["name"]
            with self._leased(split_selector(spec)[0]):
                return method(self, *args, **kwargs)

        return wrapper

    return decorate


#: The journal of a rebase switching an object's log to another history (see ``_adopt``).
ADOPT_FILE = "_adopt.json"
#: The op of the tombstone gc commits on a dropped object before it deletes its files: a
#: restore racing it then loses its commit (see ``restore``), never finds files gone.
COLLECT_OP = "gc-collect"
#: The index marker's content while that switch runs: readers then read the journal.
ADOPTING = b"adopting"


def parse_time(value: Any) -> datetime:
    """An ISO 8601 time (``2026-03-01T12:00:00Z``) or datetime, as an aware UTC datetime."""
    if isinstance(value, datetime):
        when = value
    else:
        try:
            when = datetime.fromisoformat(str(value).strip())
        except ValueError:
            raise ValueError(
                f"Invalid time {value!r}: use ISO 8601, e.g. '2026-03-01T12:00:00Z'"
            ) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*", re.IGNORECASE)
_UNITS = {"s": 1, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(value: Any) -> timedelta:
    """``"90s"``, ``"5min"``, ``"1h"``, ``"30d"``, ``"2w"``, seconds, or a timedelta.

    The one parser of durations (prune's ``older_than``, gc's ``grace``, their CLI
    options). A bare ``m`` is refused: it reads as a minute to some and a month to others.
    """
    if isinstance(value, timedelta):
        if value < timedelta(0):
            raise ValueError(f"Invalid duration {value!r}: it is negative")
        return value
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return timedelta(seconds=value)
    match = _DURATION.fullmatch(str(value))
    unit = match.group(2).lower() if match else ""
    if match and unit == "m":
        number = match.group(1)
        raise ValueError(
            f"Duration {value!r} is ambiguous: write {number}min for {number} minute(s) or "
            f"{float(number) * 30:g}d for {number} month(s)"
        )
    if not match or unit not in _UNITS:
        raise ValueError(
            f"Invalid duration {value!r}: use a number and a unit (s, min, h, d, w), "
            "e.g. '90s', '5min', '1h', '30d' or '2w'"
        )
    return timedelta(seconds=float(match.group(1)) * _UNITS[unit])


def _before(stamp: str, when: datetime) -> bool:
    """True when the ISO time ``stamp`` (as omfs writes them) is at or before ``when``."""
    try:
        return parse_time(stamp) <= when
    except ValueError:
        return False


class _NeedsFullState(Exception):
    """Raised by a change that was handed a head (the latest and tagged versions only) but
    needs a version the head no longer holds: ``_commit`` reads the full state and calls
    the change again."""


class _NotFound(NotFoundError):
    """A NotFoundError whose message (which may need a listing, to name the buckets that
    exist) is made only when someone reads it, not when ``exists()`` catches it."""

    def __init__(self, message: Callable[[], str]):
        super().__init__()
        self._message = message
        self._text: str | None = None

    def __str__(self) -> str:
        if self._text is None:
            self._text = self._message()
            self.args = (self._text,)
        return self._text

    def __reduce__(self) -> tuple[Any, ...]:
        return (NotFoundError, (str(self),))


def bucket_names(storage: Storage) -> list[str]:
    """The buckets of a context: its top-level folders, omfs' own and hidden ones aside
    (one listing)."""
    return sorted(b for b in storage.list_dirs("") if not b.startswith((".", "_")))


def bucket_problem(storage: Storage, bucket: str, creating: bool = False) -> str | None:
    """Why ``bucket`` of ``storage`` does not exist (naming what does), or None when it
    exists, or is the default bucket of an empty or new root."""
    from omfs.config import DEFAULT_BUCKET, default_root

    buckets = bucket_names(storage)
    if bucket in buckets:
        return None
    if bucket == DEFAULT_BUCKET and (buckets or storage.exists("")):
        return None  # the default bucket of an existing context always reads (maybe empty)
    if not buckets:
        if creating:
            return None
        if not storage.exists(""):
            if bucket == DEFAULT_BUCKET and storage.url == default_root():
                return None  # a fresh install: nothing stored yet
            return (
                f"the context root {storage.url!r} does not exist (nothing was ever stored "
                "there). Check the root; writing creates it."
            )
        return (
            f"bucket {bucket!r} does not exist in context {storage.url!r}, which has no "
            "buckets yet. Writing creates it."
        )
    return (
        f"bucket {bucket!r} does not exist in context {storage.url!r}; its buckets are "
        f"{', '.join(buckets)}. Check the name; writing creates a new bucket."
    )


class VersionedStore:
    """Base of DatasetStore and ModelStore: naming, listing, versions, commits, drop."""

    kind: str = ""  # the store: "datasets" or "models", set by subclasses
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

    def _data_key(self, name: str, filename: str) -> str:
        return f"{self._prefix(name)}/_data/{filename}"

    def _index_key(self, name: str) -> str:
        return f"{self.bucket}/{self.kind}/_index/{name.replace('/', '~')}"

    def _leased(self, name: str) -> contextlib.AbstractContextManager[_lease.Lease]:
        """A gc lease on ``name`` for a write's block: gc leaves its files alone."""
        where = self._where(name)
        return _lease.holding(self.storage, self.bucket, self.kind, name, where)

    def _check_lease(self, name: str) -> None:
        """Refuse a commit whose write's gc lease lapsed (its files may be gone)."""
        lease = _lease.held(self.storage, self.bucket, self.kind, name)
        if lease is not None:
            lease.check()

    def _log(self, name: str) -> ObjectLog:
        identity = {"store": self.kind, "bucket": self.bucket, "name": name}
        return ObjectLog(self.storage, self._prefix(name), identity, self.validate_info)

    def _where(self, name: str) -> str:
        noun = self.noun.lower()
        return f"{noun} {name!r} in bucket {self.bucket!r} of context {self.storage.url!r}"

    def _not_found(self, name: str, detail: str = "") -> NotFoundError:
        def message() -> str:
            problem = self._bucket_problem()
            text = (
                f"{self.noun} {name!r} does not exist{detail} in bucket {self.bucket!r} of "
                f"context {self.storage.url!r}"
            )
            if problem:
                return f"{text}: {problem}"
            return f"{text}. list() shows the {self.kind} there."

        return _NotFound(message)

    def _bucket_problem(self, creating: bool = False) -> str | None:
        """Why this bucket cannot be read (a typo in the root or bucket?), or None. A fresh
        context on the default bucket is fine; ``creating``: only a missing bucket in a
        context that has other buckets is a problem."""
        return bucket_problem(self.storage, self.bucket, creating)

    # -- what subclasses define ------------------------------------------------------------
    def validate_info(self, info: dict[str, Any], kind: str) -> None:
        """Raise (via omfs._log helpers) when the ``info`` of a version of ``kind`` read from
        storage is not what this store writes. Called on every record before it is used."""
        raise NotImplementedError

    def _public_info(self, name: str, rec: VersionRecord) -> dict[str, Any]:
        """The store-specific items of a version's Metadata."""
        return dict(rec.info)

    def payload_sizes(self, meta: Metadata) -> dict[str, int]:
        """Each file under the object's ``_data/`` that version ``meta`` uses, with its size."""
        raise NotImplementedError

    def _legacy_info(self, name: str, info: dict[str, Any]) -> dict[str, Any]:
        """A format-1 sidecar's store-specific items as a format-2 ``info``."""
        raise NotImplementedError

    def _upgrade_record(self, name: str, rec: VersionRecord) -> VersionRecord:
        """Write what format 2 keeps outside the log for ``rec`` (schemas, payload sidecars)."""
        return rec

    def _export(
        self, name: str, rec: VersionRecord, state: State
    ) -> tuple[dict[str, Any], dict[str, int]]:
        """A version's ``info`` made self-contained (for a copy into another store), and
        the payload files to copy with their sizes."""
        raise NotImplementedError

    def _import_info(
        self, name: str, kind: str, info: dict[str, Any], renamed: dict[str, str], created: str
    ) -> dict[str, Any]:
        """``info`` exported from another store, for a version of ``name`` here whose payload
        files were copied under the ``renamed`` names (writes what lives beside the log)."""
        raise NotImplementedError

    # -- reading the log --------------------------------------------------------------------
    def _state(self, name: str, *, full: bool = False, reader: bool = True) -> State:
        """The log's state of ``name``. For readers an object is visible only while its
        index marker exists too, so that ``list()``, ``exists()``, ``get()`` and
        ``versions()`` always agree (see :meth:`_commit`); writers see the log as it is."""
        if reader:
            marker = self._marker(name)
            if marker is None:
                return State()
            if marker:  # a rebase is switching this log to another history: read that one
                adopted = self._adopted_state(name)
                if adopted is not None:
                    return adopted
        log = self._log(name)
        head = log.head()
        if head.seq == 0:
            legacy = self._legacy_state(name)
            if legacy is not None:
                return legacy
        return log.full(head) if full and not head.complete else head

    def _listed(self, name: str) -> bool:
        """True while ``name``'s index marker exists (one small read)."""
        return self._marker(name) is not None

    def _marker(self, name: str) -> bytes | None:
        """The index marker's content (empty, or ``adopting`` while a rebase switches the
        log to another history), None when there is none."""
        try:
            return self.storage.read_bytes(self._index_key(name))
        except FileNotFoundError:
            return None

    # -- adopting another history (the source side of a rebase) ------------------------------
    def _adopt_key(self, name: str) -> str:
        return f"{self._prefix(name)}/_log/{ADOPT_FILE}"

    def _adopted_state(self, name: str) -> State | None:
        """The complete state of the history a rebase is switching ``name`` to (from its
        journal), or None when there is no journal."""
        log = self._log(name)
        try:
            return log._load_parsed(
                self._adopt_key(name), lambda d: log._parse_checkpoint(d, d.get("checkpoint"))
            )
        except FileNotFoundError:
            return None

    def _adopt(self, name: str, journal: dict[str, Any]) -> None:
        """Switch ``name``'s log to the history in ``journal`` (see :func:`adopt_journal`):
        the journal first, then the marker says so (from then on readers read the journal's
        state), then the log files are rewritten, then marker and journal are cleared."""
        self.storage.write_bytes(self._adopt_key(name), _log._dumps(journal))
        self.storage.write_bytes(self._index_key(name), ADOPTING)
        self._finish_adopt(name)

    def _finish_adopt(self, name: str) -> None:
        """Complete a switch to another history from its journal (idempotent: a killed
        rebase is finished by the next writer or sync)."""
        log = self._log(name)
        try:
            doc = log._load(self._adopt_key(name))
        except FileNotFoundError:
            doc = None
        if doc is not None:
            try:
                self._adopted_state(name)  # validates the journal before it is followed
                commits = {int(k): v.encode() for k, v in doc["commits"].items()}
                checkpoints = {int(k): v.encode() for k, v in doc["checkpoints"].items()}
                common, old, hint = int(doc["common"]), int(doc["old"]), doc["hint"].encode()
            except (KeyError, ValueError, TypeError, AttributeError) as exc:
                raise log._corrupt(self._adopt_key(name), f"a bad rebase journal: {exc}") from None
            for seq in sorted(commits):
                self.storage.write_bytes(log.key(_log.commit_file(seq)), commits[seq])
            top = max(commits, default=common)
            stale = [log.key(_log.commit_file(s)) for s in range(top + 1, old + 1)]
            stale += [  # the old history's checkpoints (the journal holds the new one's, and
                # those up to the common commit are of the history both sides share)
                log.key(f)
                for f in log.files()
                if f.endswith(".checkpoint.json")
                and f[:1].isdigit()
                and int(f.split(".", 1)[0]) > common
                and int(f.split(".", 1)[0]) not in checkpoints
            ]
            self.storage.delete(stale)
            for seq, body in sorted(checkpoints.items()):
                self.storage.write_bytes(log.key(_log.checkpoint_file(seq)), body)
            self.storage.write_bytes(log.hint_key, hint)
        if self._marker(name):
            self.storage.write_bytes(self._index_key(name), b"")
        self.storage.delete([self._adopt_key(name)])

    def _dropping_key(self, name: str) -> str:
        return f"{self._prefix(name)}/_log/_dropping"

    def _select(
        self,
        spec: str,
        version: int | str | None = None,
        *,
        full: bool = False,
        at: Any = None,
    ) -> tuple[str, VersionRecord, State]:
        """The name, version record and state that ``spec`` (``name``, ``name@v3``,
        ``name@tag``, ``name@latest``) selects; the state is complete with ``full=True``.

        ``at`` (an ISO 8601 time or datetime) selects what the name or tag meant then.
        """
        if at is not None:
            return self._select_at(spec, version, parse_time(at))
        name, selector = split_selector(spec)
        if version is not None:
            _, from_version = split_selector(f"{name}@{version}")
            if selector is not None and from_version != selector:
                raise ValueError(
                    f"{spec!r} selects a version and version={version!r} selects another; "
                    "give only one"
                )
            selector = from_version
        state = self._state(name)
        if not state.exists:
            detail = f" at version {selector}" if isinstance(selector, int) else ""
            raise self._not_found(name, detail)
        if selector is None:
            number = state.latest
        elif isinstance(selector, str):
            if selector not in state.tags:
                raise self._not_found(name, f" with tag {selector!r}")
            number = state.tags[selector]
        else:
            number = selector
        if (number not in state.records or full) and not state.complete:
            state = self._log(name).full(state)
        rec = state.records.get(number)  # type: ignore[arg-type]
        if rec is None:
            raise self._not_found(name, f" at version {number}")
        if rec.dropped is not None:
            raise self._not_found(name, f" at version {number} (it was dropped)")
        return name, rec, state

    def _select_at(
        self, spec: str, version: int | str | None, when: datetime
    ) -> tuple[str, VersionRecord, State]:
        name, selector = split_selector(spec)
        if version is not None:
            selector = split_selector(f"{name}@{version}")[1]
        state = self._state(name, full=True)
        if not state.exists:
            raise self._not_found(name)
        stamp = when.isoformat()
        if isinstance(selector, str):
            moves = [e for e in state.tag_log if e["tag"] == selector and _before(e["at"], when)]
            number = moves[-1]["v"] if moves else None
            if number is None:
                raise self._not_found(name, f" with tag {selector!r} at {stamp}")
        else:
            alive = [
                r.version
                for r in state.records.values()
                if _before(r.created, when) and (r.dropped is None or not _before(r.dropped, when))
            ]
            if selector is None:
                if not alive:
                    raise self._not_found(name, f" at {stamp} (it had no version yet)")
                number = max(alive)
            elif selector in alive:
                number = selector
            else:
                raise self._not_found(name, f" at version {selector} at {stamp}")
        rec = state.records.get(number)
        if rec is None or rec.dropped is not None:
            raise self._not_found(
                name,
                f" at version {number}, which {selector or 'it'} pointed at on {stamp} "
                "(that version was dropped since)",
            )
        return name, rec, state

    def _metadata(self, name: str, rec: VersionRecord) -> Metadata:
        return Metadata(
            name=name,
            bucket=self.bucket,
            store=self.kind,
            kind=rec.kind,
            version=rec.version,
            created=rec.created,
            attributes=dict(rec.attributes),
            tag=rec.tag,
            lineage=rec.lineage,
            context=self.storage.url,
            history=list(rec.history),
            info={"operation": rec.op, **self._public_info(name, rec)},
        )

    def _resolve(self, spec: str, version: int | str | None = None, at: Any = None) -> Metadata:
        """The metadata that ``spec`` selects."""
        name, rec, _ = self._select(spec, version, at=at)
        return self._metadata(name, rec)

    # -- public reading API ----------------------------------------------------------------
    def list(self, pattern: str | None = None) -> list[str]:
        """Names in this bucket, sorted; ``pattern`` is a glob (``sales/*``, ``*2024*``).

        One listing of the bucket's index; a pattern with a literal start (``team1/*``)
        lists only names with that start where the storage can. A bucket that does not
        exist in a context that has others (a typo?) is a NotFoundError naming them; an
        empty or new context lists nothing.
        """
        names = self._names(pattern)
        if not names:
            problem = self._bucket_problem(creating=True)
            if problem:
                raise NotFoundError(f"Cannot list {self.kind}: {problem}")
        return names

    def _names(self, pattern: str | None = None) -> list[str]:
        literal = ""
        if pattern is not None:
            for c in pattern:
                if c in "*?[":
                    break
                literal += c
        found = self.storage.list_names(
            f"{self.bucket}/{self.kind}/_index", startswith=literal.replace("/", "~")
        )
        names = [f.replace("~", "/") for f in found if f[0] != "."]  # not temporary files
        if pattern is not None and pattern != literal + "*":  # 'team1/*': the prefix said it all
            names = fnmatch.filter(names, pattern)
        names.sort()
        return names

    def exists(self, name: str) -> bool:
        """True when ``name`` (or the version it selects) exists."""
        try:
            self._select(name)
        except NotFoundError:
            return False
        return True

    def metadata(self, name: str, *, version: int | str | None = None, at: Any = None) -> Metadata:
        """The metadata of the latest version, or of the one ``name@v3``, ``name@tag`` or
        ``version=`` selects; ``at=`` (ISO 8601) as it was selected at that time."""
        return self._resolve(name, version, at)

    def versions(self, name: str, *, at: Any = None) -> list[Metadata]:
        """Every live version of ``name``, oldest first; ``at=``: those live at that time
        (and still readable)."""
        name = check_name(name)
        state = self._state(name, full=True)
        live = state.live() if state.exists else []
        if at is not None:
            when = parse_time(at)
            live = [r for r in live if _before(r.created, when)]
        if not live:
            raise self._not_found(name)
        return [self._metadata(name, rec) for rec in live]

    # -- tags ------------------------------------------------------------------------------
    def tags(self, name: str) -> dict[str, int]:
        """The tags of ``name`` and the versions they point at now."""
        name = check_name(name)
        state = self._state(name)
        if not state.exists:
            raise self._not_found(name)
        return dict(sorted(state.tags.items()))

    def tag(self, spec: str, tag: str, *, reason: str | None = None) -> Metadata:
        """Point ``tag`` at the version ``spec`` selects (``m@v3``; the latest by default),
        moving it if it pointed elsewhere. Every move is kept: see :meth:`tag_history`."""
        tag = check_tag(tag)
        name, rec, _ = self._select(spec)
        number = rec.version

        def change(state: State) -> Commit:
            self._check_live(name, state, number)
            return Commit(op="tag", moves=[TagMove(tag, number, reason)])

        # the full state: the head after the move holds the newly tagged version's record
        state = self._commit(name, change, retry=True, full=True)
        return self._metadata(name, state.records[number])

    def untag(self, name: str, tag: str, *, reason: str | None = None) -> None:
        """Remove ``tag`` from ``name`` (recorded in its history)."""
        name, tag = check_name(name), check_tag(tag)

        def change(state: State) -> Commit:
            if not state.exists or tag not in state.tags:
                raise self._not_found(name, f" with tag {tag!r}")
            return Commit(op="untag", moves=[TagMove(tag, None, reason)])

        self._commit(name, change, retry=True)

    def tag_history(self, name: str, tag: str | None = None) -> list[dict[str, Any]]:
        """Every move of ``tag`` (of every tag by default), oldest first: ``tag``,
        ``version`` (None: removed), ``previous``, ``at``, ``user``, ``reason``, ``source``."""
        name = check_name(name)
        if tag is not None:
            check_tag(tag)
        state = self._state(name, full=True)
        if not state.exists:
            raise self._not_found(name)
        return [
            {
                "tag": e["tag"],
                "version": e["v"],
                "previous": e["prev"],
                "at": e["at"],
                "user": e.get("user", ""),
                "reason": e.get("reason"),
                "source": e.get("source"),
            }
            for e in state.tag_log
            if tag is None or e["tag"] == tag
        ]

    def rollback(self, name: str, tag: str, *, reason: str | None = None) -> Metadata:
        """Move ``tag`` back to the version it pointed at before its last move (recorded as
        a move of its own)."""
        name, tag = check_name(name), check_tag(tag)

        def change(state: State) -> Commit:
            if not state.exists or tag not in state.tags:
                raise self._not_found(name, f" with tag {tag!r}")
            moves = [e for e in state.tag_log if e["tag"] == tag]
            previous = moves[-1]["prev"] if moves else None
            if previous is None:
                raise ValueError(
                    f"Tag {tag!r} of {self._where(name)} has no previous version to roll "
                    f"back to; tag_history({name!r}, {tag!r}) shows its moves."
                )
            self._check_live(name, state, previous)
            why = reason or f"rollback from version {state.tags[tag]}"
            return Commit(op="rollback", moves=[TagMove(tag, previous, why)])

        state = self._commit(name, change, retry=True, full=True)
        return self._metadata(name, state.records[state.tags[tag]])

    # -- retention -------------------------------------------------------------------------
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
            raise ValueError("prune() needs keep_last=, older_than= or both")
        if keep_last is not None and (type(keep_last) is not int or keep_last < 0):
            raise ValueError(f"keep_last must be a whole number >= 0, got {keep_last!r}")
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
                if r.version not in kept and (cutoff is None or _before(r.created, cutoff))
            ]

        state = self._state(name, full=True)
        if not state.exists:
            raise self._not_found(name)
        if dry_run or not chosen(state):
            return chosen(state)
        picked: list[int] = []

        def change(state: State) -> Commit:
            picked[:] = chosen(state)
            return Commit(op="prune", drops=list(picked))

        state = self._commit(name, change, retry=True, full=True)
        self._delete_unused(name, state, picked)
        return picked

    def _delete_unused(self, name: str, state: State, dropped: list[int]) -> None:
        """Delete the payload files of ``dropped`` versions that no live version uses."""
        still_used: set[str] = set()
        for live in state.live():
            still_used.update(self._version_files(state, live))
        unused: set[str] = set()
        for number in dropped:
            unused.update(self._version_files(state, state.records[number]))
        self.storage.delete(self._data_key(name, f) for f in unused - still_used)

    def update_attributes(
        self, name: str, attributes: dict[str, Any], *, version: int | None = None
    ) -> Metadata:
        """Merge ``attributes`` into one version's metadata without touching its payload.

        The change is a commit of its own, recorded in the version's ``history``; concurrent
        updates are all kept (each re-applies on top of the other).
        """
        if not isinstance(attributes, dict):
            raise TypeError(f"attributes must be a dict, got {type(attributes).__name__}")
        base, rec, head = self._select(name, version)
        number = rec.version
        needs_full = head.complete or number not in head.records

        def change(state: State) -> Commit:
            self._check_live(base, state, number)
            return Commit(op="update-attributes", attributes=(number, dict(attributes), utcnow()))

        state = self._commit(base, change, retry=True, full=needs_full)
        return self._metadata(base, state.records[number])

    def _check_live(self, name: str, state: State, number: int) -> None:
        """Raise NotFoundError unless version ``number`` is live in ``state``. A head that
        does not hold it (another writer moved the tag or made the version that kept it
        there) says nothing of it: the caller's commit then reads the full state."""
        if not state.complete and state.exists and number not in state.records:
            raise _NeedsFullState
        rec = state.records.get(number)
        if not state.exists or rec is None or rec.dropped is not None:
            raise self._not_found(name, f" at version {number}")

    # -- writing ---------------------------------------------------------------------------
    def _commit(
        self,
        name: str,
        change: Callable[[State], Commit],
        *,
        retry: bool,
        expected_next: int | None = None,
        full: bool = False,
    ) -> State:
        """Commit ``change(state)`` on top of the newest state, atomically.

        ``change`` is called again with the new state when another writer committed first
        (``retry=True``); otherwise that is a CommitConflictError. ``expected_next`` is the
        next version number the caller saw before writing its payload: a replacing write
        fails when another version was created meanwhile (tag moves and attribute updates
        do not count). ``full=True`` hands ``change`` the complete state; a change handed a
        head may raise ``_NeedsFullState`` to be called again with it.
        """
        marker = self._marker(name)
        if marker:
            self._finish_adopt(name)
        state = self._writable_state(name, full)
        listed = marker is not None
        if not listed and state.exists:
            state = self._finish_interrupted_drop(name, state, full)
        log = self._log(name)
        for attempt in range(_MAX_ATTEMPTS):
            if expected_next is not None and state.next_version != expected_next:
                raise self._conflict(name, state.next_version - 1)
            try:
                commit = change(state)
            except _NeedsFullState:  # a head was not enough: the same change on every record
                full = True
                state = self._writable_state(name, full)
                continue
            if listed and state.exists and not _log.apply(state, commit, "").exists:
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
                time.sleep(random.uniform(0.001, 0.01) * min(attempt + 1, 20))
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

    def _bury(self, name: str, state: State) -> State:
        """Commit a tombstone on a log that no reader sees (gc of a killed write or drop)."""
        log = self._log(name)
        for _ in range(_MAX_ATTEMPTS):
            if not state.exists:
                return state
            try:
                return log.try_commit(state, Commit(op="delete", delete=True))
            except FileExistsError:
                state = self._state(name, full=True, reader=False)
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
            self._log(name).try_commit(state, Commit(op="delete", delete=True))
        self.storage.delete([self._dropping_key(name)])
        return self._writable_state(name, full)

    def _writable_state(self, name: str, full: bool) -> State:
        state = self._state(name, full=full, reader=False)
        if state.legacy:
            raise FormatError(
                f"{self._where(name)} was written by omfs 0.1 (sidecars in _versions/). It "
                "can be read as it is; to write to it, convert it first with 'om upgrade' "
                "(or store.upgrade(name))."
            )
        return state

    def _next_state(self, name: str) -> State:
        """The state a new write starts from (refuses the format-1 layout; completes a drop
        that was killed after it hid the object, so the write starts afresh)."""
        marker = self._marker(name)
        if marker:
            self._finish_adopt(name)
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
            before = self._state(base, full=True)
            if not before.exists:
                raise self._not_found(base)
        except NotFoundError:
            if force:
                return False
            raise
        if before.legacy:
            self._drop_legacy(base, before)
            return True
        self._commit(base, lambda _s: Commit(op="delete", delete=True), retry=True)
        return True  # its files stay for restore() until gc collects them (after the grace)

    def restore(self, name: str) -> Metadata:
        """Bring back an object dropped with ``drop(name)``, with its whole history
        (versions, tags, tag history), while gc has not collected its files. Returns the
        latest version's metadata. Refused (RestoreError, one line) when it exists, was never
        stored, or gc collected what it needs.

        It holds a gc lease and checks the files it brings back after taking it; a gc that
        decided before the lease to collect them claims the object first with a commit of
        its own (see :mod:`omfs.retention`), so exactly one of the two wins."""
        name = check_name(name)
        with self._leased(name):
            return self._restore(name)

    def _restore(self, name: str) -> Metadata:
        marker = self._marker(name)
        if marker:
            self._finish_adopt(name)
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
        log = self._log(name)
        restored = replace(before, seq=state.seq + 1, checkpoint=state.seq + 1, complete=True)
        log._write_checkpoint(restored)  # the restore commit's head names it: readers start there
        try:
            self._check_lease(name)
            log.try_commit(state, Commit(op="restore"), head=restored)
        except (FileExistsError, CommitConflictError) as exc:
            self.storage.delete([log.key(_log.checkpoint_file(restored.seq))])
            if isinstance(exc, CommitConflictError):
                raise RestoreError(
                    f"Cannot restore {self._where(name)}: {exc} (nothing was restored)."
                ) from None
            found = log._commit_at(state.seq + 1)
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
        log = self._log(name)
        last = log._commit_at(state.seq)
        if last is not None and last[0].op == COLLECT_OP:  # gc's claim: its files are gone
            raise gone
        found = log._commit_at(state.seq - 1)
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
        data = set(self.storage.list_names(f"{self._prefix(name)}/_data"))
        logs = set(log.files())
        for rec in before.live():
            schema = rec.info.get("schema")
            if not set(self._version_files(before, rec)) <= data or (
                isinstance(schema, str) and f"s-{schema}.schema" not in logs
            ):
                raise gone
        return before

    def _own_files(self, rec: VersionRecord) -> list[str]:
        """The payload files that ``rec`` itself added (and, for models, their sidecars)."""
        raise NotImplementedError

    def _drop_version(self, name: str, spec: str) -> None:
        """Commit that one version is dropped, then delete the payload no live version uses."""
        _, rec, _ = self._select(spec)
        number = rec.version

        def change(state: State) -> Commit:
            self._check_live(name, state, number)
            return Commit(op="drop-version", drops=[number])

        state = self._commit(name, change, retry=True, full=True)
        self._delete_unused(name, state, [number])

    def _version_files(self, state: State, rec: VersionRecord) -> list[str]:
        """Every payload file version ``rec`` reads (for datasets: its parents' parts too)."""
        return self._own_files(rec)

    # -- format 1 (omfs 0.1): read, drop, upgrade ---------------------------------------------
    def _legacy_state(self, name: str) -> State | None:
        """The state of an object written in the format-1 layout, or None if there is none."""
        import json

        folder = f"{self._prefix(name)}/_versions"
        files = self.storage.list_names(folder)
        numbers = sorted(
            int(f[1:-5])
            for f in files
            if f.startswith("v") and f.endswith(".json") and f[1:-5].isdigit()
        )
        if not numbers:
            return None
        records: dict[int, VersionRecord] = {}
        for number in numbers:
            key = f"{folder}/v{number:06d}.json"
            where = self.storage.path(key)
            try:
                doc = json.loads(self.storage.read_bytes(key))
                if not isinstance(doc, dict) or doc.get("format") != 1:
                    raise ValueError("not a format-1 sidecar")
                if (doc.get("name"), doc.get("bucket"), doc.get("store")) != (
                    name,
                    self.bucket,
                    self.kind,
                ) or doc.get("version") != number:
                    raise ValueError("it names another object or version")
                if doc.get("dropped"):
                    records[number] = VersionRecord(
                        number,
                        str(doc.get("created", "")),
                        _log.DROPPED_KIND,
                        "put",
                        dropped="legacy",
                    )
                    continue
                known = {"format", "name", "bucket", "store", "kind", "version", "created"}
                known |= {"attributes", "tag", "lineage", "context", "history"}
                info = {k: v for k, v in doc.items() if k not in known}
                rec_doc = {
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
                records[number] = _log.validate_record(rec_doc, self.validate_info)
            except (ValueError, TypeError, KeyError, _log._Corrupt) as exc:
                raise IntegrityError(
                    f"The metadata file {where!r} is corrupt ({exc}); omfs did not follow it. "
                    "Restore it from a backup or drop that version."
                ) from None
        live = [v for v in numbers if records[v].dropped is None]
        tags: dict[str, int] = {}
        for v in live:
            if records[v].tag:
                tags[records[v].tag] = v  # type: ignore[index]
        return State(
            next_version=numbers[-1] + 1,
            latest=live[-1] if live else None,
            tags=tags,
            records=records,
            legacy=True,
        )

    def _drop_legacy(self, name: str, state: State) -> None:
        self.storage.delete([self._index_key(name)])
        self.storage.delete_tree(f"{self._prefix(name)}/_versions")
        self.storage.delete_tree(f"{self._prefix(name)}/_data")

    def upgrade(self, name: str) -> bool:
        """Convert one object from the omfs 0.1 layout to the commit log, in place.

        Schemas and payload sidecars are written first, then one commit holding every
        version appears atomically (readers see the old layout until then, the new after);
        the old sidecars are removed last. An upgrade killed after its commit left some of
        them: running it again removes them. Returns False when there was nothing to do.
        """
        name = check_name(name)
        log = self._log(name)
        if log.head().seq:
            return self._finish_upgrade(name)
        legacy = self._legacy_state(name)
        if legacy is None:
            return False
        with self._leased(name):
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
            log._write_checkpoint(state)
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

    # -- integrity ------------------------------------------------------------------------
    def _check_payload_present(self, name: str, version: int, filename: str) -> str:
        key = self._data_key(name, filename)
        if not self.storage.exists(key):
            raise self._missing_payload(name, version, filename)
        return key

    def _missing_payload(self, name: str, version: int, filename: str) -> IntegrityError:
        return IntegrityError(
            f"The payload {filename!r} of {self._where(name)} version {version} is missing. "
            "The log refers to a file that was deleted outside omfs; drop that version or "
            "restore the file ('om fsck' lists every such problem)."
        )

    def fsck(self, name: str) -> list[str]:
        """Problems with ``name``: its log, and every live version's payload files
        (present, of the recorded size and sha256). An empty list means all is well."""
        try:
            state = self._state(name, full=True)
        except (IntegrityError, OSError) as exc:
            return [str(exc)]
        problems: list[str] = []
        for rec in state.live() if state.exists else []:
            problems.extend(self._check_version(name, state, rec))
        return problems

    def _check_version(self, name: str, state: State, rec: VersionRecord) -> list[str]:
        raise NotImplementedError
