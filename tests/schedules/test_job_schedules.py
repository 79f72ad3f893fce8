"""Schedules wired to the job store: ``om.jobs.schedule`` and friends, the ``om jobs
schedule|unschedule|schedules|next`` commands, promotion ``with_schedule``, sync of
schedules, the real fire (a won slot becomes a run), and per-run output capture."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest

import omfs
from omfs.compute.firing import JobFiring, runs_in_scheduler
from omfs.compute.scheduler import Scheduler
from omfs.errors import NotFoundError, ScheduleError

SCRIPT = """\
print("hello", params)
def run(om, **params):
    return params
"""


def with_job(context, tmp_path):
    path = tmp_path / "nightly.py"
    path.write_text(SCRIPT)
    context.jobs.put(path, "nightly")
    return context


@pytest.fixture
def om(shared_root, tmp_path):
    """A context with job ``nightly``, on a local folder and on S3."""
    root, options = shared_root
    return with_job(omfs.setup(root, storage_options=options), tmp_path)


@pytest.fixture
def local_om(tmp_path):
    """The same on a local folder only (for what storage does not change)."""
    return with_job(omfs.setup(tmp_path / "ctx"), tmp_path)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_schedule_unschedule_list_and_next_runs(om):
    made = om.jobs.schedule("nightly", cron="0 6 * * 1-5", tz="Europe/Zurich", params={"d": 7})
    assert (made.job, made.catchup, made.overlap, made.params) == (
        "nightly",
        "skip",
        "skip",
        {"d": 7},
    )
    slots = om.jobs.next_runs("nightly", n=2, after=utc(2024, 6, 7, 12))
    assert [s.isoformat() for s in slots] == [
        "2024-06-10T06:00:00+02:00",
        "2024-06-11T06:00:00+02:00",
    ]
    assert [s.job for s in om.jobs.schedules()] == ["nightly"]
    om.jobs.schedule("nightly", every="30s", catchup="latest")  # replaces it
    assert om.jobs.schedules()[0].describe() == "every 30s"
    om.jobs.unschedule("nightly")
    assert om.jobs.schedules() == []
    with pytest.raises(NotFoundError, match="has no schedule"):
        om.jobs.unschedule("nightly")


def test_scheduling_an_unknown_job_names_it_and_the_jobs_there(local_om):
    om = local_om
    with pytest.raises(NotFoundError, match=r"'nigthly'.*jobs there: 'nightly'"):
        om.jobs.schedule("nigthly", every="1h")
    with pytest.raises(ScheduleError):
        om.jobs.schedule("nightly", cron="61 * * * *")
    assert om.jobs.schedules() == []  # nothing written for either


def test_cli_schedule_schedules_next_unschedule(cli, tmp_path):
    (tmp_path / "j.py").write_text(SCRIPT)
    root = str(tmp_path / "ctx")
    assert cli("--root", root, "jobs", "put", "j.py", "j").code == 0
    made = cli("--root", root, "jobs", "schedule", "j", "--cron", "0 6 * * *", "--tz",
               "Asia/Kolkata", "--param", "days=3", "--catchup", "all")  # fmt: skip
    assert made.code == 0, made.stderr
    listed = json.loads(cli("--root", root, "--json", "jobs", "schedules").stdout)
    assert [(r["job"], r["tz"], r["catchup"]) for r in listed] == [("j", "Asia/Kolkata", "all")]
    slots = cli("--root", root, "jobs", "next", "j", "-n", "3").stdout.split()
    assert len(slots) == 3 and all(s.endswith("T06:00:00+05:30") for s in slots)
    both = cli("--root", root, "jobs", "schedule", "j", "--cron", "* * * * *", "--every", "1s")
    assert both.code == 2 and "one of --cron EXPR or --every" in both.stderr
    unknown = cli("--root", root, "jobs", "schedule", "nope", "--every", "1s")
    assert unknown.code != 0 and "'nope'" in unknown.stderr and "'j'" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    assert cli("--root", root, "jobs", "unschedule", "j").code == 0
    assert cli("--root", root, "jobs", "schedules").stdout.strip() == ""


def test_promote_with_schedule_only_when_asked(local_om, tmp_path, cli):
    om = local_om
    om.jobs.schedule("nightly", cron="0 6 * * *", tz="Europe/Zurich")
    prod = omfs.setup(tmp_path / "prod")
    om.jobs.promote("nightly", prod.jobs)
    assert prod.jobs.list() == ["nightly"] and prod.jobs.schedules() == []  # dev's stays in dev
    om.jobs.promote("nightly", prod.jobs, with_schedule=True)
    (copied,) = prod.jobs.schedules()
    assert (copied.cron, copied.tz) == ("0 6 * * *", "Europe/Zurich")
    assert copied.created > om.jobs.get_schedule("nightly").created  # slots count from now
    # the CLI's --with-schedule; a job without a schedule is refused before anything is copied
    other = tmp_path / "other"
    args = ["jobs", "promote", "nightly", "--to-root", str(other), "--with-schedule"]
    out = cli("--root", om.root, "--json", *args)
    assert out.code == 0, out.stderr
    assert [s.job for s in omfs.setup(other).jobs.schedules()] == ["nightly"]
    om.jobs.unschedule("nightly")
    with pytest.raises(NotFoundError, match="has no schedule"):
        om.jobs.promote("nightly", omfs.setup(tmp_path / "third").jobs, with_schedule=True)
    assert omfs.setup(tmp_path / "third").jobs.list() == []


def test_sync_carries_schedules_of_synced_jobs_never_over_a_newer_one(om, tmp_path):
    om.jobs.schedule("nightly", every="1h")
    mirror = omfs.setup(tmp_path / "mirror")
    report = omfs.sync(om, mirror)
    assert report.schedules == 1
    assert mirror.jobs.get_schedule("nightly") == om.jobs.get_schedule("nightly")
    assert omfs.sync(om, mirror).schedules == 0  # the same: not copied again
    mirror.jobs.schedule("nightly", every="2h")  # newer on the mirror: kept
    assert omfs.sync(om, mirror).schedules == 0
    assert mirror.jobs.get_schedule("nightly").describe() == "every 2h"
    om.jobs.schedule("nightly", every="3h")  # newer at the source again: carried
    assert omfs.sync(om, mirror).schedules == 1
    assert mirror.jobs.get_schedule("nightly").describe() == "every 3h"


def test_the_real_fire_runs_a_won_slot_once_and_tells_overlap(om):
    assert runs_in_scheduler(om)  # no cluster named, none in the background
    started = []
    firing = JobFiring(on_start=lambda om, run_id, job, slot, where: started.append(run_id))
    slot = utc(2024, 1, 5, 6)
    assert firing(om["omega"], "nightly", slot, {"day": 5}) is True
    assert firing(om["omega"], "nightly", slot, {"day": 5}) is False  # that slot is taken
    assert firing.wait(timeout=60) == 0
    (run,) = om.jobs.runs("nightly")
    assert (run.id, run.status, run.result, run.slot) == (
        started[0],
        "succeeded",
        {"day": 5},
        slot.isoformat(),
    )
    assert run.worker.startswith("scheduler on ")
    assert om.jobs.log(run.id) == {"stdout": "hello {'day': 5}\n", "stderr": ""}
    assert not firing.is_running(om, "nightly")


def test_a_scheduler_fires_real_runs_and_skips_a_slot_while_one_runs(local_om, tmp_path):
    om = local_om
    slow = tmp_path / "slow.py"
    slow.write_text("import time\ntime.sleep(float(params.get('s', 0)))\n")
    om.jobs.put(slow, "slow")
    om.jobs.schedule("slow", every="1s", params={"s": 2})
    firing = JobFiring()
    scheduler = Scheduler(om, firing, is_running=firing.is_running)
    scheduler.refresh()
    created = om.jobs.get_schedule("slow").created
    first = created.replace(microsecond=0) + timedelta(seconds=2)
    assert scheduler.tick(now=first - timedelta(seconds=0.5)) == []  # it starts watching
    assert [f.outcome for f in scheduler.tick(now=first)] == ["fired"]
    assert firing.is_running(om, "slow")
    assert [f.outcome for f in scheduler.tick(now=first + timedelta(seconds=1))] == ["overlap"]
    assert [r.status for r in om.jobs.runs("slow")] == ["running"]
    assert firing.wait(timeout=60) == 0
    assert [r.status for r in om.jobs.runs("slow")] == ["succeeded"]
    assert not firing.is_running(om, "slow")


def test_two_concurrent_jobs_keep_their_own_output(local_om, tmp_path):
    """Capture is per run: two jobs printing at once in two threads of one process (as on
    a threaded worker, or a scheduler) each keep their own lines."""
    om = local_om
    talk = tmp_path / "talk.py"
    talk.write_text(
        "import sys, time\n"
        "for i in range(20):\n"
        "    print(params['who'], i)\n"
        "    print(params['who'], 'err', i, file=sys.stderr)\n"
        "    time.sleep(0.005)\n"
    )
    om.jobs.put(talk, "talk")
    local = om.runtime.mode(local=True)
    results = {}

    def run(who):
        results[who] = local.job("talk").run(who=who).get()

    threads = [threading.Thread(target=run, args=(w,)) for w in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for who in ("a", "b"):
        log = om.jobs.log(results[who].id)
        assert log["stdout"] == "".join(f"{who} {i}\n" for i in range(20))
        assert log["stderr"] == "".join(f"{who} err {i}\n" for i in range(20))
