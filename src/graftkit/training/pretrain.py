"""Continued masked-language-model pretraining of a text encoder on unlabelled in-domain text (DAPT / TAPT,
Gururangan et al. 2020, "Don't Stop Pretraining"), on the Hugging Face ``Trainer`` with transformers'
``DataCollatorForLanguageModeling`` (token or whole-word masking).

The result is a *backbone directory*: the encoder saved by ``save_pretrained`` (loadable with ``AutoModel`` and, the
sentence-transformers pooling files copied from the base, with ``SentenceTransformer``), its tokenizer, and
``graftkit-pretrain.json``, the lineage (base spec + weight hashes, corpus fingerprint, steps, settings, whether the
MLM head was new). ``--backbone DIR`` takes it like any local model; its source records the lineage, so the model
card of a model fitted on it names both the base and the corpus.

Sentence-embedding checkpoints (all-MiniLM-L6-v2) ship the encoder only: ``AutoModelForMaskedLM`` reports the head's
weights as missing and initialises them; the decoder is tied to the input embeddings (the config's
``tie_word_embeddings``), so only the transform layer and the output bias are new. That is logged and recorded.
Checkpoints are sealed and resumed exactly as fine-tuning's (``training.checkpoints``); under ``torchrun`` the
Trainer runs data-parallel and only the main process writes the result.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch

from graftkit.atomic import check_output_directory, output_lock, swap_directory
from graftkit.backbones.sources import LINEAGE
from graftkit.data.unlabelled import corpus_fingerprint, load_unlabelled
from graftkit.errors import BackboneError, ConfigError, DataError
from graftkit.training.callbacks import LoggingProgress, QuietLog, SealCheckpoints
from graftkit.training.checkpoints import prepare_run
from graftkit.training.distributed import is_main_process, world_size

logger = logging.getLogger(__name__)

# sentence-transformers' own files: copied from the base so pooling / normalisation / max length stay the same
SENTENCE_FILES = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json")
SENTENCE_DIRS = ("1_Pooling", "2_Normalize")


@dataclass
class PretrainConfig:
    """Settings of a continued-pretraining run (every one recorded in the lineage)."""

    steps: int = 300
    batch_size: int = 32
    learning_rate: float = 5e-5
    mlm_probability: float = 0.15
    whole_word_mask: bool = False
    max_length: int = 128
    warmup: float = 0.06
    weight_decay: float = 0.01
    save_steps: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        for name, low in (("steps", 1), ("batch_size", 1), ("max_length", 8), ("save_steps", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(f"pretrain {name} must be an integer >= {low}; got {value!r} "
                                  f"(--{name.replace('_', '-')})")
        for name, low, high in (("learning_rate", 0.0, 1.0), ("mlm_probability", 0.0, 1.0), ("warmup", 0.0, 1.0),
                                ("weight_decay", 0.0, 1.0)):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= value < high or (
                    name in ("learning_rate", "mlm_probability") and value == 0):
                raise ConfigError(f"pretrain {name} must be a number in ({low:g}, {high:g}); got {value!r} "
                                  f"(--{name.replace('_', '-')})")
        if not isinstance(self.whole_word_mask, bool):
            raise ConfigError(f"pretrain whole_word_mask must be true or false; got {self.whole_word_mask!r}")


@dataclass
class PretrainResult:
    path: Path
    lineage: dict = field(default_factory=dict)


def _check_destination(path: Path, overwrite: bool) -> None:
    check_output_directory(path, overwrite, holds=lambda p: (p / LINEAGE).is_file(), what="pretrained backbone")


def _text_encoder(spec: str, revision: str | None, trust_remote_code: bool):
    """The base backbone (resolved, hashed) after checking it is a text encoder with a mask token."""
    from graftkit.backbones import load_backbone

    backbone = load_backbone(spec, revision=revision, trust_remote_code=trust_remote_code)
    if backbone.modality != "text" or not hasattr(backbone, "tokenizer"):
        raise BackboneError(f"pretrain continues masked-language-model pretraining of text encoders; backbone "
                            f"{spec!r} reads {backbone.modality}; pick a text backbone (--backbone), e.g. "
                            "all-MiniLM-L6-v2")
    if backbone.tokenizer.mask_token is None:
        raise BackboneError(f"backbone {spec!r} has no mask token, so it cannot be trained as a masked language "
                            "model; pick a BERT-style text encoder (--backbone)")
    return backbone


def masked_lm(path: str, trust_remote_code: bool = False):
    """``(AutoModelForMaskedLM, what happened to the head)``: the base's MLM head where the checkpoint has one, else
    a new one (the decoder tied to the input embeddings)."""
    from transformers import AutoModelForMaskedLM

    try:
        model, info = AutoModelForMaskedLM.from_pretrained(path, dtype=torch.float32, use_safetensors=True,
                                                           trust_remote_code=trust_remote_code,
                                                           output_loading_info=True)
    except ValueError as exc:  # a config no masked-LM class exists for
        raise BackboneError(f"{path}: transformers has no masked-language-model head for this model type "
                            f"({str(exc).splitlines()[0][:120]}); pick a BERT-style text encoder (--backbone)") from None
    missing = sorted(info.get("missing_keys", []))
    encoder = model.base_model_prefix
    head_missing = [k for k in missing if not k.startswith(encoder + ".")]
    body_missing = [k for k in missing if k.startswith(encoder + ".")]
    if body_missing:
        raise BackboneError(f"{path}: the checkpoint lacks encoder weights ({', '.join(body_missing[:3])}); it is not "
                            "a complete text encoder")
    model.tie_weights()
    out, inp = model.get_output_embeddings(), model.get_input_embeddings()
    tied = out is not None and out.weight.data_ptr() == inp.weight.data_ptr()
    head = {"initialised": bool(head_missing), "new_weights": head_missing, "decoder_tied_to_embeddings": tied}
    if head_missing:
        logger.warning("the checkpoint ships no masked-LM head (a sentence-embedding model): initialised a new one "
                       "(%s); the decoder is %s the input embeddings", ", ".join(head_missing),
                       "tied to" if tied else "NOT tied to")
    return model, head


def _dataset(tokenizer, texts: list[str], max_length: int, whole_word_mask: bool) -> list[dict]:
    encoded = tokenizer(texts, truncation=True, max_length=max_length, return_special_tokens_mask=True,
                        return_offsets_mapping=whole_word_mask)
    keys = list(encoded.keys())
    return [{key: encoded[key][i] for key in keys} for i in range(len(texts))]


def _save_backbone(mlm, base_path: Path, tokenizer, staging: Path, trust_remote_code: bool) -> None:
    """The encoder as ``AutoModel`` saves it (the base's own pooler kept: MLM models drop it), the tokenizer, and
    the sentence-transformers files of the base."""
    from transformers import AutoModel

    encoder = AutoModel.from_pretrained(base_path, dtype=torch.float32, use_safetensors=True,
                                        trust_remote_code=trust_remote_code)
    state = {k: v.detach().clone() for k, v in mlm.base_model.state_dict().items()}
    result = encoder.load_state_dict(state, strict=False)
    if result.unexpected_keys or any(not k.startswith("pooler.") for k in result.missing_keys):
        raise BackboneError(f"{base_path}: the trained encoder's weights do not map onto AutoModel's "
                            f"({(result.unexpected_keys or result.missing_keys)[:3]}); cannot save a backbone")
    encoder.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    for name in SENTENCE_FILES:
        if (base_path / name).is_file():
            shutil.copy2(base_path / name, staging / name)
    for name in SENTENCE_DIRS:
        if (base_path / name).is_dir():
            shutil.copytree(base_path / name, staging / name)


def _training_arguments(config: PretrainConfig, run_dir: Path, device: str, progress: bool):
    from transformers import TrainingArguments

    processes = world_size()
    if config.batch_size % processes:
        raise ConfigError(f"batch_size {config.batch_size} does not split evenly over {processes} processes; use a "
                          f"multiple of {processes} (--batch-size)")
    on_cuda = torch.device(device).type == "cuda"
    return TrainingArguments(
        output_dir=str(run_dir), max_steps=config.steps, per_device_train_batch_size=config.batch_size // processes,
        learning_rate=config.learning_rate, warmup_steps=config.warmup, weight_decay=config.weight_decay,
        lr_scheduler_type="linear", save_strategy="steps", save_steps=config.save_steps, save_total_limit=2,
        logging_strategy="steps", logging_steps=max(1, min(50, config.steps // 10)), seed=config.seed,
        data_seed=config.seed, use_cpu=not on_cuda, bf16=on_cuda and torch.cuda.is_bf16_supported(),
        report_to="none", disable_tqdm=not progress, remove_unused_columns=False, dataloader_num_workers=0,
        ddp_backend="gloo" if not on_cuda and processes > 1 else None)


def pretrain(unlabelled, output, *, backbone: str = "all-MiniLM-L6-v2", column: str | None = None,
             config: PretrainConfig | None = None, revision: str | None = None, checkpoint_dir=None,
             resume: bool = False, overwrite: bool = False, device: str = "cpu", progress: bool = True,
             trust_remote_code: bool = False, callbacks=(), **settings) -> PretrainResult:
    """Continue masked-LM pretraining of ``backbone`` on ``unlabelled`` (a text file, one document per line; a table
    and its ``column``; a list of strings; labelled training data, whose text column is read: TAPT) and save the
    result as a backbone directory ``output`` (``--backbone DIR`` takes it); ``callbacks`` are extra
    ``transformers.TrainerCallback``s. ``settings`` are
    ``PretrainConfig`` fields (steps, batch_size, learning_rate, mlm_probability, whole_word_mask, ...)."""
    from transformers import DataCollatorForLanguageModeling, Trainer

    config = config or PretrainConfig(**settings)
    output = Path(output).expanduser()
    if is_main_process():
        _check_destination(output, overwrite)
    base = _text_encoder(backbone, revision, trust_remote_code)
    corpus = load_unlabelled(unlabelled, column=column)
    if corpus.modality != "text":
        raise DataError(f"{corpus.source}: the column {corpus.input_column!r} holds {corpus.modality}; pretrain reads "
                        "text (give a text column with --column)")
    texts = [str(t) for t in corpus.frame[corpus.input_column] if str(t).strip()]
    if not texts:
        raise DataError(f"{corpus.source}: no non-blank text in column {corpus.input_column!r}; give documents to "
                        "pretrain on")
    base_path = Path(base.source.path)
    tokenizer = base.tokenizer
    if config.whole_word_mask and not tokenizer.is_fast:
        raise ConfigError(f"whole-word masking needs a fast tokenizer (offsets); {backbone!r} has a slow one; drop "
                          "--whole-word-mask")
    identity = {"format": 1, "kind": "pretrain", "backbone": base.source.files, "spec": base.source.spec,
                "corpus": corpus_fingerprint(texts), "config": asdict(config), "processes": world_size()}
    temporary = checkpoint_dir is None
    if resume and temporary:
        raise ConfigError("resume=True needs checkpoint_dir, the directory of the run to continue (--resume DIR)")
    run_dir = Path(tempfile.mkdtemp(prefix="graftkit-pretrain-")) if temporary else Path(checkpoint_dir)
    started = time.perf_counter()
    try:
        resume_from = prepare_run(run_dir, identity, resume=resume, main_process=is_main_process())
        mlm, head = masked_lm(str(base_path), trust_remote_code)
        dataset = _dataset(tokenizer, texts, config.max_length, config.whole_word_mask)
        collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=config.mlm_probability,
                                                   whole_word_mask=config.whole_word_mask, seed=config.seed,
                                                   # whole-word masking replaces every chosen word by [MASK]
                                                   **({"mask_replace_prob": 1.0, "random_replace_prob": 0.0}
                                                      if config.whole_word_mask else {}))
        args = _training_arguments(config, run_dir, device, progress)
        trainer = Trainer(model=mlm, args=args, data_collator=collator, train_dataset=dataset,
                          callbacks=[SealCheckpoints(), *callbacks])
        from transformers import PrinterCallback, ProgressCallback

        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(LoggingProgress() if progress else QuietLog())
        logger.info("pretraining %s on %d documents of %s for %d steps (%s masking, p=%g)", base.source.spec,
                    len(texts), corpus.source, config.steps, "whole-word" if config.whole_word_mask else "token",
                    config.mlm_probability)
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
        seconds = round(time.perf_counter() - started, 3)
        lineage = {
            "format": 1,
            "base": {k: v for k, v in base.source.to_dict().items() if k in ("spec", "kind", "revision", "files",
                                                                                "licence", "lineage")},
            "corpus": {"source": corpus.source, "column": corpus.input_column, "documents": len(texts),
                       "fingerprint": corpus_fingerprint(texts)},
            "objective": "masked language model (DataCollatorForLanguageModeling)",
            "steps": int(trainer.state.global_step), "settings": asdict(config), "mlm_head": head,
            "loss": {"first": losses[0] if losses else None, "last": losses[-1] if losses else None},
            "resumed_from": str(resume_from) if resume_from else None, "processes": world_size(),
            "seconds": seconds, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        if is_main_process():
            with output_lock(output):
                _check_destination(output, overwrite)
                output.parent.mkdir(parents=True, exist_ok=True)
                staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.tmp-", dir=output.parent))
                try:
                    mlm.eval()
                    _save_backbone(mlm, base_path, tokenizer, staging, trust_remote_code)
                    (staging / LINEAGE).write_text(json.dumps(lineage, indent=1, ensure_ascii=False))
                    swap_directory(staging, output)
                except BaseException:
                    shutil.rmtree(staging, ignore_errors=True)
                    raise
    finally:
        if temporary:
            shutil.rmtree(run_dir, ignore_errors=True)
    logger.info("pretrained %s for %d steps in %.1fs (loss %s -> %s); backbone saved to %s", base.source.spec,
                lineage["steps"], seconds, lineage["loss"]["first"], lineage["loss"]["last"], output)
    return PretrainResult(output, lineage)

