"""Trainer callbacks: the unfreezing schedule, sealing complete checkpoints, progress without stdout."""

from __future__ import annotations

import logging
import math
from pathlib import Path

from transformers import ProgressCallback, TrainerCallback

from graftkit.training.checkpoints import seal_checkpoint

logger = logging.getLogger(__name__)


def epoch_index(state) -> int:
    """0-based index of the epoch about to run (``state.epoch`` counts completed epochs as a float)."""
    return int(math.floor((state.epoch or 0.0) + 1e-6))


class UnfreezeSchedule(TrainerCallback):
    """Sets the trainable layer groups at the start of every epoch from the strategy's schedule.

    Gradual unfreezing (Howard & Ruder 2018, ULMFiT) as a pure function of the epoch number: a run
    resumed from a checkpoint restores the schedule from the epoch it resumes at, with no state of its
    own to save, and every data-parallel process computes the same groups.
    """

    def __init__(self, model, strategy):
        self.model = model
        self.strategy = strategy

    def groups_for(self, epoch: int) -> int:
        return self.strategy.groups_at_epoch(epoch, len(self.model.plan))

    def on_epoch_begin(self, args, state, control, **kwargs):
        epoch = epoch_index(state)
        groups = self.groups_for(epoch)
        logger.info("epoch %d: training the head and the top %d of %d layer groups", epoch + 1, groups,
                    len(self.model.plan))
        self.model.set_trainable_groups(groups)


class AugmentEpoch(TrainerCallback):
    """Tells the collator the epoch about to run, from which (with the seed and each example's position) its
    augmenter draws: a pure function of the epoch, like the unfreezing schedule, so resume and DDP need no
    state of their own."""

    def __init__(self, collator):
        self.collator = collator

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.collator.epoch = epoch_index(state)


class SealCheckpoints(TrainerCallback):
    """After the Trainer has written a checkpoint, record the hash of each file in it (written last, by
    atomic rename): a checkpoint without its seal is incomplete and never resumed from."""

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                seal_checkpoint(folder)


class LoggingProgress(ProgressCallback):
    """The Trainer's progress bars, with the per-epoch figures sent to the log (stderr) instead of
    printed to stdout, where they would break ``--json`` output."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            shown = {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in logs.items() if k != "total_flos"}
            logger.info("%s", shown)


class QuietLog(TrainerCallback):
    """No progress bars (``progress=False``): the per-epoch figures go to the log only."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            logger.debug("%s", {k: v for k, v in logs.items() if k != "total_flos"})
