"""The crash campaign over every mutating operation (see tests/helpers/omfs_crash.py).

For each operation and backend: kill the operation just before each of its storage writes
(injected kills) and at a few timed points, then check that readers see the state before
the operation or after it, never one between, with list/exists/versions/get/tags agreeing.

CI runs a sample (local: up to :data:`CI_LOCAL_POINTS` write points of each operation,
spread evenly from the first to the last, plus one timed kill; S3: the middle write).
``OMFS_CRASH_FULL=1`` (``nox -s crash``) kills at every write point plus timed points, at
least 30 kills per operation and backend, and prints the counts.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

import omfs

HELPER = Path(__file__).parent / "helpers" / "omfs_crash.py"
FULL = os.environ.get("OMFS_CRASH_FULL") == "1"
MIN_KILLS = 30
#: at most this many write points per local operation in the CI sample (first and last kept)
CI_LOCAL_POINTS = 10
COUNTS: dict[tuple[str, str], list[int]] = {}

import omfs_crash  # noqa: E402 - on sys.path via conftest


def run_child(root: str, options: dict, op: str, mode: str, timed: float | None = None):
    args = [sys.executable, str(HELPER), root, json.dumps(options), op, mode]
    if timed is None:
        return subprocess.run(args, capture_output=True, text=True, timeout=120)
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "go"
    time.sleep(timed)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    proc.stdout.close()
    proc.stderr.close()
    return proc


class Backend:
    """Makes fresh roots that start as a copy of one seeded root."""

    def __init__(self, kind: str, tmp_path: Path, request, seed=None):
        self.kind = kind
        self.tmp = tmp_path
        if kind == "local":
            self.options: dict = {}
            self.pristine = str(tmp_path / "pristine")
        else:
            self.options = request.getfixturevalue("s3_options")
            self.pristine = request.getfixturevalue("s3_root_factory")()
        (seed or omfs_crash.seed)(omfs.setup(self.pristine, storage_options=self.options))

    def fresh(self) -> str:
        if self.kind == "local":
            root = str(self.tmp / uuid.uuid4().hex)
            shutil.copytree(self.pristine, root)
            return root
        om = omfs.setup(self.pristine, storage_options=self.options)
        root = f"{self.pristine.rsplit('/', 1)[0]}/{uuid.uuid4().hex}"
        fs = om.storage.fs
        paths = fs.find(om.storage.root)
        fs.copy(paths, [root.removeprefix("s3://") + p[len(om.storage.root) :] for p in paths])
        return root

    def open(self, root: str):
        return omfs.setup(root, storage_options=self.options)


def kill_points(writes: int, backend: str) -> list[str]:
    calls = [f"call:{k}" for k in range(1, writes + 1)]
    if not FULL and backend == "s3":  # the sample CI runs: one kill mid-operation
        return [f"call:{(writes + 1) // 2}"]
    if not FULL:  # local kills are cheap: many write points, spread over the operation
        if writes > CI_LOCAL_POINTS:
            step = (writes - 1) / (CI_LOCAL_POINTS - 1)
            calls = [f"call:{round(1 + i * step)}" for i in range(CI_LOCAL_POINTS)]
        return [*calls, "timed"]
    timed = ["timed"] * max(3, MIN_KILLS - len(calls))
    return calls + timed


@pytest.mark.slow
@pytest.mark.timeout(3600 if FULL else 300)  # the full campaign kills 30 times per test
@pytest.mark.parametrize("backend", ["local", "s3"])
@pytest.mark.parametrize("op", sorted(omfs_crash.OPS))
def test_crash_campaign(op, backend, tmp_path, request):
    target = Backend(backend, tmp_path, request)
    before = omfs_crash.snapshot(target.open(target.pristine))
    # the state after the operation, run whole; and how many storage writes it makes
    done = target.fresh()
    out = run_child(done, target.options, op, "count")
    assert out.returncode == 0, out.stderr
    writes = int(out.stdout.strip())
    after = omfs_crash.snapshot(target.open(done))
    assert writes >= 1
    rng = random.Random(f"{op}-{backend}")
    kills = 0
    for point in kill_points(writes, backend):
        root = target.fresh()
        if point == "timed":
            run_child(root, target.options, op, "timed", timed=rng.uniform(0.0, 0.08))
        else:
            proc = run_child(root, target.options, op, point)
            assert proc.returncode == -signal.SIGKILL, (point, proc.stderr)
        om = target.open(root)
        try:
            omfs_crash.check(om, before, after, per_object=op in omfs_crash.PER_OBJECT)
        except AssertionError as exc:
            raise AssertionError(f"{op} on {backend}, killed at {point}: {exc}") from None
        kills += 1
    COUNTS[(op, backend)] = [writes, kills]
    if FULL:
        print(
            f"\ncrash campaign: {op} {backend}: {writes} write points, {kills} kills, 0 violations"
        )


def _bundle_for(target: Backend, tmp_path: Path) -> Path:
    """A bundle that fast-forwards ``d`` and ``m`` of the seeded root and brings ``fresh``."""
    om = target.open(target.fresh())
    om.datasets.put(omfs_crash.frame(5), "d", append=True)
    om.models.put({"m": 5}, "m", tag="prod")
    om.datasets.put(omfs_crash.frame(6), "fresh")
    path = tmp_path / "crash-bundle.tar"
    omfs.export(om, ["d", "models/m", "fresh"], path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["local", "s3"])
def test_crash_import(backend, tmp_path, request, monkeypatch):
    """Kill `import` at its storage writes: each object reads as before or after, a re-run
    completes, fsck is clean and no staging folder is left."""
    from omfs.ops.bundle import STAGING
    from omfs.ops.fsck import fsck

    target = Backend(backend, tmp_path, request)
    monkeypatch.setenv("OMFS_CRASH_BUNDLE", str(_bundle_for(target, tmp_path)))
    before = omfs_crash.snapshot(target.open(target.pristine))
    done = target.fresh()
    out = run_child(done, target.options, "import", "count")
    assert out.returncode == 0, out.stderr
    writes = int(out.stdout.strip())
    after = omfs_crash.snapshot(target.open(done))
    rng = random.Random(f"import-{backend}")
    for point in kill_points(writes, backend):
        root = target.fresh()
        if point == "timed":
            run_child(root, target.options, "import", "timed", timed=rng.uniform(0.0, 0.08))
        else:
            proc = run_child(root, target.options, "import", point)
            assert proc.returncode == -signal.SIGKILL, (point, proc.stderr)
        om = target.open(root)
        now = omfs_crash.snapshot(om)
        for key in set(before) | set(after) | set(now):  # objects import one at a time
            assert now.get(key) in (before.get(key), after.get(key)), (point, key)
        omfs.import_(os.environ["OMFS_CRASH_BUNDLE"], om)  # the re-run completes
        assert omfs_crash.snapshot(om) == after, point
        assert fsck(om) == [], point
        assert [k for k, _, _ in om.storage.inventory(STAGING)] == [], point
        omfs_crash.check(om, after, after)


@pytest.mark.slow
@pytest.mark.timeout(3600 if FULL else 300)
@pytest.mark.parametrize("backend", ["local", "s3"])
@pytest.mark.parametrize("op", sorted(omfs_crash.RERUN_OPS))
def test_crash_rerun(op, backend, tmp_path, request):
    """Kill ``op`` before each of its storage writes: readers see before or after, running
    it again completes the job (the state after, nothing left for a re-run or for gc to
    skip but the killed writer's lease), and fsck is clean."""
    from omfs.ops.fsck import fsck

    seed = omfs_crash.seed_legacy if op == "upgrade" else None
    target = Backend(backend, tmp_path, request, seed)
    before = omfs_crash.snapshot(target.open(target.pristine))
    done = target.fresh()
    out = run_child(done, target.options, op, "count")
    assert out.returncode == 0, out.stderr
    writes = int(out.stdout.strip())
    after = omfs_crash.snapshot(target.open(done))
    for point in kill_points(writes, backend):
        root = target.fresh()
        if point == "timed":
            run_child(root, target.options, op, "timed", timed=0.05)
        else:
            proc = run_child(root, target.options, op, point)
            assert proc.returncode == -signal.SIGKILL, (point, proc.stderr)
        om = target.open(root)
        where = f"{op} on {backend}, killed at {point}"
        assert omfs_crash.snapshot(om) in (before, after), where
        omfs_crash.RERUN_OPS[op](om)
        assert omfs_crash.snapshot(om) == after, where
        assert fsck(om) == [], where
        skipped = om.gc(grace=0, force=True)["skipped"]
        assert all("gc lease" in s["why"] for s in skipped), (where, skipped)
        assert omfs_crash.RERUN_OPS[op](om) in ([], None), where  # nothing left to do
        left = [k for k, *_ in om.storage.walk("omega") if "/_versions/" in k]
        assert left == [], (where, left)


@pytest.mark.slow
@pytest.mark.timeout(3600 if FULL else 300)
@pytest.mark.parametrize("backend", ["local", "s3"])
@pytest.mark.parametrize("op", omfs_crash.REMOTE_OPS)
def test_crash_then_rerun_completes(op, backend, tmp_path, request):
    """restore and pull --rebase: after a kill at each storage write, both sides (this
    context and the remote) read as before or after; a re-run ends in the after state on
    both, and fsck is clean."""
    from omfs.ops.fsck import fsck

    target = Backend(backend, tmp_path, request)

    def both(root):
        om = target.open(root)
        return omfs_crash.snapshot(om), omfs_crash.snapshot(omfs_crash.remote_of(om))

    before = both(target.pristine)
    done = target.fresh()
    out = run_child(done, target.options, op, "count")
    assert out.returncode == 0, out.stderr
    after = both(done)
    assert after != before
    for point in kill_points(int(out.stdout.strip()), backend):
        if point == "timed":
            continue
        root = target.fresh()
        proc = run_child(root, target.options, op, point)
        assert proc.returncode == -signal.SIGKILL, (point, proc.stderr)
        here, there = both(root)
        assert here in (before[0], after[0]), f"{op} {backend} {point}: this side"
        assert there in (before[1], after[1]), f"{op} {backend} {point}: the remote"
        rerun = run_child(root, target.options, op, "run")
        assert rerun.returncode == 0, (point, rerun.stderr)
        assert both(root) == after, f"{op} {backend} {point}: the re-run did not complete"
        om = target.open(root)
        assert fsck(om) == [] and fsck(omfs_crash.remote_of(om)) == [], point


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_killed_sync_completes_on_rerun_and_fsck_is_clean(tmp_path, request):
    """A sync killed at a storage write (every third one, and the last), then run again:
    the target ends exactly as after an uninterrupted sync, and fsck finds nothing."""
    target = Backend("local", tmp_path, request)
    done = target.fresh()
    out = run_child(done, {}, "sync", "count")
    assert out.returncode == 0, out.stderr
    writes = int(out.stdout.strip())
    after = omfs_crash.snapshot(target.open(done))
    points = sorted({*range(1, writes + 1, 3), writes})
    for k in points:
        root = target.fresh()
        proc = run_child(root, {}, "sync", f"call:{k}")
        assert proc.returncode == -signal.SIGKILL, (k, proc.stderr)
        again = run_child(root, {}, "sync", "run")
        assert again.returncode == 0, (k, again.stderr)
        om = target.open(root)
        assert omfs_crash.snapshot(om) == after, f"killed at write {k} of {writes}"
        for store in (om.datasets, om.models):
            for name in store.list():
                assert store.fsck(name) == [], (k, name)
