"""The records of the commit log, typed and frozen, and the pure ``apply`` of a commit.

A log document is JSON; what omfs reads of it becomes one of these records only after every
field was checked (:func:`validate_record` and the ``as_*`` checkers, which raise
:class:`CorruptRecord`; :class:`~omfs.objects.log.ObjectLog` turns that into an
IntegrityError naming the file). The on-disk form is written by each record's ``to_doc``.

Example::

    state = State()
    rec = VersionRecord(version=1, created=utcnow(), kind="pandas.DataFrame", op="put")
    state = apply(state, Commit(op="put", version=rec), at=rec.created)
    assert state.latest == 1 and state.exists
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, TypedDict

from omfs.names import check_tag

__all__ = [
    "DROPPED_KIND",
    "Commit",
    "CorruptRecord",
    "InfoValidator",
    "Part",
    "State",
    "TagEvent",
    "TagMove",
    "VersionRecord",
    "apply",
    "as_dict",
    "as_int",
    "as_list",
    "as_tag",
    "as_text",
    "check_payload_name",
    "dumps",
    "is_payload_file",
    "parse_actions",
    "parse_state",
    "tag_entry",
    "validate_record",
]

#: The kind of a format-1 tombstone (a version dropped by omfs 0.1): it holds no payload.
DROPPED_KIND = "dropped"
_PAYLOAD = re.compile(r"[0-9a-f]{32}\.(parquet|joblib|bin|py|ipynb)")
_MAX_TEXT = 4096
#: A store's check of a version's ``info`` (raises CorruptRecord).
InfoValidator = Callable[[dict[str, Any], str], None]


def dumps(doc: Any) -> bytes:
    """Compact JSON through the C encoder (no indent: indent forces the Python encoder)."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def is_payload_file(name: object) -> bool:
    """True for the plain payload file names omfs writes: ``<32 hex>.<ext>``."""
    return isinstance(name, str) and _PAYLOAD.fullmatch(name) is not None


# -- the JSON shapes of what records hold (typing only: the documents stay plain JSON) -------
class Part(TypedDict, total=False):
    """One Parquet (or raw) file of a dataset version, as the log holds it.

    ``stats`` maps a column to ``[min, max, nulls]``; ``sha256`` is absent for parts
    written by older omfs.
    """

    file: str
    rows: int
    size: int
    sha256: str
    stats: dict[str, list[Any]]


class TagEvent(TypedDict, total=False):
    """One move of a tag in a complete state's ``tag_log`` (``v`` None: removed)."""

    tag: str
    v: int | None
    prev: int | None
    at: str
    user: str
    reason: str
    source: dict[str, Any]


# -- records ------------------------------------------------------------------------------
@dataclass(frozen=True)
class VersionRecord:
    """One version of an object as the log holds it. ``info`` is store-specific (for a
    dataset: its parts under ``add``, ``parent``, ``schema``, totals; for a model: its
    payload file, size and sha256)."""

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
        """The JSON form written in commits and checkpoints (empty optional keys left out)."""
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


@dataclass(frozen=True)
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
    tag_log: list[TagEvent] = field(default_factory=list)  # every tag move (complete)

    @property
    def exists(self) -> bool:
        """True when the object has a live latest version (it is not dropped)."""
        return self.latest is not None and not self.deleted

    def live(self) -> list[VersionRecord]:
        """The versions not dropped, oldest first."""
        return [r for _, r in sorted(self.records.items()) if r.dropped is None]

    def latest_record(self) -> VersionRecord:
        """The record of the latest version (KeyError when the object has none)."""
        if self.latest is None:
            raise KeyError("the object has no latest version")
        return self.records[self.latest]

    def head_doc(self) -> dict[str, Any]:
        """The head written in every commit: counters, tags, the latest and tagged records."""
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


@dataclass(frozen=True)
class TagMove:
    """Point ``tag`` at ``version`` (None: remove it), with an optional reason and, for a tag
    that came with a promotion, where it came from."""

    tag: str
    version: int | None
    reason: str | None = None
    source: dict[str, Any] | None = None

    def to_doc(self) -> dict[str, Any]:
        """The JSON form of the ``tag`` action."""
        doc: dict[str, Any] = {"name": self.tag, "v": self.version}
        if self.reason:
            doc["reason"] = self.reason
        if self.source:
            doc["source"] = self.source
        return doc


