"""The ``contrastive`` strategy's run (SetFit's recipe, Tunstall et al. 2022) on the one engine.

Stage one: the encoder learns on pairs of labelled rows, target cosine 1 for a pair of one class and 0 for two
classes, loss = mean squared error of the cosine (sentence-transformers' ``CosineSimilarityLoss``, SetFit's
default), with the same HF ``Trainer`` set-up as every trainable strategy (``engine._training_arguments``: epoch
checkpoints with seals, resume, early stopping on validation-pair loss, torchrun / gloo). Stage two: the task's
linear head (logistic regression) on the tuned encoder's features of the training rows.

Pairs are sampled, never enumerated: each round gives every row one positive partner (another row of its class)
and one negative (a row of another class), so ``2 x num_iterations x rows`` pairs (SetFit's ``num_iterations``
sampling; its 1.x default ``oversampling`` enumerates all pairs, quadratic in the rows). The draw is seeded and
fixed for the run, so a resumed run trains on the same pairs.

``pairs="in-batch"``: the dataset is the rows themselves, ``num_iterations`` passes, shuffled by the Trainer's
seeded sampler; each batch is encoded once and every pair of distinct rows in it is a pair (``in_batch_pair_loss``).
"""

from __future__ import annotations

import logging
import shutil
import time

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset
from transformers import EarlyStoppingCallback, PrinterCallback, ProgressCallback, Trainer
from transformers.modeling_outputs import SequenceClassifierOutput

from graftkit.errors import ConfigError, DataError, GraftkitError
from graftkit.strategies.descriptions import description_texts
from graftkit.strategies.label_prior import description_prior
from graftkit.strategies.zero_shot import description_embeddings
from graftkit.training.callbacks import LoggingProgress, QuietLog, SealCheckpoints
from graftkit.training.checkpoints import prepare_run
from graftkit.training.distributed import is_main_process, world_size
from graftkit.training.engine import _training_arguments

logger = logging.getLogger(__name__)


def sample_pairs(y: np.ndarray, iterations: int, seed: int) -> np.ndarray:
    """``(pairs, 3)`` rows ``(i, j, target)``: per round, per row, one positive partner (target 1; skipped for a
    class with a single row) and one negative (target 0). Linear in the rows: ``<= 2 * iterations * len(y)``."""
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    members = {c: np.flatnonzero(y == c) for c in np.unique(y)}
    if len(members) < 2:
        raise DataError("contrastive pairs need rows of at least two classes")
    others = {c: np.flatnonzero(y != c) for c in members}
    pairs = []
    for _ in range(iterations):
        for i, c in enumerate(y):
            same = members[c]
            if len(same) > 1:
                j = same[rng.integers(len(same) - 1)]
                pairs.append((i, j if j != i else same[-1], 1))  # uniform over the class's other rows
            pairs.append((i, others[c][rng.integers(len(others[c]))], 0))
    order = rng.permutation(len(pairs))
    return np.asarray(pairs, dtype=np.int64)[order]


class EncodedRows(Dataset):
    """A table's rows for the encoder, tokenised once up front (text) or decoded per batch (``side``)."""

    def __init__(self, table, backbone):
        self.table, self.backbone = table, backbone
        self.items = table.items()
        self.encoded = None
        if callable(getattr(backbone, "tokenize", None)) and callable(getattr(backbone, "collate", None)):
            decoded = [backbone.load_item(item, table.where(i, table.input_column)) for i, item in enumerate(self.items)]
            self.encoded = backbone.tokenize(decoded)

    def side(self, rows: list[int]) -> dict:
        if self.encoded is not None:
            encoded = {key: [values[r] for r in rows] for key, values in self.encoded.items()}
            return dict(self.backbone.collate(encoded, range(len(rows))))
        decoded = [self.backbone.load_item(self.items[r], self.table.where(r, self.table.input_column)) for r in rows]
        return dict(self.backbone.preprocess(decoded))


class PairExamples(EncodedRows):
    """Sampled pairs ``(i, j, target)`` of a table's rows; the collator builds both sides."""

    def __init__(self, table, pairs: np.ndarray, backbone):
        super().__init__(table, backbone)
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        i, j, target = self.pairs[index]
        return {"a": int(i), "b": int(j), "label": float(target)}

    def __call__(self, batch: list[dict]) -> dict:  # the collator
        return {"a": self.side([row["a"] for row in batch]), "b": self.side([row["b"] for row in batch]),
                "labels": torch.tensor([row["label"] for row in batch], dtype=torch.float32)}


