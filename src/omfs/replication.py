"""Replicating objects between contexts with their whole history: ``omfs.sync``.

A sync copies, for every dataset and model of the chosen buckets, what the target lacks of
the source's commit log and payloads, byte for byte: versions keep their numbers, payload
ids, tags, tag history and lineage, so two contexts that synced hold identical logs for
those objects.

Per object, from one recursive listing of each side's bucket (no read when nothing
changed):

- the target holds nothing of it, or a prefix of the source's log (its newest commit is
  byte-identical to the source's commit of the same number): **fast-forward**. Payloads and
  schemas are copied first, then the index marker, then the missing commits in order, each
  with put-if-absent, then checkpoints and the hint. A reader sees the old history or a
  longer prefix of the new one, never a mix; a killed sync is resumed by the next one
  (payloads and commits that exist are skipped by name, never overwritten).
- the target has commits the source lacks, or a different commit at the same number:
  **diverged**. The object is reported (versions on both sides) and left unchanged.

Everything listed from the source is validated before it is used: object names by the name
rules, file names against the log's and payloads' own patterns, so a hostile store cannot
make a sync write outside the object's folder. Every commit, checkpoint and hint copied is
validated as a read validates it (:meth:`ObjectLog.parse`), and the payloads are those its
records name, each checked against their size and sha256 as it travels
(:meth:`Storage.copy_verified`); a source that fails either is **refused** for that object,
which then leaves the target as it was. The copied commits must also extend the history
the target holds: they are replayed on the target's state at the shared tip
(:meth:`ObjectLog.replay`), and a head or checkpoint that contradicts the replay, or a
version whose payload neither side holds, refuses the object too.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from omfs import _lease
from omfs._log import CHECKPOINT_INTERVAL, checkpoint_file, commit_file, is_payload_file
from omfs._names import check_bucket, check_name, look_alike
from omfs._storage import Expected
from omfs.errors import IntegrityError, InvalidNameError, OmfsError

__all__ = ["SyncError", "sync"]

_COMMIT = re.compile(r"(\d{20})\.json")
_CHECKPOINT = re.compile(r"(\d{20})\.checkpoint\.json")
_SCHEMA = re.compile(r"s-[0-9a-f]{32}\.schema")
_STORES = ("datasets", "models")


class SyncError(OmfsError):
    """A sync that could not run (bad arguments, contexts that cannot be synced)."""


@dataclass
class _Object:
    """What one side holds of one object: {file: size} of its log and payloads."""

    commits: dict[int, tuple[int, Any]] = field(default_factory=dict)  # seq -> (size, md5)
    checkpoints: dict[int, int] = field(default_factory=dict)
    schemas: dict[str, int] = field(default_factory=dict)
    data: dict[str, int] = field(default_factory=dict)
    hint: bool = False
    listed: bool = False
    adopting: bool = False  # the marker says a rebase is switching its log (see _adopt)

    @property
    def seq(self) -> int:
        return max(self.commits, default=0)


def _inventory(storage: Any, bucket: str) -> dict[tuple[str, str], _Object]:
    """Every object of ``bucket`` on ``storage`` from one recursive listing; files that do
    not match omfs' own patterns are ignored (never copied)."""
    objects: dict[tuple[str, str], _Object] = {}
    for key, size, md5 in storage.inventory(bucket):
        parts = key.split("/")
        if len(parts) < 4 or parts[0] != bucket or parts[1] not in _STORES:
            continue
        store = parts[1]
        if parts[2] == "_index" and len(parts) == 4:
            name = parts[3].replace("~", "/")
            if _valid_name(name):
                obj = objects.setdefault((store, name), _Object())
                obj.listed, obj.adopting = True, size > 0
            continue
        if len(parts) < 5 or parts[-2] not in ("_log", "_data"):
            continue
        name = "/".join(parts[2:-2])
        filename = parts[-1]
        if not _valid_name(name):
            continue
        obj = objects.setdefault((store, name), _Object())
        if parts[-2] == "_data":
            if is_payload_file(filename) or _is_sidecar(filename):
                obj.data[filename] = size
        elif match := _COMMIT.fullmatch(filename):
            obj.commits[int(match.group(1))] = (size, md5)
        elif match := _CHECKPOINT.fullmatch(filename):
            obj.checkpoints[int(match.group(1))] = size
        elif _SCHEMA.fullmatch(filename):
            obj.schemas[filename] = size
        elif filename == "_last.json":
            obj.hint = True
    return objects


def _valid_name(name: str) -> bool:
    try:
        return check_name(name) == name
    except InvalidNameError:
        return False


def _is_sidecar(filename: str) -> bool:
    stem, _, ext = filename.partition(".")
    return ext == "json" and is_payload_file(f"{stem}.joblib")


