"""What the jobs, runtime and serving pages show: runs, schedules, workers, the audit.

Runs are read newest first by their ids (which start with the start time), so a page
reads the few records it shows, not every run. The serving plot reads only the audit's
time, model, version and latency columns for the window it draws.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from omfs.errors import NotFoundError, OmfsError

__all__ = [
    "AUDIT_DATASET",
    "MAX_HOURS",
    "job_runs",
    "latest_runs",
    "schedules",
    "serving_series",
    "version_labels",
    "workers",
]

#: the dataset om serve appends its audit to
AUDIT_DATASET = "serving/audit"
_SERIES_BINS = 48
#: the longest window of the serving plot, in hours (a year)
MAX_HOURS = 24 * 365


def latest_runs(jobs: Any, name: str, limit: int = 10) -> list[Any]:
    """The newest ``limit`` runs of job ``name`` (run ids sort by start time)."""
    runs = jobs.run_store
    folder = f"{runs.top}/{name.replace('/', '~')}"
    try:
        ids = sorted(runs.storage.list_dirs(folder), reverse=True)
    except FileNotFoundError:
        return []
    found = []
    for run_id in ids[:limit]:
        try:
            found.append(runs.read(name, run_id))
        except (NotFoundError, ValueError):
            continue  # being copied by a sync, or not a record omfs wrote
    return found


def job_runs(jobs: Any, names: list[str]) -> list[dict[str, Any]]:
    """Per job of a page: its latest version and its last run."""
    rows = []
    for name in names:
        state = jobs.state(name)
        if not state.exists:
            continue
        last = latest_runs(jobs, name, 1)
        rows.append({"name": name, "latest": state.latest, "last": last[0] if last else None})
    return rows


def schedules(om: Any, n: int = 3) -> list[dict[str, Any]]:
    """The bucket's schedules, each with its next ``n`` runs."""
    from omfs.objects.jobs.schedule import next_runs
    from omfs.objects.jobs.schedule_book import list_schedules

    out = []
    for schedule in list_schedules(om.storage, om.bucket):
        try:
            upcoming = next_runs(schedule, None, n)
        except OmfsError:
            upcoming = []
        out.append({"schedule": schedule, "next": upcoming})
    return out


def workers(om: Any, connect: bool) -> tuple[str, list[dict[str, Any]] | None]:
    """The cluster's description, and with ``connect`` its workers when a cluster is there
    to ask (an address, a background cluster, one started); None rather than starting a
    private cluster only to list it."""
    handle = om.cluster
    description = handle.describe()
    there = handle.started or handle.spec is not None or description.startswith("background")
    if not (connect and there):
        return description, None
    try:
        return description, om.runtime.workers()
    except (OmfsError, OSError) as exc:
        return f"{description} ({exc})", None


def serving_series(datasets: Any, hours: float = 24.0) -> dict[str, Any] | None:
    """Requests and median latency per model version over the last ``hours``, binned for a
    plot; None when there is no audit dataset. Requests without a version (failed before
    a model answered) count as ``model@(error)``."""
    if not datasets.exists(AUDIT_DATASET):
        return None
    since = datetime.now(UTC) - timedelta(hours=hours)
    frame = datasets.get(
        AUDIT_DATASET, columns=["time", "model", "version", "latency_ms"], time__gte=since
    )
    if frame.empty:
        return {"series": [], "start": since, "end": datetime.now(UTC), "bins": 0}
    start, end = since, datetime.now(UTC)
    width = (end - start) / _SERIES_BINS
    frame = frame.assign(
        who=[
            f"{m}@{v}"
            for m, v in zip(frame["model"], version_labels(frame["version"]), strict=True)
        ],
        bin=((frame["time"] - start) / width).astype(int).clip(0, _SERIES_BINS - 1),
    )
    series = []
    for who, part in sorted(frame.groupby("who"), key=lambda kv: str(kv[0])):
        grouped = part.groupby("bin")["latency_ms"]
        counts, medians = grouped.size(), grouped.median()
        points = [(int(b), int(counts[b]), _number(medians[b])) for b in counts.index]
        series.append({"name": str(who), "points": points, "total": len(part)})
    return {"series": series, "start": start, "end": end, "bins": _SERIES_BINS}


def version_labels(versions: Any) -> list[str]:
    """``v3`` per audit version, whether stored as integers, nullable integers or floats
    (an integer column with nulls read back by older servers); ``(error)`` for none."""
    import pandas as pd

    numbers = pd.to_numeric(versions, errors="coerce")
    return ["(error)" if pd.isna(v) else f"v{int(v)}" for v in numbers]


def _number(value: Any) -> float:
    """A median latency as a float; 0 when there is none (no latency recorded)."""
    number = float(value)
    return 0.0 if math.isnan(number) else number
