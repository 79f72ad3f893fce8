"""Grid search of 48 candidates x 3 folds: omfs on 2 workers, on 1 worker, and
scikit-learn's own ``GridSearchCV(n_jobs=2)`` on the same data, in one run.

    python benchmarks/runtime_gridsearch.py

Each omfs search also refits the best candidate and stores it and the table, as
GridSearchCV refits (it stores nothing). Every figure is the best of ``REPEAT`` runs on
warm workers: the cluster's start is not timed, nor is the start of the process pool that
GridSearchCV(n_jobs=2) uses (joblib keeps it for the next search; its cold figure is shown
beside). Workers have one thread each, as GridSearchCV's two processes do.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

REPEAT = 2


def main() -> None:
    import pandas as pd
    from distributed import Client, LocalCluster
    from sklearn.datasets import make_classification
    from sklearn.model_selection import GridSearchCV
    from sklearn.svm import SVC

    import omfs

    X, y = make_classification(n_samples=1200, n_features=20, random_state=0)
    grid = {"C": [0.01, 0.1, 0.3, 1, 3, 10, 30, 100], "gamma": [1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3]}
    assert len(grid["C"]) * len(grid["gamma"]) == 48
    times = {}
    with tempfile.TemporaryDirectory(prefix="omfs-gs-") as tmp:
        for workers in (1, 2):
            cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",
                silence_logs=logging.ERROR,
            )
            client = Client(cluster)
            try:
                om = omfs.setup(Path(tmp) / f"w{workers}", cluster=client)
                om.datasets.put(pd.DataFrame(X, columns=[f"f{i}" for i in range(20)]), "X")
                om.datasets.put(pd.DataFrame({"y": y}), "Y")
                om.models.put(SVC(), "svc")
                om.runtime.model("svc").fit("X", "Y").get()  # warm the workers (imports)
                runs = []
                for _ in range(REPEAT):
                    began = time.perf_counter()
                    search = om.runtime.model("svc").gridsearch("X", "Y", parameters=grid, cv=3)
                    meta = search.get()
                    runs.append(time.perf_counter() - began)
                times[workers] = min(runs)
                best = meta.lineage["task"]["params"]
                print(f"omfs, {workers} worker(s): {times[workers]:.2f} s, best {best}")
            finally:
                client.close()
                cluster.close()

    def sklearn(n_jobs: int) -> float:
        began = time.perf_counter()
        GridSearchCV(SVC(), grid, cv=3, n_jobs=n_jobs).fit(X, y)
        return time.perf_counter() - began

    cold = sklearn(2)  # starts joblib's process pool
    plain = min(sklearn(2) for _ in range(REPEAT))
    serial = min(sklearn(1) for _ in range(REPEAT))
    print(f"scikit-learn GridSearchCV(n_jobs=2): {plain:.2f} s (cold pool: {cold:.2f} s)")
    print(f"scikit-learn GridSearchCV(n_jobs=1): {serial:.2f} s ({serial / plain:.2f}x slower)")
    print(
        f"\n2 workers vs 1: {times[1] / times[2]:.2f}x faster (target >= 1.6x); "
        f"2 workers vs GridSearchCV(n_jobs=2): {times[2] / plain:.2f}x its time "
        "(target within 1.10x)"
    )


if __name__ == "__main__":
    main()