def _same_commit(
    source: Any, target: Any, key: str, a: tuple[int, Any], b: tuple[int, Any]
) -> bool:
    """Whether commit ``key`` is the same on both sides, from the listings where they
    tell (size, and the MD5 that object stores list), else by reading."""
    import hashlib

    if a[0] != b[0]:
        return False
    if a[1] is not None and a[1] == b[1]:
        return True
    listed, local = (a[1], target) if a[1] is not None else (b[1], source)
    if listed is not None and local.is_local:
        digest = hashlib.md5(local.read_bytes(key), usedforsecurity=False).hexdigest()
        if digest == listed:
            return True
    # different or unknown digests (an ETag is not always an MD5): the bytes decide
    return bool(source.read_bytes(key) == target.read_bytes(key))


def _resolve(ctx: Any) -> Any:
    from omfs.context import Omega, setup

    if isinstance(ctx, Omega):
        return ctx
    if isinstance(ctx, str):
        return setup(context=ctx)
    raise SyncError(f"sync takes contexts (omfs.setup(...) or a context name), got {ctx!r}")


def sync(
    source: Any,
    target: Any,
    *,
    buckets: Sequence[str] | None = None,
    names: Sequence[str] | None = None,
    dry_run: bool = False,
    rebase: bool = False,
    progress: Callable[[int], None] | None = None,
    on_object: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Replicate the datasets and models of ``source`` to ``target`` with their history.

    ``source`` and ``target`` are contexts (``omfs.setup(...)``) or names of contexts in
    the config file. ``buckets`` limits the buckets (default: all of the source's);
    ``names`` are glob patterns of object names. ``dry_run`` says what would be copied.
    Returns a report: per object the action (``copy``, ``unchanged``, ``diverged``,
    ``rebased``), the versions and the bytes, and totals.

    ``rebase=True``: a diverged object's source-only versions are re-committed on top of the
    target's latest (an append as an append, a put as a new version, with the tags that
    pointed at them); their lineage names the original (``rebased_from``).

    ``progress`` is called with the bytes of payloads as they travel, ``on_object`` with
    each object's report row once the object is done (for progress bars).
    """
    import fnmatch

    from omfs._store import bucket_names

    src, dst = _resolve(source), _resolve(target)
    if src.storage == dst.storage:
        raise SyncError(f"source and target are the same context ({src.root}); nothing to sync")
    chosen = [check_bucket(b) for b in buckets] if buckets else None
    bucket_list = chosen or bucket_names(src.storage)
    rows: list[dict[str, Any]] = []
    for bucket in bucket_list:
        have = _inventory(src.storage, bucket)
        want = _inventory(dst.storage, bucket)
        if not dry_run:  # a rebase killed while a side switched its history: finish it first
            if _finish_adoptions(src, bucket, have):
                have = _inventory(src.storage, bucket)
            if _finish_adoptions(dst, bucket, want):
                want = _inventory(dst.storage, bucket)
        for (store, name), obj in sorted(have.items()):
            if names and not any(fnmatch.fnmatchcase(name, p) for p in names):
                continue
            theirs = want.get((store, name), _Object())
            if not obj.listed or not obj.commits:
                # a write that never committed: nothing to replicate; a drop: said so
                if obj.commits and theirs.listed and _dropped(src.storage, bucket, store, name):
                    rows.append(_dropped_row(src, dst, bucket, store, name, "source"))
                continue
            other = None if theirs.commits else _look_alike_in(want, store, name)
            if other is not None:
                rows.append(_look_alike_row(bucket, store, name, other))
                continue
            with _lease.scope():  # gc leases taken while the object is written, until done
                row = _sync_object(
                    src.storage, dst.storage, bucket, store, name, obj, theirs, dry_run,
                    progress,
                )  # fmt: skip
                if row["action"] == "dropped":
                    row = _dropped_row(src, dst, bucket, store, name, "target")
                elif rebase and row["action"] == "diverged":
                    row = _rebase(src, dst, bucket, store, name, obj, theirs, row, dry_run)
                elif row["action"] in ("unchanged", "copy"):
                    row = _repair(src.storage, dst.storage, name, obj, theirs, row, dry_run,
                                  progress)  # fmt: skip
            rows.append(row)
            if on_object is not None:
                on_object(row)
    return {
        "source": src.root,
        "target": dst.root,
        "dry_run": dry_run,
        "objects": rows,
        "copied": sum(r["action"] == "copy" for r in rows),
        "unchanged": sum(r["action"] == "unchanged" for r in rows),
        "diverged": sum(r["action"] == "diverged" for r in rows),
        "rebased": sum(r["action"] == "rebased" for r in rows),
        "dropped": sum(r["action"] == "dropped" for r in rows),
        "conflicts": [c for r in rows for c in r.get("conflicts", [])],
        "refused": sum(r["action"] == "refused" for r in rows),
        "bytes": sum(r["bytes"] for r in rows),
    }


def _look_alike_in(want: dict[tuple[str, str], _Object], store: str, name: str) -> str | None:
    """An object of the target's store whose name looks like ``name`` (``Report`` beside
    ``report``, a Cyrillic a): sync refuses to bring such a name in, as ``put`` does."""
    return look_alike(name, [n for (s, n), o in want.items() if s == store and o.listed])


def _look_alike_row(bucket: str, store: str, name: str, other: str) -> dict[str, Any]:
    row = {"bucket": bucket, "store": store, "name": name, "source_commits": 0,
           "target_commits": 0}  # fmt: skip
    return _refused(
        row,
        f"the target has {store[:-1]} {other!r}, whose name looks like it (on a "
        "case-insensitive disk, or to a person, they are one); rename one of them "
        f"(put it again under another name and drop the old one) before syncing",
    )


def _versions(storage: Any, bucket: str, store: str, name: str) -> list[int]:
    from omfs.context import Omega

    try:
        return [m.version for m in getattr(Omega(storage, bucket), store).versions(name)]
    except OmfsError:
        return []


def _diverged(row: dict[str, Any], src: Any, dst: Any) -> dict[str, Any]:
    """Mark ``row`` diverged, with the versions each side holds."""
    where = (row["bucket"], row["store"], row["name"])
    row.update(
        action="diverged",
        source_versions=_versions(src, *where),
        target_versions=_versions(dst, *where),
    )
    return row


def _dropped(storage: Any, bucket: str, store: str, name: str) -> bool:
    """True when the log of ``name`` ends with a drop (its tombstone)."""
    from omfs.context import Omega

    try:
        return bool(getattr(Omega(storage, bucket), store)._log(name).head().deleted)
    except OmfsError:
        return False


def _dropped_row(
    src: Any, dst: Any, bucket: str, store: str, name: str, where: str
) -> dict[str, Any]:
    """The report of an object dropped on one side and kept on the other: left unchanged,
    with the two ways to make the sides agree."""
    dropped, other = (dst, src) if where == "target" else (src, dst)
    message = (
        f"{bucket}/{store}/{name} was dropped in the {where} ({dropped.root}) and is left "
        f"as it is: `om --root {dropped.root} --bucket {bucket} {store} restore {name}` brings "
        f"it back there, or `om --root {other.root} --bucket {bucket} {store} drop {name}` "
        "drops it on the other side too"
    )
    return {
        "bucket": bucket, "store": store, "name": name, "action": "dropped", "where": where,
        "message": message, "source_commits": 0, "target_commits": 0, "bytes": 0, "files": 0,
    }  # fmt: skip


def _finish_adoptions(ctx: Any, bucket: str, objects: dict[tuple[str, str], _Object]) -> bool:
    """Finish every switch of history a killed rebase left in ``bucket``; True if any."""
    todo = [(store, name) for (store, name), obj in objects.items() if obj.adopting]
    for store, name in todo:
        getattr(ctx[bucket], store)._finish_adopt(name)
    return bool(todo)


def _lease_target(storage: Any, bucket: str, store: str, name: str) -> None:
    """Hold a gc lease on ``name`` in ``storage`` until the object's sync is done, taken
    only once it is known to write there (an unchanged object costs no request)."""
    where = f"{store[:-1]} {name!r} in bucket {bucket!r} of context {storage.url!r}"
    _lease.take(storage, bucket, store, name, where)


def _repair(
    src: Any, dst: Any, name: str, have: _Object, want: _Object, row: dict[str, Any],
    dry_run: bool, progress: Callable[[int], None] | None,
) -> dict[str, Any]:  # fmt: skip
    """Copy the payloads and schemas that the target's log names but the target lacks
    while the source has them (a file deleted in the target, say by a gc that raced an
    older sync), each checked against the size and sha256 the target's validated log
    records. It only adds a missing file, never overwrites one; the listings tell whether
    it is needed, so a target that lacks nothing costs no request."""
    from omfs.context import Omega

    bucket, store = row["bucket"], row["store"]
    prefix = f"{bucket}/{store}/{name}"
    lacking = {f"_data/{f}" for f in have.data if f not in want.data}
    lacking |= {f"_log/{f}" for f in have.schemas if f not in want.schemas}
    if not lacking or not want.commits:  # an object new to the target came whole
        return row
    if row["action"] == "copy" and not dry_run:  # what the copy just added is not lacking
        lacking -= {key[len(prefix) + 1 :] for key, *_ in dst.inventory(prefix)}
        if not lacking:
            return row
    target = getattr(Omega(dst, bucket), store)
    try:
        state = target._state(name, full=True, reader=False)
    except (IntegrityError, OSError):
        return row  # a target whose log cannot be read: fsck says why; nothing to add to
    needed = {f"_data/{f}" for rec in state.live() for f in target._version_files(state, rec)}
    records = list(state.records.values())
    expected = _expected_files(prefix, store, records)
    files = [
        e for key, e in expected.items()
        if (rel := key[len(prefix) + 1 :]) in lacking
        and (rel.startswith("_log/") or rel in needed)
    ]  # fmt: skip
    if not files:
        return row
    repaired = sorted(e.key.rsplit("/", 1)[-1] for e in files)
    if dry_run:
        row.update(action="copy", repaired=repaired, files=row["files"] + len(files))
        return row
    _lease_target(dst, bucket, store, name)
    refused = src.copy_verified(files, dst, progress)
    if refused:
        return _refused(row, "; ".join(refused.values()))
    row.update(
        action="copy",
        repaired=repaired,
        files=row["files"] + len(files),
        bytes=row["bytes"] + sum(_listed_size(have, e.key) for e in files),
    )
    return row


def _missing_schemas(have: _Object, want: _Object) -> list[str]:
    """The schema files the target lacks, or holds cut short (a killed local copy)."""
    return [f for f, size in sorted(have.schemas.items()) if want.schemas.get(f) != size]


def _sync_object(
    src: Any,
    dst: Any,
    bucket: str,
    store: str,
    name: str,
    have: _Object,
    want: _Object,
    dry_run: bool,
    progress: Callable[[int], None] | None,
) -> dict[str, Any]:
    prefix = f"{bucket}/{store}/{name}"
    row: dict[str, Any] = {
        "bucket": bucket,
        "store": store,
        "name": name,
        "source_commits": have.seq,
        "target_commits": want.seq,
        "bytes": 0,
        "files": 0,
    }
    if want.commits and not want.listed and _dropped(dst, bucket, store, name):
        if len(want.commits) > 1:  # its history is still there: restore() can bring it back
            row["action"] = "dropped"
            return row
        if not dry_run:  # gc collected all but the tombstone: the source's comes as new
            tombstone = f"{prefix}/_log/{want.seq:020d}.json"
            dst.delete([tombstone, f"{prefix}/_log/_last.json"])
        want = _Object()
    tip = want.seq
    common = (
        tip in have.commits
        and _same_commit(
            src, dst, f"{prefix}/_log/{tip:020d}.json", have.commits[tip], want.commits[tip]
        )
        if tip
        else True
    )
    if tip > have.seq or not common:
        return _diverged(row, src, dst)
    new_commits = sorted(s for s in have.commits if s > tip)
    # the checkpoints after the shared tip (and one at the tip the target lacks): each is
    # checked against the replay of the commits before it is copied
    checkpoints = sorted(
        s for s in have.checkpoints
        if s > tip or (s == tip and s % CHECKPOINT_INTERVAL == 0 and s not in want.checkpoints)
    )  # fmt: skip
    missing_hint = have.hint and not want.hint
    if not (new_commits or checkpoints or missing_hint or not want.listed):
        row["action"] = "unchanged"
        return row
    row["action"] = "copy"
    clash = _clash(src, dst, prefix, have, want)
    if clash is not None:
        return _refused(row, clash)
    if dry_run:  # an estimate from the listings alone (no read)
        data = [f for f in have.data if f not in want.data]
        row["files"] = (
            len(data) + len(new_commits) + len(checkpoints) + missing_hint
        )  # fmt: skip
        row["bytes"] = sum(have.data[f] for f in data) + sum(
            have.commits[s][0] for s in new_commits
        )
        return row
    _lease_target(dst, bucket, store, name)  # gc keeps off what it copies until it commits
    # everything copied is read and validated as a read of the source would validate it,
    # and replayed on the target's own state at the shared tip, before the first byte
    # reaches the target
    log = _source_log(src, bucket, store, name)
    try:
        commits = {s: src.read_bytes(f"{prefix}/_log/{commit_file(s)}") for s in new_commits}
        parsed = {s: log.parse(commit_file(s), data) for s, data in commits.items()}
        cps = {s: src.read_bytes(f"{prefix}/_log/{checkpoint_file(s)}") for s in checkpoints}
        states = {s: log.parse(checkpoint_file(s), data) for s, data in cps.items()}
        target = _source_log(dst, bucket, store, name)
        anchor, before = _shared_state(target, tip, want.checkpoints)
        final, good = _checked_history(log, anchor, before, parsed, states, tip)
    except (IntegrityError, FileNotFoundError) as exc:
        return _refused(row, str(exc))
    cps = {s: data for s, data in cps.items() if s in good}
    kind = _source_log_store(dst, bucket, store)
    try:
        files = _needed_files(kind, prefix, final, anchor, have, want, src)
    except IntegrityError as exc:
        return _refused(row, str(exc))
    hint = _hint(log, final, sorted(set(cps) | {c for c in want.checkpoints if c <= tip}))
    refused = src.copy_verified(files, dst, progress)
    if refused:
        return _refused(row, "; ".join(refused.values()))
    row["files"] = len(files) + len(commits) + len(cps) + 1
    row["bytes"] = sum(_listed_size(have, e.key) for e in files) + sum(
        len(c) for c in commits.values()
    )
    _lease.check_held(dst, bucket, store, name)  # else gc may have removed what it copied
    # checkpoints before the commits whose heads name them (a restore's head names its own,
    # and its log cannot be replayed without it); unnamed, a checkpoint is never read
    # a checkpoint the target holds after its tip was left by a killed restore: never read
    # in place of the checked one (overwritten, or removed when the source has none there)
    stale = [s for s in want.checkpoints if s > tip]
    if stale:
        dst.delete([f"{prefix}/_log/{checkpoint_file(s)}" for s in stale])
    for seq, checkpoint in cps.items():
        with contextlib.suppress(FileExistsError):
            dst.create(f"{prefix}/_log/{checkpoint_file(seq)}", checkpoint)
    for seq, commit in commits.items():
        try:
            dst.create(f"{prefix}/_log/{commit_file(seq)}", commit)
        except FileExistsError:
            # another writer committed to the target meanwhile: stop here, a prefix landed
            return _diverged(row, src, dst)
        if progress:
            progress(len(commit))
    if not want.listed:
        # an object new to the target appears with its whole history or not at all: as
        # for a first put, the index marker comes after the commits (until then the log
        # reads as a write that never finished, and the next sync completes it)
        dst.write_bytes(f"{bucket}/{store}/_index/{name.replace('/', '~')}", b"")
    dst.write_bytes(f"{prefix}/_log/_last.json", hint)
    return row


def _clash(src: Any, dst: Any, prefix: str, have: _Object, want: _Object) -> str | None:
    """Why the listings show a damaged payload: a file of one name, so of one content, with
    another size on each side (None: no such file). Told by the listings, no request."""
    for folder, mine, theirs in (
        ("_data", have.data, want.data),
        ("_log", have.schemas, want.schemas),
    ):
        for filename, size in sorted(mine.items()):
            if filename in theirs and theirs[filename] != size:
                key = f"{prefix}/{folder}/{filename}"
                return (
                    f"{src.path(key)} has {size} bytes but the target's {dst.path(key)} has "
                    f"{theirs[filename]}: a name identifies its content, so one of them is "
                    "damaged (the target's copy was kept; run 'om fsck' on both)"
                )
    return None


def _refused(row: dict[str, Any], why: str) -> dict[str, Any]:
    """Mark ``row`` refused: nothing of the object was copied (the target is as it was)."""
    row.update(
        action="refused",
        files=0,
        bytes=0,
        error=f"{row['bucket']}/{row['store']}/{row['name']} was not synced: {why}",
    )
    return row


def _source_log(storage: Any, bucket: str, store: str, name: str) -> Any:
    """The commit log of one object of the source, with its store's validation."""
    from omfs.context import Omega

    return getattr(Omega(storage, bucket), store)._log(name)


