"""Grid search on the cluster: candidates over the route's workers, the best stored."""

from __future__ import annotations

import json
import threading

import joblib
import numpy as np
import pandas as pd
import pytest
from distributed import get_task_stream
from sklearn.linear_model import Ridge

import omfs
from omfs.compute.gridsearch import clear_input_cache, input_cache_stats

rng = np.random.default_rng(0)
X = pd.DataFrame(rng.random((60, 3)), columns=["a", "b", "c"])
Y = pd.DataFrame({"y": X["a"] * 3 + X["b"] + rng.normal(0, 0.1, 60)})


@pytest.mark.cluster
def test_gridsearch_stores_the_best_version_and_the_table(tmp_path, dask_processes, cli):
    om = omfs.setup(tmp_path / "ctx", cluster=dask_processes["client"])
    om.datasets.put(X, "X")
    om.datasets.put(Y, "Y")
    om.models.put(Ridge(), "m")
    with get_task_stream(dask_processes["client"]) as stream:
        task = (
            om.runtime.require("gpu")
            .model("m")
            .gridsearch("X", "Y", parameters={"alpha": [0.001, 1, 1000]}, cv=3)
        )
        meta = task.get(timeout=120)
    assert meta.version == 2
    search = meta.lineage["task"]
    assert search["method"] == "gridsearch" and search["params"] == {"alpha": 0.001}
    assert search["candidates"] == 3 and search["score"] > 0.9
    assert om.models.get("m").alpha == 0.001
    table = om.datasets.get("m_gridsearch")
    assert list(table["param_alpha"]) == [0.001, 1, 1000] and list(table["rank"]) == [1, 2, 3]
    workers = {t["worker"] for t in stream.data if "gridsearch" in str(t["key"])}
    assert workers == {dask_processes["workers"]["gpu-worker"]}
    assert om.runtime.result(task.id).version == 2
    gpu = dask_processes["workers"]["gpu-worker"]
    stats = dask_processes["client"].run(input_cache_stats, workers=[gpu])[gpu]
    assert stats["hits"] >= 3  # X and Y read once per worker process, not per candidate

    om.datasets.put(X * 2, "X")  # a new version: the next search must not use the cached v1
    env = {"OMFS_ROOT": str(tmp_path / "ctx"), "OMFS_CLUSTER": dask_processes["address"]}
    grid = json.dumps({"alpha": [0.01, 10]})
    out = cli("runtime", "model", "m", "gridsearch", "X", "Y", "--param-grid", grid, env=env)
    assert out.code == 0, out.stderr
    assert out.stdout.split() == ["models", "m", "v3"]
    trained_on = om.models.metadata("m").lineage["trained_on"]
    assert [(t["dataset"], t["version"]) for t in trained_on] == [("X", 2), ("Y", 1)]
    assert om.models.get("m").coef_[0] == pytest.approx(1.5, abs=0.2)  # fit on X * 2
    bad = cli("runtime", "model", "m", "gridsearch", "X", "Y", "--param-grid", "{", env=env)
    assert bad.code == 1 and "--param-grid is not JSON" in bad.stderr


fits_on: list[int] = []


class NotingRidge(Ridge):
    """A Ridge that notes the thread each fit ran on."""

    def fit(self, X, y, sample_weight=None):
        fits_on.append(threading.get_ident())
        return super().fit(X, y, sample_weight)


def test_local_gridsearch_runs_candidates_on_threads_and_sees_new_versions(tmp_path):
    om = omfs.setup(tmp_path / "ctx")
    om.datasets.put(X, "X")
    om.datasets.put(Y, "Y")
    om.models.put(NotingRidge(), "m")
    clear_input_cache()
    fits_on.clear()
    local = om.runtime.mode(local=True).model("m")
    meta = local.gridsearch("X", "Y", parameters={"alpha": [0.001, 1, 1000]}, cv=3).get()
    assert meta.version == 2 and meta.lineage["task"]["params"] == {"alpha": 0.001}
    assert list(om.datasets.get("m_gridsearch")["rank"]) == [1, 2, 3]
    assert input_cache_stats()["loads"] == 2  # X and Y, each read once for 3 candidates
    if joblib.cpu_count() > 1:  # the 9 candidate fits on joblib's threads, the refit here
        assert fits_on.count(threading.get_ident()) == 1 and len(fits_on) == 10

    om.datasets.put(X * 2, "X")
    meta = local.gridsearch("X", "Y", parameters={"alpha": [0.001, 1]}, cv=3).get()
    assert meta.lineage["trained_on"][0]["version"] == 2
    assert om.models.get("m").coef_[0] == pytest.approx(1.5, abs=0.2)


