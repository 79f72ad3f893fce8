"""Other engines over omfs versions, beside the same engine reading the same files directly.

    python benchmarks/engines_bench.py [rows] [parts] [selective-parts] [--local]

1. An aggregate over a dataset of ``rows`` rows in ``parts`` parts (5,000,000 in 20):
   ``om.sql`` beside DuckDB's ``read_parquet`` of the same part files by path, runs
   interleaved, medians; on a local folder (om.sql: a view over ``read_parquet`` of the
   version's part files) and on S3 (moto on loopback; om.sql: the version's Arrow dataset;
   DuckDB reads S3 through the same s3fs, registered as its filesystem, as its httpfs
   extension is not installed here). Both sides use DuckDB's default threads. Target:
   om.sql <= 1.2x. Then, locally, the fixed cost of a query over parts a recent query
   read (its locked database is kept) and over parts none read (a database is opened and
   locked for them). ``--local`` runs only the local figures.
2. A filter matching 0.05% of the rows of ``selective-parts`` appended parts of 1,000 rows
   on S3: requests (counted at the moto server the tests use) of ``om.sql``, beside
   delta-rs + DuckDB (the Delta table's Arrow dataset registered in DuckDB) on the same
   rows. Target: <= the parts that can match + a constant.
"""

from __future__ import annotations

import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "helpers"))

AGGREGATE = "select region, sum(qty) qty, avg(price) price from {} group by 1 order by 1"


#: interleaved runs of each side of a comparison
RUNS = 11


