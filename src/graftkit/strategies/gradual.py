"""``gradual``: gradual unfreezing (Howard & Ruder 2018, "Universal Language Model Fine-tuning for Text
Classification", ULMFiT §3.3).

The first epoch trains the new head only; every ``unfreeze_every`` epochs one more layer group is
unfrozen, from the top down, until ``layers`` groups (default: all) train. Learning rates are
discriminative (ULMFiT divides by 2.6 per layer; the default ``layer_decay`` 0.8 is gentler, which suits
deeper stacks of layer groups). The schedule is a pure function of the epoch number, so it is restored
exactly when a run resumes from a checkpoint and is identical on every data-parallel process.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from graftkit.strategies.base import register_strategy
from graftkit.strategies.trainable import LAYERS_HELP, TrainableConfig


@register_strategy
@dataclass
class Gradual(TrainableConfig):
    name = "gradual"

    layer_decay: float = field(default=0.8, metadata={
        "help": "layer-wise learning-rate decay: each group below the top one learns this times slower"})
    layers: int | None = field(default=None, metadata={"help": LAYERS_HELP})
    unfreeze_every: int = field(default=1, metadata={
        "help": "gradual: epochs between unfreezing one more layer group (the first epoch trains the head only)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_int("layers", 1, optional=True)
        self._check_int("unfreeze_every", 1)

    def groups_to_train(self, available: int) -> int:
        self._check_layers_fit(self.layers, available)
        return available if self.layers is None else self.layers

    def groups_at_epoch(self, epoch: int, available: int) -> int:
        return min(self.groups_to_train(available), max(epoch, 0) // self.unfreeze_every)
