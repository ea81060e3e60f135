"""Training batches of like token length (``group_by_length``, the Trainer's length-grouped sampler): text rows
tokenised up front pad less per batch than uniformly random batches (the engine tests train with it on), and
the order is drawn from ``seed + epoch`` alone, so a resumed run trains the same model
(``tests/test_training.py::test_kill_9_then_resume_gives_the_same_model``)."""

from __future__ import annotations

import random

import pandas as pd
import pytest
import torch
from conftest import WORDS
from transformers import TrainerCallback
from transformers.trainer_pt_utils import LengthGroupedSampler

import graftkit as gk
from graftkit.training.sampling import EpochSeeded


def mixed_length_frame(n: int = 256, seed: int = 0) -> pd.DataFrame:
    """Half the rows of 2 words, half of 40: a random batch almost always holds a long row."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        size = 2 if (i // 2) % 2 == 0 else 40
        words = [rng.choice(WORDS[label])] + [rng.choice(WORDS["neutral"]) for _ in range(size - 1)]
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": label})
    return pd.DataFrame(rows)


class PaddingMeter(TrainerCallback):
    """Counts, over every training batch, the padded width × rows and the real tokens the model received."""

    def __init__(self):
        self.padded = self.real = 0
        self.batches = 0
        self.sampler = None

    def on_train_begin(self, args, state, control, model=None, train_dataloader=None, **kwargs):
        self.sampler = train_dataloader.batch_sampler.sampler

        def record(module, inputs, kwargs):
            if module.training:
                mask = kwargs.get("inputs", inputs[0] if inputs else None)["attention_mask"]
                self.padded += mask.numel()
                self.real += int(mask.sum())
                self.batches += 1
        self.hook = model.register_forward_pre_hook(record, with_kwargs=True)

    def on_train_end(self, args, state, control, **kwargs):
        self.hook.remove()


def padded_share(backbone_dir, table, **params) -> float:
    meter = PaddingMeter()
    gk.Graft(str(backbone_dir), strategy="full", epochs=1, batch_size=8, val_size=0.0, patience=0, progress=False,
             calibrate=False, seed=0, **params).fit(table, callbacks=[meter])
    assert meter.batches == 32  # 256 rows, batch 8: every batch was seen
    # grouped: upstream's length-grouped sampler inside graftkit's per-epoch seed (fails if the Trainer stops
    # building it, so that the wrapper would silently stop applying)
    grouped = params.get("group_by_length", True)
    assert isinstance(meter.sampler, EpochSeeded) == grouped, type(meter.sampler)
    assert not grouped or isinstance(meter.sampler.sampler, LengthGroupedSampler)
    return 1 - meter.real / meter.padded


@pytest.mark.usefixtures("one_thread")
def test_text_batches_are_grouped_by_length_unless_turned_off(tiny_bert_dir):
    table = gk.load_data(mixed_length_frame(), text="text", label="label")
    grouped = padded_share(tiny_bert_dir, table)
    uniform = padded_share(tiny_bert_dir, table, group_by_length=False)
    # random batches of 8 from half-short, half-long rows pad ~half their tokens; grouped ones (sorted within random
    # groups of 8 batches at this size) far fewer
    assert uniform > 0.3, uniform
    assert grouped < 0.5 * uniform, (grouped, uniform)


def test_the_grouped_order_is_a_function_of_seed_and_epoch_only():
    lengths = [2, 40] * 64
    sampler = EpochSeeded(LengthGroupedSampler(8, lengths=lengths), seed=3)
    sampler.set_epoch(1)
    first = list(sampler)
    torch.manual_seed(123)  # the process-wide RNG (what upstream's sampler alone draws from) moves on
    torch.rand(7)
    sampler.set_epoch(1)
    assert list(sampler) == first and sorted(first) == list(range(len(lengths)))
    sampler.set_epoch(2)
    assert list(sampler) != first
    assert list(EpochSeeded(LengthGroupedSampler(8, lengths=lengths), seed=3)) != first  # epoch 0
