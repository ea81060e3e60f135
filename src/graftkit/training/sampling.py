"""Length-grouped training batches that a resumed run draws exactly as the uninterrupted one did.

The Trainer's ``LengthGroupedSampler`` shuffles with the process-wide torch RNG (``generator=None``), so a run
resumed from a checkpoint, or a second process under torchrun, draws another order than the first run did and
trains another model. The Trainer's random sampler does not have that problem: accelerate reseeds it each epoch
(``seed + epoch``). ``EpochSeeded`` gives the length-grouped sampler the same: its own generator, reseeded by
``set_epoch`` (which the Trainer calls at the start of every epoch, resumed or not). This is graftkit's one
Trainer subclass; ``tests/test_length_grouping.py`` fails if the Trainer stops building the sampler we wrap.
"""

from __future__ import annotations

import torch
from torch.utils.data import Sampler
from transformers import Trainer
from transformers.trainer_pt_utils import LengthGroupedSampler


class EpochSeeded(Sampler):
    """``sampler`` (a LengthGroupedSampler) drawing from a generator seeded with ``seed + epoch``."""

    def __init__(self, sampler: LengthGroupedSampler, seed: int):
        self.sampler, self.seed = sampler, seed
        sampler.generator = torch.Generator()
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.generator.manual_seed(self.seed + int(epoch))

    def __iter__(self):
        return iter(self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


class GraftTrainer(Trainer):
    """The Trainer with its length-grouped training sampler seeded per epoch; everything else is upstream's."""

    def _get_train_sampler(self, train_dataset=None):
        sampler = super()._get_train_sampler(train_dataset)
        if isinstance(sampler, LengthGroupedSampler):
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            return EpochSeeded(sampler, seed)
        return sampler
