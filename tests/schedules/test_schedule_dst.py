"""A simulated year of cron slots over IANA zones of both hemispheres (and Lord Howe's
30-minute DST), checked against an independent brute force: every UTC minute of the year,
converted to wall time by pandas, fires when its wall time matches and is the wall time's
first occurrence, or when it ends a gap (spring forward) in which some skipped wall time
matched. No slot may be missed or doubled."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from omfs.errors import ScheduleError
from omfs.objects.jobs.schedule import Schedule, due_slots, slots_after

ZONES = [
    "Europe/Zurich",
    "America/New_York",
    "Australia/Sydney",
    "America/Santiago",
    "Asia/Kolkata",
    "Australia/Lord_Howe",
]
YEARS = [2024]  # a leap year; hypothesis varies the weekdays and months
RANGES = {"minute": (0, 59), "hour": (0, 23), "dom": (1, 31), "month": (1, 12), "dow": (0, 7)}


# -- the brute force --------------------------------------------------------------------------
@functools.cache
def year_minutes(zone: str, year: int) -> dict[str, np.ndarray]:
    """Each UTC minute of the year with its wall time in ``zone`` (pandas' conversion)."""
    utc = pd.date_range(f"{year}-01-01", f"{year + 1}-01-01", freq="min", tz="UTC")[:-1]
    local = utc.tz_convert(zone)
    wall = np.asarray((local.tz_localize(None) - pd.Timestamp(0)) // pd.Timedelta("1min"))
    utc_min = np.asarray((utc.tz_localize(None) - pd.Timestamp(0)) // pd.Timedelta("1min"))
    earlier = np.concatenate([[np.iinfo(np.int64).min], np.maximum.accumulate(wall)[:-1]])
    return {
        "utc": utc_min,
        "wall": wall,
        "repeat": wall <= earlier,  # this wall time was passed before: not its first time
        "minute": np.asarray(local.minute),
        "hour": np.asarray(local.hour),
        "dom": np.asarray(local.day),
        "month": np.asarray(local.month),
        "dow": (np.asarray(local.day_of_week) + 1) % 7,  # cron: 0 = Sunday
    }


def wall_matches(fields: dict, minute, hour, dom, month, dow):
    """The cron rule, written again (works on numbers and on numpy arrays)."""

    def isin(value, allowed):
        return np.isin(value, sorted(allowed))

    days, weekdays = isin(dom, fields["dom"][1]), isin(dow, {d % 7 for d in fields["dow"][1]})
    day_ok = days & weekdays if fields["dom"][2] or fields["dow"][2] else days | weekdays
    return (
        isin(minute, fields["minute"][1])
        & isin(hour, fields["hour"][1])
        & isin(month, fields["month"][1])
        & day_ok
    )


def brute_force(fields: dict, zone: str, year: int) -> np.ndarray:
    """The UTC minutes that fire, by walking every minute of the year."""
    t = year_minutes(zone, year)
    fires = wall_matches(fields, t["minute"], t["hour"], t["dom"], t["month"], t["dow"])
    fires &= ~t["repeat"]
    for i in np.flatnonzero(np.diff(t["wall"]) > 1):  # i + 1 is the first minute after a gap
        for w in range(t["wall"][i] + 1, t["wall"][i + 1]):
            skipped = datetime(1970, 1, 1) + timedelta(minutes=int(w))
            dow = skipped.isoweekday() % 7
            args = (skipped.minute, skipped.hour, skipped.day, skipped.month, dow)
            if wall_matches(fields, *args):
                fires[i + 1] = True
    return t["utc"][fires]


# -- cron expressions as text and as the sets they mean ------------------------------------------
@st.composite
def cron_field(draw, name: str, max_size: int = 4):
    low, high = RANGES[name]
    kind = draw(st.sampled_from(["star", "step", "list", "range"]))
    if kind == "star":
        return "*", set(range(low, high + 1)), True
    if kind == "step":
        step = draw(st.integers(2, max(2, (high - low) // 2)))
        start = draw(st.integers(low, high))
        star = draw(st.booleans())
        text = f"*/{step}" if star else f"{start}/{step}"
        return text, set(range(low if star else start, high + 1, step)), star
    if kind == "range":
        a = draw(st.integers(low, high))
        b = draw(st.integers(a, min(high, a + 3)))
        return f"{a}-{b}", set(range(a, b + 1)), False
    values = draw(st.sets(st.integers(low, high), min_size=1, max_size=max_size))
    return ",".join(str(v) for v in sorted(values)), values, False


@st.composite
def crons(draw):
    minute = draw(cron_field("minute", 3).filter(lambda f: len(f[1]) <= 4))
    # the hours around midnight and 02:00-03:00, where the clocks change, come up often
    hour = draw(
        st.one_of(
            cron_field("hour"),
            st.sets(st.sampled_from([0, 1, 2, 3, 23]), min_size=1).map(
                lambda s: (",".join(map(str, sorted(s))), s, False)
            ),
        )
    )
    fields = {
        "minute": minute,
        "hour": hour,
        "dom": draw(cron_field("dom", 10)),
        "month": draw(cron_field("month", 6)),
        "dow": draw(cron_field("dow", 3)),
    }
    text = " ".join(fields[k][0] for k in ("minute", "hour", "dom", "month", "dow"))
    return text, fields


def schedule_or_skip(text: str, zone: str, **kwargs) -> Schedule:
    try:
        return Schedule(cron=text, tz=zone, **kwargs)
    except ScheduleError as exc:  # e.g. '0 0 31 2 *': refused, and said so
        assert "no month" in str(exc)
        assume(False)
        raise


def minutes_of(slots) -> np.ndarray:
    return np.array([int(s.timestamp()) // 60 for s in slots], dtype=np.int64)


@pytest.mark.parametrize("zone", ZONES)
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cron=crons(), year=st.sampled_from(YEARS))
def test_a_year_of_slots_matches_the_minute_walk(zone, cron, year):
    text, fields = cron
    schedule = schedule_or_skip(text, zone)
    start = datetime(year, 1, 1, tzinfo=UTC) - timedelta(seconds=1)
    end = datetime(year + 1, 1, 1, tzinfo=UTC)
    ours = []
    for slot in slots_after(schedule, start):
        if slot >= end:
            break
        assert slot.second == 0 and slot.microsecond == 0
        ours.append(slot)
    expected = brute_force(fields, zone, year)
    got = minutes_of(ours)
    assert len(np.unique(got)) == len(got), f"{text} in {zone}: a slot fired twice"
    missed, extra = np.setdiff1d(expected, got), np.setdiff1d(got, expected)
    assert not len(missed) and not len(extra), (text, zone, missed[:3], extra[:3])


def transitions(zone: str, year: int) -> list[int]:
    """The UTC minutes where the zone's clocks change in ``year``."""
    t = year_minutes(zone, year)
    return list(t["utc"][1:][np.diff(t["wall"]) != 1])


@pytest.mark.parametrize("zone", [z for z in ZONES if z != "Asia/Kolkata"])
@settings(max_examples=5, deadline=None)
@given(
    minutes=st.sampled_from(["*/30", "0", "15,45", "*/20"]),
    steps=st.lists(st.integers(1, 240), min_size=1, max_size=50),
)
def test_a_scheduler_ticking_across_the_transitions_fires_each_slot_once(zone, minutes, steps):
    """Ticks at random instants (a minute to 4 h apart) around each clock change: each
    tick fires ``due_slots`` since the previous one; together they fire exactly the slots
    the minute walk finds."""
    text = f"{minutes} * * * *"
    fields = {
        "minute": (minutes, Schedule(cron=text).parsed_cron.minutes, False),
        "hour": ("*", set(range(24)), True),
        "dom": ("*", set(range(1, 32)), True),
        "month": ("*", set(range(1, 13)), True),
        "dow": ("*", set(range(8)), True),
    }
    expected_all = brute_force(fields, zone, 2024)
    for change in transitions(zone, 2024):
        begin = datetime.fromtimestamp((change - 6 * 60) * 60, UTC)
        schedule = Schedule(cron=text, tz=zone, catchup="all", created=begin)
        now, last, fired = begin, None, []
        for step in steps:
            since, now = now, now + timedelta(minutes=step, seconds=7)
            due = due_slots(schedule, last, now, limit=1000, since=since)
            fired += due
            last = due[-1] if due else last
        got = minutes_of(fired)
        lo, hi = int(begin.timestamp()) // 60, int(now.timestamp()) // 60
        expected = expected_all[(expected_all > lo) & (expected_all <= hi)]
        assert list(got) == list(expected), (zone, text, change)
