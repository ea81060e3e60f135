"""Helpers shared by the Hugging Face families: loading with the safe defaults, finding layer groups."""

from __future__ import annotations

import torch
from torch import nn

from graftkit.backbones.base import BackboneSource
from graftkit.errors import BackboneError


def load_hf_model(source: BackboneSource, *, model_class=None, trust_remote_code: bool = False, **options) -> nn.Module:
    """``from_pretrained`` in float32 from safetensors (never pickle), remote code off unless asked; ``options`` go to
    ``from_pretrained`` (e.g. a tower's ``config``)."""
    from transformers import AutoModel

    model_class = model_class or AutoModel
    try:
        return model_class.from_pretrained(source.path, dtype=torch.float32, use_safetensors=True,
                                           trust_remote_code=trust_remote_code, **options)
    except OSError as exc:
        raise BackboneError(f"backbone {source.spec!r} could not be loaded from {source.path}: "
                            f"{str(exc).splitlines()[0]} (graftkit loads safetensors weights only)") from None
    except ValueError as exc:
        if "trust_remote_code" in str(exc):
            raise BackboneError(f"backbone {source.spec!r} needs its own code; graftkit runs it only when you "
                                "pass trust_remote_code=True (CLI: --trust-remote-code)") from None
        raise


def load_image_processor(source: BackboneSource, trust_remote_code: bool = False):
    """The model's own image processor (PIL backend: torchvision is not needed)."""
    from transformers import AutoImageProcessor

    try:
        return AutoImageProcessor.from_pretrained(source.path, backend="pil", trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise BackboneError(f"backbone {source.spec!r} has no usable image processor in {source.path} "
                            f"({str(exc).splitlines()[0]}); save it beside the model with "
                            "processor.save_pretrained(DIR)") from None


BLOCK_LISTS = ("layer", "layers", "blocks", "stages")  # names of the ModuleList that holds the blocks


def encoder_layers(model: nn.Module) -> list[nn.Module]:
    """Embeddings, each transformer block (or each stage of a ConvNeXt / ResNet-style model), then anything
    after (pooler / final norm), input to output."""
    blocks = None
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0 and name.endswith(BLOCK_LISTS):
            blocks = (name, module)
            break
    if blocks is None:
        return [model]
    name, layers = blocks
    prefix = name.rsplit(".", 1)[0] if "." in name else ""
    embeddings = [m for n, m in model.named_children() if "embed" in n]
    if not embeddings and prefix:
        embeddings = [m for n, m in model.named_modules() if n.count(".") <= 1 and "embed" in n.split(".")[-1]]
    tail = [m for n, m in model.named_children() if n in ("pooler", "layernorm", "layer_norm", "post_layernorm", "norm")]
    return [*embeddings[:1], *layers, *tail]
