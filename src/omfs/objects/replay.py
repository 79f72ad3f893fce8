"""Checking copied history against the history it extends (sync, import, rebase): the
copied commits are replayed on the state both sides share, and each head and checkpoint
must agree with the replay. :meth:`omfs.objects.log.ObjectLog.replay` is the entry point."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any, Protocol

from omfs.errors import IntegrityError
from omfs.objects.layout import CHECKPOINT_INTERVAL, checkpoint_file, commit_file
from omfs.objects.records import Commit, State, apply, dumps

__all__ = ["is_snapshot", "replay", "state_view"]

#: A commit as :meth:`ObjectLog.commit_at` gives it: (commit, head, time, user).
ParsedCommit = tuple[Commit, State, str, str]


class ObjectLog(Protocol):
    """What the replay uses of :class:`omfs.objects.log.ObjectLog` (which imports this)."""

    def key(self, filename: str) -> str: ...

    def corrupt(self, key: str, why: str) -> IntegrityError: ...


#: Commits without changes whose state is the checkpoint of the same number.
_SNAPSHOT_OPS = ("upgrade", "restore")


def is_snapshot(commit: Commit) -> bool:
    return commit.op in _SNAPSHOT_OPS and not commit.actions()


def _plain(doc: Any) -> Any:
    """``doc`` as JSON gives it back (tuples as lists, keys as strings): comparable."""
    return json.loads(dumps(doc))


def _counters(state: State) -> dict[str, Any]:
    """The counters and tags that a head and a complete state both say."""
    return {
        "next": state.next_version,
        "latest": state.latest,
        "tags": state.tags,
        "deleted": state.deleted,
        "base": state.base,
    }


def _head_view(state: State) -> Any:
    """What a head says: the counters, the tags, and every version record it holds (a head
    of a complete state holds the latest and the tagged versions only)."""
    held = (
        sorted(state.records)
        if state.complete is False
        else sorted({x for x in (state.latest, *state.tags.values()) if x} & set(state.records))
    )
    records = {v: state.records[v].to_doc() for v in held}
    return _plain({**_counters(state), "records": records})


def state_view(state: State) -> Any:
    """What a complete state holds: counters, tags, every version record, tag history."""
    records = {v: r.to_doc() for v, r in sorted(state.records.items())}
    return _plain({**_counters(state), "records": records, "tag_log": state.tag_log})


def replay(
    log: ObjectLog,
    start: State,
    commits: dict[int, ParsedCommit],
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
        key = log.key(commit_file(seq))
        if seq not in commits:
            raise log.corrupt(key, "the commit is missing")
        commit, head, at, user = commits[seq]
        if is_snapshot(commit):
            new = _snapshot(log, seq, state, before_drop, commit, checkpoints)
        else:
            new = apply(state, commit, at, user)
        if _head_view(head) != _head_view(new):
            raise log.corrupt(
                key,
                "its head does not match the history it extends (versions, tags or "
                "counters differ from what its changes give)",
            )
        if seq in checkpoints:
            if state_view(checkpoints[seq]) == state_view(new):
                good[seq] = checkpoints[seq]
            elif seq in cited or seq % CHECKPOINT_INTERVAL == 0:
                raise log.corrupt(
                    log.key(checkpoint_file(seq)),
                    "it does not hold the state of the commits it summarises",
                )
        if commit.delete:
            before_drop = state
        state = new
    return state, good


def _snapshot(
    log: ObjectLog,
    seq: int,
    state: State,
    before_drop: State | None,
    commit: Commit,
    checkpoints: dict[int, State],
) -> State:
    """The state after a commit whose state is its checkpoint (an upgrade, commit 1; a
    restore, which brings back the state before the drop), checked where it can be."""
    key = log.key(commit_file(seq))
    snap = checkpoints.get(seq)
    if commit.op == "restore" and snap is None and before_drop is not None:
        snap = replace(before_drop, seq=seq, checkpoint=seq)  # gc collected its checkpoint
    if snap is None:
        raise log.corrupt(key, f"its checkpoint {checkpoint_file(seq)} is missing")
    if commit.op == "upgrade" and (seq != 1 or state.seq != 0):
        raise log.corrupt(key, "an upgrade can only be the first commit")
    if commit.op == "restore" and (
        before_drop is None
        or not state.deleted
        or state_view(replace(before_drop, seq=seq)) != state_view(snap)
    ):
        raise log.corrupt(
            log.key(checkpoint_file(seq)),
            "it does not hold the history the restored object had before its drop",
        )
    return replace(snap, seq=seq, complete=True)
