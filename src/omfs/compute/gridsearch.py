"""A grid search spread over the workers of a route: one task per candidate (its
cross-validation folds), then one task that refits the best candidate on all the data,
stores it as the model's next version and the cross-validation table as a dataset.

The candidates and the final task are submitted together; the final one depends on them
in the scheduler, so nothing waits for a round trip through the client. Dataset inputs are
pinned to their version when the search is submitted, and each worker process reads a
pinned version once (:func:`read_input`), not once per candidate.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Any

from omfs.compute.folds import fixed_splits, fold_scores, foldable, plain_estimator
from omfs.compute.records import record_key
from omfs.compute.tasks import as_target, load_model, parse_input, plain_param, run_recorded
from omfs.errors import InvalidModelError, TaskFailedError, UsageError
from omfs.objects.metadata import Metadata, utcnow

__all__ = [
    "Pinned",
    "candidates",
    "check_search",
    "clear_input_cache",
    "input_cache_stats",
    "pin_input",
    "read_input",
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


def check_search(omega: Any, meta: Metadata, parameters: Any, Y: Any) -> None:
    """Refuse, before anything runs, a search that cannot work: no parameter to vary, a
    model that is not a scikit-learn estimator, a parameter it does not take, or a
    supervised estimator without ``Y``."""
    from sklearn.base import is_classifier, is_regressor

    grid = candidates(parameters)
    if grid == [{}]:
        raise UsageError(
            f"The parameter grid of the search of model {meta.name!r} names no parameter: "
            'give at least one, such as {"C": [0.1, 1, 10]}.'
        )
    model = load_model(omega, meta)
    if not (callable(getattr(model, "get_params", None)) and hasattr(model, "fit")):
        raise InvalidModelError(
            f"Model {meta.name!r}@v{meta.version} holds a {type(model).__qualname__}, not a "
            "scikit-learn estimator: a grid search needs one (with fit and get_params)."
        )
    known = model.get_params(deep=True)
    unknown = sorted({name for params in grid for name in params} - set(known))
    if unknown:
        shown = ", ".join(sorted(known)[:20]) + (", ..." if len(known) > 20 else "")
        raise UsageError(
            f"Model {meta.name!r} ({type(model).__qualname__}) has no parameter "
            f"{', '.join(map(repr, unknown))}; it takes: {shown}."
        )
    if Y is None and (is_classifier(model) or is_regressor(model)):
        raise UsageError(
            f"Model {meta.name!r} ({type(model).__qualname__}) learns from targets: give Y "
            "to its grid search."
        )


def table_name(model: str) -> str:
    """The dataset that holds a model's cross-validation table."""
    return f"{model}_gridsearch"


@dataclass(frozen=True)
class Pinned:
    """A dataset input of a search, pinned to the version it had when the search began
    (``created`` tells a version apart from one of the same number after a drop)."""

    role: str
    name: str
    bucket: str
    version: int
    created: str
    columns: tuple[str, ...] | None

    def lineage(self) -> dict[str, Any]:
        """The ``trained_on`` entry of the stored model, as a fit task writes it."""
        columns = list(self.columns) if self.columns is not None else None
        return {
            "role": self.role,
            "dataset": self.name,
            "version": self.version,
            "columns": columns,
            "bucket": self.bucket,
        }


def pin_input(omega: Any, value: Any, role: str) -> Any:
    """A dataset name (``"sales"``, ``"sales@v2[a,b]"``) as :class:`Pinned` to the version
    it selects now; data passes through."""
    if not isinstance(value, str):
        return value
    name, columns = parse_input(value)
    meta = omega.datasets.metadata(name)
    return Pinned(
        role,
        meta.name,
        meta.bucket,
        meta.version,
        str(meta.created),
        tuple(columns) if columns is not None else None,
    )


_reading = threading.Lock()
_log = logging.getLogger("omfs.gridsearch")


@functools.lru_cache(maxsize=4)
def _cached_input(omega: Any, pin: Pinned) -> Any:
    """One pinned dataset version, read once per process while it stays among the last
    used (a new version is another key: nothing stale is served)."""
    columns = list(pin.columns) if pin.columns is not None else None
    data = omega.datasets.get(pin.name, version=pin.version, columns=columns)
    return as_target(data) if pin.role == "Y" else data


def read_input(omega: Any, value: Any) -> Any:
    """The data of a :class:`Pinned` input (from this process's cache); data passes through.
    Candidates share the data read-only, as scikit-learn's GridSearchCV shares its ``X``."""
    if not isinstance(value, Pinned):
        return value
    with _reading:  # candidates on threads (local mode) wait for one read, not read twice
        return _cached_input(omega, value)


