"""A grid search spread over the workers of a route: one task per candidate (its
cross-validation folds), then one task that refits the best candidate on all the data,
stores it as the model's next version and the cross-validation table as a dataset.

The candidates and the final task are submitted together; the final one depends on them
in the scheduler, so nothing waits for a round trip through the client.
"""

from __future__ import annotations

import time
from typing import Any

from omfs.compute.tasks import load_model, resolve_input, run_recorded
from omfs.errors import UsageError
from omfs.objects.metadata import Metadata, utcnow

__all__ = [
    "candidates",
    "run_here",
    "score_candidate",
    "store_best",
    "submit_gridsearch",
    "table_name",
]


def candidates(parameters: Any) -> list[dict[str, Any]]:
    """Every combination of ``parameters`` (a dict of lists, or a list of such dicts)."""
    from sklearn.model_selection import ParameterGrid

    try:
        grid = list(ParameterGrid(parameters))
    except (TypeError, ValueError) as exc:
        raise UsageError(
            f"parameters={parameters!r} is not a grid: give a dict of lists such as "
            f'{{"C": [0.1, 1, 10]}} ({exc})'
        ) from None
    if not grid:
        raise UsageError("The parameter grid is empty: give at least one value per parameter.")
    return grid


def table_name(model: str) -> str:
    """The dataset that holds a model's cross-validation table."""
    return f"{model}_gridsearch"


def _inputs(omega: Any, X: Any, Y: Any) -> tuple[Any, Any, list[dict[str, Any]]]:
    lineage: list[dict[str, Any]] = []
    x = resolve_input(omega, X, lineage, "X")
    y = resolve_input(omega, Y, lineage, "Y") if Y is not None else None
    return x, y, lineage


def score_candidate(
    omega: Any, meta: Metadata, X: Any, Y: Any, params: dict[str, Any], cv: Any, scoring: Any
) -> dict[str, Any]:
    """Cross-validate one candidate: its parameters, mean and std of the fold scores."""
    from sklearn.base import clone
    from sklearn.model_selection import cross_val_score

    x, y, _ = _inputs(omega, X, Y)
    estimator = clone(load_model(omega, meta)).set_params(**params)
    began = time.perf_counter()
    scores = cross_val_score(estimator, x, y, cv=cv, scoring=scoring)
    return {
        "params": params,
        "mean_score": float(scores.mean()),
        "std_score": float(scores.std()),
        "fold_scores": [float(s) for s in scores],
        "seconds": round(time.perf_counter() - began, 4),
    }


def store_best(
    omega: Any,
    task_id: str,
    meta: Metadata,
    X: Any,
    Y: Any,
    cv: Any,
    scoring: Any,
    route: dict[str, float],
    *results: dict[str, Any],
) -> Metadata:
    """Refit the best candidate on all the data and store it as the model's next version
    (lineage: the search, its parameters and score), the table as a dataset. Recorded as
    task ``task_id``."""

    def finish() -> Metadata:
        return _store_best(omega, meta, X, Y, cv, scoring, list(results))

    stored: Metadata = run_recorded(omega, task_id, meta, "gridsearch", call=finish, route=route)
    return stored


def run_here(
    omega: Any, meta: Metadata, X: Any, Y: Any, parameters: Any, cv: Any, scoring: Any
) -> tuple[Metadata, str]:
    """The whole search in this process (local mode): ``(new version, task id)``."""
    from omfs.compute.records import new_id

    task_id = new_id()
    results = [score_candidate(omega, meta, X, Y, p, cv, scoring) for p in candidates(parameters)]
    return store_best(omega, task_id, meta, X, Y, cv, scoring, {}, *results), task_id


def _store_best(
    omega: Any, meta: Metadata, X: Any, Y: Any, cv: Any, scoring: Any, results: list[Any]
) -> Metadata:
    import pandas as pd
    from sklearn.base import clone

    ranked = sorted(results, key=lambda r: r["mean_score"], reverse=True)
    best = ranked[0]
    x, y, lineage = _inputs(omega, X, Y)
    estimator = clone(load_model(omega, meta)).set_params(**best["params"])
    estimator.fit(x, y) if y is not None else estimator.fit(x)
    rows = [
        {
            "rank": rank + 1,
            "params": repr(r["params"]),
            **{f"param_{k}": repr(v) for k, v in r["params"].items()},
            "mean_score": r["mean_score"],
            "std_score": r["std_score"],
            "seconds": r["seconds"],
        }
        for rank, r in enumerate(ranked)
    ]
    table = omega.datasets.put(
        pd.DataFrame(rows),
        table_name(meta.name),
        attributes={"gridsearch_of": {"model": meta.name, "from_version": meta.version}},
    )
    search = {
        "method": "gridsearch",
        "params": {k: repr(v) for k, v in best["params"].items()},
        "score": best["mean_score"],
        "scoring": repr(scoring) if scoring is not None else "the estimator's score",
        "cv": repr(cv),
        "candidates": len(results),
        "table": {"dataset": table.name, "version": table.version},
        "from_version": meta.version,
        "at": utcnow(),
    }
    stored: Metadata = omega.models.put(
        estimator,
        meta.name,
        attributes=dict(meta.attributes),
        lineage={"trained_on": lineage, "task": search},
    )
    return stored


def submit_gridsearch(
    runtime: Any,
    meta: Metadata,
    X: Any,
    Y: Any,
    parameters: Any,
    cv: Any,
    scoring: Any,
    route: dict[str, float],
) -> tuple[Any, str, list[Any]]:
    """Submit the candidates and the final task; ``(final future, its task id, candidate
    futures)``."""
    from omfs.compute.records import new_id

    client = runtime.client
    omega = runtime.omega
    grid = candidates(parameters)
    task_id = new_id()
    stem = f"omfs-gridsearch-{meta.name.replace('/', '.')}-{task_id}"
    futures = []
    for i, params in enumerate(grid):
        future = client.submit(
            score_candidate, omega, meta, X, Y, params, cv, scoring,
            resources=route or None, pure=False, key=f"{stem}-{i}",
        )  # fmt: skip
        futures.append(future)
    final = client.submit(
        store_best, omega, task_id, meta, X, Y, cv, scoring, route, *futures,
        resources=route or None, pure=False, key=stem,
    )  # fmt: skip
    return final, task_id, futures
