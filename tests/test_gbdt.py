"""The tree head: saved as arrays, predicted in numpy, equal to scikit-learn's own predictions exactly (this test
fails if scikit-learn changes the layout of its fitted trees)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st
from safetensors.numpy import load_file, save_file

from conftest import examples
from graftkit.tasks.gbdt import GBDTHead, fit_estimator
from graftkit.tasks.heads import head_from_state


def _data(seed, n=300, classes=2):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    X[:, 3] = rng.integers(0, 6, n)              # a categorical column (codes)
    X[rng.random((n, 5)) < 0.1] = np.nan         # missing values everywhere
    signal = np.nan_to_num(X[:, 0]) + (np.nan_to_num(X[:, 3]) % 3 == 1) * 1.5
    y = np.digitize(signal, np.quantile(signal, np.linspace(0, 1, classes + 1)[1:-1])) if classes else signal
    return X, y


def _round_trip(head, tmp_path):
    save_file({k: np.ascontiguousarray(v) for k, v in head.arrays.items()}, str(tmp_path / "head.safetensors"))
    return head_from_state(load_file(str(tmp_path / "head.safetensors")), head.info)


@pytest.mark.parametrize("classes", [2, 3, 0])
def test_predictions_after_save_and_load_equal_sklearn_exactly(tmp_path, classes):
    X, y = _data(0, classes=classes)
    mask = np.array([False, False, False, True, False])
    est = fit_estimator(X, y, classifier=bool(classes), categorical=mask, seed=0, early_stopping=False, max_iter=40)
    loaded = _round_trip(GBDTHead.from_estimator(est), tmp_path)
    Xt, _ = _data(1, n=200, classes=classes)
    Xt[:5, 3] = [7, 9, -1, np.nan, 200]          # unseen / negative / missing categories
    assert np.array_equal(loaded.raw_scores(Xt), est._raw_predict(Xt))
    if classes:
        np.testing.assert_allclose(loaded.predict_proba(Xt), est.predict_proba(Xt), rtol=0, atol=1e-12)
        assert np.array_equal(est.classes_[loaded.logits(Xt).argmax(axis=1)], est.predict(Xt))
    else:
        assert np.array_equal(loaded.logits(Xt)[:, 0], est.predict(Xt))


@given(seed=st.integers(0, 10_000), missing=st.floats(0, 0.6))
def test_any_data_and_missing_share_predicts_as_sklearn(seed, missing):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(120, 3))
    X[:, 1] = rng.integers(0, 4, 120)
    X[rng.random(X.shape) < missing] = np.nan
    y = (rng.random(120) < 0.5).astype(int)
    if len(np.unique(y)) < 2:
        return
    est = fit_estimator(X, y, classifier=True, categorical=[False, True, False], seed=seed, max_iter=10)
    head = GBDTHead.from_estimator(est)
    assert np.array_equal(head.raw_scores(X), est._raw_predict(X))
test_any_data_and_missing_share_predicts_as_sklearn = pytest.mark.filterwarnings("ignore")(
    test_any_data_and_missing_share_predicts_as_sklearn)


def test_the_task_picks_classifier_or_regressor():
    from graftkit.tasks.classification import Classification
    from graftkit.tasks.regression import Regression

    X, y = _data(2, classes=2)
    assert GBDTHead.fit(X, y, classifier=True, max_iter=5).info["classifier"]
    assert Classification(classes=("0", "1")).fit_head(X, y, head="gbdt", max_iter=5).info["classifier"]
    assert not Regression(target="v").fit_head(X, y.astype(float), head="gbdt", max_iter=5).info["classifier"]


def test_wrong_width_is_refused():
    from graftkit.errors import ConfigError

    X, y = _data(3)
    head = GBDTHead.fit(X, y, classifier=True, max_iter=3)
    with pytest.raises(ConfigError, match="read 5 features"):
        head.logits(X[:, :4])
