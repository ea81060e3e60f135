"""Column roles of a multi-input table: which columns are media (text / image / audio, each read by a backbone)
and which are tabular (numeric, categorical), given by the caller or inferred with the reason recorded.

A single-input table has no ``Roles`` (``Table.roles is None``) and reads as it always did; ``multi_input_table``
builds the other kind. Missing values are legal in every column but an image / audio one (a blank text is the
empty text, a blank number or category is missing and the head handles it); what is refused is refused here, at
load time, naming the row and the column. A missing label is the task's to refuse (row and column named), unless
``drop_missing`` drops those rows first, with the count in ``Table.explanation`` and the log, as for one input; as
there, ``drop_missing`` drops for the label only, never for an input: a blank image / audio cell stays an error
naming its row (a single-input table refuses a blank input the same way), since dropping rows for an input the
model needs would hide broken paths.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from graftkit.errors import DataError

logger = logging.getLogger(__name__)

MEDIA = ("text", "image", "audio")
TABULAR = ("numeric", "categorical")
ROLE_FLAGS = {"text": "--text", "image": "--image", "audio": "--audio", "numeric": "--numeric",
              "categorical": "--categorical"}
MAX_CATEGORIES = 50       # a string column with at most this many distinct values (and short values) is categorical
TEXT_MIN_LENGTH = 25      # mean characters from which a string column reads as free text
INDEX_NAMES = ("", "unnamed: 0", "index", "id", "row", "row_id")


@dataclass(frozen=True)
class Roles:
    """What each input column of a multi-input table is. ``media`` keeps the caller's order (it is the order of
    the feature groups); a column appears in exactly one role."""

    media: tuple[tuple[str, str], ...] = ()   # (column, modality)
    numeric: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()

    @property
    def columns(self) -> tuple[str, ...]:
        return (*(c for c, _ in self.media), *self.numeric, *self.categorical)

    @property
    def tabular(self) -> tuple[str, ...]:
        return (*self.numeric, *self.categorical)

    def modality(self, column: str) -> str:
        return dict(self.media)[column]

    def to_dict(self) -> dict:
        return {"media": [list(m) for m in self.media], "numeric": list(self.numeric),
                "categorical": list(self.categorical)}

    @classmethod
    def from_dict(cls, data: dict) -> Roles:
        return cls(media=tuple((c, m) for c, m in data.get("media", [])), numeric=tuple(data.get("numeric", [])),
                   categorical=tuple(data.get("categorical", [])))

    def describe(self) -> str:
        parts = [f"{m} {c!r}" for c, m in self.media] + [f"numeric {c!r}" for c in self.numeric] + \
                [f"categorical {c!r}" for c in self.categorical]
        return ", ".join(parts)


def _as_list(value) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def is_blank(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and value != value) or \
        (isinstance(value, str) and not value.strip())


def given_roles(**columns) -> dict[str, list[str]]:
    """The roles the caller named (``text=[...]``, ``numeric=[...]`` ...) as lists; a column named twice is refused."""
    given = {role: _as_list(columns.get(role)) for role in (*MEDIA, *TABULAR)}
    seen: dict[str, str] = {}
    for role, names in given.items():
        for name in names:
            if name in seen:
                where = f"{ROLE_FLAGS[seen[name]]} and {ROLE_FLAGS[role]}" if seen[name] != role else \
                    f"{ROLE_FLAGS[role]} twice"
                raise DataError(f"column {name!r} is named in {where}; give each column one role")
            seen[name] = role
    return given


def wants_multi_input(**columns) -> bool:
    """Whether the caller asked for a multi-input table: a tabular role, or several media columns."""
    given = {role: _as_list(columns.get(role)) for role in (*MEDIA, *TABULAR)}
    return bool(given["numeric"] or given["categorical"]) or sum(len(given[m]) for m in MEDIA) > 1


def _numbers(series: pd.Series) -> pd.Series:
    return pd.to_numeric(series.map(lambda v: np.nan if is_blank(v) else v), errors="coerce")


def infer_role(series: pd.Series, column: str, suffixes: dict[str, set]) -> tuple[str | None, str]:
    """The role of one column nobody named, and why (a role of None: the column is left out)."""
    values = [v for v in series.tolist() if not is_blank(v)]
    if not values:
        return None, "every value is blank"
    numbers = _numbers(series)
    if column.strip().lower() in INDEX_NAMES and numbers.notna().all() and \
            (np.diff(numbers.to_numpy()) == 1).all():
        return None, "it counts the rows (a row index)"
    strings = [v for v in values if isinstance(v, str)]
    for modality, wanted in suffixes.items():
        sample = strings[:200]
        if sample and sum(Path(v).suffix.lower() in wanted for v in sample) / len(sample) > 0.9:
            return modality, f"its values are {modality} file paths"
    if numbers.notna().sum() == len(values):
        return "numeric", "every value is a number"
    distinct = len(set(map(str, values)))
    mean_length = float(np.mean([len(str(v)) for v in values]))
    if distinct <= MAX_CATEGORIES and mean_length < TEXT_MIN_LENGTH:
        return "categorical", f"a string column with {distinct} distinct values"
    if mean_length >= TEXT_MIN_LENGTH or distinct > MAX_CATEGORIES:
        return "text", f"free text ({distinct} distinct values, {mean_length:.0f} characters on average)"
    return "categorical", f"a string column with {distinct} distinct values"


def assign_roles(frame: pd.DataFrame, where: str, given: dict[str, list[str]], label_columns: tuple[str, ...],
                 suffixes: dict[str, set], infer: bool, explanation: list[str]) -> Roles:
    """The roles: the given ones, plus (``infer``) every other column but the label's, each with its reason."""
    from graftkit.data.readers import _require_column

    for role, names in given.items():
        for name in names:
            _require_column(name, frame, where, role)
            if name in label_columns:
                raise DataError(f"{where}: column {name!r} is both the label and an input ({ROLE_FLAGS[role]}); "
                                "give it one role")
    chosen = {role: list(names) for role, names in given.items()}
    if infer:
        named = {n for names in given.values() for n in names}
        for column in frame.columns:
            if column in named or column in label_columns:
                continue
            role, reason = infer_role(frame[column], column, suffixes)
            if role is None:
                explanation.append(f"column {column!r} left out: {reason}")
                continue
            chosen[role].append(column)
            explanation.append(f"{role} column: {column!r} ({reason}; override with {ROLE_FLAGS[role]})")
    roles = Roles(media=tuple((c, m) for m in MEDIA for c in chosen[m]), numeric=tuple(chosen["numeric"]),
                  categorical=tuple(chosen["categorical"]))
    if not roles.columns:
        raise DataError(f"{where}: no input column is left once the roles are assigned (label: "
                        f"{', '.join(label_columns) or 'none'}); name inputs with --text / --image / --audio / "
                        "--numeric / --categorical")
    return roles


