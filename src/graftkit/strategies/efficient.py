"""Parameter-efficient strategies: ``lora``, ``ia3``, ``adapters`` and ``bitfit``.

The pretrained weights stay as they are; a small set of new (or, for BitFit, selected) parameters trains
with the head, so the artifact holds only those plus the head, and many tasks share one base model.

- ``lora`` (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models"): a rank-``rank`` update
  ``B·A`` beside chosen Linear / Conv layers, scaled by ``alpha / rank``; through ``peft``.
- ``ia3`` (Liu et al. 2022, "Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper than In-Context
  Learning"): learned per-channel scales of keys, values and the feed-forward input; through ``peft``.
- ``adapters`` (Houlsby et al. 2019, "Parameter-Efficient Transfer Learning for NLP"; Pfeiffer et al. 2021
  placement, after each block's feed-forward output): a residual bottleneck down → GELU → up, the up
  projection zero-initialised so training starts from the pretrained function. No ``peft`` release has
  bottleneck adapters, and AdapterHub's ``adapters`` pins transformers 4.x, so graftkit carries this one.
- ``bitfit`` (Ben Zaken et al. 2022, "BitFit: Simple Parameter-efficient Fine-tuning for Transformer-based
  Masked Language-models"): only the backbone's bias terms train.

They run on the one training engine (schedules, early stopping, resume, data-parallel). New parameters
learn at ``learning_rate × backbone_lr_ratio`` (default ratio 1: they start from zero or one, not from
pretrained values that must be protected). L2-SP pulls toward pretrained weights, so it applies to BitFit
only; LoRA / IA3 / adapters leave those weights untouched by construction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from graftkit.errors import ConfigError
from graftkit.strategies.base import register_strategy
from graftkit.strategies.trainable import TrainableConfig

TARGETS_HELP = ("comma-separated module names (or name suffixes) to adapt; default: chosen per backbone family; "
                "a name that matches nothing fails with the candidates")
RATIO_HELP = "learning rate of the new parameters as a fraction of the head's"


def split_names(value) -> list[str] | None:
    """``"query,value"`` or ``["query", "value"]`` → ``["query", "value"]``; None stays None."""
    if value is None:
        return None
    names = value.split(",") if isinstance(value, str) else list(value)
    return [str(n).strip() for n in names if str(n).strip()]


@dataclass
class ParameterEfficientConfig(TrainableConfig):
    """Base of the parameter-efficient strategies; not registered itself."""

    parameter_efficient: ClassVar[bool] = True
    uses_peft: ClassVar[bool] = False  # saved and loaded through the peft library (PeftModel.from_pretrained)

    learning_rate: float = field(default=1e-3, metadata={
        "help": "learning rate of the new head; backbone groups get learning_rate × backbone_lr_ratio"})
    backbone_lr_ratio: float = field(default=1.0, metadata={"help": RATIO_HELP})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.l2_sp and self.name != "bitfit":
            raise ConfigError(f"{self.name} leaves the pretrained weights unchanged, so l2_sp (a pull toward them) "
                              "does not apply; drop --l2-sp, or use it with bitfit / finetune / full")
        if getattr(self, "target_modules", None) is not None:
            if not split_names(self.target_modules):
                raise ConfigError(f"{self.name} target_modules is empty; give module names such as query,value "
                                  "(--target-modules), or leave it out for the backbone family's default")

    def groups_to_train(self, available: int) -> int:
        return 0  # no pretrained layer group trains as a whole; the new parameters train instead

    def targets(self) -> list[str] | None:
        return split_names(getattr(self, "target_modules", None))


@register_strategy
@dataclass
class Lora(ParameterEfficientConfig):
    name = "lora"
    uses_peft = True

    rank: int = field(default=8, metadata={"help": "LoRA rank r of the update B·A"})
    alpha: float = field(default=16.0, metadata={"help": "LoRA scaling: the update is multiplied by alpha / rank"})
    dropout: float = field(default=0.1, metadata={"help": "dropout on the input of the LoRA branch"})
    target_modules: str | None = field(default=None, metadata={"help": TARGETS_HELP})

    def __post_init__(self) -> None:
        self._check_int("rank", 1)
        self._check_number("alpha", low=0.0, low_open=True)
        self._check_number("dropout", low=0.0, high=1.0, high_open=True)
        super().__post_init__()


@register_strategy
@dataclass
class IA3(ParameterEfficientConfig):
    name = "ia3"
    uses_peft = True

    learning_rate: float = field(default=3e-3, metadata={
        "help": "learning rate of the new head; backbone groups get learning_rate × backbone_lr_ratio"})
    target_modules: str | None = field(default=None, metadata={"help": TARGETS_HELP})
    feedforward_modules: str | None = field(default=None, metadata={
        "help": "ia3: which target modules are feed-forward (scaled on their input); default per family"})


@register_strategy
@dataclass
class Adapters(ParameterEfficientConfig):
    name = "adapters"

    bottleneck: int = field(default=64, metadata={"help": "adapters: hidden size of each bottleneck adapter"})
    target_modules: str | None = field(default=None, metadata={"help": TARGETS_HELP})

    def __post_init__(self) -> None:
        self._check_int("bottleneck", 1)
        super().__post_init__()


@register_strategy
@dataclass
class BitFit(ParameterEfficientConfig):
    name = "bitfit"
