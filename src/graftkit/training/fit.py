"""``Graft.fit`` for trainable strategies: validation split, LP-FT's probe, the run directory, the engine,
and the fitted state (``head_``, ``training_``, metrics) the artifact and ``predict`` use."""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from graftkit.errors import ConfigError, DataError, GraftkitError
from graftkit.tasks.heads import Head, LinearHead
from graftkit.training.checkpoints import RUN_FILE, checkpoints, prepare_run
from graftkit.training.data import Examples
from graftkit.training.distributed import is_main_process, world_size
from graftkit.training.engine import train_model

logger = logging.getLogger(__name__)


def examples(table, y, task, backbone, side=None):
    """The engine's examples of ``table``: one per row (with its ``side`` features, if any), or one per sentence
    window for a word task."""
    if task.unit == "word":
        from graftkit.training.words import WordExamples

        return WordExamples(table, y, task, backbone)
    return Examples(table, y, side=side)


def check_side(side, task, strategy) -> None:
    """Side features go into the one output layer of a row task; what has none (or reads other features) refuses."""
    if side is None:
        return
    if getattr(strategy, "contrastive", False):
        raise ConfigError(f"strategy {strategy.name!r} fits its head on pairs of embeddings, not through the engine's "
                          "output layer, so it takes no side features; use finetune, lora or lp-ft")
    if task.unit != "row":
        raise ConfigError(f"side features are one vector per row; the {task.kind} task reads one per word")
    if getattr(strategy, "adapt_to", None):
        raise ConfigError("--adapt-to (domain-adversarial training) reads the backbone's features of unlabelled rows, "
                          "which carry no side features; drop --adapt-to")


def side_features(side, table, fit: bool = False) -> np.ndarray:
    """``side``'s float matrix for ``table`` (``fit_transform`` on the training split, else ``transform``)."""
    matrix = np.asarray(side.fit_transform(table) if fit else side.transform(table), dtype=np.float32)
    if matrix.ndim != 2 or len(matrix) != len(table):
        raise ConfigError(f"side features must be one row per table row; got shape {matrix.shape} for {len(table)} "
                          "rows")
    return matrix


def domain_target(graft, strategy, task, backbone):
    """The unlabelled target rows of domain-adversarial training (``adapt_to``) as engine examples, or None."""
    if not getattr(strategy, "adapt_to", None):
        return None
    from graftkit.data.unlabelled import load_unlabelled
    from graftkit.training.adversarial import target_examples

    if task.unit != "row":
        raise ConfigError(f"--adapt-to (domain-adversarial training) reads one feature vector per row; the {task.kind} "
                          "task reads one per word; drop --adapt-to")
    table = load_unlabelled(strategy.adapt_to, modality=backbone.modality)
    if table.modality != backbone.modality:
        raise DataError(f"{table.source}: the target data's column {table.input_column!r} holds {table.modality}, but "
                        f"backbone {graft.backbone!r} reads {backbone.modality}; give {backbone.modality} target data "
                        "(--adapt-to)")
    return target_examples(table, Examples)


def validation_split(graft, table, task, validation, val_size: float):
    """``(train, validation or None, how)``: a given validation table, or a ``val_size`` share of ``table`` split
    as the task splits (stratified by class for classification)."""
    if validation is not None:
        val = graft.as_table(validation, require_label=True)
        graft.check_modality(val)
        return table, val, "given"
    if val_size > 0:
        try:
            train, val = task.split(table, test_size=val_size, seed=graft.seed)
        except DataError as exc:
            raise DataError(f"{table.source}: cannot hold out a validation split of --val-size {val_size:g} from "
                            f"{len(table)} rows ({str(exc).split(': ', 1)[-1]}); raise --val-size, pass a validation "
                            "file (--validation), or train without one (--val-size 0 --patience 0)") from None
        return train, val, (f"{val_size:g} of the training data, split as the {task.kind} task splits "
                            f"(seed {graft.seed})")
    return table, None, "none"


def _run_directory(graft) -> tuple[Path, bool]:
    """The checkpoint directory and whether it is a temporary one (removed after training)."""
    if graft.checkpoint_dir is not None:
        return Path(graft.checkpoint_dir), False
    if graft.resume:
        raise ConfigError("resume=True needs checkpoint_dir, the directory of the run to continue (--resume DIR)")
    if world_size() > 1:
        raise ConfigError("data-parallel training needs a checkpoint directory that every process shares; pass "
                          "checkpoint_dir (--checkpoint-dir DIR)")
    return Path(tempfile.mkdtemp(prefix="graftkit-train-")), True


def _after_failure(run_dir: Path, created: bool, crashed: bool) -> None:
    """Say where the checkpoints are; a directory this run created and never checkpointed into goes again."""
    if not is_main_process() or not (run_dir / RUN_FILE).is_file():
        return
    if not checkpoints(run_dir):
        if created:
            shutil.rmtree(run_dir, ignore_errors=True)
    elif crashed:
        logger.warning("training stopped; its complete epochs are checkpointed in %s: continue with --resume %s "
                       "(resume=True)", run_dir, run_dir)


def head_input(side_train) -> str:
    """What the exported head reads, for the record."""
    if side_train is None:
        return ("pooled features standardised by the pretrained features' mean and std on the training split (folded "
                "into head.safetensors)")
    return (f"pooled features followed by {side_train.shape[1]} side features per row, standardised by their mean and "
            "std on the training split (pretrained features; folded into head.safetensors)")


