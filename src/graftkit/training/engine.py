"""The one training engine of every trainable strategy, on the Hugging Face ``Trainer``.

graftkit supplies what the Trainer cannot express by itself: the model (backbone contract + the task's output
layer and loss), the collator (decode + the model's own preprocessing per batch), AdamW with the strategy's
discriminative parameter groups (passed in through ``optimizers=``), the unfreezing schedule and the checkpoint
seals (callbacks), and a length-grouped sampler seeded per epoch (``training.sampling``, the one subclass). The
Trainer does the rest: warm-up and linear / cosine decay, gradient clipping and accumulation, evaluation each
epoch, early stopping with best-checkpoint restore, seeds and ``full_determinism``, exact resume (model,
optimiser, scheduler, RNG and callback state), mixed precision on GPUs, and data-parallel training under
``torchrun`` / ``accelerate launch``.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import (EarlyStoppingCallback, PrinterCallback, ProgressCallback, Trainer, TrainerCallback,
                          TrainingArguments)

from graftkit.errors import ConfigError
from graftkit.training.augment import augmenter_for
from graftkit.training.callbacks import (AugmentEpoch, Deadline, LoggingProgress, QuietLog, RunningOutputs,
                                        SealCheckpoints, UnfreezeSchedule)
from graftkit.training.checkpoints import stopped_at
from graftkit.training.data import Examples
from graftkit.training.distributed import world_size
from graftkit.training.groups import describe_groups, optimizer_groups, plan_layers
from graftkit.training.model import GraftModel
from graftkit.training.sampling import GraftTrainer

logger = logging.getLogger(__name__)


@dataclass
class TrainingResult:
    """What the engine reports: per-epoch history, the best epoch, parameter counts, optimiser groups."""

    history: list[dict]
    best_epoch: int | None
    best_metric: float | None
    epochs_run: int
    parameters: dict
    optimizer_groups: list[dict]
    layer_groups: list[str]
    resumed_from: str | None
    seconds: float
    schedule: list[int] = field(default_factory=list)
    augmentation: dict | None = None  # what augmented the training batches (augment=True), else None
    stopped: str | None = None  # why training ended before its epochs (a Deadline: the time budget), else None
    domain_adaptation: dict | None = None  # domain-adversarial training's record (adapt_to), else None
    # (outputs, labels, epoch) of the training batches in the epoch whose weights were kept, as the loop saw
    # them (RunningOutputs); None where that epoch ran before a resume. Not part of the record.
    train_outputs: tuple | None = None

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "train_outputs"}


def _compute_metrics(task):
    def compute(prediction) -> dict:
        outputs = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        return task.score_engine(np.asarray(outputs), np.asarray(prediction.label_ids))
    return compute


def _training_arguments(strategy, *, run_dir: Path, batch_size: int, seed: int, device: str, progress: bool,
                        validate: bool, find_unused: bool, epochs: int, metric: str,
                        greater_is_better: bool, grouped: bool = False) -> TrainingArguments:
    processes = world_size()
    if batch_size % processes:
        raise ConfigError(f"batch_size {batch_size} does not split evenly over {processes} processes; use a multiple "
                          f"of {processes} (--batch-size)")
    on_cuda = torch.device(device).type == "cuda"
    return TrainingArguments(
        output_dir=str(run_dir),
        per_device_train_batch_size=batch_size // processes,
        per_device_eval_batch_size=batch_size,
        num_train_epochs=epochs,
        learning_rate=strategy.learning_rate,
        lr_scheduler_type={"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}[
            strategy.lr_schedule],
        warmup_steps=strategy.warmup,
        weight_decay=strategy.weight_decay,
        max_grad_norm=strategy.max_grad_norm,
        gradient_accumulation_steps=strategy.grad_accumulation,
        eval_strategy="epoch" if validate else "no",
        save_strategy="epoch",
        logging_strategy="epoch",
        save_total_limit=2,
        load_best_model_at_end=validate,
        metric_for_best_model=metric if validate else None,
        greater_is_better=greater_is_better if validate else None,
        restore_callback_states_from_checkpoint=True,
        full_determinism=strategy.deterministic,
        seed=seed,
        data_seed=seed,
        use_cpu=not on_cuda,
        bf16=on_cuda and torch.cuda.is_bf16_supported(),
        report_to="none",
        disable_tqdm=not progress,
        remove_unused_columns=False,
        label_names=["labels"],
        dataloader_num_workers=0,
        # text: batches of like length pad less (the Trainer's length-grouped sampler, seeded per epoch: GraftTrainer)
        train_sampling_strategy="group_by_length" if grouped else "random",
        ddp_backend="gloo" if not on_cuda and processes > 1 else None,
        ddp_find_unused_parameters=find_unused if processes > 1 else None,
    )


def epoch_history(log_history: list[dict], model: GraftModel, schedule, metrics=("accuracy", "macro_f1")) -> list[dict]:
    """One row per epoch from the Trainer's log: train loss, learning rate, validation figures, and how
    many layer groups and parameters trained in that epoch."""
    rows: dict[int, dict] = {}
    for entry in log_history:
        if "epoch" not in entry or "train_runtime" in entry:
            continue
        epoch = math.ceil(entry["epoch"] - 1e-6)  # a partial last epoch (stopped at a deadline) is a row of its own
        row = rows.setdefault(epoch, {"epoch": epoch})
        if "loss" in entry:
            row["train_loss"] = entry["loss"]
            row["lr"] = entry.get("learning_rate")
        for key in ("loss", *metrics):
            if f"eval_{key}" in entry:
                row[f"val_{key}"] = entry[f"eval_{key}"]
        if "domain_accuracy" in entry:  # domain-adversarial training: how well the domains are still told apart
            row["domain_accuracy"] = entry["domain_accuracy"]
    head = sum(p.numel() for p in model.head.parameters()) + sum(p.numel() for p in model.adaptation_parameters)
    for epoch, row in rows.items():
        groups = schedule(epoch - 1)
        row["trainable_groups"] = groups
        row["trainable_parameters"] = head + model.plan.parameter_count(groups)
    return [rows[e] for e in sorted(rows)]


def _best(history: list[dict], metric: str, greater_is_better: bool) -> tuple[int | None, float | None]:
    key = f"val_{metric}"
    best_epoch, best = None, None
    for row in history:
        value = row.get(key)
        if value is None:
            continue
        if best is None or (value > best if greater_is_better else value < best):
            best_epoch, best = row["epoch"], value
    return best_epoch, best


def build_model(backbone, strategy, sample: dict, task, seed: int, head_init=None, standardize=None,
                target_scaling=None, embed=None, side_size: int = 0) -> GraftModel:
    """The backbone's layer plan (from a probe on ``sample``) and a seeded new output layer for ``task`` (or
    ``head_init``) on features (the pooled ones, then ``side_size`` side features per row) standardised by
    ``standardize`` = (mean, scale), its outputs scaled by ``target_scaling`` = (mean, scale); the groups that ever
    train are marked trainable (they must require grad when DDP wraps the model; the schedule narrows them per
    epoch)."""
    plan = plan_layers(backbone, sample)
    most = strategy.groups_to_train(len(plan))  # raises a ConfigError naming how many groups there are
    logger.info("layer groups on the feature path, input to output: %s; %s trains up to the top %d",
                ", ".join(plan.names), strategy.name, most)
    torch.manual_seed(seed)
    model = GraftModel(backbone, task, plan, l2_sp=strategy.l2_sp,
                       freeze_batchnorm=getattr(strategy, "freeze_batchnorm", False), embed=embed,
                       side_size=side_size)
    if standardize is not None:
        model.standardize_with(*standardize)
    if target_scaling is not None:
        model.scale_targets_with(*target_scaling)
    if head_init is not None:
        model.init_head(*head_init)
    model.set_trainable_groups(most)
    if getattr(strategy, "parameter_efficient", False):
        from graftkit.training.efficient import adaptation_modules, apply_adaptation

        adaptation = apply_adaptation(backbone, strategy)  # changes backbone.model (= model.backbone) in place
        model.adapt(adaptation, adaptation_modules(model.backbone))
        logger.info("%s: %d new trainable parameters on %s", strategy.name,
                    sum(p.numel() for p in adaptation.parameters), ", ".join(adaptation.targets[:6]) +
                    (" …" if len(adaptation.targets) > 6 else ""))
    return model


def _trainer(model, strategy, args, *, collator, train, validation, task, schedule, callbacks,
             progress) -> Trainer:
    """The Trainer, with AdamW over the strategy's parameter groups and graftkit's callbacks (the unfreezing
    schedule first, so that the others see each epoch's trainable groups; the caller's last)."""
    # the Trainer's own optimiser class and settings (default: fused AdamW, as a plain Trainer run gets) over
    # graftkit's discriminative parameter groups
    optimizer_cls, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
    optimizer = optimizer_cls(optimizer_groups(model.head, model.plan, strategy, model.adaptation_parameters,
                                               model.objective_parameters),
                              **{**optimizer_kwargs, "lr": strategy.learning_rate})
    ours = [schedule, SealCheckpoints()]
    if validation is not None and strategy.patience:
        ours.append(EarlyStoppingCallback(early_stopping_patience=strategy.patience))
    trainer = GraftTrainer(model=model, args=args, data_collator=collator, train_dataset=train,
                           eval_dataset=validation, compute_metrics=_compute_metrics(task),
                           callbacks=[*ours, *callbacks], optimizers=(optimizer, None))
    trainer.remove_callback(PrinterCallback)  # it prints to stdout; figures go to the log instead
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(LoggingProgress() if progress else QuietLog())
    return trainer


def train_model(backbone, strategy, task, *, train: Examples, validation: Examples | None, batch_size: int,
                seed: int, device: str, run_dir: Path, resume_from: Path | None = None, progress: bool = True,
                head_init: tuple | None = None, standardize: tuple | None = None,
                callbacks: list[TrainerCallback] = (), target: Examples | None = None) -> tuple[GraftModel, TrainingResult]:
    """Fine-tune ``backbone`` + a new output layer for ``task`` on ``train`` as ``strategy`` says; returns the
    trained model (best validation epoch restored) and the run's history. The backbone's weights change in place.
    Examples carrying side features (``Examples(side=...)``) widen the output layer by their width.
    ``target``: unlabelled target-domain examples for domain-adversarial training (``training.adversarial``)."""
    started = time.perf_counter()
    metric = task.check_engine_metric(strategy.metric)
    greater = task.metric_improves(metric)
    augmenter = augmenter_for(backbone, seed) if getattr(strategy, "augment", False) else None
    if getattr(strategy, "augment", False) and augmenter is None:
        logger.warning("augment: no augmentation is defined for %r inputs; training without it", backbone.modality)
    collator = train.collator(backbone, augmenter)
    model = build_model(backbone, strategy, collator.sample(train), task, seed, head_init, standardize,
                        task.target_scaling(train.labels), embed=train.features_of(backbone),
                        side_size=train.side_size)
    most = model.trainable_groups
    schedule = UnfreezeSchedule(model, strategy)
    gradual = any(schedule.groups_for(e) != most for e in range(strategy.epochs))
    stopped = stopped_at(resume_from) if resume_from else None  # early stopping had already ended the run
    if augmenter is not None:  # training rows only; the collator learns each epoch from AugmentEpoch
        train, callbacks = train.augmented(), [AugmentEpoch(collator), *callbacks]
    else:  # text: tokenised once per run, not per batch per epoch
        train = train.tokenized(backbone)
    if validation is not None:
        validation = validation.tokenized(backbone).by_length()
    objective = None
    if target is not None:  # DANN: target batches beside the source ones, a domain loss behind gradient reversal
        from graftkit.training import adversarial

        train, collator, extra = adversarial.attach(model, train, target.tokenized(backbone), collator,
                                                    strategy.adapt_weight)
        objective, callbacks = model.objectives[-1], [*extra, *callbacks]
    args = _training_arguments(strategy, run_dir=run_dir, batch_size=batch_size, seed=seed, device=device,
                               progress=progress, validate=validation is not None, find_unused=gradual,
                               epochs=stopped or strategy.epochs, metric=metric, greater_is_better=greater,
                               grouped=getattr(strategy, "group_by_length", False)
                               and getattr(train, "groups_by_length", False))
    running = RunningOutputs(model)
    trainer = _trainer(model, strategy, args, collator=collator, train=train, validation=validation,
                       task=task, schedule=schedule, callbacks=[running, *callbacks], progress=progress)
    deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    finally:  # full_determinism switches deterministic algorithms on process-wide; leave them as they were
        torch.use_deterministic_algorithms(deterministic)
        running.close()
    model.freeze()
    history = epoch_history(trainer.state.log_history, model, schedule.groups_for, task.engine_metrics)
    best_epoch, best_metric = _best(history, metric, greater)
    kept = best_epoch if validation is not None else len(history)  # the epoch whose weights the model has
    stopped = next((c.stopped for c in callbacks if isinstance(c, Deadline) and c.stopped), None)
    # the exported model's parameters: an auxiliary objective (DANN's domain classifier) trains but is not saved
    total = sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in model.objective_parameters)
    # groups that actually trained: a gradual schedule cut short by its epochs or early stopping never reached
    # the lower ones, so they do not count as trained
    reached = max((schedule.groups_for(e) for e in range(len(history))), default=most)
    trainable = (sum(p.numel() for p in model.head.parameters()) + model.plan.parameter_count(reached)
                 + sum(p.numel() for p in model.adaptation_parameters))
    result = TrainingResult(history=history, best_epoch=best_epoch, best_metric=best_metric,
                            epochs_run=len(history),
                            parameters={"trainable": trainable, "total": total, "share": round(trainable / total, 6)},
                            optimizer_groups=describe_groups(trainer.optimizer.param_groups),
                            layer_groups=list(model.plan.names),
                            resumed_from=str(resume_from) if resume_from else None,
                            seconds=round(time.perf_counter() - started, 3),
                            schedule=[schedule.groups_for(e) for e in range(len(history))],
                            augmentation=augmenter.describe() if augmenter is not None else None,
                            stopped=stopped,
                            domain_adaptation=objective.describe() if objective is not None else None,
                            train_outputs=(*running.epochs[kept], kept) if kept in running.epochs else None)
    return model, result
