"""Gradient-boosted trees as a head (scikit-learn's ``HistGradientBoostingClassifier`` / ``Regressor``), saved as
plain arrays, never pickled.

The fitted trees are read from the estimator's ``_predictors`` (one ``TreePredictor`` per tree and iteration, its
``nodes`` a numpy structured array, plus the raw-category bitsets) and ``_bin_mapper``'s known categories; they
are stored field by field and predicted here in numpy with the same walk scikit-learn's ``_predictor.pyx`` does
(its categorical preprocessor, an ``OrdinalEncoder`` in a ``ColumnTransformer``, replayed from the stored
categories; missing values follow ``missing_go_to_left``; a categorical split sends the left bitset's categories left,
other known ones right, unknown ones as missing), summed in the same float64 order from the same baseline.
This is the ONE module that reads those private attributes: ``tests/test_gbdt.py`` checks that predictions after a
save / load equal scikit-learn's exactly, so a change upstream fails there and not silently in a model.
"""

from __future__ import annotations

import numpy as np

from graftkit.errors import ConfigError
from graftkit.tasks.heads import Head, _binary_or_softmax

NODE_FIELDS = ("value", "feature_idx", "num_threshold", "missing_go_to_left", "left", "right", "is_leaf",
               "is_categorical", "bitset_idx")
DEFAULTS = {"max_iter": 300, "learning_rate": 0.08, "max_leaf_nodes": 31, "l2_regularization": 1.0,
            "early_stopping": True, "validation_fraction": 0.1, "n_iter_no_change": 20}


def fit_estimator(X, y, *, classifier: bool, categorical=None, seed: int = 0, **params):
    """The fitted scikit-learn estimator (early stopping on a seeded 10 % of the rows unless turned off)."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    settings = {**DEFAULTS, **{k: v for k, v in params.items() if k in DEFAULTS and v is not None}}
    if len(y) < 50:  # too few rows to hold a validation share out
        settings["early_stopping"] = False
    mask = None if categorical is None or not np.any(categorical) else np.asarray(categorical, dtype=bool)
    cls = HistGradientBoostingClassifier if classifier else HistGradientBoostingRegressor
    return cls(categorical_features=mask, random_state=seed, **settings).fit(np.asarray(X, np.float64), y)


def _preprocessing(estimator) -> dict[str, np.ndarray]:
    """What the estimator's categorical preprocessor (an ``OrdinalEncoder`` in a ``ColumnTransformer``) does, as
    arrays: which input columns are categorical, in output order, and each one's sorted training categories."""
    mask = getattr(estimator, "is_categorical_", None)
    if mask is None or estimator._preprocessor is None:
        return {"categorical_columns": np.zeros(0, np.int64), "numerical_columns": np.zeros(0, np.int64),
                "categories": np.zeros(0, np.float64), "category_offsets": np.zeros(1, np.int64)}
    encoder = estimator._preprocessor.named_transformers_["encoder"]
    categories = [np.asarray(c, np.float64) for c in encoder.categories_]
    categories = [c[~np.isnan(c)] for c in categories]
    return {"categorical_columns": np.flatnonzero(mask).astype(np.int64),
            "numerical_columns": np.flatnonzero(~mask).astype(np.int64),
            "categories": np.concatenate(categories) if categories else np.zeros(0, np.float64),
            "category_offsets": np.cumsum([0] + [len(c) for c in categories]).astype(np.int64)}


