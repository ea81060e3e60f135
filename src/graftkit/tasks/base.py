"""The task contract: what to predict, and everything that depends on it.

A task owns reading its targets from a table (with row- and column-naming errors), how the data is split, the
head fitted on frozen features, the output layer size and loss of the training engine, its metrics with one
primary metric and its direction, its calibration fitted on held-out outputs, and how a prediction is written.
Nothing outside ``tasks/`` branches on the kind of task: heads, the engine, evaluation, ``auto``, the report
and the CLI ask the task (scikit-learn separates classifiers from regressors the same way; Hugging Face
switches the loss on ``problem_type``).

Vocabulary used by every task:

- ``y``: encoded targets, ``encode(table)`` (class ids, a 0/1 label matrix, float values).
- ``raw``: what a head's ``logits(X)`` gives, shape ``(n, output_size)``.
- ``outputs``: ``raw`` after the task's calibration (probabilities, or values); ``decode`` / ``records`` read them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from graftkit.errors import ConfigError


class Task(ABC):
    kind: ClassVar[str] = ""
    primary_metric: ClassVar[str] = ""
    greater_is_better: ClassVar[bool] = True
    best_possible: ClassVar[float] = 1.0  # the primary metric's best value (accuracy, F1, R²: 1; an error rate: 0)
    headline: ClassVar[tuple[str, ...]] = ()        # the metrics of train / validation summaries and of cv
    engine_metrics: ClassVar[tuple[str, ...]] = ()  # what the engine reports per epoch (with "loss")
    minimized: ClassVar[tuple[str, ...]] = ("loss",)  # metrics where lower is better
    has_probabilities: ClassVar[bool] = True
    # one class per row: learning curves sample examples per class (else training rows), and every
    # transferability score applies (else LogME only)
    has_classes: ClassVar[bool] = False
    # fitted on held-out outputs even under calibrate=False (multi-label thresholds, regression intervals)
    calibrated_without_scaling: ClassVar[bool] = True
    options: ClassVar[tuple[str, ...]] = ()          # the task options ``infer`` takes (``Graft(task_options=)``)
    # what one feature vector describes: "row" (pooled over the input) or "word" (one per word of a sentence:
    # features, targets and outputs are then ragged, one array per row; ``tasks.ragged``)
    unit: ClassVar[str] = "row"
    # the model writes the output itself (speech recognition: ``generate`` of an encoder-decoder): no head on
    # features; ``Graft`` hands fit / transcription / artifacts to ``training/seq2seq.py``
    generative: ClassVar[bool] = False
    # one class per row scored by a softmax over classes: zero-shot similarity to class descriptions and
    # label-initialised heads apply
    zero_shot: ClassVar[bool] = False

    reason: str = ""  # why this task was inferred (printed, as column roles are)

    # -- what the task is --------------------------------------------------------------------------------------
    @classmethod
    @abstractmethod
    def infer(cls, table, **options) -> Task:
        """This kind of task for ``table``'s target column(s); a ``DataError`` when the target does not fit."""

    @classmethod
    def claims(cls, table, **options) -> str | None:
        """Why this kind is the natural reading of ``table``'s target (for inference without ``--task``), or None."""
        return None

    @property
    @abstractmethod
    def labels(self) -> tuple[str, ...]:
        """Names of the outputs: the classes, the labels, or the target column."""

    @property
    def output_size(self) -> int:
        return len(self.labels)

    @abstractmethod
    def to_dict(self) -> dict:
        """The task as saved in the manifest (``kind`` plus what ``from_dict`` needs)."""

    @classmethod
    @abstractmethod
    def from_dict(cls, data: dict) -> Task:
        ...

    def check_options(self, strategy) -> None:
        """Refuse strategy settings this task cannot honour (a ConfigError naming the flag)."""

    # -- targets -----------------------------------------------------------------------------------------------
    @abstractmethod
    def encode(self, table) -> np.ndarray:
        """The encoded targets of a labelled table; a ``DataError`` naming the row and column of a bad one."""

    @abstractmethod
    def decode(self, outputs: np.ndarray, calibration: dict | None = None) -> list:
        """Predictions as the user reads them: labels, label lists or numbers."""

    @abstractmethod
    def records(self, outputs: np.ndarray, calibration: dict | None = None, **options) -> list[dict]:
        """One flat dict per row, the columns a prediction file gets (CSV / JSON); ``table`` (the rows predicted)
        is among the options, for tasks that write parts of the input back (a tagger's words and offsets)."""

    @abstractmethod
    def describe_targets(self, y: np.ndarray) -> dict:
        """A summary of the training targets for the manifest (counts per class / label, or the range)."""

    # -- splits ------------------------------------------------------------------------------------------------
    def strata(self, y: np.ndarray) -> np.ndarray | None:
        """Group keys a split is stratified by (None: a plain random split)."""
        return None

    def split(self, table, test_size: float = 0.2, val_size: float = 0.0, seed: int = 0):
        """Seeded ``(train, test)`` or ``(train, val, test)``, stratified as the task says."""
        from graftkit.data.splits import split_table

        return split_table(table, test_size=test_size, val_size=val_size, seed=seed, strata=self.strata(self.encode(table)))

    def folds(self, table, k: int = 5, seed: int = 0):
        """k folds of ``table`` as ``(train, test)`` tables."""
        from graftkit.data.splits import check_folds

        check_folds(k)
        return [(table.subset(a), table.subset(b)) for a, b in self.fold_indices(self.encode(table), k, seed, table)]

    def fold_indices(self, y: np.ndarray, k: int, seed: int, table=None) -> list[tuple[np.ndarray, np.ndarray]]:
        from graftkit.data.splits import fold_positions

        return fold_positions(len(y), k, seed, strata=self.strata(y), source=getattr(table, "source", "the data"))

    def describe_folds(self) -> str:
        """How ``folds`` splits, for cv records and the report."""
        return "random, unstratified"

    def calibration_folds(self, y: np.ndarray, max_folds: int) -> tuple[int, str | None]:
        """How many folds cross-fitted calibration can use, or ``(0, reason)`` when it cannot."""
        return (min(max_folds, len(y)), None) if len(y) >= 2 else (0, "fewer than 2 training rows")

    # -- heads and the engine ----------------------------------------------------------------------------------
    @abstractmethod
    def fit_head(self, X: np.ndarray, y: np.ndarray, *, head: str = "linear", seed: int = 0, **params):
        """A head on frozen features (``tasks.heads``), hyper-parameters as the strategy gives them."""

    @abstractmethod
    def fit_classical(self, X, y, *, seed: int = 0, **options):
        """The classical baseline's estimator on its own features (``tasks.classical``): ``.raw(X)``, ``.info``."""

    def row_scores(self, y: np.ndarray, outputs: np.ndarray, calibration: dict | None = None) -> np.ndarray | None:
        """Per-row scores whose mean is the primary metric, or None when it does not decompose by row (F1, R²)."""
        return None

    def resampled_primary(self, y: np.ndarray, outputs: np.ndarray, index: np.ndarray,
                          calibration: dict | None = None) -> np.ndarray:
        """The primary metric on each bootstrap resample ``index[d]`` of the rows: a mean of ``row_scores`` where
        the metric is one (accuracy), else recomputed per resample."""
        rows = self.row_scores(y, outputs, calibration)
        if rows is not None:
            return rows[index].mean(axis=1)
        return np.array([self.primary(y[i], outputs[i], calibration) for i in index])

    def empty_outputs(self, n: int) -> np.ndarray:
        """Room for ``n`` rows of raw outputs (cross-fitting fills it fold by fold)."""
        return np.zeros((n, self.output_size), dtype=np.float64)

    def stacked(self, X: np.ndarray) -> np.ndarray:
        """Feature vectors as one matrix (one per row; per word for a ragged task), for statistics such as the
        engine's feature standardisation."""
        return X

    def wrap_head(self, head):
        """The head as this task applies it (a per-word head reads ragged features); the fitted head otherwise."""
        return head

    def classical_featurizer(self):
        """The classical baseline's features for this task (``fit_transform(items)`` / ``transform(items)``,
        ``description``), or None for the modality's own (TF-IDF, pixels, log-mel statistics)."""
        return None

    def evidence_targets(self, y: np.ndarray) -> np.ndarray:
        """The real-valued target columns LogME regresses the features on (``selection``)."""
        return np.asarray(y, dtype=np.float64).reshape(len(y), -1)

    def target_scaling(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, scale)`` the engine's output layer is trained in (outputs = z * scale + mean)."""
        return np.zeros(self.output_size, np.float32), np.ones(self.output_size, np.float32)

    @abstractmethod
    def loss(self, z, labels, target_mean, target_scale):
        """The engine's training loss (a torch scalar) from the output layer's ``z``."""

    def from_engine(self, raw: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The engine's outputs and labels (one row per example; per token for a word task, padded with -100) as
        the task's ``raw`` and ``y``."""
        return raw, labels

    @abstractmethod
    def score_engine(self, raw: np.ndarray, y: np.ndarray) -> dict:
        """Per-epoch validation figures (``engine_metrics``) from the engine's outputs in target units."""

    def check_engine_metric(self, metric: str | None) -> str:
        """The metric early stopping and the best checkpoint read: the primary one by default, or ``loss``."""
        metric = metric or self.primary_metric
        if metric != "loss" and metric not in self.engine_metrics:
            raise ConfigError(f"--metric {metric!r} is not a {self.kind} metric; use one of "
                              f"{', '.join((*self.engine_metrics, 'loss'))}")
        return metric

    def metric_improves(self, metric: str) -> bool:
        """Whether a larger value of ``metric`` is better."""
        return metric not in self.minimized

    # -- calibration and metrics -------------------------------------------------------------------------------
    @abstractmethod
    def fit_calibration(self, raw: np.ndarray, y: np.ndarray, *, scale: bool = True) -> dict:
        """Fitted on held-out ``raw`` outputs: the record ``outputs`` applies (saved in the manifest)."""

    @abstractmethod
    def outputs(self, raw: np.ndarray, calibration: dict | None) -> np.ndarray:
        """``raw`` with the calibration applied (``None``: as the head gives them)."""

    def with_thresholds(self, calibration: dict | None, thresholds, source: str) -> dict:
        """``calibration`` with the user's decision thresholds (``--thresholds FILE``), where the task has any."""
        raise ConfigError(f"{source}: decision thresholds apply to multi-label models; this is a {self.kind} model "
                          "(drop --thresholds)")

    # -- active learning (``graftkit suggest``) -------------------------------------------------------------------
    # how ``uncertainty`` can score a row, the default first; empty: the task's outputs rank no row above another
    uncertainty_measures: ClassVar[tuple[str, ...]] = ()

    def check_uncertainty(self, measure: str | None = None) -> str:
        """The uncertainty measure to use (``measure`` or the task's default); a ConfigError naming the flag when the
        task has none or not this one."""
        if not self.uncertainty_measures:
            raise ConfigError(f"a {self.kind} model gives no per-row uncertainty to rank rows by; suggest by "
                              "diversity instead (how='diversity', CLI: --how diversity)")
        if measure is None:
            return self.uncertainty_measures[0]
        if measure not in self.uncertainty_measures:
            raise ConfigError(f"uncertainty measure {measure!r} does not apply to a {self.kind} model; use one of "
                              f"{', '.join(self.uncertainty_measures)} (--measure)")
        return measure

    def uncertainty(self, outputs: np.ndarray, calibration: dict | None = None, measure: str | None = None) -> np.ndarray:
        """How unsure the model is of each row, in [0, 1] (1: least sure), from calibrated ``outputs``; the rows an
        annotator should label first are the largest (uncertainty sampling, Lewis & Gale 1994)."""
        self.check_uncertainty(measure)
        raise NotImplementedError(f"{type(self).__name__} lists uncertainty measures but does not compute them")

    def probabilities(self, outputs: np.ndarray) -> np.ndarray:
        if not self.has_probabilities:
            raise ConfigError(f"a {self.kind} model has no probabilities; use predict()")
        return outputs

    @abstractmethod
    def metrics(self, y: np.ndarray, raw: np.ndarray, calibration: dict | None, **options) -> dict:
        """The held-out evaluation of ``raw`` outputs against ``y``: the headline metrics, the task's own
        tables, and how well calibrated the outputs are."""

    @abstractmethod
    def summary(self, y: np.ndarray, outputs: np.ndarray, calibration: dict | None = None) -> dict:
        """``n`` and the ``headline`` metrics of calibrated outputs (train / validation summaries, cv, auto)."""

    def primary(self, y: np.ndarray, outputs: np.ndarray, calibration: dict | None = None) -> float:
        return float(self.summary(y, outputs, calibration)[self.primary_metric])

    @abstractmethod
    def skipped_calibration(self, reason: str) -> dict:
        """The calibration record when no held-out outputs could be had (``status`` says why)."""

    def describe(self) -> str:
        """One phrase for the model card: the kind and its outputs."""
        shown = ", ".join(f"`{label}`" for label in self.labels[:20]) + (" ..." if len(self.labels) > 20 else "")
        return f"{self.kind} over {len(self.labels)} labels ({shown})"

    @abstractmethod
    def describe_calibration(self, calibration: dict | None) -> str:
        """One paragraph for the model card: what the calibration does to the outputs, and where it was fitted."""

    def format_metrics(self, metrics: dict, top: int = 20) -> str:
        """Plain-text report of ``metrics()`` for the CLI."""
        return "   ".join(f"{k} {metrics[k]:.4f}" for k in self.headline if k in metrics) + f"   (n={metrics['n']})"
