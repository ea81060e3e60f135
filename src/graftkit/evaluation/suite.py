"""The whole evaluation of a fitted model as one record, saved beside the model as ``evaluation.json``.

``evaluate_model`` gathers the held-out metrics (with calibration and threshold metrics), the leakage
search between training and test rows, the classical baseline with the transfer gain, and optionally the
learning curve and a k-fold CV summary. ``save_evaluation`` writes the record into the model directory
atomically (temporary file + rename) and ties it to the model by the head's hash, so ``graftkit report``
can tell a stale record from a current one. The report only renders this data.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from graftkit.atomic import write_text_atomic
from graftkit.errors import ArtifactError

logger = logging.getLogger(__name__)

EVALUATION = "evaluation.json"
FORMAT = "graftkit-evaluation"
FORMAT_VERSION = 1


def _describe(table) -> dict:
    return {"source": table.source, "rows": len(table), "fingerprint": table.fingerprint()}


def _skipped(reason: str) -> dict:
    return {"skipped": reason}


def evaluate_model(model, test, *, train=None, baseline: bool = True, leakage: bool = True,
                   drop_leaked: bool = False, leakage_threshold: float | None = None,
                   text_threshold: float | None = None, learning_curve: bool = False, shots=None, seeds: int = 3,
                   targets=None, target_recall: float = 0.9, target_precision: float = 0.9, cv: dict | None = None,
                   scratch: bool = False, forgetting: bool = True, reference=None, progress: bool = False,
                   interval: float | None = None, target=None) -> dict:
    """Everything ``graftkit report`` shows, as plain data. ``train`` (the rows the model was fitted on)
    enables leakage, the baselines and the learning curve; without it those sections say why they are absent.
    ``drop_leaked`` scores the model without the test rows that duplicate training rows. ``scratch`` trains
    the same architecture from random weights for the transfer gain against it (costs one more fit);
    ``forgetting`` measures a fine-tuned backbone's drift on the test rows and, with a labelled ``reference``
    task, what a linear probe on it lost. ``target`` (unlabelled target-domain data) adds the domain shift between
    the training rows (else the test rows) and it: proxy A-distance and MMD (``evaluation.shift``)."""
    from graftkit.evaluation import leakage as leakage_module
    from graftkit.evaluation.baselines import run_baseline, transfer_gain
    from graftkit.evaluation.forgetting import measure_forgetting
    from graftkit.evaluation.learning_curve import (
        DEFAULT_SHOTS,
        DEFAULT_TARGETS,
        measure_learning_curve,
    )
    from graftkit.evaluation.transfer import scratch_baseline

    model.check_fitted()
    test = model.as_table(test, require_label=True)
    train = None if train is None else model.as_table(train, require_label=True)
    record = {"format": FORMAT, "format_version": FORMAT_VERSION,
              "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "model": {"backbone": model.backbone, "strategy": model.strategy_.name},
              "test": _describe(test), "train": None if train is None else _describe(train)}
    no_train = "no training data given (Python: train=...; CLI: fit with a test split, or evaluate --train FILE)"
    if train is None or not leakage:
        record["leakage"] = _skipped(no_train if train is None else "turned off (--no-leakage)")
    else:
        options = {k: v for k, v in (("threshold", leakage_threshold), ("text_threshold", text_threshold))
                   if v is not None}
        found = leakage_module.find_leakage(model, train, test, **options)
        found["dropped"] = bool(drop_leaked and found["leaked"])
        if found["dropped"]:
            test = leakage_module.drop_leaked(test, found)
            record["test"]["rows_after_dropping_leaked"] = len(test)
            logger.info("leakage: %d duplicated test rows dropped; evaluating on %d", found["leaked"], len(test))
        elif found["warning"]:
            logger.warning("leakage: %s", found["warning"])
        record["leakage"] = found
    record["metrics"] = model.evaluate(test, target_recall=target_recall, target_precision=target_precision,
                                       interval=interval)
    record["task"] = model.task_.to_dict()
    # what the fit measured on its validation rows (a generative task: rung 0, zero-shot, before the adapted model)
    record["fit_metrics"] = {k: v for k, v in (getattr(model, "metrics_", None) or {}).items() if k != "test"}
    record["calibration_fit"] = _without_residuals(getattr(model, "calibration_", None))
    task = model.task_
    y_true, outputs = model.last_predictions_["y_true"], model.last_predictions_["outputs"]
    calibration = model.active_calibration()
    name = f"{model.backbone} + {model.strategy_.name}"
    if task.generative:  # a transcript has no classical estimator; rung 0 (zero-shot) is the comparison
        record["baseline"] = _skipped("a generative task has no classical baseline; the zero-shot model (rung 0) is "
                                      "the comparison: manifest.json -> metrics.validation_zero_shot, or fit "
                                      "--strategy zero-shot")
    elif train is None or not baseline:
        record["baseline"] = _skipped(no_train if train is None else "turned off (--no-baseline)")
    else:
        result = run_baseline(train, test, task, seed=model.seed, progress=progress)
        result["transfer_gain"] = transfer_gain(task, y_true, outputs, result.pop("outputs"),
                                                model_calibration=calibration, model_name=name,
                                                baseline_name=result["name"], seed=model.seed)
        for key in task.headline:
            if key != task.primary_metric and record["metrics"].get(key) is not None and result.get(key) is not None:
                result["transfer_gain"][f"{key}_gain"] = record["metrics"][key] - result[key]
        if result["transfer_gain"]["warning"]:
            logger.warning("transfer gain: %s", result["transfer_gain"]["warning"])
        record["baseline"] = result
    if not scratch:
        record["scratch"] = _skipped("not requested (Python: scratch=True; CLI: --scratch): it trains the same "
                                     "architecture once more from random weights")
    elif train is None:
        record["scratch"] = _skipped(no_train)
    else:
        result = scratch_baseline(model, train, test)
        result["transfer_gain"] = transfer_gain(task, y_true, outputs, result.pop("outputs"),
                                                model_calibration=calibration, model_name=name,
                                                baseline_name=result["name"], seed=model.seed)
        if result["transfer_gain"]["warning"]:
            logger.warning("transfer gain against scratch: %s", result["transfer_gain"]["warning"])
        record["scratch"] = result
    if task.generative:
        record["forgetting"] = _skipped("not built for generative tasks (the trained part is the decoder; the "
                                        "pooled-encoder probe measures nothing there)")
    else:
        record["forgetting"] = (measure_forgetting(model, test, reference=reference) if forgetting
                                else _skipped("turned off (forgetting=False)"))
    if not learning_curve:
        record["learning_curve"] = _skipped("not requested (Python: learning_curve=True; CLI: --learning-curve)")
    elif train is None:
        record["learning_curve"] = _skipped(no_train)
    else:
        record["learning_curve"] = measure_learning_curve(model, train, test, shots=shots or DEFAULT_SHOTS,
                                                          seeds=seeds, targets=targets or DEFAULT_TARGETS)
    record["cv"] = cv if cv is not None else _skipped("not requested (CLI: fit --cv K)")
    if target is None:
        record["domain_shift"] = _skipped("no target data given (Python: target=...; CLI: evaluate --target FILE)")
    else:
        from graftkit.data.unlabelled import load_unlabelled, warn_if_test_rows
        from graftkit.evaluation.shift import domain_shift

        backbone = model.loaded_backbone()
        target_table = load_unlabelled(target, modality=backbone.modality) if not hasattr(target, "frame") else target
        warn_if_test_rows(target_table, test, "target")
        record["domain_shift"] = domain_shift(model, train if train is not None else test, target_table)
    return _plain(record)


def _without_residuals(calibration: dict | None) -> dict | None:
    """The calibration record without its list of held-out residuals (the manifest keeps them)."""
    if not calibration:
        return calibration
    return {k: v for k, v in calibration.items() if k != "residuals"}


def _plain(value):
    """JSON-safe copy: numpy scalars and arrays to Python numbers and lists, NaN / inf to None."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    return value


