"""Two-tower image-text models (transformers ``CLIPModel``, ``SiglipModel``): the vision tower is an image backbone,
the text tower a text backbone, both giving by default their embeddings in the shared image-text space
(``image_embeds`` / ``text_embeds``, L2-normalised as the models compare them).

Settings: ``tower`` (``vision`` / ``text``; unset: the tower that reads the table's input column, chosen through
``for_modality``), ``features`` (``projected``: the shared space; ``pooled``: the tower's pooled state before the
projection — CLIP's post-normed CLS / EOS token, SigLIP's mean patch token / last token), ``normalize`` (default:
on for ``projected``, off for ``pooled``) and, for the text tower, ``max_length``. Only the chosen tower is loaded
(its classes read their weights straight from the full checkpoint); an image backbone loads the text tower on
first ``embed_queries`` (zero-shot: class descriptions in the images' space).

CLIP: Radford et al., 2021 (arXiv:2103.00020); SigLIP: Zhai et al., 2023 (arXiv:2303.15343).
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from graftkit.backbones.base import Backbone, BackboneSource
from graftkit.backbones.hf_common import load_hf_model, load_image_processor
from graftkit.backbones.hf_text import HFTextBackbone
from graftkit.backbones.registry import register_family
from graftkit.data.media import load_image
from graftkit.errors import BackboneError, ConfigError

logger = logging.getLogger(__name__)

FAMILY = "hf-clip"
TOWERS = {"vision": "image", "text": "text"}  # tower -> the modality it reads
FEATURES = ("projected", "pooled")
# model_type of the full checkpoint -> the transformers classes of its (vision, text) towers
TOWER_CLASSES = {"clip": ("CLIPVisionModelWithProjection", "CLIPTextModelWithProjection"),
                 "siglip": ("SiglipVisionModel", "SiglipTextModel")}
TEXT_INPUTS = ("input_ids", "attention_mask")  # what the text towers' forward takes
QUERY_BATCH = 64


@contextlib.contextmanager
def _quiet_transformers():
    """A tower read from the full checkpoint leaves the other tower's tensors unused; transformers reports each of
    them as an "unexpected key", which is expected here, not a warning for the user."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def _load_tower(source: BackboneSource, model_type: str, tower: str, trust_remote_code: bool) -> nn.Module:
    """One tower (with its projection) from the full checkpoint, through the tower's own transformers class."""
    import transformers

    model_class = getattr(transformers, TOWER_CLASSES[model_type][0 if tower == "vision" else 1])
    config = model_class.config_class.from_pretrained(source.path)  # the tower's sub-config of config.json
    top = json.loads((Path(source.path) / "config.json").read_text())
    if "projection_dim" in top:  # CLIP keeps the shared width at the top level, not in the towers' configs
        config.projection_dim = top["projection_dim"]
    with _quiet_transformers():
        return load_hf_model(source, model_class=model_class, trust_remote_code=trust_remote_code, config=config)


def _resolve(features: str, normalize) -> tuple[str, bool]:
    if features not in FEATURES:
        raise ConfigError(f"features must be one of {', '.join(FEATURES)} (projected: the shared image-text space; "
                          f"pooled: the tower's pooled state before the projection); got {features!r}")
    if normalize is not None and not isinstance(normalize, bool):
        raise ConfigError(f"normalize must be true or false; got {normalize!r}")
    return features, features == "projected" if normalize is None else normalize


class _Tower:
    """What both towers share: the settings, the L2 normalisation, picking the other tower for other data."""

    family = FAMILY
    tower = ""

    def _setup(self, source: BackboneSource, model_type: str, features: str, normalize, chosen: bool,
               trust_remote_code: bool, options: dict) -> None:
        self.model_type = model_type
        self.features, self.normalize = _resolve(features, normalize)
        self.chosen = chosen  # the user (or a saved model) named the tower: never switch it
        self._trust_remote_code = trust_remote_code
        self._options = options  # the settings another tower of this model is built with

    def _finish(self, pooled: torch.Tensor, projected) -> torch.Tensor:
        out = projected if self.features == "projected" else pooled
        return nn.functional.normalize(out, p=2, dim=-1) if self.normalize else out

    def base_settings(self) -> dict:
        return {"tower": self.tower, "features": self.features, "normalize": self.normalize}

    def for_modality(self, modality: str) -> Backbone:
        if self.chosen or modality == self.modality or modality not in TOWERS.values():
            return self
        tower = next(t for t, m in TOWERS.items() if m == modality)
        logger.info("backbone %s: the input column holds %s, so the %s tower reads it (set tower=... to choose)",
                    self.source.spec, modality, tower)
        return build_clip(self.source, tower=tower, trust_remote_code=self._trust_remote_code,
                          **self._options).to(self.device)

    def embed_layers(self, batch: dict[str, torch.Tensor], layers: list) -> list[torch.Tensor]:
        if any(layer is not None for layer in layers):
            raise ConfigError(f"backbone {self.source.spec!r} ({FAMILY}) has no layer setting; rank it without a layer")
        return [self.embed(batch) for _ in layers]


