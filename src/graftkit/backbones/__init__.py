"""Backbones: one contract (``base.Backbone``), one module per family, a registry that picks the family.

Family modules register themselves on import; the specific families come before ``hf_text``,
which takes every remaining transformers model type.
"""

from graftkit.backbones import hf_audio, hf_clip, hf_vision, torch_efficientnet  # noqa: F401  (register their families)
from graftkit.backbones import hf_text  # noqa: F401  (registers the family; last: it takes every other type)
from graftkit.backbones.base import Backbone, BackboneSource
from graftkit.backbones.registry import families, load_backbone

__all__ = ["Backbone", "BackboneSource", "families", "load_backbone"]
