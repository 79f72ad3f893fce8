"""The scheduler in this process: catch-up when it starts, overlap, failures, and the loop
(a schedule added while it runs is picked up; slots fire on time)."""

from __future__ import annotations

import itertools
import json
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from omfs_scheduling import claiming_fire

import omfs
from omfs.compute.scheduler import Scheduler, run_scheduler
from omfs.objects.jobs import schedule_book as book
from omfs.objects.jobs.schedule import Schedule


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
def om(tmp_path):
    return omfs.setup(tmp_path / "ctx")


def store(om, job: str, bucket: str = "omega", **kwargs) -> None:
    """A schedule written as put_schedule does, with ``created`` chosen by the test."""
    schedule = Schedule(job=job, **kwargs)
    om.storage.write_bytes(book.schedule_key(bucket, job), json.dumps(schedule.to_dict()).encode())


class Recorder:
    def __init__(self, win: bool = True):
        self.calls: list[tuple[str, str, datetime, dict]] = []
        self.win = win

    def __call__(self, om, job, slot, params):
        self.calls.append((om.bucket, job, slot, params))
        return self.win


@pytest.mark.parametrize(
    ("catchup", "fired"),
    [
        ("skip", []),
        ("latest", ["2024-01-05 06:00"]),
        ("all", ["2024-01-04 06:00", "2024-01-05 06:00"]),
    ],
)
def test_a_scheduler_starting_after_a_downtime_catches_up_by_policy(om, catchup, fired):
    store(om, "daily", cron="0 6 * * *", tz="UTC", catchup=catchup, created=utc(2024, 1, 1))
    book.record_fired(om.storage, "omega", "daily", utc(2024, 1, 3, 6))
    fire = Recorder()
    scheduler = Scheduler(om, fire)
    scheduler.refresh()
    scheduler.tick(now=utc(2024, 1, 5, 12))
    assert [c[2].strftime("%Y-%m-%d %H:%M") for c in fire.calls] == fired
    # from then on it is watching: the next slot fires whatever the policy
    scheduler.tick(now=utc(2024, 1, 6, 5, 59, 30))
    scheduler.tick(now=utc(2024, 1, 6, 6, 0, 0))
    assert fire.calls[-1][2] == utc(2024, 1, 6, 6)
    assert book.read_last_fired(om.storage, "omega", "daily") == utc(2024, 1, 6, 6)


@pytest.mark.parametrize(("catchup", "days"), [("latest", [5]), ("all", [2, 3, 4, 5])])
def test_catchup_slots_of_one_look_are_one_batch(om, catchup, days):
    """With overlap="skip", the missed slots fired at one look do not count as overlapping
    each other (each starts a run that still runs as the next fires); a run that ran before
    the look holds the whole batch back, and the batch holds back the next look's slot."""
    store(om, "daily", cron="0 6 * * *", catchup=catchup, created=utc(2024, 1, 1))
    book.record_fired(om.storage, "omega", "daily", utc(2024, 1, 1, 6))
    running: set[str] = set()

    def fire(om, job, slot, params):
        running.add(job)  # the run it starts runs on
        return True

    scheduler = Scheduler(om, fire, is_running=lambda om, job: job in running)
    scheduler.refresh()
    done = scheduler.tick(now=utc(2024, 1, 5, 12))
    assert [(f.slot.day, f.outcome) for f in done] == [(d, "fired") for d in days]
    scheduler.tick(now=utc(2024, 1, 6, 5, 59))
    assert [f.outcome for f in scheduler.tick(now=utc(2024, 1, 6, 6))] == ["overlap"]
    # a scheduler starting while a run still runs skips the whole missed batch
    book.record_fired(om.storage, "omega", "daily", utc(2024, 1, 1, 6))
    later = Scheduler(om, fire, is_running=lambda om, job: True)
    later.refresh()
    assert {f.outcome for f in later.tick(now=utc(2024, 1, 5, 12))} == {"overlap"}


def test_every_bucket_is_watched_and_params_travel(om):
    store(om, "a", every="1h", params={"x": 1}, created=utc(2024, 1, 1))
    store(om, "b", bucket="dev", every="1h", created=utc(2024, 1, 1))
    fire = Recorder()
    scheduler = Scheduler(om, fire, max_stall=86400)
    scheduler.refresh()
    scheduler.tick(now=utc(2024, 1, 1, 0, 30))
    scheduler.tick(now=utc(2024, 1, 1, 1, 0, 1))
    assert sorted(c[:2] for c in fire.calls) == [("dev", "b"), ("omega", "a")]
    assert {c[1]: c[3] for c in fire.calls} == {"a": {"x": 1}, "b": {}}
    assert scheduler.next_due() == utc(2024, 1, 1, 2).timestamp()


