"""``lp-ft``: linear probing, then fine-tuning (Kumar et al. 2022, "Fine-Tuning can Distort Pretrained
Features and Underperform Out-of-Distribution").

Stage one fits the logistic-regression head of ``linear-probe`` on frozen features (from graftkit's
feature cache, so a probe already run costs nothing); its weights, standardisation folded in, become
the initial linear head. Stage two fine-tunes backbone and head from there, so the backbone's features
are not distorted by gradients from a random head. As in the paper, the fine-tuning stage uses one small
learning rate for head and backbone alike by default (``backbone_lr_ratio`` 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from graftkit.errors import ConfigError
from graftkit.strategies.base import register_strategy
from graftkit.strategies.trainable import LAYERS_HELP, TrainableConfig


@register_strategy
@dataclass
class LPFT(TrainableConfig):
    name = "lp-ft"

    learning_rate: float = field(default=5e-5, metadata={
        "help": "learning rate of the new head; backbone groups get learning_rate × backbone_lr_ratio"})
    backbone_lr_ratio: float = field(default=1.0, metadata={
        "help": "backbone learning rate as a fraction of the head's (pretrained layers learn slower)"})
    layers: int | None = field(default=None, metadata={"help": LAYERS_HELP})
    C: float | None = field(default=None, metadata={"help": "inverse L2 strength of logreg; default: chosen by CV"})
    cv_folds: int = field(default=5, metadata={"help": "folds used to choose C on the training split"})
    max_iter: int = field(default=1000, metadata={"help": "solver iterations of the head"})

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_int("layers", 1, optional=True)
        self._check_int("cv_folds", 2)
        self._check_int("max_iter", 1)
        if self.C is not None and not (isinstance(self.C, (int, float)) and self.C > 0):
            raise ConfigError(f"lp-ft C must be > 0; got {self.C!r} (--C)")

    def groups_to_train(self, available: int) -> int:
        self._check_layers_fit(self.layers, available)
        return available if self.layers is None else self.layers

    def fit_probe(self, task, X, y, seed: int):
        """Stage one: the task's linear probe on frozen features (standardised, as the engine's head input is)."""
        return task.fit_head(X, y, head="linear", C=self.C, cv_folds=self.cv_folds, max_iter=self.max_iter,
                             standardize=True, seed=seed)
