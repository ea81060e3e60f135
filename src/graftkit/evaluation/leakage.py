"""Leakage: test rows that are (near-)duplicates of training rows, which make held-out scores optimistic.

Three detectors, reported together with examples (row numbers, both inputs, both labels, similarity):

- exact: a hash of the normalised content. Text is NFKC-normalised, case-folded, stripped of punctuation and
  whitespace-collapsed; images and audio are hashed by their file bytes (``data.content``).
- text (text only): lightly edited copies (a typo, an extra word). Candidates are the training rows closest in
  character 3-5-gram TF-IDF space (blocking), verified by the Ratcliff-Obershelp similarity of the normalised
  texts (``difflib``) at or above ``text_threshold``. Needed because a typo changes a sentence encoder's
  WordPiece tokens: with all-MiniLM-L6-v2 on Banking77, a single transposition leaves a median cosine of 0.88,
  no higher than distinct paraphrases get (bench/RESULTS.md).
- embedding: cosine similarity of the backbone's pooled features (the ones graftkit computes and caches
  anyway) at or above ``threshold``: the embedding near-duplicate search of SemDeDup (Abbas et al. 2023),
  applied across splits; the only near-duplicate detector for images and audio (re-encoded, resized copies).
  Lee et al. 2022 ("Deduplicating Training Data Makes Language Models Better") motivate both near detectors.

``drop_leaked(test, report)`` returns the test table without the flagged rows. ``match_rows`` (the detectors on
one input column), ``text_similarity``, ``unit_rows`` and ``leakage_report`` (the record from the matches) are the
parts a multi-input table's check (``fusion/leakage.py``) builds on.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

import numpy as np

from graftkit.errors import ConfigError, DataError

DEFAULT_THRESHOLD = 0.98        # feature cosine; backbone-dependent (all-MiniLM-L6-v2: see bench/RESULTS.md)
DEFAULT_TEXT_THRESHOLD = 0.9    # Ratcliff-Obershelp similarity of the normalised texts
CANDIDATES = 10                 # training rows per test row checked by the text detector
MAX_EXAMPLES = 25
_SPACE = re.compile(r"\s+")


def normalize_text(text) -> str:
    """NFKC, case-folded, punctuation removed (Unicode category P*), whitespace collapsed (words given as a list
    are joined by spaces)."""
    text = " ".join(text) if isinstance(text, list) else text
    text = unicodedata.normalize("NFKC", "" if text is None else str(text)).casefold()
    text = "".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in text)
    return _SPACE.sub(" ", text).strip()


def content_hashes(table) -> list[str]:
    """One hash per row: of the normalised text, or of the media file's bytes."""
    if table.modality == "text":
        return [hashlib.sha256(normalize_text(t).encode("utf-8", "surrogatepass")).hexdigest() for t in table.items()]
    from graftkit.data.content import content_key

    return [content_key(item, table.modality, lambda p=p: table.where(p, table.input_column))
            for p, item in enumerate(table.items())]


def shown_input(item, limit: int = 300) -> str:
    """An input as the record shows it: the text (cut at ``limit`` characters), the file path, or a size."""
    if isinstance(item, dict):
        item = item.get("path") or "<in-memory media>"
    if isinstance(item, bytes):
        return f"<{len(item)} bytes>"
    text = str(item)
    return text if len(text) <= limit else text[:limit] + "…"


def unit_rows(features: np.ndarray) -> np.ndarray:
    """Each row scaled to unit length (cosine similarity is then a dot product)."""
    features = np.asarray(features, dtype=np.float32)
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)