def _as_array(omega: Any, value: Any, data: Any) -> Any:
    """A numeric frame or series (no categories, no missing-value extension types) as one
    C-ordered NumPy array, once per pinned input; anything else as it is."""
    import numpy as np
    import pandas as pd

    if not isinstance(data, pd.DataFrame | pd.Series):
        return data
    dtypes = list(data.dtypes) if isinstance(data, pd.DataFrame) else [data.dtype]
    if not all(isinstance(t, np.dtype) and t.kind in "biuf" for t in dtypes):
        return data
    if isinstance(value, Pinned):
        with _reading:
            return _cached_array(omega, value)
    return _to_array(data)


def _to_array(data: Any) -> Any:
    import numpy as np

    return np.ascontiguousarray(data.to_numpy())


@functools.lru_cache(maxsize=4)
def _cached_array(omega: Any, pin: Pinned) -> Any:
    return _to_array(_cached_input(omega, pin))


def input_cache_stats() -> dict[str, int]:
    """How often this process reused a pinned input and how often it read one."""
    info = _cached_input.cache_info()
    return {"hits": info.hits, "loads": info.misses, "size": info.currsize}


def clear_input_cache() -> None:
    """Forget the inputs this process read (and the counts of :func:`input_cache_stats`)."""
    _cached_input.cache_clear()
    _cached_array.cache_clear()


def score_candidate(
    omega: Any,
    meta: Metadata,
    X: Any,
    Y: Any,
    params: dict[str, Any],
    cv: Any,
    scoring: Any,
    search: tuple[str, dict[str, float], str] | None = None,
) -> dict[str, Any]:
    """Cross-validate one candidate: its parameters, mean and std of the fold scores, and
    what failed (``notes``). A candidate whose every fold failed scores NaN, as in
    GridSearchCV: it ranks last, and the search fails only when every candidate did.
    ``search``: the search's task id, route and Dask key (its record reads running from
    now, and can be cancelled by id)."""
    import numpy as np
    from sklearn.base import clone
    from sklearn.model_selection import cross_val_score

    if search is not None:
        _mark_started(omega.storage, meta, *search)

    estimator = clone(load_model(omega, meta)).set_params(**params)
    x, y = read_input(omega, X), read_input(omega, Y)
    if isinstance(scoring, str | None) and plain_estimator(estimator):
        x, y = _as_array(omega, X, x), _as_array(omega, Y, y)
    began = time.perf_counter()
    notes: list[str] = []
    try:
        if foldable(estimator, x, y, scoring):
            scores = fold_scores(estimator, x, y, cv, scoring, notes)
        else:
            scores = cross_val_score(estimator, x, y, cv=cv, scoring=scoring)
    except ValueError as exc:  # scikit-learn's "All the N fits failed" and each traceback
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        if not lines or "fits failed" not in lines[0]:
            raise
        scores = np.array([])
        notes.append(f"every fold failed: {lines[-1]}")
    return {
        "params": params,
        "mean_score": float(scores.mean()) if len(scores) else math.nan,
        "std_score": float(scores.std()) if len(scores) else math.nan,
        "fold_scores": [float(s) for s in scores],
        "seconds": round(time.perf_counter() - began, 4),
        "notes": notes,
    }


_marked: set[str] = set()


def _mark_started(
    storage: Any, meta: Metadata, task_id: str, route: dict[str, float], key: str
) -> None:
    """The search's ``started`` record, once (put-if-absent; once per process): the search
    reads running while its candidates run, not pending until its last step. Its final
    step rewrites the record with its heartbeat."""
    if task_id in _marked:
        return
    _marked.add(task_id)
    doc = {"at": utcnow(), "action": "gridsearch", "route": route, "key": key}
    doc |= {"object": f"models/{meta.name}@v{meta.version}", "worker_name": "candidates"}
    with contextlib.suppress(FileExistsError):
        storage.create(record_key(task_id, "started.json"), json.dumps(doc).encode())


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
        return _store_best(omega, meta, X, Y, cv, scoring, list(results), task_id)

    stored: Metadata = run_recorded(omega, task_id, meta, "gridsearch", call=finish, route=route)
    return stored


def run_here(
    omega: Any, meta: Metadata, X: Any, Y: Any, parameters: Any, cv: Any, scoring: Any
) -> tuple[Metadata, str]:
    """The whole search in this process (local mode), the candidates on joblib's threads
    (one per core): ``(new version, task id)``."""
    from joblib import Parallel, delayed

    from omfs.compute.records import new_id

    task_id = new_id()
    X, Y, cv = pin_input(omega, X, "X"), pin_input(omega, Y, "Y"), fixed_splits(cv)
    score = delayed(score_candidate)
    results = Parallel(n_jobs=-1, prefer="threads")(
        score(omega, meta, X, Y, params, cv, scoring) for params in candidates(parameters)
    )
    return store_best(omega, task_id, meta, X, Y, cv, scoring, {}, *results), task_id