class CLIPImageBackbone(_Tower, Backbone):
    """The vision tower: ``image_embeds`` (CLIP: the visual projection of the post-normed CLS token; SigLIP: the
    attention-pooling head) or, with ``features='pooled'``, the state before them."""

    modality = "image"
    tower = "vision"

    def __init__(self, source: BackboneSource, model_type: str, *, features: str = "projected", normalize=None,
                 chosen: bool = False, trust_remote_code: bool = False, options: dict | None = None):
        self._setup(source, model_type, features, normalize, chosen, trust_remote_code, options or {})
        model = _load_tower(source, model_type, "vision", trust_remote_code)
        config = model.config
        if model_type == "siglip" and not getattr(model, "use_head", True) and self.features == "projected":
            raise ConfigError(f"backbone {source.spec!r} has no vision pooling head (vision_use_head is off), so no "
                              "projected image embeddings; use features='pooled'")
        width = config.hidden_size if self.features == "pooled" or model_type == "siglip" else config.projection_dim
        self.processor = load_image_processor(source, trust_remote_code)
        self._text: CLIPTextBackbone | None = None
        super().__init__(model, source, int(width))

    def settings(self) -> dict:
        return self.base_settings()

    def load_item(self, item, where: str):
        return load_image(item, where)

    def preprocess(self, decoded: list) -> dict[str, torch.Tensor]:
        return {"pixel_values": self.processor(images=decoded, return_tensors="pt")["pixel_values"]}

    def embed(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        pixels = batch["pixel_values"].to(self.device)
        if self.model_type == "siglip":
            output = self.model(pixel_values=pixels)
            # pooled: the mean of the post-normed patch tokens (what SiglipForImageClassification reads)
            return self._finish(output.last_hidden_state.mean(dim=1), output.pooler_output)
        pooled = self.model.vision_model(pixel_values=pixels).pooler_output
        return self._finish(pooled, self.model.visual_projection(pooled) if self.features == "projected" else None)

    def layer_groups(self) -> list[nn.Module]:
        if self.model_type == "siglip":
            core = self.model
            top = [core.post_layernorm, *([core.head] if getattr(core, "use_head", False) else [])]
            return [core.embeddings, *core.encoder.layers, nn.ModuleList(top)]
        core = self.model.vision_model  # CLIP norms the embeddings before its first block
        return [nn.ModuleList([core.embeddings, core.pre_layrnorm]), *core.encoder.layers,
                nn.ModuleList([core.post_layernorm, self.model.visual_projection])]

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        """The text tower's projected, L2-normalised ``text_embeds`` of ``texts`` (the model's own tokenizer); with
        ``normalize`` on, cosine similarity to ``embed``'s outputs is the dot product, as CLIP scores a pair."""
        if self.features != "projected":
            raise BackboneError(f"backbone {self.source.spec!r}: features='pooled' image features are not in the "
                                "image-text space, so texts cannot be embedded beside them; use features='projected'")
        if self._text is None:
            self._text = CLIPTextBackbone(self.source, self.model_type, features="projected", normalize=True,
                                          chosen=True, trust_remote_code=self._trust_remote_code)
        return self._text.to(self.device).embed_queries(texts)

    def to(self, device) -> Backbone:
        super().to(device)
        if self._text is not None:
            self._text.to(device)
        return self


class CLIPTextBackbone(_Tower, HFTextBackbone):
    """The text tower: ``text_embeds`` (CLIP: the text projection of the EOS token; SigLIP: its head on the last
    token) or, with ``features='pooled'``, that token's state before them. SigLIP was trained on texts padded to
    ``max_length`` and pools the last position, so its texts are always padded to ``max_length`` (as its processor
    is meant to be called); CLIP pools the EOS token under a causal mask, so padding to the batch is exact."""

    modality = "text"
    tower = "text"

    def __init__(self, source: BackboneSource, model_type: str, *, features: str = "projected", normalize=None,
                 max_length: int | None = None, chosen: bool = False, trust_remote_code: bool = False,
                 options: dict | None = None):
        from transformers import AutoTokenizer

        self._setup(source, model_type, features, normalize, chosen, trust_remote_code, options or {})
        model = _load_tower(source, model_type, "text", trust_remote_code)
        self.tokenizer = AutoTokenizer.from_pretrained(source.path, trust_remote_code=trust_remote_code)
        limit = int(model.config.max_position_embeddings)
        if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int)
                                       or not 1 <= max_length <= limit):
            raise ConfigError(f"max_length must be an integer from 1 to {limit} (the text tower's positions) for "
                              f"backbone {source.spec!r}; got {max_length!r}")
        self.max_length = int(max_length or min(self.tokenizer.model_max_length, limit))
        self.pad_to_max_length = model_type == "siglip"
        self.layer = None  # token_states reads the last layer
        config = model.config
        if self.features == "pooled":
            width = config.hidden_size
        else:
            width = config.projection_dim if model_type == "clip" else model.head.out_features
        Backbone.__init__(self, model, source, int(width))

    def settings(self) -> dict:
        return {**self.base_settings(), "max_length": self.max_length}

    def tokenize(self, decoded: list[str]) -> dict[str, list[list[int]]]:
        encoded = self.tokenizer(list(decoded), truncation=True, max_length=self.max_length,
                                 padding="max_length" if self.pad_to_max_length else False)
        return {k: v for k, v in encoded.items() if k in TEXT_INPUTS}

    def embed(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs = {k: v.to(self.device) for k, v in batch.items() if k in TEXT_INPUTS}
        if self.model_type == "siglip":
            output = self.model(**inputs)
            return self._finish(output.last_hidden_state[:, -1], output.pooler_output)
        pooled = self.model.text_model(**inputs).pooler_output
        return self._finish(pooled, self.model.text_projection(pooled) if self.features == "projected" else None)

    def token_states(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs = {k: v.to(self.device) for k, v in batch.items() if k in TEXT_INPUTS}
        return self.model(**inputs).last_hidden_state

    def layer_groups(self) -> list[nn.Module]:
        if self.model_type == "siglip":
            core = self.model
            return [core.embeddings, *core.encoder.layers, nn.ModuleList([core.final_layer_norm, core.head])]
        core = self.model.text_model
        return [core.embeddings, *core.encoder.layers,
                nn.ModuleList([core.final_layer_norm, self.model.text_projection])]

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        """``texts`` embedded as this backbone embeds its inputs (``embed``), in batches, without gradients."""
        texts = [str(t) for t in texts]
        if not texts:
            return np.zeros((0, self.hidden_size), dtype=np.float32)
        encoded = self.tokenize(texts)
        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), QUERY_BATCH):
                rows = range(start, min(start + QUERY_BATCH, len(texts)))
                out.append(self.embed(self.collate(encoded, rows)).float().cpu().numpy())
        return np.concatenate(out).astype(np.float32, copy=False)


