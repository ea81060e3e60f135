"""The two-stage recipe: first adapt a text encoder to the target (LoRA by default, on graftkit's one training
engine through ``Graft``), then its embeddings into the trees with the tabular columns.

The encoder is tuned on each row's text columns joined (``"title | review"``), the target as the task reads it;
the featurizer then embeds each column on its own with the tuned encoder. ``rows`` caps the rows it trains on
(a seeded subsample, said in the log), since tuning costs far more than the trees.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from graftkit.data import load_data
from graftkit.fusion.encoders import TunedEncoder, column_values
from graftkit.graft import Graft

logger = logging.getLogger(__name__)

TUNE_DEFAULTS = {"epochs": 2, "learning_rate": 1e-3, "val_size": 0.1}


def joined_text(table, columns: list[str]) -> list[str]:
    parts = [column_values(table, column, "text") for column in columns]
    return [" | ".join(p for p in row if p.strip()) or "" for row in zip(*parts)]


def tune_encoder(table, task, columns: list[str], spec: str, *, strategy: str = "lora", rows: int | None = None,
                 seed: int = 0, batch_size: int = 32, device: str = "cpu", progress: bool = True,
                 callbacks=None, **params) -> TunedEncoder:
    """A ``TunedEncoder``: ``spec`` adapted to ``task`` on the joined text of ``columns``; ``callbacks`` go to the
    training engine (``auto`` passes its ``Deadline``)."""
    label = table.label_column
    frame = pd.DataFrame({"text": joined_text(table, columns), label: table.frame[label].tolist()}, dtype=object)
    frame["text"] = frame["text"].map(lambda t: t or "(empty)")  # a row with no text at all still trains
    if rows is not None and rows < len(frame):
        keep = np.sort(np.random.default_rng(seed).choice(len(frame), size=rows, replace=False))
        frame = frame.iloc[keep]
        logger.info("tuning %s on a seeded subsample of %d of %d rows", spec, rows, len(table))
    single = load_data(frame, text="text", label=label)
    graft = Graft(backbone=spec, strategy=strategy, task=task.kind, seed=seed, batch_size=batch_size, device=device,
                  progress=progress, use_cache=False, **{**TUNE_DEFAULTS, **params})
    graft.fit(single, callbacks=callbacks)
    return TunedEncoder(graft, spec)
