"""Feature-group importance by permutation on held-out rows: how much the primary metric drops when one group of
columns (a media column's embedding, all columns of one modality, the tabular columns) is shuffled across the
rows, the other groups left as they are. A group's columns are shuffled with one permutation, so a row keeps its
own embedding intact and only loses its link to the target."""

from __future__ import annotations

import numpy as np


def feature_groups(roles, columns: dict[str, list[int]]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for column, _ in roles.media:
        groups[column] = columns[column]
    for modality in dict.fromkeys(m for _, m in roles.media):
        mine = [c for c, m in roles.media if m == modality]
        if len(mine) > 1:
            groups[f"all {modality}"] = [i for c in mine for i in columns[c]]
    if roles.tabular:
        groups["tabular"] = [i for c in roles.tabular for i in columns[c]]
    return groups


def group_importance(model, X: np.ndarray, y: np.ndarray, *, repeats: int = 5, seed: int = 0) -> dict:
    task, head, calibration = model.task_, model.head_, model.calibration_
    base = task.primary(y, task.outputs(head.logits(X), calibration), calibration)
    rng = np.random.default_rng(seed)
    out = {"metric": task.primary_metric, "baseline": base, "repeats": repeats, "groups": {}}
    for name, columns in feature_groups(model.featurizer_.feature_roles, model.featurizer_.groups).items():
        drops = []
        for _ in range(repeats):
            shuffled = X.copy()
            shuffled[:, columns] = X[rng.permutation(len(X))][:, columns]
            score = task.primary(y, task.outputs(head.logits(shuffled), calibration), calibration)
            drops.append(base - score if task.greater_is_better else score - base)
        out["groups"][name] = {"drop": float(np.mean(drops)), "std": float(np.std(drops)), "columns": len(columns)}
    return out
