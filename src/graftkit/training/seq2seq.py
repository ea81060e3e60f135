"""Generative tasks (speech recognition) on an encoder-decoder model: fit, transcription and the trained weights.

``Graft`` hands a task with ``generative = True`` to this module instead of the features -> head path. A fit
always measures rung 0 first, the pretrained model as it is (zero-shot, the model's own ``generate``), on the
validation rows; then, for a trainable strategy, the Hugging Face ``Seq2SeqTrainer`` trains on the model's own
sequence loss (labels = the tokenised transcripts, ``-100`` padding; no loop of ours), validating each epoch
by WER from ``generate`` (``predict_with_generate``), with early stopping on it. What trains:

- ``decoder-only``: the decoder blocks and final norm; the encoder and the token / position embeddings stay
  frozen (Whisper ties the token embedding to the output projection: 20 M of tiny.en's 38 M parameters);
- ``finetune --layers N``: the top N groups of encoder stem, encoder blocks, encoder norm, decoder embeddings,
  decoder blocks, decoder norm (N <= blocks + 1 stays in the decoder); ``full``: all of them;
- ``lora``: peft LoRA on the decoder's attention and feed-forward projections (default), encoder untouched.

While the encoder is frozen and nothing augments the audio, each training clip's encoder output is computed
once and the Trainer steps the decoder on it (``encoder_outputs``): the same loss, without re-running a frozen
30 s encoder every epoch. Artifacts hold what trained only: ``trained.safetensors`` (the trained parameters by
name) or ``adapter/`` (``PeftModel.save_pretrained``).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from graftkit.errors import ArtifactError, ConfigError
from graftkit.tasks.speech_recognition import GenerationHead
from graftkit.training.augment import augmenter_for
from graftkit.training.callbacks import AugmentEpoch, Deadline, LoggingProgress, QuietLog, SealCheckpoints
from graftkit.training.checkpoints import stopped_at
from graftkit.training.distributed import world_size
from graftkit.training.fit import training_run, validation_split

logger = logging.getLogger(__name__)

TRAINED_FILE = "trained.safetensors"
ADAPTER_DIR = "adapter"
IGNORE = -100
DEFAULT_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")


# -- transcription ------------------------------------------------------------------------------------------
def _batches(n: int, size: int):
    return [list(range(i, min(n, i + size))) for i in range(0, n, size)]


def transcribe_items(backbone, items, where, *, batch_size: int, max_new_tokens: int, progress: bool = False,
                     augment=None) -> np.ndarray:
    """Transcripts of ``items`` (clip references) with the model's own ``generate``, batch by batch."""
    from tqdm.auto import tqdm

    was_training = backbone.model.training
    backbone.model.eval()
    out = []
    for batch in tqdm(_batches(len(items), batch_size), disable=not progress, desc="transcribing", leave=False):
        decoded = [backbone.load_item(items[i], where(i)) for i in batch]
        if augment is not None:
            decoded = [augment(x, i) for x, i in zip(decoded, batch)]
        out.extend(backbone.transcribe(backbone.preprocess(decoded), max_new_tokens))
    backbone.model.train(was_training)
    return np.array(out, dtype=object)


def transcribe(graft, table) -> np.ndarray:
    """``graft``'s transcripts of ``table``'s clips (the task's raw outputs)."""
    backbone = graft.check_modality(table)
    graft.task_.spelling = backbone.spelling
    return transcribe_items(backbone, table.items(), lambda i: table.where(i, table.input_column),
                            batch_size=graft.batch_size, max_new_tokens=graft.head_.info["max_new_tokens"],
                            progress=graft.progress)


# -- what trains ----------------------------------------------------------------------------------------------
def _freeze(model) -> None:
    for p in model.parameters():
        p.requires_grad_(False)


def _trained_groups(backbone, strategy) -> list:
    groups = backbone.layer_groups()
    if getattr(strategy, "frozen_encoder", False):
        return list(backbone.decoder_groups()[1:])  # blocks + final norm; the tied embeddings stay
    most = strategy.groups_to_train(len(groups))
    return groups[len(groups) - most:]


