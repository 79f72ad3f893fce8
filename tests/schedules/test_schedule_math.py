"""Schedules: the checks of a spec, the DST rules at known transitions, and catch-up after
a downtime (``now`` passed in: no waiting)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from omfs.errors import OmfsError, ScheduleError
from omfs.objects.jobs.schedule import Schedule, due_slots, next_runs, slot_id


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def instants(slots: list[datetime]) -> list[str]:
    return [s.astimezone(UTC).strftime("%Y-%m-%d %H:%M") for s in slots]


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"cron": "61 * * * *"}, "minute field '61': 61 is outside 0-59"),
        ({"cron": "0 6 * * mon-fri,sunday"}, "day-of-week field"),
        ({"cron": "* * *"}, "3 field(s), not 5"),
        ({"cron": "0 0 31 2 *"}, "no month it allows"),
        ({"cron": "*/0 * * * *"}, "step '0'"),
        ({"cron": "0 6 * * 5-1"}, "runs backwards"),
        ({"every": "0.5s"}, "shorter than one second"),
        ({"every": "1.5s"}, "whole number of seconds"),
        ({"every": "5m"}, "ambiguous"),
        ({"every": "30s", "tz": "Europe/Zurch"}, "Unknown time zone 'Europe/Zurch': did you mean"),
        ({"every": "30s", "tz": "Mars/Olympus"}, "Unknown time zone 'Mars/Olympus'"),
        ({}, "exactly one of cron="),
        ({"cron": "* * * * *", "every": "1s"}, "exactly one of cron="),
        ({"every": "1s", "catchup": "some"}, "catchup='some' is not one of"),
        ({"every": "1s", "overlap": "never"}, "overlap='never' is not one of"),
        ({"every": "1s", "params": {"when": datetime.now()}}, "params must be JSON values"),
        ({"every": "1s", "params": [1]}, "params must be a dict"),
    ],
)
def test_a_bad_schedule_is_refused_in_one_line_naming_what_is_wrong(kwargs, words):
    with pytest.raises(ScheduleError) as info:
        Schedule(job="nightly", **kwargs)
    assert isinstance(info.value, OmfsError) and isinstance(info.value, ValueError)
    message = info.value.cli_message()
    assert words in message and "\n" not in message


def test_cron_spellings():
    weekdays = Schedule(cron="0  6 * * MON-fri")
    assert weekdays.cron == "0 6 * * MON-fri"
    assert instants(next_runs(weekdays, utc(2024, 6, 7, 12), 2)) == [  # a Friday
        "2024-06-10 06:00",
        "2024-06-11 06:00",
    ]
    assert instants(next_runs(Schedule(cron="@monthly"), utc(2024, 2, 10), 1)) == [
        "2024-03-01 00:00"
    ]
    sundays = Schedule(cron="0 12 * * 7")  # 7 and 0 are both Sunday
    assert next_runs(sundays, utc(2024, 6, 10), 1)[0].isoweekday() == 7
    # both day fields restricted: either matches (the 13th, or a Friday)
    either = Schedule(cron="0 0 13 * 5")
    assert instants(next_runs(either, utc(2024, 9, 1), 3)) == [
        "2024-09-06 00:00",
        "2024-09-13 00:00",
        "2024-09-20 00:00",
    ]


def test_next_runs_are_aware_and_in_the_schedules_zone():
    schedule = Schedule(cron="0 6 * * 1-5", tz="Europe/Zurich")
    runs = next_runs(schedule, utc(2024, 1, 1), 3)
    assert [r.tzinfo.key for r in runs] == ["Europe/Zurich"] * 3
    assert [r.hour for r in runs] == [6, 6, 6]
    assert instants(runs)[0] == "2024-01-01 05:00"
    assert len(next_runs(schedule)) == 5 and next_runs(schedule)[0] > datetime.now(UTC)


@pytest.mark.parametrize(
    ("zone", "cron", "after", "expected"),
    [
        # spring forward: 02:30 does not exist; it fires once, at 03:00 local (01:00 UTC)
        ("Europe/Zurich", "30 2 * * *", utc(2024, 3, 30, 12), ["2024-03-31 01:00"]),
        # four skipped times: one firing at the end of the gap
        ("Europe/Zurich", "*/15 2 * * *", utc(2024, 3, 31), ["2024-03-31 01:00"]),
        # a skipped time and 03:00 itself: one firing
        ("Europe/Zurich", "0 2,3 * * *", utc(2024, 3, 31), ["2024-03-31 01:00"]),
        # fall back: 02:30 happens twice and fires at the first (CEST, 00:30 UTC)
        ("Europe/Zurich", "30 2 * * *", utc(2024, 10, 26, 12), ["2024-10-27 00:30"]),
        ("America/New_York", "30 2 * * *", utc(2024, 3, 9, 12), ["2024-03-10 07:00"]),
        ("America/New_York", "30 1 * * *", utc(2024, 11, 2, 12), ["2024-11-03 05:30"]),
        # southern hemisphere: Sydney springs forward in October
        ("Australia/Sydney", "30 2 * * *", utc(2024, 10, 5, 12), ["2024-10-05 16:00"]),
        # Lord Howe: a 30-minute change; 02:00 and 02:15 skipped, 02:30 exists
        ("Australia/Lord_Howe", "0,15 2 * * *", utc(2024, 10, 5, 12), ["2024-10-05 15:30"]),
        ("Australia/Lord_Howe", "45 1 * * *", utc(2024, 4, 6, 12), ["2024-04-06 14:45"]),
        # Santiago changes at midnight: 00:00 of 8 Sept 2024 does not exist
        ("America/Santiago", "0 0 * * *", utc(2024, 9, 7, 12), ["2024-09-08 04:00"]),
        ("America/Santiago", "30 23 * * *", utc(2024, 4, 6, 12), ["2024-04-07 02:30"]),
    ],
)
def test_dst_rules_at_known_transitions(zone, cron, after, expected):
    slots = next_runs(Schedule(cron=cron, tz=zone), after, len(expected) + 1)
    assert instants(slots)[: len(expected)] == expected
    gaps = [b - a for a, b in itertools.pairwise(slots)]
    assert all(g > timedelta(hours=12) for g in gaps)  # and the next day's, not a double


def test_every_counts_elapsed_time_across_dst():
    schedule = Schedule(every="1h", tz="Europe/Zurich")
    slots = next_runs(schedule, utc(2024, 10, 26, 22, 30), 6)
    assert [s.timestamp() % 3600 for s in slots] == [0] * 6
    assert {b.timestamp() - a.timestamp() for a, b in itertools.pairwise(slots)} == {3600}
    # the two 02:00 of the night the clocks go back are two slots, an hour apart
    assert [s.strftime("%H:%M%z") for s in slots[:4]] == [
        "01:00+0200",
        "02:00+0200",
        "02:00+0100",
        "03:00+0100",
    ]
    assert Schedule(every="30s").describe() == "every 30s"
    assert Schedule(every=7200).describe() == "every 2h"


WEEKDAYS_6AM = {"cron": "0 6 * * *", "tz": "Europe/Zurich", "created": utc(2024, 1, 1)}
MONDAY_6AM = utc(2024, 1, 8, 5)  # 06:00 in Zurich


@pytest.mark.parametrize(
    ("catchup", "expected"),
    [
        ("skip", []),
        ("latest", ["2024-01-12 05:00"]),
        ("all", ["2024-01-09 05:00", "2024-01-10 05:00", "2024-01-11 05:00", "2024-01-12 05:00"]),
    ],
)
def test_catchup_after_a_downtime(catchup, expected):
    schedule = Schedule(catchup=catchup, **WEEKDAYS_6AM)
    now = utc(2024, 1, 12, 9)  # down from Monday 06:00 to Friday 10:00 local
    assert instants(due_slots(schedule, MONDAY_6AM, now)) == expected
    # slots after the scheduler came back (since) are on time whatever the policy
    later = utc(2024, 1, 13, 5, 0, 1)
    assert instants(due_slots(schedule, MONDAY_6AM, later, since=now))[-1] == "2024-01-13 05:00"


def test_catchup_all_is_bounded_to_the_newest_slots():
    schedule = Schedule(every="1min", catchup="all", created=utc(2024, 1, 1))
    due = due_slots(schedule, None, utc(2024, 3, 1), limit=10)
    assert instants(due) == [f"2024-02-29 23:{m}" for m in range(51, 60)] + ["2024-03-01 00:00"]
    # cron: a year down, the newest five of a sparse schedule, found without a slot walk
    yearly = Schedule(cron="0 0 1 1 *", catchup="all", created=utc(1990, 1, 1))
    assert instants(due_slots(yearly, None, utc(2024, 6, 1), limit=2)) == [
        "2023-01-01 00:00",
        "2024-01-01 00:00",
    ]


def test_nothing_before_the_schedule_was_created_is_due():
    schedule = Schedule(every="1h", catchup="all", created=utc(2024, 1, 1, 10, 30))
    assert instants(due_slots(schedule, None, utc(2024, 1, 1, 12, 10))) == [
        "2024-01-01 11:00",
        "2024-01-01 12:00",
    ]
    # a slot already fired is not due again
    assert due_slots(schedule, utc(2024, 1, 1, 12), utc(2024, 1, 1, 12, 10)) == []


def test_slot_ids_are_utc_stamps_and_schedules_round_trip():
    schedule = Schedule(cron="30 2 * * *", tz="Europe/Zurich", params={"k": [1, "x"]}, job="j")
    slot = next_runs(schedule, utc(2024, 3, 30, 12), 1)[0]
    assert slot_id(slot) == "20240331T010000Z"
    assert Schedule.from_dict(schedule.to_dict()) == schedule
    every = Schedule(every="90s", catchup="all", overlap="allow", created=utc(2024, 1, 1))
    assert Schedule.from_dict(every.to_dict()) == every and every.interval == 90
    with pytest.raises(ScheduleError, match="needs a time zone"):
        due_slots(every, None, datetime(2024, 1, 1))
