"""How far apart two data sets are, on a model's features: is there a domain shift to adapt to at all?

- Proxy A-distance (Ben-David et al. 2007; Ganin et al. 2016): a domain classifier (logistic regression on the
  standardised features) tells source rows from target rows; its cross-validated error ``ε`` gives
  ``PAD = 2 (1 - 2 ε)``: 0 when the domains cannot be told apart, 2 when they always can.
- MMD (Gretton et al. 2012): the unbiased squared maximum mean discrepancy with an RBF kernel whose bandwidth is the
  median pairwise distance (the median heuristic), and a permutation p-value.

Both run on balanced, seeded samples of at most ``max_rows`` rows per side, so a large target costs the same.
"""

from __future__ import annotations

import numpy as np

from graftkit.errors import DataError

LARGE_PAD = 1.0  # above this a linear classifier separates the domains with under 25 % error
MMD_ALPHA = 0.01  # the MMD permutation test's level


def _balanced(Xs: np.ndarray, Xt: np.ndarray, max_rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    Xs, Xt = np.asarray(Xs, dtype=np.float64), np.asarray(Xt, dtype=np.float64)
    if Xs.ndim != 2 or Xt.ndim != 2 or Xs.shape[1] != Xt.shape[1]:
        raise DataError(f"domain shift needs two feature matrices of one width; got {Xs.shape} and {Xt.shape}")
    n = min(len(Xs), len(Xt), max_rows)
    if n < 10:
        raise DataError(f"domain shift needs at least 10 rows on each side; got {len(Xs)} source and {len(Xt)} target "
                        "rows")
    rng = np.random.default_rng(seed)
    return Xs[rng.choice(len(Xs), n, replace=False)], Xt[rng.choice(len(Xt), n, replace=False)]


def proxy_a_distance(Xs, Xt, *, folds: int = 5, max_rows: int = 2000, seed: int = 0) -> dict:
    """``{"pad", "error", "rows"}``: the proxy A-distance from a logistic-regression domain classifier's
    ``folds``-fold cross-validated error on a balanced sample."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    source, target = _balanced(Xs, Xt, max_rows, seed)
    X = np.vstack([source, target])
    y = np.r_[np.zeros(len(source)), np.ones(len(target))]
    classifier = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    predicted = cross_val_predict(classifier, X, y, cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
    error = float(np.mean(predicted != y))
    return {"pad": round(2.0 * (1.0 - 2.0 * error), 4), "error": round(error, 4), "rows": len(source)}


def _sq_distances(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    return np.maximum((A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2.0 * A @ B.T, 0.0)


def _mmd2(K: np.ndarray, n: int) -> float:
    """Unbiased MMD² of the first ``n`` rows of the joint kernel matrix against the rest."""
    Kss, Ktt, Kst = K[:n, :n], K[n:, n:], K[:n, n:]
    m = len(K) - n
    return float((Kss.sum() - np.trace(Kss)) / (n * (n - 1)) + (Ktt.sum() - np.trace(Ktt)) / (m * (m - 1))
                 - 2.0 * Kst.mean())


def mmd_rbf(Xs, Xt, *, max_rows: int = 1000, permutations: int = 200, seed: int = 0) -> dict:
    """``{"mmd2", "bandwidth", "p_value", "rows"}``: unbiased MMD² with an RBF kernel, bandwidth by the median
    heuristic, p-value from ``permutations`` random relabellings of the pooled sample."""
    source, target = _balanced(Xs, Xt, max_rows, seed)
    X = np.vstack([source, target])
    D = _sq_distances(X, X)
    off = D[~np.eye(len(X), dtype=bool)]
    median = float(np.median(off))
    bandwidth = float(np.sqrt(median / 2.0)) if median > 0 else 1.0  # k(x, y) = exp(-|x-y|² / (2 σ²)), 2σ² = median
    K = np.exp(-D / (2.0 * bandwidth ** 2))
    n = len(source)
    observed = _mmd2(K, n)
    rng = np.random.default_rng(seed)
    exceed = 0
    for _ in range(permutations):
        order = rng.permutation(len(X))
        exceed += _mmd2(K[np.ix_(order, order)], n) >= observed
    return {"mmd2": round(observed, 6), "bandwidth": round(bandwidth, 6),
            "p_value": round((exceed + 1) / (permutations + 1), 4), "rows": int(n)}


def shift_between(Xs, Xt, *, seed: int = 0) -> dict:
    """Both measures and a verdict (``large`` when PAD > ``LARGE_PAD`` and the MMD test rejects at ``MMD_ALPHA``)."""
    pad = proxy_a_distance(Xs, Xt, seed=seed)
    mmd = mmd_rbf(Xs, Xt, seed=seed)
    large = pad["pad"] > LARGE_PAD and mmd["p_value"] < MMD_ALPHA
    if large:
        verdict = (f"large: a linear domain classifier tells source from target with {100 * pad['error']:.1f}% error "
                   f"(proxy A-distance {pad['pad']:.2f} of 2)")
    elif mmd["p_value"] < MMD_ALPHA:
        verdict = f"present but moderate: proxy A-distance {pad['pad']:.2f} of 2, MMD test p={mmd['p_value']:.3g}"
    else:
        verdict = f"none detected: proxy A-distance {pad['pad']:.2f} of 2, MMD test p={mmd['p_value']:.3g}"
    return {"proxy_a_distance": pad, "mmd": mmd, "large": bool(large), "verdict": verdict}


def domain_shift(graft, source, target, *, seed: int = 0) -> dict:
    """The shift between ``source`` (e.g. the training data) and ``target`` (unlabelled, same modality) on
    ``graft``'s backbone features (pooled, from the feature cache where seen before)."""
    from graftkit.data.unlabelled import load_unlabelled

    source_table = graft.as_table(source, require_label=False)
    backbone = graft.loaded_backbone()
    target_table = target if hasattr(target, "frame") else load_unlabelled(target, modality=backbone.modality)
    if target_table.modality != backbone.modality:
        raise DataError(f"{target_table.source}: the target data holds {target_table.modality}, but backbone "
                        f"{graft.backbone!r} reads {backbone.modality}; give {backbone.modality} target data (--target)")
    Xs = graft.features(source_table, pooled=True)
    Xt = graft.features(target_table, pooled=True)
    return {"source": {"data": source_table.source, "rows": len(source_table)},
            "target": {"data": target_table.source, "rows": len(target_table)},
            **shift_between(Xs, Xt, seed=seed)}
