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
    from omfs.ops.fsck import fsck

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
    # only gc's own tombstone (commit 3, made before it collected: see restore()) and hint
    assert log == [] or sorted(log) == sorted([f"{3:020d}.json", "_last.json"])
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
    from omfs.ops.fsck import fsck

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


# -- issue 17, item 4: prune never removes what a user needs ------------------------------------
def test_prune_older_than_alone_keeps_the_latest_version(shared_root):
    """``prune --older-than 1s`` used to drop every version, the object with them."""
    root, options = shared_root
    om = omfs.setup(root, storage_options=options)
    for i in range(3):
        om.datasets.put(frame(i), "keepme")
    om.models.put({"i": 0}, "solo")
    time.sleep(0.05)
    assert om.datasets.prune("keepme", older_than="0s") == [1, 2]
    assert om.datasets.versions("keepme")[-1].version == 3
    pd.testing.assert_frame_equal(om.datasets.get("keepme"), frame(2))
    assert om.models.prune("solo", older_than="0s", keep_last=0) == []
    assert om.models.get("solo") == {"i": 0}


def test_durations_take_min_and_refuse_a_bare_m(ctx):
    from datetime import timedelta

    from omfs.objects.versioned import parse_duration

    assert parse_duration("90s") == timedelta(seconds=90)
    assert parse_duration("5min") == timedelta(minutes=5)
    assert parse_duration("1h") == timedelta(hours=1)
    assert parse_duration("30d") == timedelta(days=30)
    assert parse_duration("2w") == timedelta(weeks=2)
    ambiguous = "Duration '1m' is ambiguous: write 1min for 1 minute(s) or 30d for 1 month(s)"
    with pytest.raises(ValueError) as err:
        parse_duration("1m")
    assert str(err.value) == ambiguous
    ctx.models.put({"i": 0}, "m")
    with pytest.raises(ValueError, match="'1m' is ambiguous"):
        ctx.models.prune("m", older_than="1m")
    with pytest.raises(ValueError, match="'90m' is ambiguous: write 90min"):
        ctx.gc(grace="90m")


