"""The scheduler: fires each due slot of the context's job schedules.

It sleeps until the next due slot (so a slot fires within milliseconds of its time on an
idle machine), and re-reads the schedules every ``refresh`` seconds (one listing per
bucket: a schedule added, changed or removed while it runs counts from then on).

Several schedulers may watch one context (two laptops and a server on one S3 root): each
tries every due slot, and ``fire`` decides who wins. The job store's ``fire`` creates the
run record keyed by job and slot with put-if-absent and submits only when it created it,
so each slot runs exactly once whichever schedulers are up. A scheduler that was down
(none up for a while, or this one stalled for over :data:`MAX_STALL` seconds) applies each
schedule's ``catchup`` to the slots it missed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from omfs.objects.buckets import bucket_names
from omfs.objects.jobs.schedule import MAX_CATCHUP, Schedule, due_slots, slots_after
from omfs.objects.jobs.schedule_book import ScheduleBook, read_last_fired, record_fired
from omfs.storage import Storage

__all__ = ["MAX_STALL", "Fire", "Firing", "IsRunning", "Scheduler", "run_scheduler"]

log = logging.getLogger("omfs.scheduler")

#: a scheduler whose previous look is older than this (seconds) was not watching: what it
#: missed follows the schedule's catch-up policy
MAX_STALL = 60.0


class _Context(Protocol):
    """What the scheduler uses of a context (an :class:`omfs.Omega`)."""

    @property
    def storage(self) -> Storage: ...

    @property
    def bucket(self) -> str: ...

    def __getitem__(self, bucket: str) -> Any: ...


#: ``fire(om, job, slot, params) -> bool``: start job ``job`` of ``om`` (the context on the
#: job's bucket) for ``slot``; True when this call won the slot, False when another did
Fire = Callable[[Any, str, datetime, dict[str, Any]], bool]
#: ``is_running(om, job) -> bool``: whether a run of the job is still running
IsRunning = Callable[[Any, str], bool]


@dataclass(frozen=True)
class Firing:
    """What a scheduler did with one slot: ``fired`` (won it), ``lost`` (another scheduler
    had it), ``overlap`` (skipped: the previous run still runs) or ``failed``."""

    bucket: str
    job: str
    slot: datetime
    outcome: Literal["fired", "lost", "overlap", "failed"]
    at: float


@dataclass
class _Entry:
    bucket: str
    job: str
    schedule: Schedule
    last: datetime | None  # the newest slot handled (fired, lost or skipped), UTC
    next: datetime | None = None  # the first slot after the last look (None: look now), UTC


class Scheduler:
    """Fires the due slots of the schedules of ``om``'s context (all its buckets, or
    ``buckets``) through ``fire``; ``is_running`` serves ``overlap="skip"``.

    ``tick()`` does one look (pure enough to drive by hand with ``now=``); ``run(stop)``
    loops until ``stop`` is set. A look more than ``max_stall`` seconds after the previous
    one treats the slots in between as missed (``catchup`` decides).
    """

    def __init__(
        self,
        om: _Context,
        fire: Fire,
        *,
        is_running: IsRunning | None = None,
        buckets: list[str] | None = None,
        refresh: float = 1.0,
        limit: int = MAX_CATCHUP,
        max_stall: float = MAX_STALL,
        clock: Callable[[], float] = time.time,
    ):
        self.om = om
        self.fire = fire
        self.is_running = is_running
        self.buckets = buckets
        self.refresh_interval = refresh
        self.limit = limit
        self.max_stall = max_stall
        self.clock = clock
        self.firings: list[Firing] = []  # what this scheduler did, oldest first
        self._books: dict[str, ScheduleBook] = {}
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._contexts: dict[str, Any] = {}
        self._previous: datetime | None = None

    @property
    def storage(self) -> Storage:
        return self.om.storage

    # -- reading the schedules --------------------------------------------------------------
    def refresh(self) -> None:
        """Re-read the schedules (one listing per bucket); a failed read keeps what was known."""
        try:
            buckets = self.buckets if self.buckets is not None else bucket_names(self.storage)
        except Exception as exc:  # storage away for a moment: keep the last known schedules
            log.warning("scheduler: cannot list the buckets of %s: %s", self.storage.url, exc)
            return
        seen: set[tuple[str, str]] = set()
        for bucket in buckets:
            book = self._books.setdefault(bucket, ScheduleBook(self.storage, bucket))
            try:
                for job, schedule in book.scan().items():
                    self._update(bucket, job, schedule)
                    seen.add((bucket, job))
            except Exception as exc:  # keep what was known of this bucket
                log.warning("scheduler: cannot read the schedules of %r: %s", bucket, exc)
                seen.update(k for k in self._entries if k[0] == bucket)
        for key in set(self._entries) - seen:
            del self._entries[key]

    def _update(self, bucket: str, job: str, schedule: Schedule) -> None:
        entry = self._entries.get((bucket, job))
        if entry is None:
            last = read_last_fired(self.storage, bucket, job)
            self._entries[bucket, job] = _Entry(bucket, job, schedule, last)
        elif entry.schedule != schedule:
            entry.schedule, entry.next = schedule, None

    # -- firing -----------------------------------------------------------------------------
    def tick(self, now: datetime | None = None) -> list[Firing]:
        """Fire every slot due at ``now`` (default: the clock); returns what it did.

        The slots due at one look (missed ones of ``catchup="all"`` or ``"latest"``, then
        the one on time) are one batch: ``overlap="skip"`` asks once, before the batch,
        whether a run that started earlier still runs, and skips the whole batch if so;
        the runs of one batch never count as overlapping each other (they run side by side).
        """
        now = datetime.fromtimestamp(self.clock(), UTC) if now is None else now.astimezone(UTC)
        previous, self._previous = self._previous, now
        stalled = previous is None or (now - previous).total_seconds() > self.max_stall
        done: list[Firing] = []
        for entry in list(self._entries.values()):
            if entry.next is not None and entry.next > now:
                continue
            since = now if stalled else previous
            slots = due_slots(entry.schedule, entry.last, now, self.limit, since=since)
            if slots:
                busy = self._busy(entry)
                done.extend(self._fire(entry, slot, busy) for slot in slots)
            entry.next = next(slots_after(entry.schedule, max(now, entry.last or now)))
        self.firings.extend(done)
        return done

    def _context(self, bucket: str) -> Any:
        om = self._contexts.get(bucket)
        if om is None:
            om = self._contexts[bucket] = self.om[bucket]
        return om

    def _busy(self, entry: _Entry) -> bool | None:
        """Whether ``overlap="skip"`` holds the slots back: a run of the job that started
        before this look still runs (None: that could not be told)."""
        if entry.schedule.overlap != "skip" or self.is_running is None:
            return False
        try:
            return bool(self.is_running(self._context(entry.bucket), entry.job))
        except Exception as exc:
            log.warning("scheduler: job %r: cannot tell whether it still runs: %s", entry.job, exc)
            return None

    def _fire(self, entry: _Entry, slot: datetime, busy: bool | None) -> Firing:
        outcome: Literal["fired", "lost", "overlap", "failed"] = "failed"
        try:  # one job's trouble never stops the others
            if busy:
                outcome = "overlap"
            elif busy is not None and self.fire(
                self._context(entry.bucket), entry.job, slot, dict(entry.schedule.params)
            ):
                outcome = "fired"
                record_fired(self.storage, entry.bucket, entry.job, slot)
            elif busy is not None:
                outcome = "lost"
        except Exception as exc:
            log.warning("scheduler: job %r, slot %s: %s", entry.job, slot.isoformat(), exc)
        entry.last = slot.astimezone(UTC)
        log.info("scheduler: job %r slot %s %s", entry.job, slot.isoformat(), outcome)
        return Firing(entry.bucket, entry.job, slot, outcome, self.clock())

    # -- the loop ---------------------------------------------------------------------------
    def next_due(self) -> float | None:
        """When the next slot of any schedule is due (seconds since the epoch), if any."""
        slots = [e.next.timestamp() for e in self._entries.values() if e.next is not None]
        return min(slots, default=None)

    def run(self, stop: threading.Event | None = None) -> None:
        """Look, fire, sleep until the next due slot or refresh; until ``stop`` is set."""
        stop = stop or threading.Event()
        next_refresh = 0.0
        while not stop.is_set():
            try:
                if self.clock() >= next_refresh:
                    self.refresh()
                    next_refresh = self.clock() + self.refresh_interval
                self.tick()
            except Exception:  # a bug or the unexpected: report it, keep the schedules going
                log.exception("scheduler: a look at the schedules failed")
                next_refresh = self.clock() + self.refresh_interval
            due = self.next_due()
            wake = next_refresh if due is None else min(due, next_refresh)
            stop.wait(max(0.0, wake - self.clock()))


def run_scheduler(
    om: Any,
    fire: Fire,
    stop_event: threading.Event | None = None,
    *,
    is_running: IsRunning | None = None,
) -> None:
    """Run a scheduler on ``om``'s context in the foreground until ``stop_event`` is set
    (or the process is interrupted): what ``om scheduler run`` does."""
    scheduler = Scheduler(om, fire, is_running=is_running)
    log.info("scheduler: watching %s", om.storage.url)
    try:
        scheduler.run(stop_event)
    except KeyboardInterrupt:
        log.info("scheduler: stopped")
