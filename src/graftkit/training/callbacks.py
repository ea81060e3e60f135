"""Trainer callbacks: the unfreezing schedule, sealing complete checkpoints, progress without stdout."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import torch
from transformers import ProgressCallback, TrainerCallback

from graftkit.training.checkpoints import seal_checkpoint
from graftkit.training.distributed import any_process

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


def padded_concat(tensors: list, pad: int = -100):
    """Batches joined along the first axis, trailing axes padded to the widest with ``pad`` (the Trainer's own
    rule for predictions of different lengths: per-token outputs of a word task)."""
    widest = [max(t.shape[d] for t in tensors) for d in range(1, tensors[0].ndim)]
    padded = []
    for t in tensors:
        grow = [(0, w - t.shape[d + 1]) for d, w in enumerate(widest)]
        padded.append(t if not any(g for _, g in grow) else
                      torch.nn.functional.pad(t, [x for pair in reversed(grow) for x in pair], value=pad))
    return torch.cat(padded).numpy()


class RunningOutputs(TrainerCallback):
    """The model's outputs on the training batches as the loop trained on them, kept per epoch: training metrics
    without another pass of the tuned backbone over the whole training split (on 16,000 rows that pass cost
    minutes nobody had estimated). They are running figures, as Keras reports them: dropout and augmentation on,
    the weights moving during the epoch; under data parallelism each process sees its own share of the rows."""

    def __init__(self, model: torch.nn.Module):
        self.epochs: dict[int, tuple] = {}  # completed epoch (1-based) -> (outputs, labels) as numpy arrays
        self._outputs: list = []
        self._labels: list = []
        self._hook = model.register_forward_hook(self._record, with_kwargs=True)

    def _record(self, module, args, kwargs, output) -> None:
        labels = kwargs.get("labels")
        if module.training and labels is not None and torch.is_grad_enabled():
            self._outputs.append(output.logits.detach().to("cpu", torch.float32))
            self._labels.append(labels.detach().cpu())

    def on_epoch_begin(self, args, state, control, **kwargs):
        self._outputs, self._labels = [], []

    def on_epoch_end(self, args, state, control, **kwargs):
        if self._outputs:
            epoch = math.ceil((state.epoch or 0.0) - 1e-6)  # a partial epoch (a stop at the budget) counts as one
            self.epochs[epoch] = (padded_concat(self._outputs), padded_concat(self._labels))
        self._outputs, self._labels = [], []

    def close(self) -> None:
        self._hook.remove()


class Deadline(TrainerCallback):
    """Stops training cleanly when the next step would run past ``deadline`` (a ``time.monotonic()`` value),
    keeping back the time of one evaluation and checkpoint (measured on the last one; ``eval_s`` before the first):
    the Trainer then evaluates and saves the partial epoch and restores the best checkpoint so far, as at any
    epoch end. ``control.should_training_stop`` is the Trainer's public way to end a run early. Under torchrun
    the decision is taken together (``any_process``): every process stops at the same step once one would run
    past its deadline, so no process waits in a collective the others never reach."""

    def __init__(self, deadline: float, eval_s: float = 0.0):
        self.deadline = deadline
        self.eval_s = eval_s
        self.stopped: str | None = None
        self._step_started = self._eval_started = None
        self._step_s = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._step_started = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        now = time.monotonic()
        if self._step_started is not None:
            self._step_s = max(self._step_s * 0.8, now - self._step_started)  # a recent, cautious step time
        if self.stopped is None and any_process(now + self._step_s + self.eval_s >= self.deadline):
            self.stopped = (f"stopped at the time budget after {state.epoch or 0:.2f} epochs (step "
                            f"{state.global_step}); the best checkpoint so far is kept")
            logger.warning("%s", self.stopped)
            control.should_training_stop = True

    def on_epoch_end(self, args, state, control, **kwargs):
        self._eval_started = time.monotonic()

    def on_save(self, args, state, control, **kwargs):
        if self._eval_started is not None:  # evaluation + checkpoint after an epoch: what a stop still costs
            self.eval_s = time.monotonic() - self._eval_started
            self._eval_started = None
