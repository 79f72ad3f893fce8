"""Rebasing a diverged object (``omfs.sync(..., rebase=True)``).

The source's versions since the last commit both sides share are re-committed on top of
the target's history (an append as an append, a put as a new version, with the tags that
pointed at them; their lineage names the original, ``rebased_from``), with the source's
drops, attribute updates and tag moves since then. Then the source adopts the target's
history (:meth:`VersionedStore.adopt`), so both sides hold the same log. A tag moved on both
sides is a conflict: the target's stays.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, cast

from omfs.errors import IntegrityError
from omfs.objects import lease as _lease
from omfs.objects.log import (
    Commit,
    ObjectLog,
    State,
    TagMove,
    VersionRecord,
    checkpoint_file,
    commit_file,
)
from omfs.objects.metadata import utcnow
from omfs.ops.common import Context, SyncError, lease_target
from omfs.ops.history import checked_history as _checked_history
from omfs.ops.history import state_at as _state_at
from omfs.ops.history import sync_hint as _hint

# imported under the names these functions had in sync.py, so that the bodies of rebase and
# _adopt_target read exactly as they did
from omfs.ops.inventory import CHECKPOINT as _CHECKPOINT
from omfs.ops.inventory import ObjectFiles
from omfs.ops.inventory import common_commit as _common_commit
from omfs.ops.inventory import expected_files as _expected_files
from omfs.ops.inventory import listed as _listed
from omfs.ops.inventory import versions as _versions
from omfs.ops.reports import RebasedVersion, SyncRow
from omfs.ops.reports import refused as _refused

if TYPE_CHECKING:
    from omfs.objects.datasets import DatasetStore
    from omfs.objects.versioned import VersionedStore

__all__ = ["rebase"]


def _identity(store: VersionedStore, rec: VersionRecord) -> tuple[str, tuple[str, ...]]:
    """What names one version across contexts: its creation time and its own payload files
    (a rebased version keeps both), so a version already rebased is never applied twice."""
    return rec.created, tuple(sorted(store.own_files(rec)))


@dataclass
class _Plan:
    """What a rebase re-commits on the target, from the complete states of both sides."""

    common: int
    versions: list[VersionRecord]  # source-only version records to re-commit, oldest first
    known: dict[int, int]  # source version -> the target version it already is
    tags: dict[str, int | None]  # tag -> source version (None: removed) to apply
    drops: list[int]  # source versions to drop on the target once mapped
    attributes: dict[int, dict[str, Any]]  # common version -> attributes set on the source
    conflicts: list[str]


def _plan(source: VersionedStore, target: VersionedStore, name: str, common: int) -> _Plan:
    """Compare both sides with their shared state at ``common``: the source's versions,
    drops, attribute updates and tag moves since then that the target lacks."""
    slog, tlog = source.object_log(name), target.object_log(name)
    base, mine, theirs = _state_at(slog, common), slog.full(), tlog.full()
    have = {_identity(target, r): v for v, r in theirs.records.items()}
    versions, known = [], {}
    for v, rec in sorted(mine.records.items()):
        if v in base.records or rec.kind == "dropped":
            continue
        if _identity(source, rec) in have:
            known[v] = have[_identity(source, rec)]
        else:
            versions.append(rec)
    own = {r.version for r in versions} | set(known)
    drops = [
        v for v, r in sorted(mine.records.items())
        if r.dropped is not None and (v in own or base.records.get(v, r).dropped is None)
    ]  # fmt: skip
    attributes = {
        v: {k: x for k, x in r.attributes.items() if base.records[v].attributes.get(k) != x}
        for v, r in mine.records.items()
        if v in base.records and r.attributes != base.records[v].attributes
        and v in theirs.records and theirs.records[v].attributes == base.records[v].attributes
    }  # fmt: skip
    tags: dict[str, int | None] = {}
    conflicts: list[str] = []
    for tag in sorted(set(mine.tags) | set(theirs.tags) | set(base.tags)):
        was, here, there = base.tags.get(tag), mine.tags.get(tag), theirs.tags.get(tag)
        if here == was:
            continue  # the source did not move it
        if there == was:
            tags[tag] = here  # only the source moved it
            continue
        same = here is None or here in base.records or here in known
        if same and there == (None if here is None else known.get(here, here)):
            continue  # both sides made the same move
        conflicts.append(
            f"tag {tag!r} of {target.kind}/{name} moved on both sides (source: "
            f"{_v(here)}, target: {_v(there)}); the target's is kept, the source's move was "
            "not applied"
        )
    return _Plan(common, versions, known, tags, drops, attributes, conflicts)


def _v(version: int | None) -> str:
    return "removed" if version is None else f"v{version}"


def rebase(
    src: Context, dst: Context, bucket: str, store: str, name: str, have: ObjectFiles,
    want: ObjectFiles, row: SyncRow, dry_run: bool = False,
) -> SyncRow:  # fmt: skip
    """Re-commit the source's versions since the last commit both sides share on top of the
    target's history (an append as an append, once), with the source's drops, attribute
    updates and tag moves since then; then the source adopts the target's history, so both
    hold the same log. A tag moved on both sides is a conflict: the target's stays."""
    source, target = getattr(src[bucket], store), getattr(dst[bucket], store)
    prefix = f"{bucket}/{store}/{name}"
    common = _common_commit(src.storage, dst.storage, prefix, have, want)
    plan = _plan(source, target, name, common)
    row.conflicts = plan.conflicts
    if dry_run:
        nxt = target.object_log(name).head().next_version
        row.action = "would rebase"
        row.rebased = [
            {"source_version": r.version, "target_version": nxt + i}
            for i, r in enumerate(plan.versions)
        ]
        row.tags = dict(plan.tags)
        return row
    try:  # the target's history must replay before anything is copied or committed
        tlog = target.object_log(name)
        _target_history(source, tlog, tlog.head(), common)
    except IntegrityError as exc:
        return _refused(row, str(exc))
    lease_target(dst.storage, bucket, store, name)  # gc keeps off both sides' new files
    lease_target(src.storage, bucket, store, name)
    # the rebased versions' payloads and schemas, checked against the source's validated
    # log as they travel, before the first commit; never over a file the target has
    expected = _expected_files(prefix, store, plan.versions)
    files = [e for e in expected.values() if not _listed(want, e.key)]
    refused = src.storage.copy_verified(files, dst.storage)
    if refused:
        return _refused(row, "; ".join(refused.values()))
    why = _fetch_target_files(src, dst, target, bucket, store, name)
    if why is not None:
        return _refused(row, why)
    mapping = dict(plan.known)
    rebased: list[RebasedVersion] = []
    for rec in plan.versions:
        origin = {"context": src.root, "version": rec.version}
        state = target.commit(name, _recommit(target, store, prefix, rec, origin), retry=True)
        mapping[rec.version] = state.latest
        rebased.append({"source_version": rec.version, "target_version": state.latest})
    _replay_metadata(target, name, plan, mapping)
    _adopt_target(src, dst, source, target, bucket, store, name, common, have.seq)
    row.action, row.rebased = "rebased", rebased
    row.tags = {t: (None if v is None else mapping.get(v, v)) for t, v in plan.tags.items()}
    row.source_versions = _versions(src.storage, bucket, store, name)
    row.target_versions = _versions(dst.storage, bucket, store, name)
    return row


