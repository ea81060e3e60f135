"""``linear-probe``: frozen pretrained backbone + a light head on its pooled features.

The first rung of the transfer-learning playbook (Kornblith et al. 2019, "Do Better ImageNet Models
Transfer Better?" use the same L2-regularised logistic regression protocol with C chosen by validation).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from graftkit.errors import ConfigError
from graftkit.strategies.base import StrategyConfig, register_strategy
from graftkit.strategies.label_prior import LabelPriorConfig, description_prior

HEADS = ("linear", "logreg", "mlp")  # "logreg": the name "linear" had before tasks other than classification


@register_strategy
@dataclass
class LinearProbe(LabelPriorConfig, StrategyConfig):
    name = "linear-probe"

    head: str = field(default="linear", metadata={
        "help": "head on the frozen features: linear (the task's linear model: logistic regression, one-vs-rest "
                "logistic regression for multi-label, ridge for regression) or mlp (classification)"})
    C: float | None = field(default=None, metadata={
        "help": "inverse L2 strength of the linear head (ridge: alpha = 1/C); default: chosen by CV"})
    cv_folds: int = field(default=5, metadata={"help": "folds used to choose C on the training split"})
    hidden_size: int = field(default=256, metadata={"help": "hidden units of the mlp head"})
    max_iter: int = field(default=1000, metadata={"help": "solver iterations of the head"})
    standardize: bool = field(default=True, metadata={"help": "standardise features before the head"})
    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ConfigError(f"linear-probe head must be one of {', '.join(HEADS)}; got {self.head!r} (--head)")
        if self.C is not None and not self.C > 0:
            raise ConfigError(f"linear-probe C must be > 0; got {self.C!r} (--C)")
        for name in ("cv_folds", "hidden_size", "max_iter"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < (2 if name == "cv_folds" else 1):
                raise ConfigError(f"linear-probe {name} must be an integer >= {2 if name == 'cv_folds' else 1}; "
                                  f"got {value!r} (--{name.replace('_', '-')})")
        self._check_label_prior()
        if self.label_init and self.head == "mlp":
            raise ConfigError("--label-init needs the linear head; an mlp has no class weights to start from "
                              "descriptions (--head linear)")

    def prepare(self, backbone, task) -> None:
        if self.label_init:
            from graftkit.strategies.zero_shot import description_embeddings

            self._queries = description_embeddings(backbone, task, self.label_descriptions, self.template)[0]

    def fit_head(self, task, X, y, seed: int, fixed: dict | None = None):
        """The task's head on frozen features; ``fixed``: hyper-parameters a search already chose (cross-fitting)."""
        params = {"C": self.C, "cv_folds": self.cv_folds, "hidden_size": self.hidden_size, "max_iter": self.max_iter,
                  "standardize": self.standardize, **(fixed or {})}
        if self.label_init:
            params["prior"] = description_prior(self._queries, X, self.logit_scale)
        return task.fit_head(X, y, head="mlp" if self.head == "mlp" else "linear", seed=seed, **params)