def check_numeric(frame: pd.DataFrame, where: str, column: str) -> None:
    """A value of a numeric column that is neither blank nor a number fails naming its row."""
    numbers = _numbers(frame[column])
    bad = [row for row, value in frame[column].items() if not is_blank(value) and pd.isna(numbers[row])]
    if bad:
        raise DataError(f"{where}: row {bad[0]}, column {column!r} holds {str(frame[column][bad[0]])!r}, which is "
                        f"not a number ({len(bad)} such row(s)); fix it, blank it (a missing value is legal), or "
                        f"pass the column as --categorical / --text")


def check_media(frame: pd.DataFrame, where: str, column: str, modality: str, base_dir: Path | None) -> None:
    """Text may be blank (the empty text); an image / audio file must exist in every row."""
    values = frame[column]
    if modality == "text":
        bad = [row for row, v in values.items() if not is_blank(v) and not isinstance(v, str)]
        if bad:
            raise DataError(f"{where}: row {bad[0]}, column {column!r} is not text ({type(values[bad[0]]).__name__})"
                            "; a text column must hold strings")
        return
    from graftkit.data.readers import _check_inputs

    _check_inputs(frame, where, modality, column, base_dir)


def multi_input_table(frame: pd.DataFrame, where: str, base_dir: Path | None, given: dict[str, list[str]],
                      label, require_label: bool, infer: bool, known_roles: dict | None = None,
                      drop_missing: bool = False):
    """A Table with ``roles``: the given roles (or the fitted model's), the others inferred when ``infer``.
    ``drop_missing`` (where labels are required) drops the rows whose label is missing, as for one input, before
    the input columns are checked: a dropped row's media cells are never read."""
    from graftkit.data.readers import (
        AUDIO_SUFFIXES,
        IMAGE_SUFFIXES,
        _clean_labels,
        _drop_missing,
        _infer_label,
        named_columns,
    )
    from graftkit.data.table import Table

    frame = named_columns(frame, where)
    frame.index = pd.RangeIndex(1, len(frame) + 1)
    if frame.empty:
        raise DataError(f"{where} has no rows; give at least one row")
    explanation: list[str] = []
    if known_roles is not None and not any(given.values()):  # predict / evaluate: the fitted model's columns
        roles = Roles.from_dict(known_roles)
        missing = [c for c in roles.columns if c not in frame.columns]
        if missing:
            raise DataError(f"{where}: the model reads column(s) {', '.join(map(repr, missing))}, which this data "
                            "lacks; give every input column the model was fitted on")
        infer = False
    label = _infer_label(frame, where, label, require_label, explanation) if (label or require_label) else None
    labels = (label,) if isinstance(label, str) else tuple(label or ())
    if known_roles is None or any(given.values()):
        roles = assign_roles(frame, where, given, labels, {"image": IMAGE_SUFFIXES, "audio": AUDIO_SUFFIXES},
                             infer, explanation)
    for name in labels:
        frame[name] = _clean_labels(frame[name])
    if drop_missing and labels and require_label:  # predict keeps every row
        frame = _drop_missing(frame, where, labels, explanation)
    for column in roles.numeric:
        check_numeric(frame, where, column)
    for column, modality in roles.media:
        check_media(frame, where, column, modality, base_dir)
    for line in explanation:
        logger.info(line)
    first, modality = roles.media[0] if roles.media else (roles.columns[0], "tabular")
    return Table(frame=frame, modality=modality, input_column=first, label_column=label, source=where,
                 base_dir=base_dir, explanation=explanation, roles=roles)
