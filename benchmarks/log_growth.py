"""How the commit log's costs grow with history, side by side with delta-rs (``deltalake``).

    python benchmarks/log_growth.py [appends] [s3-versions] [s3-parts] [list] [wide] [chunks]

- appends: 2,000 appends of 1,000 rows to a local folder; append time early and late,
  metadata bytes per commit; the same workload with ``deltalake.write_deltalake``.
- s3-versions: an object with N = 10, 100, 1,000 versions on a moto S3 server that counts
  requests; requests per read operation; delta-rs loading a table of N commits beside it.
- s3-parts: a dataset of N = 10, 100, 200, 1,000 appended parts; a filter matching 0.05%
  of the rows, and a full read; requests and time; delta-rs on the same rows.
- list: ``datasets.list()`` of 100,000 names in a local folder, beside ``os.listdir``.
- wide: an append to a 4,000-column frame, beside ``pq.write_table`` of the same rows.
- chunks: peak memory of ``get(chunksize=100_000)`` of a 512 MB dataset, beside ``get()``.

Prints Markdown tables (what the README quotes) and writes benchmarks/results/log.json.
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
sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "helpers"))

RESULTS: dict[str, Any] = {}


def table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    print(f"\n### {title}\n")
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")
    RESULTS[title] = [dict(zip(columns, map(str, row), strict=True)) for row in rows]
    sys.stdout.flush()


def frame(i: int, rows: int = 1000) -> Any:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(i)
    return pd.DataFrame(
        {
            "id": np.arange(i * rows, (i + 1) * rows, dtype="int64"),
            "x": rng.random(rows),
            "k": rng.integers(0, 100, rows),
            "s": [f"s{i}"] * rows,
        }
    )


def folder_bytes(path: Path, skip: Callable[[Path], bool]) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not skip(p))


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


# -- appends ---------------------------------------------------------------------------------
def bench_appends(tmp: Path, n: int = 2000) -> None:
    import deltalake

    import omfs

    om = omfs.setup(tmp / "omfs")
    times, probes = [], {}
    for i in range(n):
        t0 = time.perf_counter()
        om.datasets.put(frame(i), "d", append=i > 0)
        times.append(time.perf_counter() - t0)
        if i + 1 in (10, 100, 1000, 2000):
            obj = tmp / "omfs" / "omega" / "datasets" / "d"
            meta_bytes = folder_bytes(obj, lambda p: "_data" in p.parts)
            t0 = time.perf_counter()
            om.datasets.metadata("d")
            t_meta = time.perf_counter() - t0
            t0 = time.perf_counter()
            om.datasets.versions("d")
            t_versions = time.perf_counter() - t0
            probes[i + 1] = (meta_bytes, t_meta, t_versions)
    delta_path = tmp / "delta"
    dtimes, dprobes = [], {}
    for i in range(n):
        t0 = time.perf_counter()
        deltalake.write_deltalake(str(delta_path), frame(i), mode="append")
        dtimes.append(time.perf_counter() - t0)
        if i + 1 in (10, 100, 1000, 2000):
            log_bytes = folder_bytes(delta_path / "_delta_log", lambda p: False)
            t0 = time.perf_counter()
            deltalake.DeltaTable(str(delta_path))
            t_meta = time.perf_counter() - t0
            t0 = time.perf_counter()
            deltalake.DeltaTable(str(delta_path)).history()
            t_versions = time.perf_counter() - t0
            dprobes[i + 1] = (log_bytes, t_meta, t_versions)
    early, late = statistics.median(times[1:51]), statistics.median(times[-50:])
    d_early, d_late = statistics.median(dtimes[1:51]), statistics.median(dtimes[-50:])
    table(
        f"{n} appends of 1,000 rows, local folder",
        ["", "omfs", "deltalake"],
        [
            ["median append, appends 2-51", ms(early), ms(d_early)],
            [f"median append, appends {n - 49}-{n}", ms(late), ms(d_late)],
            ["late / early (target <= 1.5x)", f"{late / early:.2f}x", f"{d_late / d_early:.2f}x"],
            [
                "mean append, appends 2-51 (every 5th writes a checkpoint)",
                ms(statistics.mean(times[1:51])),
                ms(statistics.mean(dtimes[1:51])),
            ],
            [
                f"mean append, appends {n - 49}-{n}",
                ms(statistics.mean(times[-50:])),
                ms(statistics.mean(dtimes[-50:])),
            ],
        ],
    )
    rows = []
    for k in (10, 100, 1000, 2000):
        if k > n:
            continue
        b, tm, tv = probes[k]
        db, dtm, dtv = dprobes[k]
        rows.append([k, f"{b / k:,.0f} B", f"{db / k:,.0f} B", ms(tm), ms(dtm), ms(tv), ms(dtv)])
    table(
        "Growth with the number of commits N, local folder",
        [
            "N",
            "omfs metadata / commit (target <= 2 KB)",
            "delta log / commit",
            "omfs metadata()",
            "delta load latest",
            "omfs versions()",
            "delta history()",
        ],
        rows,
    )


# -- S3: versions ------------------------------------------------------------------------------
def _s3():
    from omfs_s3counter import CountingMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = CountingMotoServer()
    server.start()
    return server


def _bucket(server: Any, name: str) -> None:
    import s3fs

    s3fs.S3FileSystem(client_kwargs={"endpoint_url": server.url}).mkdir(name)


def _delta_options(server: Any) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": server.url,
        "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": os.environ["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": os.environ["AWS_SECRET_ACCESS_KEY"],
        "AWS_REGION": "us-east-1",
        "AWS_S3_ALLOW_UNSAFE_RENAME": "true",
    }


def count(server: Any, fn: Callable[[], Any]) -> tuple[int, float]:
    from omfs.objects import log as _log

    _log.clear_cache()
    server.reset()
    t0 = time.perf_counter()
    fn()
    return server.total, time.perf_counter() - t0


def count_peer(server: Any, fn: Callable[[], Any]) -> str:
    """Requests (time) of a delta-rs call, or why it could not be measured here."""
    try:
        c, t = count(server, fn)
    except OSError as exc:
        first = str(exc).splitlines()[0][:60]
        return f"failed on moto: {first}"
    return f"{c} ({ms(t)})"


def _delta_quick(server: Any) -> dict[str, str]:
    """delta-rs options that give up after 10 s instead of retrying for minutes."""
    return {**_delta_options(server), "timeout": "10s", "max_retries": "1"}


def bench_s3_versions(tmp: Path) -> None:
    import deltalake

    import omfs

    server = _s3()
    options = {"client_kwargs": {"endpoint_url": server.url}}
    rows = []
    try:
        for n in (10, 100, 1000):
            bucket = f"versions-{n}"
            _bucket(server, bucket)
            om = omfs.setup(f"s3://{bucket}/omfs", storage_options=options)
            for i in range(n):
                om.models.put({"i": i}, "m", tag="prod" if i == 2 else None)
            uri = f"s3://{bucket}/delta"
            for i in range(n):
                deltalake.write_deltalake(
                    uri, frame(i, 10), mode="append", storage_options=_delta_options(server)
                )
            ops = {
                'get("m@prod")': lambda om=om: om.models.get("m@prod"),
                "metadata()": lambda om=om: om.models.metadata("m"),
                "get()": lambda om=om: om.models.get("m"),
                "exists()": lambda om=om: om.models.exists("m"),
                "versions()": lambda om=om: om.models.versions("m"),
                'drop("m@v5")': lambda om=om: om.models.drop("m@v5"),
            }
            found = {op: count(server, fn) for op, fn in ops.items()}
            quick = _delta_quick(server)
            peers = [
                count_peer(
                    server, lambda uri=uri, q=quick: deltalake.DeltaTable(uri, storage_options=q)
                ),
                count_peer(
                    server,
                    lambda uri=uri, q=quick: deltalake.DeltaTable(
                        uri, version=3, storage_options=q
                    ),
                ),
                count_peer(
                    server,
                    lambda uri=uri, q=quick: deltalake.DeltaTable(uri, storage_options=q).history(),
                ),
            ]
            rows.append([n] + [f"{c} ({ms(t)})" for c, t in found.values()] + peers)
            print("  row:", rows[-1], flush=True)
    finally:
        server.stop()
    table(
        "S3 requests (time) per operation on an object with N versions (moto on loopback)",
        [
            "N",
            *[
                'omfs get("m@prod")',
                "metadata()",
                "get()",
                "exists()",
                "versions()",
                'drop("m@v5")',
            ],
            "delta load latest",
            "delta load version 3",
            "delta history()",
        ],
        rows,
    )


# -- S3: parts ---------------------------------------------------------------------------------
#: delta-rs appends to moto slow down with every commit (at 1,000 appends: over 30 min on
#: this machine), so it is compared up to this many parts; omfs goes on to 1,000.
PEER_MAX_PARTS = 200


def bench_s3_parts(tmp: Path, sizes: tuple[int, ...] = (10, 100, 200, 1000)) -> None:
    import deltalake
    import pyarrow.compute as pc

    import omfs

    server = _s3()
    options = {"client_kwargs": {"endpoint_url": server.url}}
    rows = []
    try:
        for n in sizes:
            bucket = f"parts-{n}"
            _bucket(server, bucket)
            om = omfs.setup(f"s3://{bucket}/omfs", storage_options=options)
            uri = f"s3://{bucket}/delta"
            with_peer = n <= PEER_MAX_PARTS
            for i in range(n):
                om.datasets.put(frame(i), "d", append=i > 0)
                if with_peer:
                    deltalake.write_deltalake(
                        uri, frame(i), mode="append", storage_options=_delta_options(server)
                    )
            total_rows = n * 1000
            width = max(1, total_rows // 2000)  # 0.05% of the rows
            lo = total_rows // 2 + 100
            hi = lo + width - 1
            got = om.datasets.get("d", id__between=(lo, hi))
            assert len(got) == width, (len(got), width)
            f_req, f_t = count(
                server, lambda om=om, lo=lo, hi=hi: om.datasets.get("d", id__between=(lo, hi))
            )
            g_req, g_t = count(server, lambda om=om: om.datasets.get("d"))

            def delta_filtered(uri=uri, lo=lo, hi=hi, width=width):
                dt = deltalake.DeltaTable(uri, storage_options=_delta_quick(server))
                expr = (pc.field("id") >= lo) & (pc.field("id") <= hi)
                out = dt.to_pyarrow_dataset().to_table(filter=expr)
                assert out.num_rows == width

            def delta_full(uri=uri):
                dt = deltalake.DeltaTable(uri, storage_options=_delta_quick(server))
                return dt.to_pandas()

            skipped = f"not run (N > {PEER_MAX_PARTS})"
            rows.append(
                [
                    n,
                    f"{f_req} ({ms(f_t)})",
                    count_peer(server, delta_filtered) if with_peer else skipped,
                    f"{g_req} ({ms(g_t)})",
                    count_peer(server, delta_full) if with_peer else skipped,
                ]
            )
            print("  row:", rows[-1], flush=True)
    finally:
        server.stop()
    table(
        "S3 requests (time) to read a dataset of N appended parts of 1,000 rows",
        [
            "N parts",
            "omfs filter 0.05% (target <= 20, <= delta)",
            "delta filter 0.05%",
            "omfs full get (target <= N + 10)",
            "delta full read",
        ],
        rows,
    )


# -- list ----------------------------------------------------------------------------------------
def bench_list(tmp: Path, n: int = 100_000) -> None:
    import omfs

    om = omfs.setup(tmp / "list")
    om.datasets.put(frame(0), "seed")  # one real dataset; the rest are index entries
    index = tmp / "list" / "omega" / "datasets" / "_index"
    for i in range(n - 1):
        (index / f"team{i % 10}~d{i:06d}").touch()

    def best(fn: Callable[[], Any]) -> float:
        out = []
        for _ in range(5):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
        return min(out)

    assert len(om.datasets.list()) == n
    t_list = best(om.datasets.list)
    t_pattern = best(lambda: om.datasets.list("team3/*"))
    t_plain = best(lambda: os.listdir(index))
    table(
        f"list() of {n:,} datasets, local folder (best of 5)",
        ["", "omfs", "os.listdir"],
        [
            ["list() (target < 100 ms)", ms(t_list), ms(t_plain)],
            ['list("team3/*")', ms(t_pattern), "-"],
        ],
    )


# -- wide appends --------------------------------------------------------------------------------
def bench_wide(tmp: Path) -> None:
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    import omfs

    rows = []
    for columns in (100, 1000, 4000):
        df = pd.DataFrame(
            np.random.default_rng(0).random((1000, columns)),
            columns=[f"c{i}" for i in range(columns)],
        )
        om = omfs.setup(tmp / f"wide{columns}")
        om.datasets.put(df, "w")
        t_omfs = []
        for _ in range(5):
            t0 = time.perf_counter()
            om.datasets.put(df, "w", append=True)
            t_omfs.append(time.perf_counter() - t0)
        t_plain = []
        for i in range(5):
            t0 = time.perf_counter()
            pq.write_table(pa.Table.from_pandas(df), tmp / f"plain{columns}-{i}.parquet")
            t_plain.append(time.perf_counter() - t0)
        a, b = min(t_omfs), min(t_plain)
        rows.append([columns, ms(a), ms(b), f"{a / b:.2f}x"])
    table(
        "Append of 1,000 rows to a wide frame (best of 5)",
        ["columns", "omfs append", "pq.write_table(Table.from_pandas)", "ratio"],
        rows,
    )


# -- chunked reads --------------------------------------------------------------------------------
def bench_chunks(tmp: Path) -> None:
    import numpy as np
    import pandas as pd

    import omfs

    root = tmp / "chunks"
    om = omfs.setup(root)
    n = 16_000_000
    df = pd.DataFrame(
        {
            "a": np.arange(n, dtype="int64"),
            "b": np.random.default_rng(0).random(n),
            "c": np.arange(n, dtype="int64") % 1000,
            "d": np.random.default_rng(1).random(n),
        }
    )
    om.datasets.put(df, "big", row_group_size=1_000_000)
    size = df.memory_usage(index=False).sum()
    del df

    def peak(code: str) -> tuple[float, float]:
        script = f"""
