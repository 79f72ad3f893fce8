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
from typing import Any

from omfs.errors import (
    ConditionFailedError,
    InvalidTypeError,
    NotFoundError,
    PromotionError,
    UsageError,
)
from omfs.names import check_bucket, check_name
from omfs.objects.log import Commit, State, TagMove, VersionRecord
from omfs.objects.metadata import Metadata, utcnow
from omfs.objects.versioned import VersionedStore
from omfs.storage import unique_name

__all__ = ["CONDITIONS", "model_is_fitted", "promote", "schema_matches_target"]

Condition = Callable[[Metadata, VersionedStore, VersionedStore, str], "str | None"]


def model_is_fitted(meta: Metadata, source: Any, target: Any, target_name: str) -> str | None:
    """Refuse a model that is not a fitted estimator."""
    if meta.store != "models":
        return "the 'fitted' condition applies to models"
    if meta.info.get("fitted") is not True:
        state = "not fitted" if meta.info.get("fitted") is False else "not known to be fitted"
        return f"model {meta.name!r} version {meta.version} is {state}"
    return None


def schema_matches_target(meta: Metadata, source: Any, target: Any, target_name: str) -> str | None:
    """Refuse a dataset whose columns and types differ from the target's latest version."""
    if meta.store != "datasets":
        return "the 'schema-matches' condition applies to datasets"
    try:
        current = target.metadata(target_name)
    except NotFoundError:
        return None
    if current.kind != meta.kind or current.info.get("columns") != meta.info.get("columns"):
        return (
            f"the schema of {meta.name!r} v{meta.version} ({meta.info.get('columns')}) differs "
            f"from {target_name!r} v{current.version} in the target ({current.info.get('columns')})"
        )
    return None


CONDITIONS: dict[str, Condition] = {
    "fitted": model_is_fitted,
    "schema-matches": schema_matches_target,
}


def _conditions(conditions: Sequence[str | Condition] | None) -> list[tuple[str, Condition]]:
    out = []
    for cond in conditions or ():
        if isinstance(cond, str):
            if cond not in CONDITIONS:
                raise UsageError(
                    f"Unknown promotion condition {cond!r}; known: {sorted(CONDITIONS)}, or "
                    "pass a callable"
                )
            out.append((cond, CONDITIONS[cond]))
        elif callable(cond):
            out.append((getattr(cond, "__name__", repr(cond)), cond))
        else:
            raise InvalidTypeError(f"A promotion condition is a name or a callable, got {cond!r}")
    return out


