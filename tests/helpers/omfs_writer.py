"""A writer process for crash and concurrency tests.

usage: python omfs_writer.py ROOT OPTIONS_JSON NAME MODE ROWS COUNT WRITER_ID
MODE is ``put`` (replace) or ``append``; COUNT 0 means loop until killed. Prints ``ready``
once imports are done, waits for a line on stdin, and prints ``committed N`` after each commit.
"""

from __future__ import annotations

import json
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


def main() -> None:
    root, options, name, mode, rows, count, writer = sys.argv[1:8]
    om = omfs.setup(root, storage_options=json.loads(options))
    print("ready", flush=True)
    sys.stdin.readline()  # start when the test says "go", so kill times are measured from here
    generation = 0
    while int(count) == 0 or generation < int(count):
        generation += 1
        om.datasets.put(frame(int(writer), generation, int(rows)), name, append=mode == "append")
        print(f"committed {generation}", flush=True)


if __name__ == "__main__":
    main()