def nearest_train(test_features: np.ndarray, train_features: np.ndarray, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """For each test row: the cosine similarity of its most similar training row, and that row's position."""
    test_unit, train_unit = unit_rows(test_features), unit_rows(train_features)
    best = np.empty(len(test_unit), dtype=np.float32)
    where = np.empty(len(test_unit), dtype=np.int64)
    for start in range(0, len(test_unit), chunk):
        similarity = test_unit[start:start + chunk] @ train_unit.T
        where[start:start + chunk] = similarity.argmax(axis=1)
        best[start:start + chunk] = similarity[np.arange(len(similarity)), where[start:start + chunk]]
    return best, where


def text_near_duplicates(train_texts, test_texts, *, candidates: int = CANDIDATES,
                         chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """For each test text: the highest Ratcliff-Obershelp similarity (``difflib``) of its normalised form to
    the normalised training texts among its ``candidates`` nearest in character 3-5-gram TF-IDF space, and
    the position of that training text."""
    import difflib

    from sklearn.feature_extraction.text import TfidfVectorizer

    train_norm = [normalize_text(t) for t in train_texts]
    test_norm = [normalize_text(t) for t in test_texts]
    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True, lowercase=False)
    best = np.zeros(len(test_norm))
    where = np.zeros(len(test_norm), dtype=np.int64)
    try:
        vectorizer.fit(train_norm + test_norm)
    except ValueError:  # no text with three or more characters anywhere: nothing to compare
        return best, where
    train_matrix, test_matrix = vectorizer.transform(train_norm), vectorizer.transform(test_norm)
    k = min(candidates, len(train_norm))
    for start in range(0, len(test_norm), chunk):
        scores = (test_matrix[start:start + chunk] @ train_matrix.T).toarray()
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        for offset, row in enumerate(top):
            i = start + offset
            for j in row[np.argsort(-scores[offset, row])]:
                matcher = difflib.SequenceMatcher(None, test_norm[i], train_norm[j], autojunk=False)
                if matcher.real_quick_ratio() <= best[i] or matcher.quick_ratio() <= best[i]:
                    continue
                ratio = matcher.ratio()
                if ratio > best[i]:
                    best[i], where[i] = ratio, j
    return best, where


def text_similarity(a, b) -> float:
    """The Ratcliff-Obershelp similarity (``difflib``) of two texts' normalised forms, as the text detector
    verifies a candidate pair."""
    import difflib

    return difflib.SequenceMatcher(None, normalize_text(a), normalize_text(b), autojunk=False).ratio()


def check_thresholds(threshold: float, text_threshold: float | None) -> None:
    if not -1.0 <= float(threshold) <= 1.0:
        raise ConfigError(f"leakage threshold is a cosine similarity in [-1, 1], e.g. 0.98; got {threshold!r} "
                          "(--leakage-threshold)")
    if text_threshold is not None and not 0.0 < float(text_threshold) <= 1.0:
        raise ConfigError(f"leakage text threshold is a similarity in (0, 1], e.g. 0.9; got {text_threshold!r}")


def match_rows(train, test, train_features=None, test_features=None, *, threshold: float = DEFAULT_THRESHOLD,
               text_threshold: float | None = DEFAULT_TEXT_THRESHOLD
               ) -> tuple[dict[int, dict], list[str], np.ndarray | None]:
    """The three detectors on two single-input tables: ``{test position: {"kind", "train_position",
    "similarity"}}`` for each flagged test row (under the first detector of exact, text, embedding that flags it),
    the methods used, and every test row's nearest-training cosine (None without features)."""
    train_hash = {}
    for position, digest in enumerate(content_hashes(train)):
        train_hash.setdefault(digest, position)
    found: dict[int, dict] = {}
    for position, digest in enumerate(content_hashes(test)):
        if digest in train_hash:
            found[position] = {"kind": "exact", "train_position": train_hash[digest], "similarity": 1.0}
    methods = ["normalised-content hash"]
    if train.modality == "text" and text_threshold is not None:
        ratio, nearest = text_near_duplicates(train.items(), test.items())
        for position in np.flatnonzero(ratio >= text_threshold):
            found.setdefault(int(position), {"kind": "text", "train_position": int(nearest[position]),
                                             "similarity": float(ratio[position])})
        methods.append(f"normalised-text similarity >= {text_threshold:g}")
    similarity = None
    if train_features is not None:
        if len(train_features) != len(train) or len(test_features) != len(test):
            raise DataError(f"leakage: {len(train_features)} train / {len(test_features)} test feature rows for "
                            f"{len(train)} / {len(test)} table rows; compute features of exactly these tables")
        similarity, nearest = nearest_train(test_features, train_features)
        for position in np.flatnonzero(similarity >= threshold):
            found.setdefault(int(position), {"kind": "embedding", "train_position": int(nearest[position]),
                                             "similarity": float(similarity[position])})
        methods.append(f"feature cosine >= {threshold:g}")
    return found, methods, similarity


KINDS = {"exact": 0, "text": 1, "embedding": 2}  # the order a row found by several detectors is counted in


def leakage_report(train, test, found: dict[int, dict], *, method: str, shown, threshold: float | None,
                   text_threshold: float | None, similarity: np.ndarray | None = None,
                   max_examples: int = MAX_EXAMPLES, what: str = "duplicate a training row") -> dict:
    """The leakage record (what ``graftkit report`` renders) from the matches ``found``: counts per detector, the
    flagged test positions and row numbers, label conflicts, up to ``max_examples`` examples (exact ones first,
    then by similarity) with ``shown(table, position)`` as each side's input, and the warning (``what`` the
    flagged rows do). ``threshold`` / ``text_threshold``: the ones used, None for a detector that did not run."""
    train_labels = train.labels() if train.has_labels else [None] * len(train)
    test_labels = test.labels() if test.has_labels else [None] * len(test)
    order = sorted(found, key=lambda p: (KINDS[found[p]["kind"]], -found[p]["similarity"], p))
    examples = []
    for position in order[:max_examples]:
        entry, other = found[position], found[position]["train_position"]
        examples.append({"kind": entry["kind"], "similarity": entry["similarity"],
                         "test_row": _row(test, position), "train_row": _row(train, other),
                         "test_input": shown(test, position), "train_input": shown(train, other),
                         "test_label": _label(test_labels[position]), "train_label": _label(train_labels[other])})
    positions = sorted(found)
    counts = {kind: sum(1 for p in positions if found[p]["kind"] == kind) for kind in KINDS}
    report = {
        "method": method, "threshold": None if threshold is None else float(threshold),
        "text_threshold": None if text_threshold is None else float(text_threshold),
        "n_train": len(train), "n_test": len(test), **counts, "leaked": len(positions),
        "share": len(positions) / len(test),
        "label_conflicts": sum(1 for p in positions if train_labels[found[p]["train_position"]] != test_labels[p]),
        "test_positions": positions, "test_rows": [_row(test, p) for p in positions], "examples": examples,
        "warning": None,
    }
    if similarity is not None:
        report["similarity_quantiles"] = {str(q): float(np.quantile(similarity, q)) for q in (0.5, 0.9, 0.99)}
    if positions:
        report["warning"] = (f"{len(positions)} of {len(test)} test rows ({100 * report['share']:.1f}%) {what} "
                             f"({counts['exact']} exact, {counts['text'] + counts['embedding']} near); "
                             "held-out scores are optimistic: drop them (drop_leaked / --drop-leaked) or "
                             "de-duplicate the data")
        if report["share"] > 0.5 and threshold is not None:
            report["warning"] += (f"; over half the test rows are flagged, so the threshold {threshold:g} may be too "
                                  "low for this backbone's feature space (--leakage-threshold)")
    return report


def near_duplicates(train, test, train_features=None, test_features=None, *, threshold: float = DEFAULT_THRESHOLD,
                    text_threshold: float | None = DEFAULT_TEXT_THRESHOLD, max_examples: int = MAX_EXAMPLES) -> dict:
    """Test rows that duplicate a training row: ``exact`` (normalised-content hash), ``text`` (text tables:
    normalised-text similarity >= ``text_threshold``; ``None`` turns it off) or ``embedding`` (feature cosine
    >= ``threshold``; only when both feature matrices are given). A row found by several detectors counts
    once, under the first of that order. Returns counts, the flagged test positions and row numbers, and up
    to ``max_examples`` examples (exact ones first, then by similarity)."""
    check_thresholds(threshold, text_threshold)
    if (train_features is None) != (test_features is None):
        raise DataError("leakage: give the features of both splits, or of neither (no embedding detector)")
    if len(train) == 0 or len(test) == 0:
        raise DataError(f"leakage: train has {len(train)} and test {len(test)} rows; both need rows to compare")
    if train.modality != test.modality:
        raise DataError(f"leakage: train holds {train.modality} but test holds {test.modality}; compare two splits "
                        "of the same data")
    found, methods, similarity = match_rows(train, test, train_features, test_features, threshold=threshold,
                                            text_threshold=text_threshold)
    items = {id(train): train.items(), id(test): test.items()}
    return leakage_report(train, test, found, method=" + ".join(methods),
                          shown=lambda table, position: shown_input(items[id(table)][position]),
                          threshold=threshold if similarity is not None else None,
                          text_threshold=text_threshold if train.modality == "text" else None,
                          similarity=similarity, max_examples=max_examples)


def _row(table, position: int):
    value = table.frame.index[position]
    return int(value) if isinstance(value, (int, np.integer)) else str(value)


def _label(value):
    return None if value is None else str(value)


def find_leakage(model, train, test, *, threshold: float = DEFAULT_THRESHOLD,
                 text_threshold: float | None = DEFAULT_TEXT_THRESHOLD, max_examples: int = MAX_EXAMPLES) -> dict:
    """``near_duplicates`` with the features of ``model`` (a ``Graft``; cached features are reused)."""
    train = model.as_table(train, require_label=False)
    test = model.as_table(test, require_label=False)
    return near_duplicates(train, test, model.features(train, pooled=True), model.features(test, pooled=True), threshold=threshold,
                           text_threshold=text_threshold, max_examples=max_examples)


def drop_leaked(test, report: dict):
    """``test`` without the rows ``report`` (from ``near_duplicates`` on this same table) flagged."""
    if report.get("n_test") != len(test):
        raise DataError(f"drop_leaked: the report covers {report.get('n_test')} test rows but the table has "
                        f"{len(test)}; run near_duplicates on this table first")
    flagged = set(report["test_positions"])
    keep = [p for p in range(len(test)) if p not in flagged]
    if not keep:
        raise DataError(f"{test.source}: every test row duplicates a training row; there is nothing left to "
                        "evaluate on (raise --leakage-threshold or use other test data)")
    return test.subset(keep)
