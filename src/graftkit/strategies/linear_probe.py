"""``linear-probe``: frozen pretrained backbone + a light head on its pooled features.

The first rung of the transfer-learning playbook (Kornblith et al. 2019, "Do Better ImageNet Models
Transfer Better?" use the same L2-regularised logistic regression protocol with C chosen by validation).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from graftkit.errors import ConfigError
from graftkit.strategies.base import StrategyConfig, register_strategy

HEADS = ("linear", "logreg", "mlp")  # "logreg": the name "linear" had before tasks other than classification


@register_strategy
@dataclass
class LinearProbe(StrategyConfig):
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
    label_init: bool = field(default=False, metadata={
        "help": "start the linear head from the class-description embeddings and shrink it towards them instead "
                "of towards zero (a prior for 1-8 labels per class; Wortsman et al. 2022's zero-shot head init)"})
    label_descriptions: str | dict | None = field(default=None, metadata={
        "help": "JSON or CSV file class -> description (default: the class names, when they are words, not ids)"})
    template: str | None = field(default=None, metadata={
        "help": "wraps each description, {} marks where it goes, e.g. 'This message is about {}.'"})
    logit_scale: float = field(default=20.0, metadata={
        "help": "zero-shot: logits = scale x cosine similarity (temperature calibration refines it on labelled rows)"})

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
        from graftkit.strategies.descriptions import check_template

        check_template(self.template)
        if self.label_init and self.head == "mlp":
            raise ConfigError("--label-init needs the linear head; an mlp has no class weights to start from "
                              "descriptions (--head linear)")
        if not self.label_init and self.label_descriptions is not None:
            raise ConfigError("--label-descriptions on linear-probe is read only with --label-init true")
        if not (isinstance(self.logit_scale, (int, float)) and self.logit_scale > 0):
            raise ConfigError(f"linear-probe logit_scale must be > 0; got {self.logit_scale!r} (--logit-scale)")

    def prepare(self, backbone, task) -> None:
        if self.label_init:
            from graftkit.strategies.zero_shot import description_embeddings

            self._queries = description_embeddings(backbone, task, self.label_descriptions, self.template)[0]

    def fit_head(self, task, X, y, seed: int, fixed: dict | None = None):
        """The task's head on frozen features; ``fixed``: hyper-parameters a search already chose (cross-fitting)."""
        params = {"C": self.C, "cv_folds": self.cv_folds, "hidden_size": self.hidden_size, "max_iter": self.max_iter,
                  "standardize": self.standardize, **(fixed or {})}
        if self.label_init:  # the zero-shot head on unstandardised features: X @ prior.T ~ logit_scale x cosine
            queries = self._queries / np.maximum(np.linalg.norm(self._queries, axis=1, keepdims=True), 1e-12)
            norm = float(np.linalg.norm(X, axis=1).mean()) or 1.0
            params["prior"] = self.logit_scale * queries / norm
        return task.fit_head(X, y, head="mlp" if self.head == "mlp" else "linear", seed=seed, **params)
