"""EfficientNet-Lite (ImageNet-1k) as a plain PyTorch backbone from the ``efficientnet-lite-pytorch`` package.

EfficientNet: Tan & Le, 2019 (arXiv:1905.11946); the Lite variants drop squeeze-and-excitation and use
ReLU6 for mobile quantisation (TensorFlow TPU models repository, "EfficientNet-lite", 2020).
"""

from __future__ import annotations

import itertools
import pickle

import numpy as np
import torch
from torch import nn

from graftkit.backbones.base import Backbone, BackboneSource, resolve_layer
from graftkit.backbones.registry import register_family
from graftkit.backbones.sources import PACKAGED
from graftkit.data.media import load_image
from graftkit.errors import BackboneError, ConfigError

RESAMPLES = ("bicubic", "bilinear")


def _read_weights(source: BackboneSource) -> dict[str, torch.Tensor]:
    """The state dict, read with ``weights_only`` (never the package's own unrestricted unpickling)."""
    try:
        state = torch.load(source.path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, IndexError, KeyError, ValueError, pickle.UnpicklingError) as exc:
        raise BackboneError(f"backbone {source.spec!r}: weights file {source.path} is unreadable "
                            f"({str(exc).splitlines()[0]}); reinstall the package") from None
    if not isinstance(state, dict):
        raise BackboneError(f"backbone {source.spec!r}: {source.path} holds a {type(state).__name__}, not a state "
                            "dict; reinstall the package")
    return state


class EfficientNetLiteBackbone(Backbone):
    """Features are the global average of the last feature map (1280-d), before the ImageNet classifier.

    Preprocessing follows the released Lite models: RGB resized to the variant's resolution and scaled to
    [-1, 1] as ``(x / 255 - 0.5) / 0.5`` (not ImageNet mean / std); bicubic resizing, as their TF eval does.
    ``layer=k`` averages an earlier map instead: the stem's (0) or stage k's output (1 to 7).
    """

    family = "efficientnet-lite"
    modality = "image"

    def __init__(self, source: BackboneSource, *, image_size: int | None = None, resample: str = "bicubic",
                 layer: int | None = None, trust_remote_code: bool = False):  # no remote code; accepted as elsewhere
        from efficientnet_lite_pytorch import EfficientNet

        entry = PACKAGED.get(source.spec.lower())
        self.variant = entry.variant if entry is not None and entry.variant else source.spec.lower()
        if resample not in RESAMPLES:
            raise ConfigError(f"resample must be one of {', '.join(RESAMPLES)}; got {resample!r}")
        if image_size is not None and (not isinstance(image_size, int) or image_size < 32):
            raise ConfigError(f"image_size must be an integer >= 32; got {image_size!r}")
        try:
            self.image_size = image_size or EfficientNet.get_image_size(self.variant)
        except ValueError:
            raise BackboneError(f"backbone {source.spec!r}: {self.variant!r} is not an EfficientNet variant") from None
        self.resample = resample
        # Same-padding is computed for the input size at build time, so build for the size we feed.
        model = EfficientNet.from_name(self.variant, image_size=self.image_size)
        try:
            model.load_state_dict(_read_weights(source))
        except RuntimeError as exc:
            raise BackboneError(f"backbone {source.spec!r}: {source.path} does not fit {self.variant} "
                                f"({str(exc).splitlines()[0]}); reinstall the package") from None
        # Stage k ends after block stage_ends[k - 1]; a stage's blocks share their output width.
        self.stage_ends = list(itertools.accumulate(len(list(blocks)) for _, blocks in itertools.groupby(
            model._blocks, key=lambda block: block._block_args.output_filters)))
        self.layer = resolve_layer(source.spec, layer, len(self.stage_ends), "stages", "the stem")
        widths = [model._bn0.num_features, *(model._blocks[end - 1]._block_args.output_filters
                                             for end in self.stage_ends)]
        hidden = model._bn1.num_features if self.layer is None else widths[self.layer]
        super().__init__(model, source, int(hidden))

    def settings(self) -> dict:
        layer = {} if self.layer is None else {"layer": self.layer}  # absent by default: same key as before layers
        return {"image_size": self.image_size, "resample": self.resample, **layer}

    def source_head(self) -> nn.Module | None:
        """The ImageNet-1k classifier (``_fc``): it reads exactly the default features (the head conv's average)."""
        return self.model._fc if self.layer is None else None

    def load_item(self, item, where: str):
        return load_image(item, where)

    def preprocess(self, decoded: list) -> dict[str, torch.Tensor]:
        from PIL import Image

        method = Image.Resampling.BICUBIC if self.resample == "bicubic" else Image.Resampling.BILINEAR
        size = (self.image_size, self.image_size)
        pixels = np.stack([np.asarray(image.resize(size, method), dtype=np.float32) for image in decoded])
        scaled = (pixels / 255.0 - 0.5) / 0.5
        return {"pixel_values": torch.from_numpy(scaled).permute(0, 3, 1, 2).contiguous()}

    def embed(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.embed_layers(batch, [self.layer])[0]

    def embed_layers(self, batch: dict[str, torch.Tensor], layers: list) -> list[torch.Tensor]:
        """Global averages of several maps (``None`` = the head conv) from one pass, which stops after the
        deepest map asked for. The same arithmetic as the package's ``extract_features``."""
        model, wanted = self.model, set(layers)
        last = len(model._blocks) if None in wanted else max((self.stage_ends[k - 1] for k in wanted if k), default=0)
        # channels_last input: oneDNN's convolutions then run NHWC end to end, 1.24x faster on a 32-image batch on
        # this 2-core CPU (bench/RESULTS.md, issue 17) for features equal up to float rounding (max diff ~1e-5)
        pixels = batch["pixel_values"].to(self.device, memory_format=torch.channels_last)
        x = model._swish(model._bn0(model._conv_stem(pixels)))
        pooled = {0: x.mean(dim=(2, 3))} if 0 in wanted else {}
        stage, rate = 0, model._global_params.drop_connect_rate
        for index, block in enumerate(model._blocks[:last]):
            x = block(x, drop_connect_rate=rate * index / len(model._blocks) if rate else rate)
            if index + 1 == self.stage_ends[stage]:
                stage += 1
                if stage in wanted:
                    pooled[stage] = x.mean(dim=(2, 3))
        if None in wanted:
            pooled[None] = model._swish(model._bn1(model._conv_head(x))).mean(dim=(2, 3))
        return [pooled[layer] for layer in layers]

    def layer_groups(self) -> list[nn.Module]:
        """Stem, the MBConv blocks of each stage (a stage's blocks share their output width), head conv."""
        model = self.model
        stages = [nn.ModuleList(blocks) for _, blocks in
                  itertools.groupby(model._blocks, key=lambda block: block._block_args.output_filters)]
        return [nn.ModuleList([model._conv_stem, model._bn0]), *stages, nn.ModuleList([model._conv_head, model._bn1])]


# Claims no transformers config: the registry reaches it through the packaged short names (sources.PACKAGED).
register_family("efficientnet-lite", lambda config: False, EfficientNetLiteBackbone)
