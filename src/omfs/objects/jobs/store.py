"""The job store: Python scripts and Jupyter notebooks, as versioned payloads with JSON
sidecars (as models are), and the records of their runs (:mod:`omfs.objects.jobs.runs`).

A version is one payload ``_data/<id>.py`` or ``_data/<id>.ipynb`` with an immutable sidecar
``_data/<id>.json`` beside it (kind, size, sha256, the file's original name, created).
A script must compile and a notebook must be valid nbformat before anything is written.
"""

from __future__ import annotations

import builtins
import hashlib
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from omfs.errors import InvalidJobError, MissingExtraError, NotFoundError
from omfs.names import check_name, check_new_name, check_tag
from omfs.objects.jobs import schedule_book
from omfs.objects.jobs.runs import RunRecord, RunStore
from omfs.objects.jobs.schedule import Catchup, Overlap, Schedule
from omfs.objects.metadata import Metadata, utcnow
from omfs.objects.payloads import PayloadStore, check_payload_info, sidecar_name
from omfs.objects.records import (
    Commit,
    CorruptRecord,
    State,
    VersionRecord,
    dumps,
)
from omfs.objects.versioned import leased
from omfs.storage import unique_name

__all__ = ["KINDS", "JobStore", "check_job_file", "notebook_module"]

#: A job version's kind, by the file's extension.
KINDS = {".py": "script", ".ipynb": "notebook"}
NOTEBOOKS_EXTRA = "pip install 'omfs[notebooks]'"


