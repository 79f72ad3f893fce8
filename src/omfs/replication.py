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
- the target has commits the source lacks, or a different commit at the same number:
  **diverged**. The object is reported (versions on both sides) and left unchanged.

Everything listed from the source is validated before it is used: object names by the name
rules, file names against the log's and payloads' own patterns, so a hostile store cannot
make a sync write outside the object's folder. Every commit, checkpoint and hint copied is
validated as a read validates it (:meth:`ObjectLog.parse`), and the payloads are those its
records name, each checked against their size and sha256 as it travels
(:meth:`Storage.copy_verified`); a source that fails either is **refused** for that object,
which then leaves the target as it was.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from omfs._log import CHECKPOINT_INTERVAL, checkpoint_file, commit_file, is_payload_file
from omfs._names import check_bucket, check_name
from omfs._storage import Expected
from omfs.errors import IntegrityError, InvalidNameError, OmfsError

__all__ = ["SyncError", "export", "import_", "sync"]

_COMMIT = re.compile(r"(\d{20})\.json")
_CHECKPOINT = re.compile(r"(\d{20})\.checkpoint\.json")
_SCHEMA = re.compile(r"s-[0-9a-f]{32}\.schema")
_STORES = ("datasets", "models")


class SyncError(OmfsError):
    """A sync that could not run (bad arguments, contexts that cannot be synced)."""


@dataclass
class _Object:
    """What one side holds of one object: {file: size} of its log and payloads."""

    commits: dict[int, tuple[int, Any]] = field(default_factory=dict)  # seq -> (size, md5)
    checkpoints: dict[int, int] = field(default_factory=dict)
    schemas: dict[str, int] = field(default_factory=dict)
    data: dict[str, int] = field(default_factory=dict)
    hint: bool = False
    listed: bool = False

    @property
    def seq(self) -> int:
        return max(self.commits, default=0)


def _inventory(storage: Any, bucket: str) -> dict[tuple[str, str], _Object]:
    """Every object of ``bucket`` on ``storage`` from one recursive listing; files that do
    not match omfs' own patterns are ignored (never copied)."""
    objects: dict[tuple[str, str], _Object] = {}
    for key, size, md5 in storage.inventory(bucket):
        parts = key.split("/")
        if len(parts) < 4 or parts[0] != bucket or parts[1] not in _STORES:
            continue
        store = parts[1]
        if parts[2] == "_index" and len(parts) == 4:
            name = parts[3].replace("~", "/")
            if _valid_name(name):
                objects.setdefault((store, name), _Object()).listed = True
            continue
        if len(parts) < 5 or parts[-2] not in ("_log", "_data"):
            continue
        name = "/".join(parts[2:-2])
        filename = parts[-1]
        if not _valid_name(name):
            continue
        obj = objects.setdefault((store, name), _Object())
        if parts[-2] == "_data":
            if is_payload_file(filename) or _is_sidecar(filename):
                obj.data[filename] = size
        elif match := _COMMIT.fullmatch(filename):
            obj.commits[int(match.group(1))] = (size, md5)
        elif match := _CHECKPOINT.fullmatch(filename):
            obj.checkpoints[int(match.group(1))] = size
        elif _SCHEMA.fullmatch(filename):
            obj.schemas[filename] = size
        elif filename == "_last.json":
            obj.hint = True
    return objects


def _valid_name(name: str) -> bool:
    try:
        return check_name(name) == name
    except InvalidNameError:
        return False


def _is_sidecar(filename: str) -> bool:
    stem, _, ext = filename.partition(".")
    return ext == "json" and is_payload_file(f"{stem}.joblib")


def _same_commit(
    source: Any, target: Any, key: str, a: tuple[int, Any], b: tuple[int, Any]
) -> bool:
    """Whether commit ``key`` is the same on both sides, from the listings where they
    tell (size, and the MD5 that object stores list), else by reading."""
    import hashlib

    if a[0] != b[0]:
        return False
    if a[1] is not None and a[1] == b[1]:
        return True
    listed, local = (a[1], target) if a[1] is not None else (b[1], source)
    if listed is not None and local.is_local:
        digest = hashlib.md5(local.read_bytes(key), usedforsecurity=False).hexdigest()
        if digest == listed:
            return True
    # different or unknown digests (an ETag is not always an MD5): the bytes decide
    return bool(source.read_bytes(key) == target.read_bytes(key))


