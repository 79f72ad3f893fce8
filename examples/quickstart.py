"""omfs quickstart: runs on the default context (a folder in your home directory) and,
for the runtime part, a local Dask cluster that omfs starts on first use.

    python examples/quickstart.py
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import LinearRegression

import omfs as om


def main() -> None:
    rng = np.random.default_rng(42)
    sales = pd.DataFrame(
        {
            "day": pd.date_range("2024-01-01", periods=365, freq="D"),
            "region": pd.Categorical(rng.choice(["north", "south", "east"], 365)),
            "units": rng.integers(0, 100, 365),
            "price": rng.normal(20, 2, 365).round(2),
        }
    )
    print(f"context: {om.root}  bucket: {om.bucket}")

    # datasets: a new version on every put, appends, filters pushed into Parquet
    meta = om.datasets.put(sales, "quickstart/sales")
    print(f"stored {meta['rows']} rows as {meta.name} v{meta.version}")
    om.datasets.put(sales.tail(10), "quickstart/sales", append=True)
    busy = om.datasets.get("quickstart/sales", units__gte=95, columns=["day", "units"])
    print(f"{len(busy)} busy days, e.g.\n{busy.head(3)}")
    print("versions:", [m.version for m in om.datasets.versions("quickstart/sales")])

    # buckets: the same context, another top-level folder
    dev = om["dev"]
    dev.datasets.put(sales.head(5), "quickstart/sales")
    print(f"buckets: {om.buckets}; dev has {len(dev.datasets.get('quickstart/sales'))} rows")

    # models: joblib + JSON sidecar, a new version on every put
    om.models.put(LinearRegression(), "quickstart/units", attributes={"target": "units"})

    # runtime: the task runs on a local Dask cluster (started now, on first remote use)
    fitted = (
        om.runtime.model("quickstart/units")
        .fit("quickstart/sales[price]", "quickstart/sales[units]")
        .get(timeout=300)
    )
    inputs = [
        f"{i['role']}={i['dataset']}@v{i['version']}[{','.join(i['columns'])}]"
        for i in fitted.lineage["trained_on"]
    ]
    print(f"fitted v{fitted.version} on {', '.join(inputs)}")
    om.runtime.model("quickstart/units").predict(
        "quickstart/sales[price]", rName="quickstart/pred"
    ).get()
    print("workers:", [w["address"] for w in om.runtime.workers()])
    local = (
        om.runtime.mode(local=True)
        .model("quickstart/units")
        .score("quickstart/sales[price]", "quickstart/sales[units]")
    )
    print(f"score (computed in this process): {local.get():.4f}")

    # promotion: copy the fitted model and its predictions to the 'prod' bucket, with lineage
    # (create_bucket: the first promotion creates 'prod'; a mistyped bucket would be refused)
    prod = om["prod"]
    meta = om.models.promote(
        "quickstart/units", prod.models, conditions=["fitted"], create_bucket=True
    )
    om.datasets.promote("quickstart/pred", prod.datasets, create_bucket=True)
    print(
        f"prod: {prod.models.list()} v{meta.version} from {meta.lineage['promoted_from']['bucket']}"
    )


if __name__ == "__main__":
    main()