def _recommit(
    target: VersionedStore, store: str, prefix: str, rec: VersionRecord, origin: dict[str, Any]
) -> Callable[[State], Commit]:
    """The change that re-commits ``rec`` on top of the target's latest version."""

    def change(state: State) -> Commit:
        info = dict(rec.info)
        if store == "datasets" and info.get("parent") is not None:
            latest = None
            if state.exists and state.latest is not None:
                latest = state.records.get(state.latest)
            if latest is None or latest.info.get("schema") != info.get("schema"):
                raise SyncError(
                    f"Cannot rebase {prefix} v{rec.version}: it appends to a dataset "
                    "whose schema differs in the target; nothing more was rebased."
                )
            datasets = cast("DatasetStore", target)  # an append: a dataset's
            details = datasets.appended_details(latest, rec.kind, info, info["add"])
            info = {**details, "schema": info["schema"], "parent": latest.version,
                    "add": info["add"]}  # fmt: skip
        new = replace(
            rec,
            version=state.next_version,
            lineage={**(rec.lineage or {}), "rebased_from": origin},
            tag=None,
            dropped=None,
            info=info,
        )
        return Commit(op=rec.op, version=new)

    return change


def _replay_metadata(
    target: VersionedStore, name: str, plan: _Plan, mapping: dict[int, int]
) -> None:
    """The source's drops, attribute updates and tag moves, on the target's versions."""

    def change(state: State) -> Commit:
        live = {r.version for r in state.live()}
        drops = [mapping.get(v, v) for v in plan.drops if mapping.get(v, v) in live]
        moves = [
            TagMove(t, None if v is None else mapping.get(v, v), "rebased")
            for t, v in plan.tags.items()
            if state.tags.get(t) != (None if v is None else mapping.get(v, v))
            and (v is None or mapping.get(v, v) in live)
        ]
        return Commit(op="rebase", drops=drops, moves=moves)

    for v, values in plan.attributes.items():
        target.commit(name, _set_attributes(v, values), retry=True, full=True)
    state = target.state(name, full=True, reader=False)
    commit = change(state)
    if commit.drops or commit.moves:
        target.commit(name, change, retry=True, full=True)