def _source_log_store(storage: Any, bucket: str, store: str) -> Any:
    """The store of ``store`` in ``bucket`` of ``storage`` (its validation, its part chains)."""
    from omfs.context import Omega

    return getattr(Omega(storage, bucket), store)


def _shared_state(log: Any, tip: int, listed: Any = ()) -> tuple[Any, Any]:
    """The complete state of ``log`` (the target's) after its commit ``tip``, the newest
    one both sides share, and when it ends with a drop the state before that drop (what a
    restore brings back; None when unknown). One commit, a checkpoint and the commits after
    it are read; ``listed`` are the checkpoints a listing shows (the newest regular one
    shortens the replay)."""
    from dataclasses import replace

    from omfs._log import State

    if tip == 0:
        return State(), None
    found = log._commit_at(tip)
    if found is None:
        raise log._corrupt(log.key(commit_file(tip)), "the commit is missing")
    head = found[1]
    regular = [c for c in listed if head.base < c <= tip and c % CHECKPOINT_INTERVAL == 0]
    head = replace(head, checkpoint=max([head.checkpoint, *regular]))
    state = log.full(head)
    before = None
    if state.deleted and tip > 1:
        with contextlib.suppress(IntegrityError):
            before = _state_at(log, tip - 1) if log._commit_at(tip - 1) else None
    return state, before


