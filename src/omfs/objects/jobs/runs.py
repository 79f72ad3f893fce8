"""The records of job runs, kept in the job's context beside its versions.

Layout (``{name}`` with ``/`` as ``~``, as index markers name objects)::

    {bucket}/jobs/_runs/{name}/{run_id}/run.json      the record (rewritten as the run goes)
    {bucket}/jobs/_runs/{name}/{run_id}/stdout.txt    captured output, written when it ends
    {bucket}/jobs/_runs/{name}/{run_id}/stderr.txt    (with the traceback of a failure)
    {bucket}/jobs/_runs/{name}/{run_id}/output.ipynb  a notebook job's executed notebook

``_runs`` starts with ``_``, so no job is ever named so, ``list()`` never shows runs, and
the log machinery (sync's inventory, gc, bundles) never mistakes their files for an
object's. They are treated on purpose: sync copies a job's runs with it (a run the target
lacks, or one that finished since), gc keeps them (they are history, not garbage; dropping
the bucket removes them), bundles and promotion carry versions only, and fsck checks that
each record reads.

A run id is ``20250107T060000Z-3fa2c1`` (start time, random); a scheduled run's is derived
from its slot, ``20250107T060000Z-scheduled``, and its record is created with put-if-absent,
so of several schedulers only one creates it. A record ``running`` names its process (host,
pid) and is rewritten every :data:`HEARTBEAT` seconds; a look at it finds it ``failed`` with
the reason when that process is gone (same host) or silent for :data:`LOST_AFTER` seconds.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any

from omfs._util import pid_exists
from omfs.errors import FormatError, InvalidNameError, NotFoundError
from omfs.names import check_name
from omfs.objects.records import dumps
from omfs.storage import Storage

__all__ = [
    "FINAL",
    "HEARTBEAT",
    "LOST_AFTER",
    "OUTPUTS",
    "RECORD_FILE",
    "RESERVED_PARAMS",
    "STATUSES",
    "RunRecord",
    "RunStore",
    "check_run_id",
    "is_run_id",
    "new_run_id",
    "run_files",
    "slot_run_id",
]

STATUSES = ("running", "succeeded", "failed", "cancelled")
FINAL = ("succeeded", "failed", "cancelled")
#: seconds between the rewrites of a running record
HEARTBEAT = 10.0
#: a running record not rewritten for this long reads as failed (its worker is gone)
LOST_AFTER = 60.0
_RUNS = "_runs"
RECORD_FILE = "run.json"
_RECORD = RECORD_FILE
OUTPUTS = ("stdout.txt", "stderr.txt", "output.ipynb")
#: names no run parameter may have: a job's code already has ``om`` and ``params``
RESERVED_PARAMS = ("om", "params")


#: the run ids omfs makes: a UTC stamp (microseconds only for a slot that has them), then
#: 6 random hex digits or ``scheduled``; nothing else names a run (or a path)
_RUN_ID = re.compile(r"\d{8}T\d{6}(?:\.\d{6})?Z-(?:[0-9a-f]{6}|scheduled)")


def is_run_id(text: object) -> bool:
    """Whether ``text`` is a run id omfs could have made."""
    return isinstance(text, str) and _RUN_ID.fullmatch(text) is not None


def check_run_id(run_id: object) -> str:
    """``run_id`` when it is a run id omfs makes (``20250107T060000Z-3fa2c1``), else
    InvalidNameError: an id is part of a path, so nothing else may reach one."""
    if not is_run_id(run_id):
        raise InvalidNameError(
            f"Invalid run id {run_id!r}: a run id looks like 20250107T060000Z-3fa2c1 "
            "(runs() lists them)"
        )
    return str(run_id)


def _stamp(when: datetime) -> str:
    when = when.astimezone(UTC)
    text = when.strftime("%Y%m%dT%H%M%S")
    return text + (f".{when.microsecond:06d}" if when.microsecond else "") + "Z"


def new_run_id() -> str:
    """A fresh run id: the start time and 6 random hex digits."""
    return f"{_stamp(datetime.now(UTC).replace(microsecond=0))}-{secrets.token_hex(3)}"


def slot_run_id(slot: datetime) -> str:
    """The run id of a scheduled run: one per job and slot (a tz-aware datetime)."""
    if slot.tzinfo is None:
        raise ValueError(f"a slot is a timezone-aware datetime, got {slot!r}")
    return f"{_stamp(slot)}-scheduled"


def now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class RunRecord:
    """One run of a job: who ran which version with which parameters, how it ended."""

    id: str
    job: str
    version: int
    params: dict[str, Any] = field(default_factory=dict)
    status: str = "running"
    started: str = field(default_factory=now)
    finished: str | None = None
    worker: str | None = None
    result: Any = None
    error: str | None = None
    slot: str | None = None
    host: str | None = None
    pid: int | None = None
    heartbeat: str | None = None
    bucket: str = ""
    kind: str = "script"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> RunRecord:
        known = {f.name for f in fields(cls)}
        missing = {"id", "job", "version", "status"} - set(doc)
        if missing or doc.get("status") not in STATUSES:
            raise ValueError(f"not a run record (missing {sorted(missing)} or bad status)")
        return cls(**{k: v for k, v in doc.items() if k in known})

    def owned_here(self) -> RunRecord:
        """This record claimed by the calling process (host, pid, a fresh heartbeat)."""
        return replace(self, host=socket.gethostname(), pid=os.getpid(), heartbeat=now())

    def seen(self, at: datetime | None = None) -> RunRecord:
        """The record as a look at it finds it: ``running`` whose process is gone reads as
        ``failed``, with the reason as its error line."""
        if self.status != "running":
            return self
        reason = _lost_reason(self, at or datetime.now(UTC))
        if reason is None:
            return self
        return replace(self, status="failed", error=reason)


def _lost_reason(rec: RunRecord, at: datetime) -> str | None:
    """Why a ``running`` record's run can no longer finish, or None. Before a worker took it
    the submitting process owns it (only its death, on this host, is told); then the
    worker, whose heartbeat must be fresh."""
    where = rec.worker or "the submitting process"
    if f"pid {rec.pid}" not in where:  # a scheduler names its pid already
        where += f" (pid {rec.pid} on {rec.host})"
    if rec.host == socket.gethostname() and rec.pid is not None and not pid_exists(rec.pid):
        return f"lost: {where} stopped before the run finished (killed?)"
    if rec.worker is None:
        return None  # queued: it may wait for a worker as long as it must
    beat = datetime.fromisoformat(rec.heartbeat or rec.started)
    silent = (at - beat).total_seconds()
    if silent > LOST_AFTER:
        return f"lost: no heartbeat from {where} for {silent:.0f} s"
    return None


def run_files(storage: Storage, bucket: str) -> dict[tuple[str, str], dict[str, int]]:
    """Every run of ``bucket``'s jobs from one listing: (job, run id) -> {file: size}."""
    top = f"{bucket}/jobs/{_RUNS}/"
    out: dict[tuple[str, str], dict[str, int]] = {}
    for key, size, _ in storage.walk(top.rstrip("/")):
        parts = key[len(top) :].split("/")
        if len(parts) == 3 and parts[2] in (_RECORD, *OUTPUTS) and is_run_id(parts[1]):
            out.setdefault((parts[0].replace("~", "/"), parts[1]), {})[parts[2]] = size
    return out


