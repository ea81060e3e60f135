"""The unlabelled pool a suggestion is drawn from: read in the fitted model's columns, and cleared of rows that are
labelled already or repeat an earlier pool row (by normalised content: case, punctuation and spacing do not make
a new row, as in the leakage check)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from graftkit.data import Table, load_data
from graftkit.errors import DataError
from graftkit.evaluation.leakage import content_hashes


def read_rows(model, source, what: str, columns: dict | None = None) -> Table:
    """``source`` (a path, DataFrame or Table) as a Table read in ``model``'s input column (or the one ``columns``
    names). A table without that column is refused naming it and the table's columns, rather than reading
    whichever other column looks like input."""
    if isinstance(source, Table):
        return source
    columns = {k: v for k, v in (columns or {}).items() if v is not None}
    modality, column = model.input_["modality"], model.input_["column"]
    if any(columns.get(role) for role in ("text", "image", "audio")):
        return load_data(source, require_label=False, **columns)
    known = {modality: column, "label": model.input_.get("label_column")}
    table = load_data(source, require_label=False, known_columns=known, **columns)
    if table.input_column != column:
        have = ", ".join(repr(str(c)) for c in table.frame.columns)
        raise DataError(f"{table.source}: no column {column!r}, the {modality} column the model was fitted on ({what} "
                        f"has {have}); rename that column to {column!r}, or name the column to read with "
                        f"--{modality} COLUMN")
    return table


@dataclass
class Candidates:
    """The pool rows that may be suggested (positions into the pool table), and what was set aside."""

    positions: np.ndarray
    already_labelled: int = 0
    repeated: int = 0
    notes: list[str] = field(default_factory=list)


def candidates(pool: Table, labelled: Table | None, pool_name: str = "the pool",
               labelled_name: str = "the labelled data") -> Candidates:
    """Pool positions whose content is neither in ``labelled`` nor an earlier pool row; a pool left empty is a
    ``DataError`` that says why."""
    hashes = content_hashes(pool)
    known = set(content_hashes(labelled)) if labelled is not None else set()
    seen: set[str] = set()
    keep, labelled_hits, repeats = [], 0, 0
    for position, key in enumerate(hashes):
        if key in known:
            labelled_hits += 1
        elif key in seen:
            repeats += 1
        else:
            seen.add(key)
            keep.append(position)
    if not keep:
        if labelled_hits == len(hashes):
            raise DataError(f"{pool_name}: all {len(hashes)} rows are already in {labelled_name} (same content after "
                            "normalising case, punctuation and spacing); nothing is left to suggest, give rows "
                            "that are not labelled yet")
        raise DataError(f"{pool_name}: no rows left to suggest ({labelled_hits} already labelled, {repeats} "
                        "repeats); give rows that are not labelled yet")
    notes = []
    if labelled_hits:
        notes.append(f"{labelled_hits} pool row(s) left out: already in {labelled_name} (same normalised content)")
    if repeats:
        notes.append(f"{repeats} pool row(s) left out: they repeat an earlier pool row")
    return Candidates(np.asarray(keep, dtype=np.int64), labelled_hits, repeats, notes)
