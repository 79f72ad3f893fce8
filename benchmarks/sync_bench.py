"""Pushing a local context to S3 with ``omfs.sync``, beside ``s3fs.put`` of the same files.

    python benchmarks/sync_bench.py [small] [large] [history] [--large-mb 1024]

small: a bucket of 1,000 small objects (models) pushed to a moto S3 server; then a sync
with no change. large: 4 datasets (``--large-mb`` in total, in parts of up to 256 MB).
history: one model with N = 10, 100, 1,000 versions pushed whole, then one more version
pushed (its cost must not grow with N). Prints wall times and the S3 requests each run
made (counted at the server); real S3 costs ~20-50 ms per request, so the counts are what
matters at scale.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
sys.path.insert(0, str(Path(__file__).parent.parent / "tests" / "helpers"))


def _fresh_root(fs: object, options: dict) -> str:
    bucket = f"bench-{uuid.uuid4().hex[:10]}"
    fs.mkdir(bucket)  # type: ignore[attr-defined]
    return f"s3://{bucket}/root"


def _timed(server, fn):
    server.reset()
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, server.total, result


def main(argv: list[str]) -> None:
    import numpy as np
    import pandas as pd
    import s3fs
    from omfs_s3counter import CountingMotoServer

    import omfs

    parser = argparse.ArgumentParser()
    parser.add_argument("what", nargs="*", default=["small", "large"])
    parser.add_argument("--large-mb", type=int, default=1024)
    args = parser.parse_args(argv)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = CountingMotoServer()
    server.start()
    options = {"client_kwargs": {"endpoint_url": server.url}}
    fs = s3fs.S3FileSystem(**options)
    rows = []
    with tempfile.TemporaryDirectory(prefix="omfs-sync-bench-") as tmp:
        if "small" in args.what:
            local = omfs.setup(Path(tmp) / "small")
            for i in range(1000):
                local.models.put({"coef": list(range(20)), "i": i}, f"model-{i:04d}")
            target = omfs.setup(_fresh_root(fs, options), storage_options=options)
            t_sync, n_sync, report = _timed(server, lambda: omfs.sync(local, target))
            assert report.copied == 1000
            plain_root = _fresh_root(fs, options)
            t_put, n_put, _ = _timed(
                server,
                lambda: fs.put(
                    str(Path(tmp) / "small" / "omega"), f"{plain_root}/omega", recursive=True
                ),
            )
            t_same, n_same, report = _timed(server, lambda: omfs.sync(local, target))
            assert report.unchanged == 1000 and report.copied == 0
            rows += [
                ("push 1,000 small models", t_sync, n_sync, t_put, n_put),
                ("sync again, no change (1,000 objects)", t_same, n_same, None, None),
            ]
        if "large" in args.what:
            local = omfs.setup(Path(tmp) / "large")
            per = args.large_mb // 4
            rng = np.random.default_rng(0)
            # each dataset grows by appends of <= 256 MB parts (moto completes a multipart
            # upload of several GB too slowly for the client's retries)
            parts = max(1, -(-per // 256))
            rows_per = per * 2**20 // 8 // parts
            for i in range(4):
                for part in range(parts):
                    frame = pd.DataFrame({"v": rng.random(rows_per)})
                    local.datasets.put(frame, f"big-{i}", append=part > 0)
                    del frame
            target = omfs.setup(_fresh_root(fs, options), storage_options=options)
            t_sync, n_sync, _ = _timed(server, lambda: omfs.sync(local, target))
            plain_root = _fresh_root(fs, options)
            t_put, n_put, _ = _timed(
                server,
                lambda: fs.put(
                    str(Path(tmp) / "large" / "omega"), f"{plain_root}/omega", recursive=True
                ),
            )
            rows.append((f"push 4 datasets, {args.large_mb:,} MB", t_sync, n_sync, t_put, n_put))
        if "history" in args.what:
            for n in (10, 100, 1000):
                local = omfs.setup(Path(tmp) / f"history-{n}")
                for i in range(n):
                    local.models.put({"i": i}, "m")
                target = omfs.setup(_fresh_root(fs, options), storage_options=options)
                push = functools.partial(omfs.sync, local, target)
                t_all, n_all, _ = _timed(server, push)
                local.models.put({"i": n}, "m")
                t_one, n_one, _ = _timed(server, push)
                rows.append((f"one model, N = {n:,} versions: push all", t_all, n_all, None, None))
                rows.append(
                    (f"one model, N = {n:,}: push 1 more version", t_one, n_one, None, None)
                )
    server.stop()
    print("| run | omfs.sync | requests | s3fs.put | requests | ratio |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, t, n, tp, np_ in rows:
        plain = f"{tp:.2f} s | {np_}" if tp is not None else "- | -"
        ratio = f"{t / tp:.2f}x" if tp else "-"
        print(f"| {name} | {t:.2f} s | {n} | {plain} | {ratio} |")


if __name__ == "__main__":
    main(sys.argv[1:])
