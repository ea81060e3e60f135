"""Single-label classification: one class per row, softmax outputs, cross-entropy, temperature scaling.

The primary metric is accuracy; the evaluation adds macro-F1, the per-class table, the confusion matrix,
calibration before and after temperature scaling (Guo et al. 2017) and threshold metrics.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from graftkit.data.readers import DROP_HINT, MISSING_LABELS
from graftkit.errors import DataError
from graftkit.scoring.calibration import fit_temperature, scaled_probabilities
from graftkit.scoring.metrics import classification_metrics, format_table, probability_metrics
from graftkit.scoring.uncertainty import entropy_uncertainty, margin_uncertainty
from graftkit.tasks.base import Task
from graftkit.tasks.gbdt import GBDTHead
from graftkit.tasks.heads import LogRegHead, MLPHead, fit_prior_logreg
from graftkit.tasks.registry import register_task

# A class named NA / null / - is almost always a missing label: refused rather than learnt as a class of its own.
MISSING_TOKENS = MISSING_LABELS
METHOD = "temperature scaling (Guo et al. 2017), T minimising held-out NLL"


def class_order(labels) -> tuple[str, ...]:
    """Numeric labels sort as numbers ("2" before "10"), others alphabetically."""
    unique = set(labels)
    try:
        return tuple(sorted(unique, key=float))
    except ValueError:
        return tuple(sorted(unique))


def _canonical_number(text: str) -> str:
    """``"1.0"`` and ``"1"`` are one class: integral numbers are written without a fraction."""
    try:
        value = float(text)
    except ValueError:
        return text
    return str(int(value)) if np.isfinite(value) and value == int(value) and "." in text else text


def read_classes(table) -> list[str]:
    """The label column as class names; blank, missing-looking or list-valued labels are refused by row."""
    column = table.label_column
    if isinstance(column, tuple):
        raise DataError(f"{table.source}: several label columns ({', '.join(column)}) make a multi-label target; "
                        "use --task multilabel-classification, or give one --label column")
    values = table.labels()
    for position, value in enumerate(values):
        if isinstance(value, list):
            raise DataError(f"{table.where(position, column)}: the label is a list ({value!r}); a list of labels "
                            "is a multi-label target: use --task multilabel-classification")
    blank = [i for i, v in enumerate(values) if v == ""]
    if blank:
        rows = ", ".join(str(table.frame.index[i]) for i in blank[:5]) + (" ..." if len(blank) > 5 else "")
        raise DataError(f"{table.source}: column {column!r} is blank in {len(blank)} row(s) (row {rows}); "
                        f"fill in the labels or drop those rows ({DROP_HINT})")
    missing = [i for i, v in enumerate(values) if v.lower() in MISSING_TOKENS]
    if missing:
        raise DataError(f"{table.where(missing[0], column)}: label {values[missing[0]]!r} looks like a missing value "
                        f"({len(missing)} row(s)); {DROP_HINT}, or rename the class if it is a real one")
    return [_canonical_number(v) for v in values]


@register_task
@dataclass(frozen=True)
class Classification(Task):
    kind: ClassVar[str] = "classification"
    primary_metric: ClassVar[str] = "accuracy"
    headline: ClassVar[tuple[str, ...]] = ("accuracy", "macro_f1")
    engine_metrics: ClassVar[tuple[str, ...]] = ("accuracy", "macro_f1")
    calibrated_without_scaling: ClassVar[bool] = False
    has_classes: ClassVar[bool] = True
    uncertainty_measures: ClassVar[tuple[str, ...]] = ("margin", "entropy")
    zero_shot: ClassVar[bool] = True  # one class per row: a softmax over description similarities fits it

    classes: tuple[str, ...] = ()
    reason: str = ""

    @classmethod
    def infer(cls, table, **options) -> Classification:
        labels = read_classes(table)
        counts = Counter(labels)
        if len(counts) < 2:
            only = next(iter(counts), None)
            raise DataError(f"{table.source}: column {table.label_column!r} has a single class ({only!r}) in all "
                            f"{len(labels)} rows; a classifier needs at least two classes")
        return cls(classes=class_order(labels),
                   reason=f"task: classification ({len(counts)} classes in column {table.label_column!r}; "
                          "override with --task)")

    @property
    def labels(self) -> tuple[str, ...]:
        return self.classes

    def to_dict(self) -> dict:
        return {"kind": self.kind, "labels": list(self.classes)}

    @classmethod
    def from_dict(cls, data: dict) -> Classification:
        return cls(classes=tuple(data["labels"]))

    # -- targets -----------------------------------------------------------------------------------------------
    def encode(self, table) -> np.ndarray:
        return self.encode_labels(read_classes(table), where=lambda i: table.where(i, table.label_column))

    def encode_labels(self, labels, where=None) -> np.ndarray:
        """Class ids of label names; an unseen label fails naming its row."""
        index = {label: i for i, label in enumerate(self.classes)}
        unknown = [(i, label) for i, label in enumerate(labels) if label not in index]
        if unknown:
            position, label = unknown[0]
            place = where(position) if where else f"row {position + 1}"
            known = ", ".join(repr(x) for x in self.classes[:10]) + (" ..." if len(self.classes) > 10 else "")
            raise DataError(f"{place}: label {label!r} was not seen in training ({len(unknown)} row(s) have unseen "
                            f"labels); the model knows {known}; drop those rows or refit with them")
        return np.array([index[label] for label in labels], dtype=np.int64)

    def decode(self, outputs: np.ndarray, calibration: dict | None = None) -> list[str]:
        return [self.classes[int(i)] for i in np.asarray(outputs).argmax(axis=1)]

    def records(self, outputs: np.ndarray, calibration: dict | None = None, **_) -> list[dict]:
        predicted = self.decode(outputs)
        return [{"prediction": label, **{f"p_{c}": round(float(p), 6) for c, p in zip(self.classes, row)}}
                for label, row in zip(predicted, outputs)]

    def describe_targets(self, y: np.ndarray) -> dict:
        return {"class_counts": {label: int((y == i).sum()) for i, label in enumerate(self.classes)}}

    def describe_folds(self) -> str:
        return "stratified by class"

    def strata(self, y: np.ndarray) -> np.ndarray:
        """The class names (not ids): scikit-learn's stratified splitters order classes as they sort, and the
        names keep the splits of tables split before tasks had ids."""
        return np.asarray(self.classes, dtype=object)[np.asarray(y)]

    def calibration_folds(self, y: np.ndarray, max_folds: int) -> tuple[int, str | None]:
        smallest = int(np.bincount(y, minlength=len(self.classes)).min())
        if smallest < 2:
            return 0, (f"a class has {smallest} training row(s); cross-fitted calibration needs 2 per class "
                       "(or pass validation data)")
        return min(max_folds, smallest), None

    # -- heads and the engine ----------------------------------------------------------------------------------
    def fit_head(self, X, y, *, head: str = "linear", seed: int = 0, C=None, cv_folds: int = 5, hidden_size: int = 256,
                 max_iter: int = 1000, standardize: bool = True, prior=None, **params):
        """``prior``: class-description weights the linear head is pulled towards (label-initialised probe)."""
        if head == "gbdt":  # trees on fused features (tasks/gbdt.py); ``categorical`` marks the category codes
            return GBDTHead.fit(X, y, classifier=True, seed=seed, **params)
        if prior is not None:
            if head == "mlp":
                from graftkit.errors import ConfigError

                raise ConfigError("label_init needs the linear head (--head linear); an mlp has no class weights "
                                  "to start from descriptions")
            return fit_prior_logreg(X, y, prior, C=C, cv_folds=cv_folds, max_iter=max_iter, seed=seed,
                                    standardize=standardize, n_classes=len(self.classes))
        if head == "mlp":
            return MLPHead.fit(X, y, hidden_size=hidden_size, max_iter=max_iter, standardize=standardize, seed=seed)
        return LogRegHead.fit(X, y, C=C, cv_folds=cv_folds, max_iter=max_iter, standardize=standardize, seed=seed)

    def fit_classical(self, X, y, *, seed: int = 0, **options):
        """The classical baseline's estimator on its features ``X`` (logistic regression, C by CV)."""
        from graftkit.tasks.classical import fit_logistic

        if len(np.unique(y)) < 2:
            raise DataError("baseline: the training data hold a single class; a classifier needs at least two")
        return fit_logistic(X, y, n_classes=len(self.classes), seed=seed, **options)

    def row_scores(self, y, outputs, calibration=None) -> np.ndarray:
        """Per-row correctness: its mean is the primary metric (accuracy), so bootstraps need no refit."""
        return (np.asarray(outputs).argmax(axis=1) == np.asarray(y)).astype(float)

    def loss(self, z, labels, target_mean, target_scale):
        from torch.nn.functional import cross_entropy

        return cross_entropy(z.float(), labels.long())

    def score_engine(self, raw: np.ndarray, y: np.ndarray) -> dict:
        m = classification_metrics(np.asarray(y), np.asarray(raw).argmax(axis=-1), self.classes)
        return {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}

    # -- calibration and metrics -------------------------------------------------------------------------------
    def fit_calibration(self, raw: np.ndarray, y: np.ndarray, *, scale: bool = True) -> dict | None:
        if not scale:
            return None
        return {**fit_temperature(raw, y).to_dict(), "method": METHOD}

    def skipped_calibration(self, reason: str) -> dict:
        return {"temperature": 1.0, "status": f"skipped: {reason}", "method": METHOD, "fitted_on": None}

    def outputs(self, raw: np.ndarray, calibration: dict | None) -> np.ndarray:
        temperature = float((calibration or {}).get("temperature", 1.0))
        return scaled_probabilities(raw, temperature)

    def uncertainty(self, outputs, calibration=None, measure=None) -> np.ndarray:
        """Margin (default: 1 - the gap between the two most probable classes) or normalised entropy of the
        calibrated class probabilities."""
        measure = self.check_uncertainty(measure)
        return (margin_uncertainty if measure == "margin" else entropy_uncertainty)(outputs)

    def metrics(self, y, raw, calibration, *, target_recall: float = 0.9, target_precision: float = 0.9,
                curves: bool = True, **_) -> dict:
        calibration = calibration or {}
        return probability_metrics(y, scaled_probabilities(raw, 1.0), self.outputs(raw, calibration), self.classes,
                                   temperature=float(calibration.get("temperature", 1.0)),
                                   calibration_status=calibration.get("status", "off"),
                                   target_recall=target_recall, target_precision=target_precision, curves=curves)

    def summary(self, y, outputs, calibration: dict | None = None) -> dict:
        m = classification_metrics(np.asarray(y), np.asarray(outputs).argmax(axis=1), self.classes)
        return {"n": m["n"], "accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}

    def describe(self) -> str:
        shown = ", ".join(f"`{label}`" for label in self.classes[:20]) + (" ..." if len(self.classes) > 20 else "")
        return f"{self.kind} over {len(self.classes)} classes ({shown})"

    def describe_calibration(self, calibration: dict | None) -> str:
        if not calibration:
            return "Probabilities are the head's own (no temperature was fitted; `calibrate=False`)."
        if calibration["temperature"] == 1.0:
            return f"Probabilities are the head's own: temperature scaling was {calibration['status']}."
        return (f"Probabilities are calibrated: `predict_proba` divides the logits by T = "
                f"{calibration['temperature']:.4f} (temperature scaling, Guo et al. 2017), fitted on "
                f"{calibration['fitted_on']}; held-out ECE there {calibration['ece_before']:.4f} -> "
                f"{calibration['ece_after']:.4f}. `manifest.json` → `calibration`.")

    def format_metrics(self, metrics: dict, top: int = 20) -> str:
        return format_table(metrics, top=top)
