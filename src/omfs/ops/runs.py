"""Sync of job runs: a job's run records travel with it (see :mod:`omfs.objects.jobs.runs`).

A run the target lacks is copied (its outputs first, the record last, with put-if-absent);
a run the target holds unfinished while the source's finished is brought up to date; a
finished run of the target is never overwritten. Records are checked to read before they
are copied.
"""

from __future__ import annotations

import contextlib
import json

from omfs.objects.jobs.runs import FINAL, RECORD_FILE, RunRecord, RunStore, run_files
from omfs.storage import Storage

__all__ = ["sync_runs"]


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
