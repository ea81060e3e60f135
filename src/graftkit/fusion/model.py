"""``FusionModel``: the estimator for multi-input tables (text / image / audio columns plus numeric and
categorical ones): encoders per media column -> ``Featurizer`` -> the task's head (gradient-boosted trees by
default, or the linear heads), calibrated on cross-fitted out-of-fold outputs as ``Graft`` calibrates a probe.

Everything that depends on the kind of target is the task's (``tasks/``): encoding, the head it fits
(``task.fit_head(head="gbdt")`` picks a classifier or a regressor), calibration, metrics and prediction records.
``encoder="joint"`` trains instead: the encoder and the task's output layer together on the engine, the tabular
columns concatenated to the pooled embedding before that layer (``joint.py``).
Saved as a directory: ``fusion.json`` (roles, task, categories, encoders with their backbone fingerprints, head
info, calibration, file hashes), ``arrays.safetensors`` (trees, reductions) and, for tuned encoders, each one's
``Graft`` artifact under ``encoders/``. No pickle anywhere.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from graftkit.atomic import check_output_directory, output_lock, swap_directory
from graftkit.data import Table, load_data
from graftkit.errors import ArtifactError, ConfigError, DataError
from graftkit.fusion.encoders import DEFAULT_BACKBONES, FrozenEncoder
from graftkit.fusion.featurize import Featurizer
from graftkit.tasks import infer_task, task_class, task_from_dict

logger = logging.getLogger(__name__)

MANIFEST = "fusion.json"
ARRAYS = "arrays.safetensors"
FORMAT = "graftkit-fusion"
VERSION = 1
HEADS = ("gbdt", "linear")
ENCODERS = ("frozen", "lora", "joint")
JOINT_LAYOUT = "joint"  # fusion.joint.LAYOUT: the featurizer layout of a joint model's manifest


def is_fusion_model(path) -> bool:
    return (Path(path).expanduser() / MANIFEST).is_file()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class FusionModel:
    """Fit a head on the fused features of a multi-input table.

    >>> table = load_data("reviews.csv", label="Rating", text=["Title", "Review Text"], numeric=["Age"],
    ...                   categorical=["Department Name"])
    >>> model = FusionModel().fit(table)

    ``backbones`` maps a media column (or a modality, for all its columns) to a backbone spec (default: MiniLM for
    text, EfficientNet-Lite0 for images); ``encoder="lora"`` first tunes each text backbone on the target
    (``tune_params`` go to that ``Graft``, ``tune_rows`` caps its rows). ``reduce`` ("pca" / "svd") reduces each
    media column's embeddings to ``components`` dimensions fitted on the training rows. ``head``: "gbdt"
    (default) or "linear".

    ``encoder="joint"`` trains the text columns' encoder (joined; or the one image / audio column) with
    ``strategy`` (default lora; any trainable one) and the task's linear output layer together, the tabular columns
    concatenated to its pooled embedding before that layer; ``tune_params`` go to that ``Graft`` (epochs,
    learning_rate, val_size, ...), whose validation split also fits the calibration.
    """

    def __init__(self, backbones: dict | None = None, head: str | None = None, *, encoder: str = "frozen",
                 strategy: str | None = None, reduce: str | None = None, components: int = 64, seed: int = 0,
                 batch_size: int = 32, cache_dir=None, use_cache: bool = True, progress: bool = True,
                 device: str = "cpu", task: str | None = None, task_options: dict | None = None,
                 head_params: dict | None = None, tune_params: dict | None = None, tune_rows: int | None = None,
                 calibration_folds: int = 3):
        if head is not None and head not in HEADS:
            raise ConfigError(f"--head must be one of {', '.join(HEADS)}; got {head!r}")
        if encoder not in ENCODERS:
            raise ConfigError(f"--encoder must be one of {', '.join(ENCODERS)}; got {encoder!r}")
        if encoder == "joint":
            refused = [flag for flag, given in (("--head gbdt", head == "gbdt"), ("--reduce", reduce is not None),
                                                ("--tune-rows", tune_rows is not None)) if given]
            if refused:
                raise ConfigError(f"{', '.join(refused)} do(es) not apply to joint fusion, which trains the encoder "
                                  "with a linear output layer on every training row's whole embedding; drop it, or "
                                  "use --encoder lora (two-stage: tuned embeddings into the trees)")
        elif strategy is not None:
            raise ConfigError(f"--strategy {strategy} trains the encoder of joint fusion; add --joint "
                              "(encoder='joint'), or leave it out")
        self.backbones = dict(backbones or {})
        self.head, self.encoder, self.strategy = head, encoder, strategy
        self.reduce, self.components = reduce, components
        self.seed, self.batch_size, self.cache_dir, self.use_cache = seed, batch_size, cache_dir, use_cache
        self.progress, self.device, self.task = progress, device, task
        self.task_options, self.head_params = dict(task_options or {}), dict(head_params or {})
        self.tune_params, self.tune_rows, self.calibration_folds = dict(tune_params or {}), tune_rows, calibration_folds

    # -- data --------------------------------------------------------------------------------------------------
    def as_table(self, data, require_label: bool) -> Table:
        if isinstance(data, Table):
            table = data
        else:
            known = {"roles": self.featurizer_.roles.to_dict(), "label": self.label_column_} \
                if hasattr(self, "featurizer_") else None
            table = load_data(data, require_label=require_label, known_columns=known,
                              label=None if known is None else (self.label_column_ if require_label else None),
                              roles=None if known else "infer")
        if table.roles is None:
            raise DataError(f"{table.source}: a fusion model reads a multi-input table; load it with roles "
                            "(load_data(..., text=[...], numeric=[...], categorical=[...]) or roles='infer')")
        if hasattr(self, "featurizer_") and table.roles != self.featurizer_.roles:
            raise DataError(f"{table.source}: its roles ({table.roles.describe()}) differ from the model's "
                            f"({self.featurizer_.roles.describe()}); give the columns the model was fitted on")
        return table

    def _spec(self, column: str, modality: str) -> str:
        spec = self.backbones.get(column) or self.backbones.get(modality) or DEFAULT_BACKBONES.get(modality)
        if spec is None:
            raise ConfigError(f"no backbone for the {modality} column {column!r}; name one (backbones="
                              f"{{{column!r}: SPEC}}, CLI --backbone {modality}=SPEC)")
        return spec

    def build_encoders(self, table, task=None) -> dict:
        """Media column -> its encoder: one object per backbone spec and modality, shared by the columns that use it
        (an image-text model named for an image and a text column gets one encoder per tower). ``encoder="lora"``
        tunes the text ones on ``table`` and ``task`` here; frozen ones only load their backbone."""
        by_spec: dict[tuple[str, str], object] = {}
        columns: dict[str, object] = {}
        for column, modality in table.roles.media:
            spec = self._spec(column, modality)
            if (spec, modality) not in by_spec:
                same = [c for c, m in table.roles.media if m == modality and self._spec(c, m) == spec]
                if self.encoder == "lora" and modality == "text":
                    from graftkit.fusion.tuning import tune_encoder

                    by_spec[spec, modality] = tune_encoder(table, task, same, spec, rows=self.tune_rows,
                                                           seed=self.seed, batch_size=self.batch_size,
                                                           device=self.device, progress=self.progress,
                                                           **self.tune_params)
                else:
                    by_spec[spec, modality] = FrozenEncoder(spec, batch_size=self.batch_size, cache_dir=self.cache_dir,
                                                            use_cache=self.use_cache, progress=self.progress,
                                                            device=self.device, modality=modality)
            columns[column] = by_spec[spec, modality]
        return columns

    @property
    def head_name(self) -> str:
        """The head fitted: the given one, else gbdt (the joint model's output layer is linear)."""
        return self.head or ("linear" if self.encoder == "joint" else "gbdt")

    # -- fitting -----------------------------------------------------------------------------------------------
    def fit(self, data, *, encoders: dict | None = None) -> FusionModel:
        """Fit on labelled ``data``. ``encoders``: media column -> encoder, built by ``build_encoders`` for this
        table's columns (``auto`` loads them once for its timing pass and fits with them), used as they are."""
        table = self.as_table(data, require_label=True)
        if self.task is not None:
            task_class(self.task)
        task = infer_task(table, self.task, **self.task_options)
        logger.info("%s", task.reason or f"task: {task.kind}")
        if self.encoder == "joint":
            if encoders is not None:
                raise ConfigError("joint fusion trains its own encoder; fit it without encoders=")
            return self._fit_joint(table, task)
        if encoders is not None and set(encoders) != {c for c, _ in table.roles.media}:
            raise ConfigError(f"encoders= names columns {sorted(encoders)}, but the table's media columns are "
                              f"{[c for c, _ in table.roles.media]}; build them with build_encoders(table)")
        started = time.perf_counter()
        y = task.encode(table)
        featurizer = Featurizer(table.roles, encoders if encoders is not None else self.build_encoders(table, task),
                                layout="trees" if self.head_name == "gbdt" else "dense", reduce=self.reduce,
                                components=self.components)
        X = featurizer.fit_transform(table)
        features_s = time.perf_counter() - started
        self.task_, self.featurizer_, self.label_column_ = task, featurizer, table.label_column
        head_started = time.perf_counter()
        self.head_ = self._fit_head(X, y)
        self.calibration_ = self._calibrate(X, y)
        self.timings_ = {"features_s": round(features_s, 3), "head_s": round(time.perf_counter() - head_started, 3),
                         "fit_s": round(time.perf_counter() - started, 3), "rows": len(table)}
        self.data_ = {"source": table.source, "rows": len(table), "fingerprint": table.fingerprint(),
                      **task.describe_targets(y)}
        self.metrics_ = {"train": task.summary(y, task.outputs(self.head_.logits(X), self.calibration_),
                                               self.calibration_)}
        return self

    def _fit_joint(self, table, task) -> FusionModel:
        """The encoder and the output layer trained together (``joint.py``): the head, calibration and records are
        the fitted ``Graft``'s, read through the ``JointFeaturizer``."""
        from graftkit.fusion.joint import fit_joint

        started = time.perf_counter()
        featurizer, graft = fit_joint(self, table, task)
        self.task_, self.featurizer_, self.label_column_ = graft.task_, featurizer, table.label_column
        self.head_, self.calibration_ = graft.head_, graft.calibration_
        self.timings_ = {"train_s": graft.timings_.get("train_s"), "fit_s": round(time.perf_counter() - started, 3),
                         "rows": len(table)}
        self.data_ = {"source": table.source, "rows": len(table), "fingerprint": table.fingerprint(),
                      **self.task_.describe_targets(self.task_.encode(table))}
        self.metrics_ = {k: graft.metrics_[k] for k in ("train", "validation") if k in graft.metrics_}
        return self

    def _fit_head(self, X, y, fixed: dict | None = None):
        params = {**self.head_params, **(fixed or {})}
        if self.head_name == "gbdt":
            return self.task_.fit_head(X, y, head="gbdt", seed=self.seed, categorical=self.featurizer_.categorical_mask,
                                       **params)
        return self.task_.fit_head(X, y, head="linear", seed=self.seed, **params)

    def _calibrate(self, X, y) -> dict:
        """The task's calibration on out-of-fold outputs of the same head refitted on k - 1 folds (the encoders
        and reductions are the ones fitted on every training row)."""
        task = self.task_
        folds, reason = task.calibration_folds(y, max_folds=self.calibration_folds)
        if self.calibration_folds < 2 or not folds or folds < 2:
            return task.skipped_calibration(reason or "calibration_folds < 2")
        raw = task.empty_outputs(len(y))
        fixed = self.head_.fixed_params() if self.head_name != "gbdt" else {}
        for train_rows, held in task.fold_indices(y, folds, self.seed):
            raw[held] = self._fit_head(X[train_rows], y[train_rows], fixed).logits(X[held])
        return {**task.fit_calibration(raw, y, scale=True),
                "fitted_on": f"{folds}-fold cross-fitted out-of-fold outputs of the {len(y)} training rows"}

    # -- prediction --------------------------------------------------------------------------------------------
    def check_fitted(self) -> None:
        if not hasattr(self, "head_"):
            raise ConfigError("this FusionModel is not fitted yet; call fit(data) first or load_fusion(DIR)")

    def features(self, data) -> np.ndarray:
        self.check_fitted()
        return self.featurizer_.transform(self.as_table(data, require_label=False))

    def raw_outputs(self, table) -> np.ndarray:
        return self.head_.logits(self.featurizer_.transform(table))

    def outputs(self, data) -> np.ndarray:
        self.check_fitted()
        return self.task_.outputs(self.raw_outputs(self.as_table(data, require_label=False)), self.calibration_)

    def predict(self, data) -> list:
        return self.task_.decode(self.outputs(data), self.calibration_)

    def predict_proba(self, data) -> np.ndarray:
        return self.task_.probabilities(self.outputs(data))

    def predict_records(self, data, **options) -> list[dict]:
        self.check_fitted()
        table = self.as_table(data, require_label=False)
        outputs = self.task_.outputs(self.raw_outputs(table), self.calibration_)
        return self.task_.records(outputs, self.calibration_, table=table, **options)

    def evaluate(self, data, *, importance: bool = True, repeats: int = 5, **options) -> dict:
        """The task's held-out metrics, plus (``importance``) the drop of the primary metric when each feature
        group (each media column, each modality, the tabular columns) is permuted across the rows."""
        from graftkit.fusion.importance import group_importance

        self.check_fitted()
        table = self.as_table(data, require_label=True)
        y = self.task_.encode(table)
        started = time.perf_counter()
        X = self.featurizer_.transform(table)
        raw = self.head_.logits(X)
        self.last_predict_s_ = time.perf_counter() - started
        self.last_predictions_ = {"y_true": y, "raw": raw, "outputs": self.task_.outputs(raw, self.calibration_)}
        metrics = self.task_.metrics(y, raw, self.calibration_, table=table, **options)
        if importance:
            metrics["feature_groups"] = group_importance(self, X, y, repeats=repeats, seed=self.seed)
        metrics["notes"] = list(self.featurizer_.notes)
        return metrics

    # -- saving ------------------------------------------------------------------------------------------------
    def save(self, path, overwrite: bool = False) -> Path:
        from safetensors.numpy import save_file

        self.check_fitted()
        path = Path(path).expanduser()
        with output_lock(path):
            check_destination(path, overwrite)
            path.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
            try:
                arrays, info = self.featurizer_.state()
                tensors = {f"featurizer.{k}": np.ascontiguousarray(v) for k, v in arrays.items()}
                tensors.update({f"head.{k}": np.ascontiguousarray(v) for k, v in self.head_.arrays.items()})
                save_file(tensors, str(staging / ARRAYS))
                self.featurizer_.save_encoders(staging, info)
                manifest = {"format": FORMAT, "version": VERSION, "task": self.task_.to_dict(),
                            "label_column": self.label_column_, "featurizer": info, "head": self.head_.info,
                            "head_name": self.head_name, "encoder": self.encoder, "calibration": self.calibration_,
                            "seed": self.seed,
                            "batch_size": self.batch_size, "data": self.data_, "metrics": self.metrics_,
                            "timings": self.timings_, "files": {ARRAYS: _sha256(staging / ARRAYS)}}
                (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False, default=_plain))
                swap_directory(staging, path)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
        return path


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON: {type(value).__name__}")


