"""Times and durations as omfs reads them (``at=``, ``older_than=``, gc's ``grace``)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = ["at_or_before", "parse_duration", "parse_time"]


def parse_time(value: Any) -> datetime:
    """An ISO 8601 time (``2026-03-01T12:00:00Z``) or datetime, as an aware UTC datetime."""
    if isinstance(value, datetime):
        when = value
    else:
        try:
            when = datetime.fromisoformat(str(value).strip())
        except ValueError:
            raise ValueError(
                f"Invalid time {value!r}: use ISO 8601, e.g. '2026-03-01T12:00:00Z'"
            ) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*", re.IGNORECASE)
_UNITS = {"s": 1, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(value: Any) -> timedelta:
    """``"90s"``, ``"5min"``, ``"1h"``, ``"30d"``, ``"2w"``, seconds, or a timedelta.

    The one parser of durations (prune's ``older_than``, gc's ``grace``, their CLI
    options). A bare ``m`` is refused: it reads as a minute to some and a month to others.
    """
    if isinstance(value, timedelta):
        if value < timedelta(0):
            raise ValueError(f"Invalid duration {value!r}: it is negative")
        return value
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return timedelta(seconds=value)
    match = _DURATION.fullmatch(str(value))
    unit = match.group(2).lower() if match else ""
    if match and unit == "m":
        number = match.group(1)
        raise ValueError(
            f"Duration {value!r} is ambiguous: write {number}min for {number} minute(s) or "
            f"{float(number) * 30:g}d for {number} month(s)"
        )
    if not match or unit not in _UNITS:
        raise ValueError(
            f"Invalid duration {value!r}: use a number and a unit (s, min, h, d, w), "
            "e.g. '90s', '5min', '1h', '30d' or '2w'"
        )
    return timedelta(seconds=float(match.group(1)) * _UNITS[unit])


def at_or_before(stamp: str, when: datetime) -> bool:
    """True when the ISO time ``stamp`` (as omfs writes them) is at or before ``when``."""
    try:
        return parse_time(stamp) <= when
    except ValueError:
        return False
