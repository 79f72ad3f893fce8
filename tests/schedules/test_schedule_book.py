"""Schedules stored in the context, on a local folder and on S3 (moto)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

import omfs
from omfs.errors import InvalidNameError, NotFoundError, ScheduleError
from omfs.names import check_name
from omfs.objects.jobs import schedule_book as book
from omfs.objects.layout import parse_key


@pytest.fixture
def om(shared_root):
    root, options = shared_root
    return omfs.setup(root, storage_options=options)


def test_put_get_list_next_and_delete(om):
    s = om.storage
    put = book.put_schedule(
        s, "omega", "reports/weekly", cron="0 6 * * 1", tz="Europe/Zurich", params={"n": 3}
    )
    book.put_schedule(s, "omega", "nightly", every="30s", catchup="all", overlap="allow")
    assert put.job == "reports/weekly" and put.created.tzinfo is not None
    assert book.get_schedule(s, "omega", "reports/weekly") == put
    assert [x.job for x in book.list_schedules(s, "omega")] == ["nightly", "reports/weekly"]
    assert book.list_schedules(s, "other") == []
    after = datetime(2024, 6, 5, tzinfo=UTC)
    runs = book.job_next_runs(s, "omega", "reports/weekly", n=2, after=after)
    assert [r.isoformat() for r in runs] == [
        "2024-06-10T06:00:00+02:00",
        "2024-06-17T06:00:00+02:00",
    ]
    # what is stored: plain JSON beside the job store's own folders
    doc = json.loads(s.read_bytes("omega/jobs/_schedules/reports~weekly.json"))
    assert doc["cron"] == "0 6 * * 1" and doc["tz"] == "Europe/Zurich" and doc["params"] == {"n": 3}
    book.delete_schedule(s, "omega", "reports/weekly")
    assert [x.job for x in book.list_schedules(s, "omega")] == ["nightly"]
    with pytest.raises(NotFoundError, match=r"'reports/weekly' in bucket 'omega'.* no schedule"):
        book.get_schedule(s, "omega", "reports/weekly")
    with pytest.raises(NotFoundError):
        book.delete_schedule(s, "omega", "reports/weekly")


def test_a_refused_schedule_writes_nothing_and_keeps_the_old_one(om):
    s = om.storage
    old = book.put_schedule(s, "omega", "nightly", cron="0 2 * * *")
    with pytest.raises(ScheduleError, match="Unknown time zone"):
        book.put_schedule(s, "omega", "nightly", cron="0 3 * * *", tz="Nowhere/Else")
    with pytest.raises(InvalidNameError):
        book.put_schedule(s, "omega", "../escape", every="1h")
    assert book.get_schedule(s, "omega", "nightly") == old
    assert [x.job for x in book.list_schedules(s, "omega")] == ["nightly"]


def test_the_fired_hint_round_trips_and_goes_with_the_schedule(om):
    s = om.storage
    book.put_schedule(s, "omega", "nightly", every="1h")
    assert book.read_last_fired(s, "omega", "nightly") is None
    slot = datetime(2024, 3, 31, 3, tzinfo=UTC)
    book.record_fired(s, "omega", "nightly", slot)
    assert book.read_last_fired(s, "omega", "nightly") == slot
    assert [x.job for x in book.list_schedules(s, "omega")] == ["nightly"]  # not a schedule
    book.delete_schedule(s, "omega", "nightly")
    assert book.read_last_fired(s, "omega", "nightly") is None


def test_a_scan_sees_changes_and_skips_a_broken_file(om):
    s = om.storage
    scanner = book.ScheduleBook(s, "omega")
    book.put_schedule(s, "omega", "a", every="10s")
    assert scanner.scan()["a"].interval == 10
    book.put_schedule(s, "omega", "a", every="20s")  # same size, other content
    assert scanner.scan()["a"].interval == 20
    s.write_bytes("omega/jobs/_schedules/broken.json", b"{not json")
    s.write_bytes("omega/jobs/_schedules/bad.json", json.dumps({"cron": "99 * * * *"}).encode())
    assert sorted(scanner.scan()) == ["a"]
    with pytest.raises(Exception, match="cannot be read"):
        book.get_schedule(s, "omega", "broken")


def test_the_schedules_folder_is_no_job():
    """``_schedules`` sits beside ``_index`` and ``_leases``: no object can be named so, and
    its keys are no object's keys."""
    with pytest.raises(InvalidNameError, match="reserves"):
        check_name("_schedules")
    assert parse_key(book.schedule_key("omega", "a/b")) is None
    assert parse_key("omega/jobs/_schedules/_last/a~b.json") is None
