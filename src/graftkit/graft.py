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
                 **strategy_params):
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
        self.strategy_params = strategy_params

    # -- backbone and features -------------------------------------------------------------------
    def _load_backbone(self):
        if getattr(self, "backbone_", None) is None:
            if not isinstance(self.batch_size, int) or self.batch_size < 1:
                raise ConfigError(f"batch_size must be an integer >= 1; got {self.batch_size!r} (--batch-size)")
            self.backbone_ = load_backbone(self.backbone, revision=self.revision,
                                           trust_remote_code=self.trust_remote_code,
                                           **self.backbone_options).to(self.device)
        return self.backbone_

    def features(self, table: Table) -> np.ndarray:
        """Pooled backbone features for every row (from the cache where the content was seen before)."""
        backbone = self._load_backbone()
        if table.modality != backbone.modality:
            raise DataError(f"{table.source}: the input column {table.input_column!r} holds {table.modality}, but "
                            f"backbone {self.backbone!r} reads {backbone.modality}; pick a {backbone.modality} "
                            f"column or a {table.modality} backbone")
        items = table.items()
        started = time.perf_counter()

        def compute(positions):
            return extract_features(backbone, [items[p] for p in positions], batch_size=self.batch_size,
                                    progress=self.progress,
                                    where=lambda i: table.where(positions[i], table.input_column))

        if self.use_cache:
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
    def fit(self, data) -> Graft:
        """Fit on a Table, a file path, a DataFrame or a ``datasets.Dataset``."""
        table = self._as_table(data, require_label=True)
        strategy = get_strategy(self.strategy, **self.strategy_params)
        seed_everything(self.seed)
        started = time.perf_counter()
        task = infer_task(table)
        y = task.encode(table.labels())
        X = self.features(table)
        extraction = dict(self.last_extraction_)
        head_started = time.perf_counter()
        self.head_ = strategy.fit_head(X, y, seed=self.seed)
        self.task_, self.strategy_ = task, strategy
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

    def _check_fitted(self) -> None:
        if getattr(self, "head_", None) is None:
            raise ConfigError("this Graft is not fitted yet; call fit(data) first or graftkit.load(DIR)")

    def predict_proba(self, data) -> np.ndarray:
        self._check_fitted()
        return self.head_.predict_proba(self.features(self._as_table(data, require_label=False)))

    def predict(self, data) -> list[str]:
        return self.task_.decode(self.predict_proba(data).argmax(axis=1))

    def evaluate(self, data) -> dict:
        """Accuracy, macro-F1, per-class precision / recall / F1 and the confusion matrix."""
        self._check_fitted()
        table = self._as_table(data, require_label=True)
        y = self.task_.encode(table.labels(), where=lambda i: table.where(i, table.label_column))
        probabilities = self.head_.predict_proba(self.features(table))
        return classification_metrics(y, probabilities.argmax(axis=1), self.task_.labels)

    def save(self, path, overwrite: bool = False):
        """Write the fitted model as an artifact directory (atomically). Returns the path."""
        from graftkit.artifacts import save_model

        self._check_fitted()
        return save_model(self, path, overwrite=overwrite)
