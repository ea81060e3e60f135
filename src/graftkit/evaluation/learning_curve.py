"""Learning curves: test accuracy against labelled examples per class, and how many labels a target needs.

For each size (4, 8, 16, 32, 64 per class, then all) and each of several seeds, a stratified per-class sample
of the training rows fits a fresh head on the cached backbone features, scored on the same test rows; the
curve is the mean ± std over seeds. Only head fits are paid: features come from the feature cache. This is
the few-shot linear-probe protocol of MTEB (Muennighoff et al. 2023) and of SetFit (Tunstall et al. 2022),
swept over sizes.

The extrapolation fits the inverse power law ``acc(n) = a - b * n^(-c)`` that learning curves follow in
their power-law region (Hestness et al. 2017, "Deep Learning Scaling is Predictable, Empirically"; Figueroa
et al. 2012 for sample-size prediction of classifiers) and inverts it for target accuracies, refusing to
extrapolate beyond ``MAX_EXTRAPOLATION`` times the largest measured size or above the fitted asymptote ``a``.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings

import numpy as np
from scipy.optimize import curve_fit
from sklearn.metrics import f1_score

from graftkit.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

DEFAULT_SHOTS = (4, 8, 16, 32, 64)
DEFAULT_TARGETS = (0.8, 0.9, 0.95)
MAX_EXTRAPOLATION = 10.0  # the farthest the fitted curve is trusted, as a multiple of the largest measured size


def _check_options(shots, seeds: int, targets) -> tuple[list[int], int, list[float]]:
    shots = sorted({int(n) for n in shots})
    if not shots or shots[0] < 1:
        raise ConfigError(f"learning-curve sizes must be integers >= 1 (examples per class); got {shots!r} (--shots)")
    if not isinstance(seeds, int) or seeds < 1:
        raise ConfigError(f"learning-curve seeds must be an integer >= 1; got {seeds!r} (--seeds)")
    targets = [float(t) for t in targets]
    if any(not 0 < t < 1 for t in targets):
        raise ConfigError(f"target accuracies must lie strictly between 0 and 1; got {targets!r} (--target-accuracy)")
    return shots, seeds, targets


def sample_per_class(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Positions of ``n`` random rows of every class (all rows of a class that has fewer), sorted."""
    rng = np.random.default_rng(seed)
    picked = [rng.choice(np.flatnonzero(y == k), size=min(n, int((y == k).sum())), replace=False)
              for k in np.unique(y)]
    return np.sort(np.concatenate(picked))


def _summary(values) -> dict:
    values = np.asarray(values, dtype=float)
    return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "values": values.tolist()}


def power_law(n, a, b, c):
    return a - b * np.power(n, -c)


def extrapolate(points: list[dict], targets=DEFAULT_TARGETS) -> dict:
    """Fit ``acc = a - b n^(-c)`` (a in [0, 1], b >= 0, c in [0.01, 3]) to the curve's mean accuracies,
    weighted by their spread, and invert it for each target accuracy; says why when it cannot."""
    n = np.array([p["per_class"] for p in points], dtype=float)
    acc = np.array([p["accuracy"]["mean"] for p in points], dtype=float)
    spread = np.array([p["accuracy"]["std"] for p in points], dtype=float) + 0.005
    result = {"model": "acc(n) = a - b * n^(-c), n = labelled examples per class", "targets": []}
    if len(np.unique(n)) < 3:
        result["status"] = f"cannot extrapolate: {len(np.unique(n))} distinct sizes measured, the fit needs 3"
        return result
    if np.all(np.diff(acc[np.argsort(n)]) <= 0):
        result["status"] = "cannot extrapolate: accuracy does not rise with more labels on this data"
        return result
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            (a, b, c), _ = curve_fit(power_law, n, acc, p0=(min(1.0, acc.max() + 0.02), 0.5, 0.5), sigma=spread,
                                     bounds=([0.0, 0.0, 0.01], [1.0, 10.0, 3.0]), maxfev=20000)
    except (RuntimeError, ValueError) as exc:
        result["status"] = f"cannot extrapolate: the power-law fit did not converge ({exc})"
        return result
    largest = float(n.max())
    residual = acc - power_law(n, a, b, c)
    result.update({"status": "fitted", "a": float(a), "b": float(b), "c": float(c),
                   "rmse": float(np.sqrt(np.mean(residual ** 2))), "largest_measured": largest,
                   "max_extrapolation": MAX_EXTRAPOLATION})
    for target in targets:
        entry = {"accuracy": float(target), "per_class": None}
        if b <= 0 or target >= a - 1e-9:
            entry["status"] = (f"unreachable: the fitted curve levels off at {a:.3f}; more labels of this kind are "
                               "not predicted to get there (try another backbone or strategy)")
        else:
            needed = float((b / (a - target)) ** (1.0 / c))
            if needed < n.min():
                entry.update(per_class=max(1, int(np.ceil(needed))),
                             status=f"below the smallest measured size ({int(n.min())} per class), extrapolated")
            elif needed <= largest:
                entry.update(per_class=max(1, int(np.ceil(needed))), status="within the measured range")
            elif needed <= MAX_EXTRAPOLATION * largest:
                entry.update(per_class=int(np.ceil(needed)), status="extrapolated")
            else:
                entry.update(per_class=None, at_least=int(MAX_EXTRAPOLATION * largest),
                             status=f"beyond range: more than {MAX_EXTRAPOLATION:g}x the largest measured size "
                                    f"({int(largest)} per class); the curve cannot be trusted that far")
        result["targets"].append(entry)
    return result


