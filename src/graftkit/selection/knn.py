"""A cheap empirical estimate: cross-validated k-nearest-neighbour accuracy on a subsample of the features.

k-NN on frozen features as a transferability proxy: e.g. Kornblith, Shlens & Le, "Do Better ImageNet Models
Transfer Better?", CVPR 2019 (arXiv:1805.08974), and the k-NN evaluation of self-supervised features
(Wu, Xiong, Yu & Lin, "Unsupervised Feature Learning via Non-Parametric Instance Discrimination", CVPR 2018).
"""

from __future__ import annotations

import warnings

import numpy as np

from graftkit.selection.inputs import as_features, as_labels, cv_folds, stratified_sample


def knn_accuracy(features, labels, *, k: int = 5, folds: int = 5, sample: int = 2000, seed: int = 0) -> float:
    """Mean stratified k-fold accuracy of a cosine k-NN classifier (majority vote of the ``k`` nearest
    training examples) on at most ``sample`` examples (a stratified subsample)."""
    from sklearn.model_selection import StratifiedKFold
    from sklearn.neighbors import KNeighborsClassifier

    f = as_features(features)
    classes, codes = as_labels(labels, len(f))
    keep = stratified_sample(codes, sample, seed)
    f, codes = f[keep], codes[keep]
    f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)  # cosine = Euclidean on unit vectors
    splitter = StratifiedKFold(cv_folds(codes, classes, folds, "k-NN cross-validation"), shuffle=True,
                               random_state=seed)
    scores = []
    for train, test in splitter.split(f, codes):
        with warnings.catch_warnings():  # many classes, few examples each: scikit-learn suspects a regression target
            warnings.filterwarnings("ignore", message="The number of unique classes", category=UserWarning)
            model = KNeighborsClassifier(n_neighbors=min(k, len(train))).fit(f[train], codes[train])
        scores.append(float(np.mean(model.predict(f[test]) == codes[test])))
    return float(np.mean(scores))