class GBDTHead(Head):
    """Trees on frozen (fused) features: ``logits`` are the summed raw scores (a 0 column before the binary
    score, so the task's softmax gives scikit-learn's ``predict_proba``; the value itself for regression)."""

    kind = "gbdt"

    @classmethod
    def fit(cls, X, y, *, classifier: bool, categorical=None, seed: int = 0, **params) -> GBDTHead:
        return cls.from_estimator(fit_estimator(X, y, classifier=classifier, categorical=categorical, seed=seed,
                                                **params), settings={k: params.get(k) for k in DEFAULTS})

    @classmethod
    def from_estimator(cls, estimator, settings: dict | None = None) -> GBDTHead:
        trees = [predictor for iteration in estimator._predictors for predictor in iteration]
        nodes = [tree.nodes for tree in trees]
        arrays = {f"node_{name}": np.concatenate([n[name] for n in nodes]) for name in NODE_FIELDS}
        arrays["node_feature_idx"] = arrays["node_feature_idx"].astype(np.int64)
        arrays["tree_offsets"] = np.cumsum([0] + [len(n) for n in nodes]).astype(np.int64)
        bitsets = [tree.raw_left_cat_bitsets for tree in trees]
        arrays["bitset_offsets"] = np.cumsum([0] + [len(b) for b in bitsets]).astype(np.int64)
        arrays["raw_left_cat_bitsets"] = np.concatenate([np.asarray(b, np.uint32).reshape(-1, 8) for b in bitsets]) \
            if any(len(b) for b in bitsets) else np.zeros((0, 8), np.uint32)
        known, f_idx_map = estimator._bin_mapper.make_known_categories_bitsets()
        arrays["known_cat_bitsets"] = np.asarray(known, np.uint32).reshape(-1, 8)
        arrays["f_idx_map"] = np.asarray(f_idx_map, np.int64)
        arrays["baseline"] = np.asarray(estimator._baseline_prediction, np.float64).reshape(-1)
        arrays.update(_preprocessing(estimator))
        classifier = hasattr(estimator, "classes_")
        info = {"kind": cls.kind, "estimator": type(estimator).__name__, "classifier": classifier,
                "trees_per_iteration": int(estimator.n_trees_per_iteration_), "iterations": int(estimator.n_iter_),
                "features": int(estimator.n_features_in_), "settings": settings or {}}
        return cls(arrays, info)

    def raw_scores(self, X) -> np.ndarray:
        """scikit-learn's ``_raw_predict``: baseline + every tree's leaf value, shape (n, trees per iteration)."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.info["features"]:
            raise ConfigError(f"the trees read {self.info['features']} features; got an array of shape {X.shape}")
        X = self._preprocess(X)
        k = self.info["trees_per_iteration"]
        out = np.zeros((len(X), k), dtype=np.float64, order="F")
        out += self.arrays["baseline"]
        offsets = self.arrays["tree_offsets"]
        for t in range(len(offsets) - 1):
            out[:, t % k] += self._tree(X, t, int(offsets[t]), int(offsets[t + 1]))
        return out

    def _preprocess(self, X) -> np.ndarray:
        """scikit-learn's own preprocessor of categorical columns: each category value -> its index among the
        training categories (unseen, missing -> NaN), categorical columns first, then the numerical ones."""
        a = self.arrays
        if len(a["categorical_columns"]) == 0:
            return X
        encoded = []
        for i, column in enumerate(a["categorical_columns"]):
            known = a["categories"][a["category_offsets"][i]:a["category_offsets"][i + 1]]
            values = X[:, column]
            position = np.clip(np.searchsorted(known, values), 0, max(len(known) - 1, 0))
            found = (len(known) > 0) & (known[position] == values) if len(known) else np.zeros(len(X), bool)
            encoded.append(np.where(found, position, np.nan))
        return np.column_stack([*encoded, X[:, a["numerical_columns"]]]).astype(np.float64)

    def _tree(self, X, t, start, stop) -> np.ndarray:
        a = self.arrays
        field = {name: a[f"node_{name}"][start:stop] for name in NODE_FIELDS}
        bits = a["raw_left_cat_bitsets"][a["bitset_offsets"][t]:a["bitset_offsets"][t + 1]]
        rows = np.arange(len(X))
        node = np.zeros(len(X), dtype=np.int64)
        active = ~field["is_leaf"][node].astype(bool)
        while active.any():
            r, n = rows[active], node[active]
            value = X[r, field["feature_idx"][n]]
            missing_left = field["missing_go_to_left"][n].astype(bool)
            go_left = np.where(np.isnan(value), missing_left, value <= field["num_threshold"][n])
            categorical = field["is_categorical"][n].astype(bool) & ~np.isnan(value)
            if categorical.any():
                c = np.where(categorical)[0]
                v = value[c]
                code = np.clip(v, 0, 255).astype(np.int64)  # scikit-learn casts to its uint8 bin dtype
                in_left = (bits[field["bitset_idx"][n[c]], code // 32] >> (code % 32)) & 1
                feature_map = a["f_idx_map"][field["feature_idx"][n[c]]]
                known = (a["known_cat_bitsets"][feature_map, code // 32] >> (code % 32)) & 1
                left = np.where(v < 0, missing_left[c],
                                np.where(in_left == 1, True, np.where(known == 1, False, missing_left[c])))
                go_left[c] = left
            node[r] = np.where(go_left, field["left"][n], field["right"][n]).astype(np.int64)
            active = ~field["is_leaf"][node].astype(bool)
        return field["value"][node]

    def logits(self, X) -> np.ndarray:
        raw = self.raw_scores(X)
        if self.info["classifier"] and raw.shape[1] == 1:  # binary: softmax([0, s]) = [1 - sigmoid(s), sigmoid(s)]
            return np.concatenate([np.zeros_like(raw), raw], axis=1)
        return raw

    def predict_proba(self, X) -> np.ndarray:
        if not self.info["classifier"]:
            raise ConfigError("a regression tree head has no probabilities")
        return _binary_or_softmax(self.raw_scores(X))

    def fixed_params(self) -> dict:
        return dict(self.info.get("settings", {}))
