"""omfs quickstart: runs on the default context (a folder in your home directory).

    python examples/quickstart.py
"""

from __future__ import annotations

import numpy as np
import pandas as pd

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


if __name__ == "__main__":
    main()
