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


def extrapolate(points: list[dict], targets=DEFAULT_TARGETS, x: str = "per_class", metric: str = "accuracy") -> dict:
    """Fit ``acc = a - b n^(-c)`` (a in [0, 1], b >= 0, c in [0.01, 3]) to the curve's mean ``metric`` (accuracy
    by default) against ``x`` (examples per class, or training rows), weighted by the spread, and invert it for
    each target; says why when it cannot."""
    n = np.array([p[x] for p in points], dtype=float)
    acc = np.array([p[metric]["mean"] for p in points], dtype=float)
    spread = np.array([p[metric]["std"] for p in points], dtype=float) + 0.005
    unit = "labelled examples per class" if x == "per_class" else "training rows"
    result = {"model": f"{metric}(n) = a - b * n^(-c), n = {unit}", "x": x, "metric": metric, "targets": []}
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
        entry = {metric: float(target), x: None}
        if b <= 0 or target >= a - 1e-9:
            entry["status"] = (f"unreachable: the fitted curve levels off at {a:.3f}; more labels of this kind are "
                               "not predicted to get there (try another backbone or strategy)")
        else:
            needed = float((b / (a - target)) ** (1.0 / c))
            per = "per class" if x == "per_class" else "rows"
            if needed < n.min():
                entry.update({x: max(1, int(np.ceil(needed))),
                              "status": f"below the smallest measured size ({int(n.min())} {per}), extrapolated"})
            elif needed <= largest:
                entry.update({x: max(1, int(np.ceil(needed))), "status": "within the measured range"})
            elif needed <= MAX_EXTRAPOLATION * largest:
                entry.update({x: int(np.ceil(needed)), "status": "extrapolated"})
            else:
                entry.update({x: None, "at_least": int(MAX_EXTRAPOLATION * largest),
                              "status": f"beyond range: more than {MAX_EXTRAPOLATION:g}x the largest measured size "
                                        f"({int(largest)} {per}); the curve cannot be trusted that far"})
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


DEFAULT_ROWS = (25, 50, 100, 200, 400, 800, 1600, 3200)


def learning_curve_by_rows(task, X_train, y_train, X_test, y_test, fit_head, *, sizes=DEFAULT_ROWS, seeds: int = 3,
                           targets=DEFAULT_TARGETS, head_description: str = "head") -> dict:
    """The curve of a task without classes to sample per class (multi-label, regression): the task's primary
    metric against random training subsets of ``sizes`` rows (then all), mean ± std over seeds."""
    _, seeds, targets = _check_options([1], seeds, targets)
    if len(y_test) == 0:
        raise DataError("learning curve: the test data are empty; it needs labelled held-out rows")
    metric = task.primary_metric

    def score(positions, seed):
        head = fit_head(X_train[positions], y_train[positions], seed)
        return task.primary(y_test, task.outputs(head.logits(X_test), None))

    points = []
    for n in sorted(int(v) for v in sizes):
        if n >= len(y_train):
            break
        runs = []
        for seed in range(seeds):
            positions = np.sort(np.random.default_rng(seed).choice(len(y_train), size=n, replace=False))
            try:
                runs.append(score(positions, seed))
            except (DataError, ValueError) as exc:  # e.g. a subset without a positive row for some label
                logger.info("learning curve: %d rows, seed %d skipped (%s)", n, seed, exc)
        if runs:
            points.append({"rows": n, "n_train": n, metric: _summary(runs)})
    points.append({"rows": int(len(y_train)), "n_train": int(len(y_train)), "all": True,
                   metric: _summary([score(np.arange(len(y_train)), 0)])})
    return {"points": points, "seeds": seeds, "n_test": int(len(y_test)), "head": head_description, "x": "rows",
            "metric": metric, "extrapolation": extrapolate(points, targets, x="rows", metric=metric)}


