"""No hidden passes (issue 17): training metrics come from the fine-tuning loop's own outputs, not from another pass
of the tuned backbone over the training split; a Deadline callback stops a run cleanly at a time budget, keeping
the best checkpoint so far."""

from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import sentiment_frame

import graftkit as gk
from graftkit.training.callbacks import Deadline

FAST = {"batch_size": 8, "progress": False, "patience": 0, "learning_rate": 0.05}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def sentiment():
    data = gk.load_data(sentiment_frame(80), text="text", label="label")
    return data.split(test_size=0.25, seed=0)


def _count_feature_passes(monkeypatch) -> list[int]:
    calls: list[int] = []
    original = gk.Graft.features

    def features(self, table, *args, **kwargs):
        calls.append(len(table))
        return original(self, table, *args, **kwargs)

    monkeypatch.setattr(gk.Graft, "features", features)
    return calls


def test_training_metrics_come_from_the_loop(tiny_bert_dir, sentiment, monkeypatch):
    train, _ = sentiment
    calls = _count_feature_passes(monkeypatch)
    model = gk.Graft(str(tiny_bert_dir), strategy="finetune", epochs=2, val_size=0.25, **FAST).fit(train)
    rows = model.training_["train_metrics"]
    fit_rows = len(train) - model.training_["validation"]["rows"]
    assert rows.startswith(f"running: the training loop's outputs on the {fit_rows} training rows of epoch "
                           f"{model.training_['best_epoch']}")
    assert model.metrics_["train"]["n"] == fit_rows
    assert 0.0 <= model.metrics_["train"]["accuracy"] <= 1.0
    # the pretrained features of the training rows (standardisation) and the validation rows (calibration)
    # once each; no second pass over the training rows with the tuned backbone
    assert calls.count(fit_rows) == 1 and calls.count(model.training_["validation"]["rows"]) == 1
    assert "train_outputs" not in model.training_  # arrays stay out of the manifest's record


def test_a_frozen_head_still_scores_its_features(tiny_bert_dir, sentiment):
    train, _ = sentiment
    model = gk.Graft(str(tiny_bert_dir), progress=False, use_cache=False).fit(train)
    assert model.metrics_["train"]["n"] == len(train) and model.training_ is None


def test_deadline_stops_cleanly_with_the_best_checkpoint(tiny_bert_dir, sentiment):
    train, test = sentiment
    deadline = Deadline(time.monotonic() + 1e9)
    deadline.deadline = time.monotonic() - 1.0  # already past: stop after the first step
    model = gk.Graft(str(tiny_bert_dir), strategy="finetune", epochs=20, val_size=0.25, **FAST).fit(
        train, callbacks=[deadline])
    record = model.training_
    assert record["stopped"].startswith("stopped at the time budget after 0.")
    assert record["epochs_run"] == 1 and [row["epoch"] for row in record["history"]] == [1]
    assert record["best_epoch"] == 1 and "val_accuracy" in record["history"][0]  # the partial epoch was evaluated
    assert len(model.predict(test)) == len(test)


def test_deadline_lets_a_run_within_budget_finish(tiny_bert_dir, sentiment):
    train, _ = sentiment
    deadline = Deadline(time.monotonic() + 3600)
    model = gk.Graft(str(tiny_bert_dir), strategy="finetune", epochs=2, val_size=0.25, **FAST).fit(
        train, callbacks=[deadline])
    assert model.training_["stopped"] is None and model.training_["epochs_run"] == 2
    assert deadline.eval_s > 0  # measured on the epochs' evaluation + checkpoint, for the next stop decision
    assert np.isfinite(model.metrics_["train"]["accuracy"])