def _checked_history(
    log: Any, anchor: Any, before: Any, parsed: dict[int, Any], states: dict[int, Any], tip: int
) -> tuple[Any, dict[int, Any]]:
    """The complete state after the source's new commits, replayed on ``anchor`` (the
    target's state at ``tip``) with every head and checkpoint checked (see
    :meth:`ObjectLog.replay`), and the checkpoints that may be copied.

    A target that holds nothing of the object has nothing to lose: when its history cannot
    be replayed from the start (an upgrade whose checkpoint gc collected), the replay
    starts from the source's newest checkpoint."""
    from dataclasses import replace

    from omfs._log import State, _is_snapshot, _state_view

    good: dict[int, Any] = {}
    if tip and tip in states:  # a checkpoint at the shared tip: it must hold that state
        if _state_view(states[tip]) == _state_view(anchor):
            good[tip] = states[tip]
        else:
            raise log._corrupt(
                log.key(checkpoint_file(tip)), "it does not hold the state of its commit"
            )
    if not parsed:
        return anchor, good
    if tip == 0:
        first = min(parsed)
        if parsed[first][0].delete:
            anchor = State(seq=first - 1)
        elif (first != 1 or (_is_snapshot(parsed[1][0]) and 1 not in states)) and states:
            newest = parsed[max(parsed)][1].checkpoint
            start = newest if newest in states else max(states)
            anchor = replace(states[start], complete=True)
            good[start] = states[start]
    commits = {s: c for s, c in parsed.items() if s > anchor.seq}
    final, checked = log.replay(anchor, commits, states, before=before)
    good.update(checked)
    return final, good


