"""The crash campaign: run one mutating operation in a child process, SIGKILL it at many
points, and check what a reader sees afterwards.

    python omfs_crash.py ROOT OPTIONS_JSON OP MODE

MODE is ``run`` (no kill), ``count`` (print how many storage writes the operation makes),
``call:K`` (kill the process just before its K-th storage write), or ``timed`` (print
``go`` and wait to be killed by the parent at some point of the operation).

A *storage write* is any call that changes storage: ``Storage.create`` (commits),
``write_bytes`` (hints, markers, sidecars), ``delete``, ``delete_tree``, ``copy``, ``open``
for writing, and the Parquet part writer (which writes local files directly).

The parent side (:func:`seed`, :func:`snapshot`, :func:`check`) is used by
``tests/test_crash_campaign.py``: after every kill, ``list()``, ``exists()``,
``versions()``, ``get()`` and ``tags()`` agree, no temporary or internal name is listed,
the visible state is exactly the one before the operation or the one after it, and a
later write to the same names works.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

import omfs
from omfs.errors import NotFoundError


def frame(i: int, rows: int = 20) -> pd.DataFrame:
    return pd.DataFrame(
        {"id": np.arange(i * rows, (i + 1) * rows, dtype="int64"), "x": np.full(rows, i * 0.5)}
    )


def seed(om: Any) -> None:
    """The state every kill starts from: a dataset, a model and a bystander, with tags."""
    for i in range(3):
        om.datasets.put(frame(i), "d", append=i > 0)
    om.datasets.tag("d@v2", "prod")
    for i in range(3):
        om.models.put({"m": i}, "m")
    om.models.tag("m@v1", "prod")
    om.models.tag("m@v2", "prod")
    om.datasets.put(frame(9), "bystander")
    om.storage.write_bytes(f"{om.bucket}/datasets/d/_data/{'e' * 32}.parquet", b"orphan")
    # a dropped object (for restore) and a remote whose d diverged from this one's (for
    # pull --rebase): each side appended once after they last synced
    om.datasets.put(frame(10), "gone")
    om.datasets.put(frame(11), "gone", append=True)
    om.datasets.tag("gone@v1", "prod")
    om.datasets.drop("gone")
    remote = remote_of(om)
    omfs.sync(om, remote, names=["d"])
    remote.datasets.put(frame(12), "d", append=True)
    om.datasets.put(frame(13), "d", append=True)


def remote_of(om: Any) -> Any:
    """The remote context of the sync operations: a root inside this one's ``_remote``
    folder (not a bucket: names starting with ``_`` are omfs' own)."""
    return omfs.setup(f"{om.root}/_remote", storage_options=om.storage.options)


#: Storage writes are not counted (nor killed at) while this is set: the setup of an
#: operation that needs one (the laptop a sync pushes from).
_PAUSED = [False]


def laptop_for(root: str) -> str:
    """The local context that the ``sync`` operation pushes to ``root`` from (beside a local
    root, in the temporary folder for an S3 one): made once, then reused by a re-run."""
    import tempfile

    if "://" not in root:
        return f"{root}.laptop"
    digest = hashlib.sha256(root.encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"omfs-crash-laptop-{digest}")


def _sync(om: Any) -> Any:
    """Push work done offline back: a laptop copy of the bucket (made by a sync the other
    way, not counted) appends to ``d``, moves ``m@prod`` to a new version and makes
    ``fresh``; then the sync to ``om`` is the operation."""
    path = laptop_for(om.root)
    if not os.path.exists(os.path.join(path, ".made")):
        _PAUSED[0] = True
        try:
            laptop = omfs.setup(path)
            omfs.sync(om, laptop, buckets=[om.bucket])
            laptop.datasets.put(frame(5), "d", append=True)
            laptop.models.put({"m": 5}, "m", tag="prod")
            laptop.datasets.put(frame(6), "fresh")
            open(os.path.join(path, ".made"), "w").close()
        finally:
            _PAUSED[0] = False
    report = omfs.sync(omfs.setup(path), om, buckets=[om.bucket])
    assert report.refused == report.diverged == 0, report
    return report


OPS: dict[str, Callable[[Any], Any]] = {
    "put": lambda om: om.datasets.put(frame(5), "d"),
    "append": lambda om: om.datasets.put(frame(5), "d", append=True),
    "put-new": lambda om: om.datasets.put(frame(6), "fresh"),
    "model-put": lambda om: om.models.put({"m": 5}, "m", tag="prod"),
    "promote": lambda om: om.datasets.promote("d@prod", om["prod"].datasets, create_bucket=True),
    "promote-model": lambda om: om.models.promote("m@prod", om["prod"].models, create_bucket=True),
    "drop-object": lambda om: om.datasets.drop("d"),
    "drop-model": lambda om: om.models.drop("m"),
    "drop-version": lambda om: om.datasets.drop("d@v3"),
    "update-attributes": lambda om: om.models.update_attributes("m", {"stage": "review"}),
    "tag": lambda om: om.models.tag("m@v3", "prod", reason="crash test"),
    "untag": lambda om: om.datasets.untag("d", "prod"),
    "rollback": lambda om: om.models.rollback("m", "prod"),
    "compact": lambda om: om.datasets.compact("d"),
    "prune": lambda om: om.models.prune("m", keep_last=1),
    "gc": lambda om: om.gc(grace=0, force=True),
    # a restore killed after its last change (before it released its gc lease) is done: a
    # re-run sees the object back ("it exists"), as its user would
    "restore": lambda om: om.datasets.exists("gone") or om.datasets.restore("gone"),
    "pull-rebase": lambda om: omfs.sync(remote_of(om), om, rebase=True),
    "sync": _sync,
}
#: Operations that also write the remote (``remote_of``), and that a re-run completes.
REMOTE_OPS = ("restore", "pull-rebase")

#: Operations that read their input from the environment (not run by the generic campaign):
#: ``import`` imports the bundle named by OMFS_CRASH_BUNDLE (see test_crash_import).
INPUT_OPS: dict[str, Callable[[Any], Any]] = {
    "import": lambda om: omfs.import_(os.environ["OMFS_CRASH_BUNDLE"], om),
}

#: Operations whose re-run after a kill must complete the job (see ``test_crash_rerun``),
#: with the seed each starts from.
RERUN_OPS: dict[str, Callable[[Any], Any]] = {
    "prune": OPS["prune"],
    "upgrade": lambda om: __import__("omfs.ops.fsck", fromlist=["upgrade"]).upgrade(om),
}
LEGACY_STORE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "omfs-0.1-store")


