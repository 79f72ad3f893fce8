"""Promotion: copy one version of a dataset or model to another bucket or context.

The target gets a new version whose ``lineage`` records where it came from. Payload files
are copied first under fresh names (server-side within one filesystem, streamed in chunks
across filesystems), then the target's version is committed atomically, so the target never
shows a half-promoted object and a failure leaves it as it was.

Conditions are callables ``condition(meta, source, target, target_name)`` that raise
ConditionFailedError (or return a message string) to refuse; omfs ships ``"fitted"`` and
``"schema-matches"`` (see :data:`CONDITIONS`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NotRequired, TypedDict, overload

from omfs import config
from omfs.errors import (
    ConditionFailedError,
    PromotionError,
)
from omfs.names import check_bucket, check_name
from omfs.objects.conditions import (
    CONDITIONS,
    Condition,
    model_is_fitted,
    schema_matches_target,
)
from omfs.objects.conditions import conditions_of as _conditions
from omfs.objects.log import Commit, State, TagMove, VersionRecord
from omfs.objects.metadata import Metadata, utcnow
from omfs.objects.stores import store_of
from omfs.objects.versioned import VersionedStore
from omfs.storage import Storage, unique_name

__all__ = [
    "CONDITIONS",
    "PromotePlan",
    "PromoteSide",
    "model_is_fitted",
    "promote",
    "schema_matches_target",
    "target_store",
]

_Input = tuple[str, str, int]  # a trained_on dataset version: (bucket, name, version)


class PromoteSide(TypedDict, total=False):
    """One side of a promotion plan (the unchanged plan names only name and version)."""

    context: str
    bucket: str
    name: str
    version: int


class PromotePlan(TypedDict):
    """What ``promote(..., dry_run=True)`` returns: what would be copied."""

    source: PromoteSide
    target: PromoteSide
    files: int
    bytes: int
    server_side: NotRequired[bool]
    conditions: NotRequired[list[str]]
    tags: NotRequired[list[str]]  # the source version's tags, which travel with the copy
    inputs: NotRequired[list[PromotePlan]]  # with_inputs: the datasets' own plans
    unchanged: NotRequired[bool]  # the target already holds this version


@dataclass(frozen=True)
class _Job:
    """One promotion: the source version selected, and the store and name it goes to."""

    source: VersionedStore
    target: VersionedStore
    source_name: str
    rec: VersionRecord
    state: State
    meta: Metadata
    target_name: str


@overload
def promote(
    source: VersionedStore,
    name: str,
    target: VersionedStore | str,
    *,
    asname: str | None = ...,
    conditions: Sequence[str | Condition] | None = ...,
    dry_run: Literal[False] = ...,
    progress: Callable[[int], None] | None = ...,
    create_bucket: bool = ...,
    force: bool = ...,
    with_inputs: bool = ...,
) -> Metadata: ...


@overload
def promote(
    source: VersionedStore,
    name: str,
    target: VersionedStore | str,
    *,
    asname: str | None = ...,
    conditions: Sequence[str | Condition] | None = ...,
    dry_run: Literal[True],
    progress: Callable[[int], None] | None = ...,
    create_bucket: bool = ...,
    force: bool = ...,
    with_inputs: bool = ...,
) -> PromotePlan: ...


@overload
def promote(
    source: VersionedStore,
    name: str,
    target: VersionedStore | str,
    *,
    asname: str | None = ...,
    conditions: Sequence[str | Condition] | None = ...,
    dry_run: bool,
    progress: Callable[[int], None] | None = ...,
    create_bucket: bool = ...,
    force: bool = ...,
    with_inputs: bool = ...,
) -> Metadata | PromotePlan: ...


def promote(
    source: VersionedStore,
    name: str,
    target: VersionedStore | str,
    *,
    asname: str | None = None,
    conditions: Sequence[str | Condition] | None = None,
    dry_run: bool = False,
    progress: Callable[[int], None] | None = None,
    create_bucket: bool = True,
    force: bool = False,
    with_inputs: bool = False,
) -> Metadata | PromotePlan:
    """Copy ``name`` (or ``name@v3``) from ``source`` to ``target`` as a new version.

    Returns the target's new Metadata, or with ``dry_run=True`` a dict saying what would be
    copied (:class:`PromotePlan`; nothing is written). The Metadata
    returned has an ``unchanged`` attribute: True when the target already held this version
    (promoted from the same source version, same sha256), which then is not copied again
    unless ``force=True``. A target bucket that does not exist yet is created, as ``put``
    creates it (``om_dev.datasets.promote("sales", om["prod"].datasets)`` into a fresh
    ``prod``); ``create_bucket=False`` refuses it instead when the context has other
    buckets (the typo guard of ``om ... promote --to-bucket``, which ``--create-bucket``
    lifts). ``target`` may name a context of the config file (``"prod"``,
    ``"prod:bucket"``).

    ``with_inputs=True`` (models) first promotes the exact dataset versions the model's
    lineage names (``trained_on``) into the target's bucket, and the promoted model's
    ``trained_on`` points at those copies; if anything fails, the dataset versions this
    call created are dropped again, so the target is left as it was.
    """
    job = _prepare(source, name, target, asname, create_bucket)
    existing = None if force else _already_promoted(job)
    if existing is not None:
        return _unchanged_plan(job, existing) if dry_run else _answer(existing, unchanged=True)
    labels = _check_conditions(job, conditions)
    inputs = _inputs(job, with_inputs)
    info, sizes = source.export_version(job.source_name, job.rec, job.state)
    if dry_run:
        return _plan(job, sizes, labels, inputs, force)
    return _answer(_copy(job, info, sizes, inputs, force, progress), unchanged=False)


def _answer(meta: Metadata, *, unchanged: bool) -> Metadata:
    """``meta`` with the ``unchanged`` attribute :func:`promote` documents. It is not a
    field of Metadata (whose fields are what storage holds and ``to_dict()`` prints): it
    says what this call did, and is set here only."""
    meta.unchanged = unchanged  # type: ignore[attr-defined]
    return meta


def _prepare(
    source: VersionedStore,
    name: str,
    target: VersionedStore | str,
    asname: str | None,
    create_bucket: bool,
) -> _Job:
    """Select the source version and check where it goes: the same kind of store, not onto
    itself, a bucket that exists (or ``create_bucket``)."""
    if isinstance(target, str):
        target = _named_target(source, target)
    if type(source) is not type(target):
        raise PromotionError(
            f"Cannot promote from {source.kind} to {target.kind}: promote a dataset to "
            "another datasets store and a model to another models store"
        )
    source_name, rec, state = source.select(name, full=True)
    meta = source.metadata_for(source_name, rec, state.tags)
    target_name = check_name(asname) if asname is not None else meta.name
    if source == target and target_name == meta.name:
        raise PromotionError(
            f"Cannot promote {source.noun.lower()} {meta.name!r} onto itself (same bucket "
            f"{source.bucket!r} of context {source.storage.url!r}). Promote to another bucket "
            "or context, or pass asname= for a copy under another name."
        )
    problem = target.bucket_problem(creating=True)
    if problem and not create_bucket:
        raise PromotionError(
            f"Cannot promote {meta.name!r} v{meta.version}: "
            f"{problem.replace('; writing creates a new bucket', '')}",
            hint="Pass create_bucket=True to create it.",
            cli_hint="Pass --create-bucket to create it.",
        )
    return _Job(source, target, source_name, rec, state, meta, target_name)


def _check_conditions(job: _Job, conditions: Sequence[str | Condition] | None) -> list[str]:
    """Run the conditions (ConditionFailedError naming the one that refuses); their labels."""
    checks = _conditions(conditions)
    meta = job.meta
    for label, cond in checks:
        try:
            problem = cond(meta, job.source, job.target, job.target_name)
        except ConditionFailedError as exc:
            problem = str(exc)
        if problem:
            raise ConditionFailedError(
                f"Promotion of {meta.name!r} v{meta.version} refused by condition "
                f"{label!r}: {problem}"
            )
    return [label for label, _ in checks]


def _inputs(job: _Job, with_inputs: bool) -> list[tuple[dict[str, Any], _Input]]:
    """The ``trained_on`` datasets a ``with_inputs`` promotion of a model takes along."""
    if not with_inputs:
        return []
    if job.source.kind != "models":
        raise PromotionError("with_inputs= applies to models (their trained_on datasets)")
    return _inputs_of(job.meta, job.source)


def _unchanged_plan(job: _Job, existing: Metadata) -> PromotePlan:
    """The dry run of a promotion the target already holds: nothing to copy."""
    return {
        "source": {"name": job.meta.name, "version": job.meta.version},
        "target": {"name": job.target_name, "version": existing.version},
        "files": 0,
        "bytes": 0,
        "unchanged": True,
    }


def _plan(
    job: _Job,
    sizes: dict[str, int],
    labels: list[str],
    inputs: list[tuple[dict[str, Any], _Input]],
    force: bool,
) -> PromotePlan:
    """What a promotion would copy (a dry run writes nothing), its inputs' plans included."""
    source, target, meta = job.source, job.target, job.meta
    plan: PromotePlan = {
        "source": {
            "context": source.storage.url,
            "bucket": source.bucket,
            "name": meta.name,
            "version": meta.version,
        },
        "target": {
            "context": target.storage.url,
            "bucket": target.bucket,
            "name": job.target_name,
            "version": target.state(job.target_name).next_version,
        },
        "files": len(sizes),
        "bytes": sum(sizes.values()),
        "server_side": source.storage.same_filesystem(target.storage),
        "conditions": labels,
        "tags": _travelling_tags(job),
    }
    if inputs:
        plan["inputs"] = [
            promote(src, f"{n}@v{v}", target_ds, dry_run=True, create_bucket=True, force=force)
            for src, n, v, target_ds in _input_stores(inputs, source, target)
        ]
        plan["bytes"] += sum(p["bytes"] for p in plan["inputs"])
    return plan


