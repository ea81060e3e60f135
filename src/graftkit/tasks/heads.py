"""Light heads on frozen features, fitted with scikit-learn and stored as plain arrays (safetensors); they
predict with the same arithmetic scikit-learn uses, so no pickle is ever needed. Each task kind picks its heads
(``tasks/<kind>.py``): logistic regression (C by cross-validation) and a one-hidden-layer MLP for single-label
classification, one-vs-rest logistic regression for multi-label, ridge regression (penalty by leave-one-out
cross-validation) for regression, and ``LinearHead``, the exported output layer of a fine-tuned model."""

from __future__ import annotations

import logging
import warnings
from abc import ABC, abstractmethod
from collections import Counter

import numpy as np
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV, Ridge, RidgeCV
from sklearn.model_selection import StratifiedKFold
from sklearn.neural_network import MLPClassifier

from graftkit.errors import ConfigError

logger = logging.getLogger(__name__)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _binary_or_softmax(z: np.ndarray) -> np.ndarray:
    if z.shape[1] == 1:  # scikit-learn's binary models score the positive class only
        p = 1.0 / (1.0 + np.exp(-z[:, 0]))
        return np.stack([1.0 - p, p], axis=1)
    return _softmax(z)


class Head(ABC):
    kind = ""

    def __init__(self, arrays: dict[str, np.ndarray], info: dict):
        self.arrays = arrays
        self.info = info

    def _standardize(self, X: np.ndarray) -> np.ndarray:
        return (X - self.arrays["mean"]) / self.arrays["scale"]

    @abstractmethod
    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities, shape ``(n, n_classes)``."""

    def logits(self, X: np.ndarray) -> np.ndarray:
        """Scores whose softmax is ``predict_proba`` (temperature scaling divides them). Heads with a linear
        output layer return that layer's output; this default, log-probabilities, has the same softmax."""
        return np.log(np.clip(self.predict_proba(X), 1e-300, 1.0))

    def fixed_params(self) -> dict:
        """The hyper-parameters a search chose (C, alpha), to refit the same head on other rows (cross-fitting)."""
        return {}

    @staticmethod
    def scaling(X: np.ndarray, standardize: bool) -> dict[str, np.ndarray]:
        if not standardize:
            return {"mean": np.zeros(X.shape[1], np.float32), "scale": np.ones(X.shape[1], np.float32)}
        scale = X.std(axis=0)
        return {"mean": X.mean(axis=0).astype(np.float32), "scale": np.where(scale > 1e-8, scale, 1.0).astype(np.float32)}


def fold_standardization(coef: np.ndarray, bias: np.ndarray, scaling: dict) -> tuple[np.ndarray, np.ndarray]:
    """A linear layer on standardised features rewritten as one on raw features (same outputs)."""
    coef = coef.astype(np.float64) / scaling["scale"]
    return coef, bias.astype(np.float64) - coef @ scaling["mean"]


SEARCH_TOL = 1e-3  # solver tolerance while cross-validation ranks C (the final fit keeps scikit-learn's 1e-4)


