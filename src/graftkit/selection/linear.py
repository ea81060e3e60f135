"""A cheap empirical estimate: cross-validated logistic-regression (linear-probe) accuracy on a subsample.

The linear probe on frozen features is the standard measure of representation quality (e.g. Kornblith,
Shlens & Le, "Do Better ImageNet Models Transfer Better?", CVPR 2019, arXiv:1805.08974).
"""

from __future__ import annotations

import warnings

import numpy as np

from graftkit.selection.inputs import as_features, as_labels, cv_folds, stratified_sample


def linear_probe_accuracy(features, labels, *, C: float = 1.0, folds: int = 5, sample: int = 2000, seed: int = 0,
                          max_iter: int = 500) -> float:
    """Mean stratified k-fold accuracy of an L2-regularised multinomial logistic regression (features
    standardised on each training fold) on at most ``sample`` examples (a stratified subsample)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    f = as_features(features)
    classes, codes = as_labels(labels, len(f))
    keep = stratified_sample(codes, sample, seed)
    f, codes = f[keep], codes[keep]
    splitter = StratifiedKFold(cv_folds(codes, classes, folds, "linear-probe cross-validation"), shuffle=True,
                               random_state=seed)
    scores = []
    for train, test in splitter.split(f, codes):
        mean, scale = f[train].mean(axis=0), f[train].std(axis=0)
        scale = np.where(scale > 1e-12, scale, 1.0)
        with warnings.catch_warnings():  # a capped iteration count is part of what makes this estimate cheap
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.filterwarnings("ignore", message="The number of unique classes", category=UserWarning)
            model = LogisticRegression(C=C, max_iter=max_iter).fit((f[train] - mean) / scale, codes[train])
        scores.append(float(np.mean(model.predict((f[test] - mean) / scale) == codes[test])))
    return float(np.mean(scores))