@dataclass(frozen=True)
class Commit:
    """The changes of one commit: at most one new version, plus metadata actions."""

    op: str
    version: VersionRecord | None = None
    drops: list[int] = field(default_factory=list)
    attributes: tuple[int, dict[str, Any], str] | None = None  # version, values set, time
    moves: list[TagMove] = field(default_factory=list)
    delete: bool = False

    def actions(self) -> list[dict[str, Any]]:
        """The JSON ``actions`` of the commit document, in the order they apply."""
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
    """The state after ``commit`` made at ``at`` by ``user`` (a new State; ``state`` is not
    changed): what every reader replays, and what a writer commits on top of."""
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
        entry: TagEvent = {"tag": tag, "v": version, "prev": prev, "at": at, "user": user}
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
        _set_attributes(records, *commit.attributes)
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


def _set_attributes(
    records: dict[int, VersionRecord], version: int, values: dict[str, Any], when: str
) -> None:
    """Merge ``values`` into version ``version``'s attributes, recorded in its history."""
    if version in records:
        rec = records[version]
        entry = {"at": when, "op": "update-attributes", "before": rec.attributes, "set": values}
        records[version] = replace(
            rec, attributes={**rec.attributes, **values}, history=[*rec.history, entry]
        )


# -- validation of what is read ---------------------------------------------------------
class CorruptRecord(Exception):
    """A document read from the log is not what omfs writes. Raised by the checkers below;
    the log turns it into an IntegrityError naming the file."""


def as_int(value: Any, what: str, minimum: int = 1) -> int:
    """``value`` if it is a whole number >= ``minimum``; else CorruptRecord naming ``what``."""
    if type(value) is not int or value < minimum:
        raise CorruptRecord(f"{what} must be a whole number >= {minimum}, got {value!r}")
    return value


def as_text(value: Any, what: str, optional: bool = False) -> Any:
    """``value`` if it is a short string (or None when ``optional``); else CorruptRecord."""
    if value is None and optional:
        return None
    if not isinstance(value, str) or len(value) > _MAX_TEXT:
        raise CorruptRecord(f"{what} must be a short string, got {type(value).__name__}")
    return value