def _hint(log: Any, final: Any, checkpoints: list[int]) -> bytes:
    """The hint of the synced log: its newest commit and the newest checkpoint it holds
    that was checked or was the target's own (never a hint copied as it came)."""
    from omfs._log import FORMAT, _dumps

    usable = [c for c in checkpoints if final.base < c <= final.seq]
    doc = {"format": FORMAT, **log.identity, "seq": final.seq, "checkpoint": max(usable, default=0)}
    return _dumps(doc)


def _needed_files(
    store: Any, prefix: str, final: Any, anchor: Any, have: _Object, want: _Object, src: Any
) -> list[Expected]:
    """The payloads, sidecars and schemas the live versions of ``final`` read that the
    target lacks, each with what the validated log records of it. A file a version new to
    the target (or changed) reads that neither side holds refuses the object: its commits
    would name a payload no one has."""
    reads = {}
    fresh: set[str] = set()
    for rec in final.live():
        files = _version_reads(store, prefix, final, rec)
        reads.update(files)
        old = anchor.records.get(rec.version)
        if old is None or old.to_doc() != rec.to_doc():
            fresh.update(files)
    for key in sorted(fresh):
        if not _listed(want, key) and not _listed(have, key):
            raise IntegrityError(
                f"{src.path(key)} is missing from the source, and a version it syncs reads it "
                "(the target has no copy either): nothing of the object was copied. Run "
                "'om fsck' on the source."
            )
    return [e for e in reads.values() if not _listed(want, e.key)]


