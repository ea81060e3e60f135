"""``zero-shot``: no training. Each class is described in words (its name, or ``label_descriptions``), the
descriptions are embedded by the backbone into its feature space (``Backbone.embed_queries``), and a row's
logits are ``logit_scale * cos(row, description)`` (the zero-shot classifier of CLIP, Radford et al. 2021, and
of embedding-similarity text classification, e.g. Yin et al. 2019's label-name baselines).

The head is plain arrays (``SimilarityHead``: the description embeddings and the scale). With labelled rows the
model is calibrated like any other: a temperature fitted on their logits (nothing is learnt from those rows, so
every row is held out). Without any (``Graft(...).fit()``), the classes come from the description file and the
model can only ``predict`` (and ``evaluate`` on labelled data).

For a generative task (speech recognition) the same strategy is rung 0 there: the pretrained encoder-decoder
transcribes with its own ``generate`` (``training/seq2seq.py``; no head, no descriptions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from graftkit.errors import ConfigError
from graftkit.strategies.base import StrategyConfig, register_strategy
from graftkit.strategies.descriptions import described_classes, description_texts
from graftkit.strategies.label_prior import DescriptionsConfig


def description_embeddings(backbone, task, label_descriptions, template) -> tuple[np.ndarray, list[str]]:
    """The embedded description of each of ``task``'s classes, in its label order, and the texts embedded."""
    if not getattr(task, "zero_shot", False):
        raise ConfigError(f"class descriptions apply to single-label classification; this is a {task.kind} task "
                          "(--strategy zero-shot / --label-init)")
    texts = description_texts(task.labels, label_descriptions, template)
    return np.asarray(backbone.embed_queries(texts), np.float32), texts


@register_strategy
@dataclass
class ZeroShot(DescriptionsConfig, StrategyConfig):
    name = "zero-shot"
    trainable: ClassVar[bool] = False
    fits_without_rows = True  # Graft.fit() with no data: the classes are the described ones

    def __post_init__(self) -> None:
        self._check_descriptions()

    def classes_without_rows(self) -> list[str]:
        if self.label_descriptions is None:
            raise ConfigError("zero-shot without labelled rows needs the classes: pass --label-descriptions FILE "
                              "(JSON or CSV: class -> description)")
        return described_classes(self.label_descriptions)

    def prepare(self, backbone, task) -> None:
        self._queries = description_embeddings(backbone, task, self.label_descriptions, self.template)

    def fit_head(self, task, X, y, seed: int, fixed: dict | None = None):
        from graftkit.tasks.heads import SimilarityHead

        queries, texts = self._queries
        return SimilarityHead.from_queries(queries, self.logit_scale, texts)
