"""A writer process for crash and concurrency tests.

usage: python omfs_writer.py ROOT OPTIONS_JSON NAME MODE ROWS COUNT WRITER_ID
MODE is ``put`` (replace), ``append``, or ``compact`` (append, and compact every third
time); COUNT 0 means loop until killed. Prints ``ready`` once imports are done, waits for a
line on stdin, and prints ``committed N`` after each commit.

``OMFS_TEST_KILL_AT=pause-commit`` makes each new version wait, after its payload is written
and before its commit, for another line on stdin (it prints ``paused``).

``OMFS_TEST_KILL_AT=checkpoint|checkpoint-written|compact-part|compact-commit`` makes the
process SIGKILL itself at that point of the N-th time it gets there (``OMFS_TEST_KILL_AFTER``,
default 1): just before a checkpoint is created, just after (before the hint follows it),
after a merged part of a compaction is written, or just before a compaction commits.
"""

from __future__ import annotations

import json
import os
import signal
import sys

import numpy as np
import pandas as pd

import omfs


def frame(writer: int, generation: int, rows: int) -> pd.DataFrame:
    base = (writer * 1_000_000 + generation) * rows
    return pd.DataFrame(
        {
            "id": np.arange(base, base + rows, dtype="int64"),
            "gen": np.full(rows, generation, dtype="int64"),
            "writer": np.full(rows, writer, dtype="int64"),
            "payload": np.random.default_rng(generation).random(rows),
        }
    )


def _kill_at(point: str) -> None:
    """Patch omfs so that the process kills itself at ``point`` (see the module doc)."""
    from omfs.objects import log as _log
    from omfs.objects.datasets import store

    left = [int(os.environ.get("OMFS_TEST_KILL_AFTER", "1"))]

    def maybe_die() -> None:
        left[0] -= 1
        if left[0] <= 0:
            os.kill(os.getpid(), signal.SIGKILL)

    if point in ("checkpoint", "checkpoint-written"):
        real = _log.ObjectLog.write_checkpoint

        def write_checkpoint(self, full):
            if point == "checkpoint":
                maybe_die()
            real(self, full)
            if point == "checkpoint-written":
                maybe_die()

        _log.ObjectLog.write_checkpoint = write_checkpoint
    elif point == "compact-part":
        real_merge = store.DatasetStore._merge_parts

        def merge(self, *args, **kwargs):
            out = real_merge(self, *args, **kwargs)
            maybe_die()
            return out

        store.DatasetStore._merge_parts = merge
    elif point == "pause-commit":  # wait for a second line on stdin before committing
        real_try = _log.ObjectLog.try_commit

        def paused(self, state, commit, head=None):
            if commit.version is not None:
                print("paused", flush=True)
                sys.stdin.readline()
            return real_try(self, state, commit, head)

        _log.ObjectLog.try_commit = paused
    elif point == "compact-commit":
        real_commit = _log.ObjectLog.try_commit

        def try_commit(self, state, commit, head=None):
            if commit.op == "compact":
                maybe_die()
            return real_commit(self, state, commit, head)

        _log.ObjectLog.try_commit = try_commit


def main() -> None:
    root, options, name, mode, rows, count, writer = sys.argv[1:8]
    if os.environ.get("OMFS_TEST_KILL_AT"):
        _kill_at(os.environ["OMFS_TEST_KILL_AT"])
    om = omfs.setup(root, storage_options=json.loads(options))
    print("ready", flush=True)
    sys.stdin.readline()  # start when the test says "go", so kill times are measured from here
    generation = 0
    while int(count) == 0 or generation < int(count):
        generation += 1
        data = frame(int(writer), generation, int(rows))
        om.datasets.put(data, name, append=mode in ("append", "compact"))
        print(f"committed {generation}", flush=True)
        if mode == "compact" and generation % 3 == 0:
            om.datasets.compact(name)
            print(f"compacted {generation}", flush=True)


if __name__ == "__main__":
    main()