def build_clip(source: BackboneSource, *, tower: str | None = None, features: str = "projected",
               normalize: bool | None = None, max_length: int | None = None,
               trust_remote_code: bool = False) -> Backbone:
    """The tower of ``source`` named by ``tower``, or (unset) the vision tower until ``for_modality`` picks the one
    that reads the data."""
    model_type = json.loads((Path(source.path) / "config.json").read_text()).get("model_type")
    if model_type not in TOWER_CLASSES:
        raise BackboneError(f"backbone {source.spec!r} has model_type {model_type!r}; the {FAMILY} family reads "
                            f"{', '.join(TOWER_CLASSES)} checkpoints")
    if tower is not None and tower not in TOWERS:
        raise ConfigError(f"tower must be one of {', '.join(TOWERS)} (or unset: the tower that reads the input "
                          f"column); got {tower!r}")
    _resolve(features, normalize)
    options = {"features": features, "normalize": normalize, "max_length": max_length}
    if (tower or "vision") == "vision":
        if tower == "vision" and max_length is not None:
            raise ConfigError("max_length applies to the text tower; drop it with tower='vision'")
        return CLIPImageBackbone(source, model_type, features=features, normalize=normalize, chosen=tower is not None,
                                 trust_remote_code=trust_remote_code, options=options)
    return CLIPTextBackbone(source, model_type, features=features, normalize=normalize, max_length=max_length,
                            chosen=True, trust_remote_code=trust_remote_code, options=options)


build_clip.modalities = tuple(TOWERS.values())  # what installed_backbones lists the model under
build_clip.modality = "image"  # the tower it gives until the data picks one


def _claims(config: dict) -> bool:
    return config.get("model_type") in TOWER_CLASSES


register_family(FAMILY, _claims, build_clip)
