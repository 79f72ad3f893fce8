"""Memory of `om datasets put` for a large CSV (streamed), beside its file size.

    python benchmarks/csv_import.py [--millions 22]   # 22 million rows: about 1.3 GB

Writes a CSV of ids, ISO dates, floats and short strings to a temporary folder, imports it
with the `om` CLI in a child process and reports that process's peak resident memory
(``ru_maxrss``) and wall time. The target: under ~2x the file size.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def write_csv(path: Path, millions: int) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pcsv

    rng = np.random.default_rng(0)
    n = 1_000_000
    schema = pa.schema(
        [
            ("id", pa.int64()),
            ("day", pa.string()),
            ("amount", pa.float64()),
            ("region", pa.string()),
            ("note", pa.string()),
        ]
    )
    start = np.datetime64("2020-01-01")
    with pcsv.CSVWriter(str(path), schema) as writer:
        for k in range(millions):
            days = start + rng.integers(0, 1500, n).astype("timedelta64[D]")
            writer.write_table(
                pa.table(
                    {
                        "id": np.arange(k * n, (k + 1) * n),
                        "day": np.datetime_as_string(days),
                        "amount": rng.random(n) * 1000,
                        "region": rng.choice(["EU", "US", "APAC"], n),
                        "note": rng.choice(["first order", "returning customer", "promo"], n),
                    },
                    schema=schema,
                )
            )


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--millions", type=int, default=22)
    args = parser.parse_args(argv)
    om = str(Path(sys.executable).parent / "om")
    with tempfile.TemporaryDirectory(prefix="omfs-csv-bench-") as tmp:
        csv = Path(tmp) / "big.csv"
        write_csv(csv, args.millions)
        size = csv.stat().st_size
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        t0 = time.perf_counter()
        subprocess.run(
            [om, "--root", str(Path(tmp) / "ctx"), "datasets", "put", str(csv), "big"],
            check=True,
            capture_output=True,
        )
        elapsed = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        if peak <= before * 1024:
            print("warning: the peak may belong to an earlier child", file=sys.stderr)
    print(
        f"| `om datasets put` of a {size / 1e9:.2f} GB CSV ({args.millions}M rows) | "
        f"peak memory {peak / 1e6:,.0f} MB ({peak / size:.2f}x the file) | {elapsed:.1f} s |"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
