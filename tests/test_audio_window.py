"""Whisper encoders on each clip's own length (issue 17): the re-traced encoder forward equals upstream's on a full
window, own-length features do not depend on batch-mates or batch order, buckets are whole seconds, the setting
enters the fingerprint and the manifest, and a model saved before the setting existed loads with the 30 s window."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graftkit
from graftkit.backbones import load_backbone
from graftkit.backbones.hf_audio import whisper_encode
from graftkit.backbones.registry import recorded_settings
from graftkit.errors import ConfigError
from graftkit.features.extract import extract_features

RATE = 16000


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory) -> Path:
    from transformers import (
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
    )

    folder = tmp_path_factory.mktemp("tiny-whisper-window")
    torch.manual_seed(0)
    config = WhisperConfig(d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2,
                           decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, vocab_size=100,
                           num_mel_bins=80, max_source_positions=1500, max_target_positions=32, pad_token_id=0,
                           bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
    WhisperForConditionalGeneration(config).save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(folder)
    return folder


def _clip(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.5 * np.sin(2 * np.pi * rng.uniform(200, 2000) * t) + 0.01 * rng.standard_normal(t.size)).astype(
        np.float32)


def _embed(backbone, clips) -> torch.Tensor:
    with torch.inference_mode():
        return backbone.embed(backbone.preprocess(clips))


def test_whisper_encode_matches_upstream(whisper_dir):
    """Fails when transformers changes what WhisperEncoder.forward computes (the one re-traced forward)."""
    encoder = load_backbone(str(whisper_dir), window="padded").model
    features = torch.randn(2, 80, 3000)
    with torch.inference_mode():
        upstream = encoder(features, output_hidden_states=True)
        last, hidden = whisper_encode(encoder, features, output_hidden_states=True)
    assert torch.allclose(last, upstream.last_hidden_state, atol=1e-5)
    assert len(hidden) == len(upstream.hidden_states) == len(encoder.layers) + 1
    for ours, theirs in zip(hidden, upstream.hidden_states):
        assert torch.allclose(ours, theirs, atol=1e-5)
    with pytest.raises(ValueError, match="exceed the 1500 positions"):
        whisper_encode(encoder, torch.randn(1, 80, 3002))


def test_clip_window_runs_own_length_and_ignores_batch_mates(whisper_dir):
    backbone = load_backbone(str(whisper_dir))
    assert backbone.settings() == {"pooling": "mean", "window": "clip", "bucket_seconds": 2}
    short, long = _clip(0.7, 1), _clip(2.3, 2)
    batch = backbone.preprocess([long, short])
    assert batch["input_frames"].tolist() == [400, 200]  # 2 s steps of mel frames (100 per second)
    assert batch["num_frames"].tolist() == [math.ceil(len(long) / 320), math.ceil(len(short) / 320)]
    batched = _embed(backbone, [long, short])
    assert torch.allclose(_embed(backbone, [short])[0], batched[1], atol=1e-5)
    assert torch.allclose(_embed(backbone, [short, long]), batched.flip(0), atol=1e-5)
    # The input is the 30 s window's first 2 s (same log-mel values), run with its first 100 positions.
    padded = load_backbone(str(whisper_dir), window="padded")
    window = padded.preprocess([short])["input_features"]
    with torch.inference_mode():
        last, _ = whisper_encode(padded.model, window[:, :, :200])
    frames = math.ceil(len(short) / 320)
    assert torch.allclose(batched[1], last[0, :frames].mean(0), atol=1e-5)
    # ... and differs from the padded window's features (the setting changes the features).
    assert not torch.allclose(_embed(padded, [short])[0], batched[1], atol=1e-3)
    assert padded.fingerprint() != backbone.fingerprint()
    assert padded.settings() == {"pooling": "mean", "window": "padded"}


def test_clip_window_layers_and_gradients(whisper_dir):
    backbone = load_backbone(str(whisper_dir), layer=1)
    clips = [_clip(0.4, 3), _clip(1.6, 4)]
    batch = backbone.preprocess(clips)
    with torch.inference_mode():
        layer, output = backbone.embed_layers(batch, [1, None])
        assert torch.allclose(layer, backbone.embed(batch), atol=1e-6)
        assert not torch.allclose(layer, output, atol=1e-3)
    backbone.model.train()
    backbone.embed_layers(batch, [None])[0].sum().backward()
    assert backbone.model.conv1.weight.grad is not None and backbone.model.conv1.weight.grad.abs().sum() > 0


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.floats(min_value=0.01, max_value=3.2), min_size=1, max_size=5), st.integers(0, 4))
def test_clip_features_do_not_depend_on_batch(whisper_dir, lengths, rotate):
    backbone = _cached_backbone(whisper_dir)
    clips = [_clip(seconds, i) for i, seconds in enumerate(lengths)]
    batch = backbone.preprocess(clips)
    buckets = batch["input_frames"].tolist()
    for clip, bucket, frames in zip(clips, buckets, batch["num_frames"].tolist()):
        assert bucket % 200 == 0 and math.ceil(len(clip) / 160) <= bucket <= 3000 and 2 * frames <= bucket
    together = _embed(backbone, clips)
    shift = rotate % len(clips)
    rotated = _embed(backbone, clips[shift:] + clips[:shift])
    assert torch.allclose(torch.cat([together[shift:], together[:shift]]), rotated, atol=1e-5)
    assert torch.allclose(_embed(backbone, clips[:1])[0], together[0], atol=1e-5)


_BACKBONES: dict = {}


def _cached_backbone(folder):
    if folder not in _BACKBONES:
        _BACKBONES[folder] = load_backbone(str(folder))
    return _BACKBONES[folder]


def test_clips_over_30_seconds_are_cut(whisper_dir, caplog):
    backbone = _cached_backbone(whisper_dir)
    batch = backbone.preprocess([_clip(31.0, 5)])
    assert batch["input_frames"].tolist() == [3000] and batch["num_frames"].tolist() == [1500]
    assert "cut to their first 30 s" in caplog.text


def test_window_setting_is_checked(whisper_dir):
    with pytest.raises(ConfigError, match="window must be one of clip, padded"):
        load_backbone(str(whisper_dir), window="10s")
    with pytest.raises(ConfigError, match=r"bucket_seconds must be a number of seconds in \(0, 30\]"):
        load_backbone(str(whisper_dir), bucket_seconds=0)
    finer = load_backbone(str(whisper_dir), bucket_seconds=1)
    assert finer.preprocess([_clip(0.7, 1)])["input_frames"].tolist() == [100]
    assert finer.fingerprint() != _cached_backbone(whisper_dir).fingerprint()
    with pytest.raises(ConfigError, match="has no setting image_size"):
        load_backbone(str(whisper_dir), image_size=224)


def test_manifest_records_window_and_old_manifests_load_padded(whisper_dir, tmp_path):
    assert recorded_settings("whisper-encoder", {"pooling": "mean"}) == {"window": "padded", "pooling": "mean"}
    assert recorded_settings("whisper-encoder", {"window": "clip"})["window"] == "clip"
    assert recorded_settings("hf-text", {"pooling": "cls"}) == {"pooling": "cls"}
    rows = []
    for digit, freq in (("low", 300.0), ("high", 3000.0)):
        for i in range(6):
            path = tmp_path / f"{digit}_{i}.wav"
            t = np.arange(int((0.3 + 0.1 * i) * RATE)) / RATE
            sf.write(path, (0.5 * np.sin(2 * np.pi * (freq + 20 * i) * t)).astype(np.float32), RATE)
            rows.append({"audio": str(path), "label": digit})
    table = graftkit.load_data(pd.DataFrame(rows))
    for window in ("clip", "padded"):
        model = graftkit.Graft(backbone=str(whisper_dir), backbone_options={"window": window}, use_cache=False,
                               progress=False).fit(table)
        saved = model.save(tmp_path / f"model-{window}")
        reloaded = graftkit.load(saved, use_cache=False, progress=False)
        assert reloaded.backbone_.settings()["window"] == window
        assert reloaded.predict(table) == model.predict(table)
    features = extract_features(load_backbone(str(whisper_dir), window="padded"), [r["audio"] for r in rows],
                                progress=False)
    assert np.allclose(features, model.features(table), atol=1e-5)
