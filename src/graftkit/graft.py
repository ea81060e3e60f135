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
from graftkit.features.cache import FeatureCache
from graftkit.data.content import content_key
from graftkit.features.extract import extract_features
from graftkit.features.runtime import check_runtime, frozen_runtime
from graftkit.strategies import get_strategy
from graftkit.tasks import infer_task, task_class

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

    ``task`` is the kind of target (``classification``, ``multilabel-classification``, ``regression``; default:
    inferred from the label column, with the reason logged); ``task_options`` are that task's settings
    (multi-label: ``label_sep``, ``allow_empty``; regression: ``interval``, ``loss_function``).
    ``extract_runtime`` embeds the pretrained backbone's frozen features: ``auto`` (onnxruntime for a text encoder
    on the CPU when it is installed and matches PyTorch on the first batch, else PyTorch), ``torch``, ``onnx`` or
    ``onnx-int8`` (opt-in, features within a stated cosine of fp32's; ``features/runtime.py``); fine-tuning, and
    features of a fine-tuned backbone, always run in PyTorch.
    """

    def __init__(self, backbone: str = DEFAULT_BACKBONE, strategy: str = "linear-probe", *, batch_size: int = 32,
                 seed: int = 0, cache_dir=None, use_cache: bool = True, device: str = "cpu", progress: bool = True,
                 revision: str | None = None, trust_remote_code: bool = False, backbone_options: dict | None = None,
                 checkpoint_dir=None, resume: bool = False, calibrate: bool = True, task: str | None = None,
                 task_options: dict | None = None, extract_runtime: str = "auto", **strategy_params):
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
        self.calibrate = calibrate            # fit the task's calibration on held-out outputs and apply it
        self.task = task
        self.task_options = task_options or {}
        self.extract_runtime = extract_runtime  # auto / torch / onnx / onnx-int8: what embeds frozen features
        self.strategy_params = strategy_params

    # -- parameters (scikit-learn's get_params / set_params / clone) -------------------------------------------
    PARAMS = ("backbone", "strategy", "batch_size", "seed", "cache_dir", "use_cache", "device", "progress",
              "revision", "trust_remote_code", "backbone_options", "checkpoint_dir", "resume", "calibrate", "task",
              "task_options", "extract_runtime")

    def get_params(self) -> dict:
        """The constructor's settings (strategy parameters included), as ``Graft(**get_params())`` takes them."""
        return {**{name: getattr(self, name) for name in self.PARAMS}, **self.strategy_params}

    def set_params(self, **params) -> Graft:
        for name, value in params.items():
            if name in self.PARAMS:
                setattr(self, name, value)
            else:
                self.strategy_params[name] = value
        return self

    def clone(self, **overrides) -> Graft:
        """A new, unfitted ``Graft`` with these settings (``overrides`` replace some; a new strategy drops the old
        strategy's parameters unless given again)."""
        params = self.get_params()
        if "strategy" in overrides and overrides["strategy"] != self.strategy:
            params = {k: v for k, v in params.items() if k in self.PARAMS}
        return Graft(**{**params, **overrides})

    # -- backbone and features -------------------------------------------------------------------------------
    def loaded_backbone(self):
        """The backbone, loaded (and moved to ``device``) on first use."""
        if getattr(self, "backbone_", None) is None:
            if not isinstance(self.batch_size, int) or self.batch_size < 1:
                raise ConfigError(f"batch_size must be an integer >= 1; got {self.batch_size!r} (--batch-size)")
            check_runtime(self.extract_runtime)
            check_device(self.device)
            loader = load_backbone
            if self._generative():  # an encoder-decoder with its own generate, not a pooled encoder
                from graftkit.backbones.seq2seq import load_seq2seq as loader
            self.backbone_ = loader(self.backbone, revision=self.revision, trust_remote_code=self.trust_remote_code,
                                    **self.backbone_options).to(self.device)
        return self.backbone_

    def _generative(self) -> bool:
        """Whether the task (fitted, or asked for by ``task``) writes its outputs with the model's ``generate``."""
        task = getattr(self, "task_", None)
        if task is None and isinstance(self.task, str):
            task = task_class(self.task)
        return bool(getattr(task, "generative", False))

    def check_modality(self, table: Table):
        """The loaded backbone, after checking that it reads what the table's input column holds."""
        backbone = self.backbone_ = self.loaded_backbone().for_modality(table.modality)  # two towers: the one for it
        if table.modality != backbone.modality:
            raise DataError(f"{table.source}: the input column {table.input_column!r} holds {table.modality}, but "
                            f"backbone {self.backbone!r} reads {backbone.modality}; pick a {backbone.modality} "
                            f"column or a backbone that reads {table.modality} (--backbone)")
        return backbone

    def features(self, table: Table, task=None, pooled: bool = False) -> np.ndarray:
        """Backbone features of every row (from the cache where the content was seen before), as ``task`` (default:
        the fitted one) reads them: one pooled vector per row, or one per word (ragged) for a word task;
        ``pooled`` always gives one vector per row (near-duplicate search, CKA)."""
        task = task if task is not None else getattr(self, "task_", None)
        backbone = self.check_modality(table)
        started = time.perf_counter()
        by_unit = {"row": self._row_features, "word": self._word_features}
        unit = "row" if pooled else getattr(task, "unit", "row")
        features, embedded, rows = by_unit[unit](backbone, table, task)
        self.last_extraction_ = {"rows": rows, "embedded": embedded, "seconds": round(time.perf_counter() - started, 3)}
        return features

    def feature_runtime(self, backbone):
        """What embeds ``backbone``'s frozen features (``extract_runtime``), planned once per loaded backbone; None
        for a fine-tuned backbone, whose features only PyTorch computes."""
        if getattr(self, "finetuned_", False):
            self.runtime_ = None  # the pretrained graph's session has nothing left to embed
            return None
        runtime = getattr(self, "runtime_", None)
        if runtime is None or runtime.backbone is not backbone:
            self.runtime_ = runtime = frozen_runtime(backbone, self.extract_runtime)
        return runtime

    def extraction_runtime(self) -> str:
        """The runtime of the features the head reads (the manifest's ``backbone.runtime``): torch, onnx or
        onnx-int8."""
        runtime = self.feature_runtime(self.loaded_backbone())
        return "torch" if runtime is None else runtime.name

    def _cache_usable(self) -> bool:
        return self.use_cache and not getattr(self, "finetuned_", False)  # the cache holds pretrained features only

    def _row_features(self, backbone, table: Table, task):
        items = [" ".join(i) if isinstance(i, list) else i for i in table.items()]  # a sentence given as words
        runtime = self.feature_runtime(backbone)

        def compute(positions):
            return extract_features(backbone, [items[p] for p in positions], batch_size=self.batch_size,
                                    progress=self.progress, runtime=runtime,
                                    where=lambda i: table.where(positions[i], table.input_column))

        if self._cache_usable():
            keys = [content_key(item, table.modality, lambda p=p: table.where(p, table.input_column))
                    for p, item in enumerate(items)]
            # asked again after computing: a runtime that fell back to PyTorch files its rows under torch's key
            features, embedded = FeatureCache(self.cache_dir).lookup(runtime.feature_key, keys, compute)
        else:
            features, embedded = compute(list(range(len(items)))), len(items)
        return features, embedded, len(items)

    def _word_features(self, backbone, table: Table, task):
        from graftkit.features.words import cached_word_features, extract_word_features

        sentences = task.words(table)
        if self._cache_usable():
            features, embedded = cached_word_features(backbone, sentences, FeatureCache(self.cache_dir),
                                                      batch_size=self.batch_size, progress=self.progress)
        else:
            features = extract_word_features(backbone, sentences, batch_size=self.batch_size, progress=self.progress)
            embedded = int(sum(len(s) for s in sentences))
        return features, embedded, len(sentences)

    def head_features(self, table: Table) -> np.ndarray:
        """What the fitted head reads for ``table``: the backbone's features, then the side features when it was
        fitted with some (``fit(side=...)``)."""
        features = self.features(table)
        width = (getattr(self, "training_", None) or {}).get("side_features", 0)
        if not width:
            return features
        side = getattr(self, "side_", None)
        if side is None:
            raise ConfigError(f"this model's output layer also reads {width} side features per row (the tabular "
                              "columns of a joint fusion model), which its directory does not hold; load the fusion "
                              "model directory around it (graftkit.load(FUSION_DIR), graftkit predict FUSION_DIR)")
        return np.concatenate([features, np.asarray(side.transform(table), dtype=features.dtype)], axis=1)

    def as_table(self, data, require_label: bool) -> Table:
        """``data`` as a Table: a Table as it is, a list of inputs, a file path, a DataFrame or a Dataset (a fitted
        model reads the columns it was fitted on)."""
        if isinstance(data, Table):
            return data
        if isinstance(data, (list, tuple)):
            modality = self.loaded_backbone().modality
            frame = pd.DataFrame({"input": list(data)}, dtype=object)
            return load_data(frame, require_label=False, **{modality: "input"})
        known = None
        if getattr(self, "input_", None):
            known = {self.input_["modality"]: self.input_["column"], "label": self.input_.get("label_column")}
        return load_data(data, require_label=require_label, known_columns=known)

    def infer_task(self, table: Table):
        """The task of ``table`` as this Graft's settings say (``task``, ``task_options``), its reason logged."""
        if self.task is not None:
            task_class(self.task)  # an unknown kind fails naming --task before anything else
        task = infer_task(table, self.task, **self.task_options)
        logger.info("%s", task.reason or f"task: {task.kind}")
        return task

    # -- estimator API -----------------------------------------------------------------------------------------
    def fit(self, data=None, validation=None, callbacks=None, side=None) -> Graft:
        """Fit on a Table, a file path, a DataFrame or a ``datasets.Dataset``.

        Trainable strategies (finetune, full, gradual, lp-ft, lora, ...) evaluate each epoch on ``validation``
        (default: a ``val_size`` share of ``data``, split as the task splits); ``callbacks`` are extra
        ``transformers.TrainerCallback``s. With ``calibrate`` (the default) the task's calibration (a temperature;
        per-label temperatures and thresholds; conformal residuals) is fitted on held-out outputs: ``validation``
        when given, else the fine-tuning validation split, or cross-fitted folds of ``data`` for a head on frozen
        features. Multi-label thresholds and regression intervals are fitted even with ``calibrate=False``.

        ``side`` (trainable strategies): a transformer of the table's other columns (``fit_transform(table)`` on the
        training split, ``transform(table)`` after; one float vector per row, e.g. ``fusion.featurize.Featurizer``
        on tabular columns) whose output the engine concatenates to the pooled features before the output layer;
        the fitted model keeps it (``side_``) and applies it wherever it predicts.
        """
        strategy = get_strategy(self.strategy, **self.strategy_params)
        if side is not None and not getattr(strategy, "trainable", False):
            raise ConfigError(f"side features go into the engine's output layer; strategy {strategy.name!r} trains "
                              "none (use finetune, lora or lp-ft)")
        if data is None:  # zero-shot: no labelled rows at all, the classes named by the strategy
            return self._fit_without_rows(strategy)
        table = self.as_table(data, require_label=True)
        task = self.infer_task(table)
        task.check_options(strategy)
        if getattr(self, "finetuned_", False):  # a refit starts again from the pretrained weights
            self.backbone_, self.finetuned_, self.runtime_ = None, False, None
        self.training_ = self.adaptation_ = None
        self.side_ = side
        seed_everything(self.seed)
        if task.generative:  # the model writes the output: fit, zero-shot first, in training/seq2seq.py
            from graftkit.training.seq2seq import fit_generative

            fit_generative(self, table, task, strategy, validation=validation, callbacks=callbacks or [])
            return self
        started = time.perf_counter()
        if getattr(strategy, "trainable", False):
            from graftkit.training.fit import fit_trainable

            train, val, how, running = fit_trainable(self, table, task, strategy, validation=validation,
                                                     callbacks=callbacks or [], side=side)
            X = y = None
        else:
            train, how, running = table, None, None
            val = None if validation is None else self.as_table(validation, require_label=True)
            strategy.prepare(self.check_modality(table), task)
            y = task.encode(table)
            X = self.features(table, task)
            extraction = dict(self.last_extraction_)
            head_started = time.perf_counter()
            self.head_ = task.wrap_head(strategy.fit_head(task, X, y, seed=self.seed))
            self.timings_ = {"extraction_s": extraction["seconds"], "embedded_rows": extraction["embedded"],
                             "head_s": round(time.perf_counter() - head_started, 3),
                             "fit_s": round(time.perf_counter() - started, 3)}
        self.task_, self.strategy_ = task, strategy
        self.input_ = {"modality": table.modality, "column": table.input_column, "label_column": table.label_column}
        y_table = task.encode(table) if y is None else y
        self.data_ = {"source": table.source, "rows": len(table), "fingerprint": table.fingerprint(),
                      **task.describe_targets(y_table)}
        held_out = self._fit_calibration(strategy, X=X, y=y, val=val, how=how)
        self.metrics_ = {"train": self._train_metrics(task, train, X, y, running)}
        if val is not None and getattr(strategy, "trainable", False):
            raw_val, y_val = held_out or (self.head_.logits(self.head_features(val)), task.encode(val))
            self.metrics_["validation"] = task.summary(y_val, task.outputs(raw_val, self.calibration_),
                                                       self.calibration_)
        logger.info("fitted %s (%s) on %d rows in %.1fs", strategy.name, task.kind, len(table),
                    time.perf_counter() - started)
        return self

    def _fit_without_rows(self, strategy) -> Graft:
        """``fit()`` with no data: a strategy that needs no labelled rows (zero-shot) names the classes; the
        model can predict, and evaluate on labelled data, but nothing was calibrated."""
        if not getattr(strategy, "fits_without_rows", False):
            raise ConfigError(f"strategy {strategy.name!r} learns from labelled rows; pass data to fit, or use "
                              "--strategy zero-shot --label-descriptions FILE to fit without any")
        started = time.perf_counter()
        classes = strategy.classes_without_rows()
        task = task_class(self.task or "classification").from_dict({"labels": list(dict.fromkeys(classes))})
        backbone = self.loaded_backbone()
        strategy.prepare(backbone, task)
        self.training_ = self.adaptation_ = None
        self.head_ = task.wrap_head(strategy.fit_head(task, None, None, seed=self.seed))
        self.task_, self.strategy_ = task, strategy
        self.input_ = {"modality": backbone.modality, "column": backbone.modality, "label_column": None}
        self.data_ = {"source": "class descriptions (no labelled rows)", "rows": 0, "fingerprint": "none"}
        self.calibration_ = (task.skipped_calibration("no labelled rows (fitted without data)")
                             if self.calibrate else None)
        self.metrics_ = {}
        self.timings_ = {"fit_s": round(time.perf_counter() - started, 3)}
        logger.info("fitted %s (%s) without labelled rows: %d classes", strategy.name, task.kind, len(task.labels))
        return self

    def _train_metrics(self, task, train, X, y, running) -> dict:
        """The training split's metrics: on the frozen features already in hand (a head on frozen features), or
        from the fine-tuning loop's own outputs on the training batches of the epoch kept (``RunningOutputs``),
        so no extra pass of the tuned backbone runs over the training split; only where the loop has none (that
        epoch ran before a resume) the split is embedded again, with a progress bar. ``training_["train_metrics"]``
        says which."""
        if X is not None:
            raw, y_train = self.head_.logits(X), y
        elif running is not None:
            raw, y_train, epoch = running
            raw, y_train = task.from_engine(raw, y_train)
            self.training_["train_metrics"] = (
                f"running: the training loop's outputs on the {len(y_train)} training rows of epoch {epoch} as it "
                "trained on them (dropout / augmentation on, weights moving during the epoch), not a separate pass")
        else:
            logger.info("training metrics: embedding the %d training rows once more with the tuned backbone (the "
                        "epoch kept ran before the resume, so the loop's own outputs are not at hand)", len(train))
            raw, y_train = self.head_.logits(self.head_features(train)), task.encode(train)
            self.training_["train_metrics"] = "a pass of the tuned model over the training split after training"
        return task.summary(y_train, task.outputs(raw, self.calibration_), self.calibration_)

    def parameter_counts(self) -> dict:
        """Trained and total parameters of the fitted model (backbone + head), and the trained share."""
        self.check_fitted()
        if getattr(self, "training_", None):
            return dict(self.training_["parameters"])
        head = int(sum(np.asarray(v).size for k, v in self.head_.arrays.items()
                       if k not in ("mean", "scale", "target_mean", "target_scale", "queries", "logit_scale")))
        total = head + sum(p.numel() for p in self.loaded_backbone().model.parameters())
        return {"trainable": head, "total": total, "share": round(head / total, 6)}

    def check_fitted(self) -> None:
        if getattr(self, "head_", None) is None:
            raise ConfigError("this Graft is not fitted yet; call fit(data) first or graftkit.load(DIR)")

    # -- calibration -----------------------------------------------------------------------------------------
    def _fit_calibration(self, strategy, *, X, y, val, how):
        """Fit ``calibration_`` on held-out outputs and say which (``fitted_on``); returns ``(raw, y)`` of the
        held-out rows when they were a validation table (reused for the validation summary)."""
        task = self.task_
        scale = bool(self.calibrate)
        self.calibration_ = None
        if not scale and not task.calibrated_without_scaling:
            return None
        if val is not None:
            y_val = task.encode(val)
            raw = self.head_.logits(self.head_features(val))
            if how is None or how == "given":
                fitted_on = f"the given validation data ({len(val)} rows)"
            else:
                fitted_on = (f"the fine-tuning validation split ({len(val)} rows, {strategy.val_size:g} share, "
                             f"seed {self.seed})")
            self.calibration_ = {**task.fit_calibration(raw, y_val, scale=scale), "fitted_on": fitted_on}
            held_out = (raw, y_val)
        elif getattr(strategy, "trainable", False):
            self.calibration_ = task.skipped_calibration("no validation data (val_size is 0 and none was given)")
            held_out = None
        else:
            folds, reason = task.calibration_folds(y, max_folds=5)
            if not folds:
                self.calibration_ = task.skipped_calibration(reason)
                return None
            raw = task.empty_outputs(len(y))
            fixed = self.head_.fixed_params()
            for train_rows, held in task.fold_indices(y, folds, self.seed):
                head = strategy.fit_head(task, X[train_rows], y[train_rows], seed=self.seed, fixed=fixed)
                raw[held] = head.logits(X[held])
            self.calibration_ = {**task.fit_calibration(raw, y, scale=scale),
                                 "fitted_on": f"{folds}-fold cross-fitted out-of-fold logits of the {len(y)} training rows"}
            held_out = None
        logger.info("calibration: %s (%s)", self.calibration_.get("status"), self.calibration_.get("fitted_on"))
        return held_out

    @property
    def temperature_(self) -> float:
        """The fitted temperature of a classifier's probabilities (1.0 when not calibrated)."""
        calibration = getattr(self, "calibration_", None)
        return float(calibration.get("temperature", 1.0)) if self.calibrate and calibration else 1.0

    # -- prediction ------------------------------------------------------------------------------------------
    def active_calibration(self, calibrated: bool = True) -> dict | None:
        """The calibration record ``outputs`` applies: without the temperatures when ``calibrate`` is off (the
        multi-label thresholds and regression residuals stay: they decide, they do not rescale)."""
        calibration = getattr(self, "calibration_", None)
        if not calibrated or not calibration:
            return None
        if self.calibrate:
            return calibration
        return {k: v for k, v in calibration.items() if k not in ("temperature", "temperatures")}

    def raw_outputs(self, table: Table) -> np.ndarray:
        """The head's raw outputs on ``table`` (logits, values), or the transcripts of a generative task."""
        if self.task_.generative:
            from graftkit.training.seq2seq import transcribe

            return transcribe(self, table)
        return self.head_.logits(self.head_features(table))

    def outputs(self, data, calibrated: bool = True) -> np.ndarray:
        """The task's outputs for ``data``: class probabilities, per-label probabilities, predicted values, or
        transcripts."""
        self.check_fitted()
        raw = self.raw_outputs(self.as_table(data, require_label=False))
        return self.task_.outputs(raw, self.active_calibration(calibrated))

    def predict_proba(self, data, calibrated: bool = True) -> np.ndarray:
        """Class (or per-label) probabilities, calibrated when the model was (``calibrate=True``); ``calibrated=
        False`` gives the head's own (the arg-max is the same either way). Regression models have none."""
        self.check_fitted()
        if not self.task_.has_probabilities:
            raise ConfigError(f"a {self.task_.kind} model has no probabilities; use predict() (and "
                              "predict_records() for intervals)")
        return self.outputs(data, calibrated)

    def predict(self, data) -> list:
        """Labels (classification), label lists (multi-label) or numbers (regression)."""
        return self.task_.decode(self.outputs(data), self.active_calibration())

    def predict_records(self, data, **options) -> list[dict]:
        """One dict per row as a prediction file has it (the label and ``p_<label>`` columns; the label set; the
        value with its interval ``lower`` / ``upper`` (``level=`` another level than fitted))."""
        table = self.as_table(data, require_label=False)
        return self.task_.records(self.outputs(table), self.active_calibration(), table=table, **options)

    def use_thresholds(self, thresholds: dict, source: str = "thresholds") -> Graft:
        """Decide multi-label predictions at these per-label thresholds (label -> value in (0, 1)) from now on."""
        self.check_fitted()
        self.calibration_ = self.task_.with_thresholds(getattr(self, "calibration_", None), thresholds, source)
        return self

    def evaluate(self, data, *, target_recall: float = 0.9, target_precision: float = 0.9,
                 curves: bool = True, interval: float | None = None) -> dict:
        """The task's held-out metrics. Classification: accuracy, macro-F1, per-class precision / recall / F1 and
        the confusion matrix, calibration (ECE, NLL, Brier before and after temperature scaling, reliability
        diagrams), threshold metrics (precision at ``target_recall``, recall at ``target_precision``, PR / ROC).
        Multi-label: micro / macro / sample F1, subset accuracy, Hamming loss, per-label table at the tuned
        thresholds and at 0.5, per-label calibration. Regression: RMSE, MAE, R², Spearman, coverage of the
        ``interval`` (default: the fitted level). Targets and outputs stay in ``last_predictions_``."""
        self.check_fitted()
        table = self.as_table(data, require_label=True)
        y = self.task_.encode(table)
        raw = self.raw_outputs(table)
        calibration = self.active_calibration()
        self.last_predictions_ = {"y_true": y, "raw": raw, "outputs": self.task_.outputs(raw, calibration)}
        return self.task_.metrics(y, raw, calibration, target_recall=target_recall, target_precision=target_precision,
                                  curves=curves, interval=interval, table=table)

    def save(self, path, overwrite: bool = False):
        """Write the fitted model as an artifact directory (atomically). Returns the path."""
        from graftkit.artifacts import save_model

        self.check_fitted()
        return save_model(self, path, overwrite=overwrite)