def _version_reads(store: Any, prefix: str, state: Any, rec: Any) -> dict[str, Expected]:
    """Every file version ``rec`` reads (a dataset: its parents' parts too), with the size
    and sha256 the log records."""
    if store.kind == "models":
        return _expected_files(prefix, "models", [rec])
    out = {k: e for k, e in _expected_files(prefix, "datasets", [rec]).items() if "/_log/" in k}
    parts = store._parts_of("", state, rec)
    raw = rec.info.get("sha256") if rec.kind == "raw" and len(parts) == 1 else None
    for part in parts:
        key = f"{prefix}/_data/{part['file']}"
        out[key] = Expected(key, part["size"], part.get("sha256") or raw)
    return out


def _listed(obj: _Object, key: str) -> bool:
    folder, filename = key.rsplit("/", 2)[-2:]
    return filename in (obj.data if folder == "_data" else obj.schemas)


def _listed_size(obj: _Object, key: str) -> int:
    folder, filename = key.rsplit("/", 2)[-2:]
    return (obj.data if folder == "_data" else obj.schemas).get(filename, 0)


def _expected_files(prefix: str, store: str, records: list[Any]) -> dict[str, Expected]:
    """What the validated ``records`` say of the files they name: each payload's size and
    sha256 (a dataset part written before omfs recorded its sha256: its size), a model
    payload's sidecar, a dataset schema (named by its content's hash)."""
    out: dict[str, Expected] = {}
    for rec in records:
        info = rec.info
        if store == "models":
            payload = info.get("payload")
            if payload:
                key = f"{prefix}/_data/{payload}"
                out[key] = Expected(key, info["size"], info["sha256"])
                side = f"{prefix}/_data/{payload.rsplit('.', 1)[0]}.json"
                out[side] = Expected(side, check=_sidecar_check(info["size"], info["sha256"]))
            continue
        raw_sha = info.get("sha256") if rec.kind == "raw" else None
        for part in info.get("add") or []:
            key = f"{prefix}/_data/{part['file']}"
            out[key] = Expected(key, part["size"], part.get("sha256") or raw_sha)
        schema = info.get("schema")
        if schema:
            key = f"{prefix}/_log/s-{schema}.schema"
            out[key] = Expected(key, check=functools.partial(_schema_check, schema))
    return out