def _store_best(
    omega: Any,
    meta: Metadata,
    X: Any,
    Y: Any,
    cv: Any,
    scoring: Any,
    results: list[Any],
    task_id: str,
) -> Metadata:
    import pandas as pd
    from sklearn.base import clone

    # NaN (a candidate whose every fold failed) ranks last; ties keep the grid's order
    ranked = sorted(results, key=lambda r: _rank_key(r["mean_score"]), reverse=True)
    best = ranked[0]
    _report_failures(meta, ranked, task_id)
    # a copy: an estimator may change its input in place (Ridge(copy_X=False) centres
    # it), and the cached input is what later searches in this process read
    x, y = copy.deepcopy(read_input(omega, X)), copy.deepcopy(read_input(omega, Y))
    lineage = [v.lineage() for v in (X, Y) if isinstance(v, Pinned)]
    estimator = clone(load_model(omega, meta)).set_params(**best["params"])
    estimator.fit(x, y) if y is not None else estimator.fit(x)
    rows = [
        {
            "rank": rank + 1,
            "params": json.dumps({k: plain_param(v) for k, v in r["params"].items()}),
            **{f"param_{k}": plain_param(v) for k, v in r["params"].items()},
            "mean_score": r["mean_score"],
            "std_score": r["std_score"],
            "seconds": r["seconds"],
        }
        for rank, r in enumerate(ranked)
    ]
    table = omega.datasets.put(
        _one_type_per_column(pd.DataFrame(rows)),
        table_name(meta.name),
        attributes={"gridsearch_of": {"model": meta.name, "from_version": meta.version}},
    )
    search = {
        "method": "gridsearch",
        "params": {k: plain_param(v) for k, v in best["params"].items()},
        "score": best["mean_score"],
        "scoring": _scoring_name(scoring),
        "cv": plain_param(cv),
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


def _scoring_name(scoring: Any) -> str:
    """What the lineage says scored the candidates: a scorer's name as given."""
    if scoring is None:
        return "the estimator's score"
    return scoring if isinstance(scoring, str) else repr(scoring)


def _rank_key(score: float) -> tuple[bool, float]:
    return (not math.isnan(score), score)


def _report_failures(meta: Metadata, ranked: list[dict[str, Any]], task_id: str) -> None:
    """Log what failed in which candidate (the search's log shows it); TaskFailedError
    when every candidate failed: there is no best to store."""
    failed = [r for r in ranked if r.get("notes")]
    for r in failed:
        for note in r["notes"]:
            _log.warning("candidate %r: %s", r["params"], note)
    if not math.isnan(ranked[0]["mean_score"]):
        return
    first = failed[0] if failed else ranked[0]
    why = (first.get("notes") or ["every fold scored NaN"])[-1].removeprefix("every fold failed: ")
    if len(ranked) == 1:
        raise TaskFailedError(
            f"Every fold of candidate {first['params']!r} of the search of model "
            f"{meta.name!r} failed: {why}"
        )
    raise TaskFailedError(
        f"Every candidate of the search of model {meta.name!r} failed (`om runtime log "
        f"{task_id}` shows each); the first, {first['params']!r}: {why}"
    )


def _one_type_per_column(table: Any) -> Any:
    """The table with each ``param_`` column of one type: numbers (ints and floats), or
    strings, or booleans stay as they are; a column that mixes them (``gamma``: ``"scale"``
    and ``0.1``) holds each value as text (``"scale"``, ``"0.1"``), as Parquet needs one
    type per column; the ``params`` column keeps every value's type."""
    for column in [c for c in table.columns if c.startswith("param_")]:
        kinds = {
            "number" if isinstance(v, int | float) and not isinstance(v, bool) else type(v)
            for v in table[column]
            if v is not None
        }
        if len(kinds) > 1:
            table[column] = [
                v if v is None or isinstance(v, str) else str(v) for v in table[column]
            ]
    return table


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
    cv = fixed_splits(cv)
    X, Y = (_shared(client, pin_input(omega, v, role)) for v, role in ((X, "X"), (Y, "Y")))
    stem = f"omfs-gridsearch-{meta.name.replace('/', '.')}-{task_id}"
    futures = []
    for i, params in enumerate(grid):
        future = client.submit(
            score_candidate, omega, meta, X, Y, params, cv, scoring, (task_id, route, stem),
            resources=route or None, pure=False, key=f"{stem}-{i}",
        )  # fmt: skip
        futures.append(future)
    final = client.submit(
        store_best, omega, task_id, meta, X, Y, cv, scoring, route, *futures,
        resources=route or None, pure=False, key=stem,
    )  # fmt: skip
    return final, task_id, futures


def _shared(client: Any, value: Any) -> Any:
    """Data given as such is sent to the workers once (every worker: candidates run
    anywhere), not inside each candidate's task; names and pins stay as they are."""
    if value is None or isinstance(value, Pinned):
        return value
    return client.scatter(value, broadcast=True, hash=False)
