"""Unlabelled data for domain adaptation: continued pretraining's corpus and domain-adversarial training's target.

One reader for both: a plain text file (one document per line, blank lines skipped), a table (CSV / TSV / JSONL /
Parquet, or a DataFrame) whose input column is given or inferred as for ``fit`` — labelled data is read the same
way, its labels ignored (task-adaptive pretraining on the training texts) — a list of inputs, or a folder of media.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pandas as pd

from graftkit.data.readers import load_data
from graftkit.data.table import Table
from graftkit.errors import DataError

logger = logging.getLogger(__name__)

TEXT_SUFFIXES = (".txt", ".text")


def _text_lines(path: Path, encoding: str) -> Table:
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty (0 bytes); give a text file with one document per line")
    try:
        lines = path.read_text(encoding=encoding).splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not {encoding} text (byte {exc.start}); re-encode it or pass --encoding") from None
    index = [i for i, line in enumerate(lines, start=1) if line.strip()]
    if not index:
        raise DataError(f"{path} has no text: every line is blank; give one document per line")
    frame = pd.DataFrame({"text": [lines[i - 1].strip() for i in index]}, index=index, dtype=object)
    return Table(frame, "text", "text", None, str(path), path.parent.resolve(),
                 [f"{path.name}: a text file, one document per line ({len(index)} non-blank lines)"])


def load_unlabelled(source, *, column: str | None = None, modality: str | None = None,
                    encoding: str = "utf-8") -> Table:
    """``source`` as a Table of inputs without labels; ``column`` names the input column of a table (default:
    inferred), ``modality`` its kind where it cannot be inferred (a list of media paths)."""
    if isinstance(source, (list, tuple)):
        if not source:
            raise DataError("the unlabelled data is an empty list; give at least one input")
        frame = pd.DataFrame({"input": list(source)}, dtype=object)
        return load_data(frame, require_label=False, **{modality or "text": "input"})
    if isinstance(source, (str, Path)):
        path = Path(source).expanduser()
        if path.is_file() and path.suffix.lower() in TEXT_SUFFIXES:
            if column is not None:
                raise DataError(f"{path} is a plain text file (one document per line) with no columns; drop --column "
                                f"{column}")
            return _text_lines(path, encoding)
    roles = {modality or "text": column} if column is not None else {}
    table = load_data(source, require_label=False, encoding=encoding, **roles)
    if len(table) == 0:
        raise DataError(f"{table.source} has no rows; give at least one input")
    return table


def corpus_fingerprint(texts: list[str]) -> str:
    """sha256 over the documents in order (what a pretraining run read, independent of the file's path)."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(hashlib.sha256(text.encode("utf-8")).digest())
    return digest.hexdigest()


def warn_if_test_rows(unlabelled: Table, test: Table, flag: str) -> float:
    """Warn (leakage) when unlabelled rows are rows of the labelled test set; returns the share of test rows found.
    Adapting to the test inputs is transductive: the test figures then no longer measure unseen data."""
    from graftkit.data.content import content_key

    if unlabelled.modality != test.modality or len(test) == 0:
        return 0.0

    def keys(table: Table) -> set[str]:
        return {content_key(item, table.modality) for item in table.items()}

    found = keys(test) & keys(unlabelled)
    share = sum(content_key(item, test.modality) in found for item in test.items()) / len(test)
    if share:
        logger.warning("leakage: %.0f%% of the test rows of %s are in the unlabelled data %s (%s); the test figures "
                       "are then no longer those of unseen data: adapt to other target rows, or hold out the test "
                       "set from them", 100 * share, test.source, unlabelled.source, flag)
    return share
