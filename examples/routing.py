"""Runtime routing end to end: a scheduler and two workers, one offering a 'gpu'.

    python examples/routing.py

Starts `dask scheduler` and two `dask worker` processes (one with --resources gpu=1), binds a
model to 'gpu', fits and predicts on the cluster, checks where the work ran, and promotes the
fitted model and its predictions from the 'dev' bucket to 'prod'. Everything lives in a
temporary folder and the processes are stopped at the end.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from distributed import Client, get_task_stream
from sklearn.linear_model import Ridge

import omfs


def start_cluster(folder: Path) -> tuple[list[subprocess.Popen], str]:
    dask = str(Path(sys.executable).parent / "dask")
    scheduler_file = folder / "scheduler.json"
    common = ["--no-dashboard", "--host", "127.0.0.1"]
    procs = [
        subprocess.Popen(
            [dask, "scheduler", "--scheduler-file", str(scheduler_file), "--port", "0", *common],
            stderr=subprocess.DEVNULL,
        )
    ]
    while not scheduler_file.exists():
        time.sleep(0.1)
    for name, extra in (("cpu-worker", []), ("gpu-worker", ["--resources", "gpu=1"])):
        procs.append(
            subprocess.Popen(
                [
                    dask,
                    "worker",
                    "--scheduler-file",
                    str(scheduler_file),
                    "--name",
                    name,
                    "--nthreads",
                    "1",
                    *extra,
                    *common,
                ],
                stderr=subprocess.DEVNULL,
            )
        )
    return procs, str(scheduler_file)


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="omfs-routing-"))
    procs, scheduler_file = start_cluster(folder)
    try:
        client = Client(scheduler_file=scheduler_file)
        client.wait_for_workers(2, timeout=120)
        dev = omfs.setup(folder / "store", bucket="dev", cluster=client)

        rng = np.random.default_rng(0)
        X = pd.DataFrame(rng.normal(size=(500, 3)), columns=["a", "b", "c"])
        Y = pd.DataFrame({"y": X @ np.array([2.0, -1.0, 0.5]) + rng.normal(0, 0.1, 500)})
        dev.datasets.put(X, "X")
        dev.datasets.put(Y, "Y")
        dev.models.put(Ridge(), "mymodel", attributes={"require": {"label": "gpu"}})

        for worker in dev.runtime.workers():
            print(f"worker {worker['name']:<10} offers {worker['resources'] or 'nothing'}")

        with get_task_stream(client) as stream:
            fitted = dev.runtime.model("mymodel").fit("X", "Y").get()  # routed by its metadata
            dev.runtime.model("mymodel").predict("X[a,b,c]", rName="predictions").get()
        ran_on = {t["worker"] for t in stream.data if str(t["key"]).startswith("omfs-")}
        names = {w["address"]: w["name"] for w in dev.runtime.workers()}
        print(f"fit -> mymodel v{fitted.version}, trained on {fitted.lineage['trained_on']}")
        print(f"tasks ran on: {sorted(names[a] for a in ran_on)}")

        try:
            dev.runtime.require("tpu").model("mymodel").fit("X", "Y")
        except omfs.errors.ResourceUnavailableError as exc:
            print(f"require('tpu') fails at once: {exc}")

        prod = dev["prod"]
        dev.models.promote("mymodel", prod.models, conditions=["fitted"], create_bucket=True)
        dev.datasets.promote("predictions", prod.datasets, create_bucket=True)
        promoted = prod.models.metadata("mymodel")
        print(
            f"prod has {prod.models.list()} and {prod.datasets.list()}; "
            f"mymodel came from {promoted.lineage['promoted_from']['bucket']} "
            f"v{promoted.lineage['promoted_from']['version']}"
        )
        client.close()
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
