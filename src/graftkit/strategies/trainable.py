"""The settings every trainable strategy shares: optimiser, schedule, validation, early stopping, L2-SP.

A trainable strategy decides *which* layer groups train and with *which* learning rate; the one
training engine (``graftkit.training``) runs them all. Learning rates are discriminative
(Howard & Ruder 2018, "Universal Language Model Fine-tuning for Text Classification"): the new head
learns at ``learning_rate``, the top backbone group at ``learning_rate × backbone_lr_ratio``, and each
group below at ``layer_decay`` times the rate of the group above (layer-wise learning-rate decay,
Clark et al. 2020 "ELECTRA"; Sun et al. 2019 "How to Fine-Tune BERT for Text Classification?").

``l2_sp`` adds the L2-SP penalty ``l2_sp / 2 · ||w − w⁰||²`` toward the pretrained weights ``w⁰``
(Li, Grandvalet & Davoine 2018, "Explicit Inductive Bias for Transfer Learning with Convolutional
Networks"); it combines with every trainable strategy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

from graftkit.errors import ConfigError
from graftkit.strategies.base import StrategyConfig
from graftkit.tasks import task_class, task_kinds

LR_SCHEDULES = ("linear", "cosine", "constant")
LAYERS_HELP = "layer groups trained, counted from the top (gradual, lp-ft: the most ever unfrozen; default all)"


def engine_metric_names() -> list[str]:
    """Every metric some task's engine reports per epoch, and ``loss``."""
    names = [m for kind in task_kinds() for m in task_class(kind).engine_metrics]
    return list(dict.fromkeys([*names, "loss"]))


def _flag(name: str) -> str:
    return f"--{name.replace('_', '-')}"


