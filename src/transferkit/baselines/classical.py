"""Classical models on fixed inputs: logistic regression and an RBF-SVM, C chosen by cross-validation.

Both are scikit-learn pipelines (standardise, then the model). The regularisation strength C is chosen by
stratified k-fold cross-validation on the training inputs alone, so the validation split stays free to choose
between the models and the test set is never looked at.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np

__all__ = ["CLASSICAL_MODELS", "ClassicalFit", "fit_classical", "make_estimator"]

CLASSICAL_MODELS = {
    "logreg": (0.01, 0.1, 1.0),
    "svm": (1.0, 10.0, 100.0),
}
"""Model name -> the C values cross-validation chooses from. Wide enough to bracket what won on Fashion-MNIST
pixels (SVM C=10) and on pretrained features (logistic regression C=0.1) without costing minutes."""
_MAX_FOLDS = 3


@dataclass
class ClassicalFit:
    """One classical model fitted on one kind of input, with how it was chosen and what it scored."""

    inputs: str
    """``pixels`` or ``features``."""
    model: str
    """A key of `CLASSICAL_MODELS`."""
    C: float
    cv_acc: float
    """Mean accuracy of the chosen C over the cross-validation folds of the training inputs."""
    folds: int
    seconds: float
    """Cross-validation and the final fit."""
    val_acc: float | None = None
    val_score: float | None = None
    """The validation figure the models are chosen by (`TrainConfig.select_by`; accuracy in place of a loss)."""
    estimator: object = field(default=None, repr=False, compare=False)

    @property
    def name(self) -> str:
        return f"{self.inputs}-{self.model}"

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("estimator")
        return {"name": self.name, **data}


def make_estimator(model: str, C: float, seed: int = 0):
    """The scikit-learn pipeline for `model` at strength `C` (standardised inputs)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    if model == "svm":
        return make_pipeline(StandardScaler(), SVC(C=C, kernel="rbf", gamma="scale"))
    if model == "logreg":
        return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=1000, random_state=seed))
    raise ValueError(f"unknown classical model {model!r}; choose one of {', '.join(CLASSICAL_MODELS)}")


def fit_classical(inputs: str, model: str, x: np.ndarray, y: np.ndarray, *, seed: int = 0) -> ClassicalFit:
    """Choose C by stratified cross-validation on (`x`, `y`), then fit on all of it.

    With fewer than two images in some class there is nothing to cross-validate: the middle C is used.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from threadpoolctl import threadpool_limits

    began = time.perf_counter()
    grid = CLASSICAL_MODELS[model]
    folds = min(_MAX_FOLDS, int(np.bincount(y).min()))
    # One BLAS/OpenMP thread: on two busy cores, logistic regression on 800 Fashion-MNIST images took 31.5 s with
    # the default two threads and 2.1 s with one; and a fixed thread count keeps the solve the same run to run.
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        # A C at the edge of the grid may stop lbfgs before full convergence; the CV score already judges it.
        warnings.simplefilter("ignore", ConvergenceWarning)
        if folds < 2:
            C, cv_acc = grid[len(grid) // 2], float("nan")
            estimator = make_estimator(model, C, seed).fit(x, y)
        else:
            splits = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
            search = GridSearchCV(make_estimator(model, grid[0], seed), {_c_param(model): list(grid)}, cv=splits)
            search.fit(x, y)
            C, cv_acc = float(search.best_params_[_c_param(model)]), float(search.best_score_)
            estimator = search.best_estimator_
    return ClassicalFit(inputs, model, C, cv_acc, folds, time.perf_counter() - began, estimator=estimator)


def _c_param(model: str) -> str:
    return "svc__C" if model == "svm" else "logisticregression__C"
