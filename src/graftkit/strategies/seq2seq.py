"""Strategies of generative (encoder-decoder) tasks: ``zero-shot`` (the pretrained model as it is, rung 0; the one
``zero-shot`` strategy of ``strategies/zero_shot.py``, which for a generative task transcribes with the model's own
``generate``) and ``decoder-only`` (every decoder group trains, the encoder stays frozen: the common recipe for adapting Whisper's
vocabulary and output style to a domain). ``finetune --layers N`` trains the top N groups of the same list
(decoder groups first, from the top), ``full`` all of them, ``lora`` adapters on the decoder
(``training/seq2seq.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from graftkit.errors import ConfigError
from graftkit.strategies.base import register_strategy
from graftkit.strategies.trainable import TrainableConfig


@register_strategy
@dataclass
class DecoderOnly(TrainableConfig):
    """The whole decoder trains (token and position embeddings, every block, the final norm); the encoder is
    frozen. There is no new head: the learning rate is the decoder's."""

    name = "decoder-only"
    frozen_encoder: ClassVar[bool] = True

    learning_rate: float = field(default=1e-4, metadata={
        "help": "learning rate of the new head; backbone groups get learning_rate × backbone_lr_ratio "
                "(decoder-only: the decoder's rate)"})
    backbone_lr_ratio: float = field(default=1.0, metadata={
        "help": "backbone learning rate as a fraction of the head's (pretrained layers learn slower)"})

    def groups_to_train(self, available: int) -> int:
        raise ConfigError("strategy decoder-only trains the decoder of an encoder-decoder model (--task "
                          "speech-recognition); for an encoder use finetune --layers N")
