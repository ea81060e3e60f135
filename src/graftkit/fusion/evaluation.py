"""The evaluation record of a fusion model, ``evaluation.json`` beside ``fusion.json``, in the format
``evaluation/suite.py`` writes for a ``Graft`` (so ``graftkit report`` renders both with the same sections): the
task's held-out metrics with the feature-group importance (permutation on the test rows), the classical baseline
(TF-IDF + SVD + the tabular columns, same trees) with the transfer gain over it, the leakage between the training
and test rows (``fusion/leakage.py``), and optionally the k-fold cv record. Sections the fusion model has no
measurement for say why. The record is tied to the model by the hash of its arrays, so a refitted directory's old
record is flagged stale."""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone
from pathlib import Path

from graftkit.atomic import write_text_atomic
from graftkit.errors import ArtifactError
from graftkit.evaluation.suite import EVALUATION, FORMAT, FORMAT_VERSION, _plain
from graftkit.fusion.model import ARRAYS
from graftkit.fusion.model import (
    read_manifest as read_fusion_manifest,  # the report reads it from here
)

logger = logging.getLogger(__name__)

BASELINE_NAME = "TF-IDF + SVD + tabular GBDT"


def _skipped(reason: str) -> dict:
    return {"skipped": reason}


def _describe(table) -> dict:
    return {"source": table.source, "rows": len(table), "fingerprint": table.fingerprint()}


def _baseline(model, train, test, seed: int) -> dict:
    from graftkit.evaluation.baselines import transfer_gain
    from graftkit.fusion.baseline import ClassicalFusion

    task = model.task_
    started = time.perf_counter()
    base = ClassicalFusion(task, seed=seed).fit(train)
    outputs = task.outputs(base.raw_outputs(test), None)
    y = task.encode(test)
    summary = task.summary(y, outputs)
    names = ", ".join(base.text_) or "no text column"
    result = {"name": BASELINE_NAME, "modality": "multi-input", "n_train": len(train), "n_test": len(test),
              "penalty": f"gradient-boosted trees on {names} + the tabular columns",
              "seconds": round(time.perf_counter() - started, 3), **{k: v for k, v in summary.items() if k != "n"}}
    result["transfer_gain"] = transfer_gain(task, y, model.last_predictions_["outputs"], outputs,
                                            model_calibration=model.calibration_, model_name="the fusion model",
                                            baseline_name=BASELINE_NAME, seed=seed)
    return result


def _leakage(model, train, test, no_train: str, leakage: bool, drop_leaked: bool, options: dict):
    """``(leakage record, test rows to score)``: the multi-input detectors between ``train`` and ``test``
    (``fusion/leakage.py``), the flagged rows dropped when asked."""
    from graftkit.evaluation.leakage import drop_leaked as without_leaked
    from graftkit.fusion.leakage import find_fusion_leakage

    if train is None or not leakage:
        return _skipped(no_train if train is None else "turned off (--no-leakage)"), test
    if not model.featurizer_.roles.media:
        return _skipped("the model reads no text / image / audio column (the tabular columns alone), and the "
                        "detectors compare those cells"), test
    found = find_fusion_leakage(model, train, test, **options)
    found["dropped"] = bool(drop_leaked and found["leaked"])
    if found["dropped"]:
        test = without_leaked(test, found)
        logger.info("leakage: %d duplicated test rows dropped; evaluating on %d", found["leaked"], len(test))
    elif found["warning"]:
        logger.warning("leakage: %s", found["warning"])
    return found, test


def evaluate_fusion(model, test, *, train=None, baseline: bool = True, cv: dict | None = None, repeats: int = 5,
                    seed: int = 0, leakage: bool = True, drop_leaked: bool = False,
                    leakage_threshold: float | None = None, text_threshold: float | None = None) -> dict:
    """Everything the report shows for a fitted ``FusionModel``, as plain data. With ``train``: the classical
    baseline and the leakage search (test rows whose every media column duplicates a training row's;
    ``drop_leaked`` scores without them; the thresholds as ``evaluation.leakage`` takes them)."""
    model.check_fitted()
    test = model.as_table(test, require_label=True)
    model.task_.encode(test)  # a bad label fails here, before the leakage search
    train = None if train is None else model.as_table(train, require_label=True)
    no_train = "no training data given (Python: train=...; fuse / auto write it with their test rows)"
    info = model.featurizer_.state()[1]
    record = {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": "fusion",
              "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "model": {"head": model.head, "encoders": info["encoders"], "inputs": info["roles"]},
              "test": _describe(test), "train": None if train is None else _describe(train)}
    options = {k: v for k, v in (("threshold", leakage_threshold), ("text_threshold", text_threshold)) if v is not None}
    record["leakage"], test = _leakage(model, train, test, no_train, leakage, drop_leaked, options)
    if record["leakage"].get("dropped"):
        record["test"]["rows_after_dropping_leaked"] = len(test)
    record["metrics"] = model.evaluate(test, repeats=repeats)
    record["task"] = model.task_.to_dict()
    record["fit_metrics"] = dict(model.metrics_)
    record["calibration_fit"] = {k: v for k, v in (model.calibration_ or {}).items() if k != "residuals"}
    record["baseline"] = (_baseline(model, train, test, seed) if train is not None and baseline
                          else _skipped(no_train if train is None else "not requested (Python: baseline=True; graftkit fuse --baseline)"))
    record["scratch"] = _skipped("not built for fusion models (the encoders are pretrained backbones; the tabular "
                                 "trees are the from-scratch reference: auto's first rung)")
    record["forgetting"] = _skipped("not measured for fusion models")
    record["learning_curve"] = _skipped("not built for fusion models")
    record["cv"] = cv if cv is not None else _skipped("not requested (graftkit fuse --cv K, graftkit cv)")
    return _plain(record)


def _identity(model_dir) -> dict:
    return {"arrays_sha256": read_fusion_manifest(model_dir)["files"][ARRAYS]}


def save_fusion_evaluation(model_dir, record: dict) -> Path:
    """``MODEL_DIR/evaluation.json``, atomically, tied to the saved arrays' hash."""
    model_dir = Path(model_dir).expanduser()
    record = _plain({**record, "model": {**record.get("model", {}), **_identity(model_dir)}})
    return write_text_atomic(model_dir / EVALUATION, json.dumps(record, indent=1, ensure_ascii=False,
                                                                 allow_nan=False))


def read_fusion_evaluation(model_dir) -> dict | None:
    """The saved record (``"stale": True`` when the model was refitted since), or None when there is none."""
    file = Path(model_dir).expanduser() / EVALUATION
    if not file.is_file():
        return None
    try:
        record = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{file} is corrupt ({exc}); write it again with `graftkit fuse ... -o DIR`") from None
    if record.get("format") != FORMAT or record.get("kind") != "fusion":
        raise ArtifactError(f"{file} is not the evaluation record of a fusion model; write it again with "
                            "`graftkit fuse ... -o DIR`")
    record["stale"] = record.get("model", {}).get("arrays_sha256") != _identity(model_dir)["arrays_sha256"]
    return record
