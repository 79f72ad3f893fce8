"""The overhead of a trivial job run over a plain Dask task, on one local cluster.

    python benchmarks/jobs_bench.py [--runs 20]

Both run on the same LocalCluster (one worker process) against a local folder: a plain
``client.submit(f).result()`` of a function returning 1, and ``om.runtime.job("trivial")
.run().get()`` of a script whose ``run()`` returns 1 (which also reads the job's version,
creates and rewrites the run record and writes its captured output). Prints the median and
p90 of each after one warm-up, and the difference.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def _one() -> int:
    return 1


def _timings(fn, runs: int) -> list[float]:
    fn()  # warm-up: imports on the worker
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _show(label: str, times: list[float]) -> None:
    times = sorted(times)
    p90 = times[int(0.9 * (len(times) - 1))]
    print(f"{label:<22} median {statistics.median(times) * 1e3:7.1f} ms   p90 {p90 * 1e3:7.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    from distributed import Client, LocalCluster

    import omfs

    with (
        tempfile.TemporaryDirectory() as tmp,
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        om = omfs.setup(Path(tmp) / "ctx", cluster=client)
        script = Path(tmp) / "trivial.py"
        script.write_text("def run(om):\n    return 1\n")
        om.jobs.put(script, "trivial")
        plain = _timings(lambda: client.submit(_one, pure=False).result(), args.runs)
        job = _timings(lambda: om.runtime.job("trivial").run().get(), args.runs)
    _show("plain Dask task", plain)
    _show("job run", job)
    extra = statistics.median(job) - statistics.median(plain)
    print(f"overhead of a job run  {extra * 1e3:.1f} ms (median), {args.runs} runs each")


if __name__ == "__main__":
    main()