def check_destination(path: Path, overwrite: bool) -> None:
    check_output_directory(path, overwrite, holds=is_fusion_model, what="fusion model")


def read_manifest(path) -> dict:
    """``fusion.json`` of a fusion model directory, checked: its format and version, and the arrays' hash."""
    path = Path(path).expanduser()
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{path} holds no {MANIFEST}; give a directory written by `graftkit fuse` or `auto`") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path / MANIFEST} is not valid JSON ({exc}); refit the model") from None
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise ArtifactError(f"{path / MANIFEST}: not a version-{VERSION} {FORMAT} manifest; refit the model")
    if not (path / ARRAYS).is_file() or _sha256(path / ARRAYS) != manifest["files"].get(ARRAYS):
        raise ArtifactError(f"{path / ARRAYS} is missing or differs from the one saved (hash); refit the model")
    return manifest


def load_fusion(path, *, device: str = "cpu", cache_dir=None, use_cache: bool = True,
                progress: bool = True) -> FusionModel:
    """A saved ``FusionModel``; the arrays' hash and every frozen backbone's fingerprint are checked."""
    from safetensors.numpy import load_file

    from graftkit.fusion.encoders import TunedEncoder
    from graftkit.loading import load_model
    from graftkit.tasks.heads import head_from_state

    path = Path(path).expanduser()
    manifest = read_manifest(path)
    tensors = load_file(str(path / ARRAYS))
    info = manifest["featurizer"]

    def encoders_of(described_columns: dict) -> dict:
        encoders, by_key = {}, {}
        for column, described in described_columns.items():
            key = (described["kind"], described["spec"], described.get("modality"))
            if key not in by_key:
                if described["kind"] == "tuned":
                    by_key[key] = TunedEncoder(load_model(path / described["dir"], device=device, progress=progress),
                                               described["spec"])
                else:
                    by_key[key] = FrozenEncoder(described["spec"], batch_size=manifest["batch_size"],
                                                cache_dir=cache_dir, use_cache=use_cache, progress=progress,
                                                device=device, fingerprint=described["fingerprint"],
                                                modality=described.get("modality"))
            encoders[column] = by_key[key]
        return encoders

    encoder = manifest.get("encoder", "frozen")
    model = FusionModel(head=manifest["head_name"], encoder=encoder, seed=manifest["seed"],
                        batch_size=manifest["batch_size"], cache_dir=cache_dir, use_cache=use_cache, progress=progress,
                        device=device)
    model.task_ = task_from_dict(manifest["task"])
    arrays = {k[len("featurizer."):]: v for k, v in tensors.items() if k.startswith("featurizer.")}
    if info.get("layout") == JOINT_LAYOUT:  # the joint model's encoder: its own Graft artifact, + the side columns
        from graftkit.fusion.joint import JointFeaturizer

        graft = load_model(path / info["encoder"]["dir"], device=device, progress=progress)
        side = info["side"]
        model.featurizer_ = JointFeaturizer.from_state(arrays, info, graft, encoders_of(side["encoders"]) if side else {})
        model.strategy = graft.strategy
    else:
        model.featurizer_ = Featurizer.from_state(arrays, info, encoders_of(info["encoders"]))
    model.head_ = head_from_state({k[len("head."):]: v for k, v in tensors.items() if k.startswith("head.")},
                                  manifest["head"])
    model.label_column_ = manifest["label_column"]
    if isinstance(model.label_column_, list):
        model.label_column_ = tuple(model.label_column_)
    model.calibration_, model.data_ = manifest["calibration"], manifest["data"]
    model.metrics_, model.timings_ = manifest["metrics"], manifest["timings"]
    return model
