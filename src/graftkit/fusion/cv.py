"""k-fold cross-validation of a ``FusionModel``'s settings on a multi-input table: every fold fits its own model
(encoders — a LoRA-tuned one included —, reductions, categories, head and calibration on the fold's training rows
only) and is scored on the held-out fold. The record has the shape ``evaluation.cv.cross_validate`` writes (task,
how the folds were drawn, the task's headline metrics per fold, mean ± std), so ``graftkit cv``, ``graftkit fuse
--cv`` and the report read one format. Backbones read the feature cache, so a frozen encoder embeds each row once
over all folds."""

from __future__ import annotations

from graftkit.fusion.model import FusionModel
from graftkit.scoring.metrics import summarize
from graftkit.tasks import infer_task

PARAMS = ("backbones", "head", "encoder", "strategy", "reduce", "components", "seed", "batch_size", "cache_dir", "use_cache",
          "progress", "device", "task", "task_options", "head_params", "tune_params", "tune_rows",
          "calibration_folds")


def fusion_params(model: FusionModel) -> dict:
    """The constructor settings of ``model`` (a fitted model's too): what a fold's model is built from."""
    return {name: getattr(model, name) for name in PARAMS}


def cross_validate_fusion(model: FusionModel, table, k: int = 5, seed: int = 0) -> dict:
    table = model.as_table(table, require_label=True)
    task = infer_task(table, model.task, **model.task_options)
    folds = []
    for number, (train, test) in enumerate(task.folds(table, k=k, seed=seed), start=1):
        fold = FusionModel(**{**fusion_params(model), "task": task.kind}).fit(train)
        metrics = fold.evaluate(test, importance=False, curves=False)
        folds.append({"fold": number, "n_train": len(train), "n_test": len(test),
                      **{key: metrics.get(key) for key in task.headline}})
    keys = [key for key in task.headline if all(f[key] is not None for f in folds)]
    return {"task": task.kind, "split": task.describe_folds(), "folds": folds, "summary": summarize(folds, keys=keys)}
