"""The per-object commit log (format 2): small commits, a head in every commit, checkpoints.

Layout of one object under ``{bucket}/{store}/{name}/``::

    _log/00000000000000000007.json              commit 7: what it changed, plus the head after it
    _log/00000000000000000005.checkpoint.json   every version record and tag as of commit 5
    _log/_last.json                             hint: the newest commit and checkpoint seen
    _log/s-<sha256[:32]>.schema                 a dataset schema, stored once, named by content
    _data/<32 hex>.<ext>                        payload files (and a model payload's <id>.json)

A commit is created with put-if-absent (:meth:`Storage.create`), so two writers never both
win commit ``n``. It records only what it changes (a new version record with the parts it
adds, a dropped version, an attribute update, a tag move) plus a *head*: the counters, the
tags and the records of the latest live version and of every tagged version. The head has
a size bounded by the number of tags, never by the history, so the latest version, a tag,
``exists()`` and an append need three small reads of the log: the hint, the commit it
names, and a probe for the next commit (the hint may be stale; probing forward corrects
it). (Readers also check the object's index marker: see ``omfs._store``.)

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
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from omfs._names import check_tag
from omfs._storage import Storage
from omfs.errors import FormatError, IntegrityError
from omfs.metadata import utcnow

__all__ = [
    "CHECKPOINT_INTERVAL",
    "FORMAT",
    "Commit",
    "ObjectLog",
    "State",
    "TagMove",
    "VersionRecord",
]

FORMAT = 2
#: A full checkpoint is written after every this many commits; readers of the full state
#: replay at most this many commits after the newest checkpoint.
CHECKPOINT_INTERVAL = 5
_SEQ_WIDTH = 20
_PAYLOAD = re.compile(r"[0-9a-f]{32}\.(parquet|joblib|bin)")
_MAX_TEXT = 4096
_CACHE_ENTRIES = 128


def _dumps(doc: Any) -> bytes:
    """Compact JSON through the C encoder (no indent: indent forces the Python encoder)."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def commit_file(seq: int) -> str:
    return f"{seq:0{_SEQ_WIDTH}d}.json"


def checkpoint_file(seq: int) -> str:
    return f"{seq:0{_SEQ_WIDTH}d}.checkpoint.json"


def is_payload_file(name: object) -> bool:
    """True for the plain payload file names omfs writes: ``<32 hex>.<ext>``."""
    return isinstance(name, str) and _PAYLOAD.fullmatch(name) is not None


# -- records ------------------------------------------------------------------------------
@dataclass
class VersionRecord:
    """One version of an object as the log holds it. ``info`` is store-specific."""

    version: int
    created: str
    kind: str
    op: str
    attributes: dict[str, Any] = field(default_factory=dict)
    tag: str | None = None
    lineage: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    dropped: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "v": self.version,
            "created": self.created,
            "kind": self.kind,
            "op": self.op,
            "info": self.info,
        }
        for key in ("attributes", "tag", "lineage", "history", "dropped"):
            value = getattr(self, key)
            if value:
                doc[key] = value
        return doc


@dataclass
class State:
    """What the log says of one object after commit ``seq``.

    ``records`` holds every version when ``complete``; a head (read from one commit) holds
    the latest live version and the tagged ones only.
    """

    seq: int = 0
    next_version: int = 1
    latest: int | None = None
    tags: dict[str, int] = field(default_factory=dict)
    records: dict[int, VersionRecord] = field(default_factory=dict)
    deleted: bool = False
    complete: bool = True
    checkpoint: int = 0  # the newest checkpoint its writer knew of
    base: int = 0  # the commit that last deleted the object: history starts after it
    legacy: bool = False  # read from the format-1 layout (``_versions/``)
    tag_log: list[dict[str, Any]] = field(default_factory=list)  # every tag move (complete)

    @property
    def exists(self) -> bool:
        return self.latest is not None and not self.deleted

    def live(self) -> list[VersionRecord]:
        return [r for _, r in sorted(self.records.items()) if r.dropped is None]

    def head_doc(self) -> dict[str, Any]:
        keep = {v for v in (self.latest, *self.tags.values()) if v is not None}
        return {
            "next": self.next_version,
            "latest": self.latest,
            "tags": self.tags,
            "deleted": self.deleted,
            "checkpoint": self.checkpoint,
            "base": self.base,
            "records": [self.records[v].to_doc() for v in sorted(keep) if v in self.records],
        }


