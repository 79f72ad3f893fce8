"""The per-object commit log (format 2): small commits, a head in every commit, checkpoints.

Where each file lives is :mod:`omfs.objects.layout`; the records are
:mod:`omfs.objects.records`.

A commit is created with put-if-absent (:meth:`Storage.create`), so two writers never both
win commit ``n``. It records only what it changes (a new version record with the parts it
adds, a dropped version, an attribute update, a tag move) plus a *head*: the counters, the
tags and the records of the latest live version and of every tagged version. The head has
a size bounded by the number of tags, never by the history, so the latest version, a tag,
``exists()`` and an append need three small reads of the log: the hint, the commit it
names, and a probe for the next commit (the hint may be stale; probing forward corrects
it). (Readers also check the object's index marker: see ``omfs.objects.versioned``.)

Everything older (all versions, the parts of appended datasets) is folded into a checkpoint
every :data:`CHECKPOINT_INTERVAL` commits; readers of the full state read the newest
checkpoint and at most that many commits after it. Old checkpoints are deleted, so the
metadata of an object stays proportional to its history, not to its square.

Every document read is validated before anything in it is used (:func:`validate_record`
and the store's own ``validate_info``): payload names must be plain file names of the
object's own ``_data/``, the object named inside must be the one read, numbers must be
numbers. A document that fails is reported as corrupt (IntegrityError naming the file) and
never followed.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, TypeVar

from omfs.errors import FormatError, IntegrityError
from omfs.objects.layout import (
    CHECKPOINT_INTERVAL,
    HINT_FILE,
    checkpoint_file,
    commit_file,
    superseded_checkpoint,
)
from omfs.objects.metadata import utcnow
from omfs.objects.records import (
    DROPPED_KIND,
    Commit,
    CorruptRecord,
    InfoValidator,
    State,
    TagMove,
    VersionRecord,
    apply,
    as_dict,
    as_int,
    as_list,
    as_text,
    check_payload_name,
    dumps,
    is_payload_file,
    parse_actions,
    parse_state,
    tag_entry,
    validate_record,
)
from omfs.objects.replay import replay as replay_commits
from omfs.storage import Storage

__all__ = [
    "CHECKPOINT_INTERVAL",
    "DROPPED_KIND",
    "FORMAT",
    "Commit",
    "ObjectLog",
    "ParsedCommit",
    "State",
    "TagMove",
    "VersionRecord",
    "apply",
    "check_payload_name",
    "checkpoint_file",
    "clear_cache",
    "commit_file",
    "commits_made",
    "is_payload_file",
    "validate_record",
]

#: how many commits this process has made (see :func:`commits_made`)
_commits_made = [0]


def commits_made() -> int:
    """How many commits this process has made: a reader that caches metadata re-reads it
    once this changes (the runtime does, so a put is seen by the next task at once)."""
    return _commits_made[0]


FORMAT = 2
_CACHE_ENTRIES = 128
_T = TypeVar("_T")
#: A commit as read: its changes, the head after it, its time and its user.
ParsedCommit = tuple[Commit, State, str, str]

#: Kept for callers not yet on :func:`omfs.objects.records.dumps` (ops.sync, ops.bundle).
_dumps = dumps


# -- the log of one object ---------------------------------------------------------------
class _Cache:
    """Schemas read, per process. Only content-addressed documents are kept: their name
    says what they hold, so a root deleted and made anew cannot make an entry stale."""

    def __init__(self) -> None:
        self._items: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        return None

    def put(self, key: tuple[str, str], value: Any) -> None:
        with self._lock:
            self._items[key] = value
            while len(self._items) > _CACHE_ENTRIES:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_cache = _Cache()


def clear_cache() -> None:
    """Forget the schemas this process keeps (benchmarks that count requests)."""
    _cache.clear()


class ObjectLog:
    """The commit log of one object: read its head or full state, and commit changes.

    Example::

        log = store.object_log("sales")
        head = log.head()                     # three small reads
        state = log.full(head)                # every version record
        new = log.try_commit(state, Commit(op="tag", moves=[TagMove("prod", 3)]))
    """

    def __init__(
        self,
        storage: Storage,
        prefix: str,
        identity: dict[str, str],
        validate_info: InfoValidator,
    ):
        """
        Args:
            storage: where the object lives.
            prefix: the object's folder, ``{bucket}/{store}/{name}``.
            identity: ``{"store", "bucket", "name"}``, checked in every document read.
            validate_info: the store's check of a version's ``info``.
        """
        self.storage = storage
        self.prefix = prefix  # {bucket}/{store}/{name}
        self.identity = identity  # {"store", "bucket", "name"}
        self.validate_info = validate_info

    # -- keys ---------------------------------------------------------------------------
    def key(self, filename: str) -> str:
        """The key of ``filename`` under this object's ``_log/``."""
        return f"{self.prefix}/_log/{filename}"

    @property
    def hint_key(self) -> str:
        return self.key(HINT_FILE)

    def schema_key(self, schema_id: str) -> str:
        return self.key(f"s-{schema_id}.schema")

    # -- reading ------------------------------------------------------------------------
    def corrupt(self, key: str, why: str) -> IntegrityError:
        """The IntegrityError that names the log file ``key`` and why it is not followed."""
        return IntegrityError(
            f"The log file {self.storage.path(key)!r} is corrupt or was tampered with ({why}); "
            "omfs did not follow it. Restore it from a backup, or run 'om fsck' to see what "
            "else is affected."
        )

    def load(self, key: str) -> dict[str, Any]:
        """The JSON document at ``key``, checked to be of this format and this object.

        Raises FileNotFoundError when it does not exist, IntegrityError when it is not a
        document of this log, FormatError when a newer omfs wrote it.
        """
        return self._document(key, self.storage.read_bytes(key))

    def _document(self, key: str, data: bytes) -> dict[str, Any]:
        """The JSON document ``data`` read from ``key``, checked: an object of this log's
        format naming this object."""
        try:
            doc = json.loads(data)
        except ValueError as exc:
            raise self.corrupt(key, f"not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise self.corrupt(key, "not a JSON object")
        fmt = doc.get("format")
        if fmt != FORMAT:
            if type(fmt) is int and fmt > FORMAT:
                raise FormatError(
                    f"{self.storage.path(key)!r} was written in log format {fmt} by a newer "
                    f"omfs; this omfs reads format {FORMAT}. Upgrade omfs to read it."
                )
            raise self.corrupt(key, f"unknown format {fmt!r}")
        for k, v in self.identity.items():
            if doc.get(k) != v:
                raise self.corrupt(key, f"it names {k} {doc.get(k)!r}, not {v!r}")
        return doc

    def load_parsed(self, key: str, parse: Callable[[dict[str, Any]], _T]) -> _T:
        """``parse(load(key))``, a CorruptRecord it raises reported as an IntegrityError
        naming ``key``.

        Example: ``log.load_parsed(key, lambda d: log.parse_checkpoint(d, 5))``.
        """
        doc = self.load(key)
        try:
            return parse(doc)
        except CorruptRecord as exc:
            raise self.corrupt(key, str(exc)) from None

    def _parse_commit(self, doc: dict[str, Any], seq: int) -> ParsedCommit:
        if doc.get("seq") != seq:
            raise CorruptRecord(f"it says it is commit {doc.get('seq')!r}")
        op = as_text(doc.get("op"), "op")
        at = as_text(doc.get("at"), "at")
        user = as_text(doc.get("user", ""), "user")
        commit = parse_actions(op, as_list(doc.get("actions"), "actions"), self.validate_info)
        head_doc = as_dict(doc.get("head"), "head", optional=False)
        head = parse_state(head_doc, seq, self.validate_info, complete=False)
        return commit, head, at, user

    # -- documents read elsewhere (sync checks what it copies as a read would) ------------
    def parse(self, filename: str, data: bytes) -> Any:
        """Validate the bytes of the log file ``filename`` (a commit, a checkpoint, the
        hint) exactly as a read of it would.

        Args:
            filename: a file name under ``_log/`` (``commit_file(7)``, ``_last.json``, …).
            data: its bytes.

        Returns:
            For a commit a :data:`ParsedCommit`, for a checkpoint its State, for the hint
            ``(seq, checkpoint)``. IntegrityError / FormatError name the file; ValueError
            when ``filename`` is not a file of the log.
        """
        key = self.key(filename)
        doc = self._document(key, data)
        try:
            if filename == HINT_FILE:
                return self._parse_hint(doc)
            seq = int(filename.split(".", 1)[0])
            if filename == checkpoint_file(seq):
                return self.parse_checkpoint(doc, seq)
            if filename == commit_file(seq):
                return self._parse_commit(doc, seq)
        except CorruptRecord as exc:
            raise self.corrupt(key, str(exc)) from None
        raise ValueError(f"{filename!r} is not a file of the log")

    @staticmethod
    def _parse_hint(doc: dict[str, Any]) -> tuple[int, int]:
        return as_int(doc.get("seq"), "seq", 0), as_int(doc.get("checkpoint"), "checkpoint", 0)

    def commit_at(self, seq: int) -> ParsedCommit | None:
        """Commit ``seq``, parsed and validated, or None when it does not exist.

        Returns:
            ``(commit, head after it, at, user)``; IntegrityError when it is corrupt.
        """
        try:
            return self.load_parsed(
                self.key(commit_file(seq)), lambda d: self._parse_commit(d, seq)
            )
        except FileNotFoundError:
            return None

    def _hint(self) -> tuple[int, int]:
        """(newest commit, newest checkpoint) as last written; (0, 0) when there is none."""
        try:
            return self._parse_hint(self.load(self.hint_key))
        except FileNotFoundError:
            return 0, 0
        except (CorruptRecord, IntegrityError):
            return 0, 0  # a hint is only a hint: fall back to probing

    def head(self) -> State:
        """The head after the newest commit: hint, the commit it names, probes forward.

        The head holds the latest live version and the tagged ones (``complete`` False);
        ``seq`` 0 when the log has no commit.
        """
        seq, checkpoint = self._hint()
        state = State(checkpoint=checkpoint, complete=False)
        if seq:
            found = self.commit_at(seq)
            if found is None:  # the hint ran ahead of a deleted log: start from scratch
                seq = 0
            else:
                state = found[1]
        while (found := self.commit_at(seq + 1)) is not None:
            seq += 1
            state = found[1]
        state = replace(state, seq=seq, complete=False)
        if state.base <= checkpoint <= seq:
            state = replace(state, checkpoint=max(state.checkpoint, checkpoint))
        return state

    def full(self, head: State | None = None) -> State:
        """Every version record: the newest checkpoint plus the commits after it.

        Args:
            head: the head to complete (read when not given).

        Returns:
            The complete state after ``head.seq`` (with its tag history).
        """
        head = head or self.head()
        start = State(seq=head.base, deleted=head.base > 0, base=head.base)
        cp = head.checkpoint if head.base < head.checkpoint <= head.seq else 0
        if cp:
            with contextlib.suppress(FileNotFoundError):  # else replay from the base
                start = self.load_parsed(
                    self.key(checkpoint_file(cp)),
                    lambda d: self.parse_checkpoint(d, cp),
                )
        seqs = list(range(start.seq + 1, head.seq + 1))
        found = self._fetch_commits(seqs)
        state = start
        for seq in seqs:
            parsed = found[seq]
            if parsed is None:
                raise self.corrupt(self.key(commit_file(seq)), "the commit is missing")
            commit, _, at, user = parsed
            state = apply(state, commit, at, user)
        return replace(state, complete=True, checkpoint=max(cp, head.checkpoint))

    def _fetch_commits(self, seqs: list[int]) -> dict[int, ParsedCommit | None]:
        if len(seqs) <= 1 or self.storage.is_local:
            return {s: self.commit_at(s) for s in seqs}
        with ThreadPoolExecutor(max_workers=min(8, len(seqs))) as pool:
            return dict(zip(seqs, pool.map(self.commit_at, seqs), strict=True))

    def parse_checkpoint(self, doc: dict[str, Any], seq: Any) -> State:
        """The complete state a checkpoint document holds (CorruptRecord when it is not
        the checkpoint of commit ``seq``)."""
        if doc.get("checkpoint") != seq:
            raise CorruptRecord(f"it says it is the checkpoint of commit {doc.get('checkpoint')!r}")
        body = as_dict(doc.get("state"), "state", optional=False)
        state = parse_state(body, seq, self.validate_info)
        tag_log = [tag_entry(e) for e in as_list(body.get("tag_log"), "tag_log")]
        return replace(state, complete=True, checkpoint=seq, tag_log=tag_log)

    # -- checking copied history against the history it extends (sync, import, rebase) -------
    def replay(
        self,
        start: State,
        commits: dict[int, ParsedCommit],
        checkpoints: dict[int, State],
        named: frozenset[int] = frozenset(),
        before: State | None = None,
    ) -> tuple[State, dict[int, State]]:
        """``commits`` replayed on ``start`` and checked: see :func:`omfs.objects.replay.replay`."""
        return replay_commits(self, start, commits, checkpoints, named, before)

    # -- schemas (content-addressed) -------------------------------------------------------
    def read_schema(self, schema_id: str) -> bytes:
        """The bytes of the schema ``schema_id`` (cached; checked against its name)."""
        key = self.schema_key(schema_id)
        ident = (self.storage.url, key)
        data: bytes | None = _cache.get(ident)
        if data is None:
            data = self.storage.read_bytes(key)
            if hashlib.sha256(data).hexdigest()[:32] != schema_id:
                raise self.corrupt(key, "its content does not match its name")
            _cache.put(ident, data)
        return data

    def write_schema(self, data: bytes) -> str:
        """Store a schema once, named by its content; returns its id."""
        schema_id = hashlib.sha256(data).hexdigest()[:32]
        key = self.schema_key(schema_id)
        with contextlib.suppress(FileExistsError):
            self.storage.create(key, data)
        _cache.put((self.storage.url, key), data)
        return schema_id

    # -- writing ------------------------------------------------------------------------
    def try_commit(self, state: State, commit: Commit, head: State | None = None) -> State:
        """Create commit ``state.seq + 1``; FileExistsError when another writer took it.

        Args:
            state: the state ``commit`` was computed from.
            commit: the changes.
            head: the state after the commit when it is not derived from ``commit`` (an
                upgrade from the old layout, whose versions are all in a checkpoint).

        Returns:
            The state after the commit.
        """
        at, user = utcnow(), _user()
        seq = state.seq + 1
        new = apply(state, commit, at, user) if head is None else replace(head, seq=seq)
        doc = {
            "format": FORMAT,
            **self.identity,
            "seq": seq,
            "op": commit.op,
            "at": at,
            "user": user,
            "actions": commit.actions(),
            "head": new.head_doc(),
        }
        self.storage.create(self.key(commit_file(seq)), dumps(doc))
        _commits_made[0] += 1
        return self._after_commit(state, new)

    def _after_commit(self, before: State, new: State) -> State:
        """Best effort: a checkpoint every CHECKPOINT_INTERVAL commits, then the hint.
        Returns ``new``, naming the checkpoint when one was written."""
        if new.seq % CHECKPOINT_INTERVAL == 0:
            with contextlib.suppress(OSError, IntegrityError):
                self.write_checkpoint(new if before.complete else self.full(new))
                new = replace(new, checkpoint=new.seq)
                older = superseded_checkpoint(new.seq)
                if older is not None:
                    self.storage.delete([self.key(checkpoint_file(older))])
        with contextlib.suppress(OSError):
            hint = {"format": FORMAT, **self.identity, "seq": new.seq, "checkpoint": new.checkpoint}
            self.storage.write_bytes(self.hint_key, dumps(hint))
        return new

    def write_checkpoint(self, full: State) -> None:
        """Write the checkpoint of commit ``full.seq`` (every record and the tag history).

        Overwritten, not put-if-absent: a checkpoint is a function of the log, and one left
        by a killed restore must not stand in for a later commit's.
        """
        doc = {
            "format": FORMAT,
            **self.identity,
            "checkpoint": full.seq,
            "state": {
                **full.head_doc(),
                "checkpoint": 0,
                "records": [r.to_doc() for _, r in sorted(full.records.items())],
                "tag_log": full.tag_log,
            },
        }
        self.storage.write_bytes(self.key(checkpoint_file(full.seq)), dumps(doc))

    def files(self) -> list[str]:
        """Every file under ``_log/`` (one listing, no stat per entry; for drop)."""
        return self.storage.list_names(f"{self.prefix}/_log")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