def medians(*fns: Callable[[], Any], runs: int = RUNS) -> list[float]:
    """The median time of each of ``fns``, run in turn ``runs`` times (interleaved, so a
    busy machine slows each side alike)."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(runs):
        for fn, out in zip(fns, times, strict=True):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def sales(i: int, rows: int) -> Any:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(i)
    return pd.DataFrame(
        {
            "id": np.arange(i * rows, (i + 1) * rows, dtype="int64"),
            "region": rng.choice(["EU", "US", "APAC", "LATAM"], rows),
            "qty": rng.integers(0, 100, rows),
            "price": rng.random(rows),
        }
    )


def aggregate(om: Any, label: str, rows: int, parts: int, fs: Any = None) -> list[str]:
    """om.sql beside DuckDB reading the same files by path; one row of the table."""
    import duckdb

    for i in range(parts):
        om.datasets.put(sales(i, rows // parts), "sales", append=i > 0)
    paths = om.datasets.to_arrow_dataset("sales").files
    con = duckdb.connect()
    prefix = ""
    if fs is not None:
        con.register_filesystem(fs)
        prefix = "s3://"
    files = "[" + ", ".join(f"'{prefix}{p}'" for p in paths) + "]"
    ours = om.sql(AGGREGATE.format("sales"))
    theirs = con.sql(AGGREGATE.format(f"read_parquet({files})")).df()
    assert ours["qty"].tolist() == theirs["qty"].tolist()
    t_ours, t_theirs = medians(
        lambda: om.sql(AGGREGATE.format("sales")),
        lambda: con.sql(AGGREGATE.format(f"read_parquet({files})")).fetchall(),
    )
    print(f"  {label}: om.sql {t_ours:.3f}s, duckdb by path {t_theirs:.3f}s", flush=True)
    ratio = f"{t_ours / t_theirs:.2f}x"
    return [label, f"{t_ours * 1000:.0f} ms", f"{t_theirs * 1000:.0f} ms", ratio]


def fixed_cost(om: Any, parts: int) -> list[str]:
    """``select count(*)`` over versions of ``sales``: the same one each time (its database,
    locked to its part files, is kept), beside one of KEPT + 2 in turn (each query opens and
    locks a database for its files, as a query over parts not read recently does)."""
    from omfs.ops.sql_sandbox import KEPT

    count = 'select count(*) from "sales@v{}"'
    turn = iter(range(10**6))
    versions = [parts - i for i in range(KEPT + 2)]
    om.sql(count.format(parts))
    t_same, t_new = medians(
        lambda: om.sql(count.format(parts)),
        lambda: om.sql(count.format(versions[next(turn) % len(versions)])),
        runs=2 * RUNS,
    )
    print(f"  count(*): same parts {t_same:.3f}s, new parts {t_new:.3f}s", flush=True)
    return [f"{t_same * 1000:.0f} ms", f"{t_new * 1000:.0f} ms"]


def selective(server: Any, parts: int) -> list[str]:
    """Requests (time) of a 0.05% filter on ``parts`` appended parts: om.sql, delta+DuckDB."""
    import deltalake
    import duckdb

    import omfs

    _bucket(server, "selective")
    om = omfs.setup(
        "s3://selective/omfs", storage_options={"client_kwargs": {"endpoint_url": server.url}}
    )
    delta = "s3://selective/delta"
    for i in range(parts):
        frame = sales(i, 1000)
        om.datasets.put(frame, "events", append=i > 0)
        deltalake.write_deltalake(delta, frame, mode="append", storage_options=_delta(server))
    width = parts * 1000 // 2000  # 0.05% of the rows
    lo = parts * 1000 // 2 + 100
    query = f"select * from {{}} where id between {lo} and {lo + width - 1}"

    def ours() -> None:
        assert len(om.sql(query.format("events"))) == width

    def theirs() -> None:
        con = duckdb.connect()
        table = deltalake.DeltaTable(delta, storage_options=_delta(server))
        con.register("events", table.to_pyarrow_dataset())
        assert len(con.sql(query.format("events")).df()) == width

    matching = 1  # the ids are in order: one part holds them all
    return [
        str(parts),
        str(matching),
        count(server, ours),
        count(server, theirs),
    ]


def count(server: Any, fn: Callable[[], Any]) -> str:
    from omfs.objects import log as _log

    _log.clear_cache()
    server.reset()
    t0 = time.perf_counter()
    fn()
    return f"{server.total} ({(time.perf_counter() - t0) * 1000:.0f} ms)"


def _delta(server: Any) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": server.url,
        "AWS_ALLOW_HTTP": "true",
        "AWS_REGION": "us-east-1",
        "AWS_S3_ALLOW_UNSAFE_RENAME": "true",
    }


def _bucket(server: Any, name: str) -> None:
    import s3fs

    s3fs.S3FileSystem(client_kwargs={"endpoint_url": server.url}).mkdir(name)


def table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    print(f"\n### {title}\n")
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    sys.stdout.flush()


def main(
    rows: int = 5_000_000, parts: int = 20, selective_parts: int = 200, local_only: bool = False
) -> None:
    import s3fs
    from omfs_s3counter import CountingMotoServer

    import omfs

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = CountingMotoServer()
    server.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            local = omfs.setup(Path(tmp) / "local")
            found = [aggregate(local, "local folder", rows, parts)]
            title = f"Aggregate over {rows:,} rows in {parts} parts (medians of {RUNS})"
            columns = ["storage", "om.sql", "DuckDB read_parquet by path", "ratio (target <= 1.2x)"]
            table(title, columns, found)
            table(
                "om.sql select count(*) on a local folder: its fixed cost (medians)",
                ["parts a recent query read", "parts no recent query read (a new database)"],
                [fixed_cost(local, parts)],
            )
            if local_only:
                return
            _bucket(server, "aggregate")
            options = {"client_kwargs": {"endpoint_url": server.url}}
            om = omfs.setup("s3://aggregate/omfs", storage_options=options)
            fs = s3fs.S3FileSystem(**options)
            found.append(aggregate(om, "S3 (moto)", rows, parts, fs))
            table(title, columns, found[1:])
            table(
                "A filter matching 0.05% of the rows on S3: requests (time)",
                ["parts", "parts that can match", "om.sql", "delta-rs + DuckDB"],
                [selective(server, selective_parts)],
            )
    finally:
        server.stop()


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--local"]
    main(*(int(a) for a in args), local_only="--local" in sys.argv[1:])