@dataclass
class TagMove:
    """Point ``tag`` at ``version`` (None: remove it), with an optional reason and, for a tag
    that came with a promotion, where it came from."""

    tag: str
    version: int | None
    reason: str | None = None
    source: dict[str, Any] | None = None

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"name": self.tag, "v": self.version}
        if self.reason:
            doc["reason"] = self.reason
        if self.source:
            doc["source"] = self.source
        return doc


@dataclass
class Commit:
    """The changes of one commit: at most one new version, plus metadata actions."""

    op: str
    version: VersionRecord | None = None
    drops: list[int] = field(default_factory=list)
    attributes: tuple[int, dict[str, Any], str] | None = None  # version, values set, time
    moves: list[TagMove] = field(default_factory=list)
    delete: bool = False

    def actions(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if self.version is not None:
            out.append({"add_version": self.version.to_doc()})
        out.extend({"drop": v} for v in self.drops)
        if self.attributes is not None:
            v, values, at = self.attributes
            out.append({"attributes": {"v": v, "set": values, "at": at}})
        out.extend({"tag": m.to_doc()} for m in self.moves)
        if self.delete:
            out.append({"delete": True})
        return out


def apply(state: State, commit: Commit, at: str, user: str = "") -> State:
    """The state after ``commit`` (a new State; ``state`` is not changed)."""
    records = dict(state.records)
    tags = dict(state.tags)
    tag_log = list(state.tag_log) if state.complete else []
    next_version, latest, deleted = state.next_version, state.latest, state.deleted

    def move(tag: str, version: int | None, reason: Any = None, source: Any = None) -> None:
        prev = tags.get(tag)
        if version is None:
            tags.pop(tag, None)
        else:
            tags[tag] = version
        entry = {"tag": tag, "v": version, "prev": prev, "at": at, "user": user}
        if reason:
            entry["reason"] = reason
        if source:
            entry["source"] = source
        tag_log.append(entry)

    if commit.delete:
        seq = state.seq + 1
        return State(seq=seq, deleted=True, complete=state.complete, base=seq)
    if commit.version is not None:
        rec = commit.version
        records[rec.version] = rec
        next_version = rec.version + 1
        latest, deleted = rec.version, False
        if rec.tag:  # put(..., tag=) moves the tag to the new version
            move(rec.tag, rec.version)
    for dropped in commit.drops:
        if dropped in records:
            records[dropped] = replace(records[dropped], dropped=at)
            for tag in [t for t, v in tags.items() if v == dropped]:
                move(tag, None, f"version {dropped} was dropped")
    if commit.drops and latest in commit.drops:
        live = [v for v, r in records.items() if r.dropped is None]
        latest = max(live) if live else None
    if commit.attributes is not None:
        v, values, when = commit.attributes
        if v in records:
            rec = records[v]
            entry = {"at": when, "op": "update-attributes", "before": rec.attributes, "set": values}
            records[v] = replace(
                rec, attributes={**rec.attributes, **values}, history=[*rec.history, entry]
            )
    for m in commit.moves:
        move(m.tag, m.version, m.reason, m.source)
    return State(
        seq=state.seq + 1,
        next_version=next_version,
        latest=latest,
        tags=tags,
        records=records,
        deleted=deleted,
        complete=state.complete,
        checkpoint=state.checkpoint,
        base=state.base,
        tag_log=tag_log,
    )


#: Commits without changes whose state is the checkpoint of the same number.
_SNAPSHOT_OPS = ("upgrade", "restore")


def _is_snapshot(commit: Commit) -> bool:
    return commit.op in _SNAPSHOT_OPS and not commit.actions()


def _plain(doc: Any) -> Any:
    """``doc`` as JSON gives it back (tuples as lists, keys as strings): comparable."""
    return json.loads(_dumps(doc))


def _head_view(state: State) -> Any:
    """What a head says: the counters, the tags, and every version record it holds."""
    return _plain(
        {
            "next": state.next_version,
            "latest": state.latest,
            "tags": state.tags,
            "deleted": state.deleted,
            "base": state.base,
            "records": {v: r.to_doc() for v, r in sorted(state.records.items())}
            if state.complete is False
            else {
                v: state.records[v].to_doc()
                for v in sorted({x for x in (state.latest, *state.tags.values()) if x})
                if v in state.records
            },
        }
    )


def _state_view(state: State) -> Any:
    """What a complete state holds: counters, tags, every version record, tag history."""
    return _plain(
        {
            "next": state.next_version,
            "latest": state.latest,
            "tags": state.tags,
            "deleted": state.deleted,
            "base": state.base,
            "records": {v: r.to_doc() for v, r in sorted(state.records.items())},
            "tag_log": state.tag_log,
        }
    )


# -- validation of what is read ---------------------------------------------------------
class _Corrupt(Exception):
    """Raised inside validation; turned into an IntegrityError naming the file."""


def _int(value: Any, what: str, minimum: int = 1) -> int:
    if type(value) is not int or value < minimum:
        raise _Corrupt(f"{what} must be a whole number >= {minimum}, got {value!r}")
    return value


def _text(value: Any, what: str, optional: bool = False) -> Any:
    if value is None and optional:
        return None
    if not isinstance(value, str) or len(value) > _MAX_TEXT:
        raise _Corrupt(f"{what} must be a short string, got {type(value).__name__}")
    return value


def _dict(value: Any, what: str, optional: bool = True) -> dict[str, Any]:
    if value is None and optional:
        return {}
    if not isinstance(value, dict):
        raise _Corrupt(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _Corrupt(f"{what} must be a JSON array, got {type(value).__name__}")
    return value


def _tag(value: Any) -> str:
    try:
        return check_tag(_text(value, "a tag"))
    except ValueError as exc:
        raise _Corrupt(str(exc)) from None


#: The kind of a format-1 tombstone (a version dropped by omfs 0.1): it holds no payload.
DROPPED_KIND = "dropped"


def _tag_entry(doc: Any) -> dict[str, Any]:
    """One entry of a checkpoint's tag history, checked."""
    doc = _dict(doc, "a tag move", optional=False)
    entry = {
        "tag": _tag(doc.get("tag")),
        "v": None if doc.get("v") is None else _int(doc.get("v"), "a version"),
        "prev": None if doc.get("prev") is None else _int(doc.get("prev"), "a version"),
        "at": _text(doc.get("at"), "at"),
        "user": _text(doc.get("user", ""), "user"),
    }
    if doc.get("reason") is not None:
        entry["reason"] = _text(doc["reason"], "reason")
    if doc.get("source") is not None:
        entry["source"] = _dict(doc["source"], "source")
    return entry


def validate_record(
    doc: Any, validate_info: Callable[[dict[str, Any], str], None]
) -> VersionRecord:
    """A VersionRecord from its JSON form, every field checked."""
    doc = _dict(doc, "a version record", optional=False)
    info = _dict(doc.get("info"), "info")
    kind = _text(doc.get("kind"), "kind")
    if kind == DROPPED_KIND:
        if info or doc.get("dropped") is None:
            raise _Corrupt("a tombstone holds no payload and is dropped")
    else:
        validate_info(info, kind)
    return VersionRecord(
        version=_int(doc.get("v"), "a version number"),
        created=_text(doc.get("created"), "created"),
        kind=kind,
        op=_text(doc.get("op"), "op"),
        attributes=_dict(doc.get("attributes"), "attributes"),
        tag=None if doc.get("tag") is None else _tag(doc.get("tag")),
        lineage=_dict(doc.get("lineage"), "lineage") or None,
        history=[_dict(h, "a history entry", False) for h in _list(doc.get("history"), "history")],
        dropped=_text(doc.get("dropped"), "dropped", optional=True),
        info=info,
    )


def check_payload_name(name: Any, what: str = "a payload file name") -> str:
    """``name`` if it is a plain payload file name of ``_data/``; else the log is corrupt."""
    if not is_payload_file(name):
        raise _Corrupt(
            f"{what} must be a plain file name '<32 hex digits>.<parquet|joblib|bin>', got "
            f"{str(name)[:80]!r}"
        )
    return name


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
    """The commit log of one object: read its head or full state, and commit changes."""

    def __init__(
        self,
        storage: Storage,
        prefix: str,
        identity: dict[str, str],
        validate_info: Callable[[dict[str, Any], str], None],
    ):
        self.storage = storage
        self.prefix = prefix  # {bucket}/{store}/{name}
        self.identity = identity  # {"store", "bucket", "name"}
        self.validate_info = validate_info

    # -- keys ---------------------------------------------------------------------------
    def key(self, filename: str) -> str:
        return f"{self.prefix}/_log/{filename}"

    @property
    def hint_key(self) -> str:
        return self.key("_last.json")

    def schema_key(self, schema_id: str) -> str:
        return self.key(f"s-{schema_id}.schema")

    # -- reading ------------------------------------------------------------------------
    def _corrupt(self, key: str, why: str) -> IntegrityError:
        return IntegrityError(
            f"The log file {self.storage.path(key)!r} is corrupt or was tampered with ({why}); "
            "omfs did not follow it. Restore it from a backup, or run 'om fsck' to see what "
            "else is affected."
        )

    def _load(self, key: str) -> dict[str, Any]:
        return self._document(key, self.storage.read_bytes(key))

    def _document(self, key: str, data: bytes) -> dict[str, Any]:
        """The JSON document ``data`` read from ``key``, checked: an object of this log's
        format naming this object."""
        try:
            doc = json.loads(data)
        except ValueError as exc:
            raise self._corrupt(key, f"not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise self._corrupt(key, "not a JSON object")
        fmt = doc.get("format")
        if fmt != FORMAT:
            if type(fmt) is int and fmt > FORMAT:
                raise FormatError(
                    f"{self.storage.path(key)!r} was written in log format {fmt} by a newer "
                    f"omfs; this omfs reads format {FORMAT}. Upgrade omfs to read it."
                )
            raise self._corrupt(key, f"unknown format {fmt!r}")
        for k, v in self.identity.items():
            if doc.get(k) != v:
                raise self._corrupt(key, f"it names {k} {doc.get(k)!r}, not {v!r}")
        return doc

    def _load_parsed(self, key: str, parse: Callable[[dict[str, Any]], Any]) -> Any:
        doc = self._load(key)
        try:
            return parse(doc)
        except _Corrupt as exc:
            raise self._corrupt(key, str(exc)) from None

    def _parse_state(self, doc: dict[str, Any], seq: int) -> State:
        records = {}
        for item in _list(doc.get("records"), "records"):
            rec = validate_record(item, self.validate_info)
            records[rec.version] = rec
        tags = {_tag(t): _int(v, f"tag {t!r}") for t, v in _dict(doc.get("tags"), "tags").items()}
        latest = doc.get("latest")
        if latest is not None:
            _int(latest, "latest")
            if latest not in records:
                raise _Corrupt(f"the latest version {latest} has no record")
        deleted = doc.get("deleted", False)
        if not isinstance(deleted, bool):
            raise _Corrupt("deleted must be true or false")
        checkpoint = _int(doc.get("checkpoint", 0), "checkpoint", 0)
        base = _int(doc.get("base", 0), "base", 0)
        if checkpoint > seq or base > seq:
            raise _Corrupt("it names a checkpoint or base after itself")
        return State(
            seq=seq,
            next_version=_int(doc.get("next"), "next"),
            latest=latest,
            tags=tags,
            records=records,
            deleted=deleted,
            checkpoint=checkpoint,
            base=base,
        )

    def _parse_commit(self, doc: dict[str, Any], seq: int) -> tuple[Commit, State, str, str]:
        if doc.get("seq") != seq:
            raise _Corrupt(f"it says it is commit {doc.get('seq')!r}")
        op = _text(doc.get("op"), "op")
        at = _text(doc.get("at"), "at")
        user = _text(doc.get("user", ""), "user")
        commit = Commit(op=op)
        for action in _list(doc.get("actions"), "actions"):
            action = _dict(action, "an action", optional=False)
            if "add_version" in action:
                commit.version = validate_record(action["add_version"], self.validate_info)
            elif "drop" in action:
                commit.drops.append(_int(action["drop"], "a dropped version"))
            elif "attributes" in action:
                a = _dict(action["attributes"], "attributes", optional=False)
                commit.attributes = (
                    _int(a.get("v"), "a version"),
                    _dict(a.get("set"), "attributes"),
                    _text(a.get("at"), "at"),
                )
            elif "tag" in action:
                t = _dict(action["tag"], "a tag action", optional=False)
                v = t.get("v")
                commit.moves.append(
                    TagMove(
                        _tag(t.get("name")),
                        None if v is None else _int(v, "a version"),
                        _text(t.get("reason"), "reason", optional=True),
                        _dict(t.get("source"), "source") or None,
                    )
                )
            elif action.get("delete") is True:
                commit.delete = True
            else:
                raise _Corrupt(f"unknown action {sorted(action)[:3]}")
        head = self._parse_state(_dict(doc.get("head"), "head", optional=False), seq)
        head.complete = False
        return commit, head, at, user

    # -- documents read elsewhere (sync checks what it copies as a read would) ------------
    def parse(self, filename: str, data: bytes) -> Any:
        """Validate the bytes of the log file ``filename`` (a commit, a checkpoint, the
        hint) exactly as a read of it would: the parsed document, or IntegrityError /
        FormatError naming the file."""
        key = self.key(filename)
        doc = self._document(key, data)
        try:
            if filename == "_last.json":
                return _int(doc.get("seq"), "seq", 0), _int(doc.get("checkpoint"), "checkpoint", 0)
            seq = int(filename.split(".", 1)[0])
            if filename == checkpoint_file(seq):
                return self._parse_checkpoint(doc, seq)
            if filename == commit_file(seq):
                return self._parse_commit(doc, seq)
        except _Corrupt as exc:
            raise self._corrupt(key, str(exc)) from None
        raise ValueError(f"{filename!r} is not a file of the log")

    def _commit_at(self, seq: int) -> tuple[Commit, State, str, str] | None:
        """Commit ``seq``, parsed and validated, or None when it does not exist."""
        try:
            return self._load_parsed(
                self.key(commit_file(seq)), lambda d: self._parse_commit(d, seq)
            )
        except FileNotFoundError:
            return None

    def _hint(self) -> tuple[int, int]:
        """(newest commit, newest checkpoint) as last written; (0, 0) when there is none."""
        try:
            doc = self._load(self.hint_key)
            return _int(doc.get("seq"), "seq", 0), _int(doc.get("checkpoint"), "checkpoint", 0)
        except FileNotFoundError:
            return 0, 0
        except (_Corrupt, IntegrityError):
            return 0, 0  # a hint is only a hint: fall back to probing

    def head(self) -> State:
        """The head after the newest commit: hint, the commit it names, probes forward."""
        seq, checkpoint = self._hint()
        state = State(checkpoint=checkpoint, complete=False)
        if seq:
            found = self._commit_at(seq)
            if found is None:  # the hint ran ahead of a deleted log: start from scratch
                seq = 0
            else:
                state = found[1]
        while (found := self._commit_at(seq + 1)) is not None:
            seq += 1
            state = found[1]
        state = replace(state, seq=seq, complete=False)
        if state.base <= checkpoint <= seq:
            state.checkpoint = max(state.checkpoint, checkpoint)
        return state

    def full(self, head: State | None = None) -> State:
        """Every version record: the newest checkpoint plus the commits after it."""
        head = head or self.head()
        start = State(seq=head.base, deleted=head.base > 0, base=head.base)
        cp = head.checkpoint if head.base < head.checkpoint <= head.seq else 0
        if cp:
            with contextlib.suppress(FileNotFoundError):  # else replay from the base
                start = self._load_parsed(
                    self.key(checkpoint_file(cp)),
                    lambda d: self._parse_checkpoint(d, cp),
                )
        seqs = list(range(start.seq + 1, head.seq + 1))
        found = self._fetch_commits(seqs)
        state = start
        for seq in seqs:
            if found[seq] is None:
                raise self._corrupt(self.key(commit_file(seq)), "the commit is missing")
            commit, _, at, user = found[seq]
            state = apply(state, commit, at, user)
        return replace(state, complete=True, checkpoint=max(cp, head.checkpoint))

    def _fetch_commits(self, seqs: list[int]) -> dict[int, Any]:
        if len(seqs) <= 1 or self.storage.is_local:
            return {s: self._commit_at(s) for s in seqs}
        with ThreadPoolExecutor(max_workers=min(8, len(seqs))) as pool:
            return dict(zip(seqs, pool.map(self._commit_at, seqs), strict=True))

    def _parse_checkpoint(self, doc: dict[str, Any], seq: int) -> State:
        if doc.get("checkpoint") != seq:
            raise _Corrupt(f"it says it is the checkpoint of commit {doc.get('checkpoint')!r}")
        body = _dict(doc.get("state"), "state", optional=False)
        state = self._parse_state(body, seq)
        tag_log = [_tag_entry(e) for e in _list(body.get("tag_log"), "tag_log")]
        return replace(state, complete=True, checkpoint=seq, tag_log=tag_log)

    # -- checking copied history against the history it extends (sync, import, rebase) -------
    def replay(
        self,
        start: State,
        commits: dict[int, tuple[Commit, State, str, str]],
        checkpoints: dict[int, State],
        named: frozenset[int] = frozenset(),
        before: State | None = None,
    ) -> tuple[State, dict[int, State]]:
        """Replay ``commits`` (parsed, after ``start.seq`` and up to the newest of them) on
        ``start``, the complete state both sides share (``before``: the state before the
        drop it ends with, if known), and check each against it: its head
        must be the head the replay gives, and each checkpoint of ``checkpoints`` in that
        range must hold the replayed state of its commit. Returns the complete state after
        the newest commit and the checkpoints that agree.

        A checkpoint that disagrees is an IntegrityError naming it when a head names it, its
        number is a regular one (every :data:`CHECKPOINT_INTERVAL`) or it is in ``named``;
        otherwise it is one no reader follows (left by a killed restore) and is left out.
        A commit whose head disagrees is an IntegrityError naming that commit: copying it
        would make the target forget or renumber versions it holds.
        """
        state, before_drop = replace(start, complete=True), before
        good: dict[int, State] = {}
        cited = set(named) | {found[1].checkpoint for found in commits.values()}
        for seq in range(start.seq + 1, max(commits, default=start.seq) + 1):
            key = self.key(commit_file(seq))
            if seq not in commits:
                raise self._corrupt(key, "the commit is missing")
            commit, head, at, user = commits[seq]
            if _is_snapshot(commit):
                new = self._snapshot(seq, state, before_drop, commit, checkpoints)
            else:
                new = apply(state, commit, at, user)
            if _head_view(head) != _head_view(new):
                raise self._corrupt(
                    key,
                    "its head does not match the history it extends (versions, tags or "
                    "counters differ from what its changes give)",
                )
            if seq in checkpoints:
                if _state_view(checkpoints[seq]) == _state_view(new):
                    good[seq] = checkpoints[seq]
                elif seq in cited or seq % CHECKPOINT_INTERVAL == 0:
                    raise self._corrupt(
                        self.key(checkpoint_file(seq)),
                        "it does not hold the state of the commits it summarises",
                    )
            if commit.delete:
                before_drop = state
            state = new
        return state, good

    def _snapshot(
        self,
        seq: int,
        state: State,
        before_drop: State | None,
        commit: Commit,
        checkpoints: dict[int, State],
    ) -> State:
        """The state after a commit whose state is its checkpoint (an upgrade, commit 1; a
        restore, which brings back the state before the drop), checked where it can be."""
        key = self.key(commit_file(seq))
        snap = checkpoints.get(seq)
        if commit.op == "restore" and snap is None and before_drop is not None:
            snap = replace(before_drop, seq=seq, checkpoint=seq)  # gc collected its checkpoint
        if snap is None:
            raise self._corrupt(key, f"its checkpoint {checkpoint_file(seq)} is missing")
        if commit.op == "upgrade" and (seq != 1 or state.seq != 0):
            raise self._corrupt(key, "an upgrade can only be the first commit")
        if commit.op == "restore" and (
            before_drop is None
            or not state.deleted
            or _state_view(replace(before_drop, seq=seq)) != _state_view(snap)
        ):
            raise self._corrupt(
                self.key(checkpoint_file(seq)),
                "it does not hold the history the restored object had before its drop",
            )
        return replace(snap, seq=seq, complete=True)

    # -- schemas (content-addressed) -------------------------------------------------------
    def read_schema(self, schema_id: str) -> bytes:
        import hashlib

        key = self.schema_key(schema_id)
        ident = (self.storage.url, key)
        data = _cache.get(ident)
        if data is None:
            data = self.storage.read_bytes(key)
            if hashlib.sha256(data).hexdigest()[:32] != schema_id:
                raise self._corrupt(key, "its content does not match its name")
            _cache.put(ident, data)
        return data

    def write_schema(self, data: bytes) -> str:
        import hashlib

        schema_id = hashlib.sha256(data).hexdigest()[:32]
        key = self.schema_key(schema_id)
        with contextlib.suppress(FileExistsError):
            self.storage.create(key, data)
        _cache.put((self.storage.url, key), data)
        return schema_id

    # -- writing ------------------------------------------------------------------------
    def try_commit(self, state: State, commit: Commit, head: State | None = None) -> State:
        """Create commit ``state.seq + 1``; FileExistsError when another writer took it.

        ``head`` is the state after the commit when it is not derived from ``commit`` (an
        upgrade from the old layout, whose versions are all in a checkpoint).
        """
        at, user = utcnow(), _user()
        new = apply(state, commit, at, user) if head is None else replace(head, seq=state.seq + 1)
        seq = state.seq + 1
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
        self.storage.create(self.key(commit_file(seq)), _dumps(doc))
        new.seq = seq
        self._after_commit(state, new)
        return new

    def _after_commit(self, before: State, new: State) -> None:
        """Best effort: a checkpoint every CHECKPOINT_INTERVAL commits, then the hint.

        The two newest checkpoints are kept (readers may hold a hint to the older one).
        """
        if new.seq % CHECKPOINT_INTERVAL == 0:
            with contextlib.suppress(OSError, IntegrityError):
                self._write_checkpoint(new if before.complete else self.full(new))
                new.checkpoint = new.seq
                older = new.seq - 2 * CHECKPOINT_INTERVAL
                if older > 0:
                    self.storage.delete([self.key(checkpoint_file(older))])
        with contextlib.suppress(OSError):
            hint = {"format": FORMAT, **self.identity, "seq": new.seq, "checkpoint": new.checkpoint}
            self.storage.write_bytes(self.hint_key, _dumps(hint))

    def _write_checkpoint(self, full: State) -> None:
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
        # overwritten, not put-if-absent: a checkpoint is a function of the log, and one left
        # by a killed restore must not stand in for a later commit's
        self.storage.write_bytes(self.key(checkpoint_file(full.seq)), _dumps(doc))

    def files(self) -> list[str]:
        """Every file under ``_log/`` (one listing, no stat per entry; for drop)."""
        return self.storage.list_names(f"{self.prefix}/_log")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
