"""Scoring one grid-search candidate fold by fold as scikit-learn's ``cross_val_score``
does, without its per-call machinery, where that gives the same scores: scikit-learn's own
estimators on NumPy arrays (:func:`foldable`). And splitters made to draw the same folds
for every candidate (:func:`fixed_splits`), as GridSearchCV's are.
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["fixed_splits", "fold_scores", "foldable", "plain_estimator"]


def plain_estimator(estimator: Any) -> bool:
    """Whether ``estimator`` is one of scikit-learn's own with no estimator inside it (no
    pipeline or column transformer that selects columns by name): its scores are the same
    on a frame's values as on the frame, which scikit-learn indexes fold by fold at a
    cost (about 10% of an SVC's search)."""
    if not type(estimator).__module__.startswith("sklearn."):
        return False
    return not any(hasattr(v, "fit") for v in estimator.get_params(deep=True).values())


def foldable(estimator: Any, x: Any, y: Any, scoring: Any = None) -> bool:
    """Whether :func:`fold_scores` scores ``estimator`` as ``cross_val_score`` would: one
    of scikit-learn's own (:func:`plain_estimator`) that takes samples, not a kernel
    (pairwise), on NumPy arrays, scored by a scorer's name (a callable's value is checked
    by scikit-learn only)."""
    import numpy as np

    try:
        from sklearn.utils import get_tags  # scikit-learn >= 1.6
    except ImportError:
        return False
    arrays = isinstance(x, np.ndarray) and (y is None or isinstance(y, np.ndarray))
    return (
        isinstance(scoring, str | None)
        and arrays
        and plain_estimator(estimator)
        and not get_tags(estimator).input_tags.pairwise
    )


def fold_scores(
    estimator: Any, x: Any, y: Any, cv: Any, scoring: Any, notes: list[str] | None = None
) -> Any:
    """The fold scores of ``cross_val_score(estimator, x, y, cv=cv, scoring=scoring)``, a
    fresh clone fit per fold, without the per-call cost of its machinery (4 ms a
    candidate, 7% of an SVC search). As there, a fold whose fit fails scores NaN with a
    FitFailedWarning (every fit failing is its ValueError), one whose scoring fails scores
    NaN with a UserWarning. What failed is also added to ``notes``."""
    import warnings

    import numpy as np
    from sklearn.base import clone, is_classifier
    from sklearn.exceptions import FitFailedWarning
    from sklearn.metrics import check_scoring
    from sklearn.model_selection import check_cv

    splitter = check_cv(cv, y, classifier=is_classifier(estimator))
    scorer = check_scoring(estimator, scoring=scoring)
    notes = notes if notes is not None else []
    scores: list[float] = []
    fit_errors: list[str] = []
    for train, test in splitter.split(x, y):
        fold = clone(estimator)
        try:
            fold.fit(x[train]) if y is None else fold.fit(x[train], y[train])
        except Exception as exc:
            scores.append(np.nan)
            fit_errors.append(f"{type(exc).__name__}: {exc}")
            continue
        try:
            score = scorer(fold, x[test]) if y is None else scorer(fold, x[test], y[test])
        except Exception as exc:
            score = np.nan
            text = f"scoring failed: {type(exc).__name__}: {exc}"
            notes.append(text)
            warnings.warn(f"Scoring failed; this fold scores NaN. {text}", stacklevel=2)
        scores.append(float(score))
    if fit_errors and len(fit_errors) == len(scores):
        raise ValueError(f"All the {len(scores)} fits failed.\n" + "\n".join(fit_errors))
    if fit_errors:
        text = f"{len(fit_errors)} fits failed out of a total of {len(scores)}: {fit_errors[-1]}"
        notes.append(text)
        warnings.warn(f"{text}; their score is NaN.", FitFailedWarning, stacklevel=2)
    return np.asarray(scores, dtype=float)


def fixed_splits(cv: Any) -> Any:
    """``cv``, or for a splitter that draws its folds at random with no fixed seed (None,
    or a RandomState) a copy with one seed drawn now: every candidate, on whatever worker,
    is scored on the same folds, as in GridSearchCV."""
    import numbers

    state = getattr(cv, "random_state", 0)
    if not getattr(cv, "shuffle", True) or isinstance(state, numbers.Integral):
        return cv
    from sklearn.utils import check_random_state

    fixed = copy.copy(cv)
    fixed.random_state = int(check_random_state(state).randint(2**31 - 1))
    return fixed
