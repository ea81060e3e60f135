"""Shared fixtures: tiny transformers models built and saved in-process (exercising the real
``from_pretrained`` loading code in seconds), small learnable data sets, and the ../shared assets."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import settings

# Hypothesis profiles (HYPOTHESIS_PROFILE): "default", the fast local run, and "ci" (.ci/run), which generates
# CI_FACTOR times the cases of every property test. Tests give their own per-run count as ``examples(n)``.
CI_FACTOR = 4
settings.register_profile("default", deadline=None)
settings.register_profile("ci", deadline=None, print_blob=True)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "default")
settings.load_profile(PROFILE)


def examples(n: int) -> int:
    """The number of generated cases a property test runs: ``n`` by default, ``CI_FACTOR * n`` in the ci profile."""
    return n * CI_FACTOR if PROFILE == "ci" else n


SHARED = Path(os.environ.get("GRAFTKIT_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))

# unrelated sentences: no two are near duplicates (the leakage tests plant their copies among them)
DISTINCT_SENTENCES = [
    "the weather in the mountains changed quickly", "please send the invoice before friday",
    "my cat sleeps on the warm windowsill", "quarterly revenue grew by twelve percent",
    "the train to lisbon leaves at noon", "she painted the fence a bright yellow",
    "how do I reset my router password", "our team won the regional chess final",
    "the bakery sells fresh bread every morning", "turn left after the second traffic light",
    "he forgot his umbrella at the museum", "the concert was postponed until march",
    "water boils faster with the lid on", "a new library opened downtown last week",
    "the printer on floor three is jammed again", "penguins cannot fly but swim very well",
    "I would like to book a table for two", "the recipe needs three cups of flour",
    "solar panels were installed on the roof", "the meeting ran over by forty minutes",
]

WORDS = {
    "pos": ["good", "great", "excellent", "love", "wonderful", "happy", "nice", "superb"],
    "neg": ["bad", "awful", "terrible", "hate", "horrible", "sad", "poor", "worst"],
    "neutral": ["the", "a", "movie", "film", "was", "is", "really", "quite", "this", "plot", "actor", "it"],
}


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or skip the test with the reason when that asset is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (the ../shared assets are only on the project's own machines)")
    return path


@pytest.fixture(scope="session")
def shared_graphs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("onnx-graphs")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch, shared_graphs):
    """Every test gets its own feature cache, so no test sees another's cached features. The ONNX graphs of frozen
    extraction are keyed by the backbone's identity and the fixture models live for the session, so in-process
    tests share one graph folder: each graph is exported once per session, not once per test."""
    monkeypatch.setenv("GRAFTKIT_CACHE", str(tmp_path_factory.mktemp("cache")))
    from graftkit.backbones import onnx_text

    monkeypatch.setattr(onnx_text, "default_graph_dir", lambda: shared_graphs)


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A 2-layer BERT with hidden size 32 and a real WordPiece tokenizer, saved with save_pretrained."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    folder = tmp_path_factory.mktemp("tiny-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted({w for ws in WORDS.values() for w in ws}), "."]
    tokenizer = BertTokenizer(vocab={word: i for i, word in enumerate(vocab)})
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_vit_dir(tmp_path_factory) -> Path:
    """A 2-layer ViT with hidden size 32 and its image processor, saved with save_pretrained."""
    import torch
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    folder = tmp_path_factory.mktemp("tiny-vit")
    torch.manual_seed(0)
    ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                       image_size=32, patch_size=8)).save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


@pytest.fixture
def one_thread():
    """Two shared cores: one intra-op thread is faster here and makes training runs comparable bit for bit."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def stop_after_epoch(k: int):
    """A TrainerCallback that simulates a crash right after the checkpoint of epoch ``k`` was written."""
    from transformers import TrainerCallback

    class StopAfterEpoch(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if round(state.epoch) == k:
                raise KeyboardInterrupt(f"simulated crash after epoch {k}")

    return StopAfterEpoch()


def model_weights(model) -> dict:
    """Every tensor of a fitted Graft: its head arrays and its backbone's state dict."""
    import torch

    return {**{f"head.{k}": torch.as_tensor(v) for k, v in model.head_.arrays.items()},
            **model.backbone_.model.state_dict()}


def sentiment_frame(n: int = 60, seed: int = 0) -> pd.DataFrame:
    """Short sentences whose label is carried by their sentiment words: learnable from a random BERT's features."""
    import random

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        words = rng.sample(WORDS["neutral"], 3) + [rng.choice(WORDS[label]) for _ in range(3)]
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": label})
    return pd.DataFrame(rows)


@pytest.fixture
def sentiment_csv(tmp_path) -> Path:
    path = tmp_path / "reviews.csv"
    sentiment_frame().to_csv(path, index=False)
    return path


def assert_resume_reproduces(backbone_dir, table, tmp_path) -> None:
    """An lp-ft run crashed after epoch 2 and resumed equals the uninterrupted run: history, every weight (the
    target scaling buffers and the head included) and the calibration."""
    import torch

    import graftkit as gk

    settings = {"strategy": "lp-ft", "epochs": 3, "patience": 0, "deterministic": True, "progress": False,
                "use_cache": False}
    reference = gk.Graft(str(backbone_dir), checkpoint_dir=tmp_path / "a", **settings).fit(table)
    with pytest.raises(KeyboardInterrupt):
        gk.Graft(str(backbone_dir), checkpoint_dir=tmp_path / "b", **settings).fit(
            table, callbacks=[stop_after_epoch(2)])
    resumed = gk.Graft(str(backbone_dir), checkpoint_dir=tmp_path / "b", resume=True, **settings).fit(table)
    assert resumed.training_["resumed_from"] is not None
    assert resumed.training_["history"] == reference.training_["history"]
    a, b = model_weights(reference), model_weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.calibration_ == reference.calibration_
