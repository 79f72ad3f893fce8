"""``om ui``'s dataset preview with a ``where`` filter on a 4M-row dataset, beside a full
filtered read (its peer: what the preview would cost if it read every matching row).

    python benchmarks/ui_preview_bench.py [rows]

Builds the dataset once in a local folder (``$OMFS_UI_BENCH_ROOT``, default
``/tmp/omfs-ui-preview-bench``; reused), then times 5 previews (50 rows, as the page shows)
and 3 full filtered reads of each filter; prints the median seconds.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import numpy as np
import pandas as pd

import omfs
from omfs.objects.datasets.where import parse_where
from omfs.ui import objects

FILTERS = [[], ["qty>10"], ["region==EU"], ["qty==99"], ["qty>1000"]]


def median_seconds(call, times: int) -> float:
    spent = []
    for _ in range(times):
        start = time.perf_counter()
        call()
        spent.append(time.perf_counter() - start)
    return statistics.median(spent)


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 4_000_000
    root = os.environ.get("OMFS_UI_BENCH_ROOT", "/tmp/omfs-ui-preview-bench")
    om = omfs.setup(root)
    name = f"big{rows}"
    if not om.datasets.exists(name):
        rng = np.random.default_rng(0)
        frame = pd.DataFrame(
            {
                "qty": rng.integers(0, 100, rows),
                "region": rng.choice(["EU", "US", "APAC"], rows),
                "x": rng.random(rows),
            }
        )
        om.datasets.put(frame, name)
    print(f"dataset {name}: {rows:,} rows in {root}")
    print(f"{'where':<14} {'UI preview (s)':>15} {'full filtered read (s)':>23}")
    for where in FILTERS:
        filters = parse_where(where)
        preview = median_seconds(lambda f=filters: objects.preview(om.datasets, name, f), 5)
        full = median_seconds(lambda f=filters: om.datasets.get(name, **f).head(50), 3)
        print(f"{' '.join(where) or '(none)':<14} {preview:>15.3f} {full:>23.3f}")


if __name__ == "__main__":
    main()
