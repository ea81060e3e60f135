"""Hugging Face vision encoders: ViT / DeiT / BEiT / DINOv2 (token models), ConvNeXt / Swin / ResNet
(feature-map models) and a vision-only CLIP checkpoint (``clip_vision_model``; a full two-tower CLIP / SigLIP is
the ``hf-clip`` family's), with the model's own image processor (PIL backend).

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

from graftkit.backbones.base import Backbone, BackboneSource, resolve_layer
from graftkit.backbones.hf_common import encoder_layers, load_hf_model, load_image_processor
from graftkit.backbones.registry import register_family
from graftkit.data.media import load_image
from graftkit.errors import ConfigError

POOLINGS = ("mean", "cls", "pooler")
CLIP_TYPES = {"clip_vision_model"}
# Token models: how many prefix tokens (CLS, DeiT's distillation token) precede the patch tokens.
PREFIX_TOKENS = {"vit": 1, "vit_msn": 1, "deit": 2, "beit": 1, "data2vec-vision": 1, "dinov2": 1,
                 "dinov2_with_registers": 1, "clip_vision_model": 1}
# Feature-map models: no CLS token; their pooler output is the (normed) global average of the last map.
MAP_TYPES = {"convnext", "convnextv2", "swin", "swinv2", "resnet", "regnet"}
# The pooling each architecture's own classifier reads: CLIP projects its post-normed CLS (the pooler),
# BEiT classifies the normed mean of its patch tokens (the pooler), ViT / DeiT / DINOv2 read the CLS token.
DEFAULT_POOLING = {"clip_vision_model": "pooler", "beit": "pooler", "data2vec-vision": "pooler"}
# Models whose forward returns a pooler output without a ``pooler`` submodule.
POOLED_TYPES = CLIP_TYPES | MAP_TYPES | {"dinov2", "dinov2_with_registers"}


class HFVisionBackbone(Backbone):
    """Pooling: ``cls`` (the CLS token), ``mean`` (the patch tokens' mean, or a feature map's pooled output)
    or ``pooler`` (the model's pooling head). The default is what the architecture's own classifier reads.
    ``layer=k`` pools ``hidden_states[k]`` (a transformer block's tokens, or a feature-map model's stage output)."""

    family = "hf-vision"
    modality = "image"

    def __init__(self, source: BackboneSource, *, pooling: str | None = None, layer: int | None = None,
                 trust_remote_code: bool = False):
        from transformers import CLIPVisionModel

        config = _config(source)
        self.model_type = config["model_type"]
        model_class = CLIPVisionModel if self.model_type in CLIP_TYPES else None
        model = load_hf_model(source, model_class=model_class, trust_remote_code=trust_remote_code)
        registers = int(getattr(model.config, "num_register_tokens", 0) or 0)
        self.prefix_tokens = PREFIX_TOKENS.get(self.model_type, 0) + registers
        has_pooler = self.model_type in POOLED_TYPES or getattr(model, "pooler", None) is not None
        default = DEFAULT_POOLING.get(self.model_type, "cls" if self.prefix_tokens else "mean")
        if default == "pooler" and (not has_pooler or layer is not None):  # no pooling head, or an inner layer
            default = "cls"
        self.pooling = pooling or default
        if self.pooling not in POOLINGS:
            raise ConfigError(f"pooling must be one of {', '.join(POOLINGS)}; got {self.pooling!r}")
        if self.pooling == "cls" and not self.prefix_tokens:
            raise ConfigError(f"backbone {source.spec!r} ({self.model_type}) has no CLS token; use pooling='mean'")
        if self.pooling == "pooler" and not has_pooler:
            raise ConfigError(f"backbone {source.spec!r} has no pooler layer; use pooling='mean' or 'cls'")
        if self.pooling == "pooler" and layer is not None:
            raise ConfigError(f"pooling='pooler' reads the last layer only; with layer={layer} use pooling='mean' "
                              "or 'cls'")
        self.processor = load_image_processor(source, trust_remote_code)
        sizes = getattr(model.config, "hidden_sizes", None)
        hidden = sizes[-1] if self.model_type in MAP_TYPES and sizes else model.config.hidden_size
        self.layer = None
        if layer is not None:
            widths = _hidden_state_widths(model, self.processor)
            maps = self.model_type in MAP_TYPES
            self.layer = resolve_layer(source.spec, layer, len(widths) - 1, "stages" if maps else "layers",
                                       "the stem" if maps else "the embeddings")
            hidden = widths[self.layer]
        super().__init__(model, source, int(hidden))

    def settings(self) -> dict:
        return {"pooling": self.pooling, **({} if self.layer is None else {"layer": self.layer})}

    def load_item(self, item, where: str):
        return load_image(item, where)

    def preprocess(self, decoded: list) -> dict[str, torch.Tensor]:
        return {"pixel_values": self.processor(images=decoded, return_tensors="pt")["pixel_values"]}

    def embed(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.embed_layers(batch, [self.layer])[0]

    def embed_layers(self, batch: dict[str, torch.Tensor], layers: list) -> list[torch.Tensor]:
        """Pooled features of several layers (``None`` = the output) from one forward pass."""
        output = self.model(pixel_values=batch["pixel_values"].to(self.device),
                            output_hidden_states=any(layer is not None for layer in layers))
        return [self._pool(output, layer) for layer in layers]

    def _pool(self, output, layer: int | None) -> torch.Tensor:
        if layer is not None:
            hidden = output.hidden_states[layer]
            if hidden.dim() == 4:  # a stage's feature map: its global average
                return hidden.mean(dim=(2, 3))
            return hidden[:, 0] if self.pooling == "cls" else hidden[:, self.prefix_tokens:].mean(dim=1)
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


def _hidden_state_widths(model: nn.Module, processor) -> list[int]:
    """The width of each of the model's ``hidden_states`` (token width, or a feature map's channels), read
    from one forward pass of a blank image (feature-map models change width from stage to stage)."""
    from PIL import Image

    pixels = processor(images=[Image.new("RGB", (64, 64))], return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        states = model(pixel_values=pixels, output_hidden_states=True).hidden_states
    return [int(state.shape[1] if state.dim() == 4 else state.shape[-1]) for state in states]


def _config(source: BackboneSource) -> dict:
    return json.loads((Path(source.path) / "config.json").read_text())


def _claims(config: dict) -> bool:
    return config.get("model_type") in set(PREFIX_TOKENS) | MAP_TYPES


register_family("hf-vision", _claims, HFVisionBackbone)