def learning_curve_from_features(X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray, y_test: np.ndarray,
                                 fit_head, *, n_classes: int, shots=DEFAULT_SHOTS, seeds: int = 3,
                                 targets=DEFAULT_TARGETS, head_description: str = "head") -> dict:
    """The curve from feature matrices; ``fit_head(X, y, seed)`` returns a head with ``predict_proba``.
    Sizes at or above the largest class are left to the final "all" point (one fit: no sampling)."""
    shots, seeds, targets = _check_options(shots, seeds, targets)
    y_train, y_test = np.asarray(y_train), np.asarray(y_test)
    if len(y_test) == 0:
        raise DataError("learning curve: the test data are empty; it needs labelled held-out rows")
    counts = np.bincount(y_train, minlength=n_classes)
    present = counts[counts > 0]
    if len(present) < 2:
        raise DataError("learning curve: the training data hold fewer than two classes")
    ids = list(range(n_classes))
    points = []

    def score(positions, seed):
        predicted = fit_head(X_train[positions], y_train[positions], seed).predict_proba(X_test).argmax(axis=1)
        return (float((predicted == y_test).mean()),
                float(f1_score(y_test, predicted, labels=ids, average="macro", zero_division=0)))

    for n in shots:
        if n >= present.max():
            break
        runs = [score(sample_per_class(y_train, n, seed), seed) for seed in range(seeds)]
        points.append({"per_class": n, "n_train": int(np.minimum(present, n).sum()),
                       "classes_below_size": int((present < n).sum()),
                       "accuracy": _summary([r[0] for r in runs]), "macro_f1": _summary([r[1] for r in runs])})
        logger.info("learning curve: %d per class, accuracy %.4f ± %.4f", n, points[-1]["accuracy"]["mean"],
                    points[-1]["accuracy"]["std"])
    accuracy, macro_f1 = score(np.arange(len(y_train)), 0)
    points.append({"per_class": float(present.mean()), "n_train": int(len(y_train)), "all": True,
                   "classes_below_size": 0, "accuracy": _summary([accuracy]), "macro_f1": _summary([macro_f1])})
    return {"points": points, "seeds": seeds, "n_test": int(len(y_test)), "head": head_description,
            "extrapolation": extrapolate(points, targets)}


def measure_learning_curve(model, train, test, *, shots=DEFAULT_SHOTS, seeds: int = 3, targets=DEFAULT_TARGETS) -> dict:
    """The learning curve of a fitted ``Graft`` on cached frozen-backbone features.

    A linear-probe model refits its own head kind with its fitted hyper-parameters (logistic regression keeps
    the ``C`` chosen on all the data, so each point costs one fit). A fine-tuned model is represented by a
    linear probe on its pretrained backbone (refitting the fine-tuning at every size would cost a training
    run each): the result says so in ``"head"``.
    """
    from graftkit.graft import Graft
    from graftkit.strategies import get_strategy

    model._check_fitted()
    train = model._as_table(train, require_label=True)
    test = model._as_table(test, require_label=True)
    task = model.task_
    y_train = task.encode(train.labels(), where=lambda i: train.where(i, train.label_column))
    y_test = task.encode(test.labels(), where=lambda i: test.where(i, test.label_column))
    if getattr(model, "finetuned_", False) or not hasattr(model.strategy_, "fit_head"):
        frozen = Graft(backbone=model.backbone, revision=model.revision, batch_size=model.batch_size,
                       cache_dir=model.cache_dir, use_cache=model.use_cache, device=model.device,
                       progress=model.progress, trust_remote_code=model.trust_remote_code,
                       backbone_options=model.backbone_options)
        X_train, X_test = frozen.features(train), frozen.features(test)
        strategy = get_strategy("linear-probe")
        chosen = strategy.fit_head(X_train, y_train, seed=model.seed).info["C"]
        strategy = dataclasses.replace(strategy, C=chosen)
        description = (f"linear probe (logistic regression, C={chosen:g}) on the pretrained backbone; the "
                       f"{model.strategy_.name} model itself is not refitted per size")
    else:
        X_train, X_test = model.features(train), model.features(test)
        strategy = model.strategy_
        if "C" in strategy.field_names() and model.head_.info.get("C") is not None:
            strategy = dataclasses.replace(strategy, C=float(model.head_.info["C"]))
        settings = ", ".join(f"{k}={v}" for k, v in model.head_.info.items() if k not in ("kind", "cv_folds", "epochs"))
        description = f"{model.head_.kind} head ({settings}) on the frozen backbone, as fitted"
    return learning_curve_from_features(X_train, y_train, X_test, y_test,
                                        lambda X, y, seed: strategy.fit_head(X, y, seed=seed),
                                        n_classes=len(task.labels), shots=shots, seeds=seeds, targets=targets,
                                        head_description=description)
