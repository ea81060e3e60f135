"""Training-time augmentation (``augment=True``): each augmenter per modality, reproducibility from (seed, epoch,
position), training rows only (never validation / prediction), end-to-end fits on tiny text, vision and audio
models, and exact resume with augmentation on."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import model_weights, sentiment_frame, stop_after_epoch
from PIL import Image

import graftkit as gk
from graftkit.cli.options import strategy_flags
from graftkit.errors import ConfigError
from graftkit.strategies import get_strategy
from graftkit.strategies.base import strategy_classes
from graftkit.training.augment import (ColorJitter, FrequencyMask, Gain, GaussianNoise, HorizontalFlip,
                                       RandomResizedCrop, TimeMask, TimeShift, WordDropout, augmenter_for,
                                       example_rng)
from graftkit.training.data import BackboneCollator, Examples

FAST = {"batch_size": 8, "progress": False}


pytestmark = pytest.mark.usefixtures("one_thread")


def _picture(seed=0, size=(40, 30)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def _clip(seed=0, n=8000, rate=16000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / rate
    return (0.5 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(n)).astype(np.float32)


def _rng(k=0):
    return example_rng(0, 0, k)


# -- each augmenter -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("augmenter", [RandomResizedCrop(), HorizontalFlip(), ColorJitter(),
                                       ColorJitter(0, 0, 0, hue=0.1)], ids=["crop", "flip", "jitter", "hue"])
def test_image_augmenters_change_pixels_keep_size_and_mode(augmenter):
    image = _picture()
    out = augmenter(image, _rng())
    assert isinstance(out, Image.Image) and out.size == image.size and out.mode == "RGB"
    assert not np.array_equal(np.asarray(out), np.asarray(image))


def test_random_resized_crop_respects_scale_and_falls_back_to_a_centre_crop():
    crop = RandomResizedCrop(scale=(0.5, 1.0))
    for k in range(50):
        left, top, right, bottom = crop.box(40, 30, _rng(k))
        assert 0 <= left < right <= 40 and 0 <= top < bottom <= 30
        assert 0.5 * 1200 * 0.9 <= (right - left) * (bottom - top) <= 1200
    assert RandomResizedCrop(scale=(2.0, 3.0)).box(100, 10, _rng()) == (43, 0, 56, 10)  # no draw fits: 13 x 10 centre


def test_word_dropout_drops_words_but_never_all_of_them():
    text = "the movie was really quite good and the actor was great"
    outs = [WordDropout(0.3)(text, _rng(k)) for k in range(20)]
    assert any(out != text for out in outs)
    assert all(set(out.split()) <= set(text.split()) and out.split() for out in outs)
    assert len(WordDropout(1.0)("a b c", _rng()).split()) == 1  # everything drawn: one word stays
    assert WordDropout(1.0)("single", _rng()) == "single"


@pytest.mark.parametrize("augmenter", [Gain(), TimeShift(), TimeShift(rollover=False), GaussianNoise(), TimeMask(),
                                       FrequencyMask(16000)],
                         ids=["gain", "shift", "shift-zeros", "noise", "time-mask", "frequency-mask"])
def test_audio_augmenters_change_samples_keep_length_type_and_range(augmenter):
    clip = _clip()
    changed = False
    for k in range(5):  # a zero draw (no shift, an empty mask) is possible; not five in a row
        out = augmenter(clip, _rng(k))
        assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == clip.shape
        assert np.abs(out).max() <= 1.0 and np.isfinite(out).all()
        changed |= not np.allclose(out, clip)
    assert changed
    assert np.array_equal(clip, _clip())  # the input is not modified in place


def test_gain_never_clips_and_frequency_mask_removes_a_band():
    loud = np.clip(_clip() * 2, -1, 1).astype(np.float32)
    for k in range(10):
        assert np.abs(Gain((6.0, 6.0))(loud, _rng(k))).max() <= 1.0 + 1e-6
    noise = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    out = FrequencyMask(16000, fraction=0.3)(noise, _rng(3))
    spectrum = np.abs(np.fft.rfft(out))
    assert (spectrum < 1e-3).sum() > 100  # a contiguous band of bins was zeroed


# -- reproducibility --------------------------------------------------------------------------------------
@pytest.mark.parametrize("modality, item", [("image", _picture()), ("text", "a b c d e f g h i j k l m n o p"),
                                            ("audio", _clip())])
def test_same_seed_epoch_position_same_result_and_epochs_differ(modality, item):
    augment = augmenter_for(SimpleNamespace(modality=modality, sampling_rate=16000), seed=7)

    def as_array(x):
        return np.asarray(x) if not isinstance(x, str) else np.array(x.split())

    first, again = as_array(augment(item, 0, 3)), as_array(augment(item, 0, 3))
    assert np.array_equal(first, again)
    others = [as_array(augment(item, epoch, 3)) for epoch in (1, 2, 3)]
    assert any(o.shape != first.shape or not np.array_equal(o, first) for o in others)
    assert augment.describe()["modality"] == modality and augment.describe()["steps"]
    assert augmenter_for(SimpleNamespace(modality="tabular"), seed=0) is None


def test_collator_augments_training_rows_only(tiny_bert_dir):
    backbone = gk.Graft(str(tiny_bert_dir)).loaded_backbone()
    table = gk.load_data(sentiment_frame(16), text="text", label="label")
    examples = Examples(table, np.zeros(len(table), dtype=np.int64))
    plain = BackboneCollator(backbone)
    collator = BackboneCollator(backbone, augmenter_for(backbone, seed=0))
    rows = [examples[i] for i in range(16)]
    reference = plain(rows)["inputs"]["input_ids"]
    assert torch.equal(collator(rows)["inputs"]["input_ids"], reference)  # validation rows: untouched
    assert torch.equal(collator.sample(examples.augmented(), 16)["input_ids"], reference)  # the layer probe too
    training = examples.augmented()
    augmented = [collator([training[i] for i in range(16)])["inputs"]["input_ids"] for _ in range(2)]
    assert not torch.equal(augmented[0], reference) and torch.equal(augmented[0], augmented[1])
    collator.epoch = 1
    assert not torch.equal(collator([training[i] for i in range(16)])["inputs"]["input_ids"], augmented[0])


# -- the option -----------------------------------------------------------------------------------------------
def test_augment_option_on_every_trainable_strategy():
    flags = strategy_flags()
    trainable = {cls.name for cls in strategy_classes() if getattr(cls, "trainable", False)}
    assert {"finetune", "full", "gradual", "lp-ft"} <= trainable == set(flags["augment"]["defaults"])
    assert not any(flags["augment"]["defaults"].values())
    with pytest.raises(ConfigError, match="--augment"):
        get_strategy("finetune", augment="yes")


# -- end to end -----------------------------------------------------------------------------------------------
def test_text_fit_with_augmentation_and_no_augmentation_at_validation(tiny_bert_dir, tmp_path):
    data = gk.load_data(sentiment_frame(60), text="text", label="label")
    train, val = data.split(test_size=0.25, seed=0)
    model = gk.Graft(str(tiny_bert_dir), strategy="finetune", epochs=2, learning_rate=0.05, patience=0,
                     augment=True, calibrate=False, **FAST).fit(train, validation=val)
    training = model.training_
    assert training["augmentation"]["modality"] == "text"
    assert [s["name"] for s in training["augmentation"]["steps"]] == ["word_dropout"]
    # The Trainer's validation loss of the kept epoch equals the loss of the fitted model's predictions: the
    # validation batches were not augmented (word dropout would change them).
    probabilities = model.predict_proba(val)
    y = model.task_.encode(val)
    loss = float(-np.log(probabilities[np.arange(len(y)), y]).mean())
    assert training["history"][-1]["val_loss"] == pytest.approx(loss, rel=1e-4)
    np.testing.assert_array_equal(model.predict_proba(val), probabilities)
    manifest = gk.load(model.save(tmp_path / "model")).training_
    assert manifest["augmentation"] == training["augmentation"]


def test_vision_fit_with_augmentation(tiny_vit_dir, tmp_path):
    for label, color in (("red", (220, 30, 30)), ("blue", (30, 30, 220))):
        (tmp_path / "images" / label).mkdir(parents=True)
        for i in range(8):
            pixels = np.clip(np.array(color) + np.random.default_rng(i).normal(0, 25, (24, 20 + i, 3)), 0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(tmp_path / "images" / label / f"{i}.png")
    data = gk.load_data(tmp_path / "images")
    model = gk.Graft(str(tiny_vit_dir), strategy="full", epochs=2, learning_rate=0.01, patience=0, val_size=0, augment=True,
                     batch_size=4, progress=False).fit(data)
    steps = [s["name"] for s in model.training_["augmentation"]["steps"]]
    assert steps == ["random_resized_crop", "horizontal_flip", "color_jitter"]
    assert len(model.training_["history"]) == 2 and model.evaluate(data)["accuracy"] >= 0.75


def test_audio_fit_with_augmentation(tmp_path):
    import soundfile
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    folder = tmp_path / "w2v"
    torch.manual_seed(0)
    Wav2Vec2Model(Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                 conv_dim=(16, 16, 16), conv_kernel=(10, 3, 3), conv_stride=(5, 2, 2),
                                 num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
                                 feat_extract_norm="layer", do_stable_layer_norm=True)).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=True, return_attention_mask=True).save_pretrained(folder)
    for label, freq in (("low", 220.0), ("high", 1760.0)):
        (tmp_path / "clips" / label).mkdir(parents=True)
        for i in range(6):
            t = np.arange(int(16000 * (0.2 + 0.02 * i))) / 16000
            soundfile.write(tmp_path / "clips" / label / f"{i}.wav", (0.5 * np.sin(2 * np.pi * freq * t)), 16000)
    data = gk.load_data(tmp_path / "clips")
    model = gk.Graft(str(folder), strategy="finetune", epochs=2, learning_rate=0.01, patience=0, val_size=0,
                     augment=True, batch_size=4, progress=False).fit(data)
    augmentation = model.training_["augmentation"]
    assert augmentation["modality"] == "audio"
    assert [s["name"] for s in augmentation["steps"]] == ["gain", "time_shift", "gaussian_noise", "frequency_mask",
                                                          "time_mask"]
    assert augmentation["steps"][3]["sampling_rate"] == 16000 and len(model.training_["history"]) == 2


# -- resume -----------------------------------------------------------------------------------------------
def test_resume_with_augmentation_matches_the_uninterrupted_run(tiny_bert_dir, tmp_path):
    train = gk.load_data(sentiment_frame(60), text="text", label="label")
    settings = {"strategy": "finetune", "epochs": 2, "learning_rate": 0.05, "patience": 0, "deterministic": True,
                "val_size": 0.2, "augment": True, **FAST}
    reference = gk.Graft(str(tiny_bert_dir), checkpoint_dir=tmp_path / "a", **settings).fit(train)
    with pytest.raises(KeyboardInterrupt):
        gk.Graft(str(tiny_bert_dir), checkpoint_dir=tmp_path / "b", **settings).fit(train,
                                                                                  callbacks=[stop_after_epoch(1)])
    resumed = gk.Graft(str(tiny_bert_dir), checkpoint_dir=tmp_path / "b", resume=True, **settings).fit(train)
    assert resumed.training_["resumed_from"] is not None
    assert resumed.training_["history"] == reference.training_["history"]
    a, b = model_weights(reference), model_weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    plain = gk.Graft(str(tiny_bert_dir), **{**settings, "augment": False}).fit(train)
    assert plain.training_["augmentation"] is None
    assert plain.training_["history"][0]["train_loss"] != reference.training_["history"][0]["train_loss"]