def _apply_lora(backbone, strategy):
    from peft import LoraConfig, get_peft_model

    from graftkit.training.efficient import resolve_targets

    decoder = backbone.model.model.decoder
    wanted = strategy.targets() or list(DEFAULT_LORA_TARGETS)
    names = [f"model.decoder.{n}" for n in resolve_targets(decoder, wanted, strategy=strategy.name)]
    config = LoraConfig(r=strategy.rank, lora_alpha=strategy.alpha, lora_dropout=strategy.dropout,
                        target_modules=names)
    return get_peft_model(backbone.model, config), names


def prepare_trainable(backbone, strategy) -> dict:
    """Mark what ``strategy`` trains; returns the optimiser's parameter groups and a description."""
    _freeze(backbone.model)
    if getattr(strategy, "uses_peft", False):
        backbone.peft_model, targets = _apply_lora(backbone, strategy)
        params = [p for n, p in backbone.model.named_parameters() if "lora_" in n]
        for p in params:
            p.requires_grad_(True)
        rate = strategy.learning_rate * strategy.backbone_lr_ratio
        return {"groups": [{"params": params, "lr": rate}], "trains": f"LoRA on {len(targets)} decoder projections",
                "targets": targets}
    chosen = _trained_groups(backbone, strategy)
    groups = []
    for depth, module in enumerate(reversed(chosen)):
        params = [p for p in module.parameters()]
        for p in params:
            p.requires_grad_(True)
        groups.append({"params": params, "lr": strategy.group_learning_rate(depth)})
    names = {id(m): n for n, m in backbone.model.named_modules()}
    shown = [names.get(id(m), type(m).__name__) for m in chosen]
    return {"groups": groups, "trains": f"{len(chosen)} layer group(s): {', '.join(shown[:8])}", "targets": shown}


def encoder_frozen(backbone) -> bool:
    return not any(p.requires_grad for p in backbone.model.model.encoder.parameters())


# -- examples for the Trainer -----------------------------------------------------------------------------
class SpeechExamples(Dataset):
    """Clips and their tokenised transcripts; with ``states`` the encoder outputs stand in for the clips."""

    def __init__(self, table, texts, backbone, augment: bool = False, states=None):
        self.items = table.items()
        self.where = [table.where(i, table.input_column) for i in range(len(table))]
        self.labels = [backbone.label_ids(str(t), table.where(i, table.label_column)) for i, t in enumerate(texts)]
        self.augment, self.states = augment, states

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        row = {"item": self.items[index], "where": self.where[index], "labels": self.labels[index]}
        if self.states is not None:
            row["state"] = self.states[index]
        if self.augment:
            row["position"] = index
        return row


class SpeechCollator:
    """Rows -> ``{"input_features" | "encoder_outputs", "labels"}``; rows with a ``position`` (training rows under
    ``augment``) go through the augmenter at the current epoch (``AugmentEpoch``), as the engine's collator."""

    def __init__(self, backbone, augmenter=None):
        self.backbone, self.augmenter = backbone, augmenter
        self.epoch = 0

    def __call__(self, rows: list[dict]) -> dict:
        width = max(len(r["labels"]) for r in rows)
        labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
        for i, r in enumerate(rows):
            labels[i, :len(r["labels"])] = torch.tensor(r["labels"])
        if "state" in rows[0]:
            return {"encoder_outputs": (torch.stack([r["state"] for r in rows]),), "labels": labels}
        decoded = [self.backbone.load_item(r["item"], r["where"]) for r in rows]
        if self.augmenter is not None:
            decoded = [self.augmenter(x, self.epoch, r["position"]) if "position" in r else x
                       for x, r in zip(decoded, rows)]
        return {"input_features": self.backbone.preprocess(decoded)["input_features"], "labels": labels}


@torch.inference_mode()
def encoder_states(backbone, examples: SpeechExamples, batch_size: int) -> list:
    out = []
    for batch in _batches(len(examples), batch_size):
        decoded = [backbone.load_item(examples.items[i], examples.where[i]) for i in batch]
        features = backbone.preprocess(decoded)["input_features"].to(backbone.device)
        out.extend(backbone.model.model.encoder(features).last_hidden_state.cpu())
    return out


