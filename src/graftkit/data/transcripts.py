"""An audio folder with a transcript file: ``transcripts.csv`` or ``transcripts.tsv`` beside the clips, with a
``file`` column (the clip's path relative to the folder) and a ``transcript`` (or ``text``) column."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from graftkit.data.table import Table
from graftkit.errors import DataError

logger = logging.getLogger(__name__)

NAMES = ("transcripts.csv", "transcripts.tsv")
FILE_COLUMNS = ("file", "path", "audio")
TEXT_COLUMNS = ("transcript", "text", "sentence")


def transcript_file(folder: Path) -> Path | None:
    return next((folder / n for n in NAMES if (folder / n).is_file()), None)


def read_transcript_folder(folder: Path, file: Path) -> Table:
    try:
        frame = pd.read_csv(file, sep="\t" if file.suffix == ".tsv" else ",", dtype=str, keep_default_na=False,
                            quoting=3 if file.suffix == ".tsv" else 0)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{file}: not a readable {file.suffix[1:].upper()} file ({str(exc).splitlines()[0]})") from None
    columns = {c.strip().lower(): c for c in frame.columns}
    name = next((columns[c] for c in FILE_COLUMNS if c in columns), None)
    text = next((columns[c] for c in TEXT_COLUMNS if c in columns), None)
    if name is None or text is None:
        raise DataError(f"{file}: needs a header with a file column ({' / '.join(FILE_COLUMNS)}) and a transcript "
                        f"column ({' / '.join(TEXT_COLUMNS)}); found {', '.join(map(str, frame.columns))}")
    frame = pd.DataFrame({"path": frame[name].str.strip(), "transcript": frame[text]}, dtype=object)
    frame.index = pd.RangeIndex(1, len(frame) + 1)  # data-row numbers, as every reader numbers rows
    absent = [(row, p) for row, p in frame["path"].items() if not p or not (folder / p).is_file()]
    if absent:
        row, p = absent[0]
        raise DataError(f"{file}, row {row}: audio file {p!r} does not exist in {folder} ({len(absent)} row(s) name "
                        "missing files); fix the name or remove the row")
    explanation = [f"audio folder with {file.name}: {len(frame)} clips; transcripts from column {text!r}"]
    logger.info(explanation[0])
    return Table(frame=frame, modality="audio", input_column="path", label_column="transcript",
                 source=str(file), base_dir=folder.resolve(), explanation=explanation)
