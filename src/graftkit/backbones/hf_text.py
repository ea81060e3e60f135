"""Hugging Face transformers text encoders (BERT / MPNet / RoBERTa-like) with mean / CLS / pooler pooling."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from graftkit.backbones.base import Backbone, BackboneSource, resolve_layer
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
                 normalize: bool | None = None, layer: int | None = None, trust_remote_code: bool = False):
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
        # layer k pools hidden_states[k] (0 = the embeddings); None pools the model's output.
        self.layer = resolve_layer(source.spec, layer, int(model.config.num_hidden_layers))
        if self.layer is not None and self.pooling == "pooler":
            raise ConfigError(f"pooling='pooler' reads the last layer only; with layer={layer} use pooling='mean' "
                              "or 'cls'")
        super().__init__(model, source, int(model.config.hidden_size))

    def settings(self) -> dict:
        layer = {} if self.layer is None else {"layer": self.layer}  # absent by default: same key as before layers
        return {"pooling": self.pooling, "max_length": self.max_length, "normalize": self.normalize, **layer}

    def load_item(self, item, where: str):
        return item

    def sort_key(self, item) -> int:
        return len(item)

    def tokenize(self, decoded: list[str]) -> dict[str, list[list[int]]]:
        """Token ids of many texts at once (the fast tokenizer batches the work), truncated, not padded.

        With ``collate`` this lets extraction sort by the exact token count, so batches carry almost
        no padding (sorting by characters, as sentence-transformers does, pads SST-2 by about a third).
        """
        return dict(self.tokenizer(list(decoded), truncation=True, max_length=self.max_length))

    def collate(self, encoded: dict[str, list[list[int]]], rows) -> dict[str, torch.Tensor]:
        """Pad the ``rows`` of a ``tokenize`` result to their longest, as the tokenizer's ``padding=True`` would."""
        rows = list(rows)
        width = max(len(encoded["input_ids"][r]) for r in rows)
        pad_values = {"input_ids": self.tokenizer.pad_token_id, "attention_mask": 0,
                      "token_type_ids": self.tokenizer.pad_token_type_id, "special_tokens_mask": 1}
        left = self.tokenizer.padding_side == "left"
        batch = {}
        for key, sequences in encoded.items():
            pad = pad_values.get(key, 0)
            if pad is None:
                if any(len(sequences[r]) < width for r in rows):
                    raise ConfigError(f"backbone {self.source.spec!r}: its tokenizer has no padding token, so texts "
                                      "of different lengths cannot share a batch; use batch_size=1")
                pad = 0
            array = np.full((len(rows), width), pad, dtype=np.int64)
            for i, r in enumerate(rows):
                sequence = sequences[r]
                if left:
                    array[i, width - len(sequence):] = sequence
                else:
                    array[i, :len(sequence)] = sequence
            batch[key] = torch.from_numpy(array)
        return batch

    def preprocess(self, decoded: list) -> dict[str, torch.Tensor]:
        return self.collate(self.tokenize(decoded), range(len(decoded)))

    def embed(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.embed_layers(batch, [self.layer])[0]

    def embed_layers(self, batch: dict[str, torch.Tensor], layers: list) -> list[torch.Tensor]:
        """Pooled features of several layers (``None`` = the output) from one forward pass."""
        batch = {k: v.to(self.device) for k, v in batch.items()}
        output = self.model(**batch, output_hidden_states=any(layer is not None for layer in layers))
        return [self._pool(output, batch, layer) for layer in layers]

    def token_states(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per-token features ``(batch, tokens, hidden_size)`` of the pooled layer (token classification reads
        a word's first sub-token; never normalised: sentence-transformers normalises the pooled vector only)."""
        batch = {k: v.to(self.device) for k, v in batch.items()}
        output = self.model(**batch, output_hidden_states=self.layer is not None)
        return output.last_hidden_state if self.layer is None else output.hidden_states[self.layer]

    def _pool(self, output, batch: dict[str, torch.Tensor], layer: int | None) -> torch.Tensor:
        hidden = output.last_hidden_state if layer is None else output.hidden_states[layer]
        if self.pooling == "pooler":  # only with layer None (checked in __init__)
            pooled = output.pooler_output
        elif self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        if self.normalize:
            pooled = nn.functional.normalize(pooled, p=2, dim=1)
        return pooled

    def layer_groups(self) -> list[nn.Module]:
        return encoder_layers(self.model)

    def embed_queries(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """A text encoder embeds descriptions exactly as it embeds rows: the same tokenizer, pooling and
        normalisation, so a description and a row with the same text get the same vector."""
        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                batch = self.preprocess(list(texts[start:start + batch_size]))
                out.append(self.embed(batch).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.hidden_size), np.float32)


def _claims(config: dict) -> bool:
    return config.get("model_type") not in VISION_AUDIO_TYPES


register_family("hf-text", _claims, HFTextBackbone)
