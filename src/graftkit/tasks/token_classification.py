"""Token classification (named-entity recognition and other word tagging): one tag per word of a sentence.

Rows are sentences. The input column holds the words (a list, as CoNLL files and JSONL ``tokens`` give them)
or the text as one string (split into words with their character offsets); the target holds one tag per word
(CoNLL, JSONL ``tags``) or the entity spans over the text (``[{start, end, label}]``). Tags in IOB1, IOB2 or
BIOES / BILOU are read into IOB2 (``tasks.tagging``); an ``I-`` tag that starts an entity in IOB2 data is
repaired to ``B-`` with a warning naming the first row (conlleval reads it so).

Features, targets and outputs are ragged (``tasks.ragged``): one ``(words, d)`` array of word features per
sentence (the first sub-token of each word, ``tasks.alignment``), one array of tag ids, one ``(words, tags)``
array of scores. The head on frozen features is one multinomial logistic regression over all words (C chosen by
CV on a sample of sentences); the engine trains a linear layer on every sub-token with the non-first ones
ignored by the loss. Metrics are entity-level precision / recall / F1 in seqeval's strict IOB2 mode (the primary
metric is the micro F1), per type, token accuracy; calibration is a temperature on the word logits.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from graftkit.errors import ConfigError, DataError
from graftkit.scoring.calibration import calibration_report, fit_temperature, scaled_probabilities
from graftkit.scoring.entities import entity_counts, entity_metrics, f1_from_counts, resampled_f1
from graftkit.tasks.alignment import IGNORE
from graftkit.tasks.base import Task
from graftkit.tasks.heads import LogRegHead, WordHead
from graftkit.tasks.ragged import flat, is_ragged, lengths, ragged, split_like
from graftkit.tasks.registry import register_task
from graftkit.tasks.tagging import (OUTSIDE, SCHEMES, check_tags, detect_scheme, entities, joined,
                                    spans_to_tags, to_iob2, words_of)

logger = logging.getLogger(__name__)

METHOD = "temperature scaling (Guo et al. 2017) of the word logits, T minimising held-out NLL"
SEARCH_WORDS = 20_000   # the C search of the frozen head runs on sentences holding about this many words
ABSENT_LOGIT = -30.0    # a tag never seen in training: a logit no softmax picks


def _as_list(value, where: str):
    """A cell holding a list: a list, or its JSON text (CSV), or whitespace-separated words / tags."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if hasattr(value, "tolist") and not isinstance(value, str):  # a numpy array from Parquet
        return list(value.tolist())
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: the cell starts with '[' but is not JSON ({exc.msg}); write a JSON list") from None
        if isinstance(parsed, list):
            return parsed
    return None


def item_words(value, where: str) -> tuple[list[str], list[tuple[int, int]], str]:
    """``(words, character offsets, text)`` of one input: given words are joined by single spaces; a text is
    split into words (``tagging.words_of``)."""
    given = _as_list(value, where)
    if given is not None:
        if not all(isinstance(w, str) and w != "" for w in given):
            raise DataError(f"{where}: every word must be a non-empty string; got {given!r:.80}; fix the words or "
                            "drop the row")
        text, offsets = joined(given)
        words = given
    else:
        text = "" if value is None else str(value)
        words, offsets = words_of(text)
    if not words:
        raise DataError(f"{where}: the sentence has no words; drop the row")
    return words, offsets, text


def sentence_words(table) -> list[tuple[list[str], list[tuple[int, int]], str]]:
    """``item_words`` of every row of ``table``."""
    return [item_words(value, table.where(position, table.input_column))
            for position, value in enumerate(table.items())]


def _is_span(item) -> bool:
    if isinstance(item, dict):
        return {"start", "end"} <= set(item)
    return isinstance(item, (list, tuple)) and len(item) == 3 and all(isinstance(v, (int, float)) for v in item[:2])


