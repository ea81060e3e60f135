"""Whisper-style encoder-decoder speech models for generative tasks (speech recognition): the whole
``WhisperForConditionalGeneration`` with its processor (log-mel feature extractor + tokenizer).

Not a registered family: the ``whisper-encoder`` family reads the same checkpoints as a pooled encoder for
classification; a generative task asks for this loader instead (``Graft.loaded_backbone``). It keeps the backbone
contract (``load_item`` / ``preprocess`` / ``embed`` = the encoder mean-pooled over the real frames, so leakage
and CKA still work) and adds ``transcribe`` (the model's own ``generate``), ``label_ids`` and the layer groups
of encoder and decoder.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import torch
from torch import nn

from graftkit.backbones.base import Backbone, BackboneSource
from graftkit.backbones.sources import resolve_source
from graftkit.data.media import load_audio
from graftkit.errors import BackboneError, DataError

logger = logging.getLogger(__name__)

SEQ2SEQ_TYPES = ("whisper",)
TIED = ("proj_out.weight",)  # the output projection is tied to the decoder's token embedding


def load_seq2seq(spec: str, *, revision: str | None = None, trust_remote_code: bool = False,
                 decoding_filled_in: dict | None = None, **options):
    """The encoder-decoder model of ``spec`` for a generative task; a ``BackboneError`` for anything else.
    ``decoding_filled_in`` (a saved model's settings) is derived again from the verified files, not read."""
    if options:
        raise BackboneError(f"backbone options {', '.join(sorted(options))} do not apply to an encoder-decoder "
                            "speech model (speech recognition); drop them")
    source, hint = resolve_source(spec, revision)
    if hint != "hf":
        raise BackboneError(f"backbone {source.spec!r} is a {hint} encoder; speech recognition needs a Whisper-style "
                            "encoder-decoder (a WhisperForConditionalGeneration directory, e.g. whisper-tiny.en)")
    try:
        config = json.loads((Path(source.path) / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BackboneError(f"backbone {source.spec!r}: config.json is unreadable ({exc}); re-save the model") from None
    if config.get("model_type") not in SEQ2SEQ_TYPES or not config.get("is_encoder_decoder", True):
        raise BackboneError(f"backbone {source.spec!r} is a {config.get('model_type')!r} model, not a speech "
                            f"encoder-decoder; speech recognition generates text with a Whisper-style model "
                            f"(model_type {', '.join(SEQ2SEQ_TYPES)}; e.g. whisper-tiny.en) (--backbone)")
    return WhisperSeq2Seq(source, trust_remote_code=trust_remote_code)


# OpenAI's default decoding suppresses these symbols (whisper/tokenizer.py, ``non_speech_tokens``) and the special
# tokens that are not text; a checkpoint re-saved with a bare generation_config.json (the local tiny.en) has lost
# them, and without them tiny.en answers short clips with <|nocaptions|> or "[BLANK_AUDIO]".
NON_SPEECH = [*'"#()*+/:;<=>@[\\]^_`{|}~「」『』', "<<", ">>", "<<<", ">>>", "--", "---", "-(", "-[", "('", '("',
              "((", "))", "(((", ")))", "[[", "]]", "{{", "}}", "♪♪", "♪♪♪"]
MUSIC = set("♩♪♫♬♭♮♯")
NOT_TEXT = ("<|startoftranscript|>", "<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>",
            "<|nocaptions|>", "<|nospeech|>")


def whisper_decoding(config, tokenizer) -> dict:
    """Fill in Whisper's decoding settings where the checkpoint's generation config lacks them: transcribe without
    timestamps (prompt ``<|startoftranscript|><|notimestamps|>``, as the training labels) and suppress
    non-speech symbols and non-text special tokens as OpenAI's decoder does. Returns what was set."""
    filled = {}
    no_timestamps = tokenizer.convert_tokens_to_ids("<|notimestamps|>")
    if getattr(config, "no_timestamps_token_id", None) is None and no_timestamps != tokenizer.unk_token_id:
        config.no_timestamps_token_id = filled["no_timestamps_token_id"] = int(no_timestamps)
        config.return_timestamps = False
    if not getattr(config, "suppress_tokens", None):
        def encode(text):
            return tokenizer.encode(text, add_special_tokens=False)

        ids = {encode(" -")[0], encode(" '")[0]}
        for symbol in NON_SPEECH + sorted(MUSIC):
            for tokens in (encode(symbol), encode(" " + symbol)):
                if len(tokens) == 1 or (symbol in MUSIC and tokens):
                    ids.add(tokens[0])
        special = {tokenizer.convert_tokens_to_ids(t) for t in NOT_TEXT} - {tokenizer.unk_token_id,
                                                                            tokenizer.eos_token_id, None}
        config.suppress_tokens = sorted(int(i) for i in ids | special)
        filled["suppress_tokens"] = len(config.suppress_tokens)
    return filled


class WhisperSeq2Seq(Backbone):
    family = "whisper-seq2seq"
    modality = "audio"

    def __init__(self, source: BackboneSource, *, trust_remote_code: bool = False):
        from transformers import (
            AutoFeatureExtractor,
            AutoTokenizer,
            WhisperForConditionalGeneration,
        )

        try:
            model, info = WhisperForConditionalGeneration.from_pretrained(
                source.path, dtype=torch.float32, use_safetensors=True, output_loading_info=True,
                trust_remote_code=trust_remote_code)
        except OSError as exc:
            raise BackboneError(f"backbone {source.spec!r} could not be loaded from {source.path}: "
                                f"{str(exc).splitlines()[0]} (graftkit loads safetensors weights only)") from None
        missing = [k for k in info.get("missing_keys", []) if k not in TIED]
        if missing:  # an encoder-only checkpoint (WhisperForAudioClassification, a saved encoder): random decoder
            raise BackboneError(f"backbone {source.spec!r} has no weights for {len(missing)} parameter(s) of the "
                                f"encoder-decoder (e.g. {missing[0]}): it is an encoder-only checkpoint, and its "
                                "decoder would be random; speech recognition needs a full Whisper model "
                                "(WhisperForConditionalGeneration)")
        try:
            self.feature_extractor = AutoFeatureExtractor.from_pretrained(source.path)
            self.tokenizer = AutoTokenizer.from_pretrained(source.path)
        except (OSError, ValueError) as exc:
            raise BackboneError(f"backbone {source.spec!r} has no usable processor in {source.path} "
                                f"({str(exc).splitlines()[0]}); save it beside the model with "
                                "WhisperProcessor.save_pretrained(DIR)") from None
        self.sampling_rate = int(self.feature_extractor.sampling_rate)
        self.window = int(self.feature_extractor.n_samples)
        self.hop_length = int(self.feature_extractor.hop_length)
        self.max_target = int(model.config.max_target_positions)
        self.spelling = getattr(self.tokenizer, "english_spelling_normalizer", None) or None
        model.generation_config.max_length = None  # max_new_tokens bounds each transcript (set per model)
        self.decoding = whisper_decoding(model.generation_config, self.tokenizer)
        super().__init__(model, source, int(model.config.d_model))

    def settings(self) -> dict:
        return {"decoding_filled_in": self.decoding} if self.decoding else {}

    # -- inputs --------------------------------------------------------------------------------------------
    def load_item(self, item, where: str):
        samples = load_audio(item, self.sampling_rate, where)
        if len(samples) > self.window:
            clip = f"file {str(item)!r}" if isinstance(item, (str, Path)) else "the clip"
            raise DataError(f"{where}: {clip} is {len(samples) / self.sampling_rate:.1f} s long; Whisper reads "
                            f"{self.window / self.sampling_rate:.0f} s windows and graftkit does not chunk "
                            "transcripts; cut the clip into pieces of at most that length (with their transcripts)")
        return samples

    def sort_key(self, item) -> int:
        from graftkit.backbones.hf_audio import _clip_size

        return _clip_size(item)

    def preprocess(self, decoded: list) -> dict[str, torch.Tensor]:
        out = self.feature_extractor(decoded, sampling_rate=self.sampling_rate, return_tensors="pt")
        frames = [max(1, math.ceil(len(s) / self.hop_length / 2)) for s in decoded]
        return {"input_features": out["input_features"], "num_frames": torch.tensor(frames)}

    def label_ids(self, text: str, where: str) -> list[int]:
        """The decoder targets of a transcript: the tokenizer's prefix, a leading space (as Whisper writes text),
        the text and end-of-text; the decoder start token is dropped (the model prepends it when shifting)."""
        ids = list(self.tokenizer(" " + text.strip()).input_ids)
        if ids and ids[0] == self.model.config.decoder_start_token_id:
            ids = ids[1:]
        if len(ids) + 1 > self.max_target:
            raise DataError(f"{where}: the transcript is {len(ids)} tokens long; the decoder reads at most "
                            f"{self.max_target}; split the clip and its transcript")
        return ids

    # -- outputs -------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def transcribe(self, batch: dict[str, torch.Tensor], max_new_tokens: int) -> list[str]:
        """Greedy transcripts with the model's own ``generate``."""
        ids = self.model.generate(input_features=batch["input_features"].to(self.device),
                                  max_new_tokens=max_new_tokens)
        return [t.strip() for t in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]

    def max_new_tokens_for(self, transcripts) -> int:
        """Room for twice the longest training transcript (in tokens) plus a margin, within the decoder."""
        longest = max((len(self.tokenizer(" " + str(t)).input_ids) for t in transcripts), default=16)
        return int(min(self.max_target - 4, max(16, 2 * longest + 8)))

    @torch.inference_mode()
    def embed(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = self.model.model.encoder(batch["input_features"].to(self.device)).last_hidden_state
        frames = batch["num_frames"].to(self.device).clamp(max=hidden.shape[1])
        valid = (torch.arange(hidden.shape[1], device=self.device)[None, :] < frames[:, None]).unsqueeze(-1)
        return (hidden * valid).sum(1) / valid.sum(1).clamp(min=1)

    # -- what trains -----------------------------------------------------------------------------------------
    def encoder_groups(self) -> list[nn.Module]:
        encoder = self.model.model.encoder
        return [nn.ModuleList([encoder.conv1, encoder.conv2, encoder.embed_positions]), *encoder.layers,
                encoder.layer_norm]

    def decoder_groups(self) -> list[nn.Module]:
        decoder = self.model.model.decoder
        return [nn.ModuleList([decoder.embed_tokens, decoder.embed_positions]), *decoder.layers, decoder.layer_norm]

    def layer_groups(self) -> list[nn.Module]:
        return [*self.encoder_groups(), *self.decoder_groups()]