def _copy(
    job: _Job,
    info: dict[str, Any],
    sizes: dict[str, int],
    inputs: list[tuple[dict[str, Any], _Input]],
    force: bool,
    progress: Callable[[int], None] | None,
) -> Metadata:
    """Copy the payload files under fresh names (the inputs first), then commit the new
    version; on any failure, remove what was written and drop the inputs created."""
    source, target, meta, name = job.source, job.target, job.meta, job.target_name
    with target.lease(name):  # gc keeps off the copied files until the commit
        renamed = {f: unique_name(os.path.splitext(f)[1]) for f in sizes}
        dst_keys = [target.data_key(name, renamed[f]) for f in sizes]
        written = list(dst_keys)
        created: list[tuple[VersionedStore, Metadata, bool]] = []  # (store, copy, new object?)
        try:
            promoted = _copy_inputs(inputs, source, target, force, created)
            source.storage.copy(
                [source.data_key(meta.name, f) for f in sizes], target.storage, dst_keys, progress
            )
            new_info = target.import_info(name, meta.kind, info, renamed, meta.created)
            own = VersionRecord(0, "", meta.kind, "promote", info=new_info)
            written += [target.data_key(name, f) for f in target.own_files(own)]
            lineage = _lineage(meta, source)
            if inputs:
                lineage["trained_on"] = _trained_on(inputs, target, promoted)
            state = target.commit(name, _change(job, lineage, new_info), retry=True)
            return target.metadata_for(name, state.latest_record(), state.tags)
        except BaseException:
            target.storage.delete(written)
            for store, copy, new_object in reversed(created):
                with contextlib.suppress(Exception):
                    store.drop(copy.name if new_object else f"{copy.name}@v{copy.version}")
            raise


