"""Forgetting: how far adaptation moved the backbone, and what it lost.

- Representation drift: linear centred kernel alignment (CKA) between the pretrained and the adapted pooled
  features of the same probe rows (Kornblith, Norouzi, Lee & Hinton 2019, "Similarity of Neural Network
  Representations Revisited"); 1 = the same representation up to rotation and scale.
- Weight drift: the relative distance ``||W_adapted - W_pretrained|| / ||W_pretrained||`` of each layer
  group, input to output (the quantity L2-SP penalises; Li, Grandvalet & Davoine 2018).
- What was lost: a linear probe on a reference task, fitted once on the pretrained and once on the adapted
  features, scored on the reference task's held-out rows; the accuracy drop is catastrophic forgetting in
  the sense of McCloskey & Cohen 1989 and Kirkpatrick et al. 2017. A warning above ``max_drop``.
"""

from __future__ import annotations

import logging
import re

import numpy as np
import torch

from graftkit.errors import DataError

logger = logging.getLogger(__name__)

DEFAULT_MAX_DROP = 0.05     # reference-task accuracy the adaptation may lose before graftkit warns
LOW_CKA = 0.5               # below this the representation has moved far from the pretrained one


def linear_cka(X: np.ndarray, Y: np.ndarray) -> float:
    """Linear CKA (Kornblith et al. 2019): ``||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)`` with column-
    centred ``Xc``, ``Yc``; invariant to orthogonal transforms and isotropic scaling, in [0, 1]."""
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if X.ndim != 2 or Y.ndim != 2 or X.shape[0] != Y.shape[0] or X.shape[0] < 2:
        raise DataError(f"CKA needs two feature matrices over the same >= 2 rows; got shapes {X.shape} and {Y.shape}")
    X = X - X.mean(axis=0)
    Y = Y - Y.mean(axis=0)
    cross = np.linalg.norm(Y.T @ X) ** 2
    norms = np.linalg.norm(X.T @ X) * np.linalg.norm(Y.T @ Y)
    return float(cross / norms) if norms > 0 else 0.0


# Layers a parameter-efficient strategy wrapped keep their pretrained tensors one name deeper (peft's
# ``base_layer.``, the bottleneck adapters' ``layer.``); the wrappers' own tensors are not pretrained weights.
_WRAPPED = re.compile(r"(^|\.)(base_layer|layer)\.(?=(weight|bias)$)")
_ADDED = re.compile(r"(^|\.)(lora_\w+|ia3_l|adapter_down|adapter_up)(\.|$)")


def _pretrained_parameters(module) -> dict:
    """``module``'s parameters by their pretrained name (adapter wrappers see through, their own left out)."""
    return {_WRAPPED.sub(r"\1", name): p for name, p in module.named_parameters() if not _ADDED.search(name)}


def weight_drift(pretrained, adapted) -> list[dict]:
    """Per layer group (input to output) of two backbones of one architecture: relative weight distance of the
    pretrained weights (an adapter's own new parameters are not among them; CKA shows their effect)."""
    names = {id(m): n or "model" for n, m in adapted.model.named_modules()}
    rows, seen = [], set()
    for before, after in zip(pretrained.layer_groups(), adapted.layer_groups(), strict=True):
        after_params = _pretrained_parameters(after)
        pairs = [(p, after_params[name]) for name, p in before.named_parameters()
                 if name in after_params and id(after_params[name]) not in seen]
        seen.update(id(q) for _, q in pairs)
        if not pairs:
            continue
        with torch.no_grad():
            moved = sum(float((q.detach().cpu().double() - p.detach().cpu().double()).pow(2).sum()) for p, q in pairs)
            size = sum(float(p.detach().cpu().double().pow(2).sum()) for p, _ in pairs)
        rows.append({"group": names.get(id(after), type(after).__name__),
                     "parameters": int(sum(p.numel() for p, _ in pairs)),
                     "relative_change": float(np.sqrt(moved) / np.sqrt(size)) if size > 0 else 0.0})
    return rows


def _probe_score(task, X_train, y_train, X_test, y_test, seed: int) -> float:
    """The reference task's primary metric of a linear probe (the task's linear head) on these features."""
    head = task.fit_head(X_train, y_train, seed=seed)
    return task.primary(y_test, task.outputs(head.logits(X_test), None))


def measure_forgetting(model, probe, *, reference=None, reference_test=None, max_drop: float = DEFAULT_MAX_DROP,
                       test_size: float = 0.3) -> dict:
    """Drift of a fitted ``Graft``'s backbone from its pretrained weights on the ``probe`` rows (CKA of the
    pooled features, relative weight distance per layer group) and, with a labelled ``reference`` task (split
    stratified into train / test unless ``reference_test`` is given), the reference-task linear-probe
    accuracy before vs after adaptation. A frozen backbone has nothing to forget and says so."""
    from graftkit.tasks import infer_task

    model.check_fitted()
    if not getattr(model, "finetuned_", False):
        return {"skipped": f"the backbone was frozen ({model.strategy_.name}): adaptation changed no backbone "
                           "weight, so there is nothing to forget"}
    frozen = model.clone(strategy="linear-probe", checkpoint_dir=None, resume=False, task=None, task_options={})
    probe = model.as_table(probe, require_label=False)
    cka = linear_cka(frozen.features(probe, pooled=True), model.features(probe, pooled=True))
    result = {"probe_rows": len(probe), "cka": cka,
              "weight_drift": weight_drift(frozen.loaded_backbone(), model.backbone_),
              "reference": None, "max_drop": float(max_drop), "warning": None}
    notes = []
    if cka < LOW_CKA:
        notes.append(f"the adapted features have moved far from the pretrained ones (linear CKA {cka:.3f} on "
                     f"{len(probe)} probe rows)")
    if reference is not None:
        reference = frozen.as_table(reference, require_label=True)
        task = infer_task(reference)
        if reference_test is None:
            reference, reference_test = task.split(reference, test_size=test_size, seed=model.seed)
        else:
            reference_test = frozen.as_table(reference_test, require_label=True)
        y_train, y_test = task.encode(reference), task.encode(reference_test)
        before = _probe_score(task, frozen.features(reference, task), y_train, frozen.features(reference_test, task),
                              y_test, model.seed)
        after = _probe_score(task, model.features(reference, task), y_train, model.features(reference_test, task),
                             y_test, model.seed)
        # the keys keep their names for every task: the values are the reference task's primary metric
        result["reference"] = {"source": reference.source, "n_train": len(reference), "n_test": len(reference_test),
                               "metric": task.primary_metric, "accuracy_before": before, "accuracy_after": after,
                               "drop": before - after}
        if before - after > max_drop:
            notes.insert(0, f"forgetting: a linear probe on the reference task {reference.source} scores "
                            f"{after:.4f} on the adapted features against {before:.4f} on the pretrained ones (drop "
                            f"{before - after:.4f} > {max_drop:g}); train fewer layers, lower the backbone learning "
                            "rate, or add L2-SP (--l2-sp)")
    if notes:
        result["warning"] = "; ".join(notes)
        logger.warning("%s", result["warning"])
    return result