def as_dict(value: Any, what: str, optional: bool = True) -> dict[str, Any]:
    """``value`` if it is a JSON object (None reads as ``{}`` when ``optional``)."""
    if value is None and optional:
        return {}
    if not isinstance(value, dict):
        raise CorruptRecord(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def as_list(value: Any, what: str) -> list[Any]:
    """``value`` if it is a JSON array (None reads as ``[]``)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise CorruptRecord(f"{what} must be a JSON array, got {type(value).__name__}")
    return value


def as_tag(value: Any) -> str:
    """``value`` if it is a valid tag name."""
    try:
        return check_tag(as_text(value, "a tag"))
    except ValueError as exc:
        raise CorruptRecord(str(exc)) from None


def tag_entry(doc: Any) -> TagEvent:
    """One entry of a checkpoint's tag history, checked."""
    doc = as_dict(doc, "a tag move", optional=False)
    entry: TagEvent = {
        "tag": as_tag(doc.get("tag")),
        "v": None if doc.get("v") is None else as_int(doc.get("v"), "a version"),
        "prev": None if doc.get("prev") is None else as_int(doc.get("prev"), "a version"),
        "at": as_text(doc.get("at"), "at"),
        "user": as_text(doc.get("user", ""), "user"),
    }
    if doc.get("reason") is not None:
        entry["reason"] = as_text(doc["reason"], "reason")
    if doc.get("source") is not None:
        entry["source"] = as_dict(doc["source"], "source")
    return entry


def validate_record(doc: Any, validate_info: InfoValidator) -> VersionRecord:
    """A VersionRecord from its JSON form, every field checked.

    Args:
        doc: the record as read (``{"v", "created", "kind", "op", "info", …}``).
        validate_info: the store's check of ``info`` (raises CorruptRecord).

    Returns:
        The record; CorruptRecord when a field is not what omfs writes.
    """
    doc = as_dict(doc, "a version record", optional=False)
    info = as_dict(doc.get("info"), "info")
    kind = as_text(doc.get("kind"), "kind")
    if kind == DROPPED_KIND:
        if info or doc.get("dropped") is None:
            raise CorruptRecord("a tombstone holds no payload and is dropped")
    else:
        validate_info(info, kind)
    return VersionRecord(
        version=as_int(doc.get("v"), "a version number"),
        created=as_text(doc.get("created"), "created"),
        kind=kind,
        op=as_text(doc.get("op"), "op"),
        attributes=as_dict(doc.get("attributes"), "attributes"),
        tag=None if doc.get("tag") is None else as_tag(doc.get("tag")),
        lineage=as_dict(doc.get("lineage"), "lineage") or None,
        history=[
            as_dict(h, "a history entry", False) for h in as_list(doc.get("history"), "history")
        ],
        dropped=as_text(doc.get("dropped"), "dropped", optional=True),
        info=info,
    )


def parse_state(
    doc: dict[str, Any], seq: int, validate_info: InfoValidator, *, complete: bool = True
) -> State:
    """The State a head or checkpoint body holds after commit ``seq``, every field checked."""
    records = {}
    for item in as_list(doc.get("records"), "records"):
        rec = validate_record(item, validate_info)
        records[rec.version] = rec
    tags = {as_tag(t): as_int(v, f"tag {t!r}") for t, v in as_dict(doc.get("tags"), "tags").items()}
    latest = doc.get("latest")
    if latest is not None:
        as_int(latest, "latest")
        if latest not in records:
            raise CorruptRecord(f"the latest version {latest} has no record")
    deleted = doc.get("deleted", False)
    if not isinstance(deleted, bool):
        raise CorruptRecord("deleted must be true or false")
    checkpoint = as_int(doc.get("checkpoint", 0), "checkpoint", 0)
    base = as_int(doc.get("base", 0), "base", 0)
    if checkpoint > seq or base > seq:
        raise CorruptRecord("it names a checkpoint or base after itself")
    return State(
        seq=seq,
        next_version=as_int(doc.get("next"), "next"),
        latest=latest,
        tags=tags,
        records=records,
        deleted=deleted,
        complete=complete,
        checkpoint=checkpoint,
        base=base,
    )


def parse_actions(op: str, actions: Iterable[Any], validate_info: InfoValidator) -> Commit:
    """The Commit that a commit document's ``actions`` describe, checked."""
    version: VersionRecord | None = None
    drops: list[int] = []
    attributes: tuple[int, dict[str, Any], str] | None = None
    moves: list[TagMove] = []
    delete = False
    for action in actions:
        action = as_dict(action, "an action", optional=False)
        if "add_version" in action:
            version = validate_record(action["add_version"], validate_info)
        elif "drop" in action:
            drops.append(as_int(action["drop"], "a dropped version"))
        elif "attributes" in action:
            a = as_dict(action["attributes"], "attributes", optional=False)
            attributes = (
                as_int(a.get("v"), "a version"),
                as_dict(a.get("set"), "attributes"),
                as_text(a.get("at"), "at"),
            )
        elif "tag" in action:
            t = as_dict(action["tag"], "a tag action", optional=False)
            v = t.get("v")
            moves.append(
                TagMove(
                    as_tag(t.get("name")),
                    None if v is None else as_int(v, "a version"),
                    as_text(t.get("reason"), "reason", optional=True),
                    as_dict(t.get("source"), "source") or None,
                )
            )
        elif action.get("delete") is True:
            delete = True
        else:
            raise CorruptRecord(f"unknown action {sorted(action)[:3]}")
    return Commit(op, version, drops, attributes, moves, delete)


def check_payload_name(name: Any, what: str = "a payload file name") -> str:
    """``name`` if it is a plain payload file name of ``_data/``; else the log is corrupt."""
    if not is_payload_file(name):
        raise CorruptRecord(
            f"{what} must be a plain file name '<32 hex digits>.<parquet|joblib|bin|py|ipynb>', "
            f"got {str(name)[:80]!r}"
        )
    return str(name)