def _sidecar_check(size: int, sha256: str) -> Callable[[bytes], str | None]:
    def check(data: bytes) -> str | None:
        try:
            doc = json.loads(data)
        except ValueError:
            return "the model payload's sidecar is not JSON"
        if not isinstance(doc, dict) or doc.get("sha256") != sha256 or doc.get("size") != size:
            return "the model payload's sidecar does not match the log (size, sha256)"
        return None

    return check


def _schema_check(schema_id: str, data: bytes) -> str | None:
    if hashlib.sha256(data).hexdigest()[:32] != schema_id:
        return "the schema's content does not match its name"
    return None


def _common_commit(src: Any, dst: Any, prefix: str, have: _Object, want: _Object) -> int:
    """The newest commit both sides hold byte for byte (0: none)."""
    for seq in sorted((s for s in want.commits if s in have.commits), reverse=True):
        key = f"{prefix}/_log/{seq:020d}.json"
        if _same_commit(src, dst, key, have.commits[seq], want.commits[seq]):
            return seq
    return 0


def _state_at(log: Any, seq: int) -> Any:
    """The complete state of ``log`` after commit ``seq`` (an empty one for 0)."""
    from omfs._log import State

    if seq == 0:
        return State()
    found = log._commit_at(seq)
    if found is None:
        raise SyncError(f"{log.prefix}: commit {seq} is missing")
    return log.full(found[1])


def _identity(store: Any, rec: Any) -> tuple[str, tuple[str, ...]]:
    """What names one version across contexts: its creation time and its own payload files
    (a rebased version keeps both), so a version already rebased is never applied twice."""
    return rec.created, tuple(sorted(store._own_files(rec)))


@dataclass
class _Plan:
    """What a rebase re-commits on the target, from the complete states of both sides."""

    common: int
    versions: list[Any]  # source-only version records to re-commit, oldest first
    known: dict[int, int]  # source version -> the target version it already is
    tags: dict[str, int | None]  # tag -> source version (None: removed) to apply
    drops: list[int]  # source versions to drop on the target once mapped
    attributes: dict[int, dict[str, Any]]  # common version -> attributes set on the source
    conflicts: list[str]


def _plan(source: Any, target: Any, name: str, common: int) -> _Plan:
    """Compare both sides with their shared state at ``common``: the source's versions,
    drops, attribute updates and tag moves since then that the target lacks."""
    slog, tlog = source._log(name), target._log(name)
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


