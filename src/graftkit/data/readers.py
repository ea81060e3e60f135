"""Readers: CSV / TSV / JSONL / Parquet files, pandas DataFrames, Hugging Face datasets, and
image or audio folders (one sub-folder per class) -> Table.

Column roles come from the caller (text= / image= / audio= / label=) or are inferred from
names and values; every inference is recorded in ``Table.explanation`` so the CLI can print it.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import json
import logging
from pathlib import Path

import pandas as pd

from graftkit.data.conll import SUFFIXES as CONLL_SUFFIXES
from graftkit.data.conll import looks_like_conll, read_conll
from graftkit.data.roles import given_roles, multi_input_table, wants_multi_input
from graftkit.data.table import Table
from graftkit.errors import DataError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif"}
LABEL_NAMES = ("label", "labels", "target", "class", "category", "y", "intent", "sentiment", "stars", "tags",
               "ner_tags", "entities", "spans")
TEXT_NAMES = ("text", "sentence", "review", "content", "body", "message", "utterance", "description", "tokens",
              "words")
# Values that stand for "no label" in exported data (R's NA, JSON's null, pandas' nan, a dash): a class named so is
# almost always a missing label. The tasks refuse them; ``drop_missing=True`` (``--drop-missing``) drops their rows.
MISSING_LABELS = frozenset({"na", "n/a", "nan", "null", "none", "-", "?"})
DROP_HINT = "drop_missing=True / --drop-missing drops those rows"
TABLE_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
                  ".parquet": "parquet", ".pq": "parquet", **{suffix: "conll" for suffix in CONLL_SUFFIXES}}


def _sniffed(path: Path, encoding: str) -> str | None:
    """A ``.txt`` file holding CoNLL columns (one word and its tag per line) is read as CoNLL."""
    return "conll" if path.suffix.lower() == ".txt" and looks_like_conll(path, encoding) else None


def load_data(source, *, text: str | list[str] | None = None, image: str | list[str] | None = None,
              audio: str | list[str] | None = None, label: str | list[str] | None = None, format: str | None = None,
              encoding: str = "utf-8", require_label: bool = True, known_columns: dict | None = None,
              drop_missing: bool = False, numeric: list[str] | None = None, categorical: list[str] | None = None,
              roles: str | None = None) -> Table:
    """Load a data set into a Table.

    ``source`` is a file path (CSV, TSV, JSONL, Parquet), a folder of class sub-folders holding
    images or audio clips, a ``pandas.DataFrame`` or a ``datasets.Dataset``. ``known_columns``
    (role -> column, e.g. from a fitted model) is used for roles not given, where the column exists.
    ``label`` may name several columns (one 0/1 column per label: a multi-label target). Targets are read
    (and refused with the row and column) by the task, not here: blank labels are legal for some tasks.

    Several inputs per row (``data/roles.py``): several media columns (``text=["title", "review"]``) or tabular
    ones (``numeric=``, ``categorical=``) give a multi-input table (``Table.roles``); ``roles="infer"`` also
    assigns every other column a role, with the reason recorded. ``known_columns={"roles": ...}`` reads the
    columns a fitted multi-input model was fitted on.
    """
    named = {"text": text, "image": image, "audio": audio, "numeric": numeric, "categorical": categorical}
    if roles == "infer" or wants_multi_input(**named) or "roles" in (known_columns or {}):
        return _multi_input(source, named, label, format, encoding, require_label, roles == "infer",
                            (known_columns or {}).get("roles"), drop_missing)
    roles = {"text": text, "image": image, "audio": audio}
    known = known_columns or {}
    if sum(v is not None for v in roles.values()) > 1:
        given = ", ".join(f"{k}={v!r}" for k, v in roles.items() if v is not None)
        raise DataError(f"give one input column (text=, image= or audio=); got {given}")
    if isinstance(source, pd.DataFrame):
        return _from_frame(source.astype(object), "DataFrame", None, roles, label, require_label, known, drop_missing)
    if hasattr(source, "to_pandas") and hasattr(source, "features"):  # datasets.Dataset, duck-typed
        return _from_frame(_dataset_frame(source), "Dataset", None, roles, label, require_label, known, drop_missing)
    if not isinstance(source, (str, Path)):
        raise DataError(f"data must be a file path, folder, pandas.DataFrame or datasets.Dataset; got {type(source).__name__}")
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(f"data file or folder {str(path)!r} does not exist; check the path")
    if path.is_dir():
        return _from_folder(path, roles, label)  # the label is the folder name: never missing
    try:
        codec = codecs.lookup(encoding)
    except LookupError:
        raise DataError(f"unknown text encoding {encoding!r} (encoding= / --encoding); use a Python codec name "
                        "such as utf-8, latin-1 or cp1252") from None
    if not getattr(codec, "_is_text_encoding", True):  # base64, zlib, rot13 ...: codecs, not text encodings
        raise DataError(f"{encoding!r} is not a text encoding (encoding= / --encoding); use one such as utf-8, "
                        "latin-1 or cp1252")
    kind = format or TABLE_SUFFIXES.get(path.suffix.lower()) or _sniffed(path, encoding)
    if kind not in ("csv", "tsv", "jsonl", "parquet", "conll"):
        raise DataError(f"{path}: cannot tell the format from the suffix {path.suffix!r}; use .csv, .tsv, .jsonl, "
                        ".parquet or .conll, or pass format='csv'|'tsv'|'jsonl'|'parquet'|'conll' (CLI: --format)")
    frame = _read_file(path, kind, encoding)
    return _from_frame(frame, str(path), path.parent.resolve(), roles, label, require_label, known, drop_missing)


def _multi_input(source, named, label, format, encoding, require_label, infer, known_roles,
                 drop_missing: bool) -> Table:
    """A multi-input table (``data/roles.py``) from a DataFrame or a file."""
    given = given_roles(**named)
    if isinstance(source, pd.DataFrame):
        return multi_input_table(source.astype(object), "DataFrame", None, given, label, require_label, infer,
                                 known_roles, drop_missing)
    if not isinstance(source, (str, Path)):
        raise DataError(f"a multi-input table is read from a file path or a pandas.DataFrame; got {type(source).__name__}")
    path = Path(source).expanduser()
    if not path.is_file():
        raise DataError(f"data file {str(path)!r} does not exist; check the path")
    kind = format or TABLE_SUFFIXES.get(path.suffix.lower())
    if kind not in ("csv", "tsv", "jsonl", "parquet"):
        raise DataError(f"{path}: a multi-input table is a .csv, .tsv, .jsonl or .parquet file (or pass format=)")
    frame = _read_file(path, kind, encoding)
    return multi_input_table(frame, str(path), path.parent.resolve(), given, label, require_label, infer, known_roles,
                             drop_missing)


def _dataset_frame(dataset) -> pd.DataFrame:
    """A ``datasets.Dataset`` as a frame; ClassLabel ids become their names (-1, "no label", becomes blank)."""
    frame = dataset.to_pandas()
    for name, feature in dataset.features.items():
        if type(feature).__name__ == "ClassLabel":
            frame[name] = frame[name].map(lambda i, f=feature: f.int2str(int(i)) if int(i) >= 0 else None)
    return frame


def _read_file(path: Path, kind: str, encoding: str) -> pd.DataFrame:
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty (0 bytes); give a file with a header row and data rows")
    try:
        if kind in ("csv", "tsv"):
            frame = pd.read_csv(path, sep="," if kind == "csv" else "\t", dtype=str, keep_default_na=False,
                                encoding=encoding, quoting=csv.QUOTE_MINIMAL if kind == "csv" else csv.QUOTE_NONE)
        elif kind == "jsonl":
            frame = _read_jsonl(path, encoding)
        elif kind == "conll":
            frame = read_conll(path, encoding)
        else:
            frame = pd.read_parquet(path)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not valid {encoding} text (byte {exc.start}: {exc.reason}); "
                        "re-save it as UTF-8 or pass its encoding (CLI: --encoding latin-1)") from None
    except UnicodeError as exc:  # e.g. UTF-16 without a byte-order mark
        raise DataError(f"{path} cannot be read as {encoding} text ({exc}); pass the exact encoding, e.g. "
                        "--encoding utf-16-le for UTF-16 without a byte-order mark") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} has no columns; give a file with a header row and data rows") from None
    except pd.errors.ParserError as exc:
        raise DataError(f"{path} is not a well-formed {kind.upper()} file: {str(exc).strip()}") from None
    except (OSError, ValueError) as exc:
        if kind != "parquet":
            raise
        raise DataError(f"{path} is not a readable Parquet file ({exc}); check the file") from None
    duplicated = _duplicate_columns(path, kind, encoding, frame)
    if duplicated:
        raise DataError(f"{path}: column name(s) {', '.join(repr(c) for c in duplicated)} appear more than once in "
                        "the header; give every column its own name")
    if frame.empty:
        if kind == "jsonl":
            raise DataError(f"{path} holds no JSON objects (only blank lines); write one object per line")
        raise DataError(f"{path} has a header but no data rows; add rows")
    return frame


def _duplicate_columns(path: Path, kind: str, encoding: str, frame: pd.DataFrame) -> list[str]:
    """Header names given twice (pandas would silently rename the second ``name.1``)."""
    if kind in ("csv", "tsv"):
        with open(path, encoding="utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding,
                  newline="") as handle:
            reader = csv.reader(handle, delimiter="," if kind == "csv" else "\t",
                                quoting=csv.QUOTE_MINIMAL if kind == "csv" else csv.QUOTE_NONE)
            header = next(reader, [])
    else:
        header = [str(c) for c in frame.columns]
    seen, twice = set(), []
    for name in header:
        if name in seen and name not in twice:
            twice.append(name)
        seen.add(name)
    return twice


def _unique_keys(number: int, path: Path):
    def hook(pairs):
        keys = [key for key, _ in pairs]
        twice = sorted({key for key in keys if keys.count(key) > 1})
        if twice:
            raise DataError(f"{path}: line {number} gives the key(s) {', '.join(map(repr, twice))} more than once; "
                            "give every field once")
        return dict(pairs)
    return hook


def _read_jsonl(path: Path, encoding: str) -> pd.DataFrame:
    records = []
    if codecs.lookup(encoding).name == "utf-8":
        encoding = "utf-8-sig"  # a byte-order mark, as some editors write, is not part of the first object
    with open(path, encoding=encoding) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line, object_pairs_hook=_unique_keys(number, path))
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}: line {number} is not valid JSON ({exc.msg}); one JSON object per line") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}: line {number} is a JSON {type(record).__name__}, not an object; "
                                'write one object per line, e.g. {"text": "...", "label": "..."}')
            for key, value in record.items():
                if isinstance(value, str) and not _encodable(value):
                    raise DataError(f"{path}: line {number}, field {key!r} holds a lone surrogate (an unpaired "
                                    "\\ud800-\\udfff escape), which is not text; fix or drop that line")
            records.append(record)
    return pd.DataFrame.from_records(records).astype(object)


def _closest(name: str, columns) -> str:
    match = difflib.get_close_matches(name, [str(c) for c in columns], n=1)
    return f"; did you mean {match[0]!r}?" if match else ""


def _require_column(name: str, frame: pd.DataFrame, where: str, flag: str) -> None:
    if name not in frame.columns:
        cols = ", ".join(str(c) for c in frame.columns)
        raise DataError(f"{where}: no column {name!r} (given as {flag}= / --{flag}); columns are: {cols}"
                        f"{_closest(name, frame.columns)}")


def named_columns(frame: pd.DataFrame, where: str) -> pd.DataFrame:
    """A copy of ``frame`` with string column names, refused when two columns share a name."""
    frame = frame.copy()
    frame.columns = [str(c) for c in frame.columns]
    twice = sorted(set(frame.columns[frame.columns.duplicated()]))
    if twice:
        raise DataError(f"{where}: column name(s) {', '.join(map(repr, twice))} appear more than once; give every "
                        "column its own name")
    return frame


def _from_frame(frame: pd.DataFrame, where: str, base_dir: Path | None, roles: dict, label: str | None,
                require_label: bool, known: dict, drop_missing: bool = False) -> Table:
    frame = named_columns(frame, where)
    if not any(roles.values()):
        roles = {r: (known.get(r) if known.get(r) in frame.columns else None) for r in roles}
    if label is None and _present(known.get("label"), frame):
        label = known["label"]
    if isinstance(label, (list, tuple)):
        label = tuple(str(c) for c in label) if len(label) > 1 else str(label[0]) if label else None
    frame.index = pd.RangeIndex(1, len(frame) + 1)
    if frame.empty:
        raise DataError(f"{where} has no rows; give at least one row")
    explanation: list[str] = []
    label = _infer_label(frame, where, label, require_label, explanation)
    modality, column = _infer_input(frame, where, roles, label, explanation)
    columns = (label,) if isinstance(label, str) else label or ()
    if columns and not require_label and any(frame[c].map(_is_blank).any() for c in columns):
        explanation.append(f"label column {label!r} ignored: it is blank in some rows, and labels are not needed here")
        label, columns = None, ()
    for name in columns:
        frame[name] = _clean_labels(frame[name])
    if drop_missing and columns and require_label:  # predict keeps every row
        frame = _drop_missing(frame, where, columns, explanation)
    _check_inputs(frame, where, modality, column, base_dir)
    _check_encodable(frame, where, [column, *columns])
    for line in explanation:
        logger.info(line)
    return Table(frame=frame, modality=modality, input_column=column, label_column=label, source=where,
                 base_dir=base_dir, explanation=explanation)


def _present(label, frame) -> bool:
    columns = label if isinstance(label, (list, tuple)) else [label]
    return label is not None and len(columns) > 0 and all(c in frame.columns for c in columns)


def _infer_label(frame, where, label, require_label, explanation):
    if isinstance(label, tuple):
        for column in label:
            _require_column(column, frame, where, "labels")
        if len(set(label)) < len(label):
            raise DataError(f"{where}: --labels names a column twice ({', '.join(label)}); name each label column once")
        return label
    if label is not None:
        _require_column(label, frame, where, "label")
        return label
    lowered = {c.lower(): c for c in frame.columns}
    for name in LABEL_NAMES:
        if name in lowered:
            explanation.append(f"label column: {lowered[name]!r} (by its name; override with --label)")
            return lowered[name]
    if require_label:
        raise DataError(f"{where}: cannot tell which column is the label; pass label=COLUMN (CLI: --label COLUMN); "
                        f"columns are: {', '.join(frame.columns)}")
    return None


def _suffix_share(values, suffixes) -> float:
    sample = [v for v in values[:200] if isinstance(v, str)]
    if not sample:
        return 0.0
    return sum(Path(v).suffix.lower() in suffixes for v in sample) / len(sample)


def _infer_input(frame, where, roles, label, explanation):
    for modality, column in roles.items():
        if column is not None:
            _require_column(column, frame, where, modality)
            if column == label or (isinstance(label, tuple) and column in label):
                raise DataError(f"{where}: column {column!r} is given as both the input and the label; pick two columns")
            return modality, column
    taken = label if isinstance(label, tuple) else (label,)
    candidates = [c for c in frame.columns if c not in taken]
    if not candidates:
        raise DataError(f"{where}: there is no input column besides the label {label!r}; add a text, image or audio column")
    for column in candidates:
        values = frame[column].tolist()
        for modality, suffixes in (("image", IMAGE_SUFFIXES), ("audio", AUDIO_SUFFIXES)):
            if _suffix_share(values, suffixes) > 0.9:
                explanation.append(f"{modality} column: {column!r} (its values are {modality} file paths; override with --{modality})")
                return modality, column
        if values and isinstance(values[0], dict) and ("bytes" in values[0] or "array" in values[0]):
            modality = "audio" if "array" in values[0] or "sampling_rate" in values[0] else "image"
            explanation.append(f"{modality} column: {column!r} (it holds encoded {modality}; override with --{modality})")
            return modality, column
    lowered = {c.lower(): c for c in candidates}
    for name in TEXT_NAMES:
        if name in lowered:
            explanation.append(f"text column: {lowered[name]!r} (by its name; override with --text)")
            return "text", lowered[name]
    text_like = [c for c in candidates if frame[c].map(lambda v: isinstance(v, str)).all()]
    if not text_like:
        raise DataError(f"{where}: cannot tell which column is the input; pass --text, --image or --audio COLUMN")
    column = max(text_like, key=lambda c: frame[c].str.len().mean())
    explanation.append(f"text column: {column!r} (the string column with the longest values; override with --text)")
    return "text", column


def _clean_labels(series: pd.Series) -> pd.Series:
    """Labels as stripped strings ("" where missing); lists (JSONL) stay lists for the task to read or refuse."""
    return series.map(lambda v: v if isinstance(v, list) else "" if _is_missing(v) else str(v).strip())


def is_missing_label(value) -> bool:
    """A blank label or a missing-value spelling (``NA``, ``null``, ``None``, ``nan``, ``-``, ...)."""
    return isinstance(value, str) and (value == "" or value.strip().lower() in MISSING_LABELS)


def _drop_missing(frame: pd.DataFrame, where: str, columns, explanation: list) -> pd.DataFrame:
    """The rows whose label is missing in any label column dropped; the row numbers stay the file's."""
    missing = frame[list(columns)].map(is_missing_label).any(axis=1)
    if not missing.any():
        return frame
    dropped = frame.index[missing].tolist()
    if len(dropped) == len(frame):
        raise DataError(f"{where}: every row's label is missing ({len(dropped)} rows), so --drop-missing leaves "
                        "nothing; fill in the labels")
    line = (f"dropped {len(dropped)} of {len(frame)} row(s) whose label is missing (blank, NA, null, ...) "
            f"(row {_rows(dropped)}) (--drop-missing)")
    explanation.append(line)
    logger.warning("%s: %s", where, line)
    return frame.loc[~missing]


