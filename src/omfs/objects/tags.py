"""Tags: point a name at a version, move it, remove it, roll it back; every move is kept
in the log (``tag_history``)."""

from __future__ import annotations

from typing import Any

from omfs.errors import UsageError
from omfs.names import check_name, check_tag
from omfs.objects.commits import CommittingStore
from omfs.objects.metadata import Metadata
from omfs.objects.records import Commit, State, TagEvent, TagMove

__all__ = ["TagsMixin"]


class TagsMixin(CommittingStore):
    """``tags``, ``tag``, ``untag``, ``tag_history`` and ``rollback`` of a store."""

    def tags(self, name: str) -> dict[str, int]:
        """The tags of ``name`` and the versions they point at now."""
        name = check_name(name)
        state = self.state(name)
        if not state.exists:
            raise self._not_found(name)
        return dict(sorted(state.tags.items()))

    def tag(self, spec: str, tag: str, *, reason: str | None = None) -> Metadata:
        """Point ``tag`` at the version ``spec`` selects (``m@v3``; the latest by default),
        moving it if it pointed elsewhere. Every move is kept: see :meth:`tag_history`."""
        tag = check_tag(tag)
        name, rec, _ = self.select(spec)
        number = rec.version

        def change(state: State) -> Commit:
            self._check_live(name, state, number)
            return Commit(op="tag", moves=[TagMove(tag, number, reason)])

        # the full state: the head after the move holds the newly tagged version's record
        state = self.commit(name, change, retry=True, full=True)
        return self.metadata_for(name, state.records[number], state.tags)

    def untag(self, name: str, tag: str, *, reason: str | None = None) -> None:
        """Remove ``tag`` from ``name`` (recorded in its history)."""
        name, tag = check_name(name), check_tag(tag)

        def change(state: State) -> Commit:
            if not state.exists or tag not in state.tags:
                raise self._not_found(name, f" with tag {tag!r}")
            return Commit(op="untag", moves=[TagMove(tag, None, reason)])

        self.commit(name, change, retry=True)

    def tag_history(self, name: str, tag: str | None = None) -> list[dict[str, Any]]:
        """Every move of ``tag`` (of every tag by default), oldest first: ``tag``,
        ``version`` (None: removed), ``previous``, ``at``, ``user``, ``reason``, ``source``."""
        name = check_name(name)
        if tag is not None:
            check_tag(tag)
        state = self.state(name, full=True)
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
        a move of its own). Rolling back again goes further back along the tag's history:
        a rollback undoes one move, as an editor's undo does."""
        name, tag = check_name(name), check_tag(tag)

        def change(state: State) -> Commit:
            if not state.exists or tag not in state.tags:
                raise self._not_found(name, f" with tag {tag!r}")
            previous = _before_last_move([e for e in state.tag_log if e["tag"] == tag])
            if previous is None:
                raise UsageError(
                    f"Tag {tag!r} of {self._where(name)} has no previous version to roll "
                    f"back to; tag_history({name!r}, {tag!r}) shows its moves."
                )
            self._check_live(name, state, previous)
            why = reason or f"rollback from version {state.tags[tag]}"
            return Commit(op="rollback", moves=[TagMove(tag, previous, why, ROLLBACK)])

        state = self.commit(name, change, retry=True, full=True)
        return self.metadata_for(name, state.records[state.tags[tag]], state.tags)


#: the ``source`` of a tag move made by ``rollback`` (a move back, undone by none)
ROLLBACK = {"op": "rollback"}


def _before_last_move(moves: list[TagEvent]) -> int | None:
    """Where a rollback takes a tag: its moves replayed as an undo stack (a move pushes the
    version it left, a rollback pops one), whose top is the answer."""
    stack: list[int | None] = []
    for move in moves:
        if move.get("source") == ROLLBACK:
            if stack:
                stack.pop()
        else:
            stack.append(move["prev"])
    return stack[-1] if stack else None