def test_a_search_that_cannot_work_is_refused_before_it_runs(tmp_path):
    """Attacker's finding: an empty grid stored a one-candidate "search", an unknown
    parameter or a non-estimator failed only on the worker, and a candidate whose every fold
    failed came back as scikit-learn's whole report on one line."""
    from omfs.errors import InvalidModelError, TaskFailedError, UsageError

    om = omfs.setup(tmp_path / "ctx")
    om.datasets.put(X, "X")
    om.datasets.put(Y, "Y")
    om.models.put(Ridge(), "m")
    om.models.put({"not": "an estimator"}, "notest")
    runtime = om.runtime.mode(local=True)
    with pytest.raises(UsageError, match=r"grid of the search of model 'm' names no parameter"):
        runtime.model("m").gridsearch("X", "Y", parameters={}, cv=3)
    with pytest.raises(UsageError, match=r"Model 'm' \(Ridge\) has no parameter 'bogus'; it takes"):
        runtime.model("m").gridsearch("X", "Y", parameters={"bogus": [1, 2]}, cv=3)
    with pytest.raises(InvalidModelError, match=r"'notest'@v1 holds a dict, not a scikit-learn"):
        runtime.model("notest").gridsearch("X", "Y", parameters={"C": [1]}, cv=3)
    with pytest.raises(UsageError, match=r"Model 'm' \(Ridge\) learns from targets: give Y"):
        runtime.model("m").gridsearch("X", None, parameters={"alpha": [1]}, cv=3)
    assert [v.version for v in om.models.versions("m")] == [1]
    assert not om.datasets.exists("m_gridsearch")
    failed = runtime.model("m").gridsearch("X", "Y", parameters={"alpha": [-1.0]}, cv=3)
    with pytest.raises(TaskFailedError) as err:
        failed.get()
    text = str(err.value)
    assert text.startswith("Every fold of candidate {'alpha': -1.0} of the search of model 'm'")
    assert "Traceback" not in text and "\n" not in text
    assert [v.version for v in om.models.versions("m")] == [1]


def test_candidates_of_a_plain_estimator_score_on_arrays_with_the_same_scores(tmp_path):
    """A plain scikit-learn estimator's candidates are scored on the frame's values (one
    array per pinned input, not a frame indexed fold by fold); a pipeline keeps the frame,
    whose column names it may select by. The scores are those of the frame itself."""
    from sklearn.compose import make_column_transformer
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from omfs.compute import gridsearch

    om = omfs.setup(tmp_path / "ctx")
    om.datasets.put(X, "X")
    om.datasets.put(Y, "Y")
    om.models.put(Ridge(), "m")
    by_name = make_column_transformer((StandardScaler(), ["a", "b"]), remainder="drop")
    om.models.put(make_pipeline(by_name, Ridge()), "p")
    clear_input_cache()
    pins = [gridsearch.pin_input(om, v, role) for v, role in (("X", "X"), ("Y", "Y"))]
    for name in ("m", "p"):
        meta = om.models.metadata(name)
        params = {"alpha": 1.0} if name == "m" else {"ridge__alpha": 1.0}
        row = gridsearch.score_candidate(om, meta, *pins, params, 3, None)
        model = om.models.get(name).set_params(**params)
        expected = cross_val_score(model, X, Y["y"], cv=3)
        assert row["fold_scores"] == pytest.approx(list(expected))
    assert gridsearch._cached_array.cache_info().currsize == 2  # X and Y, for the Ridge only


def test_the_best_parameters_keep_their_types_in_lineage_and_table(tmp_path):
    """Newcomer's finding: lineage held repr strings ('0.1', "'lbfgs'") and the table's
    param columns were text, so Model(**params) and numeric sorting failed."""
    from sklearn.svm import SVR

    om = omfs.setup(tmp_path / "ctx")
    om.datasets.put(X, "X")
    om.datasets.put(Y, "Y")
    om.models.put(SVR(), "svr")
    grid = {"C": [0.5, 2], "kernel": ["rbf", "linear"], "gamma": ["scale", 0.1]}
    meta = om.runtime.mode(local=True).model("svr").gridsearch("X", "Y", parameters=grid, cv=3)
    task = meta.get().lineage["task"]
    assert SVR(**task["params"]).get_params()["C"] in (0.5, 2) and task["cv"] == 3
    table = om.datasets.get("svr_gridsearch")
    assert table["param_C"].dtype.kind == "f" and set(table["param_kernel"]) == {"rbf", "linear"}
    assert set(table["param_gamma"]) == {"'scale'", "0.1"}  # mixed types: each value's repr
    assert json.loads(table["params"][0]) == task["params"]