@dataclass
class TrainableConfig(StrategyConfig):
    """Base of ``finetune``, ``full``, ``gradual`` and ``lp-ft``; not registered itself."""

    trainable: ClassVar[bool] = True

    learning_rate: float = field(default=5e-4, metadata={
        "help": "learning rate of the new head; backbone groups get learning_rate × backbone_lr_ratio"})
    backbone_lr_ratio: float = field(default=0.1, metadata={
        "help": "backbone learning rate as a fraction of the head's (pretrained layers learn slower)"})
    layer_decay: float = field(default=1.0, metadata={
        "help": "layer-wise learning-rate decay: each group below the top one learns this times slower"})
    epochs: int = field(default=5, metadata={"help": "passes over the training split"})
    warmup: float = field(default=0.1, metadata={"help": "fraction of the training steps with linear warm-up"})
    lr_schedule: str = field(default="linear", metadata={
        "help": "learning-rate decay after warm-up: linear, cosine or constant"})
    weight_decay: float = field(default=0.01, metadata={
        "help": "AdamW weight decay (not on biases and norms; not on the backbone when l2_sp is set)"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping norm; 0 turns clipping off"})
    grad_accumulation: int = field(default=1, metadata={"help": "batches accumulated per optimiser step"})
    val_size: float = field(default=0.1, metadata={
        "help": "fraction of the training data held out (stratified) for validation each epoch; 0 = none"})
    patience: int = field(default=2, metadata={
        "help": "early stopping: epochs without improvement of the validation metric; 0 = off"})
    metric: str | None = field(default=None, metadata={
        "help": "validation metric for early stopping and the best checkpoint (default: the task's primary one: "
                "accuracy, micro_f1 for multi-label, r2 for regression, f1 for token classification, wer for speech "
                "recognition); any metric of the task, or loss"})
    l2_sp: float = field(default=0.0, metadata={
        "help": "L2-SP strength: penalise the distance to the pretrained weights (Li et al. 2018); 0 = off"})
    deterministic: bool = field(default=False, metadata={
        "help": "deterministic algorithms (full_determinism), for bit-identical reruns and resumes"})
    augment: bool = field(default=False, metadata={
        "help": "augment training batches per modality (images: random resized crop, flip, colour jitter; text: "
                "word dropout; audio: noise, gain, time shift, time / frequency masking); never at validation or "
                "prediction"})
    adapt_to: str | None = field(default=None, metadata={
        "help": "unlabelled target-domain data (a file: text lines, a table, or media paths) for domain-adversarial "
                "training (DANN, Ganin et al. 2016): a domain classifier behind gradient reversal on the pooled "
                "features; default off"})
    # 0.1, not the paper's 1: on 500 SST-2 sentences -> clothing reviews (bench/RESULTS.md, one seed) weight 1 made
    # the features forget sentiment (0.58 accuracy against 0.72 unadapted), weight 0.1 gained 3.5 points (0.76)
    adapt_weight: float = field(default=0.1, metadata={
        "help": "weight of the domain-adversarial loss (with --adapt-to); default 0.1: at 1.0 a small source set "
                "lost its task signal in bench/RESULTS.md"})
    group_by_length: bool = field(default=True, metadata={
        "help": "text: training batches of rows of like token length (the Trainer's length-grouped sampler: random "
                "groups of 50 batches, sorted within), so batches pad less and epochs run faster; false: uniformly "
                "random batches"})
    freeze_batchnorm: bool = field(default=True, metadata={
        "help": "BatchNorm layers keep their pretrained running statistics while their weights train (small batches "
                "of a new domain would otherwise shift them away from what the head learns on)"})

    def __post_init__(self) -> None:
        self._check_number("learning_rate", low=0.0, low_open=True)
        self._check_number("backbone_lr_ratio", low=0.0, low_open=True)
        self._check_number("layer_decay", low=0.0, low_open=True, high=1.0)
        self._check_int("epochs", 1)
        self._check_number("warmup", low=0.0, high=1.0, high_open=True)
        self._check_number("weight_decay", low=0.0)
        self._check_number("max_grad_norm", low=0.0)
        self._check_int("grad_accumulation", 1)
        self._check_number("val_size", low=0.0, high=1.0, high_open=True)
        self._check_int("patience", 0)
        self._check_number("l2_sp", low=0.0)
        self._check_choice("lr_schedule", LR_SCHEDULES)
        self._check_number("adapt_weight", low=0.0, low_open=True)
        if self.adapt_to is not None and (not isinstance(self.adapt_to, str) or not self.adapt_to.strip()):
            raise ConfigError(f"{self.name} adapt_to must be the path of the unlabelled target data; got "
                              f"{self.adapt_to!r} (--adapt-to)")
        known = engine_metric_names()
        if self.metric is not None and self.metric not in known:
            raise ConfigError(f"{self.name} metric must be one of {', '.join(known)} (the task's own; default: its "
                              f"primary metric); got {self.metric!r} (--metric)")
        for name in ("deterministic", "augment", "freeze_batchnorm", "group_by_length"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{self.name} {name} must be true or false; got {getattr(self, name)!r} "
                                  f"({_flag(name)})")

    # -- validation helpers (one-line errors that name the flag) ----------------------------------
    def _check_number(self, name: str, *, low: float | None = None, high: float | None = None,
                      low_open: bool = False, high_open: bool = False) -> None:
        value = getattr(self, name)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if ok and low is not None:
            ok = value > low if low_open else value >= low
        if ok and high is not None:
            ok = value < high if high_open else value <= high
        if not ok:
            bounds = []
            if low is not None:
                bounds.append(f"{'>' if low_open else '>='} {low:g}")
            if high is not None:
                bounds.append(f"{'<' if high_open else '<='} {high:g}")
            raise ConfigError(f"{self.name} {name} must be a number {' and '.join(bounds)}; got {value!r} "
                              f"({_flag(name)})")

    def _check_int(self, name: str, low: int, optional: bool = False) -> None:
        value = getattr(self, name)
        if optional and value is None:
            return
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ConfigError(f"{self.name} {name} must be an integer >= {low}; got {value!r} ({_flag(name)})")

    def _check_choice(self, name: str, choices) -> None:
        value = getattr(self, name)
        if value not in choices:
            raise ConfigError(f"{self.name} {name} must be one of {', '.join(choices)}; got {value!r} ({_flag(name)})")

    def _check_layers_fit(self, wanted: int | None, available: int, name: str = "layers") -> None:
        if wanted is not None and wanted > available:
            raise ConfigError(f"{self.name} {name}={wanted} is more than the {available} trainable layer groups this "
                              f"backbone has; use {_flag(name)} 1 to {available}, or strategy full")

    # -- what trains, and how fast ----------------------------------------------------------------
    def groups_to_train(self, available: int) -> int:
        """How many layer groups (from the top) ever train; validates against what the backbone has."""
        return available

    def groups_at_epoch(self, epoch: int, available: int) -> int:
        """How many layer groups (from the top) train during ``epoch`` (0-based)."""
        return self.groups_to_train(available)

    def group_learning_rate(self, depth: int) -> float:
        """Learning rate of the backbone group ``depth`` levels below the top trainable one (0 = top)."""
        return self.learning_rate * self.backbone_lr_ratio * self.layer_decay ** depth
