"""Examples for a word task (token classification): each training example is one window of a sentence
(``tasks.alignment``), its labels on the first sub-token of every word the window owns and ``IGNORE`` elsewhere,
so the engine's loss and its per-epoch scores read exactly the words that feature extraction and prediction
read."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from graftkit.features.words import check_word_backbone
from graftkit.tasks.alignment import IGNORE, word_windows

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class WordExamples(Dataset):
    side_size = 0  # per-word features carry no per-row side features
    groups_by_length = True  # every item carries its window's ``input_ids`` (for the length-grouped sampler)

    def __init__(self, table, labels: np.ndarray, task, backbone):
        check_word_backbone(backbone)
        self.table = table
        self.labels = labels
        self.windows = word_windows(backbone.tokenizer, task.words(table), backbone.max_length)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict:
        window = self.windows[index]
        labels = np.full(len(window.encoding["input_ids"]), IGNORE, dtype=np.int64)
        labels[window.positions] = np.asarray(self.labels[window.sentence])[window.words]
        return {"encoding": {k: v for k, v in window.encoding.items() if k in MODEL_INPUTS}, "label": labels,
                "input_ids": window.encoding["input_ids"]}

    def tokenized(self, backbone) -> WordExamples:
        """Already tokenised: the windows are built once, when the examples are."""
        return self

    def by_length(self) -> WordExamples:
        """Windows keep their order (they are cut from each sentence in turn, and a window is padded only to the
        longest in its batch by ``WordCollator``): the engine's length-sorted validation is for row examples."""
        return self

    def collator(self, backbone, augmenter=None):
        return WordCollator(backbone)

    @staticmethod
    def features_of(backbone):
        """What the model's output layer reads: the backbone's per-token features."""
        return backbone.token_states


class WordCollator:
    """``[{encoding, label}] -> {"inputs": padded tensors, "labels": (batch, tokens) with IGNORE padding}``."""

    def __init__(self, backbone):
        self.backbone = backbone
        self.epoch = 0

    def __call__(self, rows: list[dict]) -> dict:
        keys = list(rows[0]["encoding"])
        encoded = {k: [row["encoding"][k] for row in rows] for k in keys}
        inputs = self.backbone.collate(encoded, range(len(rows)))
        width = inputs["input_ids"].shape[1]
        labels = np.full((len(rows), width), IGNORE, dtype=np.int64)
        for i, row in enumerate(rows):
            labels[i, :len(row["label"])] = row["label"]
        return {"inputs": dict(inputs), "labels": torch.from_numpy(labels)}

    def sample(self, examples: WordExamples, n: int = 2) -> dict:
        return self([examples[i] for i in range(min(n, len(examples)))])["inputs"]
