"""Multi-label classification: any set of labels per row (the empty set too, unless refused).

Targets come as a delimited list in one column (``--label-sep``; ``|`` when seen), as JSON lists (JSONL), or as
several 0/1 columns (``--labels a b c``). Outputs are per-label sigmoids trained with binary cross-entropy;
the head on frozen features is one-vs-rest logistic regression. Calibration is fitted on held-out outputs:
a temperature per label (Guo et al. 2017, applied to each label's logit), then a decision threshold per label
that maximises that label's F1 on the same held-out rows (instead of a fixed 0.5, which under-predicts rare
labels; Lipton, Elkan & Naryanaswamy 2014, "Optimal Thresholding of Classifiers to Maximize F1"). Both are
saved in the manifest. Splits use iterative stratification (Sechidis et al. 2011, the
``iterative-stratification`` package) so rare labels reach every fold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from graftkit.errors import ConfigError, DataError
from graftkit.scoring.calibration import fit_temperature, reliability_diagram
from graftkit.scoring.multilabel import multilabel_metrics, tune_thresholds
from graftkit.scoring.uncertainty import binary_entropy_uncertainty, threshold_margin_uncertainty
from graftkit.tasks.base import Task
from graftkit.tasks.heads import OneVsRestHead
from graftkit.tasks.registry import register_task

DEFAULT_SEP = "|"
TRUE = frozenset({"1", "1.0", "true", "yes", "y", "t"})
FALSE = frozenset({"0", "0.0", "false", "no", "n", "f"})
METHOD = ("a temperature per label (Guo et al. 2017) minimising held-out NLL, then per-label thresholds "
          "maximising held-out F1")


def _label_set(value, sep: str, where: str) -> list[str]:
    if isinstance(value, list):
        if not all(isinstance(v, str) and v.strip() for v in value):
            raise DataError(f"{where}: the label list {value!r:.80} must hold non-empty strings")
        return [v.strip() for v in value]
    return [part.strip() for part in str(value).split(sep) if part.strip()]


def _indicator(value, where: str) -> int:
    text = str(value).strip().lower()
    if text in TRUE:
        return 1
    if text in FALSE:
        return 0
    raise DataError(f"{where}: {value!r:.40} is not 0 or 1; each --labels column holds 0/1 (or true/false) per row")


@register_task
@dataclass(frozen=True)
class MultiLabel(Task):
    kind: ClassVar[str] = "multilabel-classification"
    primary_metric: ClassVar[str] = "micro_f1"
    headline: ClassVar[tuple[str, ...]] = ("micro_f1", "macro_f1", "samples_f1", "subset_accuracy", "hamming_loss")
    engine_metrics: ClassVar[tuple[str, ...]] = ("micro_f1", "macro_f1", "subset_accuracy", "hamming_loss")
    minimized: ClassVar[tuple[str, ...]] = ("loss", "hamming_loss")
    options: ClassVar[tuple[str, ...]] = ("label_sep", "allow_empty")
    uncertainty_measures: ClassVar[tuple[str, ...]] = ("margin", "entropy")

    names: tuple[str, ...] = ()
    label_sep: str | None = DEFAULT_SEP   # None: the labels are several 0/1 columns
    allow_empty: bool = True              # may a row have no label at all?
    reason: str = ""

    @classmethod
    def claims(cls, table, label_sep: str | None = None, **_) -> str | None:
        column = table.label_column
        if isinstance(column, tuple):
            return f"task: multi-label ({len(column)} label columns: {', '.join(column)})"
        if label_sep is not None:
            return f"task: multi-label (labels separated by {label_sep!r}, given by --label-sep)"
        values = table.labels()
        if any(isinstance(v, list) for v in values):
            return f"task: multi-label (column {column!r} holds lists of labels; override with --task)"
        if any(DEFAULT_SEP in v for v in values if isinstance(v, str)):
            return (f"task: multi-label (column {column!r} holds {DEFAULT_SEP!r}-separated label lists; override with "
                    "--task classification)")
        return None

    @classmethod
    def infer(cls, table, label_sep: str | None = None, allow_empty: bool = True, **_) -> MultiLabel:
        if label_sep is not None and (not isinstance(label_sep, str) or not label_sep.strip()):
            raise ConfigError(f"--label-sep must be a non-blank separator such as '|' or ';'; got {label_sep!r}")
        if isinstance(table.label_column, tuple):
            task = cls(names=tuple(table.label_column), label_sep=None, allow_empty=allow_empty)
        else:
            sep = label_sep or DEFAULT_SEP
            seen: set[str] = set()
            for position, value in enumerate(table.labels()):
                seen.update(_label_set(value, sep, table.where(position, table.label_column)))
            task = cls(names=tuple(sorted(seen)), label_sep=sep, allow_empty=allow_empty)
        if len(task.names) < 2:
            raise DataError(f"{table.source}: a multi-label target needs at least two labels; found "
                            f"{list(task.names)}; with one label this is binary classification (--task classification)")
        Y = task.encode(table)
        never = [name for name, count in zip(task.names, Y.sum(axis=0)) if count == 0]
        if never:
            raise DataError(f"{table.source}: label column(s) {', '.join(never[:5])} are 0 in every row; drop them "
                            "from --labels")
        return cls(names=task.names, label_sep=task.label_sep, allow_empty=allow_empty,
                   reason=f"task: multi-label classification ({len(task.names)} labels; override with --task)")

    @property
    def labels(self) -> tuple[str, ...]:
        return self.names

    def to_dict(self) -> dict:
        return {"kind": self.kind, "labels": list(self.names), "label_sep": self.label_sep,
                "allow_empty": self.allow_empty}

    @classmethod
    def from_dict(cls, data: dict) -> MultiLabel:
        return cls(names=tuple(data["labels"]), label_sep=data["label_sep"], allow_empty=bool(data["allow_empty"]))

    # -- targets -----------------------------------------------------------------------------------------------
    def encode(self, table) -> np.ndarray:
        index = {name: j for j, name in enumerate(self.names)}
        values = table.labels()
        Y = np.zeros((len(values), len(self.names)), dtype=np.float32)
        if self.label_sep is None:
            columns = table.label_columns
            if tuple(columns) != self.names:
                raise DataError(f"{table.source}: the label columns are {', '.join(columns)}, but the model was fitted "
                                f"on {', '.join(self.names)}; pass --labels {' '.join(self.names)}")
            for position, row in enumerate(values):
                for j, value in enumerate(row):
                    Y[position, j] = _indicator(value, table.where(position, columns[j]))
        else:
            for position, value in enumerate(values):
                where = table.where(position, table.label_column)
                for label in _label_set(value, self.label_sep, where):
                    if label not in index:
                        known = ", ".join(repr(n) for n in self.names[:10]) + (" ..." if len(self.names) > 10 else "")
                        raise DataError(f"{where}: label {label!r} was not seen in training; the model knows {known}; "
                                        "drop it from that row or refit with it")
                    Y[position, index[label]] = 1.0
        if not self.allow_empty:
            empty = np.flatnonzero(Y.sum(axis=1) == 0)
            if empty.size:
                raise DataError(f"{table.where(int(empty[0]), table.label_column)}: the row has no label, and empty "
                                f"label sets were declared impossible ({empty.size} row(s)); label them, drop them, "
                                "or allow empty sets (allow_empty=True; CLI: without --no-empty-labels)")
        return Y

    def thresholds(self, calibration: dict | None) -> np.ndarray:
        found = (calibration or {}).get("thresholds")
        return np.asarray(found, dtype=np.float64) if found else np.full(len(self.names), 0.5)

    def with_thresholds(self, calibration: dict | None, thresholds, source: str) -> dict:
        """The user's thresholds (a JSON object label -> threshold in (0, 1)) instead of the tuned ones. A file
        written for another model (other labels) is refused, naming the labels that differ."""
        if not isinstance(thresholds, dict):
            raise ConfigError(f"{source}: thresholds must be a JSON object mapping each label to a number in (0, 1); "
                              f"got a JSON {type(thresholds).__name__}")
        missing, unknown = sorted(set(self.names) - set(thresholds)), sorted(set(thresholds) - set(self.names))
        if missing or unknown:
            raise ConfigError(f"{source}: the thresholds do not fit this model (labels {', '.join(self.names)}); "
                              + "; ".join(part for part in (f"missing {', '.join(missing)}" if missing else "",
                                                           f"unknown {', '.join(unknown)}" if unknown else "") if part)
                              + "; it was written for another model")
        for name, value in thresholds.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < float(value) < 1.0:
                raise ConfigError(f"{source}: the threshold of {name!r} must be a number in (0, 1); got {value!r}")
        return {**(calibration or {}), "thresholds": [float(thresholds[name]) for name in self.names],
                "thresholds_from": source}

    def decode(self, outputs: np.ndarray, calibration: dict | None = None) -> list[list[str]]:
        chosen = np.asarray(outputs) >= self.thresholds(calibration)
        return [[name for name, on in zip(self.names, row) if on] for row in chosen]

    def records(self, outputs: np.ndarray, calibration: dict | None = None, **_) -> list[dict]:
        sets = self.decode(outputs, calibration)
        joiner = self.label_sep or DEFAULT_SEP
        return [{"prediction": joiner.join(labels), **{f"p_{n}": round(float(p), 6) for n, p in zip(self.names, row)}}
                for labels, row in zip(sets, outputs)]

    def describe_targets(self, y: np.ndarray) -> dict:
        return {"label_counts": {name: int(c) for name, c in zip(self.names, y.sum(axis=0))},
                "empty_rows": int((y.sum(axis=1) == 0).sum())}

    # -- splits: iterative stratification ----------------------------------------------------------------------
    def split(self, table, test_size: float = 0.2, val_size: float = 0.0, seed: int = 0):
        from graftkit.data.splits import check_fractions

        check_fractions(test_size, val_size)
        Y = self.encode(table)
        rest, test = _iterative_split(Y, np.arange(len(Y)), test_size, seed, table.source)
        if not val_size:
            return table.subset(rest), table.subset(test)
        train, val = _iterative_split(Y[rest], rest, val_size / (1.0 - test_size), seed, table.source)
        return table.subset(train), table.subset(val), table.subset(test)

    def describe_folds(self) -> str:
        return "iterative stratification over the labels"

    def fold_indices(self, y: np.ndarray, k: int, seed: int, table=None) -> list:
        from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

        from graftkit.data.splits import check_folds

        check_folds(k)
        if len(y) < k:
            raise DataError(f"{getattr(table, 'source', 'the data')}: {len(y)} rows cannot make {k} folds; use fewer "
                            "folds (CLI: --folds)")
        return list(MultilabelStratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))

    # -- heads and the engine ----------------------------------------------------------------------------------
    def fit_head(self, X, y, *, head: str = "linear", seed: int = 0, C=None, cv_folds: int = 5, max_iter: int = 1000,
                 standardize: bool = True, **_):
        if head == "gbdt":
            raise ConfigError("the gbdt head predicts one target (a class or a value); a multi-label model uses the "
                              "linear head (--head linear)")
        if head == "mlp":
            raise ConfigError("the mlp head is built for single-label classification; a multi-label probe uses the "
                              "linear head (--head linear)")
        return OneVsRestHead.fit(X, y, C=C, cv_folds=cv_folds, max_iter=max_iter, standardize=standardize, seed=seed)

    def fit_classical(self, X, y, *, seed: int = 0, **options):
        """The classical baseline's estimator: one-vs-rest logistic regression, each C by CV, decided at 0.5."""
        from graftkit.tasks.classical import fit_one_vs_rest

        return fit_one_vs_rest(X, y, seed=seed, **options)

    def loss(self, z, labels, target_mean, target_scale):
        from torch.nn.functional import binary_cross_entropy_with_logits

        return binary_cross_entropy_with_logits(z.float(), labels.float())

    def score_engine(self, raw: np.ndarray, y: np.ndarray) -> dict:
        m = multilabel_metrics(np.asarray(y), _sigmoid(np.asarray(raw)), np.full(len(self.names), 0.5), self.names,
                               per_label=False)
        return {k: m[k] for k in self.engine_metrics}

    # -- calibration and metrics -------------------------------------------------------------------------------
    def fit_calibration(self, raw: np.ndarray, y: np.ndarray, *, scale: bool = True) -> dict:
        raw = np.asarray(raw, dtype=np.float64)
        temperatures, statuses = [], []
        for j in range(raw.shape[1]):
            if not scale:
                temperatures.append(1.0)
                continue
            fit = fit_temperature(np.stack([np.zeros(len(raw)), raw[:, j]], axis=1), y[:, j].astype(np.int64))
            temperatures.append(fit.temperature)
            statuses.append(fit.status)
        probabilities = _sigmoid(raw / np.asarray(temperatures))
        thresholds, notes = tune_thresholds(y, probabilities)
        fitted = sum(s == "fitted" for s in statuses)
        status = (f"fitted: {fitted} of {len(self.names)} label temperatures fitted (the others stay 1), thresholds "
                  "tuned" if scale else "thresholds tuned; temperatures off")
        return {"temperatures": temperatures, "thresholds": thresholds.tolist(), "threshold_notes": notes,
                "status": status, "n": int(len(y)), "method": METHOD if scale else METHOD.split(", then ")[1]}

    def skipped_calibration(self, reason: str) -> dict:
        return {"temperatures": [1.0] * len(self.names), "thresholds": [0.5] * len(self.names),
                "status": f"skipped: {reason}; thresholds stay 0.5", "method": METHOD, "fitted_on": None}

    def outputs(self, raw: np.ndarray, calibration: dict | None) -> np.ndarray:
        temperatures = np.asarray((calibration or {}).get("temperatures") or np.ones(len(self.names)), np.float64)
        return _sigmoid(np.asarray(raw, dtype=np.float64) / temperatures)

    def uncertainty(self, outputs, calibration=None, measure=None) -> np.ndarray:
        """Margin (default: the least sure label's distance to its tuned threshold) or the mean binary entropy of
        the calibrated per-label probabilities."""
        measure = self.check_uncertainty(measure)
        if measure == "margin":
            return threshold_margin_uncertainty(outputs, self.thresholds(calibration))
        return binary_entropy_uncertainty(outputs)

    def metrics(self, y, raw, calibration, **_) -> dict:
        raw = np.asarray(raw, dtype=np.float64)
        calibrated = self.outputs(raw, calibration)
        metrics = multilabel_metrics(y, calibrated, self.thresholds(calibration), self.names)
        fixed = multilabel_metrics(y, calibrated, np.full(len(self.names), 0.5), self.names, per_label=False)
        metrics["fixed_threshold_0.5"] = {k: fixed[k] for k in self.headline}
        before = _sigmoid(raw)
        rows = []
        for j, (name, t) in enumerate(zip(self.names, self.outputs_temperatures(calibration))):
            truth = y[:, j].astype(int)
            diagram_before = reliability_diagram(_two_columns(before[:, j]), truth)
            diagram_after = reliability_diagram(_two_columns(calibrated[:, j]), truth)
            rows.append({"label": name, "temperature": float(t), "ece_before": diagram_before["ece"],
                         "ece_after": diagram_after["ece"], "reliability_before": diagram_before["bins"],
                         "reliability_after": diagram_after["bins"]})
        metrics["calibration"] = {"status": (calibration or {}).get("status", "off"), "per_label": rows}
        return metrics

    def outputs_temperatures(self, calibration: dict | None) -> list[float]:
        return list((calibration or {}).get("temperatures") or [1.0] * len(self.names))

    def primary(self, y, outputs, calibration: dict | None = None) -> float:
        """Micro-F1 alone (bootstraps call this thousands of times; ``summary`` computes five metrics)."""
        from sklearn.metrics import f1_score

        predicted = (np.asarray(outputs) >= self.thresholds(calibration)).astype(np.int64)
        return float(f1_score(np.asarray(y).astype(np.int64), predicted, average="micro", zero_division=0))

    def summary(self, y, outputs, calibration: dict | None = None) -> dict:
        m = multilabel_metrics(np.asarray(y), np.asarray(outputs), self.thresholds(calibration), self.names,
                               per_label=False)
        return {"n": m["n"], **{k: m[k] for k in self.headline}}

    def describe_calibration(self, calibration: dict | None) -> str:
        if not calibration:
            return "Per-label probabilities are the head's own and every label is decided at 0.5."
        thresholds = ", ".join(f"`{n}` {t:.3f}" for n, t in zip(self.names, self.thresholds(calibration)))
        return (f"Per-label probabilities are `sigmoid(logit / T_label)` and a label is predicted at or above its own "
                f"threshold ({thresholds}); {calibration['status']} on {calibration.get('fitted_on')}. "
                "`manifest.json` → `calibration`.")

    def format_metrics(self, metrics: dict, top: int = 20) -> str:
        lines = [super().format_metrics(metrics)]
        fixed = metrics.get("fixed_threshold_0.5")
        if fixed:
            lines.append(f"with a fixed 0.5 threshold: micro-F1 {fixed['micro_f1']:.4f}   macro-F1 {fixed['macro_f1']:.4f}")
        rows = sorted(metrics.get("per_label", []), key=lambda r: r["f1"])
        width = max(8, *(len(r["label"]) for r in rows[:top])) if rows else 8
        lines.append(f"{'label':<{width}}  precision  recall     f1     AP  threshold  support")
        for r in rows[:top]:
            lines.append(f"{r['label']:<{width}}  {r['precision']:9.3f}  {r['recall']:6.3f}  {r['f1']:5.3f}  "
                         f"{r['average_precision']:5.3f}  {r['threshold']:9.3f}  {r['support']:7d}")
        return "\n".join(lines)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500)))


def _two_columns(p: np.ndarray) -> np.ndarray:
    return np.stack([1.0 - p, p], axis=1)


def _iterative_split(Y, positions, test_size: float, seed: int, source: str):
    from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

    if len(positions) < 2 or round(len(positions) * test_size) < 1:
        raise DataError(f"{source}: cannot split {len(positions)} rows at test_size={test_size:g}; use a larger "
                        "test_size (CLI: --test-size) or more data")
    splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=test_size, random_state=seed)
    train, test = next(splitter.split(np.zeros(len(Y)), Y))
    return positions[train], positions[test]
