"""Hugging Face vision encoders: ViT / DeiT / BEiT / DINOv2 (token models), ConvNeXt / Swin / ResNet
(feature-map models) and the CLIP vision tower, with the model's own image processor (PIL backend).

ViT: Dosovitskiy et al., 2021 (arXiv:2010.11929); DeiT: Touvron et al., 2021 (arXiv:2012.12877);
BEiT: Bao et al., 2022 (arXiv:2106.08254); DINOv2: Oquab et al., 2023 (arXiv:2304.07193);
ConvNeXt: Liu et al., 2022 (arXiv:2201.03545); Swin: Liu et al., 2021 (arXiv:2103.14030);
CLIP: Radford et al., 2021 (arXiv:2103.00020).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from graftkit.backbones.base import Backbone, BackboneSource
from graftkit.backbones.hf_common import encoder_layers, load_hf_model
from graftkit.backbones.registry import register_family
from graftkit.data.media import load_image
from graftkit.errors import BackboneError, ConfigError

POOLINGS = ("mean", "cls", "pooler")
CLIP_TYPES = {"clip", "clip_vision_model"}
# Token models: how many prefix tokens (CLS, DeiT's distillation token) precede the patch tokens.
PREFIX_TOKENS = {"vit": 1, "vit_msn": 1, "deit": 2, "beit": 1, "data2vec-vision": 1, "dinov2": 1,
                 "dinov2_with_registers": 1, "clip": 1, "clip_vision_model": 1}
# Feature-map models: no CLS token; their pooler output is the (normed) global average of the last map.
MAP_TYPES = {"convnext", "convnextv2", "swin", "swinv2", "resnet", "regnet"}
# The pooling each architecture's own classifier reads: CLIP projects its post-normed CLS (the pooler),
# BEiT classifies the normed mean of its patch tokens (the pooler), ViT / DeiT / DINOv2 read the CLS token.
DEFAULT_POOLING = {"clip": "pooler", "clip_vision_model": "pooler", "beit": "pooler", "data2vec-vision": "pooler"}
# Models whose forward returns a pooler output without a ``pooler`` submodule.
POOLED_TYPES = CLIP_TYPES | MAP_TYPES | {"dinov2", "dinov2_with_registers"}


def _load_processor(source: BackboneSource, trust_remote_code: bool):
    from transformers import AutoImageProcessor

    try:
        return AutoImageProcessor.from_pretrained(Path(source.path), backend="pil",
                                                  trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise BackboneError(f"backbone {source.spec!r} has no usable image processor in {source.path} "
                            f"({str(exc).splitlines()[0]}); save it beside the model with "
                            "processor.save_pretrained(DIR)") from None


class HFVisionBackbone(Backbone):
    """Pooling: ``cls`` (the CLS token), ``mean`` (the patch tokens' mean, or a feature map's pooled output)
    or ``pooler`` (the model's pooling head). The default is what the architecture's own classifier reads."""

    family = "hf-vision"
    modality = "image"

    def __init__(self, source: BackboneSource, *, pooling: str | None = None, trust_remote_code: bool = False):
        from transformers import CLIPVisionModel

        config = _config(source)
        self.model_type = config["model_type"]
        model_class = CLIPVisionModel if self.model_type in CLIP_TYPES else None
        model = load_hf_model(source, model_class=model_class, trust_remote_code=trust_remote_code)
        registers = int(getattr(model.config, "num_register_tokens", 0) or 0)
        self.prefix_tokens = PREFIX_TOKENS.get(self.model_type, 0) + registers
        has_pooler = self.model_type in POOLED_TYPES or getattr(model, "pooler", None) is not None
        default = DEFAULT_POOLING.get(self.model_type, "cls" if self.prefix_tokens else "mean")
        if default == "pooler" and not has_pooler:  # e.g. a BEiT saved without its pooling head
            default = "cls"
        self.pooling = pooling or default
        if self.pooling not in POOLINGS:
            raise ConfigError(f"pooling must be one of {', '.join(POOLINGS)}; got {self.pooling!r}")
        if self.pooling == "cls" and not self.prefix_tokens:
            raise ConfigError(f"backbone {source.spec!r} ({self.model_type}) has no CLS token; use pooling='mean'")
        if self.pooling == "pooler" and not has_pooler:
            raise ConfigError(f"backbone {source.spec!r} has no pooler layer; use pooling='mean' or 'cls'")
        self.processor = _load_processor(source, trust_remote_code)
        sizes = getattr(model.config, "hidden_sizes", None)
        hidden = sizes[-1] if self.model_type in MAP_TYPES and sizes else model.config.hidden_size
        super().__init__(model, source, int(hidden))

    def settings(self) -> dict:
        return {"pooling": self.pooling}

    def load_item(self, item, where: str):
        return load_image(item, where)

    def preprocess(self, decoded: list) -> dict[str, torch.Tensor]:
        return {"pixel_values": self.processor(images=decoded, return_tensors="pt")["pixel_values"]}

    def embed(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        output = self.model(pixel_values=batch["pixel_values"].to(self.device))
        hidden = output.last_hidden_state
        if self.pooling == "pooler":
            return output.pooler_output.flatten(1)
        if self.pooling == "cls":
            return hidden[:, 0]
        if hidden.dim() == 4:  # a feature map: its pooler output is already the (normed) global average
            pooled = getattr(output, "pooler_output", None)
            return pooled.flatten(1) if pooled is not None else hidden.mean(dim=(2, 3))
        # Patch tokens only, as timm's global average pooling does (prefix tokens are not image content).
        return hidden[:, self.prefix_tokens:].mean(dim=1)

    def layer_groups(self) -> list[nn.Module]:
        groups = encoder_layers(self.model)
        if self.model_type in CLIP_TYPES:  # CLIP norms the embeddings before its first block
            groups = [nn.ModuleList([self.model.embeddings, self.model.pre_layrnorm]), *groups[1:]]
        return [g for g in groups if next(g.parameters(), None) is not None]  # parameter-free pools are no block


def _config(source: BackboneSource) -> dict:
    return json.loads((Path(source.path) / "config.json").read_text())


def _claims(config: dict) -> bool:
    return config.get("model_type") in set(PREFIX_TOKENS) | MAP_TYPES


register_family("hf-vision", _claims, HFVisionBackbone)