# -- fit ------------------------------------------------------------------------------------------------------
def _history(log_history: list[dict]) -> list[dict]:
    rows: dict[int, dict] = {}
    for entry in log_history:
        if "epoch" not in entry or "train_runtime" in entry:
            continue
        row = rows.setdefault(round(entry["epoch"]), {"epoch": round(entry["epoch"])})
        if "loss" in entry:
            row["train_loss"], row["lr"] = entry["loss"], entry.get("learning_rate")
        for key in ("loss", "wer", "cer"):
            if f"eval_{key}" in entry:
                row[f"val_{key}"] = entry[f"eval_{key}"]
    return [rows[e] for e in sorted(rows)]


def mean_loss_for_the_trainer(model) -> None:
    """The one workaround of this module. ``WhisperForConditionalGeneration.forward`` takes ``**kwargs`` but its
    loss is a mean that ignores the Trainer's ``num_items_in_batch``; from the ``**kwargs`` the Trainer concludes
    the opposite and then skips the division for gradient accumulation and multiplies the loss by the process count
    under torchrun (doubled gradients, which clipping turns into another model than one process trains).
    ``accepts_loss_kwargs`` is the Trainer's own switch for this; ``tests/test_speech_recognition.py`` fails
    once upstream's loss starts reading ``num_items_in_batch``."""
    model.accepts_loss_kwargs = False


def _compute_metrics(task, tokenizer):
    def compute(prediction):
        predictions = np.where(prediction.predictions == IGNORE, tokenizer.pad_token_id, prediction.predictions)
        labels = np.where(prediction.label_ids == IGNORE, tokenizer.pad_token_id, prediction.label_ids)
        hyps = [t.strip() for t in tokenizer.batch_decode(predictions, skip_special_tokens=True)]
        refs = [t.strip() for t in tokenizer.batch_decode(labels, skip_special_tokens=True)]
        summary = task.summary(np.array(refs, dtype=object), np.array(hyps, dtype=object))
        return {"wer": summary["wer"], "cer": summary["cer"]}
    return compute


def _train(graft, backbone, task, strategy, train, y_train, val, y_val, max_new_tokens, callbacks) -> dict:
    started = time.perf_counter()
    metric = task.check_engine_metric(strategy.metric)
    if getattr(strategy, "adapt_to", None):  # DANN reads pooled features; a generative model has none to pool
        raise ConfigError(f"--adapt-to (domain-adversarial training) is for tasks with a head on pooled features; "
                          f"{task.kind} trains a generative decoder; drop --adapt-to")
    plan = prepare_trainable(backbone, strategy)
    augmenter = augmenter_for(backbone, graft.seed) if strategy.augment else None
    train_examples = SpeechExamples(train, y_train, backbone, augment=augmenter is not None)
    cached = encoder_frozen(backbone) and augmenter is None
    if cached:
        train_examples.states = encoder_states(backbone, train_examples, graft.batch_size)
    collator = SpeechCollator(backbone, augmenter)
    val_examples = None if val is None else SpeechExamples(val, y_val, backbone)
    with training_run(graft, backbone, strategy, task, train, val) as (run_dir, resume_from):
        return _run_trainer(graft, backbone, task, strategy, plan, metric, max_new_tokens, callbacks, started,
                            train_examples, val_examples, collator, augmenter, cached, run_dir, resume_from)