def _rows(index) -> str:
    return ", ".join(str(r) for r in index[:5]) + (" ..." if len(index) > 5 else "")


def _is_missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and value != value)


def _is_blank(value) -> bool:
    return _is_missing(value) or (isinstance(value, str) and not value.strip())


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_encodable(frame, where, columns) -> None:
    """Text that cannot be written as UTF-8 (a lone surrogate from a JSON ``\\ud800`` escape) fails here, by row,
    instead of as a traceback when it is hashed or saved."""
    for column in columns:
        for row, value in frame[column].items():
            if isinstance(value, str) and not _encodable(value):
                raise DataError(f"{where}: row {row}, column {column!r} holds a lone surrogate (an unpaired "
                                "\\ud800-\\udfff escape), which is not text; fix or drop that row")


def _is_text(value) -> bool:
    """A string, or a sentence given as its words (CoNLL, JSONL ``tokens``)."""
    return isinstance(value, str) or (isinstance(value, list) and all(isinstance(w, str) for w in value))


def _check_inputs(frame, where, modality, column, base_dir):
    values = frame[column]
    if modality == "text":
        blank = values.index[values.map(_is_blank)].tolist()
        if blank:
            raise DataError(f"{where}: column {column!r} is empty in {len(blank)} row(s) (row {_rows(blank)}); "
                            "fill in the text or drop those rows")
        bad = values.index[~values.map(_is_text)].tolist()
        if bad:
            raise DataError(f"{where}: row {bad[0]}, column {column!r} is not text "
                            f"({type(values[bad[0]]).__name__}); the text column must hold strings (or lists of "
                            "words, for token classification)")
        return
    missing = values.index[values.map(_is_blank)].tolist()
    if missing:
        raise DataError(f"{where}: column {column!r} is empty in {len(missing)} row(s) (row {_rows(missing)}); "
                        f"give a file path in every row or drop those rows")
    folder = base_dir or Path.cwd()
    absent = [(row, v) for row, v in values.items() if isinstance(v, str) and not (folder / v).is_file()]
    if absent:
        row, value = absent[0]
        raise DataError(f"{where}: row {row}, column {column!r}: {modality} file {value!r} does not exist "
                        f"({len(absent)} row(s) name missing files; relative paths are read from {folder}); "
                        "fix the paths or drop those rows")