def read_tags(table, words=None) -> list[list[str]]:
    """The target of every row as tags in its own scheme (one per word); spans become IOB2 tags."""
    words = words if words is not None else sentence_words(table)
    out = []
    for position, value in enumerate(table.labels()):
        where = table.where(position, table.label_column)
        given = _as_list(value, where)
        if given is None:
            given = str(value).split() if isinstance(value, str) else None
        if given is None:
            raise DataError(f"{where}: the target must be a list of tags or of entity spans; got {value!r:.80}")
        tokens, offsets, _ = words[position]
        if not given or all(_is_span(item) for item in given):  # spans (none: a sentence with no entity)
            out.append(spans_to_tags(given, offsets, where))
            continue
        if given and not all(isinstance(t, str) for t in given):
            raise DataError(f"{where}: the target mixes entity spans and other values ({given!r:.80}); give tags or "
                            "spans")
        if len(given) != len(tokens):
            raise DataError(f"{where}: {len(given)} tags for {len(tokens)} words; give one tag per word")
        check_tags(given, where)
        out.append([t.strip() for t in given])
    return out


@register_task
@dataclass(frozen=True)
class TokenClassification(Task):
    kind: ClassVar[str] = "token-classification"
    primary_metric: ClassVar[str] = "f1"
    headline: ClassVar[tuple[str, ...]] = ("f1", "precision", "recall", "token_accuracy")
    engine_metrics: ClassVar[tuple[str, ...]] = ("f1", "precision", "recall", "token_accuracy")
    calibrated_without_scaling: ClassVar[bool] = False
    options: ClassVar[tuple[str, ...]] = ("tag_scheme",)
    unit: ClassVar[str] = "word"

    types: tuple[str, ...] = ()   # entity types, sorted
    scheme: str = "iob2"          # the tag scheme of the training data (targets are read in it)
    reason: str = ""

    # -- what the task is --------------------------------------------------------------------------------------
    @classmethod
    def claims(cls, table, **_) -> str | None:
        if not table.has_labels or isinstance(table.label_column, tuple):
            return None
        inputs, targets = table.items()[:20], table.labels()[:20]
        for value, target in zip(inputs, targets):
            words, tags = _as_list(value, ""), _as_list(target, "") if not isinstance(target, list) else target
            if isinstance(tags, list) and tags and all(_is_span(t) for t in tags) and isinstance(value, str):
                return (f"task: token-classification (column {table.label_column!r} holds entity spans over the "
                        f"text of {table.input_column!r}; override with --task)")
            if not (isinstance(words, list) and isinstance(tags, list) and len(words) == len(tags) and words):
                return None
        return (f"task: token-classification (column {table.label_column!r} holds one tag per word of "
                f"{table.input_column!r}; override with --task)")

    @classmethod
    def infer(cls, table, tag_scheme: str | None = None, **_) -> TokenClassification:
        if tag_scheme is not None and tag_scheme not in SCHEMES:
            raise ConfigError(f"--tag-scheme must be one of {', '.join(SCHEMES)}; got {tag_scheme!r}")
        if isinstance(table.label_column, tuple):
            raise DataError(f"{table.source}: token classification reads one target column of tags or spans; got "
                            f"{len(table.label_column)} columns")
        sequences = read_tags(table)
        scheme = tag_scheme or detect_scheme(sequences)
        types = sorted({tag.split("-", 1)[1] for tags in sequences for tag in tags if tag != OUTSIDE})
        if not types:
            raise DataError(f"{table.source}: column {table.label_column!r} tags no entity in any of its "
                            f"{len(sequences)} rows (every tag is O); a tagger needs examples of entities")
        how = "given by --tag-scheme" if tag_scheme else "detected"
        return cls(types=tuple(types), scheme=scheme,
                   reason=f"task: token-classification ({len(types)} entity types: {', '.join(types[:8])}; tags in "
                          f"{scheme.upper()} ({how}), read as IOB2; override with --task)")

    @property
    def labels(self) -> tuple[str, ...]:
        return (OUTSIDE, *(f"{prefix}-{kind}" for kind in self.types for prefix in ("B", "I")))

    def to_dict(self) -> dict:
        return {"kind": self.kind, "types": list(self.types), "scheme": self.scheme}

    @classmethod
    def from_dict(cls, data: dict) -> TokenClassification:
        if data["scheme"] not in SCHEMES or not all(isinstance(t, str) for t in data["types"]):
            raise ValueError(f"scheme {data['scheme']!r} / types {data['types']!r}")
        return cls(types=tuple(data["types"]), scheme=data["scheme"])

    def check_options(self, strategy) -> None:
        if getattr(strategy, "augment", False):
            raise ConfigError("--augment: text augmentation drops words, which would shift the tags; token "
                              "classification trains without it (--augment false)")
        if getattr(strategy, "head", "linear") == "mlp":
            raise ConfigError("the mlp head is built for single-label classification; a token probe uses the linear "
                              "head (--head linear)")

    # -- targets -----------------------------------------------------------------------------------------------
    def words(self, table) -> list[list[str]]:
        return [words for words, _, _ in sentence_words(table)]

    def iob2(self, table) -> list[list[str]]:
        """The table's tags in IOB2, repairs counted and warned about once."""
        sequences = read_tags(table)
        out, repaired, first = [], 0, None
        for position, tags in enumerate(sequences):
            converted, fixed = to_iob2(tags, self.scheme)
            if fixed and first is None:
                first = position
            repaired += fixed
            out.append(converted)
        if repaired:
            logger.warning("%s: %d tag(s) start an entity with I- in IOB2 data (first in row %s); read as B- "
                           "(pass --tag-scheme iob1 if the file is IOB1)", table.source, repaired,
                           table.frame.index[first])
        return out

    def encode(self, table) -> np.ndarray:
        index = {tag: i for i, tag in enumerate(self.labels)}
        out = []
        for position, tags in enumerate(self.iob2(table)):
            unknown = [t for t in tags if t not in index]
            if unknown:
                raise DataError(f"{table.where(position, table.label_column)}: entity type of tag {unknown[0]!r} was "
                                f"not seen in training (the model knows {', '.join(self.types)}); drop those rows or "
                                "refit with them")
            out.append(np.array([index[t] for t in tags], dtype=np.int64))
        return ragged(out)

    def tags_of(self, y) -> list[list[str]]:
        return [[self.labels[int(i)] for i in row] for row in y]

    def decode(self, outputs, calibration: dict | None = None) -> list[list[str]]:
        """IOB2 tags per sentence (an ``I-`` the arg-max puts after another type starts an entity, as scored)."""
        return [to_iob2([self.labels[int(i)] for i in np.asarray(row).argmax(axis=1)], "iob1")[0] for row in outputs]

    def records(self, outputs, calibration: dict | None = None, table=None, **_) -> list[dict]:
        """Per sentence: the words, their tags, and the entities as JSON (type, character start / end in the text,
        the text, and the mean probability of the chosen tags over the entity's words)."""
        decoded = self.decode(outputs)
        words = sentence_words(table) if table is not None else [(None, None, None)] * len(decoded)
        out = []
        for tags, probabilities, (tokens, offsets, text) in zip(decoded, outputs, words):
            found = []
            for kind, a, b in entities(tags):
                entry = {"type": kind, "score": round(float(np.asarray(probabilities)[a:b].max(axis=1).mean()), 6),
                         "first_word": a, "last_word": b - 1}
                if offsets is not None:
                    start, end = offsets[a][0], offsets[b - 1][1]
                    entry = {**entry, "start": start, "end": end, "text": text[start:end]}
                found.append(entry)
            out.append({**({"words": " ".join(tokens)} if tokens is not None else {}), "tags": " ".join(tags),
                        "entities": json.dumps(found, ensure_ascii=False)})
        return out

    def describe_targets(self, y) -> dict:
        tags = self.tags_of(y)
        counts = {kind: 0 for kind in self.types}
        for sequence in tags:
            for kind, _, _ in entities(sequence):
                counts[kind] += 1
        return {"entity_counts": counts, "sentences": len(tags), "words": int(sum(len(t) for t in tags))}

    # -- splits ------------------------------------------------------------------------------------------------
    def calibration_folds(self, y, max_folds: int) -> tuple[int, str | None]:
        # 3 folds: each refit is a logistic regression over every training word, and a temperature needs no more
        return (min(3, max_folds, len(y)), None) if len(y) >= 2 else (0, "fewer than 2 training sentences")

    # -- heads and the engine ----------------------------------------------------------------------------------
    def stacked(self, X) -> np.ndarray:
        return flat(X) if is_ragged(X) else X

    def empty_outputs(self, n: int) -> np.ndarray:
        return np.empty(n, dtype=object)

    def wrap_head(self, head):
        return head if isinstance(head, WordHead) else WordHead.around(head)

    def fit_head(self, X, y, *, head: str = "linear", seed: int = 0, C=None, cv_folds: int = 5, max_iter: int = 1000,
                 standardize: bool = True, **_):
        if head == "mlp":
            raise ConfigError("the mlp head is built for single-label classification; a token probe uses the linear "
                              "head (--head linear)")
        words, tags = flat(X), flat(y).astype(np.int64)
        if C is None:
            C = self._search_C(X, y, cv_folds=min(cv_folds, 3), max_iter=max_iter, standardize=standardize, seed=seed)
        present = np.unique(tags)
        inner = LogRegHead.fit(words, np.searchsorted(present, tags), C=C, max_iter=max_iter,
                               standardize=standardize, seed=seed)
        return WordHead.around(self._all_tags(inner, present))

    def _search_C(self, X, y, **options) -> float:
        """C of the frozen head, by CV over the words of a seeded sample of sentences (the final fit uses all)."""
        sizes = lengths(y)
        order = np.random.default_rng(options["seed"]).permutation(len(y))
        chosen = order[:max(1, int(np.searchsorted(np.cumsum(sizes[order]), SEARCH_WORDS)) + 1)]
        tags = flat(y[chosen]).astype(np.int64)
        present = np.unique(tags)
        search = LogRegHead.fit(flat(X[chosen]), np.searchsorted(present, tags), **options)
        logger.info("token probe: C=%g chosen on %d sentences (%d words)", search.info["C"], len(chosen), len(tags))
        return float(search.info["C"])

    def _all_tags(self, inner: LogRegHead, present: np.ndarray) -> LogRegHead:
        """A head over every tag of the task from one fitted on the tags present in training (the others get a
        logit no softmax picks)."""
        weight, bias = inner.linear_weights(fold_scaling=False)
        coef = np.zeros((self.output_size, weight.shape[1]), np.float32)
        intercept = np.full(self.output_size, ABSENT_LOGIT, np.float32)
        coef[present], intercept[present] = weight, bias
        arrays = {"mean": inner.arrays["mean"], "scale": inner.arrays["scale"], "coef": coef, "intercept": intercept}
        return LogRegHead(arrays, {**inner.info, "tags_seen": len(present)})

    def fit_classical(self, X, y, *, seed: int = 0, C: float | None = None, max_iter: int = 2000, **options):
        """Logistic regression over hand-made word features (``classical_featurizer``), C by CV."""
        from sklearn.linear_model import LogisticRegression

        from graftkit.tasks.classical import Fitted, choose_C

        features, _ = X
        tags = flat(y).astype(np.int64)
        present = np.unique(tags)
        ids = np.searchsorted(present, tags)
        chosen = C if C is not None else choose_C(features, ids, max_iter=max_iter, seed=seed, **options)

        model = LogisticRegression(C=chosen, max_iter=max_iter, random_state=seed).fit(features, ids)

        def raw(X_new):
            matrix, new_sizes = X_new
            scores = np.full((matrix.shape[0], self.output_size), ABSENT_LOGIT)
            scores[:, present[model.classes_]] = model.predict_log_proba(matrix)
            return split_like(scores, new_sizes)

        return Fitted(raw, {"estimator": "logistic regression", "C": float(chosen),
                            "parameters": int(model.coef_.size + model.intercept_.size)})

    def classical_featurizer(self):
        from graftkit.tasks.word_features import WordFeatures

        return WordFeatures(self)

    def loss(self, z, labels, target_mean, target_scale):
        from torch.nn.functional import cross_entropy

        return cross_entropy(z.float().reshape(-1, z.shape[-1]), labels.long().reshape(-1), ignore_index=IGNORE)

    def from_engine(self, raw, labels):
        """Per-sub-token outputs and labels (padded with ``IGNORE`` across batches) as ragged word rows: the words
        are the positions whose label is not ``IGNORE``."""
        raw, labels = np.asarray(raw), np.asarray(labels)
        keep = [row != IGNORE for row in labels]
        return ragged(r[k] for r, k in zip(raw, keep)), ragged(row[k].astype(np.int64) for row, k in zip(labels, keep))

    def score_engine(self, raw: np.ndarray, y: np.ndarray) -> dict:
        raw, y = self.from_engine(raw, y)
        return {k: v for k, v in self.summary(y, raw).items() if k != "n"}

    # -- calibration and metrics -------------------------------------------------------------------------------
    def fit_calibration(self, raw, y, *, scale: bool = True) -> dict | None:
        if not scale:
            return None
        return {**fit_temperature(flat(raw), flat(y).astype(np.int64)).to_dict(), "method": METHOD}

    def skipped_calibration(self, reason: str) -> dict:
        return {"temperature": 1.0, "status": f"skipped: {reason}", "method": METHOD, "fitted_on": None}

    def outputs(self, raw, calibration: dict | None):
        temperature = float((calibration or {}).get("temperature", 1.0))
        return ragged(scaled_probabilities(np.asarray(part, dtype=np.float64), temperature) for part in raw)

    def _counts(self, y, outputs) -> np.ndarray:
        return entity_counts(self.tags_of(y), self.decode(outputs))

    def primary(self, y, outputs, calibration: dict | None = None) -> float:
        return f1_from_counts(self._counts(y, outputs).sum(axis=0))["f1"]

    def resampled_primary(self, y, outputs, index, calibration: dict | None = None) -> np.ndarray:
        return resampled_f1(self._counts(y, outputs), index)

    def summary(self, y, outputs, calibration: dict | None = None) -> dict:
        gold, predicted = self.tags_of(y), self.decode(outputs)
        scores = f1_from_counts(entity_counts(gold, predicted).sum(axis=0))
        total = sum(len(g) for g in gold)
        right = sum(a == b for g, p in zip(gold, predicted) for a, b in zip(g, p))
        return {"n": len(gold), **scores, "token_accuracy": right / total if total else 0.0}

    def metrics(self, y, raw, calibration, *, table=None, examples: int = 10, **_) -> dict:
        calibration = calibration or {}
        gold, outputs = self.tags_of(y), self.outputs(raw, calibration)
        predicted = self.decode(outputs)
        metrics = entity_metrics(gold, predicted)
        temperature = float(calibration.get("temperature", 1.0))
        words_y = flat(y).astype(np.int64)
        metrics["calibration"] = {
            **{k: v for k, v in calibration_report(scaled_probabilities(flat(raw), 1.0), flat(outputs), words_y,
                                                   temperature).items()},
            "status": calibration.get("status", "off"), "unit": "words"}
        metrics["misses"] = self._misses(gold, predicted, table, examples)
        return metrics

    def _misses(self, gold, predicted, table, limit: int) -> list[dict]:
        words = self.words(table) if table is not None else None
        out = []
        for position, (g, p) in enumerate(zip(gold, predicted)):
            if set(entities(g)) == set(entities(p)):
                continue
            entry = {"row": int(table.frame.index[position]) if table is not None else position + 1,
                     "gold": [[k, a, b] for k, a, b in entities(g)], "predicted": [[k, a, b] for k, a, b in entities(p)]}
            if words is not None:
                entry["words"] = words[position]
            out.append(entry)
            if len(out) >= limit:
                break
        return out

    def describe(self) -> str:
        return f"{self.kind} over {len(self.types)} entity types ({', '.join(f'`{t}`' for t in self.types)}), IOB2 tags"

    def describe_calibration(self, calibration: dict | None) -> str:
        if not calibration:
            return "Word probabilities are the head's own (no temperature was fitted; `calibrate=False`)."
        if calibration["temperature"] == 1.0:
            return f"Word probabilities are the head's own: temperature scaling was {calibration['status']}."
        return (f"Word probabilities are calibrated: the word logits are divided by T = "
                f"{calibration['temperature']:.4f} (temperature scaling, Guo et al. 2017), fitted on "
                f"{calibration['fitted_on']}; held-out word ECE there {calibration['ece_before']:.4f} -> "
                f"{calibration['ece_after']:.4f}. `manifest.json` → `calibration`.")

    def format_metrics(self, metrics: dict, top: int = 20) -> str:
        lines = [f"entity F1 {metrics['f1']:.4f}   precision {metrics['precision']:.4f}   recall "
                 f"{metrics['recall']:.4f}   token accuracy {metrics['token_accuracy']:.4f}   "
                 f"(n={metrics['n']} sentences, {metrics.get('entities', '?')} entities)"]
        for kind, row in list(metrics.get("per_type", {}).items())[:top]:
            lines.append(f"  {kind:<12} P {row['precision']:.4f}  R {row['recall']:.4f}  F1 {row['f1']:.4f}  "
                         f"(support {row['support']})")
        return "\n".join(lines)
