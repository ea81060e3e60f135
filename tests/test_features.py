"""Feature extraction: the pre-tokenised, token-length-sorted path gives the same features as a plain
per-batch loop (tokenizer with padding=True -> model -> pooling) on the tiny BERT."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from graftkit.backbones import load_backbone
from graftkit.features import extract
from graftkit.features.extract import extract_features

from conftest import WORDS


def _texts(n: int = 40, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    vocabulary = [w for words in WORDS.values() for w in words] + ["unknownword", "."]
    texts = [" ".join(rng.choices(vocabulary, k=rng.randint(0, 30))) for _ in range(n)]
    return texts + texts[:3]  # duplicates too


def _reference(backbone, texts: list[str], batch_size: int) -> np.ndarray:
    """The straightforward loop: batches in input order, each padded by the tokenizer itself."""
    rows = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = backbone.tokenizer(texts[start:start + batch_size], padding=True, truncation=True,
                                       max_length=backbone.max_length, return_tensors="pt")
            hidden = backbone.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            if backbone.normalize:
                pooled = torch.nn.functional.normalize(pooled, dim=1)
            rows.append(pooled.numpy())
    return np.concatenate(rows)


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("batch_size", [3, 64])
def test_extraction_equals_per_batch_reference(tiny_bert_dir, normalize, batch_size):
    backbone = load_backbone(str(tiny_bert_dir), normalize=normalize)
    texts = _texts()
    features = extract_features(backbone, texts, batch_size=batch_size, progress=False)
    assert features.shape == (len(texts), backbone.hidden_size) and features.dtype == np.float32
    np.testing.assert_allclose(features, _reference(backbone, texts, 7), rtol=1e-5, atol=1e-5)


def test_extraction_across_windows_and_truncation(tiny_bert_dir, monkeypatch):
    monkeypatch.setattr(extract, "WINDOW", 1)  # windows of 16 * batch_size items: several, the last one partial
    backbone = load_backbone(str(tiny_bert_dir), max_length=12)  # long texts are truncated
    texts = _texts(70, seed=1)
    features = extract_features(backbone, texts, batch_size=2, progress=False)
    np.testing.assert_allclose(features, _reference(backbone, texts, 5), rtol=1e-5, atol=1e-5)
    assert extract_features(backbone, [], batch_size=2, progress=False).shape == (0, backbone.hidden_size)


@pytest.mark.parametrize("side", ["right", "left"])
def test_preprocess_matches_the_tokenizer_padding(tiny_bert_dir, side):
    backbone = load_backbone(str(tiny_bert_dir))
    backbone.tokenizer.padding_side = side
    texts = _texts(9)
    ours = backbone.preprocess(texts)
    theirs = backbone.tokenizer(texts, padding=True, truncation=True, max_length=backbone.max_length,
                                return_tensors="pt")
    assert set(ours) == set(theirs)
    for key in theirs:
        assert ours[key].dtype == theirs[key].dtype and torch.equal(ours[key], theirs[key]), key