class LogRegHead(Head):
    """Multinomial logistic regression; ``C`` by stratified k-fold CV on the training split when not given."""

    kind = "logreg"

    @classmethod
    def fit(cls, X, y, *, C=None, Cs=(0.001, 0.01, 0.1, 1.0, 10.0), cv_folds=5, max_iter=1000,
            standardize=True, seed=0) -> LogRegHead:
        scaling = cls.scaling(X, standardize)
        Xs = (X - scaling["mean"]) / scaling["scale"]
        folds = min(cv_folds, min(Counter(y.tolist()).values()))
        if C is None and folds >= 2:
            # C is ranked with fits to a looser tolerance (the ranking hardly moves and the fits need a fraction
            # of the iterations; Banking77 in bench/RESULTS.md); the final model then continues from the
            # search's refit to scikit-learn's usual tolerance, so it is as converged as before.
            search = LogisticRegressionCV(Cs=list(Cs), cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
                                          max_iter=max_iter, tol=SEARCH_TOL, random_state=seed,
                                          scoring="neg_log_loss", n_jobs=-1)
            with warnings.catch_warnings():  # scikit-learn 1.9 announces attribute renames we do not use
                warnings.simplefilter("ignore", FutureWarning)
                search.fit(Xs, y)
            chosen = float(np.ravel(search.C_)[0])
            logger.info("logistic regression: C=%g chosen by %d-fold CV over %s", chosen, folds, list(Cs))
            model = LogisticRegression(C=chosen, max_iter=max_iter, random_state=seed, warm_start=True)
            model.coef_, model.intercept_ = search.coef_.copy(), search.intercept_.copy()
            model.fit(Xs, y)
        else:
            chosen = 1.0 if C is None else float(C)
            if C is None:
                logger.warning("too few examples per class for CV; logistic regression uses C=1")
            model = LogisticRegression(C=chosen, max_iter=max_iter, random_state=seed).fit(Xs, y)
        arrays = {**scaling, "coef": model.coef_.astype(np.float32), "intercept": model.intercept_.astype(np.float32)}
        return cls(arrays, {"kind": cls.kind, "C": chosen, "cv_folds": folds if C is None else 0})

    def fixed_params(self) -> dict:
        return {"C": float(self.info["C"])}

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        z = self._standardize(X) @ self.arrays["coef"].T + self.arrays["intercept"]
        return _binary_or_softmax(z)

    def logits(self, X: np.ndarray) -> np.ndarray:
        """``(n, n_classes)`` logits; the binary one-logit form ``z`` becomes ``[0, z]`` (the same softmax)."""
        z = self._standardize(X) @ self.arrays["coef"].T + self.arrays["intercept"]
        return np.concatenate([np.zeros_like(z), z], axis=1) if z.shape[1] == 1 else z

    def linear_weights(self, fold_scaling: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """``(weight, bias)`` of one linear layer with the same probabilities: on raw features with the
        standardisation folded in (default), or on standardised features (``fold_scaling=False``).
        scikit-learn's binary one-logit form becomes two logits ``[0, z]``."""
        coef = self.arrays["coef"].astype(np.float64)
        bias = self.arrays["intercept"].astype(np.float64)
        if fold_scaling:
            coef, bias = fold_standardization(coef, bias, self.arrays)
        if coef.shape[0] == 1:
            coef = np.concatenate([np.zeros_like(coef), coef])
            bias = np.concatenate([np.zeros_like(bias), bias])
        return coef.astype(np.float32), bias.astype(np.float32)


class MLPHead(Head):
    """One hidden ReLU layer, Adam, early stopping on a held-out 10% of the training split."""

    kind = "mlp"

    @classmethod
    def fit(cls, X, y, *, hidden_size=256, alpha=1e-4, max_iter=300, standardize=True, seed=0, **_) -> MLPHead:
        scaling = cls.scaling(X, standardize)
        Xs = (X - scaling["mean"]) / scaling["scale"]
        early = min(Counter(y.tolist()).values()) >= 10
        model = MLPClassifier(hidden_layer_sizes=(hidden_size,), alpha=alpha, max_iter=max_iter,
                              early_stopping=early, random_state=seed).fit(Xs, y)
        arrays = {**scaling, "w1": model.coefs_[0].astype(np.float32), "b1": model.intercepts_[0].astype(np.float32),
                  "w2": model.coefs_[1].astype(np.float32), "b2": model.intercepts_[1].astype(np.float32)}
        return cls(arrays, {"kind": cls.kind, "hidden_size": hidden_size, "alpha": alpha, "epochs": model.n_iter_})

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        hidden = np.maximum(self._standardize(X) @ self.arrays["w1"] + self.arrays["b1"], 0.0)
        return _binary_or_softmax(hidden @ self.arrays["w2"] + self.arrays["b2"])

    def logits(self, X: np.ndarray) -> np.ndarray:
        hidden = np.maximum(self._standardize(X) @ self.arrays["w1"] + self.arrays["b1"], 0.0)
        z = hidden @ self.arrays["w2"] + self.arrays["b2"]
        return np.concatenate([np.zeros_like(z), z], axis=1) if z.shape[1] == 1 else z


class OneVsRestHead(Head):
    """Multi-label: one L2-regularised logistic regression per label on the shared standardised features
    (binary relevance; scikit-learn's ``OneVsRestClassifier`` does the same), each label's C chosen by its own
    stratified CV. A label that is constant on the training rows gets a zero weight and its prior as bias."""

    kind = "ovr-logreg"

    @classmethod
    def fit(cls, X, Y, *, C=None, cv_folds=5, max_iter=1000, standardize=True, seed=0, **_) -> OneVsRestHead:
        scaling = cls.scaling(X, standardize)
        Y = np.asarray(Y)
        chosen = C if isinstance(C, (list, tuple)) else [C] * Y.shape[1]
        coefs, intercepts, Cs = [], [], []
        for j in range(Y.shape[1]):
            y = Y[:, j].astype(np.int64)
            positives = int(y.sum())
            if positives in (0, len(y)):
                prior = np.clip(positives / len(y), 1e-3, 1 - 1e-3)
                coefs.append(np.zeros(X.shape[1], np.float32))
                intercepts.append(np.float32(np.log(prior / (1 - prior))))
                Cs.append(None)
                continue
            head = LogRegHead.fit(X, y, C=chosen[j], cv_folds=cv_folds, max_iter=max_iter, standardize=standardize,
                                  seed=seed)
            coefs.append(head.arrays["coef"][0])
            intercepts.append(head.arrays["intercept"][0])
            Cs.append(head.info["C"])
        arrays = {**scaling, "coef": np.stack(coefs).astype(np.float32),
                  "intercept": np.asarray(intercepts, np.float32)}
        return cls(arrays, {"kind": cls.kind, "C": Cs, "cv_folds": cv_folds if C is None else 0})

    def fixed_params(self) -> dict:
        return {"C": list(self.info["C"])}

    def logits(self, X: np.ndarray) -> np.ndarray:
        return self._standardize(X) @ self.arrays["coef"].T + self.arrays["intercept"]

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Per-label probabilities ``sigmoid(logits)``, shape ``(n, n_labels)`` (rows need not sum to 1)."""
        return 1.0 / (1.0 + np.exp(-self.logits(X)))

    def linear_weights(self, fold_scaling: bool = True) -> tuple[np.ndarray, np.ndarray]:
        coef, bias = self.arrays["coef"], self.arrays["intercept"]
        if fold_scaling:
            coef, bias = fold_standardization(coef, bias, self.arrays)
        return coef.astype(np.float32), bias.astype(np.float32)


RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-2, 5, 15))


class RidgeHead(Head):
    """Regression: ridge on standardised features predicting the standardised target, the penalty chosen by
    efficient leave-one-out cross-validation (scikit-learn's ``RidgeCV``, Rifkin & Lippert 2007). ``logits``
    gives predictions in the target's own units, shape ``(n, 1)``."""

    kind = "ridge"

    @classmethod
    def fit(cls, X, y, *, alpha=None, C=None, standardize=True, seed=0, **_) -> RidgeHead:
        scaling = cls.scaling(X, standardize)
        Xs = (X - scaling["mean"]) / scaling["scale"]
        y = np.asarray(y, dtype=np.float64).ravel()
        target_mean, target_scale = float(y.mean()), float(y.std()) or 1.0
        ys = (y - target_mean) / target_scale
        if alpha is None and C is not None:
            alpha = 1.0 / float(C)
        if alpha is None:
            alpha = float(RidgeCV(alphas=RIDGE_ALPHAS).fit(Xs, ys).alpha_)
            logger.info("ridge: alpha=%g chosen by leave-one-out CV over %d values", alpha, len(RIDGE_ALPHAS))
        model = Ridge(alpha=float(alpha)).fit(Xs, ys)
        arrays = {**scaling, "coef": model.coef_.reshape(1, -1).astype(np.float32),
                  "intercept": np.asarray([model.intercept_], np.float32),
                  "target_mean": np.asarray([target_mean], np.float64),
                  "target_scale": np.asarray([target_scale], np.float64)}
        return cls(arrays, {"kind": cls.kind, "alpha": float(alpha)})

    def fixed_params(self) -> dict:
        return {"alpha": float(self.info["alpha"])}

    def logits(self, X: np.ndarray) -> np.ndarray:
        z = self._standardize(X) @ self.arrays["coef"].T + self.arrays["intercept"]
        return z * self.arrays["target_scale"] + self.arrays["target_mean"]

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        raise TypeError("a regression head has no probabilities; use logits() for its predictions")

    def linear_weights(self, fold_scaling: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """``(weight, bias)`` predicting the *standardised* target (the engine's output space)."""
        coef, bias = self.arrays["coef"], self.arrays["intercept"]
        if fold_scaling:
            coef, bias = fold_standardization(coef, bias, self.arrays)
        return coef.astype(np.float32), bias.astype(np.float32)


class LinearHead(Head):
    """The linear classification layer of a fine-tuned model (trained with its backbone by
    ``graftkit.training``): ``softmax(X @ weight.T + bias)`` on the fine-tuned backbone's features."""

    kind = "linear"

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return _softmax(X @ self.arrays["weight"].T + self.arrays["bias"])

    def logits(self, X: np.ndarray) -> np.ndarray:
        return X @ self.arrays["weight"].T + self.arrays["bias"]


class WordHead(Head):
    """A head applied to every word of a sentence: ragged features in (one ``(words, d)`` array per row), ragged
    logits out. It wraps the head fitted on all words stacked (``inner``) and saves the same arrays."""

    kind = "per-word"

    def __init__(self, arrays: dict[str, np.ndarray], info: dict):
        self.inner = head_from_state(arrays, info["inner"])
        super().__init__(self.inner.arrays, info)

    @classmethod
    def around(cls, inner: Head) -> WordHead:
        return cls(inner.arrays, {"kind": cls.kind, "inner": inner.info})

    def _per_row(self, X, compute):
        from graftkit.tasks.ragged import flat, is_ragged, lengths, split_like

        if not is_ragged(X):
            return compute(X)
        return split_like(compute(flat(X).reshape(-1, self.arrays_width())), lengths(X))

    def arrays_width(self) -> int:
        first = self.arrays.get("mean", self.arrays.get("weight"))
        return int(first.shape[-1])

    def logits(self, X):
        return self._per_row(X, self.inner.logits)

    def predict_proba(self, X):
        return self._per_row(X, self.inner.predict_proba)

    def fixed_params(self) -> dict:
        return self.inner.fixed_params()

    def linear_weights(self, fold_scaling: bool = True):
        return self.inner.linear_weights(fold_scaling)


def _unit(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


class SimilarityHead(Head):
    """Zero-shot: ``logits = logit_scale * cos(x, q_c)`` against one embedded description ``q_c`` per class
    (CLIP's zero-shot classifier, Radford et al. 2021, on any encoder that embeds text into its feature space).
    The arrays are the unit-normalised description embeddings (``queries``) and the scale; nothing is fitted."""

    kind = "similarity"

    @classmethod
    def from_queries(cls, queries: np.ndarray, logit_scale: float, texts=()) -> SimilarityHead:
        arrays = {"queries": _unit(queries), "logit_scale": np.asarray([logit_scale], np.float32)}
        return cls(arrays, {"kind": cls.kind, "logit_scale": float(logit_scale), "descriptions": list(texts)})

    def logits(self, X: np.ndarray) -> np.ndarray:
        return float(self.arrays["logit_scale"][0]) * (_unit(X) @ self.arrays["queries"].T)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return _softmax(self.logits(X))


PRIOR_CS = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)


def _prior_logreg(X, y, prior, C, n_classes, max_iter) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression with the L2 penalty centred on ``prior`` instead of zero:
    ``0.5 * ||W - W0||^2 + C * sum(cross-entropy)`` (a Gaussian prior on the weights with mean W0, the MAP
    estimate). scikit-learn's penalty is centred on zero, so a warm start from W0 alone would converge to
    the same optimum and forget the prior; hence this small L-BFGS fit (scipy)."""
    from scipy.optimize import minimize

    X = np.asarray(X, np.float64)
    W0 = np.asarray(prior, np.float64)
    onehot = np.eye(n_classes)[y]
    d = X.shape[1]

    def objective(theta):
        W, b = theta[:n_classes * d].reshape(n_classes, d), theta[n_classes * d:]
        z = X @ W.T + b
        z = z - z.max(axis=1, keepdims=True)
        log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        loss = -C * (onehot * log_p).sum() + 0.5 * ((W - W0) ** 2).sum()
        residual = C * (np.exp(log_p) - onehot)
        grad_W = residual.T @ X + (W - W0)
        return loss, np.concatenate([grad_W.ravel(), residual.sum(axis=0)])

    start = np.concatenate([W0.ravel(), np.zeros(n_classes)])
    result = minimize(objective, start, jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    return result.x[:n_classes * d].reshape(n_classes, d), result.x[n_classes * d:]


def fit_prior_logreg(X, y, prior, *, C=None, Cs=PRIOR_CS, cv_folds=5, max_iter=1000, seed=0, standardize=True,
                     n_classes=None) -> LogRegHead:
    """A ``LogRegHead`` whose weights start from, and are shrunk towards, ``prior`` (weights on the raw features:
    the class-description embeddings x the zero-shot logit scale) instead of zero: the label-initialised probe.
    On standardised features (the probe's default) the prior is carried over exactly (``x @ W0.T`` =
    ``z @ (W0 * scale).T + W0 @ mean``), so C means what it means for the plain probe. ``C`` by stratified CV on
    log-loss over ``Cs``."""
    n_classes = int(n_classes or prior.shape[0])
    y = np.asarray(y, np.int64)
    scaling = Head.scaling(X, standardize)
    Z = (X - scaling["mean"]) / scaling["scale"]
    W0 = np.asarray(prior, np.float64) * scaling["scale"]
    b0 = np.asarray(prior, np.float64) @ scaling["mean"]
    Zb = np.concatenate([Z, np.ones((len(Z), 1))], axis=1)  # the bias rides along, with its own prior b0
    prior_b = np.concatenate([W0, b0[:, None] if b0.ndim == 1 else b0], axis=1)
    folds = min(cv_folds, min(Counter(y.tolist()).values()))
    if C is None and folds >= 2:
        losses = []
        for candidate in Cs:
            total = 0.0
            for train, held in StratifiedKFold(folds, shuffle=True, random_state=seed).split(Z, y):
                W, b = _prior_logreg(Zb[train], y[train], prior_b, candidate, n_classes, max_iter)
                p = _softmax(Zb[held] @ W.T + b)
                total -= float(np.log(np.clip(p[np.arange(len(held)), y[held]], 1e-12, 1.0)).sum())
            losses.append(total)
        chosen = float(Cs[int(np.argmin(losses))])
        logger.info("label-initialised logistic regression: C=%g chosen by %d-fold CV over %s", chosen, folds,
                    list(Cs))
    else:
        chosen = 1.0 if C is None else float(C)
    W, b = _prior_logreg(Zb, y, prior_b, chosen, n_classes, max_iter)
    arrays = {**scaling, "coef": W[:, :-1].astype(np.float32), "intercept": (W[:, -1] + b).astype(np.float32)}
    return LogRegHead(arrays, {"kind": LogRegHead.kind, "C": chosen, "cv_folds": folds if C is None else 0,
                               "prior": "class-description embeddings (label-initialised)"})


LOADABLE_HEADS = {cls.kind: cls for cls in (LogRegHead, MLPHead, OneVsRestHead, RidgeHead, LinearHead, WordHead,
                                            SimilarityHead)}


def head_from_state(arrays: dict[str, np.ndarray], info: dict) -> Head:
    kind = info.get("kind")
    if kind == "gbdt":  # the tree head lives in its own module (it reads scikit-learn's fitted trees)
        from graftkit.tasks.gbdt import GBDTHead

        return GBDTHead(arrays, info)
    if kind not in LOADABLE_HEADS:
        raise ConfigError(f"unknown head kind {kind!r} in the model; known: {', '.join(LOADABLE_HEADS)}")
    return LOADABLE_HEADS[kind](arrays, info)