def measure_learning_curve(model, train, test, *, shots=DEFAULT_SHOTS, seeds: int = 3, targets=DEFAULT_TARGETS) -> dict:
    """The learning curve of a fitted ``Graft`` on cached frozen-backbone features (per class for classification,
    by training rows for tasks without classes: ``Task.has_classes``).

    A linear-probe model refits its own head kind with its fitted hyper-parameters (logistic regression keeps
    the ``C`` chosen on all the data, so each point costs one fit). A fine-tuned model is represented by a
    linear probe on its pretrained backbone (refitting the fine-tuning at every size would cost a training
    run each): the result says so in ``"head"``.
    """
    from graftkit.strategies import get_strategy

    model.check_fitted()
    train = model.as_table(train, require_label=True)
    test = model.as_table(test, require_label=True)
    task = model.task_
    if task.generative:  # the model writes its outputs: refit it per size (every size × seed is a training run)
        return learning_curve_by_refit(model, train, test, seeds=seeds)
    y_train, y_test = task.encode(train), task.encode(test)
    if getattr(model, "finetuned_", False) or not hasattr(model.strategy_, "fit_head"):
        frozen = model.clone(strategy="linear-probe", checkpoint_dir=None, resume=False)
        X_train, X_test = frozen.features(train, task), frozen.features(test, task)
        strategy = get_strategy("linear-probe")
        head = strategy.fit_head(task, X_train, y_train, seed=model.seed)
        fixed = head.fixed_params()
        description = (f"linear probe ({head.kind}, {_settings(fixed)}) on the pretrained backbone; the "
                       f"{model.strategy_.name} model itself is not refitted per size")
    else:
        X_train, X_test = model.features(train), model.features(test)
        strategy = model.strategy_
        fixed = model.head_.fixed_params()
        settings = ", ".join(f"{k}={v}" for k, v in model.head_.info.items() if k not in ("kind", "cv_folds", "epochs"))
        description = f"{model.head_.kind} head ({settings}) on the frozen backbone, as fitted"

    def fit(X, y, seed):
        return strategy.fit_head(task, X, y, seed=seed, fixed=fixed)

    if not task.has_classes:
        return learning_curve_by_rows(task, X_train, y_train, X_test, y_test, fit, seeds=seeds, targets=targets,
                                      head_description=description)
    return learning_curve_from_features(X_train, y_train, X_test, y_test, fit, n_classes=len(task.labels),
                                        shots=shots, seeds=seeds, targets=targets, head_description=description)


def refit_sizes(n: int) -> list[int]:
    """The training sizes of a refitted curve: an eighth, a quarter and a half of the ``n`` rows (at least 2)."""
    return sorted({size for size in (n // 8, n // 4, n // 2) if 2 <= size < n})


def learning_curve_by_refit(model, train, test, *, seeds: int = 1) -> dict:
    """The curve of a generative model (``Task.generative``: no head on cached features to refit): the fitted
    strategy trained again from the pretrained weights on random subsets of ``refit_sizes`` training rows,
    scored by the task's primary metric on the same test rows; the last point is the fitted model itself. Each
    point is a whole fine-tuning run, which is why the curve is opt-in and its record says what it cost."""
    import time

    _, seeds, _ = _check_options([1], seeds, DEFAULT_TARGETS)
    task, metric = model.task_, model.task_.primary_metric
    if not getattr(model.strategy_, "trainable", False):
        return {"skipped": f"the {model.strategy_.name} model does not train on the rows: every size would be the "
                           "same pretrained model"}
    y_test = task.encode(test)
    if len(y_test) == 0:
        raise DataError("learning curve: the test data are empty; it needs labelled held-out rows")
    started, runs_done = time.perf_counter(), 0
    refit = model.clone(checkpoint_dir=None, resume=False)  # one model refitted per point: the backbone loads once
    points = []
    for n in refit_sizes(len(train)):
        runs = []
        for seed in range(seeds):
            positions = np.sort(np.random.default_rng(seed).choice(len(train), size=n, replace=False))
            try:
                runs.append(task.primary(y_test, refit.fit(train.subset(positions)).outputs(test)))
                runs_done += 1
            except DataError as exc:  # e.g. a subset too small for the strategy's validation split
                logger.info("learning curve: %d rows, seed %d skipped (%s)", n, seed, exc)
        if runs:
            points.append({"rows": n, "n_train": n, metric: _summary(runs)})
    points.append({"rows": len(train), "n_train": len(train), "all": True,
                   metric: _summary([task.primary(y_test, model.outputs(test))])})
    return {"points": points, "seeds": seeds, "n_test": int(len(y_test)), "x": "rows", "metric": metric,
            "head": (f"the {model.strategy_.name} strategy refitted from the pretrained model at each size "
                     f"({runs_done} training run{'' if runs_done == 1 else 's'}, {time.perf_counter() - started:.0f} s); the last point is the "
                     "fitted model"),
            "refits": runs_done, "extrapolation": None}


def _settings(fixed: dict) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in fixed.items())
