"""A context the cluster's workers share, on a folder or on S3, with datasets X and Y: the
runtime tests' common context."""

from __future__ import annotations

import numpy as np
import pandas as pd

import omfs

X = pd.DataFrame({"x1": np.arange(30.0), "x2": np.arange(30.0) % 7})
Y = pd.DataFrame({"y": 3 * X["x1"] - 2 * X["x2"] + 1})


def shared_context(request, tmp_path, dask_processes):
    """A context on a folder (``request.param == "local"``) or on S3, on the session's
    Dask cluster, holding X and Y."""
    if request.param == "local":
        om = omfs.setup(tmp_path / "ctx", cluster=dask_processes["client"])
    else:
        om = omfs.setup(
            request.getfixturevalue("s3_root_factory")(),
            storage_options=request.getfixturevalue("s3_options"),
            cluster=dask_processes["client"],
        )
    om.datasets.put(X, "X")
    om.datasets.put(Y, "Y")
    return om
