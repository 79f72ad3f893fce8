"""Where schedules live in a context: one small JSON file per scheduled job.

Layout, beside the job store's ``_index`` and ``_leases`` (a name part starting with ``_``
is reserved, so no job is ever called ``_schedules`` and ``list()`` never shows it)::

    {bucket}/jobs/_schedules/{name, '/' as '~'}.json        the schedule (Schedule.to_dict)
    {bucket}/jobs/_schedules/_last/{name, '/' as '~'}.json  the newest slot fired (a hint)

Each file is written whole (readers see the old or the new one). The ``_last`` file only
lets a scheduler that starts after a downtime know what was missed; that a slot fires
exactly once is the run record's put-if-absent, never this file.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from omfs.errors import FormatError, NotFoundError, ScheduleError
from omfs.names import MAX_NAME_BYTES, check_name
from omfs.objects.jobs.schedule import Catchup, Overlap, Schedule, next_runs
from omfs.storage import Storage

__all__ = [
    "ScheduleBook",
    "copy_schedule",
    "delete_schedule",
    "get_schedule",
    "job_next_runs",
    "list_schedules",
    "put_schedule",
    "read_last_fired",
    "record_fired",
    "schedule_key",
    "schedules_folder",
]

_SUFFIX = ".json"
_LAST = "_last"


def schedules_folder(bucket: str) -> str:
    """``{bucket}/jobs/_schedules``: the folder of a bucket's schedules."""
    return f"{bucket}/jobs/_schedules"


def _file(name: str) -> str:
    return name.replace("/", "~") + _SUFFIX


def schedule_key(bucket: str, name: str) -> str:
    """The key of job ``name``'s schedule."""
    return f"{schedules_folder(bucket)}/{_file(name)}"


def _last_key(bucket: str, name: str) -> str:
    return f"{schedules_folder(bucket)}/{_LAST}/{_file(name)}"


def _checked(name: str) -> str:
    name = check_name(name, "job name")
    if len(_file(name).encode()) > MAX_NAME_BYTES:
        raise ScheduleError(f"Cannot schedule job {name!r}: its name is too long for a schedule")
    return name


def _decode(data: bytes, where: str) -> Schedule:
    try:
        return Schedule.from_dict(json.loads(data))
    except (ValueError, TypeError, AttributeError) as exc:
        raise FormatError(f"The schedule {where} cannot be read: {exc}") from None


def put_schedule(
    storage: Storage,
    bucket: str,
    name: str,
    *,
    cron: str | None = None,
    every: Any = None,
    tz: str = "UTC",
    params: dict[str, Any] | None = None,
    catchup: Catchup = "skip",
    overlap: Overlap = "skip",
) -> Schedule:
    """Schedule job ``name`` (replacing its schedule); checked whole before it is written.
    Slots from now on are due; missed ones are counted from now, not from an older one."""
    name = _checked(name)
    schedule = Schedule(
        cron=cron,
        every=every,
        tz=tz,
        params=dict(params or {}),
        catchup=catchup,
        overlap=overlap,
        job=name,
        created=datetime.now(UTC),
    )
    storage.write_bytes(schedule_key(bucket, name), json.dumps(schedule.to_dict()).encode())
    return schedule


def get_schedule(storage: Storage, bucket: str, name: str) -> Schedule:
    """Job ``name``'s schedule, or NotFoundError."""
    name = _checked(name)
    key = schedule_key(bucket, name)
    try:
        data = storage.read_bytes(key)
    except FileNotFoundError:
        raise NotFoundError(
            f"Job {name!r} in bucket {bucket!r} of context {storage.url!r} has no schedule"
        ) from None
    return replace(_decode(data, key), job=name)


def delete_schedule(storage: Storage, bucket: str, name: str) -> None:
    """Remove job ``name``'s schedule (and what was fired of it); NotFoundError if none."""
    get_schedule(storage, bucket, name)
    storage.delete([schedule_key(bucket, name), _last_key(bucket, name)])


def list_schedules(storage: Storage, bucket: str) -> list[Schedule]:
    """The schedules of a bucket, sorted by job (one listing, one read each)."""
    return [s for _, s in sorted(ScheduleBook(storage, bucket).scan().items())]


def job_next_runs(
    storage: Storage, bucket: str, name: str, n: int = 5, after: datetime | None = None
) -> list[datetime]:
    """The next ``n`` slots of job ``name`` (timezone-aware, in its schedule's zone)."""
    return next_runs(get_schedule(storage, bucket, name), after, n)


def copy_schedule(
    schedule: Schedule, storage: Storage, bucket: str, name: str, *, keep_created: bool = False
) -> Schedule:
    """Write ``schedule`` as job ``name``'s in ``bucket`` of ``storage`` (a promotion or a
    sync); its slots count from now there unless ``keep_created`` (a sync: the same schedule
    on two roots of one context)."""
    name = _checked(name)
    created = schedule.created if keep_created else datetime.now(UTC)
    copied = replace(schedule, job=name, created=created)
    storage.write_bytes(schedule_key(bucket, name), json.dumps(copied.to_dict()).encode())
    return copied


def read_last_fired(storage: Storage, bucket: str, name: str) -> datetime | None:
    """The newest slot of job ``name`` a scheduler fired (None: none, or unreadable)."""
    try:
        doc = json.loads(storage.read_bytes(_last_key(bucket, name)))
        return datetime.fromisoformat(doc["slot"]).astimezone(UTC)
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None


def record_fired(storage: Storage, bucket: str, name: str, slot: datetime) -> None:
    """Note ``slot`` as the newest fired of job ``name`` (a hint for catch-up)."""
    doc = {"slot": slot.astimezone(UTC).isoformat(), "at": datetime.now(UTC).isoformat()}
    storage.write_bytes(_last_key(bucket, name), json.dumps(doc).encode())


class ScheduleBook:
    """The schedules of one bucket, re-read cheaply: :meth:`scan` lists the folder once and
    reads only files that changed since the last scan (by size and checksum where the
    storage lists one; local and memory files are read each time, which costs little)."""

    def __init__(self, storage: Storage, bucket: str):
        self.storage = storage
        self.bucket = bucket
        self._cache: dict[str, tuple[tuple[int, str], Schedule]] = {}

    def scan(self) -> dict[str, Schedule]:
        """``{job: schedule}``; a file that cannot be read is left out (until it is fixed)."""
        folder = schedules_folder(self.bucket)
        found: dict[str, Schedule] = {}
        cache: dict[str, tuple[tuple[int, str], Schedule]] = {}
        for key, size, md5 in self._listing(folder):
            filename = key[len(folder) + 1 :]
            if "/" in filename or filename.startswith(".") or not filename.endswith(_SUFFIX):
                continue
            name = filename[: -len(_SUFFIX)].replace("~", "/")
            cached = self._cache.get(key)
            if md5 is not None and cached is not None and cached[0] == (size, md5):
                schedule = cached[1]
            else:
                try:
                    schedule = replace(_decode(self.storage.read_bytes(key), key), job=name)
                except (FileNotFoundError, FormatError, ScheduleError):
                    continue  # removed meanwhile, or written by hand wrongly
            found[name] = schedule
            if md5 is not None:
                cache[key] = ((size, md5), schedule)
        self._cache = cache
        return found

    def _listing(self, folder: str) -> list[tuple[str, int, str | None]]:
        if self.storage.backend.object_store:
            return self.storage.inventory(folder)  # one listing, with checksums
        return [(f"{folder}/{n}", 0, None) for n in self.storage.list_names(folder)]
