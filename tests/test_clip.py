"""The hf-clip family (CLIP / SigLIP image-text models): a tiny CLIP and a tiny SigLIP with random weights, their
tokenizer and image processor saved with save_pretrained (no CLIP weights are installable here) and loaded through
``load_backbone`` (the real loading code). Features equal transformers' own ``get_image_features`` /
``get_text_features``; the tower follows the table; probe, fine-tune, lp-ft and LoRA round trips."""

from __future__ import annotations

import json
import string
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import graftkit as gk
from graftkit.backbones import load_backbone
from graftkit.backbones.registry import _modalities_of, family_of, installed_backbones
from graftkit.errors import BackboneError, ConfigError, DataError
from graftkit.features.extract import extract_features

from conftest import examples, sentiment_frame
from test_backbones_media import _assert_groups_in_forward_order

pytestmark = pytest.mark.usefixtures("one_thread")

RED, BLUE = (220, 30, 30), (30, 30, 220)
TOWER = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
WORDS = sorted(set(("good great excellent love wonderful happy nice superb bad awful terrible hate horrible sad "
                    "poor worst the a movie film was is really quite this plot actor it photo of red blue").split()))


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory) -> Path:
    """A full CLIP (vision + text, projection 16) with a real CLIP BPE tokenizer (character merges only)."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    folder = tmp_path_factory.mktemp("tiny-clip-model")
    chars = list(string.ascii_lowercase + string.digits + ".,!?'")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    vocab.update({c: len(vocab) + i for i, c in enumerate(chars)})
    vocab.update({c + "</w>": len(vocab) + i for i, c in enumerate(chars)})
    torch.manual_seed(0)
    config = CLIPConfig(vision_config=dict(TOWER, image_size=32, patch_size=8), projection_dim=16,
                        text_config=dict(TOWER, vocab_size=len(vocab), max_position_embeddings=64, bos_token_id=0,
                                         eos_token_id=1, pad_token_id=1))
    CLIPModel(config).save_pretrained(folder)
    CLIPTokenizer(vocab=vocab, merges=[], model_max_length=64).save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def siglip_dir(tmp_path_factory) -> Path:
    """A full SigLIP with a word-level fast tokenizer that returns input ids only (as SigLIP's does)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, SiglipConfig, SiglipImageProcessor, SiglipModel

    folder = tmp_path_factory.mktemp("tiny-siglip-model")
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: 3 + i for i, w in enumerate(WORDS)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    torch.manual_seed(0)
    config = SiglipConfig(vision_config=dict(TOWER, image_size=32, patch_size=8),
                          text_config=dict(TOWER, vocab_size=len(vocab), max_position_embeddings=16, pad_token_id=0,
                                           bos_token_id=None, eos_token_id=1))
    SiglipModel(config).save_pretrained(folder)
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                            model_max_length=16, model_input_names=["input_ids"]).save_pretrained(folder)
    SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


@pytest.fixture(params=["clip", "siglip"])
def model_dir(request):
    return request.param, request.getfixturevalue(f"{request.param}_dir")


def _full(kind: str, folder: Path):
    from transformers import CLIPModel, SiglipModel

    return (CLIPModel if kind == "clip" else SiglipModel).from_pretrained(folder).eval()


