"""The backbone contract every model family implements (in the spirit of timm's model interface)."""

from __future__ import annotations

import hashlib
import json
import numbers
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from graftkit.errors import BackboneError, ConfigError


@dataclass
class BackboneSource:
    """Where the weights came from, pinned: the manifest records it and loading verifies it."""

    spec: str                    # what the user asked for: short name, local dir or Hub id
    kind: str                    # "package", "local" or "hub"
    path: str                    # resolved local directory or file
    revision: str | None = None  # Hub commit hash where known
    files: dict[str, str] = field(default_factory=dict)  # weight file name -> sha256
    licence: str | None = None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class Backbone(ABC):
    """A pretrained model plus its exact preprocessing.

    ``preprocess(items)`` turns decoded inputs into tensors with the model's own processor;
    ``embed(batch)`` returns pooled features of size ``hidden_size``; ``layer_groups()`` lists the
    model's blocks from input to output (for partial unfreezing and layer-wise learning rates).

    Families with a ``layer`` setting pool an intermediate layer instead of the output (``layer=None``)
    and give several layers from one forward pass with ``embed_layers(batch, layers)`` (transferability
    ranking scores the layers of one model at the cost of one pass). ``source_head()`` is the pretraining
    classifier where the model has one (LEEP and NCE need the source model's label distribution).
    """

    family: str = ""
    modality: str = ""
    # Settings a manifest written before they existed implies (the old behaviour, where a new default changed
    # the features): loading fills them in, so an old model is never rebuilt with the new default.
    legacy_settings: ClassVar[dict] = {}

    def __init__(self, model: nn.Module, source: BackboneSource, hidden_size: int):
        self.model = model.eval()
        self.source = source
        self.hidden_size = hidden_size
        self.device = torch.device("cpu")

    @abstractmethod
    def load_item(self, item, where: str):
        """Decode one raw input (text, image path, clip path) into what ``preprocess`` takes."""

    @abstractmethod
    def preprocess(self, decoded: list) -> dict[str, torch.Tensor]:
        """Turn a batch of decoded inputs into model tensors with the model's own processor."""

    @abstractmethod
    def embed(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Pooled features, shape ``(batch, hidden_size)``."""

    @abstractmethod
    def layer_groups(self) -> list[nn.Module]:
        """The model's blocks, ordered from input to output."""

    def settings(self) -> dict:
        """Preprocessing and pooling settings that change the features (recorded and hashed)."""
        return {}

    def source_head(self) -> nn.Module | None:
        """The pretraining classifier that maps ``embed`` features to source-class logits (e.g. an ImageNet-1k
        layer), or None where the model has none or the features are not what it reads."""
        return None

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        """Texts (class descriptions, queries) embedded into the same space as ``embed`` outputs, shape
        ``(len(texts), hidden_size)``: what zero-shot similarity and label-initialised heads compare rows with."""
        raise BackboneError(f"backbone {self.source.spec!r} ({self.family}) cannot embed text descriptions")

    def sort_key(self, item) -> int:
        """Cost proxy for length-sorted batching; the same for every item by default."""
        return 0

    def to(self, device: str | torch.device) -> Backbone:
        self.device = torch.device(device)
        self.model.to(self.device)
        return self

    def describe(self) -> dict:
        return {"family": self.family, "modality": self.modality, "hidden_size": self.hidden_size,
                "settings": self.settings(), "source": self.source.to_dict()}

    def fingerprint(self) -> str:
        """Identity of the features this backbone produces: weights + preprocessing + pooling."""
        identity = {"family": self.family, "files": self.source.files, "revision": self.source.revision,
                    "settings": self.settings()}
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def resolve_layer(spec: str, layer, count: int, unit: str = "layers", first: str = "the embeddings") -> int | None:
    """``layer`` as an index ``0..count`` into a model's layer outputs (``0`` = ``first``, negative counts from
    the last), or None (the model's own output). A one-line ConfigError names how many there are."""
    if layer is None:
        return None
    if isinstance(layer, bool) or not isinstance(layer, numbers.Integral):
        raise ConfigError(f"layer must be an integer (0 = {first}, {count} = the last of the {unit}) or None for the "
                          f"model's output; got {layer!r}")
    index = int(layer) + count + 1 if layer < 0 else int(layer)
    if not 0 <= index <= count:
        raise ConfigError(f"layer {layer} is out of range for backbone {spec!r}: it has {count} {unit} (layer 0 = "
                          f"{first}, 1 to {count} = the {unit}' outputs); pick 0 to {count}, or -1 for the last")
    return index