@contextmanager
def training_run(graft, backbone, strategy, task, train, val, extra=None):
    """The run directory of one training run, as ``(directory, checkpoint to resume from or None)``: its identity
    (backbone, strategy, seed, data, processes) written, or checked when resuming; only sealed checkpoints are
    resumed from. A temporary directory is removed afterwards; after a failure the user is told where the complete
    epochs are, and a directory this run created and never checkpointed into is removed."""
    identity = {"format": 1, "backbone": backbone.fingerprint(), "strategy": strategy.to_dict(), "seed": graft.seed,
                "batch_size": graft.batch_size, "task": task.to_dict(), "train_data": train.fingerprint(),
                "validation_data": None if val is None else val.fingerprint(), "processes": world_size(),
                **(extra or {})}
    run_dir, temporary = _run_directory(graft)
    prepared = False
    try:
        resume_from = prepare_run(run_dir, identity, resume=graft.resume, main_process=is_main_process())
        prepared = True
        yield run_dir, resume_from
    except BaseException as exc:
        if prepared and not temporary:
            _after_failure(run_dir, created=not graft.resume, crashed=not isinstance(exc, GraftkitError))
        raise
    finally:
        if temporary:
            shutil.rmtree(run_dir, ignore_errors=True)


def fit_trainable(graft, table, task, strategy, *, validation=None, callbacks=(), side=None) -> tuple:
    """Fine-tune ``graft``'s backbone and a new output layer for ``task`` on ``table`` as ``strategy`` says (sets
    the fitted head and records); returns ``(train, validation or None, how the validation rows were chosen, the
    training loop's outputs on the kept epoch's training batches or None)`` (``TrainingResult.train_outputs``).
    ``side``: a transformer of the table's other columns (``fit_transform`` on the training split, ``transform``
    on the validation rows: one float vector per row), concatenated to the pooled features before the output
    layer."""
    check_side(side, task, strategy)
    if getattr(strategy, "contrastive", False):  # pairs of rows, then a head (SetFit's recipe)
        from graftkit.training.contrastive import fit_contrastive

        return fit_contrastive(graft, table, task, strategy, validation=validation, callbacks=callbacks)
    started = time.perf_counter()
    backbone = graft.check_modality(table)
    task.check_engine_metric(strategy.metric)  # a wrong --metric fails before any work
    train, val, how = validation_split(graft, table, task, validation, strategy.val_size)
    if strategy.patience and val is None:
        raise ConfigError(f"early stopping (--patience {strategy.patience}) needs a validation split; set --val-size "
                          "above 0, pass validation data, or --patience 0")
    y_train = task.encode(train)
    y_val = None if val is None else task.encode(val)
    side_train = None if side is None else side_features(side, train, fit=True)  # fitted on the training split only
    side_val = None if side is None or val is None else side_features(side, val)
    head_init, probe, features_started = None, None, time.perf_counter()
    X = graft.features(train, task)  # pretrained features, from the cache where seen before
    if side_train is not None:  # what the output layer reads: [pooled, side], standardised together
        X = np.concatenate([X, side_train], axis=1)
    scaling = Head.scaling(task.stacked(X), True)
    standardize = scaling["mean"], scaling["scale"]
    if hasattr(strategy, "fit_probe"):  # LP-FT stage one, on the same frozen features
        fitted = strategy.fit_probe(task, X, y_train, seed=graft.seed)
        head_init = fitted.linear_weights(fold_scaling=False)
        standardize = fitted.arrays["mean"], fitted.arrays["scale"]
        probe = fitted.info
    features_s = round(time.perf_counter() - features_started, 3)
    target = domain_target(graft, strategy, task, backbone)
    extra = {"target_data": target.table.fingerprint()} if target is not None else {}
    if side_train is not None:
        extra["side_features"] = int(side_train.shape[1])
    try:
        with training_run(graft, backbone, strategy, task, train, val, extra) as (run_dir, resume_from):
            model, result = train_model(
                backbone, strategy, task, train=examples(train, y_train, task, backbone, side_train),
                validation=None if val is None else examples(val, y_val, task, backbone, side_val),
                batch_size=graft.batch_size,
                seed=graft.seed, device=graft.device, run_dir=run_dir, resume_from=resume_from,
                progress=graft.progress, head_init=head_init, standardize=standardize, callbacks=list(callbacks),
                target=target)
    except BaseException:
        graft.backbone_ = None  # its weights may be half-trained: reload the pretrained ones next time
        raise
    graft.adaptation_ = model.adaptation  # parameter-efficient strategies: what the artifact saves
    graft.finetuned_ = True  # from here on, features come from the fine-tuned backbone, never from the cache
    weight, bias = model.export_head()
    graft.head_ = task.wrap_head(LinearHead({"weight": weight, "bias": bias}, {
        "kind": "linear", "in_features": int(weight.shape[1]), "outputs": int(weight.shape[0])}))
    graft.training_ = {**result.to_dict(), "validation": {"rows": 0 if val is None else len(val), "source": how},
                       "train_rows": len(train), "linear_probe": probe,
                       "head_input": head_input(side_train),
                       "checkpoint_dir": None if graft.checkpoint_dir is None else str(run_dir.absolute()),
                       **({"adaptation": model.adaptation.describe()} if model.adaptation is not None else {}),
                       **({"side_features": int(side_train.shape[1])} if side_train is not None else {})}
    if target is not None:
        graft.training_["domain_adaptation"] = {**result.domain_adaptation, "target": {
            "source": target.table.source, "rows": len(target), "fingerprint": target.table.fingerprint()}}
    graft.timings_ = {"features_s": features_s, "train_s": result.seconds,
                      "fit_s": round(time.perf_counter() - started, 3)}
    logger.info("fitted %s on %d rows in %.1fs: %d epochs, best epoch %s, %d of %d parameters trained",
                strategy.name, len(train), graft.timings_["fit_s"], result.epochs_run, result.best_epoch,
                result.parameters["trainable"], result.parameters["total"])
    return train, val, how, result.train_outputs