def model_identity(model_dir) -> dict:
    """What ties an evaluation record to one model: the manifest's creation time and the head's hash."""
    from graftkit.artifacts import HEAD, read_manifest

    manifest = read_manifest(model_dir)
    return {"created": manifest["created"], "head_sha256": manifest.get("files", {}).get(HEAD)}


def save_evaluation(model_dir, record: dict) -> Path:
    """Write ``record`` as ``MODEL_DIR/evaluation.json`` atomically; returns the file's path."""
    model_dir = Path(model_dir).expanduser()
    record = _plain({**record, "model": {**record.get("model", {}), **model_identity(model_dir)}})
    target = model_dir / EVALUATION
    return write_text_atomic(target, json.dumps(record, indent=1, ensure_ascii=False, allow_nan=False))


def read_evaluation(model_dir) -> dict | None:
    """The saved record (with ``"stale": True`` when the model was refitted since), or ``None`` when absent."""
    model_dir = Path(model_dir).expanduser()
    file = model_dir / EVALUATION
    if not file.is_file():
        return None
    try:
        record = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{file} is corrupt ({exc}); write it again with `graftkit evaluate "
                            f"{model_dir} DATA --save`") from None
    if record.get("format") != FORMAT:
        raise ArtifactError(f"{file} is not a graftkit evaluation record; write it again with `graftkit evaluate "
                            f"{model_dir} DATA --save`")
    saved = record.get("model", {})
    current = model_identity(model_dir)
    record["stale"] = any(saved.get(k) != v for k, v in current.items())
    return record