def _copy_inputs(
    inputs: list[tuple[dict[str, Any], _Input]],
    source: VersionedStore,
    target: VersionedStore,
    force: bool,
    created: list[tuple[VersionedStore, Metadata, bool]],
) -> dict[_Input, Metadata]:
    """Promote each input dataset version into the target's bucket; each copy this call
    made is added to ``created`` (for the rollback)."""
    promoted = {}
    for src, n, v, target_ds in _input_stores(inputs, source, target):
        existed = target_ds.exists(n)
        copy, unchanged = _promote_input(src, f"{n}@v{v}", target_ds, force)
        if not unchanged:
            created.append((target_ds, copy, not existed))
        promoted[(src.bucket, n, v)] = copy
    return promoted


def _promote_input(
    source: VersionedStore, spec: str, target: VersionedStore, force: bool
) -> tuple[Metadata, bool]:
    """One input dataset version promoted as ``promote(..., create_bucket=True)`` would:
    its copy in the target, and whether the target held it already."""
    job = _prepare(source, spec, target, None, create_bucket=True)
    existing = None if force else _already_promoted(job)
    if existing is not None:
        return existing, True
    info, sizes = source.export_version(job.source_name, job.rec, job.state)
    return _copy(job, info, sizes, [], force, None), False


def _trained_on(
    inputs: list[tuple[dict[str, Any], _Input]],
    target: VersionedStore,
    promoted: dict[_Input, Metadata],
) -> list[dict[str, Any]]:
    """The promoted model's ``trained_on``: each entry points at the input's copy."""
    return [
        {
            **entry,
            "bucket": target.bucket,
            "version": promoted[key].version,
            "promoted_from": {"bucket": key[0], "version": key[2]},
        }
        for entry, key in inputs
    ]


