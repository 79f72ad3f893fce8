"""Sync of job runs and schedules: a job's run records and schedule travel with it (see
:mod:`omfs.objects.jobs.runs`, :mod:`omfs.objects.jobs.schedule_book`).

Schedules: sync, push and pull join two roots of one context, so a synced job's schedule
goes along: copied when the target has none or an older one (by when it was stored), never
over a newer one. Removing a schedule is not carried (unschedule it on each root).

A run the target lacks is copied (its outputs first, the record last, with put-if-absent);
a run the target holds unfinished while the source's finished is brought up to date; a
finished run of the target is never overwritten. Records are checked to read before they
are copied.
"""

from __future__ import annotations

import contextlib
import json

from omfs.objects.jobs.runs import FINAL, RECORD_FILE, RunRecord, RunStore, run_files
from omfs.objects.jobs.schedule_book import ScheduleBook, copy_schedule
from omfs.storage import Storage

__all__ = ["sync_runs", "sync_schedules"]


def sync_schedules(src: Storage, dst: Storage, bucket: str, jobs: set[str], dry_run: bool) -> int:
    """Copy the schedules of ``jobs`` in ``bucket`` the target lacks or holds older (by
    ``created``); returns how many were (or would be) copied."""
    if not jobs:
        return 0
    have = ScheduleBook(src, bucket).scan()
    want = ScheduleBook(dst, bucket).scan() if have else {}
    copied = 0
    for job, schedule in sorted(have.items()):
        theirs = want.get(job)
        if job not in jobs or schedule.created is None or theirs == schedule:
            continue
        if theirs is not None and (theirs.created is None or theirs.created >= schedule.created):
            continue  # the target's is as new or newer: kept
        copied += 1
        if not dry_run:
            copy_schedule(schedule, dst, bucket, job, keep_created=True)
    return copied


def _record(storage: Storage, key: str) -> RunRecord | None:
    try:
        return RunRecord.from_dict(json.loads(storage.read_bytes(key)))
    except (FileNotFoundError, ValueError, TypeError):
        return None


def sync_runs(src: Storage, dst: Storage, bucket: str, jobs: set[str], dry_run: bool) -> int:
    """Copy the runs of ``jobs`` in ``bucket`` the target lacks or holds unfinished; returns
    how many runs were (or, with ``dry_run``, would be) copied."""
    if not jobs:
        return 0
    have = run_files(src, bucket)
    want = run_files(dst, bucket)
    source, target = RunStore(src, bucket), RunStore(dst, bucket)
    copied = 0
    for (job, run_id), files in sorted(have.items()):
        theirs = want.get((job, run_id), {})
        if job not in jobs or RECORD_FILE not in files or theirs == files:
            continue
        folder = source.folder(job, run_id)
        rec = _record(src, f"{folder}/{RECORD_FILE}")
        if rec is None or rec.job != job or rec.id != run_id:
            continue  # a record that does not read: fsck reports it; it stays where it is
        if RECORD_FILE in theirs:
            old = _record(dst, f"{folder}/{RECORD_FILE}")
            if old is not None and (old.status in FINAL or rec.status not in FINAL):
                continue
        copied += 1
        if dry_run:
            continue
        for filename in sorted(set(files) - {RECORD_FILE}):
            dst.write_bytes(f"{folder}/{filename}", src.read_bytes(f"{folder}/{filename}"))
        if RECORD_FILE in theirs:
            target.write(rec)
        else:
            with contextlib.suppress(FileExistsError):
                target.create(rec)
    return copied
