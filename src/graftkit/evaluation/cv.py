"""k-fold cross-validation: report the mean and spread, not a single lucky score."""

from __future__ import annotations

from collections.abc import Callable

from graftkit.evaluation.metrics import summarize


def cross_validate(make_model: Callable, table, k: int = 5, seed: int = 0) -> dict:
    """Fit ``make_model()`` on each of ``k`` stratified folds; per-fold metrics and their mean ± std.

    With the feature cache on, the backbone embeds each row once; each fold only refits the head.
    """
    folds = []
    model = make_model()  # one model refitted per fold, so the backbone loads once
    for number, (train, test) in enumerate(table.folds(k=k, seed=seed), start=1):
        metrics = model.fit(train).evaluate(test)
        folds.append({"fold": number, "n_train": len(train), "n_test": len(test),
                      "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"]})
    return {"folds": folds, "summary": summarize(folds)}
