"""Domain-adversarial training (DANN; Ganin et al. 2016, "Domain-Adversarial Training of Neural Networks"),
plugged into the one engine as an auxiliary objective of ``GraftModel``.

A domain classifier reads the pooled (standardised) features of each source batch and of a *target* batch of the
same size through a gradient-reversal layer: forward the identity, backward the gradient times ``-λ``. The
classifier learns to tell the domains apart; the backbone, receiving the reversed gradient, learns features that
it cannot, while the task loss keeps them useful for the labelled source. ``λ`` follows the paper's schedule
``2 / (1 + exp(-10 p)) - 1`` over training progress ``p`` in [0, 1] (0 at the start, when the domain classifier is
still noise, towards 1), a pure function of the Trainer's step, so resume and DDP need no state of their own.

Each training example carries a paired target row (``DomainExamples``); the pairing shifts by the source size
every epoch so that a target set larger than the source is covered over the epochs. The collator batches the
target rows as a batch of their own (decoded and preprocessed by the backbone like the source rows); validation,
evaluation and prediction never see them. Any modality: the objective reads the backbone's pooled features.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset
from transformers import TrainerCallback

from graftkit.errors import ConfigError
from graftkit.training.callbacks import epoch_index

logger = logging.getLogger(__name__)

TARGET_KEY = "target_inputs"


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, strength):
        ctx.strength = strength
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.strength * grad, None


def reverse_gradient(x: torch.Tensor, strength: float) -> torch.Tensor:
    """The identity forward; the gradient times ``-strength`` backward (the gradient-reversal layer)."""
    return _ReverseGradient.apply(x, float(strength))


def ganin_lambda(progress: float, gamma: float = 10.0) -> float:
    """Ganin et al.'s adaptation factor ``2 / (1 + exp(-gamma p)) - 1`` at training progress ``p`` in [0, 1]."""
    p = min(max(float(progress), 0.0), 1.0)
    return 2.0 / (1.0 + math.exp(-gamma * p)) - 1.0


class DomainAdversarial(nn.Module):
    """The auxiliary objective: domain classifier (two layers, as the paper's) behind gradient reversal, binary
    cross-entropy of source (0) vs target (1), times ``weight``. ``progress`` is set by ``AdversarialProgress``."""

    def __init__(self, hidden_size: int, weight: float = 1.0, width: int = 256):
        super().__init__()
        self.classifier = nn.Sequential(nn.Linear(hidden_size, width), nn.ReLU(), nn.Dropout(0.1), nn.Linear(width, 1))
        self.weight = weight
        self.progress = 0.0
        self.seen = {"correct": 0, "rows": 0, "loss_sum": 0.0, "batches": 0}

    @property
    def strength(self) -> float:
        return ganin_lambda(self.progress)

    def forward(self, model, source: torch.Tensor, batch: dict) -> torch.Tensor | None:
        target_inputs = batch.get(TARGET_KEY)
        if target_inputs is None or not model.training:
            return None
        target = model.standardized(target_inputs)
        if source.ndim != 2:
            raise ConfigError("domain-adversarial training reads one feature vector per row; this task reads one per "
                              "word, so drop --adapt-to")
        features = torch.cat([source, target])
        domains = torch.cat([torch.zeros(len(source)), torch.ones(len(target))]).to(features.device)
        logits = self.classifier(reverse_gradient(features, self.strength)).squeeze(-1)
        loss = nn.functional.binary_cross_entropy_with_logits(logits.float(), domains)
        with torch.no_grad():
            self.seen["correct"] += int(((logits > 0).float() == domains).sum())
            self.seen["rows"] += len(domains)
            self.seen["loss_sum"] += float(loss)
            self.seen["batches"] += 1
        return self.weight * loss

    def describe(self) -> dict:
        rows = max(self.seen["rows"], 1)
        return {"method": "DANN (Ganin et al. 2016): domain classifier behind gradient reversal on the pooled features",
                "weight": self.weight, "lambda_schedule": "2 / (1 + exp(-10 p)) - 1",
                "lambda_final": round(self.strength, 4),
                "domain_accuracy_last_epoch": round(self.seen["correct"] / rows, 4) if self.seen["rows"] else None,
                "domain_loss_last_epoch": round(self.seen["loss_sum"] / max(self.seen["batches"], 1), 4)
                if self.seen["batches"] else None}


class DomainExamples(Dataset):
    """Source examples, each paired with a target row (``target``): row ``i`` of epoch ``e`` takes target row
    ``(i + e * len(source)) mod len(target)``."""

    def __init__(self, source, target):
        self.source = source
        self.target = target
        self.epoch = 0  # set by AdversarialProgress at each epoch's start

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict:
        row = self.source[index]
        return {**row, "target": self.target[(index + self.epoch * len(self.source)) % len(self.target)]}

    def __getattr__(self, name):  # the source's own attributes (labels, table, ...) for the engine
        if name in ("source", "target", "epoch"):
            raise AttributeError(name)
        return getattr(self.source, name)


class DomainCollator:
    """The source batch as the backbone's collator makes it, plus the paired target rows as their own batch
    (``target_inputs``); batches without target rows (validation) pass through unchanged."""

    def __init__(self, base):
        self.base = base

    def __call__(self, rows: list[dict]) -> dict:
        if not all("target" in row for row in rows):
            return self.base(rows)
        targets = [row["target"] for row in rows]
        batch = self.base([{k: v for k, v in row.items() if k != "target"} for row in rows])
        batch[TARGET_KEY] = self.base(targets)["inputs"]
        return batch

    def __getattr__(self, name):  # epoch (augmentation), sample, ... of the backbone's collator
        if name == "base":
            raise AttributeError(name)
        return getattr(self.base, name)


class AdversarialProgress(TrainerCallback):
    """λ from the Trainer's own step count; the pairing offset from its epoch; the domain figures per epoch."""

    def __init__(self, objective: DomainAdversarial, examples: DomainExamples):
        self.objective = objective
        self.examples = examples

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.examples.epoch = epoch_index(state)
        self.objective.seen = {"correct": 0, "rows": 0, "loss_sum": 0.0, "batches": 0}

    def on_step_begin(self, args, state, control, **kwargs):
        self.objective.progress = state.global_step / max(state.max_steps, 1)

    def on_log(self, args, state, control, logs=None, **kwargs):
        # the Trainer has appended this entry to its history already: the figures go there (and so into the
        # per-epoch rows of the manifest)
        entry = state.log_history[-1] if state.log_history else None
        if entry is not None and "loss" in entry and self.objective.seen["rows"]:
            described = self.objective.describe()
            entry["domain_accuracy"] = described["domain_accuracy_last_epoch"]
            entry["dann_lambda"] = described["lambda_final"]


def target_examples(target_table, examples_class):
    """The target rows as engine examples (no labels: zeros, never read)."""
    return examples_class(target_table, np.zeros(len(target_table), dtype=np.int64))


def attach(model, train, target, collator, weight: float):
    """Plug DANN into a built ``GraftModel``: returns ``(train examples with target pairs, collator, callbacks)``."""
    objective = DomainAdversarial(model.head.in_features, weight)
    model.add_objective(objective)
    paired = DomainExamples(train, target)
    logger.info("domain-adversarial training: %d target rows paired with %d source rows per epoch (weight %g, "
                "λ from 0 to %.3f)", len(target), len(train), weight, ganin_lambda(1.0))
    return paired, DomainCollator(collator), [AdversarialProgress(objective, paired)]
