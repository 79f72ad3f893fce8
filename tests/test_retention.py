"""Garbage collection and retention: ``gc`` removes only what no live version references
and only after the grace period; ``prune`` drops old versions but never a tagged one nor a
payload a kept version uses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import omfs

WRITER = Path(__file__).parent / "helpers" / "omfs_writer.py"


def frame(i, rows=5):
    return pd.DataFrame({"a": np.arange(i * rows, (i + 1) * rows)})


def data_files(ctx, store, name):
    return sorted(ctx.storage.list_names(f"{ctx.bucket}/{store}/{name}/_data"))


def test_gc_removes_leftovers_and_keeps_every_live_version(ctx):
    for i in range(3):
        ctx.datasets.put(frame(i), "d", append=i > 0)
    ctx.models.put({"m": 1}, "m")
    ctx.models.put({"m": 2}, "m")
    # leftovers of crashed writes: an orphaned part, an orphaned model payload, a marker
    ctx.storage.write_bytes(f"{ctx.bucket}/datasets/d/_data/{'a' * 32}.parquet", b"x" * 10)
    ctx.storage.write_bytes(f"{ctx.bucket}/models/m/_data/{'b' * 32}.joblib", b"y" * 20)
    ctx.storage.write_bytes(f"{ctx.bucket}/datasets/_index/ghost", b"")
    before = {n: ctx.datasets.get("d@v" + str(n)) for n in (1, 2, 3)}
    assert ctx.gc(grace="1h")["files"] == []  # all younger than the grace period
    report = ctx.gc(grace=0, dry_run=True, force=True)
    keys = {f["key"].rsplit("/", 1)[-1] for f in report["files"]}
    assert keys == {f"{'a' * 32}.parquet", f"{'b' * 32}.joblib", "ghost"}
    assert report["bytes"] == 30 and report["dry_run"]
    assert ctx.datasets.list() == ["d", "ghost"]  # a dry run deletes nothing
    report = ctx.gc(grace=0, force=True)
    assert len(report["files"]) == 3
    assert ctx.datasets.list() == ["d"]
    for n, df in before.items():
        pd.testing.assert_frame_equal(ctx.datasets.get(f"d@v{n}"), df)
    assert ctx.models.get("m") == {"m": 2} and ctx.models.get("m@v1") == {"m": 1}
    assert ctx.gc(grace=0, force=True)["files"] == []
    from omfs.maintenance import fsck

    assert fsck(ctx) == []


def test_gc_after_drops_and_prune_frees_their_files(ctx):
    for i in range(6):
        ctx.models.put({"i": i}, "m")
    ctx.models.drop("m@v2")
    assert ctx.models.prune("m", keep_last=2) == [1, 3, 4]
    assert len(data_files(ctx, "models", "m")) == 4  # two payloads, each with its sidecar
    ctx.datasets.put(frame(0), "gone")
    ctx.datasets.drop("gone")
    ctx.gc(grace=0, force=True)
    log = ctx.storage.list_names(f"{ctx.bucket}/datasets/gone/_log")
    assert log == [] or sorted(log) == sorted([f"{2:020d}.json", "_last.json"])
    assert ctx.models.get("m") == {"i": 5}


def test_gc_never_hurts_a_writer_in_flight(shared_root):
    """A writer stopped between writing its part and committing it: gc leaves its part
    alone, even with no grace period (the writer holds a lease), lists the object as
    skipped, and the commit that follows reads back whole."""
    root, options = shared_root
    from omfs_writer import frame as writer_frame

    om = omfs.setup(root, storage_options=options)
    om.datasets.put(writer_frame(9, 0, 5), "events")
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), root, json.dumps(options), "events", "append", "5", "1", "0"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMFS_TEST_KILL_AT": "pause-commit"},
    )
    assert proc.stdout.readline().strip() == "ready"
    proc.stdin.write("go\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "paused"  # its part is written, not committed
    report = om.gc(grace="1h")
    assert report["files"] == []
    forced = om.gc(grace=0, force=True)
    assert forced["files"] == []
    assert [(s["name"], s["why"]) for s in forced["skipped"]] == [
        ("events", "a write is in progress (it holds a gc lease)")
    ]
    proc.stdin.write("go\n")
    proc.stdin.close()
    assert proc.stdout.read().strip() == "committed 1"
    assert proc.wait(timeout=60) == 0
    assert len(om.datasets.get("events")) == 10


def test_prune_keeps_tagged_versions_and_shared_parts(ctx):
    for i in range(6):
        ctx.datasets.put(frame(i), "d", append=i > 0)  # every version shares earlier parts
    ctx.datasets.tag("d@v2", "prod")
    assert ctx.datasets.prune("d", keep_last=2, dry_run=True) == [1, 3, 4]
    assert [v.version for v in ctx.datasets.versions("d")] == [1, 2, 3, 4, 5, 6]
    assert ctx.datasets.prune("d", keep_last=2) == [1, 3, 4]
    assert [v.version for v in ctx.datasets.versions("d")] == [2, 5, 6]
    assert list(ctx.datasets.get("d")["a"]) == list(range(30))  # v6 still has all its parts
    assert list(ctx.datasets.get("d@prod")["a"]) == list(range(10))
    assert len(data_files(ctx, "datasets", "d")) == 6  # every part is still used by v6
    ctx.datasets.put(frame(9), "d")  # a replace: v7 uses one new part only
    ctx.datasets.untag("d", "prod")
    assert ctx.datasets.prune("d", keep_last=1) == [2, 5, 6]
    assert len(data_files(ctx, "datasets", "d")) == 1
    assert list(ctx.datasets.get("d")["a"]) == list(range(45, 50))


def test_prune_older_than(ctx):
    for i in range(3):
        ctx.models.put({"i": i}, "m")
    assert ctx.models.prune("m", older_than="1h") == []
    time.sleep(0.05)
    assert ctx.models.prune("m", older_than="0s", keep_last=1) == [1, 2]
    with pytest.raises(ValueError, match="Invalid duration"):
        ctx.models.prune("m", older_than="soon")
    with pytest.raises(ValueError, match="needs keep_last"):
        ctx.models.prune("m")


@pytest.mark.slow
@pytest.mark.parametrize("operation", ["gc", "prune"])
def test_sigkill_during_gc_and_prune_keeps_every_kept_version(tmp_path, operation):
    root = tmp_path / "ctx"
    om = omfs.setup(root)
    for i in range(30):
        om.datasets.put(frame(i, 200), "d", append=i > 0)
        om.datasets.put(frame(i, 200), f"orphans/{i}")
        om.storage.write_bytes(f"omega/datasets/d/_data/{i:032x}.parquet", b"z" * 1000)
    om.datasets.tag("d@v5", "prod")
    keep = {5, 29, 30}
    expected = {v: om.datasets.get(f"d@v{v}") for v in keep}
    call = (
        "om.gc(grace=0, force=True)" if operation == "gc" else "om.datasets.prune('d', keep_last=2)"
    )
    for delay in (0.05, 0.15, 0.3, 0.6):
        code = f"import omfs; om = omfs.setup({str(root)!r}); print('go', flush=True); {call}"
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "go"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
        for v, df in expected.items():
            pd.testing.assert_frame_equal(om.datasets.get(f"d@v{v}"), df)
    om.datasets.prune("d", keep_last=2)
    om.gc(grace=0, force=True)
    for v, df in expected.items():
        pd.testing.assert_frame_equal(om.datasets.get(f"d@v{v}"), df)
    from omfs.maintenance import fsck

    assert fsck(om) == []


def test_gc_and_prune_from_the_command_line(tmp_path, om_script):
    root = tmp_path / "ctx"
    om = omfs.setup(root)
    for i in range(4):
        om.models.put({"i": i}, "m")
    om.storage.write_bytes(f"omega/models/m/_data/{'c' * 32}.joblib", b"q" * 7)
    env = {**os.environ, "OMFS_ROOT": str(root)}

    def run(*args):
        return subprocess.run([om_script, *args], capture_output=True, text=True, env=env)

    out = run("--json", "models", "prune", "m", "--keep-last", "1", "--dry-run")
    assert out.returncode == 0 and [r["would drop"] for r in json.loads(out.stdout)] == [1, 2, 3]
    out = run("models", "prune", "m", "--keep-last", "1")
    assert out.returncode == 0 and out.stdout.split() == ["m", "1", "m", "2", "m", "3"]
    out = run("models", "prune", "m")
    assert out.returncode == 2 and "--keep-last" in out.stderr
    out = run("gc", "--dry-run", "--grace", "0s", "--force")
    assert out.returncode == 0 and "would remove 1 file(s), 7 bytes" in out.stderr
    out = run("gc", "--grace", "0s", "--force")
    assert "removed 1 file(s), 7 bytes" in out.stderr
    out = run("gc", "--grace", "0s", "--force")
    assert "nothing to remove" in out.stderr
    out = run("gc", "--grace", "whenever")
    assert out.returncode == 1 and "Invalid duration 'whenever'" in out.stderr


def _hide(ctx, store, name):
    """What a kill leaves between a first commit and its marker, or after a drop hid it."""
    ctx.storage.delete([f"{ctx.bucket}/{store.kind}/_index/{name}"])


def test_a_first_write_killed_before_its_marker_is_invisible_and_collected(ctx):
    ctx.datasets.put(frame(0), "half")
    _hide(ctx, ctx.datasets, "half")
    assert ctx.datasets.list() == [] and not ctx.datasets.exists("half")
    with pytest.raises(FileNotFoundError):
        ctx.datasets.versions("half")
    assert ctx.gc(grace="1h")["files"] == []  # maybe still in flight: left alone
    report = ctx.gc(grace=0, force=True)
    assert {f["why"] for f in report["files"]} >= {"payload no live version uses"}
    assert ctx.storage.list_names(f"{ctx.bucket}/datasets/half/_data") == []
    ctx.datasets.put(frame(1), "half")  # a new write starts afresh
    assert ctx.datasets.metadata("half").version == 1
    assert list(ctx.datasets.get("half")["a"]) == list(range(5, 10))


def test_a_later_write_completes_an_interrupted_drop(ctx):
    for i in range(3):
        ctx.models.put({"i": i}, "m")
        ctx.datasets.put(frame(i), "d", append=i > 0)
    for store, name in ((ctx.models, "m"), (ctx.datasets, "d")):
        ctx.storage.write_bytes(f"{ctx.bucket}/{store.kind}/{name}/_log/_dropping", b"")
        _hide(ctx, store, name)  # killed right after hiding the object
        assert not store.exists(name) and store.list() == []
    meta = ctx.models.put({"i": 9}, "m")
    assert meta.version == 1, "the drop was completed first: no old version comes back"
    assert [v.version for v in ctx.models.versions("m")] == [1]
    assert not ctx.storage.list_names(f"{ctx.bucket}/models/m/_log", startswith="_dropping")
    assert ctx.datasets.put(frame(7), "d").version == 1  # a replacing put: no false conflict
    assert list(ctx.datasets.get("d")["a"]) == list(range(35, 40))


def test_a_first_write_in_flight_is_continued_not_dropped(ctx):
    ctx.models.put({"i": 0}, "m")
    _hide(ctx, ctx.models, "m")  # between its commit and its marker (no drop intent)
    ctx.models.put({"i": 1}, "m")
    assert [v.version for v in ctx.models.versions("m")] == [1, 2]
