"""Hugging Face transformers text encoders (BERT / MPNet / RoBERTa-like) with mean / CLS / pooler pooling."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from graftkit.backbones.base import Backbone, BackboneSource
from graftkit.backbones.hf_common import encoder_layers, load_hf_model
from graftkit.backbones.registry import register_family
from graftkit.errors import ConfigError

POOLINGS = ("mean", "cls", "pooler")
VISION_AUDIO_TYPES = {"vit", "deit", "beit", "convnext", "convnextv2", "dinov2", "swin", "resnet", "regnet",
                      "efficientnet", "mobilevit", "clip", "siglip", "wav2vec2", "hubert", "wavlm",
                      "data2vec-audio", "whisper", "clip_vision_model", "clip_text_model", "siglip_vision_model"}


def _sentence_transformers_defaults(path: Path) -> dict:
    """Pooling and max length from a sentence-transformers folder, so features match its ``encode``."""
    defaults = {}
    pooling = path / "1_Pooling" / "config.json"
    if pooling.is_file():
        config = json.loads(pooling.read_text())
        if config.get("pooling_mode_cls_token"):
            defaults["pooling"] = "cls"
        elif config.get("pooling_mode_mean_tokens"):
            defaults["pooling"] = "mean"
    st_config = path / "sentence_bert_config.json"
    if st_config.is_file():
        defaults["max_length"] = json.loads(st_config.read_text()).get("max_seq_length")
    defaults["normalize"] = (path / "modules.json").is_file() and "Normalize" in (path / "modules.json").read_text()
    return defaults


class HFTextBackbone(Backbone):
    family = "hf-text"
    modality = "text"

    def __init__(self, source: BackboneSource, *, pooling: str | None = None, max_length: int | None = None,
                 normalize: bool | None = None, trust_remote_code: bool = False):
        from transformers import AutoTokenizer

        path = Path(source.path)
        defaults = _sentence_transformers_defaults(path)
        self.pooling = pooling or defaults.get("pooling") or "mean"
        if self.pooling not in POOLINGS:
            raise ConfigError(f"pooling must be one of {', '.join(POOLINGS)}; got {self.pooling!r}")
        model = load_hf_model(source, trust_remote_code=trust_remote_code)
        self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        limit = min(self.tokenizer.model_max_length, getattr(model.config, "max_position_embeddings", 512) or 512)
        self.max_length = int(max_length or defaults.get("max_length") or min(limit, 512))
        self.normalize = bool(defaults.get("normalize")) if normalize is None else bool(normalize)
        if self.pooling == "pooler" and getattr(model, "pooler", None) is None:
            raise ConfigError(f"backbone {source.spec!r} has no pooler layer; use pooling='mean' or 'cls'")
        super().__init__(model, source, int(model.config.hidden_size))

    def settings(self) -> dict:
        return {"pooling": self.pooling, "max_length": self.max_length, "normalize": self.normalize}

    def load_item(self, item, where: str):
        return item

    def sort_key(self, item) -> int:
        return len(item)

    def preprocess(self, decoded: list) -> dict[str, torch.Tensor]:
        return dict(self.tokenizer(decoded, padding=True, truncation=True, max_length=self.max_length,
                                   return_tensors="pt"))

    def embed(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        batch = {k: v.to(self.device) for k, v in batch.items()}
        output = self.model(**batch)
        if self.pooling == "pooler":
            pooled = output.pooler_output
        elif self.pooling == "cls":
            pooled = output.last_hidden_state[:, 0]
        else:
            mask = batch["attention_mask"].unsqueeze(-1).to(output.last_hidden_state.dtype)
            pooled = (output.last_hidden_state * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        if self.normalize:
            pooled = nn.functional.normalize(pooled, p=2, dim=1)
        return pooled

    def layer_groups(self) -> list[nn.Module]:
        return encoder_layers(self.model)


def _claims(config: dict) -> bool:
    return config.get("model_type") not in VISION_AUDIO_TYPES


register_family("hf-text", _claims, HFTextBackbone)
