"""Estimators for runtime tests, importable on Dask workers (PYTHONPATH is set by conftest)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin


class SlowRegressor(RegressorMixin, BaseEstimator):
    """Fits a mean after sleeping; writes its pid to ``started_file`` when fit begins."""

    def __init__(self, seconds: float = 3.0, started_file: str | None = None):
        self.seconds = seconds
        self.started_file = started_file

    def fit(self, X, y):
        if self.started_file:
            Path(self.started_file).write_text(str(os.getpid()))
        time.sleep(self.seconds)
        self.mean_ = float(np.mean(y))
        return self

    def predict(self, X):
        return np.full(len(X), self.mean_)


class SlowToStore(RegressorMixin, BaseEstimator):
    """Fits at once; once fitted, takes ``seconds`` to pickle (to store), writing
    ``storing_file`` as it begins: a task caught in the middle of its write."""

    def __init__(self, seconds: float = 1.0, storing_file: str | None = None):
        self.seconds = seconds
        self.storing_file = storing_file

    def fit(self, X, y):
        self.mean_ = float(np.mean(y))
        return self

    def predict(self, X):
        return np.full(len(X), self.mean_)

    def __getstate__(self):
        if hasattr(self, "mean_") and self.storing_file:
            Path(self.storing_file).write_text(str(os.getpid()))
            time.sleep(self.seconds)
        return super().__getstate__()


class ChattyPredictor(BaseEstimator):
    """Logs and warns as it predicts; ``returns="set"`` answers with a set (which omfs
    cannot store as JSON or Parquet), ``"set-in-dict"`` with one inside a dict,
    ``"object"`` with a bare object."""

    def __init__(self, returns: str = "array"):
        self.returns = returns

    def fit(self, X, y=None):
        return self

    def predict(self, X):
        import logging
        import warnings

        logging.getLogger("chatty").warning("predicting %d rows", len(X))
        warnings.warn("chatty is deprecated", DeprecationWarning, stacklevel=1)
        if self.returns == "set":
            return {1, 2, 3}
        if self.returns == "set-in-dict":
            return {"a": {1, 2}}
        if self.returns == "object":
            return object()
        return np.arange(len(X), dtype=float)


class SlowPredictor(RegressorMixin, BaseEstimator):
    """Fits at once; predicts after sleeping ``seconds``, writing ``started_file`` as the
    predict begins."""

    def __init__(self, seconds: float = 2.0, started_file: str | None = None):
        self.seconds = seconds
        self.started_file = started_file

    def fit(self, X, y=None):
        return self

    def predict(self, X):
        if self.started_file:
            Path(self.started_file).write_text(str(os.getpid()))
        time.sleep(self.seconds)
        return np.zeros(len(X))


def interrupting_reduce(values):
    """A reduce whose code raises KeyboardInterrupt (on a Dask worker it stopped the worker)."""
    raise KeyboardInterrupt
