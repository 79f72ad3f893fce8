"""Importing a bundle (``omfs.import_``) with the rules of a sync: history kept, a target
that diverged reported and left unchanged (see :mod:`omfs.ops.bundle` for the checks).

Each object of the bundle is validated as a read validates it (:func:`_validate`), then
fast-forwarded onto the target (:func:`_apply`): payloads and schemas staged and checked
first, then the commits in order with put-if-absent, then the index marker, checkpoints and
hint. An object that fails a check is refused and left as it was; the others are imported,
then :class:`~omfs.errors.IntegrityError` names every refused object.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from omfs.errors import IntegrityError, NotFoundError, OmfsError
from omfs.names import check_bucket
from omfs.objects import lease as _lease
from omfs.objects.log import (
    CHECKPOINT_INTERVAL,
    ObjectLog,
    State,
    VersionRecord,
    _dumps,
    checkpoint_file,
    commit_file,
)
from omfs.objects.log import (
    FORMAT as LOG_FORMAT,
)
from omfs.objects.stores import SIDECAR_STORES
from omfs.ops.bundle_read import Bundle as _Bundle
from omfs.ops.bundle_read import BundleFiles as _BundleFiles
from omfs.ops.bundle_read import Member as _Member
from omfs.ops.bundle_read import Refused as _Refused
from omfs.ops.bundle_read import open_bundle as _open_bundle
from omfs.ops.common import Context, check_context
from omfs.ops.inventory import CHECKPOINT as _CHECKPOINT
from omfs.ops.inventory import COMMIT as _COMMIT
from omfs.ops.inventory import SCHEMA as _SCHEMA
from omfs.ops.reports import ImportReport, ImportRow
from omfs.ops.staging import Staging as _Staging
from omfs.ops.staging import clean_staging
from omfs.ops.staging import put_if_absent as _put_if_absent

# the helpers above are imported under the names they had in bundle.py, so that the bodies
# of the import and its validation read exactly as they did

if TYPE_CHECKING:
    from omfs.objects.versioned import VersionedStore

__all__ = ["ImportReport", "ImportRow", "import_"]

_MAX_SIDECAR = 1 << 20


@dataclass
class _Plan:
    """What one object of the bundle holds, validated as a read validates it (what it needs
    of the target is known once it is replayed on the target's state: see ``_checked``)."""

    source: tuple[str, str, str]
    bucket: str  # the target bucket
    commits: list[int]
    checkpoints: list[int]
    marker: bool
    log: ObjectLog  # the bundle's log of it (errors name its members)
    parsed: dict[int, Any] = field(default_factory=dict)  # seq -> the validated commit
    states: dict[int, State] = field(default_factory=dict)  # seq -> the validated checkpoint
    members: dict[str, _Member] = field(default_factory=dict)  # its members by path
    schema_members: dict[str, _Member] = field(default_factory=dict)  # schema id -> member


def import_(
    path: str | os.PathLike[str],
    target: Context,
    *,
    bucket: str | None = None,
    create_bucket: bool = False,
    dry_run: bool = False,
) -> ImportReport:
    """Import a bundle written by :func:`omfs.export` into ``target`` (a context;
    :func:`omfs.import_` also takes the name of one) with the rules of :func:`omfs.sync`:
    history kept, a target that diverged is reported and left alone.

    ``bucket``: import every object into that bucket (default: each into the bucket it was
    exported from). A target bucket that does not exist in a context that has others is
    refused unless ``create_bucket=True``. Everything is checked before it reaches the
    target (see :mod:`omfs.ops.bundle`); an object that fails is left out and, once the others
    are imported, an IntegrityError names it (its ``report`` attribute holds the report).
    """
    dst = check_context(target, "import")
    where = os.fspath(path)
    bundle = _open_bundle(where)
    targets = _target_buckets(bundle, dst, bucket, create_bucket, where)
    rows: list[ImportRow] = []
    if not dry_run:
        clean_staging(dst.storage)
    with _Staging(dst.storage, enabled=not dry_run) as stage:
        for obj in bundle.objects:
            with _lease.scope():  # a gc lease on the object while it is written, until done
                rows.append(_import_object(bundle, obj, targets[obj], dst, stage, dry_run))
    report: ImportReport = {
        "source": where,
        "target": dst.root,
        "dry_run": dry_run,
        "objects": rows,
        "unchanged": sum(r["action"] == "unchanged" for r in rows),
        "diverged": sum(r["action"] == "diverged" for r in rows),
        "refused": sum(r["action"] == "refused" for r in rows),
        "copied": sum(r["action"] == "copy" for r in rows),
        "bytes": sum(r["bytes"] for r in rows),
    }
    refused = [r for r in rows if r["action"] == "refused"]
    if refused:
        done = len(rows) - len(refused)
        error = IntegrityError(
            f"{len(refused)} object(s) of {where} were refused and left unchanged in the "
            f"target ({done} other(s) imported): "
            + "; ".join(f"{r['bucket']}/{r['store']}/{r['name']}: {r['problem']}" for r in refused)
        )
        error.report = report  # type: ignore[attr-defined]
        raise error
    return report


def _target_buckets(
    bundle: _Bundle, dst: Context, bucket: str | None, create_bucket: bool, where: str
) -> dict[tuple[str, str, str], str]:
    """Each object's target bucket; refuses a missing bucket (unless ``create_bucket``) and
    two objects of the bundle that would land on one name."""
    from omfs.objects.versioned import bucket_problem

    chosen = check_bucket(bucket) if bucket is not None else None
    targets = {obj: chosen or obj[0] for obj in bundle.objects}
    landing: dict[tuple[str, str, str], tuple[str, str, str]] = {}
    for obj, tb in targets.items():
        other = landing.setdefault((tb, obj[1], obj[2]), obj)
        if other != obj:
            raise OmfsError(
                f"Cannot import {where} into bucket {tb!r}: it holds {obj[1]}/{obj[2]} of "
                f"buckets {other[0]!r} and {obj[0]!r}, which would land on one object. Import "
                "without bucket= (each keeps its bucket)."
            )
    if not create_bucket:
        for tb in sorted(set(targets.values())):
            problem = bucket_problem(dst.storage, tb, creating=True)
            if problem:
                named = sorted({o[0] for o in bundle.objects})
                raise NotFoundError(
                    f"Cannot import {where} (objects of bucket(s) {', '.join(named)}): "
                    f"{problem.replace('; writing creates a new bucket', '')}",
                    hint="Pass create_bucket=True to create it, or bucket= to import into another.",
                    cli_hint="Pass --create-bucket to create it, or --bucket to import into "
                    "another.",
                )
    return targets


def _row(obj: tuple[str, str, str], tb: str) -> ImportRow:
    """The report row of one object of the bundle, before it is imported."""
    row: ImportRow = {"bucket": tb, "store": obj[1], "name": obj[2], "bytes": 0, "files": 0}
    if tb != obj[0]:
        row["from_bucket"] = obj[0]
    return row


def _import_object(
    bundle: _Bundle,
    obj: tuple[str, str, str],
    tb: str,
    dst: Context,
    stage: _Staging,
    dry_run: bool,
) -> ImportRow:
    row = _row(obj, tb)
    try:
        plan = _validate(bundle, obj, tb, dst)
        _apply(bundle, plan, dst, stage, dry_run, row)
    except (_Refused, OmfsError) as exc:
        if isinstance(exc, OmfsError) and not isinstance(exc, IntegrityError):
            raise  # the target itself failed (storage down, no access): not the bundle's fault
        row.update(action="refused", problem=" ".join(str(exc).split()))  # type: ignore[call-arg]
    return row


def _validate(bundle: _Bundle, obj: tuple[str, str, str], tb: str, dst: Context) -> _Plan:
    """Parse and validate one object of the bundle as a read would; what it needs."""
    sbucket, kind, name = obj
    store = getattr(dst[tb], kind)
    files = bundle.of(*obj)
    identity = {"store": kind, "bucket": sbucket, "name": name}
    prefix = f"{sbucket}/{kind}/{name}"
    log = ObjectLog(_BundleFiles(bundle), prefix, identity, store.validate_info)  # type: ignore[arg-type]
    commits, checkpoints, schemas = [], [], {}
    for path, member in files.items():
        filename = path.rsplit("/", 1)[-1]
        if match := _COMMIT.fullmatch(filename):
            commits.append(int(match.group(1)))
        elif match := _CHECKPOINT.fullmatch(filename):
            checkpoints.append(int(match.group(1)))
        elif match := _SCHEMA.fullmatch(filename):
            schemas[match.group(1)] = member
    if not commits:
        raise _Refused("the bundle holds no commit of it")
    commits.sort()
    # parsed and validated: IntegrityError naming the member
    parsed = {seq: log.commit_at(seq) for seq in commits}
    states = {
        seq: log.load_parsed(
            log.key(checkpoint_file(seq)),
            lambda d, seq=seq: log.parse_checkpoint(d, seq),  # type: ignore[misc]
        )
        for seq in sorted(checkpoints)
    }
    for schema_id in schemas:
        log.read_schema(schema_id)  # content-addressed: checks its content against its name
    head = log.head()
    if head.seq != commits[-1]:
        raise _Refused(f"commit {head.seq + 1} is missing from the bundle")
    if not log.full(head).exists:
        raise _Refused("the bundle holds it dropped")
    # what it needs of the target is known once it is replayed on the target's state
    return _Plan(
        source=obj,
        bucket=tb,
        commits=commits,
        checkpoints=sorted(checkpoints),
        marker=f"{sbucket}/{kind}/_index/{name.replace('/', '~')}" in files,
        log=log,
        parsed=parsed,
        states=states,
        members=files,
        schema_members=schemas,
    )


def _needed(
    bundle: _Bundle, store: VersionedStore, prefix: str, state: State, files: dict[str, _Member]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every payload a live version reads, with the size and sha256 the log records; the
    manifest's entry for it must agree (the member's bytes are checked as they stream)."""
    expected: dict[str, tuple[int, str | None]] = {}
    sidecars: dict[str, tuple[_Member | None, str]] = {}
    for rec in state.live():
        for filename, size, sha in _recorded(store, state, rec):
            if expected.setdefault(filename, (size, sha)) != (size, sha):
                raise _Refused(f"its log records two sizes or hashes for {filename}")
        if store.kind in SIDECAR_STORES:
            side = _sidecar_of(rec.info["payload"])
            sidecars[side] = (files.get(f"{prefix}/_data/{side}"), rec.info["sha256"])
    payloads: dict[str, tuple[_Member | None, str | None]] = {}
    for filename, (size, sha) in sorted(expected.items()):
        member = files.get(f"{prefix}/_data/{filename}")
        if member is not None and (
            member.size != size or (sha is not None and member.sha256 != sha)
        ):
            raise _Refused(
                f"the member {member.path} of {bundle.where} does not match what the bundle's "
                f"log records for it (size {size:,}"
                + (f", sha256 {sha[:12]}…" if sha else "")
                + f"; the member has {member.size:,} bytes, sha256 {member.sha256[:12]}…)"
            )
        payloads[filename] = (member, sha)
    return payloads, sidecars


def _recorded(
    store: VersionedStore, state: State, rec: VersionRecord
) -> list[tuple[str, int, str | None]]:
    """``(file, size, sha256 or None)`` of each payload version ``rec`` reads, as the
    validated records say (a raw file's record holds its sha256; a part holds one where its
    writer recorded it)."""
    info = rec.info
    if store.kind in SIDECAR_STORES:
        return [(info["payload"], info["size"], info["sha256"])]
    try:
        parts = store._parts_of("", state, rec)  # type: ignore[attr-defined]
    except IntegrityError as exc:
        raise _Refused(str(exc)) from None
    raw = rec.kind == "raw" and len(parts) == 1
    return [
        (p["file"], p["size"], p.get("sha256") or (info.get("sha256") if raw else None))
        for p in parts
    ]


def _sidecar_of(payload: str) -> str:
    """The sidecar's file name of a model payload."""
    return f"{payload.split('.', 1)[0]}.json"


def _apply(
    bundle: _Bundle, plan: _Plan, dst: Context, stage: _Staging, dry_run: bool, row: ImportRow
) -> None:
    """Fast-forward the target to the bundle's history, or report it diverged."""
    sbucket, kind, name = plan.source
    storage = dst.storage
    src_prefix = f"{sbucket}/{kind}/{name}"
    prefix = f"{plan.bucket}/{kind}/{name}"
    have: dict[str, int] = {}
    target_commits: list[int] = []
    for key, size, _ in storage.inventory(prefix):
        rest = key[len(prefix) + 1 :]
        if rest.count("/") == 1 and not rest.rsplit("/", 1)[-1].startswith("."):
            have[rest] = size
            if match := _COMMIT.fullmatch(rest.removeprefix("_log/")):
                target_commits.append(int(match.group(1)))
    marker = f"{plan.bucket}/{kind}/_index/{name.replace('/', '~')}"
    listed = storage.exists(marker)
    tip = max(target_commits, default=0)
    row.update(source_commits=plan.commits[-1], target_commits=tip)  # type: ignore[call-arg]

    def commit_bytes(seq: int, filename: str) -> bytes:
        return _rebucket(bundle.read(f"{src_prefix}/_log/{filename}"), plan.bucket)

    if tip and (tip not in plan.commits or commit_bytes(tip, commit_file(tip)) != (
        storage.read_bytes(f"{prefix}/_log/{commit_file(tip)}")
    )):  # fmt: skip
        row["action"] = "diverged"
        return
    new_commits = [s for s in plan.commits if s > tip]
    # the bundle's commits after the shared tip, replayed on the target's own state there:
    # a head or a checkpoint that contradicts it refuses the object (see ObjectLog.replay)
    final, good = _checked(plan, dst, tip, have)
    store = getattr(dst[plan.bucket], kind)
    needed, needed_sidecars = _needed(bundle, store, src_prefix, final, plan.members)
    needed_schemas = {
        sid: plan.schema_members.get(sid)
        for rec in final.live()
        if isinstance(sid := rec.info.get("schema"), str)
    }
    payloads = {f: v for f, v in needed.items() if f"_data/{f}" not in have}
    sidecars = {f: v for f, v in needed_sidecars.items() if f"_data/{f}" not in have}
    schemas = {s: m for s, m in needed_schemas.items() if f"_log/s-{s}.schema" not in have}
    for filename, (member, _) in {**payloads, **sidecars}.items():
        if member is None:
            raise _Refused(
                f"the payload {filename} is missing from the bundle (the log names it, the "
                "target has no copy)"
            )
    for sid, member in schemas.items():
        if member is None:
            raise _Refused(f"the schema s-{sid}.schema is missing from the bundle")
    newest = plan.commits[-1]
    checkpoints = [s for s in sorted(good) if s > tip or f"_log/{checkpoint_file(s)}" not in have]
    if not (new_commits or payloads or sidecars or schemas or checkpoints or not listed):
        row["action"] = "unchanged"
        return
    row["action"] = "copy"
    row["files"] = len(new_commits) + len(payloads) + len(sidecars) + len(schemas)
    row["bytes"] = sum(m.size for m, _ in payloads.values())
    if dry_run:
        return
    # payloads and schemas first (checked as they stream), then the commits in order, then
    # the index marker: readers see the old history or the new one
    # the object's files are all staged and checked before the first one is placed
    placed = []
    for filename, (member, sha) in sorted(payloads.items()):
        placed.append((stage.stage(bundle, member, sha), f"{prefix}/_data/{filename}"))
    for filename, (member, sha) in sorted(sidecars.items()):
        _check_sidecar(bundle, member, sha)
        placed.append((stage.stage(bundle, member, None), f"{prefix}/_data/{filename}"))
    for sid, member in sorted(schemas.items()):
        assert member is not None  # a missing one was refused above
        placed.append((stage.stage(bundle, member, None), f"{prefix}/_log/s-{sid}.schema"))
    where = f"{kind[:-1]} {name!r} in bucket {plan.bucket!r} of context {storage.url!r}"
    _lease.take(storage, plan.bucket, kind, name, where)  # gc keeps off what it places
    for staged, key in placed:
        _put_if_absent(storage, staged, key)
    # a checkpoint the target holds after its tip was left by a killed restore: never read
    stale = [f"{prefix}/_log/{checkpoint_file(c)}" for c in _checkpoints_of(have) if c > tip]
    if stale:
        storage.delete(stale)
    _lease.check_held(storage, plan.bucket, kind, name)  # else gc may have removed them
    for seq in new_commits:
        try:
            storage.create(f"{prefix}/_log/{commit_file(seq)}", commit_bytes(seq, commit_file(seq)))
        except FileExistsError:
            row["action"] = "diverged"  # another writer committed meanwhile: a prefix landed
            return
    if not listed:
        storage.write_bytes(marker, b"")
    for seq in checkpoints:
        with contextlib.suppress(FileExistsError):
            storage.create(
                f"{prefix}/_log/{checkpoint_file(seq)}", commit_bytes(seq, checkpoint_file(seq))
            )
    hint = {"format": LOG_FORMAT, "store": kind, "bucket": plan.bucket, "name": name,
            "seq": newest, "checkpoint": _hint_checkpoint(final, good, have, tip)}  # fmt: skip
    storage.write_bytes(f"{prefix}/_log/_last.json", _dumps(hint))


def _checked(
    plan: _Plan, dst: Any, tip: int, have: dict[str, int]
) -> tuple[State, dict[int, State]]:
    """The object's complete state after the bundle's commits, replayed on the target's
    state at ``tip`` with every head and checkpoint checked, and the checkpoints to place."""
    from omfs.ops.history import checked_history as _checked_history
    from omfs.ops.history import shared_state as _shared_state

    _, kind, name = plan.source
    target = getattr(dst[plan.bucket], kind).object_log(name)
    listed = _checkpoints_of(have)
    anchor, before = _shared_state(target, tip, listed)
    parsed = {s: c for s, c in plan.parsed.items() if s > tip}
    states = {s: c for s, c in plan.states.items() if s >= tip}
    if tip in states and (tip % CHECKPOINT_INTERVAL or tip in listed):
        del states[tip]  # only a regular checkpoint the target lacks is placed at its tip
    return _checked_history(plan.log, anchor, before, parsed, states, tip)


def _checkpoints_of(have: dict[str, int]) -> list[int]:
    """The checkpoints among the target's files of one object (``_log/...``)."""
    return [
        int(m.group(1))
        for f in have
        if f.startswith("_log/") and (m := _CHECKPOINT.fullmatch(f.removeprefix("_log/")))
    ]


def _hint_checkpoint(final: State, good: dict[int, State], have: dict[str, int], tip: int) -> int:
    """The newest checkpoint the imported log holds: a checked one, or the target's own."""
    own = [c for c in _checkpoints_of(have) if c <= tip]
    usable = [c for c in [*good, *own] if final.base < c <= final.seq]
    return max(usable, default=0)


def _rebucket(data: bytes, bucket: str) -> bytes:
    """A validated log document, naming ``bucket`` (imports into another bucket)."""
    doc = json.loads(data)
    if doc.get("bucket") == bucket:
        return data
    doc["bucket"] = bucket
    return _dumps(doc)


def _check_sidecar(bundle: _Bundle, member: _Member, sha: str) -> None:
    """A model payload's sidecar describes that payload (as fsck checks it)."""
    try:
        doc = json.loads(b"".join(bundle.chunks(member, _MAX_SIDECAR)))
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or doc.get("sha256") != sha:
        raise _Refused(
            f"the member {member.path} of {bundle.where} does not describe its payload (sha256)"
        )
