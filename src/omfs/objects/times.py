"""Times and durations as omfs reads them (``at=``, ``older_than=``, gc's ``grace``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from omfs._util import parse_duration
from omfs.errors import UsageError

__all__ = ["at_or_before", "parse_duration", "parse_time", "tags_at"]


def parse_time(value: Any) -> datetime:
    """An ISO 8601 time (``2026-03-01T12:00:00Z``) or datetime, as an aware UTC datetime."""
    if isinstance(value, datetime):
        when = value
    else:
        try:
            when = datetime.fromisoformat(str(value).strip())
        except ValueError:
            raise UsageError(
                f"Invalid time {value!r}: use ISO 8601, e.g. '2026-03-01T12:00:00Z'"
            ) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def at_or_before(stamp: str, when: datetime) -> bool:
    """True when the ISO time ``stamp`` (as omfs writes them) is at or before ``when``."""
    try:
        return parse_time(stamp) <= when
    except ValueError:
        return False


def tags_at(tag_log: Iterable[Mapping[str, Any]], when: datetime) -> dict[str, int]:
    """Each tag -> the version it pointed at at ``when``, from a complete state's tag log
    (its moves, oldest first)."""
    tags: dict[str, int] = {}
    for move in tag_log:
        if at_or_before(move["at"], when):
            if move["v"] is None:
                tags.pop(move["tag"], None)
            else:
                tags[move["tag"]] = move["v"]
    return tags
