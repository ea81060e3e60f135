"""Word and character error rates of transcripts (``jiwer``) on Whisper's English text normaliser.

Both sides are normalised before scoring (Radford et al. 2022, appendix C: lower case, punctuation and filler
words removed, numbers and British spellings standardised), so ``"Seven."`` and ``"7"`` are the same word. The
corpus WER is the sum of word edits over the sum of reference words (not a mean of per-utterance rates), which
is what a bootstrap over utterances resamples: per-utterance edit counts and reference lengths.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


@lru_cache(maxsize=4)
def _normalizer(spelling: tuple):
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    return EnglishTextNormalizer(dict(spelling))


def normalize(texts, spelling: dict | None = None) -> list[str]:
    """Whisper's English normaliser; ``spelling``: its British -> American map (``normalizer.json``), if any."""
    norm = _normalizer(tuple(sorted((spelling or {}).items())))
    return [" ".join(norm(str(t)).split()) for t in texts]


def edit_counts(references, hypotheses, unit: str = "word") -> np.ndarray:
    """``(n, 5)`` per utterance: substitutions, deletions, insertions, hits, reference length, in words or
    characters of the (already normalised) texts. An empty reference counts every hypothesis token inserted."""
    import jiwer

    rows = np.zeros((len(references), 5), dtype=np.int64)
    for i, (ref, hyp) in enumerate(zip(references, hypotheses)):
        tokens = (lambda s: s.split()) if unit == "word" else (lambda s: list(s))
        if not tokens(ref):
            rows[i] = (0, 0, len(tokens(hyp)), 0, 0)
            continue
        if not tokens(hyp):
            rows[i] = (0, len(tokens(ref)), 0, 0, len(tokens(ref)))
            continue
        out = jiwer.process_words(ref, hyp) if unit == "word" else jiwer.process_characters(ref, hyp)
        rows[i] = (out.substitutions, out.deletions, out.insertions, out.hits,
                   out.substitutions + out.deletions + out.hits)
    return rows


def error_rate(counts: np.ndarray) -> float:
    """(S + D + I) / N over the rows of ``edit_counts``; 0 reference words and 0 edits is 0, edits alone are 1."""
    errors, length = int(counts[:, :3].sum()), int(counts[:, 4].sum())
    if length == 0:
        return 0.0 if errors == 0 else 1.0
    return errors / length


def resampled_error_rate(counts: np.ndarray, index: np.ndarray) -> np.ndarray:
    """The error rate on each bootstrap resample ``index[d]`` of the utterances (sums of counts, not rates)."""
    errors = counts[:, :3].sum(axis=1)[index].sum(axis=1).astype(np.float64)
    length = counts[:, 4][index].sum(axis=1).astype(np.float64)
    return np.where(length > 0, errors / np.maximum(length, 1), (errors > 0).astype(np.float64))


def bootstrap_interval(counts: np.ndarray, level: float = 0.95, draws: int = 1000, seed: int = 0) -> list[float]:
    """A percentile interval of the error rate over ``draws`` resamples of the utterances."""
    if len(counts) == 0:
        return [float("nan"), float("nan")]
    index = np.random.default_rng(seed).integers(0, len(counts), size=(draws, len(counts)))
    values = resampled_error_rate(counts, index)
    tail = (1 - level) / 2
    return [round(float(np.quantile(values, tail)), 6), round(float(np.quantile(values, 1 - tail)), 6)]


def word_alignment(reference: str, hypothesis: str) -> list[dict]:
    """jiwer's word alignment of two (already normalised) texts as chunks ``{"op", "reference", "hypothesis"}``:
    ``op`` is ``equal`` / ``substitute`` / ``delete`` / ``insert``, the words are the chunk's words on each side."""
    import jiwer

    ref, hyp = reference.split(), hypothesis.split()
    if not ref or not hyp:  # jiwer refuses an empty reference; both sides empty is no chunk at all
        return ([{"op": "delete", "reference": ref, "hypothesis": []}] if ref else []) + \
               ([{"op": "insert", "reference": [], "hypothesis": hyp}] if hyp else [])
    chunks = jiwer.process_words(reference, hypothesis).alignments[0]
    return [{"op": c.type, "reference": ref[c.ref_start_idx:c.ref_end_idx],
             "hypothesis": hyp[c.hyp_start_idx:c.hyp_end_idx]} for c in chunks]


def frequent_errors(references, hypotheses, top: int = 10) -> dict:
    """The most frequent word substitutions (reference -> hypothesis), deletions and insertions over all
    utterances, each ``[[words, count], ...]`` most frequent first (ties in first-seen order)."""
    from collections import Counter

    found = {"substitutions": Counter(), "deletions": Counter(), "insertions": Counter()}
    for ref, hyp in zip(references, hypotheses):
        for chunk in word_alignment(ref, hyp):
            if chunk["op"] == "substitute":  # a substitute chunk pairs its words one to one
                found["substitutions"].update(f"{a} -> {b}" for a, b in zip(chunk["reference"], chunk["hypothesis"]))
            elif chunk["op"] == "delete":
                found["deletions"].update(chunk["reference"])
            elif chunk["op"] == "insert":
                found["insertions"].update(chunk["hypothesis"])
    return {kind: [[words, count] for words, count in counter.most_common(top)] for kind, counter in found.items()}
