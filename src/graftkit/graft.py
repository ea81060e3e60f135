"""``Graft``: the estimator users fit (scikit-learn semantics: ``__init__`` stores, ``fit`` returns
self, learned state ends in ``_``)."""

from __future__ import annotations

import logging
import random
import time

import numpy as np
import pandas as pd
import torch

from graftkit.backbones import load_backbone
from graftkit.data import Table, load_data
from graftkit.errors import ConfigError, DataError
from graftkit.evaluation.metrics import classification_metrics
from graftkit.features.cache import FeatureCache
from graftkit.features.content import content_key
from graftkit.features.extract import extract_features
from graftkit.strategies import get_strategy
from graftkit.tasks import infer_task

logger = logging.getLogger(__name__)

DEFAULT_BACKBONE = "all-MiniLM-L6-v2"


def check_device(device: str) -> torch.device:
    """A torch device that exists on this machine, or a ConfigError that says which ones do."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device {device!r} is not a torch device; use cpu, cuda or cuda:N (--device)") from None
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"device {device!r}: CUDA is not available on this machine; use --device cpu")
        if parsed.index is not None and parsed.index >= count:
            raise ConfigError(f"device {device!r}: this machine has {count} CUDA device(s) (cuda:0 to "
                              f"cuda:{count - 1}); pick one of them (--device)")
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {device!r}: MPS is not available on this machine; use --device cpu")
    return parsed


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Graft:
    """Adapt a pretrained backbone to a labelled data set.

    >>> model = Graft(backbone="all-MiniLM-L6-v2", strategy="linear-probe").fit(train)
    >>> model.evaluate(test)["accuracy"]
    """

    def __init__(self, backbone: str = DEFAULT_BACKBONE, strategy: str = "linear-probe", *, batch_size: int = 32,
                 seed: int = 0, cache_dir=None, use_cache: bool = True, device: str = "cpu", progress: bool = True,
                 revision: str | None = None, trust_remote_code: bool = False, backbone_options: dict | None = None,
                 checkpoint_dir=None, resume: bool = False, calibrate: bool = True, **strategy_params):
        self.backbone = backbone
        self.strategy = strategy
        self.batch_size = batch_size
        self.seed = seed
        self.cache_dir = cache_dir
        self.use_cache = use_cache
        self.device = device
        self.progress = progress
        self.revision = revision
        self.trust_remote_code = trust_remote_code
        self.backbone_options = backbone_options or {}
        self.checkpoint_dir = checkpoint_dir  # trainable strategies: keep checkpoints here (default: a temp dir)
        self.resume = resume                  # continue the run in checkpoint_dir from its last complete checkpoint
        self.calibrate = calibrate            # fit a temperature on held-out logits and apply it (Guo et al. 2017)
        self.strategy_params = strategy_params

    # -- backbone and features -------------------------------------------------------------------
    def _load_backbone(self):
        if getattr(self, "backbone_", None) is None:
            if not isinstance(self.batch_size, int) or self.batch_size < 1:
                raise ConfigError(f"batch_size must be an integer >= 1; got {self.batch_size!r} (--batch-size)")
            check_device(self.device)
            self.backbone_ = load_backbone(self.backbone, revision=self.revision,
                                           trust_remote_code=self.trust_remote_code,
                                           **self.backbone_options).to(self.device)
        return self.backbone_

    def _check_modality(self, table: Table):
        """The loaded backbone, after checking that it reads what the table's input column holds."""
        backbone = self._load_backbone()
        if table.modality != backbone.modality:
            raise DataError(f"{table.source}: the input column {table.input_column!r} holds {table.modality}, but "
                            f"backbone {self.backbone!r} reads {backbone.modality}; pick a {backbone.modality} "
                            f"column or a backbone that reads {table.modality} (--backbone)")
        return backbone

    def features(self, table: Table) -> np.ndarray:
        """Pooled backbone features for every row (from the cache where the content was seen before)."""
        backbone = self._check_modality(table)
        items = table.items()
        started = time.perf_counter()

        def compute(positions):
            return extract_features(backbone, [items[p] for p in positions], batch_size=self.batch_size,
                                    progress=self.progress,
                                    where=lambda i: table.where(positions[i], table.input_column))

        if self.use_cache and not getattr(self, "finetuned_", False):  # the cache holds pretrained features only
            keys = [content_key(item, table.modality, lambda p=p: table.where(p, table.input_column))
                    for p, item in enumerate(items)]
            features, embedded = FeatureCache(self.cache_dir).lookup(backbone.fingerprint(), keys, compute)
        else:
            features, embedded = compute(list(range(len(items)))), len(items)
        self.last_extraction_ = {"rows": len(items), "embedded": embedded,
                                 "seconds": round(time.perf_counter() - started, 3)}
        return features

    def _as_table(self, data, require_label: bool) -> Table:
        if isinstance(data, Table):
            return data
        if isinstance(data, (list, tuple)):
            modality = self._load_backbone().modality
            frame = pd.DataFrame({"input": list(data)}, dtype=object)
            return load_data(frame, require_label=False, **{modality: "input"})
        return load_data(data, require_label=require_label)

    # -- estimator API -----------------------------------------------------------------------------
    def fit(self, data, validation=None, callbacks=None) -> Graft:
        """Fit on a Table, a file path, a DataFrame or a ``datasets.Dataset``.

        Trainable strategies (finetune, full, gradual, lp-ft) evaluate each epoch on ``validation`` (default:
        a stratified ``val_size`` share of ``data``); ``callbacks`` are extra ``transformers.TrainerCallback``s.
        With ``calibrate`` (the default) a temperature is fitted on held-out logits (``validation`` when given;
        else the fine-tuning validation split, or cross-fitted folds of ``data`` for a head on frozen features;
        see ``evaluation.calibration.fit_model_temperature``) and ``predict_proba`` applies it.
        """
        table = self._as_table(data, require_label=True)
        strategy = get_strategy(self.strategy, **self.strategy_params)
        if getattr(self, "finetuned_", False):  # a refit starts again from the pretrained weights
            self.backbone_, self.finetuned_ = None, False
        self.training_ = self.adaptation_ = None
        seed_everything(self.seed)
        if getattr(strategy, "trainable", False):
            from graftkit.training.fit import fit_trainable

            fit_trainable(self, table, strategy, validation=validation, callbacks=callbacks or [])
            self._fit_calibration(strategy, table=table, validation=validation)
            return self
        started = time.perf_counter()
        task = infer_task(table)
        y = task.encode(table.labels())
        X = self.features(table)
        extraction = dict(self.last_extraction_)
        head_started = time.perf_counter()
        self.head_ = strategy.fit_head(X, y, seed=self.seed)
        self.task_, self.strategy_ = task, strategy
        self._fit_calibration(strategy, X=X, y=y, validation=validation)
        self.input_ = {"modality": table.modality, "column": table.input_column, "label_column": table.label_column}
        self.data_ = {"source": table.source, "rows": len(table), "fingerprint": table.fingerprint(),
                      "class_counts": {label: int((y == i).sum()) for i, label in enumerate(task.labels)}}
        self.timings_ = {"extraction_s": extraction["seconds"], "embedded_rows": extraction["embedded"],
                         "head_s": round(time.perf_counter() - head_started, 3),
                         "fit_s": round(time.perf_counter() - started, 3)}
        train_pred = self.head_.predict_proba(X).argmax(axis=1)
        self.metrics_ = {"train": {k: v for k, v in classification_metrics(y, train_pred, task.labels).items()
                                   if k in ("n", "accuracy", "macro_f1")}}
        logger.info("fitted %s on %d rows in %.1fs (features %.1fs, head %.1fs)", strategy.name, len(table),
                    self.timings_["fit_s"], extraction["seconds"], self.timings_["head_s"])
        return self

    def parameter_counts(self) -> dict:
        """Trained and total parameters of the fitted model (backbone + head), and the trained share."""
        self._check_fitted()
        if getattr(self, "training_", None):
            return dict(self.training_["parameters"])
        head = int(sum(np.asarray(v).size for k, v in self.head_.arrays.items() if k not in ("mean", "scale")))
        total = head + sum(p.numel() for p in self._load_backbone().model.parameters())
        return {"trainable": head, "total": total, "share": round(head / total, 6)}

    def _check_fitted(self) -> None:
        if getattr(self, "head_", None) is None:
            raise ConfigError("this Graft is not fitted yet; call fit(data) first or graftkit.load(DIR)")

    def _fit_calibration(self, strategy, **held_out) -> None:
        self.calibration_ = None
        if self.calibrate:
            from graftkit.evaluation.calibration import fit_model_temperature

            self.calibration_ = fit_model_temperature(self, strategy, **held_out)
            logger.info("calibration: T=%.4g (%s; %s)", self.calibration_["temperature"],
                        self.calibration_["status"], self.calibration_["fitted_on"])

    @property
    def temperature_(self) -> float:
        """The fitted temperature that ``predict_proba`` divides the logits by (1.0 when not calibrated)."""
        calibration = getattr(self, "calibration_", None)
        return float(calibration["temperature"]) if self.calibrate and calibration else 1.0

    def _probabilities(self, features: np.ndarray, calibrated: bool = True) -> np.ndarray:
        temperature = self.temperature_ if calibrated else 1.0
        if temperature == 1.0:
            return self.head_.predict_proba(features)
        from graftkit.evaluation.calibration import scaled_probabilities

        return scaled_probabilities(self.head_.logits(features), temperature)

    def predict_proba(self, data, calibrated: bool = True) -> np.ndarray:
        """Class probabilities, temperature-scaled when the model was calibrated (``calibrate=True``);
        ``calibrated=False`` gives the head's own probabilities (the arg-max is the same either way)."""
        self._check_fitted()
        return self._probabilities(self.features(self._as_table(data, require_label=False)), calibrated)

    def predict(self, data) -> list[str]:
        return self.task_.decode(self.predict_proba(data).argmax(axis=1))

    def evaluate(self, data, *, target_recall: float = 0.9, target_precision: float = 0.9,
                 curves: bool = True) -> dict:
        """Accuracy, macro-F1, per-class precision / recall / F1 and the confusion matrix; calibration (ECE,
        NLL, Brier before and after temperature scaling, reliability diagrams); threshold metrics (precision at
        ``target_recall``, recall at ``target_precision``, PR / ROC curves and areas, one-vs-rest per class).
        The true label ids and the probabilities stay in ``last_predictions_`` (for baselines, reports)."""
        from graftkit.evaluation.metrics import probability_metrics

        self._check_fitted()
        table = self._as_table(data, require_label=True)
        y = self.task_.encode(table.labels(), where=lambda i: table.where(i, table.label_column))
        features = self.features(table)
        raw = self.head_.predict_proba(features)
        probabilities = self._probabilities(features)
        self.last_predictions_ = {"y_true": y, "probabilities": probabilities}
        calibration = getattr(self, "calibration_", None) if self.calibrate else None
        return probability_metrics(y, raw, probabilities, self.task_.labels, temperature=self.temperature_,
                                   calibration_status=(calibration or {}).get("status", "off"),
                                   target_recall=target_recall, target_precision=target_precision, curves=curves)

    def save(self, path, overwrite: bool = False):
        """Write the fitted model as an artifact directory (atomically). Returns the path."""
        from graftkit.artifacts import save_model

        self._check_fitted()
        return save_model(self, path, overwrite=overwrite)
