"""k-fold cross-validation: report the mean and spread, not a single lucky score."""

from __future__ import annotations

from graftkit.scoring.metrics import summarize


def cross_validate(model, table, k: int = 5, seed: int = 0) -> dict:
    """Fit clones of ``model`` (an unfitted ``Graft``'s settings) on each of ``k`` folds, split as the task
    splits (stratified by class; iterative stratification for multi-label; target bins for regression); the
    task's headline metrics per fold and their mean ± std.

    With the feature cache on, the backbone embeds each row once; each fold only refits the head.
    """
    if not hasattr(model, "fit"):  # a factory of models, as cross_validate took before Graft.clone
        model = model()
    table = model.as_table(table, require_label=True)
    task = model.infer_task(table)
    folds = []
    fold_model = model.clone(task=task.kind)  # one model refitted per fold, so the backbone loads once
    for number, (train, test) in enumerate(task.folds(table, k=k, seed=seed), start=1):
        metrics = fold_model.fit(train).evaluate(test, curves=False)
        folds.append({"fold": number, "n_train": len(train), "n_test": len(test),
                      **{key: metrics.get(key) for key in task.headline}})
    keys = [key for key in task.headline if all(f[key] is not None for f in folds)]
    return {"task": task.kind, "split": task.describe_folds(), "folds": folds, "summary": summarize(folds, keys=keys)}