def test_text_is_tokenised_once_per_run_and_batches_are_unchanged(tiny_bert_dir, sentiment, monkeypatch):
    import torch

    from graftkit.backbones import load_backbone
    from graftkit.backbones.hf_text import HFTextBackbone
    from graftkit.training.data import BackboneCollator, Examples

    train, _ = sentiment
    backbone = load_backbone(str(tiny_bert_dir))
    examples = Examples(train, np.arange(len(train)) % 2)
    tokenized = examples.tokenized(backbone)
    collate = BackboneCollator(backbone)
    for rows in (range(0, 8), range(8, 13), [3, 40, 7]):
        plain, ahead = collate([examples[i] for i in rows]), collate([tokenized[i] for i in rows])
        assert plain["inputs"].keys() == ahead["inputs"].keys()
        assert all(torch.equal(plain["inputs"][k], ahead["inputs"][k]) for k in plain["inputs"])
        assert torch.equal(plain["labels"], ahead["labels"])
    sizes: list[int] = []
    original = HFTextBackbone.tokenize
    monkeypatch.setattr(HFTextBackbone, "tokenize", lambda self, texts: sizes.append(len(texts)) or original(self, texts))
    gk.Graft(str(tiny_bert_dir), strategy="finetune", epochs=2, val_size=0.25, use_cache=False, **FAST).fit(train)
    # whole splits at once, never one batch per step; the 2 are the layer probe's sample before training
    assert [n for n in sizes if n <= FAST["batch_size"]] == [2] and len(sizes) < 8


def _deadline_rank(rank: int, init: str, past: bool, results) -> None:
    import types

    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    try:
        deadline = Deadline(time.monotonic() + (-1.0 if past else 3600.0))
        stops = []
        for step in range(3):
            control = types.SimpleNamespace(should_training_stop=False)
            state = types.SimpleNamespace(epoch=step / 3, global_step=step + 1)
            deadline.on_step_begin(None, state, control)
            deadline.on_step_end(None, state, control)
            stops.append(control.should_training_stop)
        results.put((rank, stops))
    finally:
        dist.destroy_process_group()


def test_deadline_is_one_decision_across_data_parallel_processes(tmp_path):
    """Only rank 0 is past its deadline; rank 1 must stop at the same step, or it would wait in the next
    gradient all-reduce forever."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    results = context.Queue()
    init = f"file://{tmp_path / 'rendezvous'}"
    workers = [context.Process(target=_deadline_rank, args=(rank, init, rank == 0, results)) for rank in (0, 1)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [worker.exitcode for worker in workers] == [0, 0]
    stops = dict(results.get(timeout=5) for _ in workers)
    assert stops == {0: [True, False, False], 1: [True, False, False]}  # stopped once, at the first step, together


def test_without_data_parallel_the_deadline_is_local():
    import types

    deadline = Deadline(time.monotonic() - 1.0)
    control = types.SimpleNamespace(should_training_stop=False)
    deadline.on_step_end(None, types.SimpleNamespace(epoch=0.0, global_step=1), control)
    assert control.should_training_stop and deadline.stopped.startswith("stopped at the time budget")


def test_validation_batches_are_length_sorted_with_labels_and_side_features_moving_along(tiny_bert_dir, sentiment):
    from graftkit.backbones import load_backbone
    from graftkit.training.data import Examples

    train, _ = sentiment
    backbone = load_backbone(str(tiny_bert_dir))
    labels = np.arange(len(train)) % 3
    side = np.arange(len(train), dtype=np.float32)[:, None]
    examples = Examples(train, labels, side=side).tokenized(backbone)
    ordered = examples.by_length()
    lengths = [len(ids) for ids in ordered.encoded["input_ids"]]
    assert lengths == sorted(lengths) and len(ordered) == len(examples)
    for i in range(len(ordered)):  # every row keeps its own label, side vector, token ids and row number
        original = int(ordered[i]["side"][0])
        assert ordered[i]["label"] == labels[original] and ordered[i]["where"] == examples[original]["where"]
        assert ordered.encoded["input_ids"][i] == examples.encoded["input_ids"][original]
    assert Examples(train, labels).by_length().table is train  # not tokenised: left as it is
