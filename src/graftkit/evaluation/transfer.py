"""Transfer gain against the same architecture trained from random initialisation.

Pre-training pays only if the pretrained start beats the same network, on the same data and with the same
training budget, started from random weights (He, Girshick & Dollár 2019, "Rethinking ImageNet
Pre-training"; Raghu et al. 2019, "Transfusion: Understanding Transfer Learning for Medical Imaging").
``scratch_baseline`` re-initialises the backbone (the model family's own initialisation scheme for Hugging
Face models, PyTorch's default ``reset_parameters`` for plain modules), trains it with the fitted model's
strategy and settings, and scores it on the same test rows; ``baselines.transfer_gain`` then gives the gain
with its paired bootstrap interval and the negative-transfer warning.
"""

from __future__ import annotations

import itertools
import logging
import time

import torch
from torch import nn

logger = logging.getLogger(__name__)


def reinitialise(model: nn.Module, seed: int = 0) -> None:
    """Random weights in place. A Hugging Face ``PreTrainedModel`` is re-initialised by its own
    ``init_weights()`` (its ``initializer_range`` normal / zero / one scheme) after clearing the
    "already initialised" marks that ``from_pretrained`` leaves on loaded tensors; any other module gets
    PyTorch's default initialisation of every sub-module that has ``reset_parameters``."""
    torch.manual_seed(seed)
    if hasattr(model, "init_weights") and hasattr(model, "config"):
        for item in itertools.chain(model.parameters(), model.buffers(), model.modules()):
            if getattr(item, "_is_hf_initialized", False):
                item._is_hf_initialized = False
        model.init_weights()
        return
    for module in model.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()


def scratch_baseline(model, train, test, *, strategy=None, seed: int | None = None) -> dict:
    """Train the fitted ``model``'s architecture from random initialisation on ``train`` with the same
    strategy (or ``strategy``) and settings, and score it on ``test``. A linear-probe model's scratch run is
    a probe on random features; a fine-tuned model's trains the same groups for the same epochs.
    Returns metrics and the per-row predicted ids (``"predictions"``)."""
    model.check_fitted()
    strategy = strategy if strategy is not None else model.strategy_
    seed = model.seed if seed is None else seed
    # PyTorch embeds the re-initialised weights: the pretrained ONNX graph (same fingerprint, other weights) would
    # fail its first-batch check and be recorded as broken for every later run of the pretrained backbone
    scratch = model.clone(strategy=strategy, seed=seed, use_cache=False, calibrate=False, checkpoint_dir=None,
                          resume=False, task=model.task_.kind, extract_runtime="torch")
    started = time.perf_counter()
    train = scratch.as_table(train, require_label=True)
    reinitialise(scratch.check_modality(train).model, seed)  # the tower that reads the data (an image-text model)
    scratch.fit(train)
    metrics = scratch.evaluate(test, curves=False)
    name = getattr(scratch.strategy_, "name", str(strategy))
    task = scratch.task_
    logger.info("from scratch (%s, random init): %s %.4f", name, task.primary_metric, metrics[task.primary_metric])
    return {"name": f"{model.backbone} from random initialisation + {name}", "strategy": scratch.strategy_.to_dict(),
            **{k: metrics.get(k) for k in task.headline}, "n_train": scratch.data_["rows"],
            "n_test": metrics["n"], "seconds": round(time.perf_counter() - started, 1),
            "outputs": scratch.last_predictions_["outputs"]}
