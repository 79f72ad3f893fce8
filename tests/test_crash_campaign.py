"""The crash campaign over every mutating operation (see tests/helpers/omfs_crash.py).

For each operation and backend: kill the operation just before each of its storage writes
(injected kills) and at a few timed points, then check that readers see the state before
the operation or after it, never one between, with list/exists/versions/get/tags agreeing.

CI runs a sample (local: every write point of each operation plus one timed kill; S3: the
middle write); ``OMFS_CRASH_FULL=1`` (``nox -s crash``) kills at every
write point plus timed points, at least 30 kills per operation and backend, and prints the
counts.
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

    def __init__(self, kind: str, tmp_path: Path, request):
        self.kind = kind
        self.tmp = tmp_path
        if kind == "local":
            self.options: dict = {}
            self.pristine = str(tmp_path / "pristine")
        else:
            self.options = request.getfixturevalue("s3_options")
            self.pristine = request.getfixturevalue("s3_root_factory")()
        omfs_crash.seed(omfs.setup(self.pristine, storage_options=self.options))

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
    if not FULL:  # every write point of a local operation is cheap to kill at
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
