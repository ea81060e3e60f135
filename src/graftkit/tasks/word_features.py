"""Hand-made word features for the classical baseline of token classification: the word itself (lower-cased),
its shape, prefixes and suffixes, capitalisation and digits, and the neighbouring words — the feature set of the
CoNLL-2003 era's linear taggers (e.g. Zhang & Johnson 2003), one-hot by scikit-learn's ``DictVectorizer``."""

from __future__ import annotations

import re

import numpy as np

SHAPE = [(re.compile(r"[A-Z]"), "X"), (re.compile(r"[a-z]"), "x"), (re.compile(r"[0-9]"), "d")]


def shape(word: str) -> str:
    out = word
    for pattern, char in SHAPE:
        out = pattern.sub(char, out)
    return re.sub(r"(.)\1{2,}", r"\1\1", out)  # xxxxx -> xx: short words and long words of one shape agree


def word_dict(words: list[str], i: int) -> dict:
    word = words[i]
    lower = word.lower()
    features = {"bias": 1.0, f"w={lower}": 1.0, f"shape={shape(word)}": 1.0, f"p1={lower[:1]}": 1.0,
                f"p2={lower[:2]}": 1.0, f"p3={lower[:3]}": 1.0, f"s1={lower[-1:]}": 1.0, f"s2={lower[-2:]}": 1.0,
                f"s3={lower[-3:]}": 1.0, "title": float(word.istitle()), "upper": float(word.isupper()),
                "digit": float(any(c.isdigit() for c in word))}
    for offset in (-2, -1, 1, 2):
        j = i + offset
        other = words[j].lower() if 0 <= j < len(words) else ("<s>" if j < 0 else "</s>")
        features[f"w{offset:+d}={other}"] = 1.0
        if offset in (-1, 1) and 0 <= j < len(words):
            features[f"title{offset:+d}"] = float(words[j].istitle())
    return features


class WordFeatures:
    """``fit_transform(items)`` / ``transform(items)`` -> ``(sparse matrix of every word, words per sentence)``."""

    description = "word, shape, affix and context features + logistic regression"
    short_name = "word features"

    def __init__(self, task):
        self.task = task

    def _dicts(self, items):
        from graftkit.tasks.token_classification import item_words

        sentences = [item_words(item, f"item {i + 1}")[0] for i, item in enumerate(items)]
        return [word_dict(words, i) for words in sentences for i in range(len(words))], \
            np.array([len(words) for words in sentences], dtype=np.int64)

    def fit_transform(self, items):
        from sklearn.feature_extraction import DictVectorizer

        dicts, sizes = self._dicts(items)
        self.vectorizer_ = DictVectorizer()
        return self.vectorizer_.fit_transform(dicts), sizes

    def transform(self, items):
        dicts, sizes = self._dicts(items)
        return self.vectorizer_.transform(dicts), sizes
