"""omfs benchmarks, each side by side with the plain library doing the same work.

    python benchmarks/run.py [datasets|filter|list|startup|models|promotion|runtime|
                              durability|cli_runtime ...]

Without arguments every benchmark runs (needs ~6 GB of RAM and a few GB of /tmp; minutes).
Prints a Markdown table (what the README quotes) and writes benchmarks/results/latest.json.
Times are the best of several repeats (wall clock), on warm page cache.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

ROWS: list[dict[str, Any]] = []


def best(fn: Callable[[], Any], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def record(
    name: str, omfs_s: float, plain_s: float | None, target: str, ok: bool, note: str = ""
) -> None:
    ratio = omfs_s / plain_s if plain_s else None
    ROWS.append(
        {
            "benchmark": name,
            "omfs_s": round(omfs_s, 4),
            "plain_s": round(plain_s, 4) if plain_s else None,
            "ratio": round(ratio, 3) if ratio else None,
            "target": target,
            "met": ok,
            "note": note,
        }
    )
    shown = f"{ratio:.2f}x" if ratio else "-"
    print(
        f"  {name}: omfs {omfs_s:.3f}s plain {plain_s or 0:.3f}s ratio {shown} "
        f"target {target} {'OK' if ok else 'MISSED'} {note}",
        flush=True,
    )


def s3_server() -> tuple[Any, dict[str, Any]]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, {"client_kwargs": {"endpoint_url": f"http://{host}:{port}"}}


def frame_5m():
    import numpy as np
    import pandas as pd

    n = 5_000_000
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "id": np.arange(n, dtype="int64"),
            "value": rng.random(n),
            "ts": pd.date_range("2020-01-01", periods=n, freq="s"),
            "region": pd.Categorical(rng.choice(["north", "south", "east", "west"], n)),
            "qty": rng.integers(0, 1000, n, dtype="int32"),
        }
    )


def bench_datasets(tmp: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    import omfs

    print("datasets.put/get, 5,000,000 rows x 5 columns (local folder)")
    df = frame_5m()
    om = omfs.setup(tmp / "ds")
    raw = tmp / "raw.parquet"
    plain_put = best(lambda: pq.write_table(pa.Table.from_pandas(df), raw))
    omfs_put = best(lambda: om.datasets.put(df, "big"))
    record("datasets.put 5M rows", omfs_put, plain_put, "<= 1.10x", omfs_put <= 1.10 * plain_put)
    plain_get = best(lambda: pq.read_table(raw).to_pandas())
    omfs_get = best(lambda: om.datasets.get("big"))
    record("datasets.get 5M rows", omfs_get, plain_get, "<= 1.10x", omfs_get <= 1.10 * plain_get)


def bench_filter(tmp: Path) -> None:
    import numpy as np
    import pandas as pd

    import omfs

    print("filtered get: 1% range of a 20M-row dataset sorted by the filtered column")
    n = 20_000_000
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"t": np.arange(n, dtype="int64"), "a": rng.random(n), "b": rng.random(n)})
    om = omfs.setup(tmp / "filter")
    om.datasets.put(df, "sorted")
    del df
    lo = n // 2
    hi = lo + n // 100 - 1
    full = best(lambda: om.datasets.get("sorted"), repeat=2)
    part = best(lambda: om.datasets.get("sorted", t__between=(lo, hi)))
    assert len(om.datasets.get("sorted", t__between=(lo, hi))) == n // 100
    speedup = full / part
    record(
        "filtered get (1% of 20M) vs full get",
        part,
        full,
        ">= 10x faster",
        speedup >= 10,
        f"{speedup:.1f}x faster",
    )


class _Requests:
    """Counts the HTTP requests an s3fs filesystem sends (botocore event hook)."""

    def __init__(self, fs: Any):
        self.count = 0
        fs.connect()
        fs.s3.meta.events.register("before-send.s3.*", self._seen)

    def _seen(self, **kwargs: Any) -> None:
        self.count += 1


def bench_list(tmp: Path) -> None:
    import pandas as pd

    import omfs

    print("list() of a bucket holding 10,000 datasets")
    om = omfs.setup(tmp / "many")
    tiny = pd.DataFrame({"a": [1]})
    t0 = time.perf_counter()
    for i in range(10_000):
        om.datasets.put(tiny, f"team{i % 10}/ds{i:05d}")
    print(f"  (created 10,000 datasets locally in {time.perf_counter() - t0:.0f}s)")
    local = best(lambda: om.datasets.list(), repeat=5)
    assert len(om.datasets.list()) == 10_000
    record("list() 10,000 datasets, local", local, None, "< 0.5 s", local < 0.5)

    server, options = s3_server()
    try:
        import s3fs

        fs = s3fs.S3FileSystem(**options)
        fs.mkdir("bench-list")
        # upload the same 10,000 datasets (every file of them) to S3
        t0 = time.perf_counter()
        fs.put(str(tmp / "many" / "omega") + "/", "bench-list/root/omega/", recursive=True)
        print(f"  (uploaded them to S3 in {time.perf_counter() - t0:.0f}s)")
        s3 = omfs.setup("s3://bench-list/root", storage_options=options)
        counter = _Requests(s3.storage.fs)
        before = counter.count
        s3_time = best(lambda: s3.datasets.list(), repeat=3)
        per_list = (counter.count - before) / 3
        assert len(s3.datasets.list()) == 10_000
        small = omfs.setup("s3://bench-list/small", storage_options=options)
        small.datasets.put(tiny, "only")
        before = counter.count
        small_counter = _Requests(small.storage.fs)
        small.datasets.list()
        record(
            "list() 10,000 datasets, S3 (moto)",
            s3_time,
            None,
            "constant round trips",
            per_list <= 10_000 / 1000 + 1,
            f"{per_list:.0f} requests (S3 pages of 1,000 keys) vs {small_counter.count} for 1 "
            "dataset; not one per dataset",
        )
    finally:
        server.stop()


def bench_startup() -> None:
    print("start-up")
    py = sys.executable
    om_script = str(Path(py).parent / "om")

    def run(cmd: list[str]) -> float:
        return best(lambda: subprocess.run(cmd, check=True, capture_output=True), repeat=5)

    bare = run([py, "-c", "pass"])
    imp = run([py, "-c", "import omfs"])
    record("import omfs", imp, bare, "< 0.3 s", imp < 0.3, f"bare interpreter {bare:.3f}s")
    helpt = run([om_script, "--help"])
    record("om --help", helpt, bare, "< 0.5 s", helpt < 0.5, f"bare interpreter {bare:.3f}s")


def bench_models(tmp: Path) -> None:
    import joblib
    import numpy as np
    from sklearn.ensemble import RandomForestRegressor

    import omfs

    print("models.put/get of a 50-tree random forest (local folder)")
    rng = np.random.default_rng(0)
    X = rng.random((20_000, 8))
    y = X @ rng.random(8) + rng.random(20_000)
    model = RandomForestRegressor(n_estimators=50, random_state=0, n_jobs=2).fit(X, y)
    om = omfs.setup(tmp / "models")
    raw = tmp / "raw.joblib"
    plain_put = best(lambda: joblib.dump(model, raw))
    size_mb = raw.stat().st_size / 2**20
    omfs_put = best(lambda: om.models.put(model, "forest"))
    record(
        f"models.put ({size_mb:.0f} MB forest)",
        omfs_put,
        plain_put,
        "<= 1.25x",
        omfs_put <= 1.25 * plain_put,
        "sha256 computed while writing",
    )
    plain_get = best(lambda: joblib.load(raw))
    omfs_get = best(lambda: om.models.get("forest"))
    record(
        f"models.get ({size_mb:.0f} MB forest)",
        omfs_get,
        plain_get,
        "<= 1.25x",
        omfs_get <= 1.25 * plain_get,
        "sha256 verified before unpickling",
    )


def bench_promotion() -> None:
    import numpy as np
    import pandas as pd

    import omfs

    print("promotion of a 200 MB dataset between two buckets on S3 (moto)")
    server, options = s3_server()
    try:
        import s3fs

        fs = s3fs.S3FileSystem(**options)
        fs.mkdir("bench-promo")
        om = omfs.setup("s3://bench-promo/root", storage_options=options)
        rng = np.random.default_rng(2)
        df = pd.DataFrame(rng.random((2_500_000, 10)), columns=[f"c{i}" for i in range(10)])
        for i in range(4):  # four parts of ~50 MB
            om.datasets.put(df.iloc[i * 625_000 : (i + 1) * 625_000], "big", append=i > 0)
        meta = om.datasets.metadata("big")
        mb = meta["bytes"] / 2**20
        src = [om.storage.path(om.datasets.data_key("big", p["file"])) for p in meta["parts"]]
        counter = iter(range(1000))

        def plain() -> None:
            n = next(counter)
            fs.copy(src, [f"bench-promo/plain{n}/{i}.parquet" for i in range(len(src))])

        plain_s = best(plain)
        omfs_s = best(lambda: om.datasets.promote("big", om["prod"].datasets))
        record(
            f"promote {mb:.0f} MB dataset, S3 bucket to bucket",
            omfs_s,
            plain_s,
            "<= 1.2x",
            omfs_s <= 1.2 * plain_s,
            "server-side copy + one commit",
        )
    finally:
        server.stop()


def bench_runtime(tmp: Path) -> None:
    import numpy as np
    from distributed import Client, LocalCluster
    from sklearn.linear_model import LinearRegression

    import omfs

    print("runtime on a warm two-worker LocalCluster")
    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    client = Client(cluster)
    try:
        om = omfs.setup(tmp / "rt", cluster=client)
        rng = np.random.default_rng(3)
        X = rng.random((1000, 5))
        model = LinearRegression().fit(X, X @ rng.random(5))
        om.models.put(model, "m")
        proxy = om.runtime.model("m")
        on_worker = client.scatter(model, broadcast=True)

        def predict(m: Any, x: Any) -> Any:
            return m.predict(x)

        for _ in range(10):  # warm both paths (and the workers' model cache)
            proxy.predict(X).get()
            client.submit(predict, on_worker, X, pure=False).result()

        def median(fn: Callable[[], Any], n: int = 60) -> float:
            times = []
            for _ in range(n):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            return statistics.median(times)

        plain_rt = median(lambda: client.submit(predict, on_worker, X, pure=False).result())
        omfs_rt = median(lambda: proxy.predict(X).get())
        record(
            "runtime predict round trip (median)",
            omfs_rt,
            plain_rt,
            "<= 2x",
            omfs_rt <= 2 * plain_rt,
        )

        small = X[:10]

        def many_omfs() -> None:
            results = [proxy.predict(small) for _ in range(1000)]
            client.gather([r.future for r in results])

        def many_plain() -> None:
            futures = [client.submit(predict, on_worker, small, pure=False) for _ in range(1000)]
            client.gather(futures)

        plain_s = best(many_plain, repeat=2)
        omfs_s = best(many_omfs, repeat=2)
        record(
            "1,000 predicts at once",
            omfs_s,
            plain_s,
            "throughput, side by side",
            True,
            f"omfs {1000 / omfs_s:.0f} tasks/s, plain Dask {1000 / plain_s:.0f} tasks/s",
        )
    finally:
        client.close()
        cluster.close()


def bench_durability(tmp: Path) -> None:
    """What fsync (file and folder, on every local commit) costs: puts with it and without."""
    import numpy as np
    import pandas as pd

    from omfs.context import Omega
    from omfs.storage import Storage

    print("durability: local puts with fsync (the default) and without")
    for n in (10, 100, 1000):
        small = pd.DataFrame({"a": np.arange(100)})
        timings = {}
        for durable in (True, False):
            om = Omega(Storage(tmp / f"dur-{n}-{durable}", durable=durable))
            t0 = time.perf_counter()
            for i in range(n):
                om.datasets.put(small, f"d{i % 10}", append=True)
            timings[durable] = (time.perf_counter() - t0) / n
        record(
            f"small append, mean of N = {n:,}",
            timings[True],
            timings[False],
            "cost of fsync, side by side",
            True,
            f"{1000 * timings[True]:.2f} ms with fsync, {1000 * timings[False]:.2f} ms without",
        )
    df = frame_5m()
    with_sync = Omega(Storage(tmp / "dur-big-1"))
    without = Omega(Storage(tmp / "dur-big-0", durable=False))
    synced = best(lambda: with_sync.datasets.put(df, "big"))
    unsynced = best(lambda: without.datasets.put(df, "big"))
    record("datasets.put 5M rows, fsync on", synced, unsynced, "cost of fsync", True, "")


def bench_cli_runtime(tmp: Path) -> None:
    """Wall time of `om runtime model m predict X` as a user types it: with the background
    cluster of `om cluster start` (through its gateway), and without one (a private
    cluster per command)."""
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LinearRegression

    import omfs

    print("om runtime ... predict, wall time per command")
    root = tmp / "cli-rt"
    om = omfs.setup(root)
    om.datasets.put(pd.DataFrame({"x": np.arange(100.0)}), "X")
    om.models.put(LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0]), "m")
    env = {**os.environ, "OMFS_STATE_DIR": str(tmp / "state"), "OMFS_ROOT": str(root)}
    env.pop("OMFS_CLUSTER", None)
    om_cli = str(Path(sys.executable).parent / "om")

    def run(*args: str) -> float:
        t0 = time.perf_counter()
        subprocess.run([om_cli, *args], env=env, check=True, capture_output=True)
        return time.perf_counter() - t0

    predict = ("runtime", "model", "m", "predict", "X")
    private = statistics.median(run(*predict) for _ in range(3))
    run("cluster", "start")
    try:
        run(*predict)  # the workers import scikit-learn once
        warm = statistics.median(run(*predict) for _ in range(10))
    finally:
        run("cluster", "stop")
    import_only = statistics.median(run_python(["-c", "import distributed"]) for _ in range(5))
    startup = statistics.median(run("--version") for _ in range(5))
    record(
        "om runtime predict (median)",
        warm,
        private,
        "background cluster well under 1 s",
        warm < 1.0,
        "via the background cluster's gateway (the CLI imports no Dask); plain: a private "
        f"cluster per command; `om --version` {startup:.2f} s, `import distributed` alone "
        f"{import_only:.2f} s",
    )


def run_python(args: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True)
    return time.perf_counter() - t0


def main(argv: list[str]) -> None:
    chosen = set(argv) or {
        "datasets",
        "filter",
        "list",
        "startup",
        "models",
        "promotion",
        "runtime",
        "durability",
        "cli_runtime",
    }
    tmp = Path(tempfile.mkdtemp(prefix="omfs-bench-"))
    try:
        names = ("startup", "datasets", "filter", "list", "models", "promotion", "runtime")
        for name in (*names, "durability", "cli_runtime"):
            if name not in chosen:
                continue
            fn = globals()[f"bench_{name}"]
            fn() if name in ("startup", "promotion") else fn(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("\n| benchmark | omfs | plain | ratio | target | met | note |")
    print("|---|---|---|---|---|---|---|")
    for r in ROWS:
        plain = f"{r['plain_s']:.3f} s" if r["plain_s"] else "-"
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] else "-"
        print(
            f"| {r['benchmark']} | {r['omfs_s']:.3f} s | {plain} | {ratio} | {r['target']} | "
            f"{'yes' if r['met'] else 'NO'} | {r['note']} |"
        )
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps(ROWS, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
