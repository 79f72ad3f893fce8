"""Cron expressions on naive wall-clock times: parsed, checked and enumerated.

Five fields: minute (0-59), hour (0-23), day of month (1-31), month (1-12 or ``jan``-``dec``)
and day of week (0-7 or ``sun``-``sat``, 0 and 7 both Sunday). Each field is ``*``, a value,
a range ``a-b``, any of them with a step (``*/15``, ``8-18/2``, ``5/10``), or a comma list
of those. ``@hourly``, ``@daily`` (``@midnight``), ``@weekly``, ``@monthly`` and
``@yearly`` (``@annually``) stand for their usual expressions. As in Vixie cron, when both
day fields are restricted (neither starts with ``*``) a day matches either of them.

Nothing here knows about time zones: :mod:`omfs.objects.jobs.schedule` turns the wall
times this module yields into instants, with the DST rules written down there.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from omfs.errors import ScheduleError

__all__ = ["Cron", "parse_cron"]

_FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day-of-month", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 0, 7),
)
_MONTHS = {m.lower(): i for i, m in enumerate(calendar.month_abbr) if m}
_WEEKDAYS = {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
_MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_EXAMPLE = "e.g. '0 6 * * 1-5' (06:00 on weekdays) or '*/15 * * * *'"
#: days in each month at most (February of a leap year): which day fields can ever match
_LONGEST_MONTH = {m: 29 if m == 2 else calendar.monthrange(2001, m)[1] for m in range(1, 13)}


@dataclass(frozen=True)
class Cron:
    """A parsed cron expression: the values each field allows."""

    text: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool  # the day-of-month field starts with '*'
    any_weekday: bool  # the day-of-week field starts with '*'

    def matches_day(self, day: date) -> bool:
        """Whether the expression fires on ``day`` (month and the two day fields)."""
        if day.month not in self.months:
            return False
        in_days = day.day in self.days
        in_weekdays = (day.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return in_days and in_weekdays
        return in_days or in_weekdays

    def matches(self, wall: datetime) -> bool:
        """Whether the expression fires at wall time ``wall`` (seconds ignored)."""
        return wall.minute in self.minutes and wall.hour in self.hours and self.matches_day(wall)

    def times_from(self, start: datetime) -> Iterator[datetime]:
        """The naive wall times at or after ``start`` that the expression fires at, in order,
        without end (a valid expression fires at least once every eight years)."""
        day = start.date()
        floor = start.replace(second=0, microsecond=0)
        if floor < start:
            floor += timedelta(minutes=1)
        while True:
            if self.matches_day(day):
                for hour in self.hours:
                    for minute in self.minutes:
                        wall = datetime(day.year, day.month, day.day, hour, minute)
                        if wall >= floor:
                            yield wall
            day += timedelta(days=1)


def parse_cron(text: str) -> Cron:
    """``text`` parsed, or a ScheduleError naming the field that is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise ScheduleError(f"Invalid cron {text!r}: it is empty; use five fields, {_EXAMPLE}")
    source = " ".join(text.split())
    fields = _MACROS.get(source.lower(), source).split(" ")
    if len(fields) != 5:
        raise ScheduleError(
            f"Invalid cron {source!r}: it has {len(fields)} field(s), not 5 (minute hour "
            f"day-of-month month day-of-week), {_EXAMPLE}"
        )
    values = [
        _field(source, item, name, low, high)
        for item, (name, low, high) in zip(fields, _FIELDS, strict=True)
    ]
    minutes, hours, days, months, weekdays = values
    cron = Cron(
        text=source,
        minutes=tuple(sorted(minutes)),
        hours=tuple(sorted(hours)),
        days=frozenset(days),
        months=frozenset(months),
        weekdays=frozenset(d % 7 for d in weekdays),
        any_day=fields[2].startswith("*"),
        any_weekday=fields[4].startswith("*"),
    )
    _check_fires(cron)
    return cron


def _field(source: str, text: str, name: str, low: int, high: int) -> set[int]:
    """The values one field allows."""
    found: set[int] = set()
    for item in text.split(","):
        where = f"Invalid cron {source!r}: {name} field {text!r}"
        body, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ScheduleError(f"{where}: step {step_text!r} is not a number >= 1")
            step = int(step_text)
        if body == "*":
            first, last = low, high
        elif "-" in body:
            a, _, b = body.partition("-")
            first, last = _value(where, a, name, low, high), _value(where, b, name, low, high)
            if first > last:
                raise ScheduleError(f"{where}: the range {body!r} runs backwards")
        else:
            first = _value(where, body, name, low, high)
            last = high if slash else first
        found.update(range(first, last + 1, step))
    return found


def _value(where: str, text: str, name: str, low: int, high: int) -> int:
    names = _MONTHS if name == "month" else _WEEKDAYS if name == "day-of-week" else {}
    if text.lower() in names:
        return names[text.lower()]
    if not text.isdigit():
        raise ScheduleError(f"{where}: {text!r} is not a number from {low} to {high}")
    value = int(text)
    if not low <= value <= high:
        raise ScheduleError(f"{where}: {value} is outside {low}-{high}")
    return value


def _check_fires(cron: Cron) -> None:
    """Refuse an expression no calendar day ever matches (``0 0 31 2 *``)."""
    if not (cron.any_weekday and not cron.any_day):
        return  # a restricted day of week matches some day of every allowed month
    if any(d <= _LONGEST_MONTH[m] for m in cron.months for d in cron.days):
        return
    raise ScheduleError(f"Invalid cron {cron.text!r}: no month it allows has the days it names")
