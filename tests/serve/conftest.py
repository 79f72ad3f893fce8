"""Iris models to serve (the server helper: tests/helpers/omfs_serving.py)."""

from __future__ import annotations

import pytest

pytest.importorskip("uvicorn")


@pytest.fixture(scope="session")
def iris():
    """``(X, y, fitted LogisticRegression, fitted one on a DataFrame with column names)``."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    data = load_iris(as_frame=True)
    X, y = data.data, data.target
    plain = LogisticRegression(max_iter=500).fit(X.to_numpy(), y)
    named = LogisticRegression(max_iter=500).fit(X, y)
    return X, y, plain, named
