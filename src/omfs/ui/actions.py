"""The UI's actions: move a tag, roll a tag back, promote a version, each shown first.

Every action has a preview (a GET that changes nothing: where the tag points now and
where it would point, or the promotion's dry-run plan) and a confirmation (a POST with the
session's CSRF token and a reason). The store records the move as the CLI does: the
operating-system user who runs ``om ui``, the time, and the reason given.
"""

from __future__ import annotations

from typing import Any

from omfs.errors import UsageError

__all__ = ["STORES", "move_preview", "promote", "promote_preview", "rollback_preview"]

#: the stores whose objects the UI tags and promotes
STORES = ("datasets", "models")


def check_store(store: str) -> str:
    """``store`` when it is one the UI acts on, else a UsageError."""
    if store not in STORES:
        raise UsageError(f"No store {store!r}: use datasets or models")
    return store


def move_preview(store: Any, name: str, tag: str, version: int) -> dict[str, Any]:
    """What moving ``tag`` of ``name`` to ``version`` would change (nothing is written)."""
    tag = tag.strip()
    if not tag:
        raise UsageError("Give the tag to move, e.g. prod")
    store.metadata(name, version=version)  # NotFoundError when there is no such version
    return {"tag": tag, "now": store.tags(name).get(tag), "to": version}


def rollback_preview(store: Any, name: str, tag: str) -> dict[str, Any]:
    """Where ``tag`` points now and where a rollback would move it (its previous version)."""
    tags = store.tags(name)
    if tag not in tags:
        raise UsageError(f"{name!r} has no tag {tag!r}; its tags are {sorted(tags) or 'none'}")
    moves = store.tag_history(name, tag)
    previous = moves[-1]["previous"] if moves else None
    if previous is None:
        raise UsageError(
            f"Tag {tag!r} of {name!r} has no previous version to roll back to (it was set once)"
        )
    return {"tag": tag, "now": tags[tag], "to": previous, "last": moves[-1]}


def promote_preview(source: Any, name: str, version: int, target: Any) -> dict[str, Any]:
    """The dry-run plan of promoting ``name`` v``version`` to the ``target`` store."""
    plan = source.promote(f"{name}@v{version}", target, dry_run=True, create_bucket=True)
    return {"plan": plan, "version": version}


def promote(
    source: Any, name: str, version: int, target: Any, tag: str, reason: str
) -> tuple[Any, Any]:
    """Promote ``name`` v``version`` to ``target``; with ``tag``, point that tag of the
    target at the copy, with ``reason`` (recorded with the user, as a tag move). Returns the
    target's metadata and the tag move's (or None)."""
    meta = source.promote(f"{name}@v{version}", target, create_bucket=True)
    tagged = None
    if tag.strip():
        tagged = target.tag(f"{meta.name}@v{meta.version}", tag.strip(), reason=reason or None)
    return meta, tagged