def test_prune_asks_on_a_terminal_and_takes_yes(tmp_path, om_script):
    import pty

    root = tmp_path / "ctx"
    om = omfs.setup(root)
    for i in range(3):
        om.models.put({"i": i}, "m")
    env = {**os.environ, "OMFS_ROOT": str(root)}
    for answer, kept in ((b"n\n", [1, 2, 3]), (b"y\n", [3])):
        pid, fd = pty.fork()
        if pid == 0:  # the child: om on a terminal
            os.execve(om_script, [om_script, "models", "prune", "m", "--keep-last", "1"], env)
        output = b""
        while b"[y/N]" not in output:
            output += os.read(fd, 1024)
        assert b"Drop 2 version(s) of model 'm' in bucket 'omega': v1, v2?" in output
        os.write(fd, answer)
        try:
            while os.read(fd, 1024):
                pass
        except OSError:
            pass
        os.waitpid(pid, 0)
        assert [v.version for v in omfs.setup(root).models.versions("m")] == kept
    om.models.put({"i": 3}, "m")
    # not on a terminal: as drop, no question; --yes is accepted there too
    out = subprocess.run(
        [om_script, "models", "prune", "m", "--older-than", "1m", "--yes"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert out.returncode == 1 and "'1m' is ambiguous" in out.stderr
    assert "Traceback" not in out.stderr
    out = subprocess.run(
        [om_script, "models", "prune", "m", "--older-than", "0s", "--yes"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    assert [v.version for v in omfs.setup(root).models.versions("m")] == [4]


# -- issue 17, item 5: gc never races a long writer ---------------------------------------------
def test_gc_refuses_a_grace_below_the_floor_unless_forced(tmp_path, om_script):
    om = omfs.setup(tmp_path / "ctx")
    om.models.put({"i": 0}, "m")
    with pytest.raises(ValueError, match="below the floor of 10 minutes"):
        om.gc(grace="3s")
    with pytest.raises(ValueError, match="below the floor"):
        om.gc(grace=0)
    assert om.gc(grace="3s", force=True)["files"] == []
    assert om.gc(grace="10min")["files"] == []
    env = {**os.environ, "OMFS_ROOT": str(tmp_path / "ctx")}
    out = subprocess.run([om_script, "gc", "--grace", "1min"], capture_output=True, text=True,
                         env=env)  # fmt: skip
    assert out.returncode == 1 and "below the floor of 10 minutes" in out.stderr
    assert "--force" in out.stderr and "Traceback" not in out.stderr


def test_gc_measures_ages_on_the_storage_clock(shared_root, monkeypatch):
    """A client clock two days ahead must not make a fresh file look old."""
    root, options = shared_root
    om = omfs.setup(root, storage_options=options)
    om.datasets.put(frame(0), "d")
    orphan = f"{om.bucket}/datasets/d/_data/{'f' * 32}.parquet"
    om.storage.write_bytes(orphan, b"fresh, unreferenced")
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 2 * 86400)
    report = om.gc(grace="1h")
    assert report["files"] == []
    assert om.storage.exists(orphan)
    monkeypatch.setattr(time, "time", real)
    assert [f["key"] for f in om.gc(grace=0, force=True)["files"]] == [orphan]


SLOW_WRITER = """
import sys, json
import pyarrow as pa
import omfs
from omfs.objects.datasets import write as store
store._STREAM_PART_BYTES = 1  # one part per batch
om = omfs.setup(sys.argv[1], storage_options=json.loads(sys.argv[2]))
schema = pa.schema([("a", pa.int64())])

def batches():
    for i in range(3):
        print(f"need {i}", flush=True)
        sys.stdin.readline()
        yield pa.record_batch([pa.array(range(i * 5, i * 5 + 5), pa.int64())], schema=schema)

meta = om.datasets.put(pa.RecordBatchReader.from_batches(schema, batches()), "long")
print(f"committed {meta.version}", flush=True)
"""


def test_a_long_writer_beside_gc_with_a_short_forced_grace(shared_root):
    """A streamed put whose first part is older than gc's grace (even 0) when gc runs:
    gc leaves the object alone, and the version it commits reads back whole."""
    root, options = shared_root
    om = omfs.setup(root, storage_options=options)
    om.datasets.put(frame(9), "long")
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_WRITER, root, json.dumps(options)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        for i in range(3):
            assert proc.stdout.readline().strip() == f"need {i}"
            if i == 1:  # part 0 is written: let it age past the grace, then collect
                time.sleep(2.2)  # ages on the storage's clock (S3: whole seconds)
                for grace in ("1s", 0):
                    report = om.gc(grace=grace, force=True)
                    assert report["files"] == []
                    assert [s["name"] for s in report["skipped"]] == ["long"]
                assert len(data_files(om, "datasets", "long")) == 2
            proc.stdin.write("go\n")
            proc.stdin.flush()
        assert proc.stdout.readline().strip() == "committed 2"
    finally:
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
    assert om.datasets.get("long")["a"].tolist() == list(range(15))
    assert om.storage.list_names(f"{om.bucket}/datasets/_leases") == []
    from omfs.ops.fsck import fsck

    assert fsck(om) == []


def test_a_writer_whose_lease_lapsed_refuses_to_commit(shared_root, monkeypatch):
    """A writer paused longer than the lease time (a suspended laptop) may have lost its
    files to gc: it commits nothing and says why, and leaves nothing behind."""
    import pyarrow as pa

    from omfs.errors import CommitConflictError
    from omfs.objects import lease as _lease
    from omfs.objects.datasets import write as store

    root, options = shared_root
    om = omfs.setup(root, storage_options=options)
    om.datasets.put(frame(0), "d")
    monkeypatch.setattr(store, "_STREAM_PART_BYTES", 1)
    paused = [0.0]
    real = _lease._clock
    monkeypatch.setattr(_lease, "_clock", lambda: real() + paused[0])
    schema = pa.schema([("a", pa.int64())])

    def batches():
        yield pa.record_batch([pa.array([1, 2], pa.int64())], schema=schema)
        paused[0] = _lease.LEASE_TTL  # the process stood still this long
        yield pa.record_batch([pa.array([3], pa.int64())], schema=schema)

    before = data_files(om, "datasets", "d")
    with pytest.raises(CommitConflictError, match="paused for longer than 300 s"):
        om.datasets.put(pa.RecordBatchReader.from_batches(schema, batches()), "d")
    assert [v.version for v in om.datasets.versions("d")] == [1]
    assert data_files(om, "datasets", "d") == before
    assert om.storage.list_names(f"{om.bucket}/datasets/_leases") == []


# -- issue 17, item 7: a killed upgrade finishes on re-run ------------------------------------
LEGACY = Path(__file__).parent / "fixtures" / "omfs-0.1-store"


def test_rerun_upgrade_finishes_a_killed_one_and_gc_says_what_it_skips(tmp_path):
    import shutil

    from omfs.ops.fsck import fsck, upgrade

    root = tmp_path / "old"
    shutil.copytree(LEGACY, root)
    om = omfs.setup(root)
    assert fsck(om) == []  # the 0.1 layout has no sidecars: not "missing"
    skipped = om.gc(grace=0, force=True)["skipped"]
    assert {s["name"] for s in skipped} == {"sales", "blob", "team/other", "arr", "reg", "p"}
    assert {s["why"] for s in skipped} == {"it is in the format-1 layout; run 'om upgrade' first"}
    assert len(upgrade(om)) == 6
    # what a kill after the commit of 'sales' left: its old sidecars
    old = "omega/datasets/sales/_versions"
    shutil.copytree(LEGACY / old, root / old)
    [skip] = om.gc(grace=0, force=True)["skipped"]
    assert skip["name"] == "sales" and "upgrade was interrupted" in skip["why"]
    assert upgrade(om) == [{"bucket": "omega", "store": "datasets", "name": "sales"}]
    assert not (root / old).exists()
    assert om.gc(grace=0, force=True)["skipped"] == []
    assert upgrade(om) == []
    assert fsck(om) == []