def _from_folder(path: Path, roles: dict, label: str | None) -> Table:
    from graftkit.data.transcripts import read_transcript_folder, transcript_file

    if transcript_file(path) is not None:  # clips + transcripts.csv / .tsv (speech recognition)
        return read_transcript_folder(path, transcript_file(path))
    classes = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{path} is a folder with no class sub-folders; lay it out as {path}/<class>/<file> "
                        "or give a CSV / JSONL / Parquet file")
    rows = []
    for class_dir in classes:
        for file in sorted(class_dir.rglob("*")):
            if file.is_file() and not file.name.startswith("."):
                rows.append((str(file.relative_to(path)), class_dir.name, file.suffix.lower()))
    if not rows:
        raise DataError(f"{path}: the class sub-folders hold no files; put images or audio clips in them")
    suffixes = [r[2] for r in rows]
    image_share = sum(s in IMAGE_SUFFIXES for s in suffixes) / len(rows)
    audio_share = sum(s in AUDIO_SUFFIXES for s in suffixes) / len(rows)
    requested = next((m for m, v in roles.items() if v is not None), None)
    modality = requested or ("image" if image_share >= audio_share else "audio")
    if modality == "text" or (modality == "image" and image_share == 0) or (modality == "audio" and audio_share == 0):
        raise DataError(f"{path}: holds no {modality} files (image: {', '.join(sorted(IMAGE_SUFFIXES))}; "
                        f"audio: {', '.join(sorted(AUDIO_SUFFIXES))})")
    wanted = IMAGE_SUFFIXES if modality == "image" else AUDIO_SUFFIXES
    kept = [(p, c) for p, c, s in rows if s in wanted]
    if len(kept) < len(rows):
        logger.warning("%s: skipped %d file(s) that are not %s files", path, len(rows) - len(kept), modality)
    frame = pd.DataFrame(kept, columns=["path", "label"], index=pd.RangeIndex(1, len(kept) + 1))
    explanation = [f"{modality} folder: {len(kept)} files in {len(classes)} class folders; label = folder name"]
    for line in explanation:
        logger.info(line)
    return Table(frame=frame, modality=modality, input_column="path", label_column="label", source=str(path),
                 base_dir=path.resolve(), explanation=explanation)