def _rebase(
    src: Any, dst: Any, bucket: str, store: str, name: str, have: _Object, want: _Object,
    row: dict[str, Any], dry_run: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """Re-commit the source's versions since the last commit both sides share on top of the
    target's history (an append as an append, once), with the source's drops, attribute
    updates and tag moves since then; then the source adopts the target's history, so both
    hold the same log. A tag moved on both sides is a conflict: the target's stays."""
    source, target = getattr(src[bucket], store), getattr(dst[bucket], store)
    prefix = f"{bucket}/{store}/{name}"
    common = _common_commit(src.storage, dst.storage, prefix, have, want)
    plan = _plan(source, target, name, common)
    row["conflicts"] = plan.conflicts
    if dry_run:
        nxt = target._log(name).head().next_version
        row.update(
            action="would rebase",
            rebased=[
                {"source_version": r.version, "target_version": nxt + i}
                for i, r in enumerate(plan.versions)
            ],
            tags={t: v for t, v in plan.tags.items()},
        )
        return row
    try:  # the target's history must replay before anything is copied or committed
        tlog = target._log(name)
        _target_history(source, tlog, tlog.head(), common)
    except IntegrityError as exc:
        return _refused(row, str(exc))
    _lease_target(dst.storage, bucket, store, name)  # gc keeps off both sides' new files
    _lease_target(src.storage, bucket, store, name)
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
    rebased = []
    for rec in plan.versions:
        origin = {"context": src.root, "version": rec.version}
        state = target._commit(name, _recommit(target, store, prefix, rec, origin), retry=True)
        mapping[rec.version] = state.latest
        rebased.append({"source_version": rec.version, "target_version": state.latest})
    _replay_metadata(target, name, plan, mapping)
    _adopt_target(src, dst, source, target, bucket, store, name, common, have.seq)
    row.update(
        action="rebased",
        rebased=rebased,
        tags={t: (None if v is None else mapping.get(v, v)) for t, v in plan.tags.items()},
        source_versions=_versions(src.storage, bucket, store, name),
        target_versions=_versions(dst.storage, bucket, store, name),
    )
    return row


def _recommit(
    target: Any, store: str, prefix: str, rec: Any, origin: dict[str, Any]
) -> Callable[[Any], Any]:
    """The change that re-commits ``rec`` on top of the target's latest version."""
    from dataclasses import replace

    from omfs._log import Commit

    def change(state: Any) -> Any:
        info = dict(rec.info)
        if store == "datasets" and info.get("parent") is not None:
            latest = state.records.get(state.latest) if state.exists else None
            if latest is None or latest.info.get("schema") != info.get("schema"):
                raise SyncError(
                    f"Cannot rebase {prefix} v{rec.version}: it appends to a dataset "
                    "whose schema differs in the target; nothing more was rebased."
                )
            details = target._appended_details(latest, rec.kind, info, info["add"])
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


def _replay_metadata(target: Any, name: str, plan: _Plan, mapping: dict[int, int]) -> None:
    """The source's drops, attribute updates and tag moves, on the target's versions."""
    from omfs._log import Commit, TagMove
    from omfs.metadata import utcnow

    def change(state: Any) -> Any:
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
        target._commit(
            name,
            lambda _s, v=v, values=values: Commit(
                op="update-attributes", attributes=(v, values, utcnow())
            ),
            retry=True,
            full=True,
        )
    state = target._state(name, full=True, reader=False)
    commit = change(state)
    if commit.drops or commit.moves:
        target._commit(name, change, retry=True, full=True)


def _needed_records(state: Any) -> list[Any]:
    """The records whose payload files a live version still reads: the live versions and,
    for appended dataset versions, the versions they append to (a pruned parent's parts
    stay while a live version uses them; a dropped version's own files may be gone)."""
    need: dict[int, Any] = {}
    for rec in state.live():
        while rec is not None and rec.version not in need:
            need[rec.version] = rec
            parent = rec.info.get("parent")
            rec = state.records.get(parent) if parent is not None else None
    return list(need.values())


def _fetch_target_files(
    src: Any, dst: Any, target: Any, bucket: str, store: str, name: str
) -> str | None:
    """Before a rebase commits anything: copy to the source, checked as they travel, the
    files the target's live versions read that the source lacks (it keeps every file it
    has), so that adopting the target's history later needs no copy. Why it cannot, or None."""
    tlog = target._log(name)
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
    src: Any, dst: Any, source: Any, target: Any, bucket: str, store: str, name: str,
    common: int, old: int,
) -> None:  # fmt: skip
    """The source takes the target's history of ``name`` (whose files it already holds:
    see ``_fetch_target_files``), as replayed and checked on the shared state: the switch
    (see ``VersionedStore._adopt``), then checkpoints and hint."""
    # a writer may have committed to the target since: fetch what its versions add
    why = _fetch_target_files(src, dst, target, bucket, store, name)
    if why is not None:
        raise IntegrityError(f"Cannot rebase {bucket}/{store}/{name}: {why}")
    tlog = target._log(name)
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
    source._adopt(name, journal)


def _target_history(
    source: Any, tlog: Any, head: Any, common: int
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
    slog = source._log(tlog.identity["name"])
    anchor = _state_at(slog, common)
    before = None
    if anchor.deleted and common > 1 and slog._commit_at(common - 1) is not None:
        before = _state_at(slog, common - 1)
    full, good = _checked_history(tlog, anchor, before, parsed, states, common)
    commits = {str(s): data.decode() for s, data in raw.items()}
    checkpoints = {str(s): cps[s].decode() for s in sorted(good) if s > common}
    return full, commits, checkpoints


# -- bundles moved to omfs.bundle; the old names still work -------------------------------
def __getattr__(name: str) -> Any:
    if name in ("export", "import_"):
        from omfs import bundle

        return getattr(bundle, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
