"""The logistic-regression head: C chosen by CV with loose fits, then a final fit as converged as a plain one."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from graftkit.tasks.heads import LogRegHead


@pytest.mark.parametrize("classes", [2, 4])
def test_cv_head_matches_a_tightly_converged_fit_at_the_chosen_C(classes):
    X, y = make_classification(n_samples=400, n_features=20, n_informative=8, n_classes=classes, random_state=0)
    X = X.astype(np.float32)
    head = LogRegHead.fit(X, y, seed=0)
    assert head.info["C"] in (0.001, 0.01, 0.1, 1.0, 10.0) and head.info["cv_folds"] == 5
    Xs = (X - head.arrays["mean"]) / head.arrays["scale"]
    reference = LogisticRegression(C=head.info["C"], max_iter=10_000, tol=1e-10).fit(Xs, y)
    np.testing.assert_allclose(head.predict_proba(X), reference.predict_proba(Xs), atol=2e-3)
