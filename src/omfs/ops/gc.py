"""Garbage collection: remove what no live version references, after a grace period.

What a crashed or interrupted write leaves behind is never read, but it takes space: payload
files that were written and never committed, temporary files of commits, index markers of
objects that never got a version, and the remains of dropped versions and objects. ``gc``
finds them from the commit logs (one recursive listing per store) and deletes those older
than the grace period.

A write still in progress is never hurt, however long it runs: writers hold a lease on the
object they write, and gc leaves every file of an object with a live lease alone (see
:mod:`omfs.objects.lease` for the protocol and why no interleaving loses a payload). Ages are
measured on the storage's own clock (file modification times against the time of a file
gc writes), never on the client's. The grace cannot be set below :data:`GRACE_FLOOR`
(10 minutes) unless forced: it still protects writers of omfs versions without leases.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from omfs.errors import IntegrityError, UsageError
from omfs.objects.layout import COLLECT_OP, commit_file
from omfs.objects.lease import GRACE_FLOOR, LEASE_TTL, lease_folder, lease_owner, lease_stem
from omfs.objects.log import CHECKPOINT_INTERVAL, State
from omfs.objects.records import Commit
from omfs.objects.versioned import ADOPT_FILE, VersionedStore, parse_duration
from omfs.ops.common import Context
from omfs.ops.reports import GcFile, GcReport, GcSkip
from omfs.ops.staging import clean_staging

__all__ = ["GcReport", "collect_garbage"]

_KEEP_CHECKPOINTS = 2


def check_grace(grace: Any, force: bool) -> float:
    """The grace period in seconds; below the floor only with ``force``."""
    seconds = parse_duration(grace).total_seconds()
    if seconds < GRACE_FLOOR and not force:
        raise UsageError(
            f"A gc grace of {grace!r} is below the floor of {GRACE_FLOOR / 60:g} minutes "
            "(10min), which protects writes of omfs versions without gc leases. Use a "
            "longer grace, or force it (force=True, 'om gc --force') when no such writer "
            "can be running."
        )
    return seconds


def collect_garbage(
    omega: Context,
    *,
    buckets: list[str] | None = None,
    grace: Any = "1h",
    dry_run: bool = False,
    force: bool = False,
) -> GcReport:
    """Delete unreferenced files older than ``grace`` in ``buckets`` (default: all).

    A grace below 10 minutes is refused unless ``force=True``. Objects with a write in
    progress, in the omfs 0.1 layout, or whose log cannot be read are left alone and
    listed in ``skipped`` with why. Returns ``{"files": [{"bucket", "store", "key",
    "bytes", "why"}], "bytes": total, "dry_run": bool, "skipped": [{"bucket", "store",
    "name", "why"}]}``; with ``dry_run=True`` nothing is deleted.
    """
    window = check_grace(grace, force)
    now = omega.storage.now()  # the storage's clock: the client's may be off
    found: list[GcFile] = []
    skipped: list[GcSkip] = []
    chosen = buckets if buckets is not None else omega.buckets
    for bucket in chosen:
        # jobs' run records (jobs/_runs/) are history, not garbage: no object owns them
        for store in (omega[bucket].datasets, omega[bucket].models, omega[bucket].jobs):
            _collect_store(store, now, now - window, found, skipped, dry_run)
    if not dry_run:
        for owner, keys in _by_store(omega, found):
            owner.storage.delete(keys)
        clean_staging(omega.storage, older_than=now - window)  # what killed imports left
    return {
        "files": found,
        "bytes": sum(f["bytes"] for f in found),
        "dry_run": dry_run,
        "skipped": skipped,
    }


def _by_store(omega: Context, found: list[GcFile]) -> list[tuple[VersionedStore, list[str]]]:
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for f in found:
        groups[(f["bucket"], f["store"])].append(f["key"])
    return [(getattr(omega[b], s), keys) for (b, s), keys in groups.items()]


def _leased(store: VersionedStore, now: float, cutoff: float, drop: Any) -> set[str]:
    """The :func:`~omfs.objects.lease.lease_stem` of each name with a live lease (listed
    after the files: see :mod:`omfs.objects.lease`); dead leases old enough are removed."""
    live: set[str] = set()
    for key, size, modified in store.storage.walk(lease_folder(store.bucket, store.kind)):
        filename = key.rsplit("/", 1)[-1]
        if modified > now - LEASE_TTL:
            live.add(lease_owner(filename))
        elif modified <= cutoff:
            drop(key, size, "lease of a writer that stopped")
    return live


def _collect_store(
    store: VersionedStore,
    now: float,
    cutoff: float,
    found: list[GcFile],
    skipped: list[GcSkip],
    dry_run: bool,
) -> None:
    top = f"{store.bucket}/{store.kind}/"
    objects: dict[str, list[tuple[str, str, int, float]]] = defaultdict(list)
    markers: dict[str, tuple[str, int, float]] = {}
    for key, size, modified in store.storage.walk(top.rstrip("/")):
        rest = key[len(top) :]
        if rest.startswith("_index/"):
            markers[rest[len("_index/") :]] = (key, size, modified)
            continue
        for folder in ("/_data/", "/_log/", "/_versions/"):
            name, sep, filename = rest.partition(folder)
            if sep and "/" not in filename:
                objects[name].append((folder.strip("/"), filename, size, modified))
                break

    def drop(key: str, size: int, why: str) -> None:
        found.append(
            {"bucket": store.bucket, "store": store.kind, "key": key, "bytes": size, "why": why}
        )

    def skip(name: str, why: str) -> None:
        skipped.append({"bucket": store.bucket, "store": store.kind, "name": name, "why": why})

    leased = _leased(store, now, cutoff, drop)
    for name, files in objects.items():
        if lease_stem(name) in leased:
            skip(name, "a write is in progress (it holds a gc lease)")
            continue
        quiet = all(modified <= cutoff for *_, modified in files)
        if any(folder == "_log" and f == ADOPT_FILE for folder, f, *_ in files):
            skip(name, "a rebase is switching its history; the next sync finishes it")
            continue
        try:
            state = store.state(name, full=True, reader=False)
            if any(folder == "_versions" for folder, *_ in files):
                skip(
                    name,
                    "it is in the format-1 layout; run 'om upgrade' first"
                    if state.legacy
                    else "its upgrade was interrupted; run 'om upgrade' to finish it",
                )
                continue
            if state.exists and not store.is_listed(name):
                if not quiet:
                    skip(name, "a first write or a drop may be in flight (files younger "
                         "than the grace)")  # fmt: skip
                    continue
                # a first write or a drop killed before it was listed / after it was hidden
                if dry_run:
                    state = State(seq=state.seq + 1, deleted=True, base=state.seq + 1)
                else:
                    state = store.bury(name, state)
        except (IntegrityError, ValueError) as exc:
            skip(name, str(exc))
            continue
        if _dropped_within_grace(state, files, cutoff):
            continue  # a drop keeps the whole history for restore() for the grace period
        if state.deleted and _restorable(files, state) and not dry_run:
            claimed = _claim(store, name, state)
            if claimed is None:
                skip(name, "it was restored or written while gc ran")
                continue
            state = claimed
        _garbage(store, name, state, files, cutoff, drop)
    for marker, (key, size, modified) in markers.items():
        if modified > cutoff:
            continue
        if marker.startswith("."):
            drop(key, size, "temporary file")
            continue
        name = marker.replace("~", "/")
        if lease_stem(name) in leased:
            continue
        try:
            state = store.state(name)
        except (IntegrityError, ValueError):
            continue
        if not state.exists and not state.legacy:
            drop(key, size, "index marker of an object with no version")


def _garbage(
    store: VersionedStore,
    name: str,
    state: State,
    files: list[tuple[str, str, int, float]],
    cutoff: float,
    drop: Any,
) -> None:
    """Drop the files of ``name`` older than the cutoff that ``state`` does not need."""
    keep_data, keep_log = _referenced(store, name, state)
    prefix = f"{store.bucket}/{store.kind}/{name}"
    for folder, filename, size, modified in files:
        if modified > cutoff:
            continue
        keep = keep_data if folder == "_data" else keep_log
        if filename not in keep:
            why = "payload no live version uses" if folder == "_data" else "superseded log file"
            if filename.startswith("."):
                why = "temporary file"
            drop(f"{prefix}/{folder}/{filename}", size, why)


def _restorable(files: list[tuple[str, str, int, float]], state: State) -> bool:
    """True while a dropped object keeps more than its tombstone: what restore() reads
    (the commit before the drop, the payloads)."""
    before = commit_file(state.seq - 1)
    return any(folder == "_data" or (folder == "_log" and f == before) for folder, f, *_ in files)


def _claim(store: VersionedStore, name: str, state: State) -> State | None:
    """Commit gc's own tombstone on a dropped object before deleting its files, so that a
    restore that took its lease after gc listed the leases loses its commit (one of the two
    wins the next commit). None when another commit came first (a restore, a new write):
    then nothing of the object is deleted."""
    try:
        return store.object_log(name).try_commit(state, Commit(op=COLLECT_OP, delete=True))
    except FileExistsError:
        return None


def _dropped_within_grace(
    state: State, files: list[tuple[str, str, int, float]], cutoff: float
) -> bool:
    """True for an object whose drop (its tombstone, the last commit) is younger than the
    grace period: its payloads and log stay, so that ``restore()`` can bring it back."""
    from omfs.objects.log import commit_file

    if not state.deleted:
        return False
    tombstone = commit_file(state.seq)
    return any(
        folder == "_log" and f == tombstone and modified > cutoff
        for folder, f, _, modified in files
    )


def _referenced(store: VersionedStore, name: str, state: State) -> tuple[set[str], set[str]]:
    """The ``_data/`` and ``_log/`` file names that ``state`` still needs."""
    from omfs.objects.log import checkpoint_file, commit_file

    data: set[str] = set()
    schemas: set[str] = set()
    for rec in state.live() if state.exists else []:
        data.update(store.version_files(state, rec))
        schema = rec.info.get("schema")
        if isinstance(schema, str):
            schemas.add(f"s-{schema}.schema")
    log = {"_last.json", *schemas}
    log.update(commit_file(s) for s in range(max(state.base, 1), state.seq + 1))
    if state.base < state.checkpoint <= state.seq:
        log.add(checkpoint_file(state.checkpoint))  # the one the head names (after a restore)
    newest = state.seq - state.seq % CHECKPOINT_INTERVAL
    for i in range(_KEEP_CHECKPOINTS):
        seq = newest - i * CHECKPOINT_INTERVAL
        if seq > state.base:
            log.add(checkpoint_file(seq))
    if state.deleted and not state.records:
        log = {"_last.json", commit_file(state.seq)}  # the tombstone, until a new version
    return data, log