@pytest.mark.parametrize(
    ("estimator", "supervised", "cv", "scoring"),
    [
        ("svc", True, 3, None),
        ("svc", True, 4, "f1"),
        ("ridge", True, 5, "neg_mean_absolute_error"),
        ("kmeans", False, 3, None),
        ("svc", True, "shuffled", "accuracy"),
    ],
)
def test_the_fold_loop_scores_as_cross_val_score_does(estimator, supervised, cv, scoring):
    """A plain estimator on arrays is scored fold by fold without cross_val_score's
    machinery (7% of an SVC search); its scores are cross_val_score's, for classifiers
    (stratified folds), regressors, clusterers (no y), any scoring and splitter."""
    from sklearn.cluster import KMeans
    from sklearn.model_selection import KFold, cross_val_score
    from sklearn.svm import SVC

    from omfs.compute import gridsearch

    rng = np.random.default_rng(3)
    x = rng.normal(size=(120, 4))
    made = {"svc": SVC(C=0.5), "ridge": Ridge(alpha=2.0), "kmeans": KMeans(3, n_init=2)}
    model = made[estimator]
    if estimator == "kmeans":
        model.set_params(random_state=0)
    y = (x[:, 0] > 0).astype(int) if estimator == "svc" else x @ [1.0, 2.0, 0.0, -1.0]
    y = y if supervised else None
    splitter = KFold(4, shuffle=True, random_state=7) if cv == "shuffled" else cv
    assert gridsearch._foldable(model, x, y)
    ours = gridsearch._fold_scores(model, x, y, splitter, scoring)
    theirs = cross_val_score(model, x, y, cv=splitter, scoring=scoring)
    assert list(ours) == pytest.approx(list(theirs))


def test_the_fold_loop_is_not_used_where_it_would_score_otherwise():
    """A kernel given as a matrix (pairwise), a pipeline, or a frame keep cross_val_score."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    from omfs.compute import gridsearch

    x, y = np.eye(6), np.array([0, 1] * 3)
    assert not gridsearch._foldable(SVC(kernel="precomputed"), x, y)
    assert not gridsearch._foldable(make_pipeline(StandardScaler(), SVC()), x, y)
    assert not gridsearch._foldable(SVC(), pd.DataFrame(x), y)


def test_a_fold_that_fails_scores_nan_and_every_fold_failing_is_one_line(tmp_path):
    """As with cross_val_score: some folds failing warn and score NaN; all failing is the
    one-line TaskFailedError naming the candidate."""
    from sklearn.exceptions import FitFailedWarning
    from sklearn.model_selection import KFold
    from sklearn.svm import SVC

    from omfs.compute import gridsearch

    x = np.arange(40.0).reshape(20, 2)
    y = np.array([0] * 10 + [1] * 5 + [0] * 5)
    with pytest.warns(FitFailedWarning, match="1 fits failed out of a total of 2"):
        # the second fold's training half holds one class only: SVC refuses it
        scores = gridsearch._fold_scores(SVC(), x, y, KFold(2), None)
    assert np.isnan(scores[1]) and not np.isnan(scores[0])
    om = omfs.setup(tmp_path / "ctx")
    om.datasets.put(pd.DataFrame(x, columns=["a", "b"]), "X")
    om.datasets.put(pd.DataFrame({"y": y}), "Y")
    meta = om.models.put(SVC(), "m")
    pins = [gridsearch.pin_input(om, v, role) for v, role in (("X", "X"), ("Y", "Y"))]
    with pytest.raises(omfs.errors.TaskFailedError) as err:
        gridsearch.score_candidate(om, meta, *pins, {"C": -1.0}, 3, None)
    text = str(err.value)
    assert text.startswith("Every fold of candidate {'C': -1.0} of the search of model 'm'")
    assert "\n" not in text
