"""The estimator API end to end on the tiny BERT: fit / predict / evaluate / save / load, the feature
cache, the heads, the strategy registry, and the Hub loading path on a cached snapshot."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import graftkit as gk
from graftkit.backbones import load_backbone
from graftkit.errors import BackboneError, ConfigError
from graftkit.features.extract import extract_features
from graftkit.strategies import get_strategy, strategy_names
from graftkit.tasks.heads import LogRegHead, MLPHead

from conftest import sentiment_frame


@pytest.fixture
def split():
    table = gk.load_data(sentiment_frame(80))
    return table.split(test_size=0.25, seed=0)


def test_fit_predict_evaluate_save_load(tiny_bert_dir, tmp_path, split):
    train, test = split
    model = gk.Graft(backbone=str(tiny_bert_dir), progress=False).fit(train)
    assert model is not None and model.task_.labels == ("neg", "pos")
    metrics = model.evaluate(test)
    assert metrics["accuracy"] >= 0.8  # sentiment words decide the label: learnable from random features
    assert {"macro_f1", "per_class", "confusion_matrix"} <= set(metrics)
    assert sum(map(sum, metrics["confusion_matrix"]["matrix"])) == len(test)
    proba = model.predict_proba(test)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    model.save(tmp_path / "model")
    reloaded = gk.load(tmp_path / "model")
    assert reloaded.predict(test) == model.predict(test)
    np.testing.assert_allclose(reloaded.predict_proba(test), proba, atol=1e-6)
    assert reloaded.predict(["the film was good great nice", "awful bad the plot is worst"]) == ["pos", "neg"]


def test_manifest_pins_backbone_and_data(tiny_bert_dir, tmp_path, split):
    train, _ = split
    gk.Graft(backbone=str(tiny_bert_dir), progress=False, seed=3).fit(train).save(tmp_path / "m")
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["backbone"]["source"]["files"]["model.safetensors"] == \
        __import__("hashlib").sha256((tiny_bert_dir / "model.safetensors").read_bytes()).hexdigest()
    assert manifest["seed"] == 3 and manifest["strategy"]["name"] == "linear-probe"
    assert manifest["data"]["fingerprint"] == train.fingerprint()
    assert manifest["versions"]["torch"] and manifest["task"]["labels"] == ["neg", "pos"]
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["README.md", "head.safetensors", "labels.json",
                                                                   "manifest.json"]


def test_load_refuses_changed_backbone_weights(tiny_bert_dir, tmp_path, split):
    backbone_copy = tmp_path / "bert"
    shutil.copytree(tiny_bert_dir, backbone_copy)
    gk.Graft(backbone=str(backbone_copy), progress=False).fit(split[0]).save(tmp_path / "m")
    from transformers import BertModel

    changed = BertModel.from_pretrained(backbone_copy)
    with __import__("torch").no_grad():
        changed.embeddings.word_embeddings.weight.add_(0.01)
    changed.save_pretrained(backbone_copy)
    with pytest.raises(BackboneError, match="other weights"):
        gk.load(tmp_path / "m")


def test_cache_second_run_embeds_nothing_and_append_embeds_only_new(tiny_bert_dir, tmp_path):
    table = gk.load_data(sentiment_frame(60))
    model = gk.Graft(backbone=str(tiny_bert_dir), progress=False, cache_dir=tmp_path / "c")
    first = model.features(table)
    assert model.last_extraction_["embedded"] == 60
    second = model.features(table)
    assert model.last_extraction_["embedded"] == 0
    np.testing.assert_array_equal(first, second)
    grown = gk.load_data(sentiment_frame(66, seed=1))  # different sentences: only new content is embedded
    model.features(grown)
    fresh = sum(1 for t in grown.items() if t not in set(table.items()))
    assert model.last_extraction_["embedded"] == fresh > 0


def test_cached_features_equal_uncached(tiny_bert_dir, tmp_path):
    table = gk.load_data(sentiment_frame(30))
    cached = gk.Graft(backbone=str(tiny_bert_dir), progress=False, cache_dir=tmp_path / "c").features(table)
    plain = gk.Graft(backbone=str(tiny_bert_dir), progress=False, use_cache=False).features(table)
    np.testing.assert_allclose(cached, plain, atol=1e-6)


def test_cache_ignores_a_shard_without_its_keys_file(tiny_bert_dir, tmp_path):
    """A crash between writing a shard and its keys file leaves an orphan that is never read."""
    table = gk.load_data(sentiment_frame(20))
    model = gk.Graft(backbone=str(tiny_bert_dir), progress=False, cache_dir=tmp_path / "c")
    model.features(table)
    for keys in (tmp_path / "c").rglob("*.keys"):
        keys.unlink()
    model.features(table)
    assert model.last_extraction_["embedded"] == 20


def test_length_sorted_extraction_keeps_row_order(tiny_bert_dir):
    backbone = load_backbone(str(tiny_bert_dir))
    texts = ["good", "bad movie was really quite awful the plot", "nice film", "terrible"]
    batched = extract_features(backbone, texts, batch_size=2, progress=False)
    for i, text in enumerate(texts):
        alone = extract_features(backbone, [text], batch_size=1, progress=False)
        np.testing.assert_allclose(batched[i], alone[0], atol=1e-5)


@pytest.mark.parametrize("head", ["logreg", "mlp"])
def test_heads_learn_and_round_trip(head, tiny_bert_dir, tmp_path, split):
    train, test = split
    model = gk.Graft(backbone=str(tiny_bert_dir), progress=False, head=head).fit(train)
    assert model.head_.kind == head and model.evaluate(test)["accuracy"] >= 0.8
    model.save(tmp_path / head)
    np.testing.assert_allclose(gk.load(tmp_path / head).predict_proba(test), model.predict_proba(test), atol=1e-6)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_head_probabilities_match_scikit_learn(n_classes):
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = rng.normal(size=(90, 5)).astype(np.float32)
    y = np.arange(90) % n_classes
    X[:, 0] += y
    head = LogRegHead.fit(X, y, C=0.5, standardize=False)
    reference = LogisticRegression(C=0.5, max_iter=1000).fit(X, y)
    np.testing.assert_allclose(head.predict_proba(X), reference.predict_proba(X), atol=1e-4)
    mlp = MLPHead.fit(X, y, hidden_size=8, max_iter=50)
    assert mlp.predict_proba(X).shape == (90, n_classes)


def test_logreg_chooses_C_by_cross_validation():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 20)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    head = LogRegHead.fit(X, y, Cs=(0.01, 1.0), cv_folds=3)
    assert head.info["C"] in (0.01, 1.0) and head.info["cv_folds"] == 3


def test_strategy_registry_and_validation():
    assert "linear-probe" in strategy_names()
    config = get_strategy("linear-probe", head="mlp", hidden_size=16)
    assert config.to_dict()["hidden_size"] == 16
    with pytest.raises(ConfigError, match="unknown strategy 'lora-x'"):
        get_strategy("lora-x")
    with pytest.raises(ConfigError, match="no parameter 'alpha'"):
        get_strategy("linear-probe", alpha=1)
    with pytest.raises(ConfigError, match="C must be > 0"):
        get_strategy("linear-probe", C=0)


def test_hub_id_loads_from_the_local_hub_cache(tiny_bert_dir, tmp_path, monkeypatch):
    """The real huggingface_hub path: a snapshot in the cache layout loads offline, pinned to its commit."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--acme--tiny-bert"
    shutil.copytree(tiny_bert_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    backbone = load_backbone("acme/tiny-bert")
    assert backbone.source.kind == "hub" and backbone.source.revision == commit
    with pytest.raises(BackboneError, match="not in the local Hugging Face cache"):
        load_backbone("acme/missing-model")


@pytest.mark.slow
def test_packaged_minilm_on_the_embedded_banking77_sample(tmp_path):
    from graftkit.cli.demo import demo_data_dir

    train = gk.load_data(demo_data_dir() / "banking77_train.csv")
    test = gk.load_data(demo_data_dir() / "banking77_test.csv")
    model = gk.Graft(progress=False).fit(train)
    assert model.backbone_.hidden_size == 384 and model.backbone_.source.kind == "package"
    assert model.evaluate(test)["accuracy"] > 0.8  # 12 examples per intent, 77 intents; TF-IDF gets ~0.73
