"""Checking copied history (sync, import, rebase): the commits one side copies are replayed
on the other side's state at the commit both share (:meth:`ObjectLog.replay`), and a head or
checkpoint that contradicts the replay, or a version whose payload neither side holds,
refuses the object. Also what the synced log's hint and files are, from that replay."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from omfs.errors import IntegrityError
from omfs.objects.log import CHECKPOINT_INTERVAL, FORMAT, State, checkpoint_file, commit_file
from omfs.objects.records import dumps
from omfs.objects.replay import is_snapshot, state_view
from omfs.objects.stores import SIDECAR_STORES
from omfs.ops.common import SyncError
from omfs.ops.inventory import ObjectFiles, expected_files, listed
from omfs.storage import Expected

if TYPE_CHECKING:
    from omfs.objects.log import ObjectLog

__all__ = [
    "checked_history",
    "needed_files",
    "shared_state",
    "state_at",
    "sync_hint",
    "version_reads",
]


def state_at(log: ObjectLog, seq: int) -> State:
    """The complete state of ``log`` after commit ``seq`` (an empty one for 0)."""
    if seq == 0:
        return State()
    found = log.commit_at(seq)
    if found is None:
        raise SyncError(f"{log.prefix}: commit {seq} is missing")
    return log.full(found[1])


def shared_state(log: Any, tip: int, listed: Any = ()) -> tuple[Any, Any]:
    """The complete state of ``log`` (the target's) after its commit ``tip``, the newest
    one both sides share, and when it ends with a drop the state before that drop (what a
    restore brings back; None when unknown). One commit, a checkpoint and the commits after
    it are read; ``listed`` are the checkpoints a listing shows (the newest regular one
    shortens the replay)."""
    if tip == 0:
        return State(), None
    found = log.commit_at(tip)
    if found is None:
        raise log.corrupt(log.key(commit_file(tip)), "the commit is missing")
    head = found[1]
    regular = [c for c in listed if head.base < c <= tip and c % CHECKPOINT_INTERVAL == 0]
    head = replace(head, checkpoint=max([head.checkpoint, *regular]))
    state = log.full(head)
    before = None
    if state.deleted and tip > 1:
        with contextlib.suppress(IntegrityError):
            before = state_at(log, tip - 1) if log.commit_at(tip - 1) else None
    return state, before


def checked_history(
    log: Any, anchor: Any, before: Any, parsed: dict[int, Any], states: dict[int, Any], tip: int
) -> tuple[Any, dict[int, Any]]:
    """The complete state after the source's new commits, replayed on ``anchor`` (the
    target's state at ``tip``) with every head and checkpoint checked (see
    :meth:`ObjectLog.replay`), and the checkpoints that may be copied.

    A target that holds nothing of the object has nothing to lose: when its history cannot
    be replayed from the start (an upgrade whose checkpoint gc collected), the replay
    starts from the source's newest checkpoint."""
    good: dict[int, Any] = {}
    if tip and tip in states:  # a checkpoint at the shared tip: it must hold that state
        if state_view(states[tip]) == state_view(anchor):
            good[tip] = states[tip]
        else:
            raise log.corrupt(
                log.key(checkpoint_file(tip)), "it does not hold the state of its commit"
            )
    if not parsed:
        return anchor, good
    if tip == 0:
        first = min(parsed)
        if parsed[first][0].delete:
            anchor = State(seq=first - 1)
        elif (first != 1 or (is_snapshot(parsed[1][0]) and 1 not in states)) and states:
            newest = parsed[max(parsed)][1].checkpoint
            start = newest if newest in states else max(states)
            anchor = replace(states[start], complete=True)
            good[start] = states[start]
    commits = {s: c for s, c in parsed.items() if s > anchor.seq}
    final, checked = log.replay(anchor, commits, states, before=before)
    good.update(checked)
    return final, good


def sync_hint(log: Any, final: Any, checkpoints: list[int]) -> bytes:
    """The hint of the synced log: its newest commit and the newest checkpoint it holds
    that was checked or was the target's own (never a hint copied as it came)."""
    usable = [c for c in checkpoints if final.base < c <= final.seq]
    doc = {"format": FORMAT, **log.identity, "seq": final.seq, "checkpoint": max(usable, default=0)}
    return dumps(doc)


def needed_files(
    store: Any,
    prefix: str,
    final: Any,
    anchor: Any,
    have: ObjectFiles,
    want: ObjectFiles,
    src: Any,
) -> list[Expected]:
    """The payloads, sidecars and schemas the live versions of ``final`` read that the
    target lacks, each with what the validated log records of it. A file a version new to
    the target (or changed) reads that neither side holds refuses the object: its commits
    would name a payload no one has."""
    reads = {}
    fresh: set[str] = set()
    for rec in final.live():
        files = version_reads(store, prefix, final, rec)
        reads.update(files)
        old = anchor.records.get(rec.version)
        if old is None or old.to_doc() != rec.to_doc():
            fresh.update(files)
    for key in sorted(fresh):
        if not listed(want, key) and not listed(have, key):
            raise IntegrityError(
                f"{src.path(key)} is missing from the source, and a version it syncs reads it "
                "(the target has no copy either): nothing of the object was copied. Run "
                "'om fsck' on the source."
            )
    return [e for e in reads.values() if not listed(want, e.key)]


def version_reads(store: Any, prefix: str, state: Any, rec: Any) -> dict[str, Expected]:
    """Every file version ``rec`` reads (a dataset: its parents' parts too), with the size
    and sha256 the log records."""
    if store.kind in SIDECAR_STORES:
        return expected_files(prefix, store.kind, [rec])
    out = {k: e for k, e in expected_files(prefix, "datasets", [rec]).items() if "/_log/" in k}
    parts = store.parts_of("", state, rec)
    raw = rec.info.get("sha256") if rec.kind == "raw" and len(parts) == 1 else None
    for part in parts:
        key = f"{prefix}/_data/{part['file']}"
        out[key] = Expected(key, part["size"], part.get("sha256") or raw)
    return out
