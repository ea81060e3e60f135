"""The class-description prior of a linear head (``label_init``), shared by ``linear-probe`` (descriptions embedded
by the frozen encoder) and ``contrastive`` (by the encoder its stage one tuned).

The head's weights start from, and are shrunk towards, ``logit_scale x`` the unit description embeddings divided
by the features' mean norm, so that ``X @ prior.T`` is about ``logit_scale x cosine``: the zero-shot head
(Wortsman et al. 2022's zero-shot initialisation, with the prior as the centre of the L2 penalty as in L2-SP).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from graftkit.errors import ConfigError
from graftkit.strategies.descriptions import check_template


@dataclass
class DescriptionsConfig:
    """The class descriptions' fields (zero-shot, and the label prior below) and their checks."""

    label_descriptions: str | dict | None = field(default=None, metadata={
        "help": "JSON or CSV file class -> description (default: the class names, when they are words, not ids)"})
    template: str | None = field(default=None, metadata={
        "help": "wraps each description, {} marks where it goes, e.g. 'This message is about {}.'"})
    logit_scale: float = field(default=20.0, metadata={
        "help": "zero-shot: logits = scale x cosine similarity (temperature calibration refines it on labelled rows)"})

    def _check_descriptions(self) -> None:
        check_template(self.template)
        if not (isinstance(self.logit_scale, (int, float)) and self.logit_scale > 0):
            raise ConfigError(f"{self.name} logit_scale must be > 0; got {self.logit_scale!r} (--logit-scale)")


@dataclass
class LabelPriorConfig(DescriptionsConfig):
    label_init: bool = field(default=False, metadata={
        "help": "start the linear head from the class-description embeddings and shrink it towards them instead "
                "of towards zero (a prior for 1-8 labels per class; Wortsman et al. 2022's zero-shot head init)"})

    def _check_label_prior(self) -> None:
        self._check_descriptions()
        if not self.label_init and self.label_descriptions is not None:
            raise ConfigError(f"--label-descriptions on {self.name} is read only with --label-init true")


def description_prior(queries: np.ndarray, X: np.ndarray, logit_scale: float) -> np.ndarray:
    """``(classes, dim)`` prior weights for unstandardised features ``X`` from the description embeddings."""
    unit = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
    norm = float(np.linalg.norm(X, axis=1).mean()) or 1.0
    return logit_scale * unit / norm