import pyarrow as pa, omfs
om = omfs.setup({str(root)!r})
{code}
# VmHWM is this process' own peak (ru_maxrss would carry the parent's over fork + exec)
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(pa.default_memory_pool().max_memory(), hwm)
"""
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
        arrow, rss = out.stdout.split()
        return int(arrow) / 2**20, int(rss) / 2**10

    chunked = peak("for c in om.datasets.get('big', chunksize=100_000): pass")
    eager = peak("df = om.datasets.get('big')")
    table(
        f"Peak memory reading a {size / 2**20:.0f} MB dataset (16 row groups)",
        ["", "Arrow pool peak", "process peak RSS (VmHWM)"],
        [
            ["get(chunksize=100_000)", f"{chunked[0]:.0f} MB", f"{chunked[1]:.0f} MB"],
            ["get()", f"{eager[0]:.0f} MB", f"{eager[1]:.0f} MB"],
        ],
    )


BENCHMARKS = {
    "appends": bench_appends,
    "s3-versions": bench_s3_versions,
    "s3-parts": bench_s3_parts,
    "list": bench_list,
    "wide": bench_wide,
    "chunks": bench_chunks,
}


def main(argv: list[str]) -> None:
    chosen = argv or list(BENCHMARKS)
    unknown = [c for c in chosen if c not in BENCHMARKS]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}")
    tmp = Path(tempfile.mkdtemp(prefix="omfs-log-bench-"))
    try:
        for name in chosen:
            print(f"== {name}", flush=True)
            BENCHMARKS[name](tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "log.json").write_text(json.dumps(RESULTS, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