class RunStore:
    """Reads and writes the run records of one bucket's jobs."""

    def __init__(self, storage: Storage, bucket: str):
        self.storage = storage
        self.bucket = bucket

    @property
    def top(self) -> str:
        """The folder of all runs: ``{bucket}/jobs/_runs``."""
        return f"{self.bucket}/jobs/{_RUNS}"

    def folder(self, job: str, run_id: str) -> str:
        """The folder of one run; the job name and run id are checked (InvalidNameError), so
        no path outside the runs can be built from them."""
        return f"{self._job_folder(job)}/{check_run_id(run_id)}"

    def _job_folder(self, job: str) -> str:
        return f"{self.top}/{check_name(job, 'job name').replace('/', '~')}"

    def _run_ids(self, job: str) -> list[str]:
        """The run ids of ``job``'s folder (anything else there is not a run)."""
        return [n for n in self.storage.list_dirs(self._job_folder(job)) if is_run_id(n)]

    def key(self, rec: RunRecord, filename: str = _RECORD) -> str:
        return f"{self.folder(rec.job, rec.id)}/{filename}"

    # -- writing ----------------------------------------------------------------------------
    def create(self, rec: RunRecord) -> bool:
        """Write a new record with put-if-absent; False when that run exists already (a
        scheduled slot another scheduler took)."""
        try:
            self.storage.create(self.key(rec), dumps(rec.to_dict()))
        except FileExistsError:
            return False
        return True

    def write(self, rec: RunRecord) -> None:
        self.storage.write_bytes(self.key(rec), dumps(rec.to_dict()))

    def write_output(self, rec: RunRecord, filename: str, data: bytes) -> None:
        self.storage.write_bytes(self.key(rec, filename), data)

    # -- reading ----------------------------------------------------------------------------
    def read(self, job: str, run_id: str, *, seen: bool = True) -> RunRecord:
        """One record; ``seen``: a run whose worker died reads as failed."""
        try:
            doc = json.loads(self.storage.read_bytes(f"{self.folder(job, run_id)}/{_RECORD}"))
        except FileNotFoundError:
            raise NotFoundError(
                f"Run {run_id!r} of job {job!r} does not exist in bucket {self.bucket!r} of "
                f"context {self.storage.url!r}. runs() lists them."
            ) from None
        rec = RunRecord.from_dict(doc)
        if rec.id != run_id or rec.job != job:  # never build a path from what a file says
            raise FormatError(
                f"The record of run {run_id!r} of job {job!r} in bucket {self.bucket!r} names "
                f"run {rec.id!r} of job {rec.job!r}: it was changed outside omfs"
            )
        return rec.seen() if seen else rec

    def runs(self, job: str) -> list[RunRecord]:
        """The runs of ``job``, newest first."""
        found = []
        for run_id in self._run_ids(job):
            try:
                found.append(self.read(job, run_id))
            except (NotFoundError, FormatError):
                continue  # a run a sync is still copying (its record comes last); fsck tells
        return sorted(found, key=lambda r: (r.started, r.id), reverse=True)

    def running(self, job: str, newest: int = 5) -> list[RunRecord]:
        """The runs of ``job`` still running among its ``newest`` (by run id, which starts
        with the start or slot time): what ``overlap="skip"`` asks, without reading every
        record of a long history. A run whose process died does not count."""
        found = []
        for run_id in sorted(self._run_ids(job))[-newest:]:
            try:
                rec = self.read(job, run_id)
            except (NotFoundError, FormatError):
                continue
            if rec.status == "running":
                found.append(rec)
        return found

    def find(self, run_id: str, job: str | None = None) -> RunRecord:
        """The record of ``run_id`` (of ``job``, or found by one listing of all runs)."""
        run_id = check_run_id(run_id)
        if job is not None:
            return self.read(job, run_id)
        for key, _, _ in self.storage.walk(self.top):
            parts = key.split("/")
            if parts[-1] == _RECORD and parts[-2] == run_id:
                return self.read(parts[-3].replace("~", "/"), run_id)
        raise NotFoundError(
            f"No run {run_id!r} in bucket {self.bucket!r} of context {self.storage.url!r}. "
            "`om jobs runs NAME` lists the runs of a job."
        )

    def output(self, rec: RunRecord) -> dict[str, str]:
        """The captured stdout and stderr of a run ('' where nothing was captured yet)."""
        out = {}
        for stream in ("stdout", "stderr"):
            try:
                out[stream] = self.storage.read_bytes(self.key(rec, f"{stream}.txt")).decode()
            except FileNotFoundError:
                out[stream] = ""
        return out

    def notebook(self, rec: RunRecord) -> str:
        """The executed notebook of a notebook job's run (JSON text)."""
        return self.storage.read_bytes(self.key(rec, "output.ipynb")).decode()

    def problems(self, job: str) -> list[str]:
        """Run records of ``job`` that do not read (for fsck)."""
        out = []
        for run_id in self.storage.list_dirs(self._job_folder(job)):
            try:
                self.read(job, run_id, seen=False)
            except (ValueError, TypeError, NotFoundError, FormatError) as exc:
                out.append(f"job {job!r} run {run_id}: the run record does not read ({exc})")
        return out
