"""``om ui`` first response on a big context: 1,000 models x 10 versions, 1,000 datasets.

    python benchmarks/ui_bench.py [models] [versions] [datasets]

Builds the context once in a local folder (``$OMFS_UI_BENCH_ROOT``, default
``/tmp/omfs-ui-bench``; reused when it is complete), starts ``om ui``'s app under uvicorn in
another process, and times 20 loads of each page with httpx (the whole HTML: the server's
reads and the Jinja render; the CSS and htmx are static files). Prints p50 and p99.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time
from multiprocessing import Process
from pathlib import Path

import httpx
import pandas as pd

import omfs

LOADS = 20
PAGES = [
    "/",
    "/models",
    "/models?page=10",
    "/models?q=m005*",
    "/datasets",
    "/datasets?page=10",
    "/jobs",
    "/environments",
    "/models/m00500",
    "/datasets/d00500",
]


def build(root: Path, models: int, versions: int, datasets: int) -> float:
    """Fill ``root`` (skipped when its marker says it is complete); seconds taken."""
    marker = root / f".built-{models}x{versions}-{datasets}"
    if marker.exists():
        return 0.0
    start = time.perf_counter()
    om = omfs.setup(root)
    frame = pd.DataFrame({"qty": range(100), "region": ["EU", "US"] * 50})
    done = set(om.datasets.list())
    for i in range(datasets):
        if f"d{i:05d}" not in done:
            om.datasets.put(frame, f"d{i:05d}")
    halves = [(0, models // 2), (models // 2, models)]
    workers = [Process(target=build_models, args=(str(root), *h, versions)) for h in halves]
    for worker in workers:  # two processes: the puts are CPU-bound
        worker.start()
    for worker in workers:
        worker.join()
        if worker.exitcode:
            raise SystemExit("building the models failed")
    marker.touch()
    return time.perf_counter() - start


def build_models(root: str, first: int, last: int, versions: int) -> None:
    """Models ``first`` to ``last - 1`` with ``versions`` versions each (resumes a build
    that stopped: a complete model is kept, a partial one completed)."""
    om = omfs.setup(root)
    for i in range(first, last):
        name = f"m{i:05d}"
        have = om.models.state(name).next_version - 1
        for v in range(have, versions):
            tag = "prod" if v == versions - 2 else None
            om.models.put({"coef": [i, v]}, name, attributes={"v": v}, tag=tag)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(root: Path, port: int) -> subprocess.Popen[bytes]:
    code = (
        "import omfs, uvicorn; from omfs.ui import create_app; "
        f"uvicorn.run(create_app(omfs.setup({str(root)!r})), host='127.0.0.1', port={port}, "
        "log_level='warning')"
    )
    return subprocess.Popen([sys.executable, "-c", code])


def wait(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            httpx.get(url + "/static/ui.css", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit("om ui did not start")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    models, versions, datasets = (int(a) for a in [*sys.argv[1:], "1000", "10", "1000"][:3])
    root = Path(os.environ.get("OMFS_UI_BENCH_ROOT", "/tmp/omfs-ui-bench"))
    took = build(root, models, versions, datasets)
    print(f"context: {models:,} models x {versions} versions, {datasets:,} datasets at {root}")
    print(f"built in {took:.0f} s" if took else "built before (reused)")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = serve(root, port)
    try:
        wait(url, proc)
        print(f"{'page':<22} {'p50 ms':>8} {'p99 ms':>8} {'bytes':>8}")
        with httpx.Client(base_url=url, timeout=30) as client:
            for page in PAGES:
                times, size = [], 0
                for _ in range(LOADS):
                    start = time.perf_counter()
                    answer = client.get(page)
                    times.append((time.perf_counter() - start) * 1000)
                    answer.raise_for_status()
                    size = len(answer.content)
                p50, p99 = statistics.median(times), percentile(times, 0.99)
                print(f"{page:<22} {p50:>8.1f} {p99:>8.1f} {size:>8,}")
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
