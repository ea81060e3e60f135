"""Entity-level scores of tag sequences (IOB2): seqeval's strict definition (an entity counts when its type and
its exact word span match; Ramshaw & Marcus chunking as conlleval scores it), per entity type, token accuracy,
which types were confused for which, and examples of misses.

``entity_counts`` gives per-sentence additive counts (true positives, predicted, gold) so that a bootstrap over
sentences sums them instead of re-running seqeval per resample; tested equal to seqeval.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

OUTSIDE = "O"


def split_tag(tag: str) -> tuple[str, str | None]:
    """``"B-PER" -> ("B", "PER")``; ``"O" -> ("O", None)``; a tag of another form is a DataError's job (below)."""
    if tag == OUTSIDE:
        return OUTSIDE, None
    prefix, _, kind = tag.partition("-")
    return prefix.upper(), kind


def entities(tags: list[str]) -> list[tuple[str, int, int]]:
    """``(type, first word, last word + 1)`` of each entity in an IOB2 sequence (an orphan ``I-`` starts one)."""
    found, start, kind = [], None, None
    for i, tag in enumerate([*tags, OUTSIDE]):
        prefix, this = split_tag(tag)
        if start is not None and (prefix != "I" or this != kind):
            found.append((kind, start, i))
            start = None
        if prefix in ("B", "I") and start is None:
            start, kind = i, this
    return found


def entity_counts(gold: list[list[str]], predicted: list[list[str]]) -> np.ndarray:
    """``(n, 3)``: per sentence, entities both agree on, predicted entities, gold entities."""
    counts = np.zeros((len(gold), 3), dtype=np.int64)
    for i, (g, p) in enumerate(zip(gold, predicted)):
        gold_set, pred_set = set(entities(g)), set(entities(p))
        counts[i] = (len(gold_set & pred_set), len(pred_set), len(gold_set))
    return counts


def f1_from_counts(sums) -> dict:
    true, predicted, gold = (float(v) for v in sums)
    precision = true / predicted if predicted else 0.0
    recall = true / gold if gold else 0.0
    f1 = 2 * true / (predicted + gold) if predicted + gold else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def resampled_f1(counts: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Entity F1 of every bootstrap resample ``index[d]`` of the sentences."""
    sums = counts[index].sum(axis=1)  # (draws, 3)
    return np.where(sums[:, 1] + sums[:, 2] > 0, 2 * sums[:, 0] / np.maximum(sums[:, 1] + sums[:, 2], 1), 0.0)


def token_accuracy(gold: list[list[str]], predicted: list[list[str]]) -> float:
    total = sum(len(g) for g in gold)
    right = sum(a == b for g, p in zip(gold, predicted) for a, b in zip(g, p))
    return right / total if total else 0.0


def type_confusion(gold: list[list[str]], predicted: list[list[str]]) -> dict:
    """Gold entity type -> what was predicted on its exact span: the same type, another type, or nothing
    (``"missed"``), plus predicted entities on spans that hold no gold entity (``"spurious"``)."""
    table: dict[str, Counter] = {}
    spurious: Counter = Counter()
    for g, p in zip(gold, predicted):
        by_span = {(a, b): kind for kind, a, b in entities(p)}
        gold_spans = set()
        for kind, a, b in entities(g):
            gold_spans.add((a, b))
            table.setdefault(kind, Counter())[by_span.get((a, b), "missed")] += 1
        for (a, b), kind in by_span.items():
            if (a, b) not in gold_spans:
                spurious[kind] += 1
    return {"gold_to_predicted": {k: dict(v) for k, v in sorted(table.items())}, "spurious": dict(spurious)}


def entity_metrics(gold: list[list[str]], predicted: list[list[str]]) -> dict:
    """Headline (micro) precision / recall / F1 by seqeval's strict IOB2 mode, per-type rows, token accuracy and
    the type confusion."""
    from seqeval.metrics import classification_report
    from seqeval.scheme import IOB2

    gold, predicted = [list(s) for s in gold], [list(s) for s in predicted]
    report = classification_report(gold, predicted, mode="strict", scheme=IOB2, output_dict=True, zero_division=0)
    micro = report.get("micro avg", {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 0})
    per_type = {kind: {"precision": float(row["precision"]), "recall": float(row["recall"]),
                       "f1": float(row["f1-score"]), "support": int(row["support"])}
                for kind, row in report.items() if not kind.endswith(" avg")}
    macro = report.get("macro avg", {}).get("f1-score", 0.0)
    return {"n": len(gold), "entities": int(micro["support"]), "precision": float(micro["precision"]),
            "recall": float(micro["recall"]), "f1": float(micro["f1-score"]), "macro_f1": float(macro),
            "token_accuracy": token_accuracy(gold, predicted), "per_type": per_type,
            "type_confusion": type_confusion(gold, predicted)}
