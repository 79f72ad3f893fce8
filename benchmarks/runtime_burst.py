"""Bursts of small predicts through omfs beside plain ``client.submit``, in one run.

    python benchmarks/runtime_burst.py [--cli]

A two-worker LocalCluster (one thread each). For N = 10, 100, 1,000: N ``predict`` tasks
submitted from one script, then gathered; omfs writes a task record (and the result) for
each. Then the median round trip of one predict, routed and not, beside raw ``client.submit``
(with and without a resource restriction), in rotated order.
``--cli`` also times ``om runtime ... --async`` and ``om runtime result ID`` with the
background cluster of ``om cluster start`` running (starts and stops one).
"""

from __future__ import annotations

import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def best_of_alternating(
    plain: Callable[[], Any], omfs: Callable[[], Any], repeat: int
) -> tuple[float, float]:
    """Best times of ``plain`` and ``omfs``, run in turn (the machine may be shared)."""
    plain_times, omfs_times = [], []
    for _ in range(repeat):
        plain_times.append(timed(plain))
        omfs_times.append(timed(omfs))
    return min(plain_times), min(omfs_times)


def predict(m: Any, x: Any) -> Any:
    return m.predict(x)


def raw_round_trip(client: Any, model: Any, x: Any) -> Any:
    return client.submit(predict, model, x, pure=False).result()


def round_trips(client: Any, on_worker: Any, X: Any, routed: Any, proxy: Any) -> None:
    """Median round trip of one predict of 1,000 rows: raw ``client.submit`` (with and
    without a resource restriction) beside omfs (routed and not). Each round runs the four
    in a rotated order, so that none always comes first after the workers went idle."""
    ways: dict[str, Callable[[], Any]] = {
        "raw client.submit": lambda: client.submit(predict, on_worker, X, pure=False).result(),
        "raw client.submit, resources={'cpu': 1}": lambda: client.submit(
            predict, on_worker, X, pure=False, resources={"cpu": 1}
        ).result(),
        "omfs, require('cpu')": lambda: routed.predict(X).get(),
        "omfs, no route": lambda: proxy.predict(X).get(),
    }
    names = list(ways)
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(60):
        for name in names[i % 4 :] + names[: i % 4]:
            times[name].append(timed(ways[name]))
    raw = statistics.median(times[names[0]])
    print("\n| one predict round trip (median of 60) | ms | ÷ raw client.submit |")
    print("| --- | --- | --- |")
    for name in names:
        median = statistics.median(times[name])
        print(f"| {name} | {median * 1e3:.1f} | {median / raw:.2f}x |")
    print("(target: omfs routed <= 1.5x raw client.submit)")


def bursts(tmp: Path) -> None:
    import numpy as np
    from distributed import Client, LocalCluster
    from sklearn.linear_model import LinearRegression

    import omfs

    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.ERROR,
        resources={"cpu": 1},
    )
    client = Client(cluster)
    try:
        om = omfs.setup(tmp / "rt", cluster=client)
        rng = np.random.default_rng(3)
        X = rng.random((1000, 5))
        model = LinearRegression().fit(X, X @ rng.random(5))
        om.models.put(model, "m")
        proxy = om.runtime.model("m")
        routed = om.runtime.require("cpu").model("m")
        on_worker = client.scatter(model, broadcast=True)
        small = X[:10]
        for _ in range(20):  # warm both paths (and the workers' model cache)
            proxy.predict(small).get()
            client.submit(predict, on_worker, small, pure=False).result()

        print("| N | omfs tasks/s | plain client.submit tasks/s | ratio (target >= 0.9x) |")
        print("| --- | --- | --- | --- |")
        for n in (10, 100, 1000):

            def many_omfs(n: int = n) -> None:
                results = [proxy.predict(small) for _ in range(n)]
                client.gather([r.future for r in results])

            def many_plain(n: int = n) -> None:
                futures = [client.submit(predict, on_worker, small, pure=False) for _ in range(n)]
                client.gather(futures)

            repeat = 5 if n < 1000 else 3
            plain_s, omfs_s = best_of_alternating(many_plain, many_omfs, repeat)
            print(f"| {n:,} | {n / omfs_s:.0f} | {n / plain_s:.0f} | {plain_s / omfs_s:.2f}x |")

        round_trips(client, on_worker, X, routed, proxy)
        records = om.runtime.tasks(limit=5) if hasattr(om.runtime, "tasks") else []
        print(f"task records written: {len(records)} shown of the latest (limit 5)")
    finally:
        client.close()
        cluster.close()


def cli(tmp: Path) -> None:
    """``om runtime ... --async`` and ``om runtime result ID`` with the background cluster."""
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LinearRegression

    import omfs

    root = tmp / "cli-rt"
    om = omfs.setup(root)
    om.datasets.put(pd.DataFrame({"x": np.arange(100.0)}), "X")
    om.models.put(LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0]), "m")
    env = {**os.environ, "OMFS_STATE_DIR": str(tmp / "state"), "OMFS_ROOT": str(root)}
    env.pop("OMFS_CLUSTER", None)
    om_cli = str(Path(sys.executable).parent / "om")

    def run(*args: str) -> tuple[float, str]:
        t0 = time.perf_counter()
        out = subprocess.run([om_cli, *args], env=env, check=True, capture_output=True, text=True)
        return time.perf_counter() - t0, out.stdout.strip()

    compiled = _byte_compiled()
    run("cluster", "start")
    try:
        run("runtime", "model", "m", "predict", "X")  # the workers import scikit-learn once
        submits, results, floor = [], [], []
        for _ in range(7):
            took, task_id = run("runtime", "model", "m", "predict", "X", "--async")
            submits.append(took)
            results.append(run("runtime", "result", task_id, "--timeout", "30")[0])
            floor.append(run("--version")[0])
        print(
            f"\nwith the background cluster: `om runtime model m predict X --async` median "
            f"{statistics.median(submits):.3f} s, `om runtime result ID` median "
            f"{statistics.median(results):.3f} s (target <= 0.4 s each); `om --version` "
            f"median {statistics.median(floor):.3f} s in the same run{compiled}"
        )
    finally:
        run("cluster", "stop")


def _byte_compiled() -> str:
    """Byte-compile omfs as ``pip install`` does, where it is not (an editable checkout
    under ``PYTHONDONTWRITEBYTECODE=1`` compiles every module on every run, ~0.1 s of each
    command here); what was done, for the printed figures."""
    import compileall

    import omfs

    if not os.environ.get("PYTHONDONTWRITEBYTECODE"):
        return ""
    os.environ.pop("PYTHONDONTWRITEBYTECODE")
    compileall.compile_dir(str(Path(omfs.__file__).parent), quiet=1)
    return " (omfs byte-compiled first, as an installed package is)"


def main(argv: list[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="omfs-burst-") as tmp:
        bursts(Path(tmp))
        if "--cli" in argv:
            cli(Path(tmp))


if __name__ == "__main__":
    main(sys.argv[1:])