def _run_trainer(graft, backbone, task, strategy, plan, metric, max_new_tokens, callbacks, started,
                 train_examples, val_examples, collator, augmenter, cached, run_dir, resume_from) -> dict:
    from transformers import (
        EarlyStoppingCallback,
        PrinterCallback,
        ProgressCallback,
        Seq2SeqTrainer,
        Seq2SeqTrainingArguments,
    )

    validate = val_examples is not None
    stopped = stopped_at(resume_from) if resume_from else None  # early stopping had already ended the run
    processes = world_size()
    if graft.batch_size % processes:
        raise ConfigError(f"batch_size {graft.batch_size} does not split evenly over {processes} processes; use a "
                          f"multiple of {processes} (--batch-size)")
    on_cuda = torch.device(graft.device).type == "cuda"
    args = Seq2SeqTrainingArguments(
        output_dir=str(run_dir), per_device_train_batch_size=graft.batch_size // processes,  # the same steps
        per_device_eval_batch_size=graft.batch_size, num_train_epochs=stopped or strategy.epochs,
        learning_rate=strategy.learning_rate,
        lr_scheduler_type={"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}[
            strategy.lr_schedule],
        warmup_steps=strategy.warmup, weight_decay=strategy.weight_decay, max_grad_norm=strategy.max_grad_norm,
        gradient_accumulation_steps=strategy.grad_accumulation, eval_strategy="epoch" if validate else "no",
        save_strategy="epoch" if validate else "no", save_total_limit=1,
        # a run the user can resume (checkpoint_dir) keeps the optimiser, scheduler and RNG states with the
        # weights; a temporary one only needs the weights, for the best epoch restored at the end
        save_only_model=graft.checkpoint_dir is None,
        logging_strategy="epoch", load_best_model_at_end=validate, metric_for_best_model=metric if validate else None,
        greater_is_better=task.metric_improves(metric) if validate else None, predict_with_generate=True,
        generation_max_length=max_new_tokens + 4, full_determinism=strategy.deterministic, seed=graft.seed,
        data_seed=graft.seed, use_cpu=not on_cuda, report_to="none", disable_tqdm=not graft.progress,
        remove_unused_columns=False, label_names=["labels"], dataloader_num_workers=0)
    optimizer = torch.optim.AdamW(plan["groups"], lr=strategy.learning_rate, weight_decay=strategy.weight_decay)
    ours = [SealCheckpoints()] + ([AugmentEpoch(collator)] if augmenter is not None else [])
    if validate and strategy.patience:
        ours.append(EarlyStoppingCallback(early_stopping_patience=strategy.patience))
    mean_loss_for_the_trainer(backbone.model)
    trainer = Seq2SeqTrainer(model=backbone.model, args=args, data_collator=collator,
                             train_dataset=train_examples, eval_dataset=val_examples,
                             compute_metrics=_compute_metrics(task, backbone.tokenizer),
                             callbacks=[*ours, *callbacks], optimizers=(optimizer, None))
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(LoggingProgress() if graft.progress else QuietLog())
    deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    finally:
        torch.use_deterministic_algorithms(deterministic)
    backbone.model.eval()
    trained = sum(p.numel() for g in plan["groups"] for p in g["params"])
    _freeze(backbone.model)
    total = sum(p.numel() for p in backbone.model.parameters())
    history = _history(trainer.state.log_history)
    scored = [row for row in history if f"val_{metric}" in row]
    pick = max if task.metric_improves(metric) else min
    best = pick(scored, key=lambda row: row[f"val_{metric}"])["epoch"] if validate and scored else None
    return {"strategy": strategy.name, "trains": plan["trains"], "targets": plan["targets"],
            "layer_groups": plan["targets"], "best_epoch": best,
            "parameters": {"trainable": int(trained), "total": int(total), "share": round(trained / total, 6)},
            "history": history, "epochs_run": len(history), "metric": metric,
            "encoder_outputs_cached": cached, "augmentation": augmenter.describe() if augmenter else None,
            "checkpoint_dir": None if graft.checkpoint_dir is None else str(run_dir.absolute()),
            "resumed_from": str(resume_from) if resume_from else None,
            "stopped": next((c.stopped for c in callbacks if isinstance(c, Deadline) and c.stopped), None),
            "seconds": round(time.perf_counter() - started, 3)}