def _image(color, seed: int, size=(24, 20)):
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(color) + rng.normal(0, 25, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def _unit(x: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.normalize(x, dim=-1).numpy()


def _image_folder(root: Path, n: int = 8) -> Path:
    for label, color in (("red", RED), ("blue", BLUE)):
        (root / label).mkdir(parents=True)
        for i in range(n):
            _image(color, seed=100 * len(label) + i, size=(20 + i, 24)).save(root / label / f"{i}.png")
    return root


def _their_text_features(kind: str, folder: Path, texts: list[str]) -> torch.Tensor:
    """transformers' own text features, tokenised as each model is meant to be called (SigLIP: padded to max)."""
    from transformers import AutoTokenizer

    tokens = AutoTokenizer.from_pretrained(folder)(texts, padding="max_length" if kind == "siglip" else True,
                                                   return_tensors="pt")
    with torch.inference_mode():
        return _full(kind, folder).get_text_features(**tokens).pooler_output


# -- features equal transformers' own ---------------------------------------------------------------------------

def test_image_tower_equals_get_image_features(model_dir, tmp_path):
    kind, folder = model_dir
    backbone = load_backbone(str(folder))
    width = 16 if kind == "clip" else 32
    assert (backbone.family, backbone.modality, backbone.hidden_size) == ("hf-clip", "image", width)
    assert backbone.settings() == {"tower": "vision", "features": "projected", "normalize": True}
    paths = []
    for i, color in enumerate([RED, BLUE, RED]):
        paths.append(tmp_path / f"{i}.png")
        _image(color, seed=i, size=(40 + 8 * i, 30)).save(paths[-1])
    features = extract_features(backbone, [str(p) for p in paths], batch_size=2, progress=False)
    batch = backbone.preprocess([_image(RED, 0, (40, 30)), _image(BLUE, 1, (48, 30)), _image(RED, 2, (56, 30))])
    with torch.inference_mode():
        theirs = _full(kind, folder).get_image_features(**batch).pooler_output
    assert features.shape == (3, width)
    np.testing.assert_allclose(features, _unit(theirs), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, atol=1e-5)
    _assert_groups_in_forward_order(backbone, [_image(RED, 0)])


def test_pooled_features_are_the_state_before_the_projection(model_dir):
    kind, folder = model_dir
    backbone = load_backbone(str(folder), features="pooled")
    assert backbone.settings() == {"tower": "vision", "features": "pooled", "normalize": False}
    assert backbone.hidden_size == 32
    batch = backbone.preprocess([_image(RED, 0), _image(BLUE, 1)])
    full = _full(kind, folder)
    with torch.inference_mode():
        ours = backbone.embed(batch)
        out = full.vision_model(**batch)
        expected = out.pooler_output if kind == "clip" else out.last_hidden_state.mean(dim=1)
    assert torch.allclose(ours, expected, atol=1e-5)
    with pytest.raises(BackboneError, match="features='projected'"):
        backbone.embed_queries(["a photo"])
    assert load_backbone(str(folder)).fingerprint() != backbone.fingerprint()  # the cache keys on the setting


def test_embed_queries_equal_get_text_features(model_dir):
    kind, folder = model_dir
    texts = ["a good movie", "bad", "the plot was really quite awful", "red"]
    image_backbone = load_backbone(str(folder))
    queries = image_backbone.embed_queries(texts)
    theirs = _their_text_features(kind, folder, texts)
    assert queries.dtype == np.float32 and queries.shape == (4, image_backbone.hidden_size)
    np.testing.assert_allclose(queries, _unit(theirs), atol=1e-5)
    # the same space: CLIP's own image-text logits are these dot products times its logit scale
    full = _full(kind, folder)
    pixels = image_backbone.preprocess([_image(RED, 0), _image(BLUE, 1)])
    from transformers import AutoTokenizer

    tokens = AutoTokenizer.from_pretrained(folder)(texts, padding="max_length" if kind == "siglip" else True,
                                                   return_tensors="pt")
    with torch.inference_mode():
        logits = full(**tokens, **pixels).logits_per_image
        images = image_backbone.embed(pixels).numpy()
    scale = full.logit_scale.exp().item()
    bias = full.logit_bias.item() if kind == "siglip" else 0.0
    np.testing.assert_allclose(images @ queries.T * scale + bias, logits.numpy(), atol=1e-4)


def test_text_tower_equals_get_text_features(model_dir):
    kind, folder = model_dir
    backbone = load_backbone(str(folder), tower="text")
    assert (backbone.family, backbone.modality) == ("hf-clip", "text")
    assert backbone.settings() == {"tower": "text", "features": "projected", "normalize": True,
                                   "max_length": 64 if kind == "clip" else 16}
    texts = ["a good movie", "bad", "the plot was really quite awful and sad", "red", "it"]
    features = extract_features(backbone, texts, batch_size=2, progress=False)  # length-sorted, padded per batch
    np.testing.assert_allclose(features, _unit(_their_text_features(kind, folder, texts)), atol=1e-5)
    np.testing.assert_allclose(backbone.embed_queries(texts), features, atol=1e-6)
    _assert_groups_in_forward_order(backbone, texts[:2])
    pooled = load_backbone(str(folder), tower="text", features="pooled")
    with torch.inference_mode():
        out = _full(kind, folder).text_model(**{k: torch.as_tensor(v) for k, v in pooled.tokenize(texts[:1]).items()})
    expected = out.pooler_output if kind == "clip" else out.last_hidden_state[:, -1]
    assert torch.allclose(torch.as_tensor(pooled.embed_queries(texts[:1])), expected, atol=1e-5)


@settings(max_examples=examples(15), deadline=None)
@given(texts=st.lists(st.text(max_size=120), min_size=1, max_size=5))
def test_embed_queries_take_any_text(clip_dir, texts):
    """Empty strings, control characters, emoji and over-long texts: one finite unit vector each, as one at a time."""
    backbone = _cached_image_backbone(clip_dir)
    queries = backbone.embed_queries(texts)
    assert queries.shape == (len(texts), 16) and np.isfinite(queries).all()
    np.testing.assert_allclose(np.linalg.norm(queries, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(backbone.embed_queries(texts[-1:]), queries[-1:], atol=1e-5)


_BACKBONES: dict = {}


def _cached_image_backbone(folder):
    if folder not in _BACKBONES:
        _BACKBONES[folder] = load_backbone(str(folder))
    return _BACKBONES[folder]


def test_other_backbones_refuse_queries(tiny_vit_dir):
    with pytest.raises(BackboneError, match="cannot embed text queries") as error:
        load_backbone(str(tiny_vit_dir)).embed_queries(["a photo of a cat"])
    assert "\n" not in str(error.value)


# -- settings ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("options, message", [
    ({"tower": "audio"}, r"tower must be one of vision, text .*got 'audio'"),
    ({"features": "cls"}, r"features must be one of projected, pooled .*got 'cls'"),
    ({"normalize": "yes"}, r"normalize must be true or false; got 'yes'"),
    ({"pooling": "mean"}, r"has no setting pooling; its settings are: tower, features, normalize, max_length"),
    ({"tower": "vision", "max_length": 8}, r"max_length applies to the text tower"),
    ({"tower": "text", "max_length": 500}, r"max_length must be an integer from 1 to 64"),
])
def test_bad_settings_name_the_choices(clip_dir, options, message):
    with pytest.raises(ConfigError, match=message) as error:
        load_backbone(str(clip_dir), **options)
    assert "\n" not in str(error.value)


def test_family_is_listed_for_both_modalities(clip_dir, siglip_dir, tiny_vit_dir):
    assert family_of(clip_dir) == family_of(siglip_dir) == "hf-clip"
    assert family_of(tiny_vit_dir) == "hf-vision"
    assert set(_modalities_of(clip_dir, None)) == {"image", "text"}
    assert _modalities_of(tiny_vit_dir, None) == ("image",)


# -- fitting: the tower follows the table ----------------------------------------------------------------------

FAST = {"batch_size": 8, "progress": False, "patience": 0, "val_size": 0.0, "calibrate": False}


def test_probe_on_images_and_on_text_picks_the_tower(model_dir, tmp_path):
    _, folder = model_dir
    images = gk.load_data(_image_folder(tmp_path / "shapes"))
    train, test = images.split(test_size=0.25, seed=0)
    model = gk.Graft(str(folder), progress=False).fit(train)
    assert model.backbone_.settings()["tower"] == "vision"
    assert model.evaluate(test)["accuracy"] == 1.0
    reloaded = gk.load(model.save(tmp_path / "image-model"), use_cache=False, progress=False)
    assert reloaded.backbone_.settings() == model.backbone_.settings() and reloaded.backbone_.chosen
    np.testing.assert_allclose(reloaded.predict_proba(test), model.predict_proba(test), atol=1e-6)

    texts = gk.load_data(sentiment_frame(40), text="text", label="label")
    text_model = gk.Graft(str(folder), progress=False).fit(texts)
    assert text_model.backbone_.modality == "text" and text_model.backbone_.settings()["tower"] == "text"
    reloaded = gk.load(text_model.save(tmp_path / "text-model"), use_cache=False, progress=False)
    assert reloaded.backbone_.settings()["tower"] == "text"
    np.testing.assert_allclose(reloaded.predict_proba(texts), text_model.predict_proba(texts), atol=1e-6)

    with pytest.raises(DataError, match="holds image, but backbone .* reads text"):
        gk.Graft(str(folder), progress=False, backbone_options={"tower": "text"}).fit(train)


def test_finetune_and_lp_ft_train_the_tower_and_reload(clip_dir, tmp_path):
    images = gk.load_data(_image_folder(tmp_path / "shapes", n=6))
    for strategy in ("finetune", "lp-ft"):
        model = gk.Graft(str(clip_dir), strategy=strategy, epochs=1, use_cache=False, **FAST).fit(images)
        assert model.parameter_counts()["trainable"] > 0
        pretrained = load_backbone(str(clip_dir)).model.state_dict()
        tuned = model.backbone_.model.state_dict()
        assert set(tuned) == set(pretrained)  # the vision tower alone: no text weights ride along
        assert any(not torch.equal(tuned[k], pretrained[k]) for k in tuned)
        out = model.save(tmp_path / strategy)
        assert (out / "backbone" / "config.json").is_file()
        reloaded = gk.load(out, use_cache=False, progress=False)
        np.testing.assert_allclose(reloaded.predict_proba(images), model.predict_proba(images), atol=1e-5)


@pytest.mark.parametrize("modality", ["image", "text"])
def test_lora_adapts_only_the_chosen_tower(model_dir, modality, tmp_path):
    _, folder = model_dir
    table = (gk.load_data(_image_folder(tmp_path / "shapes", n=6)) if modality == "image"
             else gk.load_data(sentiment_frame(32), text="text", label="label"))
    model = gk.Graft(str(folder), strategy="lora", epochs=1, learning_rate=0.02, use_cache=False, **FAST).fit(table)
    assert model.backbone_.modality == modality
    targets = model.adaptation_.targets
    assert len(targets) == 2 * 2 and all(t.endswith(("self_attn.q_proj", "self_attn.v_proj")) for t in targets)
    other = ("text_model", "text_projection") if modality == "image" else ("vision", "visual")
    assert not any(part in n for n, _ in model.backbone_.model.named_modules() for part in other)  # one tower only
    out = model.save(tmp_path / "lora")
    assert (out / "adapter" / "adapter_model.safetensors").is_file() and not (out / "backbone").exists()
    reloaded = gk.load(out, use_cache=False, progress=False)
    np.testing.assert_allclose(reloaded.predict_proba(table), model.predict_proba(table), atol=1e-5)

def test_hub_id_from_the_cache_is_listed_for_both_modalities(clip_dir, tmp_path, monkeypatch, capsys):
    """The real Hub path: a CLIP snapshot in the cache layout loads offline by its Hub id, and `graftkit models` /
    ``installed_backbones`` list it under its family for images and for text."""
    import functools
    import json
    import shutil

    import huggingface_hub
    from huggingface_hub import constants

    from graftkit.cli.main import main

    commit = "89abcdef0123456789abcdef0123456789abcdef"
    repo = tmp_path / "hub" / "models--acme--tiny-clip"
    shutil.copytree(clip_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub, "scan_cache_dir",
                        functools.partial(huggingface_hub.scan_cache_dir, cache_dir=tmp_path / "hub"))
    backbone = load_backbone("acme/tiny-clip")
    assert (backbone.family, backbone.source.kind, backbone.source.revision) == ("hf-clip", "hub", commit)
    assert backbone.for_modality("text").source.revision == commit
    for modality in ("image", "text"):
        row = next(c for c in installed_backbones(modality) if c["name"] == "acme/tiny-clip")
        assert row["family"] == "hf-clip" and row["source"] == "hub-cache"
    assert not any(c["name"] == "acme/tiny-clip" for c in installed_backbones("audio"))
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert next(r for r in rows if r["name"] == "acme/tiny-clip")["family"] == "hf-clip"


def test_cli_tower_and_features_flags(clip_dir, tmp_path, capsys):
    import json

    from graftkit.cli.main import main

    folder = _image_folder(tmp_path / "shapes", n=6)
    out = tmp_path / "model"
    assert main(["fit", str(folder), "--backbone", str(clip_dir), "--clip-features", "pooled", "--test-size", "0",
                 "--no-calibration", "-o", str(out)]) == 0
    settings = json.loads((out / "manifest.json").read_text())["backbone"]["settings"]
    assert settings == {"tower": "vision", "features": "pooled", "normalize": False}
    capsys.readouterr()
    assert main(["fit", str(folder), "--backbone", str(clip_dir), "--tower", "text", "--test-size", "0",
                 "-o", str(tmp_path / "other")]) == 2
    err = capsys.readouterr().err.strip()
    assert "holds image, but backbone" in err and "reads text" in err and len(err.splitlines()) == 1


def test_scratch_baseline_reinitialises_the_tower_that_reads_the_data(clip_dir, monkeypatch):
    from graftkit.evaluation import transfer

    texts = gk.load_data(sentiment_frame(24), text="text", label="label")
    model = gk.Graft(str(clip_dir), progress=False, calibrate=False).fit(texts)
    drawn = []
    real = transfer.reinitialise
    monkeypatch.setattr(transfer, "reinitialise", lambda module, seed: (drawn.append(type(module).__name__),
                                                                        real(module, seed))[1])
    transfer.scratch_baseline(model, texts, texts)
    assert drawn == ["CLIPTextModelWithProjection"]


def test_fusion_reads_the_image_column_with_the_vision_tower_and_the_text_column_with_the_text_tower(clip_dir,
                                                                                                     tmp_path):
    """One CLIP named once for a table with an image and a text column (issue 12 item 5): each column through its
    own tower, the features equal each tower's own, and the fitted model predicts the same after save / load."""
    import pandas as pd

    from graftkit.fusion import FusionModel, load_fusion
    from graftkit.fusion.assign import assign_backbones

    rows = []
    for i in range(24):
        label, color = ("red", RED) if i % 2 == 0 else ("blue", BLUE)
        _image(color, seed=i, size=(20 + i % 5, 24)).save(tmp_path / f"{i}.png")
        rows.append({"photo": f"{i}.png", "caption": f"photo of {'a' if i % 3 else 'the'} film", "label": label})
    pd.DataFrame(rows).to_csv(tmp_path / "t.csv", index=False)
    table = gk.load_data(tmp_path / "t.csv", label="label", image=["photo"], text=["caption"])
    backbones = assign_backbones([str(clip_dir)], table.roles)
    assert backbones == {"image": str(clip_dir), "text": str(clip_dir)}
    model = FusionModel(backbones, head="linear", progress=False, calibration_folds=2).fit(table)
    encoders = model.featurizer_.encoders
    assert encoders["photo"].backbone.settings()["tower"] == "vision"
    assert encoders["caption"].backbone.settings()["tower"] == "text"
    X = model.features(table)
    for column, modality in (("photo", "image"), ("caption", "text")):
        tower = load_backbone(str(clip_dir)).for_modality(modality)
        own = extract_features(tower, table.column_items(column, modality), batch_size=8, progress=False)
        np.testing.assert_allclose(X[:, model.featurizer_.groups[column]], own, atol=1e-5)
    assert model.evaluate(table)["accuracy"] == 1.0  # the colour is in the image
    loaded = load_fusion(model.save(tmp_path / "fused"), progress=False)
    saved = json.loads((tmp_path / "fused" / "fusion.json").read_text())["featurizer"]["encoders"]
    assert {column: e["modality"] for column, e in saved.items()} == {"photo": "image", "caption": "text"}
    np.testing.assert_allclose(loaded.outputs(table), model.outputs(table), atol=1e-6)
    assert loaded.predict(table) == model.predict(table)
