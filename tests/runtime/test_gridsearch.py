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
from omfs.compute import folds
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
    assert set(table["param_gamma"]) == {"scale", "0.1"}  # mixed types: each value as text
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

    rng = np.random.default_rng(3)
    x = rng.normal(size=(120, 4))
    made = {"svc": SVC(C=0.5), "ridge": Ridge(alpha=2.0), "kmeans": KMeans(3, n_init=2)}
    model = made[estimator]
    if estimator == "kmeans":
        model.set_params(random_state=0)
    y = (x[:, 0] > 0).astype(int) if estimator == "svc" else x @ [1.0, 2.0, 0.0, -1.0]
    y = y if supervised else None
    splitter = KFold(4, shuffle=True, random_state=7) if cv == "shuffled" else cv
    assert folds.foldable(model, x, y)
    ours = folds.fold_scores(model, x, y, splitter, scoring)
    theirs = cross_val_score(model, x, y, cv=splitter, scoring=scoring)
    assert list(ours) == pytest.approx(list(theirs))


def test_the_fold_loop_is_not_used_where_it_would_score_otherwise():
    """A kernel given as a matrix (pairwise), a pipeline, or a frame keep cross_val_score."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    x, y = np.eye(6), np.array([0, 1] * 3)
    assert not folds.foldable(SVC(kernel="precomputed"), x, y)
    assert not folds.foldable(make_pipeline(StandardScaler(), SVC()), x, y)
    assert not folds.foldable(SVC(), pd.DataFrame(x), y)


def test_a_fold_that_fails_scores_nan_and_so_does_a_candidate_whose_every_fold_did(tmp_path):
    """As with cross_val_score: some folds failing warn and score NaN; a candidate whose
    every fold failed scores NaN (GridSearchCV ranks it last)."""
    from sklearn.exceptions import FitFailedWarning
    from sklearn.model_selection import KFold
    from sklearn.svm import SVC

    from omfs.compute import gridsearch

    x = np.arange(40.0).reshape(20, 2)
    y = np.array([0] * 10 + [1] * 5 + [0] * 5)
    with pytest.warns(FitFailedWarning, match="1 fits failed out of a total of 2"):
        # the second fold's training half holds one class only: SVC refuses it
        scores = folds.fold_scores(SVC(), x, y, KFold(2), None)
    assert np.isnan(scores[1]) and not np.isnan(scores[0])
    om = omfs.setup(tmp_path / "ctx")
    om.datasets.put(pd.DataFrame(x, columns=["a", "b"]), "X")
    om.datasets.put(pd.DataFrame({"y": y}), "Y")
    meta = om.models.put(SVC(), "m")
    pins = [gridsearch.pin_input(om, v, role) for v, role in (("X", "X"), ("Y", "Y"))]
    row = gridsearch.score_candidate(om, meta, *pins, {"C": -1.0}, 3, None)
    assert np.isnan(row["mean_score"]) and row["notes"][0].startswith("every fold failed: ")


@pytest.mark.filterwarnings(
    "ignore:Scoring failed",
    "ignore:One or more of the test scores are non-finite",
    "ignore::sklearn.exceptions.FitFailedWarning",
)
def test_failures_rank_last_as_in_gridsearchcv_and_are_in_the_log(tmp_path):
    """Attacker's findings: a candidate whose mean was NaN ranked first and was stored; a
    scorer's error (no predict_proba, a fold too small) failed the whole search, where
    GridSearchCV scores NaN and goes on; what failed was in no log."""
    from sklearn.linear_model import SGDClassifier
    from sklearn.model_selection import GridSearchCV
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.svm import SVC

    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(60, 3)), columns=["a", "b", "c"])
    y = pd.DataFrame({"y": (x["a"] > 0).astype(int)})
    om = omfs.setup(tmp_path / "ctx")
    om.datasets.put(x, "X")
    om.datasets.put(y, "Y")
    om.models.put(SVC(), "svc")
    om.models.put(KNeighborsClassifier(), "knn")
    om.models.put(SGDClassifier(random_state=0), "sgd")
    runtime = om.runtime.mode(local=True)
    # the hinge loss has no predict_proba: neg_log_loss fails to score it, every fold
    grid = {"loss": ["hinge", "log_loss"]}
    task = runtime.model("sgd").gridsearch("X", "Y", parameters=grid, scoring="neg_log_loss")
    ours = task.get().lineage["task"]
    sgd = SGDClassifier(random_state=0)
    theirs = GridSearchCV(sgd, grid, scoring="neg_log_loss", cv=3).fit(x.values, y["y"])
    assert ours["params"] == theirs.best_params_ == {"loss": "log_loss"}
    assert ours["score"] == pytest.approx(theirs.best_score_)
    assert "scoring failed" in om.runtime.log(task.id)
    # a fold of 10 training rows: n_neighbors=15 cannot predict there (NaN), 3 can
    pairs = [(np.arange(10), np.arange(10, 60)), (np.arange(20, 60), np.arange(20))]
    grid = {"n_neighbors": [15, 3]}
    best = runtime.model("knn").gridsearch("X", "Y", parameters=grid, cv=pairs).get()
    theirs = GridSearchCV(KNeighborsClassifier(), grid, cv=pairs).fit(x.values, y["y"])
    assert best.lineage["task"]["params"] == theirs.best_params_ == {"n_neighbors": 3}
    table = om.datasets.get("knn_gridsearch")
    assert list(table["param_n_neighbors"]) == [3, 15] and np.isnan(table["mean_score"][1])
    # every candidate failing is one line, and nothing is stored
    with pytest.raises(omfs.errors.TaskFailedError, match=r"Every candidate of the search"):
        runtime.model("svc").gridsearch("X", "Y", parameters={"C": [-1.0, -2.0]}).get()
    assert [v.version for v in om.models.versions("svc")] == [1]


def test_the_refit_leaves_the_cached_input_as_stored(tmp_path):
    """Attacker's finding: Ridge(copy_X=False) centred the cached input in place as the
    best was refit, so the next search in the process stored a wrong model."""
    rng = np.random.default_rng(1)
    x = pd.DataFrame(rng.normal(5, 1, size=(60, 2)), columns=["a", "b"])
    y = pd.DataFrame({"y": x["a"] * 2 + 1})
    om = omfs.setup(tmp_path / "ctx")
    om.datasets.put(x, "X")
    om.datasets.put(y, "Y")
    om.models.put(Ridge(copy_X=False), "m")
    clear_input_cache()
    runtime = om.runtime.mode(local=True)
    grid = {"alpha": [0.1, 10.0]}
    intercepts = []
    for _ in range(3):
        runtime.model("m").gridsearch("X", "Y", parameters=grid, cv=3).get()
        intercepts.append(om.models.get("m").intercept_)
    assert intercepts == pytest.approx([intercepts[0]] * 3)
    expected = Ridge(alpha=0.1).fit(x.values, y["y"]).intercept_
    assert intercepts[0] == pytest.approx(expected)


def test_a_splitter_without_a_seed_gives_every_candidate_the_same_folds():
    """As in GridSearchCV (attacker's finding: KFold(shuffle=True) scored each candidate
    on other folds)."""
    from sklearn.model_selection import KFold, ShuffleSplit

    from omfs.compute.folds import fixed_splits

    x = np.arange(40).reshape(20, 2)
    for cv in (KFold(4, shuffle=True), ShuffleSplit(3, random_state=np.random.RandomState(0))):
        fixed = fixed_splits(cv)
        first = [t.tolist() for _, t in fixed.split(x)]
        assert [t.tolist() for _, t in fixed.split(x)] == first
        assert cv.random_state is None or not isinstance(cv.random_state, int)  # untouched
    seeded = KFold(4, shuffle=True, random_state=3)
    assert fixed_splits(seeded) is seeded and fixed_splits(3) == 3


def test_a_search_reads_running_once_a_candidate_runs(tmp_path):
    """Newcomer's finding: a search whose candidates ran read `pending` until its last
    step began."""
    from omfs.compute import gridsearch
    from omfs.compute.records import new_id, read_record

    om = omfs.setup(tmp_path / "ctx")
    om.datasets.put(X, "X")
    om.datasets.put(Y, "Y")
    meta = om.models.put(Ridge(), "m")
    pins = [gridsearch.pin_input(om, v, role) for v, role in (("X", "X"), ("Y", "Y"))]
    task_id = new_id()
    gridsearch.score_candidate(om, meta, *pins, {"alpha": 1.0}, 3, None, (task_id, {"cpu": 1}, "k"))
    gridsearch.score_candidate(om, meta, *pins, {"alpha": 2.0}, 3, None, (task_id, {"cpu": 1}, "k"))
    row = om.runtime.task(task_id)
    assert (row["status"], row["action"], row["object"]) == ("running", "gridsearch", "models/m@v1")
    assert read_record(om.storage, task_id)["key"] == "k"  # cancellable by id
