"""The estimators of the classical baseline (the features come from ``evaluation.baselines``: TF-IDF, raw
pixels, log-mel statistics), one per task kind, each tuned by cross-validation on the training rows:

- classification: logistic regression, C by stratified CV (log-loss) on at most ``max_cv_rows`` rows;
- multi-label: one-vs-rest logistic regression, each label's C by CV (log-loss), decided at 0.5;
- regression: ridge, alpha by efficient leave-one-out CV (sparse TF-IDF included).

Each returns a fitted object with ``raw(X)``: outputs in the task's ``raw`` form (log-probabilities, logits,
values), and ``info`` (the estimator's name, the chosen penalty, the parameter count).
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV, RidgeCV
from sklearn.model_selection import StratifiedKFold, train_test_split

logger = logging.getLogger(__name__)

CS = (0.01, 0.1, 1.0, 10.0, 100.0)


class Fitted:
    def __init__(self, raw, info: dict):
        self.raw, self.info = raw, info


def choose_C(X, y, *, Cs=CS, cv_folds: int = 3, max_cv_rows: int = 3000, max_iter: int = 2000, seed: int = 0) -> float:
    rows = np.arange(len(y))
    if len(y) > max_cv_rows:
        try:
            rows, _ = train_test_split(rows, train_size=max_cv_rows, stratify=y, random_state=seed)
        except ValueError:  # a class too rare to stratify: a plain random subsample
            rows = np.random.default_rng(seed).choice(len(y), max_cv_rows, replace=False)
    folds = min(cv_folds, int(np.unique(y[rows], return_counts=True)[1].min()))
    if folds < 2:
        logger.info("baseline: too few rows per class to choose C by CV; C=1")
        return 1.0
    # the search only ranks the Cs: a few hundred solver iterations do that (weak regularisation on thousands of
    # pixel features would otherwise spend most of the baseline's time converging C=100 to the last digit)
    search = LogisticRegressionCV(Cs=list(Cs), cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
                                  scoring="neg_log_loss", max_iter=min(max_iter, 300), random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence at the extreme Cs, attribute-rename FutureWarnings
        search.fit(X[rows], y[rows])
    return float(np.ravel(search.C_)[0])


def _logistic(X, y, C, max_iter, seed):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return LogisticRegression(C=C, max_iter=max_iter, random_state=seed).fit(X, y)


def fit_logistic(X, y, *, n_classes: int, C: float | None = None, max_iter: int = 2000, seed: int = 0, **options):
    y = np.asarray(y, dtype=np.int64)
    chosen = C if C is not None else choose_C(X, y, max_iter=max_iter, seed=seed, **options)
    model = _logistic(X, y, chosen, max_iter, seed)

    def raw(X_new):
        scores = model.predict_proba(X_new)
        full = np.zeros((scores.shape[0], n_classes))  # classes absent from training get 0
        full[:, model.classes_] = scores
        return np.log(np.clip(full, 1e-300, 1.0))

    return Fitted(raw, {"estimator": "logistic regression", "C": chosen,
                        "parameters": int(model.coef_.size + model.intercept_.size)})


def fit_one_vs_rest(X, Y, *, max_iter: int = 2000, seed: int = 0, **options):
    Y = np.asarray(Y).astype(np.int64)
    models, Cs, parameters = [], [], 0
    for j in range(Y.shape[1]):
        y = Y[:, j]
        if y.min() == y.max():
            models.append(float(y[0]))
            Cs.append(None)
            continue
        C = choose_C(X, y, max_iter=max_iter, seed=seed, **options)
        model = _logistic(X, y, C, max_iter, seed)
        models.append(model)
        Cs.append(C)
        parameters += int(model.coef_.size + model.intercept_.size)

    def raw(X_new):
        columns = []
        for model in models:
            if isinstance(model, float):
                columns.append(np.full(X_new.shape[0], 20.0 if model else -20.0))
            else:
                columns.append(model.decision_function(X_new))
        return np.stack(columns, axis=1)

    return Fitted(raw, {"estimator": "one-vs-rest logistic regression", "C": Cs, "parameters": parameters})


def fit_ridge(X, y, *, seed: int = 0, **_):
    from graftkit.tasks.heads import RIDGE_ALPHAS

    y = np.asarray(y, dtype=np.float64)
    model = RidgeCV(alphas=RIDGE_ALPHAS).fit(X, y)
    return Fitted(lambda X_new: model.predict(X_new).reshape(-1, 1),
                  {"estimator": "ridge", "alpha": float(model.alpha_), "parameters": int(np.size(model.coef_) + 1)})
