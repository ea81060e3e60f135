"""Hugging Face speech encoders: wav2vec 2.0 / HuBERT / WavLM / data2vec-audio (raw waveform in) and the
Whisper encoder (log-mel in, on each clip's own length by default), mean-pooled over the frames that cover real
audio only.

wav2vec 2.0: Baevski et al., 2020 (arXiv:2006.11477); HuBERT: Hsu et al., 2021 (arXiv:2106.07447);
WavLM: Chen et al., 2022 (arXiv:2110.13900); Whisper: Radford et al., 2022 (arXiv:2212.04356).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from graftkit.backbones.base import Backbone, BackboneSource, resolve_layer
from graftkit.backbones.hf_common import load_hf_model
from graftkit.backbones.registry import register_family
from graftkit.data.media import load_audio
from graftkit.errors import BackboneError, ConfigError, DataError

logger = logging.getLogger(__name__)

WAVEFORM_TYPES = {"wav2vec2", "hubert", "wavlm", "data2vec-audio"}
POOLINGS = ("mean",)


def _load_extractor(source: BackboneSource, trust_remote_code: bool):
    from transformers import AutoFeatureExtractor

    try:
        return AutoFeatureExtractor.from_pretrained(Path(source.path), trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise BackboneError(f"backbone {source.spec!r} has no usable feature extractor in {source.path} "
                            f"({str(exc).splitlines()[0]}); save it beside the model with "
                            "feature_extractor.save_pretrained(DIR)") from None


def _clip_size(item) -> int:
    """A cheap length proxy for sorting: the file size, or the number of samples / bytes in memory."""
    if isinstance(item, dict):
        if item.get("array") is not None:
            return len(item["array"])
        item = item.get("bytes") or item.get("path")
    if isinstance(item, bytes):
        return len(item)
    try:
        return os.path.getsize(item)
    except (OSError, TypeError):
        return 0  # unreadable: load_item reports it with the row


def _receptive_field(config) -> int:
    """Samples the convolutional front end needs to produce its first frame."""
    field, jump = 1, 1
    for kernel, stride in zip(config.conv_kernel, config.conv_stride):
        field += (kernel - 1) * jump
        jump *= stride
    return field


def _masked_mean(hidden: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    mask = valid.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


def _check_pooling(pooling: str | None) -> str:
    pooling = pooling or "mean"
    if pooling not in POOLINGS:
        raise ConfigError(f"pooling must be one of {', '.join(POOLINGS)} for audio backbones; got {pooling!r}")
    return pooling


class _AudioBackbone(Backbone):
    modality = "audio"

    def __init__(self, model: nn.Module, source: BackboneSource, hidden_size: int, extractor, pooling: str,
                 layer: int | None = None):
        self.feature_extractor = extractor  # the attribute name a fine-tuned artifact saves the processor from
        self.sampling_rate = int(extractor.sampling_rate)
        self.pooling = pooling
        self.layer = layer  # pools hidden_states[layer] (0 = the input to the first block); None: the output
        super().__init__(model, source, hidden_size)

    def settings(self) -> dict:
        return {"pooling": self.pooling, **({} if self.layer is None else {"layer": self.layer})}

    def embed(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.embed_layers(batch, [self.layer])[0]

    @staticmethod
    def _hidden(output, layer: int | None) -> torch.Tensor:
        return output.last_hidden_state if layer is None else output.hidden_states[layer]

    def load_item(self, item, where: str):
        return load_audio(item, self.sampling_rate, where)

    def sort_key(self, item) -> int:
        return _clip_size(item)


class HFSpeechBackbone(_AudioBackbone):
    """A waveform encoder (wav2vec 2.0 family), mean-pooled over the frames of the real audio.

    Where zero padding would change a clip's features with its batch-mates (and the feature cache keys
    features by content alone), each clip runs unpadded: a GroupNorm front end (wav2vec2-base, HuBERT-base,
    WavLM-base) normalises over the whole time axis, and data2vec-audio's stacked positional convolutions
    carry padded frames into real ones. The others run padded batches with an attention mask, which is exact.
    """

    family = "hf-audio"

    def __init__(self, source: BackboneSource, *, pooling: str | None = None, layer: int | None = None,
                 trust_remote_code: bool = False):
        pooling = _check_pooling(pooling)
        model = load_hf_model(source, trust_remote_code=trust_remote_code)
        layer = resolve_layer(source.spec, layer, int(model.config.num_hidden_layers), "layers",
                              "the input to the first transformer layer")
        self.per_clip = (getattr(model.config, "feat_extract_norm", "layer") == "group"
                         or model.config.model_type == "data2vec-audio")
        self.min_samples = _receptive_field(model.config)
        super().__init__(model, source, int(model.config.hidden_size), _load_extractor(source, trust_remote_code),
                         pooling, layer)

    def load_item(self, item, where: str):
        samples = super().load_item(item, where)
        if len(samples) < self.min_samples:
            clip = f"file {str(item)!r}" if isinstance(item, (str, Path)) else "the clip"
            raise DataError(f"{where}: {clip} is {1000 * len(samples) / self.sampling_rate:.1f} ms long; this "
                            f"backbone needs at least {1000 * self.min_samples / self.sampling_rate:.1f} ms "
                            f"({self.min_samples} samples at {self.sampling_rate} Hz); replace or remove it")
        return samples

    def preprocess(self, decoded: list) -> dict[str, torch.Tensor]:
        out = self.feature_extractor(decoded, sampling_rate=self.sampling_rate, padding=True,
                                     return_attention_mask=True, return_tensors="pt")
        return {"input_values": out["input_values"], "attention_mask": out["attention_mask"]}

    def embed_layers(self, batch: dict[str, torch.Tensor], layers: list) -> list[torch.Tensor]:
        """Pooled features of several layers (``None`` = the output) from one forward pass."""
        values = batch["input_values"].to(self.device)
        mask = batch["attention_mask"].to(self.device)
        states = any(layer is not None for layer in layers)
        if self.per_clip:
            lengths = mask.sum(1).tolist()
            outputs = [self.model(values[i:i + 1, :n], output_hidden_states=states) for i, n in enumerate(lengths)]
            return [torch.cat([self._hidden(output, layer).mean(1) for output in outputs]) for layer in layers]
        output = self.model(values, attention_mask=mask, output_hidden_states=states)
        # The frames whose receptive field lies inside the clip, as transformers' own classification head pools.
        valid = self.model._get_feature_vector_attention_mask(output.last_hidden_state.shape[1], mask)
        return [_masked_mean(self._hidden(output, layer), valid) for layer in layers]

    def layer_groups(self) -> list[nn.Module]:
        encoder = self.model.encoder
        stable = getattr(self.model.config, "do_stable_layer_norm", False)  # norm after the blocks, not before
        front = [self.model.feature_projection, encoder.pos_conv_embed] + ([] if stable else [encoder.layer_norm])
        groups = [self.model.feature_extractor, nn.ModuleList(front), *encoder.layers]
        if stable:
            groups.append(encoder.layer_norm)
        if getattr(self.model, "adapter", None) is not None:
            groups.append(self.model.adapter)
        return groups


WINDOWS = ("clip", "padded")
BUCKET_SECONDS = 2  # own-length inputs are padded up to 2 s steps: 1 s lost a point on FSDD (bench/RESULTS.md)


def _check_window(window: str | None) -> str:
    window = window or "clip"
    if window not in WINDOWS:
        raise ConfigError(f"window must be one of {', '.join(WINDOWS)} for Whisper encoders (clip: each clip's own "
                          f"length rounded up to {BUCKET_SECONDS} s; padded: Whisper's 30 s window); got {window!r} "
                          "(--audio-window)")
    return window


def _check_bucket(seconds) -> float:
    if seconds is None:
        return BUCKET_SECONDS
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds <= 30:
        raise ConfigError(f"bucket_seconds must be a number of seconds in (0, 30]; got {seconds!r}")
    return seconds


def whisper_encode(encoder: nn.Module, input_features: torch.Tensor, *, output_hidden_states: bool = False):
    """``WhisperEncoder.forward`` for log-mel input shorter than the 30 s window: ``(last_hidden_state,
    hidden_states or None)`` with the pretrained positional embeddings of the positions used.

    transformers 5 refuses any input but the full window (the length check and ``arange(num_embeddings)`` in its
    forward), and no public argument lifts it, so this runs the encoder's own public submodules in upstream's
    order: conv1 -> conv2 -> + embed_positions -> dropout -> layers (layerdrop) -> layer_norm, ``hidden_states``
    as transformers returns them (the input to the first layer, each layer's output, the last one normed). The one
    place graftkit re-traces a library's forward; ``test_whisper_encode_matches_upstream`` compares it with
    ``encoder(...)`` on a full window and fails when upstream's computation changes.
    """
    embeds = nn.functional.gelu(encoder.conv1(input_features))
    embeds = nn.functional.gelu(encoder.conv2(embeds)).permute(0, 2, 1)
    positions = embeds.shape[1]
    if positions > encoder.embed_positions.num_embeddings:
        raise ValueError(f"{positions} encoder frames exceed the {encoder.embed_positions.num_embeddings} "
                         "positions Whisper was trained on (30 s)")
    hidden = embeds + encoder.embed_positions(torch.arange(positions, device=embeds.device))
    hidden = nn.functional.dropout(hidden, p=encoder.dropout, training=encoder.training)
    states = [hidden]
    for layer in encoder.layers:
        dropped = encoder.training and encoder.layerdrop > 0.0 and torch.rand([]) < encoder.layerdrop
        if not dropped:
            hidden = layer(hidden, None)
        states.append(hidden)
    hidden = encoder.layer_norm(hidden)
    states[-1] = hidden
    return hidden, (tuple(states) if output_hidden_states else None)


class WhisperEncoderBackbone(_AudioBackbone):
    """The Whisper encoder, mean-pooled over the encoder frames that cover the real audio (one frame per two mel
    hops), so silence padding does not dilute the features.

    ``window="clip"`` (default): each clip runs on its own length rounded up to ``bucket_seconds`` (2: a 0.5 s
    digit costs 2 s of encoder frames, not 30 s), keeping the pretrained positional embeddings of the positions
    used. Every clip is padded to its own bucket, never to a batch-mate's, so its features do not depend on the batch (the feature
    cache keys them by content alone); a batch runs one forward pass per distinct bucket. ``window="padded"``:
    Whisper's 30 s window, as it was trained (what models saved before the setting existed ran with, see
    ``legacy_settings``).
    """

    family = "whisper-encoder"
    legacy_settings: ClassVar[dict] = {"window": "padded"}  # what a manifest written before the setting existed ran with

    def __init__(self, source: BackboneSource, *, pooling: str | None = None, layer: int | None = None,
                 window: str | None = None, bucket_seconds: float | None = None, trust_remote_code: bool = False):
        from transformers import WhisperModel

        pooling = _check_pooling(pooling)
        self.window = _check_window(window)
        self.bucket_seconds = _check_bucket(bucket_seconds)
        # The encoder is loaded through the full model (its weights are stored under model.encoder.*);
        # the decoder is dropped as soon as this returns. Weights load in float32 even when stored in fp16.
        model = load_hf_model(source, model_class=WhisperModel, trust_remote_code=trust_remote_code).get_encoder()
        extractor = _load_extractor(source, trust_remote_code)
        self.max_samples = int(extractor.n_samples)
        self.hop_length = int(extractor.hop_length)
        self.max_frames = int(model.config.max_source_positions)
        self.mel_per_frame = int(model.conv1.stride[0] * model.conv2.stride[0])
        bucket = max(1, round(self.bucket_seconds * int(extractor.sampling_rate) / self.hop_length))
        self.bucket_mel = math.ceil(bucket / self.mel_per_frame) * self.mel_per_frame  # whole encoder frames
        layer = resolve_layer(source.spec, layer, int(model.config.encoder_layers), "layers",
                              "the input to the first encoder layer")
        super().__init__(model, source, int(model.config.d_model), extractor, pooling, layer)

    def settings(self) -> dict:
        bucket = {"bucket_seconds": self.bucket_seconds} if self.window == "clip" else {}
        return {**super().settings(), "window": self.window, **bucket}

    def _bucket(self, samples: int) -> int:
        """Mel frames a clip of ``samples`` runs on: its own length rounded up to the bucket, at most 30 s."""
        mel = max(1, math.ceil(samples / self.hop_length))
        return min(self.max_frames * self.mel_per_frame, math.ceil(mel / self.bucket_mel) * self.bucket_mel)

    def preprocess(self, decoded: list) -> dict[str, torch.Tensor]:
        if any(len(samples) > self.max_samples for samples in decoded):
            logger.warning("Whisper reads 30 s windows: clips longer than %d samples are cut to their first 30 s",
                           self.max_samples)
        decoded = [samples[:self.max_samples] for samples in decoded]
        frames = torch.tensor([min(self.max_frames, max(1, math.ceil(len(s) / self.hop_length / 2)))
                               for s in decoded])
        if self.window == "padded":
            out = self.feature_extractor(decoded, sampling_rate=self.sampling_rate, return_tensors="pt")
            return {"input_features": out["input_features"], "num_frames": frames}
        buckets = torch.tensor([self._bucket(len(s)) for s in decoded])
        features = torch.zeros(len(decoded), int(self.feature_extractor.feature_size), int(buckets.max()))
        for bucket in buckets.unique().tolist():
            rows = (buckets == bucket).nonzero().flatten().tolist()
            out = self.feature_extractor([decoded[i] for i in rows], sampling_rate=self.sampling_rate,
                                         padding="max_length", max_length=bucket * self.hop_length,
                                         return_tensors="pt")
            features[rows, :, :bucket] = out["input_features"]
        return {"input_features": features, "num_frames": frames, "input_frames": buckets}

    def embed_layers(self, batch: dict[str, torch.Tensor], layers: list) -> list[torch.Tensor]:
        """Pooled features of several layers (``None`` = the output) from one forward pass per input length."""
        features = batch["input_features"].to(self.device)
        frames = batch["num_frames"].to(self.device)
        states = any(layer is not None for layer in layers)
        if "input_frames" not in batch:  # the 30 s window: upstream's own forward
            output = self.model(features, output_hidden_states=states)
            return self._pool(output.last_hidden_state, output.hidden_states, frames, layers)
        buckets = batch["input_frames"]
        pooled, order = [], []
        for bucket in buckets.unique().tolist():
            rows = (buckets == bucket).nonzero().flatten()
            last, hidden = whisper_encode(self.model, features[rows.to(self.device), :, :bucket],
                                          output_hidden_states=states)
            pooled.append(self._pool(last, hidden, frames[rows.to(self.device)], layers))
            order.append(rows)
        inverse = torch.argsort(torch.cat(order)).to(self.device)
        return [torch.cat([p[i] for p in pooled])[inverse] for i in range(len(layers))]

    def _pool(self, last, hidden_states, frames, layers) -> list[torch.Tensor]:
        valid = torch.arange(last.shape[1], device=last.device)[None, :] < frames[:, None]
        return [_masked_mean(last if layer is None else hidden_states[layer], valid) for layer in layers]

    def layer_groups(self) -> list[nn.Module]:
        stem = nn.ModuleList([self.model.conv1, self.model.conv2, self.model.embed_positions])
        return [stem, *self.model.layers, self.model.layer_norm]


register_family("hf-audio", lambda config: config.get("model_type") in WAVEFORM_TYPES, HFSpeechBackbone)
register_family("whisper-encoder", lambda config: config.get("model_type") == "whisper", WhisperEncoderBackbone)
