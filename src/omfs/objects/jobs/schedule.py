"""When a job runs: a :class:`Schedule` and the pure time math of its slots.

A *slot* is an instant a schedule fires at: a timezone-aware datetime, in the schedule's
zone. ``every`` slots are whole multiples of the interval since the Unix epoch (so every
scheduler agrees on them, and DST does not move them: ``every="1h"`` is 3600 s apart, also
on the night the clocks change). ``cron`` slots are wall-clock times in the schedule's zone
(``tz``, an IANA name, UTC by default), turned into instants here, never by croniter:

- a wall time the clocks skip (spring forward: 02:30 in Zurich on the last Sunday of March)
  fires once, at the first instant after the gap (03:00 local); several skipped times
  (``*/15 2 * * *``) and a time just after the gap that also matches fire once together;
- a wall time the clocks pass twice (fall back: 02:30 on the last Sunday of October) fires
  once, at its first occurrence.

Compare slots as instants (``.timestamp()``, or in UTC): Python compares two datetimes of
one zone by their wall time, so the two 02:30 of a fall-back night would compare equal.
"""

from __future__ import annotations

import difflib
import json
import math
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from itertools import takewhile
from typing import Any, Literal

from omfs._util import depth_problem, parse_duration
from omfs.errors import ScheduleError, UsageError
from omfs.objects.jobs.cron import Cron, parse_cron
from omfs.objects.jobs.runs import RESERVED_PARAMS

__all__ = [
    "CATCHUP",
    "MAX_CATCHUP",
    "OVERLAP",
    "Catchup",
    "Overlap",
    "Schedule",
    "due_slots",
    "next_runs",
    "resolve_wall_time",
    "slot_id",
    "slots_after",
]

Catchup = Literal["skip", "latest", "all"]
Overlap = Literal["skip", "allow"]
#: what a scheduler does with the slots it missed while it was down
CATCHUP: tuple[str, ...] = ("skip", "latest", "all")
#: whether a slot fires while the job's previous run still runs
OVERLAP: tuple[str, ...] = ("skip", "allow")
#: ``catchup="all"`` fires at most this many missed slots (the newest), by default
MAX_CATCHUP = 100