def notebook_module(name: str, what: str) -> Any:
    """``nbformat`` or ``nbclient``, or MissingExtraError naming the extra to install."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        raise MissingExtraError(
            f"{what} needs the notebooks extra ({name} is not installed): {NOTEBOOKS_EXTRA}"
        ) from None


def check_job_file(data: bytes, filename: str) -> str:
    """The kind (``script``/``notebook``) of a job file's content, or InvalidJobError in one
    line: a script that does not compile (naming the file and line), an invalid notebook."""
    kind = KINDS.get(os.path.splitext(filename)[1].lower())
    if kind is None:
        raise InvalidJobError(
            f"{filename!r} is not a job file: store a Python script (.py) or a Jupyter "
            "notebook (.ipynb)"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidJobError(f"{filename!r} is not UTF-8 text") from None
    if kind == "script":
        try:
            compile(text, filename, "exec")
        except SyntaxError as exc:
            raise InvalidJobError(
                f"The script {filename!r} does not compile: line {exc.lineno}: {exc.msg}"
            ) from None
        return kind
    nbformat = notebook_module("nbformat", f"The notebook job {filename!r}")
    try:
        nbformat.validate(nbformat.reads(text, as_version=4))
    except Exception as exc:  # nbformat raises JSON, validation and version errors
        line = " ".join(str(exc).split())[:200]
        raise InvalidJobError(f"{filename!r} is not a valid notebook: {line}") from None
    return kind


class JobStore(PayloadStore):
    """Jobs of one bucket: ``put``, ``get``, ``list``, ``versions``, ``metadata``, ``drop``,
    ``restore``, tags, ``prune``, ``promote``; their runs (``runs``, ``log``) and schedules
    (``schedule``, ``unschedule``, ``schedules``, ``next_runs``).

    A job runs with ``om.runtime.job(name).run(**params)`` (:mod:`omfs.compute.jobs`)."""

    kind = "jobs"
    noun = "Job"

    @property
    def run_store(self) -> RunStore:
        """The run records of this bucket's jobs."""
        return RunStore(self.storage, self.bucket)

    # -- the protocol's hooks ---------------------------------------------------------------
    def validate_info(self, info: dict[str, Any], kind: str) -> None:
        check_payload_info(info, tuple(KINDS), "a .py or .ipynb file")
        if not isinstance(info.get("filename", ""), str):
            raise CorruptRecord("filename must be text")

    def import_info(
        self, name: str, kind: str, info: dict[str, Any], renamed: dict[str, str], created: str
    ) -> dict[str, Any]:
        info = {**info, "payload": renamed[info["payload"]]}
        self._write_sidecar(name, info, kind, created)
        return info

    def _legacy_state(self, name: str) -> State | None:
        return None  # jobs came after the format-1 layout of omfs 0.1

    def _legacy_info(self, name: str, info: dict[str, Any]) -> dict[str, Any]:
        raise CorruptRecord("jobs have no format-1 layout")

    def _write_sidecar(self, name: str, info: dict[str, Any], kind: str, created: str) -> None:
        """The payload's own description, written once beside it before its commit."""
        doc = {"format": 2, "kind": kind, "size": info["size"], "sha256": info["sha256"]}
        doc |= {"filename": info.get("filename", ""), "created": created}
        self.storage.write_bytes(self.data_key(name, sidecar_name(info["payload"])), dumps(doc))

    def fsck(self, name: str) -> builtins.list[str]:
        """Problems of the job's versions (as for models) and of its run records."""
        return [*super().fsck(name), *self.run_store.problems(name)]

    # -- writing and reading ----------------------------------------------------------------
    @leased(1)
    def put(
        self,
        path: str | os.PathLike[str],
        name: str,
        *,
        attributes: dict[str, Any] | None = None,
        tag: str | None = None,
    ) -> Metadata:
        """Store the script (``.py``) or notebook (``.ipynb``) at ``path`` as a new,
        immutable version of job ``name``; it is checked first (it compiles, or is valid
        nbformat), so nothing is written for a broken file."""
        source = Path(path)
        try:
            data = source.read_bytes()
        except OSError as exc:
            raise InvalidJobError(
                f"Cannot read the job file {str(source)!r}: {exc.strerror}"
            ) from None
        kind = check_job_file(data, source.name)
        name = check_new_name(check_name(name))
        if tag is not None:
            check_tag(tag)
        self._next_state(name)
        payload = unique_name(source.suffix.lower())
        info = {"payload": payload, "size": len(data), "filename": source.name}
        info["sha256"] = hashlib.sha256(data).hexdigest()
        created = utcnow()
        written = [self.data_key(name, payload), self.data_key(name, sidecar_name(payload))]
        try:
            self.storage.write_bytes(written[0], data)
            self._write_sidecar(name, info, kind, created)

            def change(state: State) -> Commit:
                rec = VersionRecord(
                    version=state.next_version,
                    created=created,
                    kind=kind,
                    op="put",
                    attributes=dict(attributes or {}),
                    tag=tag,
                    info=info,
                )
                return Commit(op="put", version=rec)

            state = self.commit(name, change, retry=True)
            return self.metadata_for(name, state.records[state.latest])  # type: ignore[index]
        except BaseException:
            self.storage.delete(written)
            raise

    def get(self, name: str, *, version: int | str | None = None, at: Any = None) -> str:
        """The text of the latest version (or of ``name@v3``, ``name@tag``, ``version=``;
        ``at=``: as selected then), verified against its sha256."""
        return self.read_payload(self._resolve(name, version, at)).decode("utf-8")

    def promote(
        self, name: str, other: JobStore | str, *, with_schedule: bool = False, **kwargs: Any
    ) -> Any:
        """Copy one version of ``name`` to ``other`` (another bucket or context, e.g. dev ->
        prod) as a new version there; its runs stay, and so does its schedule unless
        ``with_schedule=True``, which copies it too (replacing the target's; slots count
        from now there). See :func:`omfs.objects.promote.promote`."""
        from omfs.objects.promote import promote, target_store

        schedule = None
        if with_schedule:  # checked before anything is copied
            schedule = self.get_schedule(self.select(name)[0])
        target = target_store(self, other)
        result = promote(self, name, target, **kwargs)
        if schedule is not None and not kwargs.get("dry_run"):
            schedule_book.copy_schedule(schedule, target.storage, target.bucket, result.name)
        return result

    # -- runs -------------------------------------------------------------------------------
    def runs(self, name: str) -> builtins.list[RunRecord]:
        """The runs of job ``name``, newest first (a run whose worker died reads as failed)."""
        return self.run_store.runs(check_name(name))

    def run(self, run_id: str, *, job: str | None = None) -> RunRecord:
        """The record of one run (``job``: its job, saves a listing)."""
        return self.run_store.find(run_id, job)

    def log(self, run_id: str, *, job: str | None = None) -> dict[str, str]:
        """The captured output of a run: ``{"stdout": ..., "stderr": ...}``."""
        return self.run_store.output(self.run(run_id, job=job))

    # -- schedules ----------------------------------------------------------------------------
    def schedule(
        self,
        name: str,
        *,
        cron: str | None = None,
        every: Any = None,
        tz: str = "UTC",
        params: dict[str, Any] | None = None,
        catchup: Catchup = "skip",
        overlap: Overlap = "skip",
    ) -> Schedule:
        """Run job ``name`` on a schedule: ``cron`` (five fields, wall time in ``tz``) or
        ``every`` (``"30s"``, ``"1h"``); ``params`` for each run; ``catchup`` (``skip``,
        ``latest``, ``all``) after a downtime; ``overlap`` (``skip``/``allow``) while the
        previous run still runs. Replaces the job's schedule; a scheduler (``om scheduler
        run``, or the background cluster's) fires it. See :mod:`omfs.objects.jobs.schedule`."""
        name = self._known_job(name)
        return schedule_book.put_schedule(
            self.storage, self.bucket, name, cron=cron, every=every, tz=tz, params=params,
            catchup=catchup, overlap=overlap,
        )  # fmt: skip

    def unschedule(self, name: str) -> None:
        """Remove job ``name``'s schedule (NotFoundError when it has none); runs stay."""
        schedule_book.delete_schedule(self.storage, self.bucket, check_name(name))

    def get_schedule(self, name: str) -> Schedule:
        """Job ``name``'s schedule (NotFoundError when it has none)."""
        return schedule_book.get_schedule(self.storage, self.bucket, check_name(name))

    def schedules(self) -> builtins.list[Schedule]:
        """The schedules of this bucket's jobs, by job name."""
        return schedule_book.list_schedules(self.storage, self.bucket)

    def next_runs(
        self, name: str, n: int = 5, *, after: datetime | None = None
    ) -> builtins.list[datetime]:
        """The next ``n`` slots of job ``name`` after ``after`` (default: now), as
        timezone-aware datetimes in its schedule's zone."""
        return schedule_book.job_next_runs(self.storage, self.bucket, check_name(name), n, after)

    def _known_job(self, name: str) -> str:
        """``name`` when such a job exists, else NotFoundError naming the jobs that do."""
        name = check_name(name)
        if self.exists(name):
            return name
        known = self.list()
        there = ", ".join(repr(n) for n in known[:20]) if known else "none"
        raise NotFoundError(
            f"Cannot schedule job {name!r}: no such job in bucket {self.bucket!r} of context "
            f"{self.storage.url!r} (jobs there: {there}).",
            hint="Put it first with om.jobs.put().",
            cli_hint="Put it first with `om jobs put FILE NAME`.",
        )