def fit_generative(graft, table, task, strategy, *, validation=None, callbacks=()) -> None:
    """Fit ``graft`` on ``table`` for a generative ``task``: zero-shot first, then train as ``strategy`` says."""
    started = time.perf_counter()
    backbone = graft.check_modality(table)
    task.spelling = backbone.spelling
    trainable = getattr(strategy, "trainable", False)
    if trainable:
        train, val, how = validation_split(graft, table, task, validation, strategy.val_size)
        if strategy.patience and val is None:
            raise ConfigError(f"early stopping (--patience {strategy.patience}) needs a validation split; set "
                              "--val-size above 0, pass validation data, or --patience 0")
    else:
        train, how = table, "given" if validation is not None else "none"
        val = None if validation is None else graft.as_table(validation, require_label=True)
    y_train = task.encode(train)
    y_val = None if val is None else task.encode(val)
    max_new_tokens = backbone.max_new_tokens_for(y_train)
    graft.head_ = GenerationHead(None, {"max_new_tokens": max_new_tokens})
    graft.task_, graft.strategy_ = task, strategy
    graft.input_ = {"modality": table.modality, "column": table.input_column, "label_column": table.label_column}
    graft.data_ = {"source": table.source, "rows": len(table), "fingerprint": table.fingerprint(),
                   **task.describe_targets(task.encode(table))}
    graft.calibration_ = task.skipped_calibration("transcripts are generated, not scored per class")
    # the training clips are not transcribed again (a full generate pass); validation and test rows are
    graft.metrics_ = {"train": {"n": len(train), "transcribed": False}}
    graft.training_ = None

    def score(rows, y):
        return task.summary(y, transcribe(graft, rows))

    if val is not None:  # rung 0, always first: the pretrained model as it is
        graft.metrics_["validation_zero_shot"] = score(val, y_val)
        logger.info("zero-shot validation: WER %.4f", graft.metrics_["validation_zero_shot"]["wer"])
    if not trainable:
        if val is not None:
            graft.metrics_["validation"] = graft.metrics_["validation_zero_shot"]
        graft.timings_ = {"fit_s": round(time.perf_counter() - started, 3)}
        return
    try:
        record = _train(graft, backbone, task, strategy, train, y_train, val, y_val, max_new_tokens, list(callbacks))
    except BaseException:
        graft.backbone_ = None  # half-trained weights: reload the pretrained ones next time
        raise
    graft.finetuned_ = True
    graft.training_ = {**record, "validation": {"rows": 0 if val is None else len(val), "source": how},
                       "train_rows": len(train), "max_new_tokens": max_new_tokens}
    if val is not None:
        graft.metrics_["validation"] = score(val, y_val)
    graft.timings_ = {"train_s": record["seconds"], "fit_s": round(time.perf_counter() - started, 3)}
    logger.info("fitted %s (speech recognition) on %d clips in %.1fs: %d of %d parameters trained",
                strategy.name, len(train), graft.timings_["fit_s"], record["parameters"]["trainable"],
                record["parameters"]["total"])


# -- artifacts ------------------------------------------------------------------------------------------------
def save_trained(graft, staging: Path) -> list[str]:
    """Only what trained: the LoRA adapter (peft's own format) or the trained parameters by name."""
    from safetensors.torch import save_file

    backbone = graft.backbone_
    peft_model = getattr(backbone, "peft_model", None)
    if peft_model is not None:
        folder = staging / ADAPTER_DIR
        peft_model.save_pretrained(str(folder), safe_serialization=True)
        return sorted(p.relative_to(staging).as_posix() for p in folder.rglob("*") if p.is_file())
    targets = graft.training_["targets"]
    named = dict(backbone.model.named_parameters())
    modules = dict(backbone.model.named_modules())
    tensors = {}
    for target in targets:
        for name, p in modules[target].named_parameters(prefix=target):
            tensors[name] = named[name].detach().cpu().contiguous()
    save_file(tensors, str(staging / TRAINED_FILE))
    return [TRAINED_FILE]


def load_trained(graft, path: Path) -> None:
    from safetensors.torch import load_file

    model = graft.backbone_.model
    if (path / ADAPTER_DIR).is_dir():
        from peft import PeftModel

        graft.backbone_.peft_model = PeftModel.from_pretrained(model, str(path / ADAPTER_DIR))
    elif (path / TRAINED_FILE).is_file():
        tensors = load_file(str(path / TRAINED_FILE))
        state = model.state_dict()
        wrong = [k for k, v in tensors.items() if k not in state or state[k].shape != v.shape]
        if wrong:
            raise ArtifactError(f"{path / TRAINED_FILE}: {len(wrong)} tensor(s) do not fit backbone {graft.backbone!r} "
                                f"(e.g. {wrong[0]}); refit the model")
        model.load_state_dict(tensors, strict=False)
    else:
        raise ArtifactError(f"{path}: the trained weights ({TRAINED_FILE} or {ADAPTER_DIR}/) are missing; the model "
                            "directory is incomplete, refit it")
    _freeze(model)
    model.eval()
    graft.finetuned_ = True