class PairModel(nn.Module):
    """The encoder through the backbone contract (``embed``); output = cosine of the two sides' features."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone.model  # registered: trained, checkpointed, wrapped by DDP
        self._embed = backbone.embed

    def forward(self, a: dict, b: dict, labels: torch.Tensor | None = None) -> SequenceClassifierOutput:
        cosine = nn.functional.cosine_similarity(self._embed(a).float(), self._embed(b).float(), dim=-1)
        loss = None if labels is None else nn.functional.mse_loss(cosine, labels.to(cosine.device).float())
        return SequenceClassifierOutput(loss=loss, logits=cosine[:, None])


class RowExamples(EncodedRows):
    """Row positions (repeats allowed: one entry per row per round) with their classes, for in-batch pairs."""

    def __init__(self, table, positions: np.ndarray, y: np.ndarray, backbone):
        super().__init__(table, backbone)
        self.positions, self.y = np.asarray(positions, dtype=np.int64), np.asarray(y)

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, index: int) -> dict:
        row = int(self.positions[index])
        return {"row": row, "label": int(self.y[row])}

    def __call__(self, batch: list[dict]) -> dict:  # the collator
        rows = [item["row"] for item in batch]
        return {"x": self.side(rows), "rows": torch.tensor(rows, dtype=torch.long),
                "labels": torch.tensor([item["label"] for item in batch], dtype=torch.long)}


def in_batch_pair_loss(embeddings: torch.Tensor, labels: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Squared error of the cosine against 1 (same class) or 0 (two classes) over every pair of distinct rows in
    the batch, positives and negatives each half of the loss (one kind alone when the batch has no other); 0 with
    a gradient when the batch holds no pair (one row, or one row repeated)."""
    z = nn.functional.normalize(embeddings.float(), dim=-1)
    cosine = z @ z.T
    pair = torch.triu(torch.ones_like(cosine, dtype=torch.bool), diagonal=1) & (rows[:, None] != rows[None, :])
    same = labels[:, None] == labels[None, :]
    terms = [t.mean() for t in ((cosine[pair & same] - 1).pow(2), cosine[pair & ~same].pow(2)) if t.numel()]
    return sum(terms) / len(terms) if terms else cosine.sum() * 0.0