@dataclass(frozen=True)
class Schedule:
    """A job's schedule: ``cron`` (five fields, wall time in ``tz``) or ``every`` (an
    interval: ``"30s"``, ``"5min"``, ``"1h"``, seconds, a timedelta; kept as whole seconds);
    ``params`` for each run; ``catchup`` (``skip``: only slots from now on; ``latest``: the
    newest missed slot once; ``all``: each missed slot, at most :data:`MAX_CATCHUP`) and
    ``overlap`` (``skip`` a slot while the previous run still runs, or ``allow`` it).

    ``job`` names the job (None for a schedule not stored yet); ``created`` is when it was
    stored: slots before it are never due.
    """

    cron: str | None = None
    every: int | float | str | timedelta | None = None
    tz: str = "UTC"
    params: dict[str, Any] = field(default_factory=dict)
    catchup: Catchup = "skip"
    overlap: Overlap = "skip"
    job: str | None = None
    created: datetime | None = None

    def __post_init__(self) -> None:
        where = f"Schedule of job {self.job!r}" if self.job else "Schedule"
        if (self.cron is None) == (self.every is None):
            raise ScheduleError(
                f"{where} needs exactly one of cron= (e.g. '0 6 * * 1-5') or every= "
                "(e.g. '30s'), not both or neither"
            )
        if self.cron is not None:
            object.__setattr__(self, "cron", self.parsed_cron.text)
        else:
            object.__setattr__(self, "every", _seconds(where, self.every))
        self.zone  # noqa: B018 - check the zone now
        _check_choice(where, "catchup", self.catchup, CATCHUP)
        _check_choice(where, "overlap", self.overlap, OVERLAP)
        _check_params(where, self.params)
        if self.created is not None and self.created.tzinfo is None:
            raise ScheduleError(f"{where}: created={self.created!r} has no time zone")

    @cached_property
    def parsed_cron(self) -> Cron:
        """The parsed cron expression (a ScheduleError for ``every`` schedules)."""
        if self.cron is None:
            raise ScheduleError("An every= schedule has no cron expression")
        return parse_cron(self.cron)

    @cached_property
    def zone(self) -> zoneinfo.ZoneInfo:
        """The schedule's time zone."""
        return _zone(self.tz)

    @property
    def interval(self) -> int | None:
        """The interval of an ``every`` schedule in seconds (None for cron)."""
        return None if self.every is None else int(self.every)  # type: ignore[arg-type]

    def describe(self) -> str:
        """One line: ``cron '0 6 * * 1-5' (Europe/Zurich)`` or ``every 30s``."""
        if self.cron is not None:
            return f"cron {self.cron!r} ({self.tz})"
        return f"every {_duration_text(self.interval or 0)}"

    def to_dict(self) -> dict[str, Any]:
        """The schedule as JSON-ready data (what is stored)."""
        return {
            "job": self.job,
            "cron": self.cron,
            "every": None if self.interval is None else _duration_text(self.interval),
            "tz": self.tz,
            "params": self.params,
            "catchup": self.catchup,
            "overlap": self.overlap,
            "created": None if self.created is None else self.created.isoformat(),
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Schedule:
        """The schedule ``to_dict`` gave (unknown keys are ignored: newer writers)."""
        created = doc.get("created")
        return cls(
            cron=doc.get("cron"),
            every=doc.get("every"),
            tz=doc.get("tz", "UTC"),
            params=doc.get("params") or {},
            catchup=doc.get("catchup", "skip"),
            overlap=doc.get("overlap", "skip"),
            job=doc.get("job"),
            created=None if created is None else datetime.fromisoformat(created),
        )


def _seconds(where: str, every: Any) -> int:
    try:
        seconds = parse_duration(every).total_seconds()
    except UsageError as exc:
        raise ScheduleError(f"{where}: every={every!r} is no interval ({exc})") from None
    if seconds < 1:
        raise ScheduleError(
            f"{where}: every={every!r} is shorter than one second, the scheduler's resolution"
        )
    if seconds != int(seconds):
        raise ScheduleError(f"{where}: every={every!r} is not a whole number of seconds")
    return int(seconds)


def _duration_text(seconds: int) -> str:
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("min", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _zone(tz: Any) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError, OSError):
        pass
    close = difflib.get_close_matches(str(tz), zoneinfo.available_timezones(), n=1)
    advice = f"did you mean {close[0]!r}?" if close else "use an IANA name such as 'Europe/Zurich'"
    raise ScheduleError(f"Unknown time zone {tz!r}: {advice}")


def _check_choice(where: str, what: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        choices = ", ".join(repr(a) for a in allowed)
        raise ScheduleError(f"{where}: {what}={value!r} is not one of {choices}")


def _check_params(where: str, params: Any) -> None:
    if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
        raise ScheduleError(f"{where}: params must be a dict with str keys, got {params!r}")
    reserved = [k for k in RESERVED_PARAMS if k in params]
    if reserved:
        raise ScheduleError(
            f"{where}: no parameter may be named {reserved[0]!r} (a job already has 'om' and "
            "'params'); rename it"
        )
    problem = depth_problem(params)
    if problem:
        raise ScheduleError(f"{where}: params are refused: {problem}")
    try:
        json.dumps(params, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ScheduleError(f"{where}: params must be JSON values ({exc})") from None


# -- wall time to instants -----------------------------------------------------------------
def resolve_wall_time(wall: datetime, zone: zoneinfo.ZoneInfo) -> datetime:
    """The instant (in UTC) a naive wall time of ``zone`` fires at: its first occurrence,
    or for a time the clocks skip, the first instant after the gap."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first
    # in a gap: fold=1 reads it with the offset after the change (an instant before the
    # gap), fold=0 with the offset before (after the gap); the change lies between
    lo = int(wall.replace(tzinfo=zone, fold=1).timestamp())
    hi = int(first.timestamp())
    while hi - lo > 1:  # the first second whose wall time is past ``wall``
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, zone).replace(tzinfo=None) > wall:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC)


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ScheduleError(f"A time of a schedule needs a time zone, got {moment!r}")
    return moment.astimezone(UTC)


def slots_after(schedule: Schedule, after: datetime) -> Iterator[datetime]:
    """The schedule's slots strictly after ``after``, in order, in UTC, without end."""
    after = _utc(after)
    interval = schedule.interval
    if interval is not None:
        k = math.floor(after.timestamp() / interval) + 1
        while True:
            yield datetime.fromtimestamp(k * interval, UTC)
            k += 1
    zone = schedule.zone
    # every wall time before this one resolves to an instant at or before ``after``
    start = after.astimezone(zone).replace(tzinfo=None, fold=0)
    previous = after
    for wall in schedule.parsed_cron.times_from(start.replace(second=0, microsecond=0)):
        moment = resolve_wall_time(wall, zone)
        if moment > previous:  # skipped times collapse into one; past ones drop
            previous = moment
            yield moment


def next_runs(schedule: Schedule, after: datetime | None = None, n: int = 5) -> list[datetime]:
    """The next ``n`` slots strictly after ``after`` (default: now), in the schedule's zone."""
    moment = datetime.now(UTC) if after is None else after
    slots = slots_after(schedule, moment)
    return [next(slots).astimezone(schedule.zone) for _ in range(max(0, n))]


def _between(schedule: Schedule, start: datetime, end: datetime) -> list[datetime]:
    """The slots in ``(start, end]``, in UTC."""
    return list(takewhile(lambda s: s <= end, slots_after(schedule, start)))


def _newest(schedule: Schedule, start: datetime, end: datetime, k: int) -> list[datetime]:
    """The newest ``k`` slots in ``(start, end]``, oldest first: windows back from ``end``
    that grow fourfold, so a long downtime is not enumerated slot by slot."""
    if k <= 0 or end <= start:
        return []
    window = timedelta(seconds=(schedule.interval or 3600) * k)
    while True:
        low = max(start, end - window)
        found = _between(schedule, low, end)
        if len(found) >= k or low == start:
            return found[-k:]
        window *= 4


def due_slots(
    schedule: Schedule,
    last_fired: datetime | None,
    now: datetime,
    limit: int = MAX_CATCHUP,
    *,
    since: datetime | None = None,
) -> list[datetime]:
    """The slots to fire at ``now``, oldest first, in the schedule's zone.

    ``last_fired`` is the newest slot already fired (None: never; slots before the
    schedule's ``created`` are never due). ``since`` is when the caller started watching
    (a scheduler passes its previous tick; default ``now``): slots after it are on time and
    all fire, slots up to it were missed and follow ``catchup``. At most ``limit`` slots,
    the newest.
    """
    now = _utc(now)
    bounds = [_utc(t) for t in (last_fired, schedule.created) if t is not None]
    watching = now if since is None else min(_utc(since), now)
    start = max(bounds) if bounds else watching
    on_time = _newest(schedule, max(start, watching), now, limit)
    missed_count = {"skip": 0, "latest": 1, "all": limit}[schedule.catchup]
    missed = _newest(schedule, start, watching, missed_count)
    return [s.astimezone(schedule.zone) for s in (missed + on_time)[-limit:]]


def slot_id(slot: datetime) -> str:
    """A slot as a file-name-safe UTC stamp: ``20240331T010000Z``."""
    return _utc(slot).strftime("%Y%m%dT%H%M%SZ")