def _resolve(ctx: Any) -> Any:
    from omfs.context import Omega, setup

    if isinstance(ctx, Omega):
        return ctx
    if isinstance(ctx, str):
        return setup(context=ctx)
    raise SyncError(f"sync takes contexts (omfs.setup(...) or a context name), got {ctx!r}")


def sync(
    source: Any,
    target: Any,
    *,
    buckets: Sequence[str] | None = None,
    names: Sequence[str] | None = None,
    dry_run: bool = False,
    rebase: bool = False,
    progress: Callable[[int], None] | None = None,
    on_object: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Replicate the datasets and models of ``source`` to ``target`` with their history.

    ``source`` and ``target`` are contexts (``omfs.setup(...)``) or names of contexts in
    the config file. ``buckets`` limits the buckets (default: all of the source's);
    ``names`` are glob patterns of object names. ``dry_run`` says what would be copied.
    Returns a report: per object the action (``copy``, ``unchanged``, ``diverged``,
    ``rebased``), the versions and the bytes, and totals.

    ``rebase=True``: a diverged object's source-only versions are re-committed on top of the
    target's latest (an append as an append, a put as a new version, with the tags that
    pointed at them); their lineage names the original (``rebased_from``).

    ``progress`` is called with the bytes of payloads as they travel, ``on_object`` with
    each object's report row once the object is done (for progress bars).
    """
    import fnmatch

    from omfs._store import bucket_names

    src, dst = _resolve(source), _resolve(target)
    if src.storage == dst.storage:
        raise SyncError(f"source and target are the same context ({src.root}); nothing to sync")
    chosen = [check_bucket(b) for b in buckets] if buckets else None
    bucket_list = chosen or bucket_names(src.storage)
    rows: list[dict[str, Any]] = []
    for bucket in bucket_list:
        have = _inventory(src.storage, bucket)
        want = _inventory(dst.storage, bucket)
        for (store, name), obj in sorted(have.items()):
            if not obj.listed or not obj.commits:
                continue  # dropped, or a write that never committed: nothing to replicate
            if names and not any(fnmatch.fnmatchcase(name, p) for p in names):
                continue
            row = _sync_object(
                src.storage, dst.storage, bucket, store, name, obj,
                want.get((store, name), _Object()), dry_run, progress,
            )  # fmt: skip
            if rebase and row["action"] == "diverged" and not dry_run:
                row = _rebase(src, dst, bucket, store, name, obj, want[(store, name)], row)
            rows.append(row)
            if on_object is not None:
                on_object(row)
    return {
        "source": src.root,
        "target": dst.root,
        "dry_run": dry_run,
        "objects": rows,
        "copied": sum(r["action"] == "copy" for r in rows),
        "unchanged": sum(r["action"] == "unchanged" for r in rows),
        "diverged": sum(r["action"] == "diverged" for r in rows),
        "rebased": sum(r["action"] == "rebased" for r in rows),
        "refused": sum(r["action"] == "refused" for r in rows),
        "bytes": sum(r["bytes"] for r in rows),
    }


def _versions(storage: Any, bucket: str, store: str, name: str) -> list[int]:
    from omfs.context import Omega

    try:
        return [m.version for m in getattr(Omega(storage, bucket), store).versions(name)]
    except OmfsError:
        return []


def _diverged(row: dict[str, Any], src: Any, dst: Any) -> dict[str, Any]:
    """Mark ``row`` diverged, with the versions each side holds."""
    where = (row["bucket"], row["store"], row["name"])
    row.update(
        action="diverged",
        source_versions=_versions(src, *where),
        target_versions=_versions(dst, *where),
    )
    return row


def _missing_schemas(have: _Object, want: _Object) -> list[str]:
    """The schema files the target lacks, or holds cut short (a killed local copy)."""
    return [f for f, size in sorted(have.schemas.items()) if want.schemas.get(f) != size]


def _sync_object(
    src: Any,
    dst: Any,
    bucket: str,
    store: str,
    name: str,
    have: _Object,
    want: _Object,
    dry_run: bool,
    progress: Callable[[int], None] | None,
) -> dict[str, Any]:
    prefix = f"{bucket}/{store}/{name}"
    row: dict[str, Any] = {
        "bucket": bucket,
        "store": store,
        "name": name,
        "source_commits": have.seq,
        "target_commits": want.seq,
        "bytes": 0,
        "files": 0,
    }
    tip = want.seq
    common = (
        tip in have.commits
        and _same_commit(
            src, dst, f"{prefix}/_log/{tip:020d}.json", have.commits[tip], want.commits[tip]
        )
        if tip
        else True
    )
    if tip > have.seq or not common:
        return _diverged(row, src, dst)
    new_commits = sorted(s for s in have.commits if s > tip)
    # the newest checkpoints and the hint come last: a sync killed before them leaves them
    # for the next one, even when every commit is in place
    checkpoints = sorted(
        s for s in have.checkpoints
        if s > max(tip, have.seq) - 2 * CHECKPOINT_INTERVAL and s not in want.checkpoints
    )  # fmt: skip
    missing_hint = have.hint and not want.hint
    if not (new_commits or checkpoints or missing_hint or not want.listed):
        row["action"] = "unchanged"
        return row
    row["action"] = "copy"
    clash = _clash(src, dst, prefix, have, want)
    if clash is not None:
        return _refused(row, clash)
    if dry_run:  # an estimate from the listings alone (no read)
        data = [f for f in have.data if f not in want.data]
        row["files"] = (
            len(data) + len(new_commits) + len(checkpoints) + missing_hint
        )  # fmt: skip
        row["bytes"] = sum(have.data[f] for f in data) + sum(
            have.commits[s][0] for s in new_commits
        )
        return row
    # everything copied is read and validated as a read of the source would validate it
    # before the first byte reaches the target
    log = _source_log(src, bucket, store, name)
    try:
        commits = {s: src.read_bytes(f"{prefix}/_log/{commit_file(s)}") for s in new_commits}
        parsed = [log.parse(commit_file(s), data) for s, data in commits.items()]
        cps = {s: src.read_bytes(f"{prefix}/_log/{checkpoint_file(s)}") for s in checkpoints}
        states = [log.parse(checkpoint_file(s), data) for s, data in cps.items()]
        hint = _valid_hint(src, log, prefix) if have.hint else None
    except (IntegrityError, FileNotFoundError) as exc:
        return _refused(row, str(exc))
    records = [r for c in parsed for r in (c[0].version, *c[1].records.values()) if r]
    records += [r for state in states for r in state.records.values()]
    expected = _expected_files(prefix, store, records)
    files = [
        e for e in expected.values()
        if _listed(have, e.key) and not _listed(want, e.key)  # never over the target's own
    ]  # fmt: skip
    refused = src.copy_verified(files, dst, progress)
    if refused:
        return _refused(row, "; ".join(refused.values()))
    row["files"] = len(files) + len(commits) + len(cps) + (hint is not None)
    row["bytes"] = sum(_listed_size(have, e.key) for e in files) + sum(
        len(c) for c in commits.values()
    )
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
    for seq, checkpoint in cps.items():
        with contextlib.suppress(FileExistsError):
            dst.create(f"{prefix}/_log/{checkpoint_file(seq)}", checkpoint)
    if hint is not None:
        dst.write_bytes(f"{prefix}/_log/_last.json", hint)
    return row


def _clash(src: Any, dst: Any, prefix: str, have: _Object, want: _Object) -> str | None:
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


def _refused(row: dict[str, Any], why: str) -> dict[str, Any]:
    """Mark ``row`` refused: nothing of the object was copied (the target is as it was)."""
    row.update(
        action="refused",
        files=0,
        bytes=0,
        error=f"{row['bucket']}/{row['store']}/{row['name']} was not synced: {why}",
    )
    return row


def _source_log(storage: Any, bucket: str, store: str, name: str) -> Any:
    """The commit log of one object of the source, with its store's validation."""
    from omfs.context import Omega

    return getattr(Omega(storage, bucket), store)._log(name)


def _valid_hint(storage: Any, log: Any, prefix: str) -> bytes | None:
    """The source's hint, when it is valid (else None: it is only a hint, left out)."""
    try:
        data = storage.read_bytes(f"{prefix}/_log/_last.json")
        log.parse("_last.json", data)
    except (IntegrityError, FileNotFoundError):
        return None
    return bytes(data)


def _listed(obj: _Object, key: str) -> bool:
    folder, filename = key.rsplit("/", 2)[-2:]
    return filename in (obj.data if folder == "_data" else obj.schemas)


def _listed_size(obj: _Object, key: str) -> int:
    folder, filename = key.rsplit("/", 2)[-2:]
    return (obj.data if folder == "_data" else obj.schemas).get(filename, 0)


def _expected_files(prefix: str, store: str, records: list[Any]) -> dict[str, Expected]:
    """What the validated ``records`` say of the files they name: each payload's size and
    sha256 (a dataset part written before omfs recorded its sha256: its size), a model
    payload's sidecar, a dataset schema (named by its content's hash)."""
    out: dict[str, Expected] = {}
    for rec in records:
        info = rec.info
        if store == "models":
            payload = info.get("payload")
            if payload:
                key = f"{prefix}/_data/{payload}"
                out[key] = Expected(key, info["size"], info["sha256"])
                side = f"{prefix}/_data/{payload.rsplit('.', 1)[0]}.json"
                out[side] = Expected(side, check=_sidecar_check(info["size"], info["sha256"]))
            continue
        raw_sha = info.get("sha256") if rec.kind == "raw" else None
        for part in info.get("add") or []:
            key = f"{prefix}/_data/{part['file']}"
            out[key] = Expected(key, part["size"], part.get("sha256") or raw_sha)
        schema = info.get("schema")
        if schema:
            key = f"{prefix}/_log/s-{schema}.schema"
            out[key] = Expected(key, check=functools.partial(_schema_check, schema))
    return out


def _sidecar_check(size: int, sha256: str) -> Callable[[bytes], str | None]:
    def check(data: bytes) -> str | None:
        try:
            doc = json.loads(data)
        except ValueError:
            return "the model payload's sidecar is not JSON"
        if not isinstance(doc, dict) or doc.get("sha256") != sha256 or doc.get("size") != size:
            return "the model payload's sidecar does not match the log (size, sha256)"
        return None

    return check


def _schema_check(schema_id: str, data: bytes) -> str | None:
    if hashlib.sha256(data).hexdigest()[:32] != schema_id:
        return "the schema's content does not match its name"
    return None


def _rebase(
    src: Any, dst: Any, bucket: str, store: str, name: str, have: _Object, want: _Object,
    row: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """Re-commit the versions the source has after the last commit both sides share on top
    of the target's history; tag moves to them follow. Drops, deletions and attribute
    updates of older versions in those commits are not replayed."""
    from dataclasses import replace

    from omfs._log import Commit, TagMove

    source, target = getattr(src[bucket], store), getattr(dst[bucket], store)
    prefix = f"{bucket}/{store}/{name}"
    common = 0
    for seq in sorted((s for s in want.commits if s in have.commits), reverse=True):
        key = f"{prefix}/_log/{seq:020d}.json"
        if _same_commit(src.storage, dst.storage, key, have.commits[seq], want.commits[seq]):
            common = seq
            break
    log = source._log(name)
    mapping: dict[int, int] = {}
    rebased: list[tuple[int, int]] = []
    schema_keys = [f"{prefix}/_log/{f}" for f in _missing_schemas(have, want)]
    src.storage.copy(schema_keys, dst.storage, schema_keys)
    for seq in sorted(s for s in have.commits if s > common):
        found = log._commit_at(seq)
        if found is None:
            continue
        commit, _, _, _ = found
        moves = [m for m in commit.moves if m.version is not None]
        if commit.version is not None:
            rec = commit.version
            files = source._own_files(rec)
            keys = [source._data_key(name, f) for f in files]
            src.storage.copy(keys, dst.storage, keys)
            origin = {"context": src.root, "version": rec.version, "commit": seq}

            def change(state: Any, rec: Any = rec, origin: Any = origin, moves: Any = moves) -> Any:
                info = dict(rec.info)
                if store == "datasets" and info.get("parent") is not None:
                    latest = state.records.get(state.latest) if state.exists else None
                    if latest is None or latest.info.get("schema") != info.get("schema"):
                        raise SyncError(
                            f"Cannot rebase {prefix} v{rec.version}: it appends to a dataset "
                            "whose schema differs in the target; nothing more was rebased."
                        )
                    details = target._appended_details(latest, rec.kind, info, info["add"])
                    info = {**details, "schema": info["schema"], "parent": latest.version,
                            "add": info["add"]}  # fmt: skip
                new = replace(
                    rec,
                    version=state.next_version,
                    lineage={**(rec.lineage or {}), "rebased_from": origin},
                    tag=None,
                    info=info,
                )
                tags = [TagMove(m.tag, new.version, "rebased", origin) for m in moves
                        if m.version == rec.version]  # fmt: skip
                return Commit(op=rec.op, version=new, moves=tags)

            state = target._commit(name, change, retry=True)
            mapping[rec.version] = state.latest
            rebased.append((rec.version, state.latest))
            moves = [m for m in moves if m.version != rec.version]
        later = [
            TagMove(m.tag, mapping[m.version], "rebased") for m in moves if m.version in mapping
        ]
        if later:
            target._commit(name, lambda _s, later=later: Commit(op="tag", moves=later), retry=True)
    row.update(
        action="rebased",
        rebased=[{"source_version": a, "target_version": b} for a, b in rebased],
        target_versions=_versions(dst.storage, bucket, store, name),
    )
    return row


# -- bundles: the same replication through a tar file, for air-gapped moves -------------------
_MANIFEST = "omfs-bundle.json"
_BUNDLE_FORMAT = 1


def _objects_of(source: Any, names: Sequence[str]) -> list[tuple[Any, str, str]]:
    """``(storage, bucket, store/name)`` of each name: ``NAME`` (a dataset or model of the
    context's bucket), ``datasets/NAME`` or ``models/NAME``; a store takes plain names."""
    from omfs._store import VersionedStore
    from omfs.context import Omega
    from omfs.errors import NotFoundError

    out = []
    for spec in names:
        if isinstance(source, VersionedStore):
            stores = [source]
            name = spec
        elif isinstance(source, Omega):
            kind, _, rest = spec.partition("/")
            if kind in _STORES and rest:
                stores, name = [getattr(source, kind)], rest
            else:
                stores, name = [source.datasets, source.models], spec
        else:
            raise SyncError(f"export takes a context or a store, got {source!r}")
        found = [s for s in stores if s.exists(name)]
        if not found:
            raise NotFoundError(
                f"Cannot export {spec!r}: no dataset or model of that name in bucket "
                f"{stores[0].bucket!r} of {stores[0].storage.url!r}"
            )
        if len(found) > 1:
            raise SyncError(
                f"{spec!r} is both a dataset and a model: say datasets/{spec} or models/{spec}"
            )
        out.append((found[0].storage, found[0].bucket, f"{found[0].kind}/{check_name(name)}"))
    return out


def export(source: Any, names: Sequence[str], path: Any) -> dict[str, Any]:
    """Write the named objects (logs and payloads, whole history) to a tar file at
    ``path``, with a manifest of every file's size and sha256. Returns the manifest."""
    import hashlib
    import io
    import os
    import tarfile

    from omfs._storage import unique_name

    objects = _objects_of(source, names)
    where = os.fspath(path)
    tmp = os.path.join(os.path.dirname(os.path.abspath(where)), f".{unique_name('.tar')}")
    files = []
    try:
        with tarfile.open(tmp, "w") as tar:
            for storage, bucket, obj in objects:
                store, name = obj.split("/", 1)
                keys = [
                    key
                    for key, _, _ in storage.inventory(f"{bucket}/{obj}")
                    if key.split("/")[-2] in ("_log", "_data")
                    and not key.rsplit("/", 1)[-1].startswith(".")
                ]
                keys.append(f"{bucket}/{store}/_index/{name.replace('/', '~')}")
                for key in sorted(keys):
                    data = storage.read_bytes(key)
                    info = tarfile.TarInfo(key)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
                    digest = hashlib.sha256(data).hexdigest()
                    files.append({"path": key, "size": len(data), "sha256": digest})
            manifest = {
                "format": _BUNDLE_FORMAT,
                "objects": [f"{bucket}/{obj}" for _, bucket, obj in objects],
                "files": files,
            }
            body = json_bytes(manifest)
            info = tarfile.TarInfo(_MANIFEST)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
        os.replace(tmp, where)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return manifest


def json_bytes(doc: Any) -> bytes:
    import json

    return json.dumps(doc, indent=1).encode()


def import_(path: Any, target: Any, *, dry_run: bool = False) -> dict[str, Any]:
    """Import a bundle written by :func:`export` into ``target`` (a context or a context
    name) with the rules of :func:`sync`: history kept, divergence reported and left alone.
    Every file is checked against the manifest (name pattern, size, sha256) before anything
    reaches the target."""
    import hashlib
    import json
    import os
    import tarfile
    import tempfile

    from omfs.context import setup
    from omfs.errors import IntegrityError

    where = os.fspath(path)
    with tarfile.open(where, "r") as tar, tempfile.TemporaryDirectory(prefix="omfs-import-") as d:
        try:
            manifest = json.loads(tar.extractfile(_MANIFEST).read())  # type: ignore[union-attr]
            files = {f["path"]: f for f in manifest["files"]}
            objects = list(manifest["objects"])
        except (KeyError, ValueError, TypeError, AttributeError):
            raise IntegrityError(f"{where} is not an omfs bundle (no valid {_MANIFEST})") from None
        buckets: set[str] = set()
        for member in tar.getmembers():
            if member.name == _MANIFEST:
                continue
            entry = files.get(member.name)
            if entry is None or not member.isfile() or not _bundle_path_ok(member.name):
                raise IntegrityError(
                    f"{where}: the member {member.name!r} is not an omfs file of the manifest; "
                    "nothing was imported"
                )
            data = tar.extractfile(member).read()  # type: ignore[union-attr]
            if len(data) != entry["size"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
                raise IntegrityError(
                    f"{where}: {member.name} does not match its sha256 in the manifest (the "
                    "bundle is damaged); nothing was imported"
                )
            out = os.path.join(d, *member.name.split("/"))
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with open(out, "wb") as f:
                f.write(data)
            buckets.add(member.name.split("/", 1)[0])
        missing = set(files) - {m.name for m in tar.getmembers()}
        if missing:
            raise IntegrityError(
                f"{where}: files of the manifest are missing: {sorted(missing)[:3]}"
            )
        staged = setup(d)
        names = sorted({o.split("/", 2)[2] for o in objects})
        return sync(staged, target, buckets=sorted(buckets), names=names, dry_run=dry_run)


def _bundle_path_ok(path: str) -> bool:
    """``bucket/store/name.../_log|_data/file`` or ``bucket/store/_index/name``."""
    parts = path.split("/")
    if len(parts) < 4 or parts[1] not in _STORES:
        return False
    try:
        check_bucket(parts[0])
    except InvalidNameError:
        return False
    if parts[2] == "_index":
        return len(parts) == 4 and _valid_name(parts[3].replace("~", "/"))
    if len(parts) < 5 or not _valid_name("/".join(parts[2:-2])):
        return False
    folder, filename = parts[-2], parts[-1]
    if folder == "_data":
        return is_payload_file(filename) or _is_sidecar(filename)
    return folder == "_log" and bool(
        _COMMIT.fullmatch(filename)
        or _CHECKPOINT.fullmatch(filename)
        or _SCHEMA.fullmatch(filename)
        or filename == "_last.json"
    )