class InBatchPairModel(nn.Module):
    """The encoder through the backbone contract; the loss over all pairs in the batch; logits = the embeddings."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone.model
        self._embed = backbone.embed

    def forward(self, x: dict, rows: torch.Tensor, labels: torch.Tensor | None = None) -> SequenceClassifierOutput:
        embeddings = self._embed(x).float()
        loss = None if labels is None else in_batch_pair_loss(embeddings, labels.to(embeddings.device),
                                                              rows.to(embeddings.device))
        return SequenceClassifierOutput(loss=loss, logits=embeddings)


def _in_batch_summary(y: np.ndarray, rounds: int, batch_size: int) -> dict:
    """What in-batch training sees: rows encoded, pairs per full batch, and the classes' share of positive pairs."""
    n, counts = len(y), np.bincount(y)
    return {"mode": "in-batch", "num_iterations": rounds, "encodings": int(rounds * n),
            "pairs_per_batch": batch_size * (batch_size - 1) // 2,
            "train": int(rounds * n * (min(batch_size, n) - 1) // 2),
            "positive_share": round(float((counts * (counts - 1)).sum() / max(n * (n - 1), 1)), 4)}


def fit_contrastive(graft, table, task, strategy, *, validation=None, callbacks=()) -> tuple:
    """Stage one (pairs) then stage two (head); sets the fitted state as ``fit_trainable`` does and returns
    ``(train, validation or None, how, None)``."""
    from graftkit.training.fit import _after_failure, _run_directory, validation_split

    started = time.perf_counter()
    backbone = graft.check_modality(table)
    train, val, how = validation_split(graft, table, task, validation, strategy.val_size)
    y_train = task.encode(train)
    if strategy.label_init:  # a missing or unknown class fails now, not after the encoder has trained
        description_texts(task.labels, strategy.label_descriptions, strategy.template)
    in_batch = strategy.pairs == "in-batch"
    if in_batch:
        if len(np.unique(y_train)) < 2:
            raise DataError("contrastive pairs need rows of at least two classes")
        if graft.batch_size < 2:
            raise ConfigError("in-batch pairs need at least two rows per batch; use --batch-size 2 or more")
        pairs = np.tile(np.arange(len(y_train)), strategy.num_iterations)
        val_pairs = None if val is None else np.arange(len(val))
    else:
        pairs = sample_pairs(y_train, strategy.num_iterations, graft.seed)
        val_pairs = None if val is None else sample_pairs(task.encode(val), 1, graft.seed + 1)
    if strategy.patience and val is None:
        raise ConfigError(f"early stopping (--patience {strategy.patience}) needs a validation split; set --val-size "
                          "above 0, pass validation data, or --patience 0")
    identity = {"format": 1, "backbone": backbone.fingerprint(), "strategy": strategy.to_dict(), "seed": graft.seed,
                "batch_size": graft.batch_size, "task": task.to_dict(), "train_data": train.fingerprint(),
                "validation_data": None if val is None else val.fingerprint(), "processes": world_size(),
                "stage": "contrastive pairs"}
    run_dir, temporary = _run_directory(graft)
    prepared = False
    try:
        resume_from = prepare_run(run_dir, identity, resume=graft.resume, main_process=is_main_process())
        prepared = True
        if in_batch:
            train_pairs = RowExamples(train, pairs, y_train, backbone)
            eval_pairs = None if val is None else RowExamples(val, val_pairs, task.encode(val), backbone)
        else:
            train_pairs = PairExamples(train, pairs, backbone)
            eval_pairs = None if val_pairs is None else PairExamples(val, val_pairs, backbone)
        torch.manual_seed(graft.seed)
        model = InBatchPairModel(backbone) if in_batch else PairModel(backbone)
        for p in model.parameters():
            p.requires_grad_(True)
        args = _training_arguments(strategy, run_dir=run_dir, batch_size=graft.batch_size, seed=graft.seed,
                                   device=graft.device, progress=graft.progress, validate=eval_pairs is not None,
                                   find_unused=False, epochs=strategy.epochs, metric="loss", greater_is_better=False)
        ours = [SealCheckpoints()]
        if eval_pairs is not None and strategy.patience:
            ours.append(EarlyStoppingCallback(early_stopping_patience=strategy.patience))
        trainer = Trainer(model=model, args=args, data_collator=train_pairs, train_dataset=train_pairs,
                          eval_dataset=eval_pairs, callbacks=[*ours, *callbacks])
        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(LoggingProgress() if graft.progress else QuietLog())
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    except BaseException as exc:
        graft.backbone_ = None  # half-trained weights: reload the pretrained ones next time
        if prepared and not temporary:
            _after_failure(run_dir, created=not graft.resume, crashed=not isinstance(exc, GraftkitError))
        raise
    finally:
        if temporary:
            shutil.rmtree(run_dir, ignore_errors=True)
    backbone.model.eval()
    for p in backbone.model.parameters():
        p.requires_grad_(False)
    train_s = round(time.perf_counter() - started, 3)
    history = [{"epoch": round(e["epoch"], 3), **({"train_loss": e["loss"]} if "loss" in e else {}),
                **({"val_loss": e["eval_loss"]} if "eval_loss" in e else {})}
               for e in trainer.state.log_history if "epoch" in e and ("loss" in e or "eval_loss" in e)]
    graft.adaptation_ = None
    graft.finetuned_ = True  # features now come from the tuned encoder, never from the cache
    head_started = time.perf_counter()
    X = graft.features(train, task)
    prior = None
    if strategy.label_init:
        queries = description_embeddings(backbone, task, strategy.label_descriptions, strategy.template)[0]
        prior = description_prior(queries, X, strategy.logit_scale)
    graft.head_ = task.wrap_head(task.fit_head(X, y_train, head="linear", C=strategy.C, seed=graft.seed, prior=prior))
    total = sum(p.numel() for p in backbone.model.parameters())
    head = int(sum(np.asarray(v).size for k, v in graft.head_.arrays.items() if k not in ("mean", "scale")))
    epochs = max((int(np.ceil(e["epoch"] - 1e-6)) for e in history), default=0)
    best = trainer.state.best_model_checkpoint
    if in_batch:
        stage_one = "all pairs within each batch, CosineSimilarityLoss, positives and negatives weighted equally"
        pair_record = {**_in_batch_summary(y_train, strategy.num_iterations, graft.batch_size),
                       "validation_rows": 0 if val is None else len(val)}
    else:
        stage_one = "contrastive pairs, CosineSimilarityLoss (SetFit, Tunstall et al. 2022)"
        pair_record = {"mode": "sampled", "train": int(len(pairs)),
                       "validation": 0 if val_pairs is None else int(len(val_pairs)),
                       "positive_share": round(float(pairs[:, 2].mean()), 4),
                       "num_iterations": strategy.num_iterations}
    graft.training_ = {
        "stage_one": stage_one, "pairs": pair_record,
        "history": history, "epochs_run": epochs, "best_epoch": None if best is None else
        int(np.ceil(trainer.state.epoch or 0)), "layer_groups": ["encoder (all)"],
        "parameters": {"trainable": total + head, "total": total + head, "share": 1.0},
        "validation": {"rows": 0 if val is None else len(val), "source": how}, "train_rows": len(train),
        "resumed_from": str(resume_from) if resume_from else None, "seconds": train_s,
        "head": f"{graft.head_.info.get('kind')} on the tuned encoder's features of the {len(train)} training rows"
                + (", pulled towards the class descriptions" if prior is not None else ""),
        "checkpoint_dir": None if temporary else str(run_dir.absolute())}
    graft.timings_ = {"train_s": train_s, "head_s": round(time.perf_counter() - head_started, 3),
                      "fit_s": round(time.perf_counter() - started, 3)}
    logger.info("fitted contrastive on %d rows (%d pairs) in %.1fs", len(train), len(pairs), graft.timings_["fit_s"])
    return train, val, how, None
