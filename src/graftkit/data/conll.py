"""CoNLL column files (CoNLL-2000 / 2003 and the many files written like them): one word per line with its
columns separated by whitespace, the word first and the tag last, a blank line between sentences, and
``-DOCSTART-`` lines between documents (skipped). Read into one row per sentence: ``tokens`` and ``tags`` lists.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from graftkit.errors import DataError

SUFFIXES = (".conll", ".iob", ".bio", ".bioes")
TAG = re.compile(r"^(O|[BIESLU]-\S+)$")


def looks_like_conll(path: Path, encoding: str, lines: int = 50) -> bool:
    """A ``.txt`` file is read as CoNLL when its first word lines have 2+ columns and end with tags."""
    seen = tagged = 0
    try:
        with open(path, encoding=encoding, errors="replace") as handle:
            for line in handle:
                fields = line.split()
                if not fields or fields[0] == "-DOCSTART-":
                    continue
                seen += 1
                tagged += len(fields) >= 2 and bool(TAG.match(fields[-1]))
                if seen >= lines:
                    break
    except OSError:
        return False
    return seen > 0 and tagged >= 0.9 * seen


def read_conll(path: Path, encoding: str = "utf-8") -> pd.DataFrame:
    """One row per sentence; a line with another number of columns than the file's first word line is a
    DataError naming the line."""
    sentences, tokens, tags, width = [], [], [], None
    first_line = None
    with open(path, encoding="utf-8-sig" if encoding.lower().replace("_", "-") == "utf-8" else encoding) as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields or fields[0] == "-DOCSTART-":
                if tokens:
                    sentences.append((first_line, tokens, tags))
                    tokens, tags = [], []
                continue
            if width is None:
                if len(fields) < 2:
                    raise DataError(f"{path}: line {number} has one column ({line.strip()!r:.40}); a CoNLL file has "
                                    "the word first and its tag last, separated by whitespace")
                width = len(fields)
            if len(fields) != width:
                raise DataError(f"{path}: line {number} has {len(fields)} column(s) where the file's first word line "
                                f"has {width} ({line.strip()!r:.60}); every word line needs the same columns (a word "
                                "holding a space? replace it)")
            if not tokens:
                first_line = number
            tokens.append(fields[0])
            tags.append(fields[-1])
    if tokens:
        sentences.append((first_line, tokens, tags))
    if not sentences:
        raise DataError(f"{path} holds no sentences (only blank or -DOCSTART- lines); give one word per line")
    return pd.DataFrame({"tokens": [s[1] for s in sentences], "tags": [s[2] for s in sentences],
                         "line": [s[0] for s in sentences]}, dtype=object)
