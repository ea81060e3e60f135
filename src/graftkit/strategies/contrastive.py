"""``contrastive``: SetFit's recipe (Tunstall et al. 2022, "Efficient Few-Shot Learning Without Prompts").

Stage one fine-tunes the sentence encoder on pairs of labelled rows: a pair of one class has target cosine
similarity 1, a pair of two classes 0, and the loss is the squared error of the cosine (sentence-transformers'
``CosineSimilarityLoss``, SetFit's default). Stage two fits the task's logistic-regression head on the tuned
embeddings (SetFit's default head). The pairs are drawn ``pairs_per_row`` per row per iteration, half positive
and half negative: linear in the rows (SetFit 1.x's default ``sampling_strategy="oversampling"`` enumerates
all O(n^2) pairs, which runs out of memory on large sets — huggingface/setfit issues). The run is on the one
engine (``training/contrastive.py``: the HF Trainer, epochs, early stopping on validation pairs, checkpoints and
resume, torchrun); the artifact is a fine-tuned backbone plus its head, as ``finetune``'s.

``pairs="in-batch"`` keeps the loss and its targets but takes the pairs from the batch instead of sampling them:
a batch of B rows is encoded once and all B(B-1)/2 pairs among them are scored (in-batch pairs, as in SimCSE or
sentence-transformers' ``MultipleNegativesRankingLoss``), with the positive and the negative pairs weighted
half and half, as SetFit's sampling balances them. Each round is one pass over the rows, so a round costs
``rows`` encodings instead of the sampled mode's ``4 x rows``, and sees ``rows x (B-1) / 2`` pairs instead of
``2 x rows``; measured against SetFit in bench/RESULTS.md ("Very few labels").

``label_init``: the stage-two head starts from, and is shrunk towards, the class descriptions as embedded by the
*tuned* encoder (``strategies/label_prior.py``, as ``linear-probe --label-init`` does on the frozen one).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from graftkit.errors import ConfigError
from graftkit.strategies.base import register_strategy
from graftkit.strategies.label_prior import LabelPriorConfig
from graftkit.strategies.trainable import TrainableConfig

PAIR_MODES = ("sampled", "in-batch")


@register_strategy
@dataclass
class Contrastive(LabelPriorConfig, TrainableConfig):
    name = "contrastive"
    contrastive = True  # training/fit.py hands the run to the pair trainer

    epochs: int = field(default=1, metadata={"help": "passes over the training data"})
    learning_rate: float = field(default=2e-5, metadata={"help": "learning rate of the head (trainable: the output "
                                                                "layer; contrastive: the encoder)"})
    num_iterations: int = field(default=20, metadata={
        "help": "contrastive: pair-sampling rounds; each round draws one positive and one negative pair per "
                "training row (SetFit's num_iterations; pairs = 2 x rounds x rows, linear in the rows); with "
                "pairs in-batch, passes over the rows"})
    pairs: str = field(default="sampled", metadata={
        "help": "contrastive: sampled (SetFit's: drawn pairs, each side encoded on its own) or in-batch (every "
                "pair among a batch's rows, each row encoded once; positives and negatives weighted equally)"})
    val_size: float = field(default=0.0, metadata={
        "help": "share of the training data held out for validation (0 = none)"})
    patience: int = field(default=0, metadata={
        "help": "epochs without improvement before early stopping (0 = off)"})
    C: float | None = field(default=None, metadata={
        "help": "inverse L2 strength of the linear head (ridge: alpha = 1/C); default: chosen by CV"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.num_iterations, int) or self.num_iterations < 1:
            raise ConfigError(f"contrastive num_iterations must be an integer >= 1; got {self.num_iterations!r} "
                              "(--num-iterations)")
        if self.C is not None and not self.C > 0:
            raise ConfigError(f"contrastive C must be > 0; got {self.C!r} (--C)")
        self._check_choice("pairs", PAIR_MODES)
        self._check_label_prior()

    def groups_to_train(self, n_groups: int) -> int:
        return n_groups  # the whole encoder, as SetFit tunes it