def seed_legacy(om: Any) -> None:
    """A dataset and a model written by omfs 0.1 (from the fixture) in ``om``'s root."""
    for folder, _, files in os.walk(LEGACY_STORE):
        for name in files:
            path = os.path.join(folder, name)
            key = os.path.relpath(path, LEGACY_STORE).replace(os.sep, "/")
            if not key.startswith(("omega/datasets/sales", "omega/models/reg")) and not (
                key.endswith(("_index/sales", "_index/reg"))
            ):
                continue
            with open(path, "rb") as f:
                om.storage.write_bytes(key, f.read())


_WRITES = ("create", "write_bytes", "delete", "delete_tree", "copy", "copy_verified")


def _instrument(mode: str) -> list[int]:
    """Patch omfs' storage writes: count them, and kill the process at the chosen one."""
    from omfs import storage as _storage
    from omfs.objects.datasets import _parts, write

    calls = [0]
    kill_at = int(mode.split(":", 1)[1]) if mode.startswith("call:") else 0

    def counted(fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if _PAUSED[0]:
                return fn(*args, **kwargs)
            calls[0] += 1
            if calls[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return fn(*args, **kwargs)

        return wrapper

    for name in _WRITES:
        setattr(_storage.Storage, name, counted(getattr(_storage.Storage, name)))
    real_open = _storage.Storage.open

    def open_(self: Any, key: str, mode: str = "rb", **kwargs: Any) -> Any:
        if "w" in mode:
            return counted(real_open)(self, key, mode, **kwargs)
        return real_open(self, key, mode, **kwargs)

    _storage.Storage.open = open_
    write.write_part = counted(_parts.write_part)
    return calls


def child(root: str, options: str, op: str, mode: str) -> None:
    calls = _instrument(mode)
    om = omfs.setup(root, storage_options=json.loads(options))
    if mode == "timed":
        print("go", flush=True)
    {**OPS, **INPUT_OPS, **RERUN_OPS}[op](om)
    if mode == "count":
        print(calls[0], flush=True)


# -- the parent's side ------------------------------------------------------------------------
def _digest(store: Any, name: str, version: int) -> str:
    if store.kind == "models":
        return str(store.get(name, version=version))
    df = store.get(name, version=version)
    if not isinstance(df, pd.DataFrame | pd.Series):  # arrays and raw files (omfs 0.1 store)
        data = df.tobytes() if hasattr(df, "tobytes") else bytes(df)
        return hashlib.sha256(data).hexdigest()[:16]
    return hashlib.sha256(pd.util.hash_pandas_object(df).values.tobytes()).hexdigest()[:16]


def snapshot(om: Any, buckets: tuple[str, ...] = ("omega", "prod")) -> dict[str, Any]:
    """What a reader sees, checking on the way that every reader call agrees."""
    seen: dict[str, Any] = {}
    for bucket in buckets:
        for store in (om[bucket].datasets, om[bucket].models):
            try:
                listed = store.list()
            except NotFoundError:  # the bucket does not exist (yet)
                listed = []
            for name in listed:
                assert not name.startswith(".") and ".tmp" not in name, f"listed {name!r}"
                assert store.exists(name), f"{name!r} is listed but does not exist"
                versions = store.versions(name)
                assert versions, f"{name!r} is listed with no version"
                tags = store.tags(name)
                live = {v.version for v in versions}
                assert set(tags.values()) <= live, (name, tags, live)
                assert store.metadata(name).version == max(live)
                seen[f"{bucket}/{store.kind}/{name}"] = {
                    "versions": {v.version: _digest(store, name, v.version) for v in versions},
                    "tags": tags,
                    "attributes": {v.version: v.attributes for v in versions},
                }
            for name in ("d", "m", "fresh", "bystander", "sales", "reg"):
                if name not in listed:
                    assert not store.exists(name), f"{name!r} exists but is not listed"
    return seen


#: Operations over several objects that are atomic per object (a sync copies object by
#: object): after a kill, each object is as before or as after.
PER_OBJECT = {"sync"}


def check(om: Any, before: dict[str, Any], after: dict[str, Any], per_object: bool = False) -> None:
    """The invariants after a kill (see the module doc); raises AssertionError."""
    now = snapshot(om)
    if per_object:
        for key in set(before) | set(after) | set(now):
            assert now.get(key) in (before.get(key), after.get(key)), _diff(now, before, after)
    else:
        assert now in (before, after), _diff(now, before, after)
    # a later write to the same names is never disturbed by what the kill left
    om.datasets.put(frame(7), "d", append=om.datasets.exists("d"))
    om.models.put({"m": 7}, "m")
    om.datasets.put(frame(8), "fresh", append=om.datasets.exists("fresh"))
    assert om.models.get("m") == {"m": 7}
    assert frame(7)["id"].isin(om.datasets.get("d")["id"]).all()
    assert set(om.datasets.list()) >= {"d", "fresh"} and "m" in om.models.list()


def _diff(now: dict[str, Any], before: dict[str, Any], after: dict[str, Any]) -> str:
    def changed(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        keys = set(a) | set(b)
        return {k: (a.get(k), b.get(k)) for k in sorted(keys) if a.get(k) != b.get(k)}

    return f"neither before nor after: vs before {changed(now, before)}; vs after " + str(
        changed(now, after)
    )


if __name__ == "__main__":
    child(*sys.argv[1:5])