def _set_attributes(version: int, values: dict[str, Any]) -> Callable[[State], Commit]:
    """The change that sets ``values`` among the attributes of ``version``."""

    def change(state: State) -> Commit:
        return Commit(op="update-attributes", attributes=(version, values, utcnow()))

    return change


def _needed_records(state: State) -> list[VersionRecord]:
    """The records whose payload files a live version still reads: the live versions and,
    for appended dataset versions, the versions they append to (a pruned parent's parts
    stay while a live version uses them; a dropped version's own files may be gone)."""
    need: dict[int, VersionRecord] = {}
    for rec in state.live():
        cur: VersionRecord | None = rec
        while cur is not None and cur.version not in need:
            need[cur.version] = cur
            parent = cur.info.get("parent")
            cur = state.records.get(parent) if parent is not None else None
    return list(need.values())


def _fetch_target_files(
    src: Context, dst: Context, target: VersionedStore, bucket: str, store: str, name: str
) -> str | None:
    """Before a rebase commits anything: copy to the source, checked as they travel, the
    files the target's live versions read that the source lacks (it keeps every file it
    has), so that adopting the target's history later needs no copy. Why it cannot, or None."""
    tlog = target.object_log(name)
    prefix = f"{bucket}/{store}/{name}"
    mine = set(src.storage.list_names(f"{prefix}/_data"))
    expected = _expected_files(prefix, store, _needed_records(tlog.full(tlog.head())))
    files = [
        e for e in expected.values()
        if (e.key.rsplit("/", 1)[-1] not in mine if "/_data/" in e.key
            else not src.storage.exists(e.key))
    ]  # fmt: skip
    refused = dst.storage.copy_verified(files, src.storage)
    if refused:
        return (
            "the target's files do not match its log, so nothing was rebased: "
            + "; ".join(refused.values())
            + ". Run 'om fsck' on the target."
        )
    return None


def _adopt_target(
    src: Context, dst: Context, source: VersionedStore, target: VersionedStore, bucket: str,
    store: str, name: str, common: int, old: int,
) -> None:  # fmt: skip
    """The source takes the target's history of ``name`` (whose files it already holds:
    see ``_fetch_target_files``), as replayed and checked on the shared state: the switch
    (see ``VersionedStore.adopt``), then checkpoints and hint."""
    # a writer may have committed to the target since: fetch what its versions add
    why = _fetch_target_files(src, dst, target, bucket, store, name)
    if why is not None:
        raise IntegrityError(f"Cannot rebase {bucket}/{store}/{name}: {why}")
    tlog = target.object_log(name)
    head = tlog.head()
    full, commits, checkpoints = _target_history(source, tlog, head, common)
    journal = {
        "format": 2,
        **tlog.identity,
        "checkpoint": full.seq,
        "state": {
            **full.head_doc(),
            "checkpoint": 0,
            "records": [r.to_doc() for _, r in sorted(full.records.items())],
            "tag_log": full.tag_log,
        },
        "common": common,
        "old": old,
        "commits": commits,
        "checkpoints": checkpoints,
        "hint": _hint(tlog, full, [int(s) for s in checkpoints]).decode(),
    }
    _lease.check_held(src.storage, bucket, store, name)  # what it copied to the source is there
    source.adopt(name, journal)


def _target_history(
    source: VersionedStore, tlog: ObjectLog, head: State, common: int
) -> tuple[Any, dict[str, str], dict[str, str]]:
    """The target's history after ``common`` as the source will adopt it: its commits,
    replayed on the source's own state at ``common`` (the history both share) with every
    head and checkpoint checked, the complete state that replay gives (never a checkpoint
    taken as it is), and the checkpoints after ``common`` that agree with it."""
    read = tlog.storage.read_bytes
    raw = {s: read(tlog.key(commit_file(s))) for s in range(common + 1, head.seq + 1)}
    parsed = {s: tlog.parse(commit_file(s), data) for s, data in raw.items()}
    listed = [int(m.group(1)) for f in tlog.files() if (m := _CHECKPOINT.fullmatch(f))]
    listed = [s for s in listed if s > common]
    cps = {s: read(tlog.key(checkpoint_file(s))) for s in listed}
    states = {s: tlog.parse(checkpoint_file(s), data) for s, data in cps.items()}
    slog = source.object_log(tlog.identity["name"])
    anchor = _state_at(slog, common)
    before = None
    if anchor.deleted and common > 1 and slog.commit_at(common - 1) is not None:
        before = _state_at(slog, common - 1)
    full, good = _checked_history(tlog, anchor, before, parsed, states, common)
    commits = {str(s): data.decode() for s, data in raw.items()}
    checkpoints = {str(s): cps[s].decode() for s in sorted(good) if s > common}
    return full, commits, checkpoints