def promote(
    source: VersionedStore,
    name: str,
    target: VersionedStore | str,
    *,
    asname: str | None = None,
    conditions: Sequence[str | Condition] | None = None,
    dry_run: bool = False,
    progress: Callable[[int], None] | None = None,
    create_bucket: bool = False,
    force: bool = False,
    with_inputs: bool = False,
) -> Any:
    """Copy ``name`` (or ``name@v3``) from ``source`` to ``target`` as a new version.

    Returns the target's new Metadata, or with ``dry_run=True`` a dict saying what would be
    copied (nothing is written). A version the target already holds (promoted from the same
    source version, same sha256) is not copied again: its Metadata comes back with
    ``unchanged=True``, unless ``force=True``. A target bucket that does not exist in a
    context that has other buckets (a typo?) is refused unless ``create_bucket=True``.

    ``with_inputs=True`` (models) first promotes the exact dataset versions the model's
    lineage names (``trained_on``) into the target's bucket, and the promoted model's
    ``trained_on`` points at those copies; if anything fails, the dataset versions this
    call created are dropped again, so the target is left as it was.
    """
    if isinstance(target, str):
        target = _named_target(source, target)
    if type(source) is not type(target):
        raise PromotionError(
            f"Cannot promote from {source.kind} to {target.kind}: promote a dataset to "
            "another datasets store and a model to another models store"
        )
    source_name, rec, state = source.select(name, full=True)
    meta = source.metadata_for(source_name, rec)
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
    if not force:
        existing = _already_promoted(meta, source, target, target_name)
        if existing is not None:
            if dry_run:
                return {
                    "source": {"name": meta.name, "version": meta.version},
                    "target": {"name": target_name, "version": existing.version},
                    "files": 0,
                    "bytes": 0,
                    "unchanged": True,
                }
            return existing
    checks = _conditions(conditions)
    for label, cond in checks:
        try:
            problem = cond(meta, source, target, target_name)
        except ConditionFailedError as exc:
            problem = str(exc)
        if problem:
            raise ConditionFailedError(
                f"Promotion of {meta.name!r} v{meta.version} refused by condition "
                f"{label!r}: {problem}"
            )
    if with_inputs and source.kind != "models":
        raise PromotionError("with_inputs= applies to models (their trained_on datasets)")
    inputs = _inputs_of(meta, source) if with_inputs else []
    info, sizes = source.export_version(source_name, rec, state)
    files = list(sizes)
    if dry_run:
        plan: dict[str, Any] = {
            "source": {
                "context": source.storage.url,
                "bucket": source.bucket,
                "name": meta.name,
                "version": meta.version,
            },
            "target": {"context": target.storage.url, "bucket": target.bucket, "name": target_name},
            "files": len(files),
            "bytes": sum(sizes.values()),
            "server_side": source.storage.same_filesystem(target.storage),
            "conditions": [label for label, _ in checks],
        }
        if inputs:
            plan["inputs"] = [
                src.promote(f"{n}@v{v}", target_ds, dry_run=True, create_bucket=True, force=force)
                for src, n, v, target_ds in _input_stores(inputs, source, target)
            ]
            plan["bytes"] += sum(p["bytes"] for p in plan["inputs"])
        return plan
    lease = target.lease(target_name)  # gc keeps off the copied files until the commit
    lease.__enter__()
    renamed = {f: unique_name(os.path.splitext(f)[1]) for f in files}
    dst_keys = [target.data_key(target_name, renamed[f]) for f in files]
    written = list(dst_keys)
    created_inputs: list[tuple[Any, Metadata, bool]] = []  # (store, meta, new object?)
    try:
        promoted_inputs = {}
        for src, n, v, target_ds in _input_stores(inputs, source, target):
            existed = target_ds.exists(n)
            copy = src.promote(f"{n}@v{v}", target_ds, create_bucket=True, force=force)
            if not getattr(copy, "unchanged", False):
                created_inputs.append((target_ds, copy, not existed))
            promoted_inputs[(src.bucket, n, v)] = copy
        source.storage.copy(
            [source.data_key(meta.name, f) for f in files], target.storage, dst_keys, progress
        )
        new_info = target.import_info(target_name, meta.kind, info, renamed, meta.created)
        written += [
            target.data_key(target_name, f)
            for f in target.own_files(VersionRecord(0, "", meta.kind, "promote", info=new_info))
        ]
        lineage = _lineage(meta, source)
        if inputs:
            lineage["trained_on"] = [
                {
                    **entry,
                    "bucket": target.bucket,
                    "version": promoted_inputs[key].version,
                    "promoted_from": {"bucket": key[0], "version": key[2]},
                }
                for entry, key in inputs
            ]
        origin = dict(lineage["promoted_from"])
        travelling = sorted(t for t, v in state.tags.items() if v == meta.version)

        def change(state: State) -> Commit:
            new = VersionRecord(
                version=state.next_version,
                created=utcnow(),
                kind=meta.kind,
                op="promote",
                attributes=dict(meta.attributes),
                lineage=lineage,
                info=new_info,
            )
            moves = [TagMove(t, new.version, "promoted", {**origin, "tag": t}) for t in travelling]
            return Commit(op="promote", version=new, moves=moves)

        state = target.commit(target_name, change, retry=True)
        return target.metadata_for(target_name, state.records[state.latest])  # type: ignore[index]
    except BaseException:
        target.storage.delete(written)
        for store, copy, new_object in reversed(created_inputs):
            with contextlib.suppress(Exception):
                store.drop(copy.name if new_object else f"{copy.name}@v{copy.version}")
        raise
    finally:
        lease.__exit__(None, None, None)


def _inputs_of(meta: Metadata, source: VersionedStore) -> list[tuple[dict[str, Any], Any]]:
    """The ``trained_on`` entries of a model version, each with its (bucket, name, version)."""
    trained = (meta.lineage or {}).get("trained_on")
    if not isinstance(trained, list) or not trained:
        raise PromotionError(
            f"Model {meta.name!r} v{meta.version} names no training datasets in its lineage "
            "(trained_on): promote it without with_inputs, or fit it with the runtime first."
        )
    out = []
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
    inputs: list[tuple[dict[str, Any], Any]], source: VersionedStore, target: VersionedStore
) -> list[tuple[Any, str, int, Any]]:
    """(source datasets store, name, version, target datasets store), each input once."""
    from omfs.context import Omega

    seen = []
    out = []
    for _, (bucket, name, version) in inputs:
        if (bucket, name, version) in seen:
            continue
        seen.append((bucket, name, version))
        src = Omega(source.storage, bucket).datasets
        out.append((src, name, version, Omega(target.storage, target.bucket).datasets))
    return out


def _already_promoted(
    meta: Metadata, source: VersionedStore, target: VersionedStore, target_name: str
) -> Metadata | None:
    """The live target version promoted from exactly this source version, if any."""
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
            candidate.unchanged = True
            return candidate
    return None


def _named_target(source: VersionedStore, spec: str) -> VersionedStore:
    """``"prod"`` or ``"prod:bucket"``: the same store in a named context of the config."""
    from omfs.context import setup

    name, _, bucket = spec.partition(":")
    target = setup(context=name, bucket=bucket or None)
    return getattr(target, source.kind)  # type: ignore[no-any-return]


def _lineage(meta: Metadata, source: VersionedStore) -> dict[str, Any]:
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