def _change(job: _Job, lineage: dict[str, Any], info: dict[str, Any]) -> Callable[[State], Commit]:
    """The commit of the promoted version; the tags on the source version travel with it."""
    meta = job.meta
    origin = dict(lineage["promoted_from"])
    travelling = _travelling_tags(job)

    def change(state: State) -> Commit:
        new = VersionRecord(
            version=state.next_version,
            created=utcnow(),
            kind=meta.kind,
            op="promote",
            attributes=dict(meta.attributes),
            lineage=lineage,
            info=info,
        )
        moves = [TagMove(t, new.version, "promoted", {**origin, "tag": t}) for t in travelling]
        job.target.describe_version(job.target_name, new)  # a model's sidecar: this copy's
        return Commit(op="promote", version=new, moves=moves)

    return change


def _travelling_tags(job: _Job) -> list[str]:
    """The tags on the source version: the promoted version carries them in the target."""
    return sorted(t for t, v in job.state.tags.items() if v == job.meta.version)


def _inputs_of(meta: Metadata, source: VersionedStore) -> list[tuple[dict[str, Any], _Input]]:
    """The ``trained_on`` entries of a model version, each with its (bucket, name, version)."""
    trained = (meta.lineage or {}).get("trained_on")
    if not isinstance(trained, list) or not trained:
        raise PromotionError(
            f"Model {meta.name!r} v{meta.version} names no training datasets in its lineage "
            "(trained_on): promote it without with_inputs, or fit it with the runtime first."
        )
    out: list[tuple[dict[str, Any], _Input]] = []
    for entry in trained:
        if not isinstance(entry, dict):
            raise PromotionError(f"Model {meta.name!r} has a malformed trained_on entry")
        bucket = check_bucket(entry.get("bucket") or source.bucket)
        name = check_name(entry.get("dataset"))
        version = entry.get("version")
        if type(version) is not int or version < 1:
            raise PromotionError(f"Model {meta.name!r} names dataset {name!r} without a version")
        out.append((entry, (bucket, name, version)))
    return out


def _input_stores(
    inputs: list[tuple[dict[str, Any], _Input]], source: VersionedStore, target: VersionedStore
) -> list[tuple[VersionedStore, str, int, VersionedStore]]:
    """(source datasets store, name, version, target datasets store), each input once."""
    seen: list[_Input] = []
    out = []
    for _, (bucket, name, version) in inputs:
        if (bucket, name, version) in seen:
            continue
        seen.append((bucket, name, version))
        src = store_of(source.storage, bucket, "datasets")
        out.append((src, name, version, store_of(target.storage, target.bucket, "datasets")))
    return out


def _already_promoted(job: _Job) -> Metadata | None:
    """The live target version promoted from exactly this source version, if any."""
    meta, source, target, target_name = job.meta, job.source, job.target, job.target_name
    if not target.exists(target_name):
        return None
    for candidate in reversed(target.versions(target_name)):
        origin = (candidate.lineage or {}).get("promoted_from") or {}
        if (
            origin.get("context") == source.storage.url
            and origin.get("bucket") == source.bucket
            and origin.get("name") == meta.name
            and origin.get("version") == meta.version
            and origin.get("sha256") == meta.info.get("sha256")
        ):
            return candidate
    return None


def target_store(source: VersionedStore, target: VersionedStore | str) -> VersionedStore:
    """The store a promotion of ``source`` goes to: ``target``, or the same store in the
    context it names (``"prod"``, ``"prod:bucket"``)."""
    return _named_target(source, target) if isinstance(target, str) else target


def _named_target(source: VersionedStore, spec: str) -> VersionedStore:
    """``"prod"`` or ``"prod:bucket"``: the same store in a context named in the config
    file, on its root and storage options as :func:`omfs.setup` opens them (a promotion
    needs the target's storage, not its runtime)."""
    name, _, bucket = spec.partition(":")
    settings = config.resolve(context=name, bucket=bucket or None)
    storage = Storage(settings.root, settings.storage_options)
    storage.check_root()
    return type(source)(storage, settings.bucket)


def _lineage(meta: Metadata, source: VersionedStore) -> dict[str, Any]:
    """The promoted version's lineage: where it came from, and the source's own lineage."""
    lineage: dict[str, Any] = {
        "promoted_from": {
            "context": source.storage.url,
            "bucket": source.bucket,
            "name": meta.name,
            "version": meta.version,
            "sha256": meta.info.get("sha256"),
            "created": meta.created,
            "promoted_at": utcnow(),
        }
    }
    if meta.lineage:
        lineage["previous"] = meta.lineage
    return lineage
