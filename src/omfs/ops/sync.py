"""Replicating objects between contexts with their whole history: ``omfs.sync``.

A sync copies, for every dataset and model of the chosen buckets, what the target lacks of
the source's commit log and payloads, byte for byte: versions keep their numbers, payload
ids, tags, tag history and lineage, so two contexts that synced hold identical logs for
those objects.

Per object, from one recursive listing of each side's bucket (no read when nothing
changed):

- the target holds nothing of it, or a prefix of the source's log (its newest commit is
  byte-identical to the source's commit of the same number): **fast-forward**. Payloads and
  schemas are copied first, then the index marker, then the missing commits in order, each
  with put-if-absent, then checkpoints and the hint. A reader sees the old history or a
  longer prefix of the new one, never a mix; a killed sync is resumed by the next one
  (payloads and commits that exist are skipped by name, never overwritten).
- the target holds the source's whole log and more (the source's newest commit is the
  target's commit of that number): **behind**. Nothing to copy; the source should pull.
- the target has commits the source lacks, or a different commit at the same number:
  **diverged**. The object is reported (versions on both sides) and left unchanged, and the
  sync raises :class:`~omfs.errors.DivergedError` after the other objects are synced.

Everything listed from the source is validated before it is used: object names by the name
rules, file names against the log's and payloads' own patterns, so a hostile store cannot
make a sync write outside the object's folder. Every commit, checkpoint and hint copied is
validated as a read validates it (:meth:`ObjectLog.parse`), and the payloads are those its
records name, each checked against their size and sha256 as it travels
(:meth:`Storage.copy_verified`); a source that fails either is **refused** for that object,
which then leaves the target as it was. The copied commits must also extend the history
the target holds: they are replayed on the target's state at the shared tip
(:meth:`ObjectLog.replay`), and a head or checkpoint that contradicts the replay, or a
version whose payload neither side holds, refuses the object too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from omfs.errors import DivergedError, IntegrityError, NotFoundError
from omfs.names import check_bucket, look_alike
from omfs.objects import lease as _lease
from omfs.objects.log import CHECKPOINT_INTERVAL, checkpoint_file, commit_file
from omfs.ops.common import Context, SyncError, check_context, lease_target
from omfs.ops.common import store_of as _source_log_store

# imported under the names these functions always had here, so that the bodies of sync and
# _sync_object read exactly as they did
from omfs.ops.history import checked_history as _checked_history
from omfs.ops.history import needed_files as _needed_files
from omfs.ops.history import shared_state as _shared_state
from omfs.ops.history import sync_hint as _hint
from omfs.ops.inventory import ObjectFiles as _Object
from omfs.ops.inventory import expected_files as _expected_files
from omfs.ops.inventory import inventory as _inventory
from omfs.ops.inventory import is_dropped as _dropped
from omfs.ops.inventory import listed_size as _listed_size
from omfs.ops.inventory import same_commit as _same_commit
from omfs.ops.inventory import source_log as _source_log
from omfs.ops.rebase import rebase as _rebase
from omfs.ops.reports import SyncReport, SyncRow
from omfs.ops.reports import diverged as _diverged
from omfs.ops.reports import refused as _refused

if TYPE_CHECKING:
    from omfs.storage import Storage

__all__ = ["SyncError", "SyncReport", "SyncRow", "sync"]


def _resolve(ctx: Any) -> Context:
    """``ctx`` when it is a context (:func:`omfs.sync` resolves names of contexts first)."""
    return check_context(ctx, "sync")


def sync(
    source: Context,
    target: Context,
    *,
    buckets: Sequence[str] | None = None,
    names: Sequence[str] | None = None,
    dry_run: bool = False,
    rebase: bool = False,
    progress: Callable[[int], None] | None = None,
    on_object: Callable[[SyncRow], None] | None = None,
) -> SyncReport:
    """Replicate the datasets, models and jobs of ``source`` to ``target`` with their
    history (and the jobs' runs).

    ``source`` and ``target`` are contexts (``omfs.setup(...)``; :func:`omfs.sync` also
    takes names of contexts in the config file). ``buckets`` limits the buckets (default:
    all of the source's); ``names`` are glob patterns of object names. ``dry_run`` says
    what would be copied. Returns a report (:class:`~omfs.ops.reports.SyncReport`): per
    object the action (``copy``, ``unchanged``, ``diverged``, ``behind``, ``rebased``), the
    versions and the bytes, and totals (``runs``: the job runs copied).

    An object **diverged** (both sides have versions the other lacks) is left unchanged; once
    every other object is synced, :class:`~omfs.errors.DivergedError` is raised carrying the
    report (a dry run only reports it). An object the target holds all of and more is
    **behind**: nothing to copy, and no error. A bucket the source does not have is a
    :class:`~omfs.errors.NotFoundError` naming those it has.

    ``rebase=True``: a diverged object's source-only versions are re-committed on top of the
    target's latest (an append as an append, a put as a new version, with the tags that
    pointed at them); their lineage names the original (``rebased_from``). Then the source
    takes the target's history, so both end equal (an object that is behind just takes it).

    ``progress`` is called with the bytes of payloads as they travel, ``on_object`` with
    each object's report row once the object is done (for progress bars).
    """
    src, dst = _resolve(source), _resolve(target)
    if src.storage == dst.storage:
        raise SyncError(f"source and target are the same context ({src.root}); nothing to sync")
    rows: list[SyncRow] = []
    runs = schedules = 0
    for bucket in _buckets(src, buckets):
        synced = _sync_bucket(src, dst, bucket, names, dry_run, rebase, progress, on_object)
        copied = _sync_runs(src.storage, dst.storage, bucket, synced, dry_run)
        runs, schedules = runs + copied[0], schedules + copied[1]
        rows += synced
    report = SyncReport.of(src.root, dst.root, dry_run, rows)
    report.runs, report.schedules = runs, schedules
    if report.diverged and not dry_run:
        raise _diverged_error(report)
    return report


def _buckets(src: Context, buckets: Sequence[str] | None) -> list[str]:
    """The buckets to sync: ``buckets``, each of which the source must have (a typo is an
    error, as everywhere else), or all of the source's."""
    from omfs.config import DEFAULT_BUCKET
    from omfs.objects.versioned import bucket_names

    existing = bucket_names(src.storage)
    if not buckets:
        return existing
    chosen = [check_bucket(b) for b in buckets]
    unknown = [b for b in chosen if b not in existing and b != DEFAULT_BUCKET]
    if unknown:
        have = ", ".join(existing) if existing else "none yet"
        raise NotFoundError(
            f"bucket {unknown[0]!r} does not exist in the source context {src.root!r} (its "
            f"buckets: {have}); nothing was synced. Check the name."
        )
    return chosen


def _diverged_error(report: SyncReport) -> DivergedError:
    """The error a sync raises when objects diverged (the others were synced)."""
    rows = report.rows("diverged")
    names = ", ".join(
        f"{r.bucket}/{r.store}/{r.name} (source v{r.source_versions}, target v{r.target_versions})"
        for r in rows
    )
    return DivergedError(
        f"{len(rows)} object(s) diverged and were left unchanged (the others were synced): "
        f"{names}.",
        hint="Pass rebase=True to re-commit the source's versions on top of the target's.",
        cli_hint="Pass --rebase to re-commit them on top of the other side's versions.",
        report=report,
    )


def _sync_bucket(
    src: Context, dst: Context, bucket: str, names: Sequence[str] | None, dry_run: bool,
    rebase: bool, progress: Callable[[int], None] | None,
    on_object: Callable[[SyncRow], None] | None,
) -> list[SyncRow]:  # fmt: skip
    """Sync the objects of one bucket whose names match ``names``; their rows."""
    import fnmatch

    rows: list[SyncRow] = []
    have = _inventory(src.storage, bucket)
    want = _inventory(dst.storage, bucket)
    if not dry_run:  # a rebase killed while a side switched its history: finish it first
        if _finish_adoptions(src, bucket, have):
            have = _inventory(src.storage, bucket)
        if _finish_adoptions(dst, bucket, want):
            want = _inventory(dst.storage, bucket)
    for (store, name), obj in sorted(have.items()):
        if names and not any(fnmatch.fnmatchcase(name, p) for p in names):
            continue
        theirs = want.get((store, name), _Object())
        if not obj.listed or not obj.commits:
            # a write that never committed: nothing to replicate; a drop: said so
            if obj.commits and theirs.listed and _dropped(src.storage, bucket, store, name):
                rows.append(_dropped_row(src, dst, bucket, store, name, "source"))
            continue
        other = None if theirs.commits else _look_alike_in(want, store, name)
        if other is not None:
            rows.append(_look_alike_row(bucket, store, name, other))
            continue
        with _lease.scope():  # gc leases taken while the object is written, until done
            row = _sync_object(
                src.storage, dst.storage, bucket, store, name, obj, theirs, dry_run, progress
            )
            if row.action == "dropped":
                row = _dropped_row(src, dst, bucket, store, name, "target")
            elif rebase and row.action in ("diverged", "behind"):
                row = _rebase(src, dst, bucket, store, name, obj, theirs, row, dry_run)
            elif row.action in ("unchanged", "copy"):
                row = _repair(src.storage, dst.storage, name, obj, theirs, row, dry_run,
                              progress)  # fmt: skip
        rows.append(row)
        if on_object is not None:
            on_object(row)
    return rows


def _sync_runs(
    src: Storage, dst: Storage, bucket: str, rows: list[SyncRow], dry_run: bool
) -> tuple[int, int]:
    """The runs and schedules of the jobs of ``bucket`` that synced (copied, unchanged or
    rebased) travel with them (:mod:`omfs.ops.runs`): how many of each were copied."""
    from omfs.ops.runs import sync_runs, sync_schedules

    synced = {"copy", "unchanged", "rebased"}
    jobs = {r.name for r in rows if r.bucket == bucket and r.store == "jobs" and r.action in synced}
    return sync_runs(src, dst, bucket, jobs, dry_run), sync_schedules(
        src, dst, bucket, jobs, dry_run
    )


def _look_alike_in(want: dict[tuple[str, str], _Object], store: str, name: str) -> str | None:
    """An object of the target's store whose name looks like ``name`` (``Report`` beside
    ``report``, a Cyrillic a): sync refuses to bring such a name in, as ``put`` does."""
    return look_alike(name, [n for (s, n), o in want.items() if s == store and o.listed])


def _look_alike_row(bucket: str, store: str, name: str, other: str) -> SyncRow:
    return _refused(
        SyncRow(bucket, store, name),
        f"the target has {store[:-1]} {other!r}, whose name looks like it (on a "
        "case-insensitive disk, or to a person, they are one); rename one of them "
        f"(put it again under another name and drop the old one) before syncing",
    )


def _dropped_row(
    src: Context,
    dst: Context,
    bucket: str,
    store: str,
    name: str,
    where: Literal["source", "target"],
) -> SyncRow:
    """The report of an object dropped on one side and kept on the other: left unchanged,
    with the two ways to make the sides agree."""
    dropped, other = (dst, src) if where == "target" else (src, dst)
    message = (
        f"{bucket}/{store}/{name} was dropped in the {where} ({dropped.root}) and is left "
        f"as it is: `om --root {dropped.root} --bucket {bucket} {store} restore {name}` brings "
        f"it back there, or `om --root {other.root} --bucket {bucket} {store} drop {name}` "
        "drops it on the other side too"
    )
    return SyncRow(bucket, store, name, action="dropped", where=where, message=message)


def _finish_adoptions(ctx: Context, bucket: str, objects: dict[tuple[str, str], _Object]) -> bool:
    """Finish every switch of history a killed rebase left in ``bucket``; True if any."""
    todo = [(store, name) for (store, name), obj in objects.items() if obj.adopting]
    for store, name in todo:
        getattr(ctx[bucket], store).finish_adopt(name)
    return bool(todo)


def _repair(
    src: Storage, dst: Storage, name: str, have: _Object, want: _Object, row: SyncRow,
    dry_run: bool, progress: Callable[[int], None] | None,
) -> SyncRow:  # fmt: skip
    """Copy the payloads and schemas that the target's log names but the target lacks
    while the source has them (a file deleted in the target, say by a gc that raced an
    older sync), each checked against the size and sha256 the target's validated log
    records. It only adds a missing file, never overwrites one; the listings tell whether
    it is needed, so a target that lacks nothing costs no request."""
    bucket, store = row.bucket, row.store
    prefix = f"{bucket}/{store}/{name}"
    lacking = {f"_data/{f}" for f in have.data if f not in want.data}
    lacking |= {f"_log/{f}" for f in have.schemas if f not in want.schemas}
    if not lacking or not want.commits:  # an object new to the target came whole
        return row
    if row.action == "copy" and not dry_run:  # what the copy just added is not lacking
        lacking -= {key[len(prefix) + 1 :] for key, *_ in dst.inventory(prefix)}
        if not lacking:
            return row
    target = _source_log_store(dst, bucket, store)
    try:
        state = target.state(name, full=True, reader=False)
    except (IntegrityError, OSError):
        return row  # a target whose log cannot be read: fsck says why; nothing to add to
    needed = {f"_data/{f}" for rec in state.live() for f in target.version_files(state, rec)}
    records = list(state.records.values())
    expected = _expected_files(prefix, store, records)
    files = [
        e for key, e in expected.items()
        if (rel := key[len(prefix) + 1 :]) in lacking
        and (rel.startswith("_log/") or rel in needed)
    ]  # fmt: skip
    if not files:
        return row
    repaired = sorted(e.key.rsplit("/", 1)[-1] for e in files)
    if dry_run:
        row.action, row.repaired, row.files = "copy", repaired, row.files + len(files)
        return row
    lease_target(dst, bucket, store, name)
    refused = src.copy_verified(files, dst, progress)
    if refused:
        return _refused(row, "; ".join(refused.values()))
    row.action, row.repaired, row.files = "copy", repaired, row.files + len(files)
    row.bytes += sum(_listed_size(have, e.key) for e in files)
    return row


def _sync_object(
    src: Storage,
    dst: Storage,
    bucket: str,
    store: str,
    name: str,
    have: _Object,
    want: _Object,
    dry_run: bool,
    progress: Callable[[int], None] | None,
) -> SyncRow:
    prefix = f"{bucket}/{store}/{name}"
    row = SyncRow(bucket, store, name, source_commits=have.seq, target_commits=want.seq)
    if want.commits and not want.listed and _dropped(dst, bucket, store, name):
        if len(want.commits) > 1:  # its history is still there: restore() can bring it back
            row.action = "dropped"
            return row
        if not dry_run:  # gc collected all but the tombstone: the source's comes as new
            tombstone = f"{prefix}/_log/{want.seq:020d}.json"
            dst.delete([tombstone, f"{prefix}/_log/_last.json"])
        want = _Object()
    tip = want.seq
    common = (
        tip in have.commits
        and _same_commit(
            src, dst, f"{prefix}/_log/{tip:020d}.json", have.commits[tip], want.commits[tip]
        )
        if tip
        else True
    )
    if tip > have.seq and _same_commit(
        src, dst, f"{prefix}/_log/{have.seq:020d}.json", have.commits[have.seq],
        want.commits.get(have.seq, (-1, None)),
    ):  # fmt: skip
        return _diverged(row, src, dst, "behind")  # the target holds all this and more
    if tip > have.seq or not common:
        return _diverged(row, src, dst)
    new_commits = sorted(s for s in have.commits if s > tip)
    # the checkpoints after the shared tip (and one at the tip the target lacks): each is
    # checked against the replay of the commits before it is copied
    checkpoints = sorted(
        s for s in have.checkpoints
        if s > tip or (s == tip and s % CHECKPOINT_INTERVAL == 0 and s not in want.checkpoints)
    )  # fmt: skip
    missing_hint = have.hint and not want.hint
    if not (new_commits or checkpoints or missing_hint or not want.listed):
        row.action = "unchanged"
        return row
    row.action = "copy"
    clash = _clash(src, dst, prefix, have, want)
    if clash is not None:
        return _refused(row, clash)
    if dry_run:  # an estimate from the listings alone (no read)
        data = [f for f in have.data if f not in want.data]
        row.files = len(data) + len(new_commits) + len(checkpoints) + missing_hint
        row.bytes = sum(have.data[f] for f in data) + sum(have.commits[s][0] for s in new_commits)
        return row
    lease_target(dst, bucket, store, name)  # gc keeps off what it copies until it commits
    # everything copied is read and validated as a read of the source would validate it,
    # and replayed on the target's own state at the shared tip, before the first byte
    # reaches the target
    log = _source_log(src, bucket, store, name)
    try:
        commits = {s: src.read_bytes(f"{prefix}/_log/{commit_file(s)}") for s in new_commits}
        parsed = {s: log.parse(commit_file(s), data) for s, data in commits.items()}
        cps = {s: src.read_bytes(f"{prefix}/_log/{checkpoint_file(s)}") for s in checkpoints}
        states = {s: log.parse(checkpoint_file(s), data) for s, data in cps.items()}
        target = _source_log(dst, bucket, store, name)
        anchor, before = _shared_state(target, tip, want.checkpoints)
        final, good = _checked_history(log, anchor, before, parsed, states, tip)
    except (IntegrityError, FileNotFoundError) as exc:
        return _refused(row, str(exc))
    cps = {s: data for s, data in cps.items() if s in good}
    kind = _source_log_store(dst, bucket, store)
    try:
        files = _needed_files(kind, prefix, final, anchor, have, want, src)
    except IntegrityError as exc:
        return _refused(row, str(exc))
    hint = _hint(log, final, sorted(set(cps) | {c for c in want.checkpoints if c <= tip}))
    refused = src.copy_verified(files, dst, progress)
    if refused:
        return _refused(row, "; ".join(refused.values()))
    row.files = len(files) + len(commits) + len(cps) + 1
    row.bytes = sum(_listed_size(have, e.key) for e in files) + sum(
        len(c) for c in commits.values()
    )
    _lease.check_held(dst, bucket, store, name)  # else gc may have removed what it copied
    # checkpoints before the commits whose heads name them (a restore's head names its own,
    # and its log cannot be replayed without it); unnamed, a checkpoint is never read
    # a checkpoint the target holds after its tip was left by a killed restore: never read
    # in place of the checked one (overwritten, or removed when the source has none there)
    stale = [s for s in want.checkpoints if s > tip]
    if stale:
        dst.delete([f"{prefix}/_log/{checkpoint_file(s)}" for s in stale])
    for seq, checkpoint in cps.items():
        with contextlib.suppress(FileExistsError):
            dst.create(f"{prefix}/_log/{checkpoint_file(seq)}", checkpoint)
    for seq, commit in commits.items():
        try:
            dst.create(f"{prefix}/_log/{commit_file(seq)}", commit)
        except FileExistsError:
            # another writer committed to the target meanwhile: stop here, a prefix landed
            return _diverged(row, src, dst)
        if progress:
            progress(len(commit))
    if not want.listed:
        # an object new to the target appears with its whole history or not at all: as
        # for a first put, the index marker comes after the commits (until then the log
        # reads as a write that never finished, and the next sync completes it)
        dst.write_bytes(f"{bucket}/{store}/_index/{name.replace('/', '~')}", b"")
    dst.write_bytes(f"{prefix}/_log/_last.json", hint)
    return row


def _clash(src: Storage, dst: Storage, prefix: str, have: _Object, want: _Object) -> str | None:
    """Why the listings show a damaged payload: a file of one name, so of one content, with
    another size on each side (None: no such file). Told by the listings, no request."""
    for folder, mine, theirs in (
        ("_data", have.data, want.data),
        ("_log", have.schemas, want.schemas),
    ):
        for filename, size in sorted(mine.items()):
            if filename in theirs and theirs[filename] != size:
                key = f"{prefix}/{folder}/{filename}"
                return (
                    f"{src.path(key)} has {size} bytes but the target's {dst.path(key)} has "
                    f"{theirs[filename]}: a name identifies its content, so one of them is "
                    "damaged (the target's copy was kept; run 'om fsck' on both)"
                )
    return None