def test_a_slot_lost_to_another_scheduler_is_not_retried(om):
    store(om, "a", every="1min", created=utc(2024, 1, 1))
    fire = Recorder(win=False)
    scheduler = Scheduler(om, fire)
    scheduler.refresh()
    scheduler.tick(now=utc(2024, 1, 1, 0, 0, 30))
    done = scheduler.tick(now=utc(2024, 1, 1, 0, 1, 1))
    assert [f.outcome for f in done] == ["lost"]
    assert scheduler.tick(now=utc(2024, 1, 1, 0, 1, 30)) == []
    assert book.read_last_fired(om.storage, "omega", "a") is None  # only a winner notes it


@pytest.mark.parametrize(("overlap", "outcome"), [("skip", "overlap"), ("allow", "fired")])
def test_a_slot_while_the_previous_run_runs(om, overlap, outcome):
    store(om, "slow", every="1min", overlap=overlap, created=utc(2024, 1, 1))
    fire = Recorder()
    scheduler = Scheduler(om, fire, is_running=lambda om, job: job == "slow")
    scheduler.refresh()
    scheduler.tick(now=utc(2024, 1, 1, 0, 0, 30))
    done = scheduler.tick(now=utc(2024, 1, 1, 0, 1, 0))
    assert [f.outcome for f in done] == [outcome]
    assert len(fire.calls) == (outcome == "fired")


def test_a_failing_fire_is_reported_and_the_others_still_fire(om):
    store(om, "bad", every="1min", created=utc(2024, 1, 1))
    store(om, "good", every="1min", created=utc(2024, 1, 1))

    def fire(om, job, slot, params):
        if job == "bad":
            raise RuntimeError("cluster away")
        return True

    scheduler = Scheduler(om, fire)
    scheduler.refresh()
    scheduler.tick(now=utc(2024, 1, 1, 0, 0, 30))
    done = scheduler.tick(now=utc(2024, 1, 1, 0, 1, 0))
    assert sorted((f.job, f.outcome) for f in done) == [("bad", "failed"), ("good", "fired")]


def test_a_stalled_scheduler_applies_catchup_to_what_it_slept_through(om):
    store(om, "a", every="1min", catchup="latest", created=utc(2024, 1, 1))
    fire = Recorder()
    scheduler = Scheduler(om, fire)
    scheduler.refresh()
    scheduler.tick(now=utc(2024, 1, 1, 0, 0, 30))
    scheduler.tick(now=utc(2024, 1, 1, 0, 1, 0))  # on time
    scheduler.tick(now=utc(2024, 1, 1, 0, 30, 5))  # suspended for half an hour
    assert [c[2].minute for c in fire.calls] == [1, 30]


def test_the_loop_picks_up_a_new_schedule_and_fires_on_time(om, tmp_path):
    """The real loop: a schedule written while it runs fires within ~2 s; its slots fire
    well under a second late; an unscheduled job stops."""
    out = tmp_path / "fired.txt"
    claims = claiming_fire(str(out))
    three = threading.Event()

    def fire(om, job, slot, params):
        won = claims(om, job, slot, params)
        if len(out.read_text().splitlines()) >= 3:
            three.set()
        return won

    stop = threading.Event()
    thread = threading.Thread(target=run_scheduler, args=(om, fire, stop), daemon=True)
    thread.start()
    try:
        time.sleep(0.3)  # the scheduler is running (not a synchronisation: any moment works)
        written = time.time()
        book.put_schedule(om.storage, "omega", "tick", every="1s")
        assert three.wait(10), "three slots should have fired"
        book.delete_schedule(om.storage, "omega", "tick")
        removed = time.time()
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    lines = [line.split() for line in out.read_text().splitlines()]
    slots = [float(x[1]) for x in lines]
    late = [float(x[2]) - float(x[1]) for x in lines]
    assert slots[0] - written < 2.5  # picked up within a refresh or two
    assert all(b - a == 1 for a, b in itertools.pairwise(slots))  # none missed
    assert max(late) < 1.0, late
    assert max(slots) < removed + 2  # and it stopped after the unschedule
    assert timedelta(seconds=0) <= timedelta(seconds=min(late))
