"""``finetune`` (the top N layer groups train) and ``full`` (every group trains, layer-wise decay).

Unfreezing the top blocks first follows Yosinski et al. 2014 ("How transferable are features in deep
neural networks?"): lower layers are general, upper ones task-specific. ``full`` fine-tunes everything
with layer-wise learning-rate decay (Howard & Ruder 2018; Clark et al. 2020).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from graftkit.strategies.base import register_strategy
from graftkit.strategies.trainable import LAYERS_HELP, TrainableConfig


@register_strategy
@dataclass
class Finetune(TrainableConfig):
    name = "finetune"

    layers: int | None = field(default=2, metadata={"help": LAYERS_HELP})

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_int("layers", 1)

    def groups_to_train(self, available: int) -> int:
        self._check_layers_fit(self.layers, available)
        return self.layers


@register_strategy
@dataclass
class Full(TrainableConfig):
    name = "full"

    layer_decay: float = field(default=0.8, metadata={
        "help": "layer-wise learning-rate decay: each group below the top one learns this times slower"})
