"""One feature matrix per row of a multi-input table: each media column's embeddings (optionally reduced by PCA /
truncated SVD fitted on the training rows only) next to the tabular columns.

Two layouts, as the head needs them: ``trees`` keeps a numeric column's missing values as NaN and a categorical
column as one column of category codes (HistGradientBoosting reads both natively: NaN, and its categorical
support via ``categorical_mask``); ``dense`` (linear heads, the joint model's side features) fills a missing
number with the training mean and one-hot encodes categories, and refuses an infinite number (a linear layer
cannot weigh it). A category unseen in training is missing (trees) / all zeros (dense), and said.
Everything fitted is arrays plus JSON (``state`` / ``from_state``): no pickle.
"""

from __future__ import annotations

import logging
from collections import Counter

import numpy as np
import pandas as pd

from graftkit.data.roles import Roles, is_blank
from graftkit.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

MAX_CATEGORIES = 250  # HistGradientBoosting's codes must stay below max_bins (255); rarer categories are missing
REDUCTIONS = ("pca", "svd")
LAYOUTS = ("trees", "dense")


def numeric_values(frame: pd.DataFrame, column: str) -> np.ndarray:
    return pd.to_numeric(frame[column].map(lambda v: np.nan if is_blank(v) else v), errors="coerce").to_numpy(np.float64)


def category_values(frame: pd.DataFrame, column: str) -> list:
    return [None if is_blank(v) else str(v).strip() for v in frame[column].tolist()]


class Featurizer:
    def __init__(self, roles: Roles, encoders: dict, *, layout: str = "trees", reduce: str | None = None,
                 components: int = 64):
        if layout not in LAYOUTS:
            raise ConfigError(f"layout must be one of {', '.join(LAYOUTS)}; got {layout!r}")
        if reduce is not None and reduce not in REDUCTIONS:
            raise ConfigError(f"--reduce must be one of {', '.join(REDUCTIONS)}; got {reduce!r}")
        if reduce is not None and components < 1:
            raise ConfigError(f"--components must be >= 1; got {components}")
        self.roles, self.encoders = roles, encoders  # encoders: media column -> encoder (shared objects allowed)
        self.layout, self.reduce, self.components = layout, reduce, components
        self.arrays: dict[str, np.ndarray] = {}
        self.categories: dict[str, list[str]] = {}
        self.groups: dict[str, list[int]] = {}
        self.notes: list[str] = []

    # -- fitting -----------------------------------------------------------------------------------------------
    def fit_transform(self, table) -> np.ndarray:
        embeddings = self.column_embeddings(table)
        for column, _ in self.roles.media:
            if self.reduce is not None:
                self._fit_reduction(column, embeddings[column])
        for column in self.roles.numeric:
            values = numeric_values(table.frame, column)
            self.arrays[f"mean.{column}"] = np.array([np.nanmean(values) if np.isfinite(values).any() else 0.0])
        for column in self.roles.categorical:
            counts = Counter(v for v in category_values(table.frame, column) if v is not None)
            kept = sorted(counts, key=lambda c: (-counts[c], c))[:MAX_CATEGORIES]
            if len(counts) > MAX_CATEGORIES:
                self.notes.append(f"column {column!r}: {len(counts) - MAX_CATEGORIES} categories rarer than the "
                                  f"{MAX_CATEGORIES} most frequent are treated as missing")
            self.categories[column] = kept
        return self._assemble(table, embeddings, warn=False)

    def _fit_reduction(self, column: str, E: np.ndarray) -> None:
        from sklearn.decomposition import PCA, TruncatedSVD

        k = int(min(self.components, E.shape[1], max(len(E) - 1, 1)))
        if self.reduce == "pca":
            fitted = PCA(n_components=k, random_state=0).fit(E)
            self.arrays[f"reduce_mean.{column}"] = fitted.mean_.astype(np.float32)
        else:
            fitted = TruncatedSVD(n_components=k, random_state=0).fit(E)
            self.arrays[f"reduce_mean.{column}"] = np.zeros(E.shape[1], np.float32)
        self.arrays[f"reduce.{column}"] = fitted.components_.astype(np.float32)

    # -- applying ----------------------------------------------------------------------------------------------
    def transform(self, table) -> np.ndarray:
        return self._assemble(table, self.column_embeddings(table), warn=True)

    def column_embeddings(self, table) -> dict[str, np.ndarray]:
        """Each media column's features, before any reduction; columns sharing an encoder go to it together (one
        cache lookup)."""
        out: dict[str, np.ndarray] = {}
        by_encoder: dict[int, list] = {}
        for column, modality in self.roles.media:
            by_encoder.setdefault(id(self.encoders[column]), []).append((column, modality))
        for columns in by_encoder.values():
            out.update(self.encoders[columns[0][0]].encode(table, columns))
        return out

    def _assemble(self, table, embeddings: dict, warn: bool) -> np.ndarray:
        blocks, self.groups, mask, width = [], {}, [], 0

        def add(name: str, block: np.ndarray, categorical: bool = False):
            nonlocal width
            blocks.append(block.astype(np.float64))
            self.groups[name] = list(range(width, width + block.shape[1]))
            mask.extend([categorical] * block.shape[1])
            width += block.shape[1]

        for column, _ in self.roles.media:
            E = embeddings[column].astype(np.float64)
            if f"reduce.{column}" in self.arrays:
                E = (E - self.arrays[f"reduce_mean.{column}"]) @ self.arrays[f"reduce.{column}"].T.astype(np.float64)
            add(column, E)
        for column in self.roles.numeric:
            values = numeric_values(table.frame, column)
            if self.layout == "dense":
                infinite = np.flatnonzero(np.isinf(values))
                if infinite.size:
                    raise DataError(f"{table.where(infinite[0], column)} holds {values[infinite[0]]:g} "
                                    f"({infinite.size} such row(s)); a linear output layer needs finite numbers: fix "
                                    "or blank it (a blank is a missing value)")
                values = np.where(np.isnan(values), self.arrays[f"mean.{column}"][0], values)
            add(column, values.reshape(-1, 1))
        for column in self.roles.categorical:
            add(column, self._categories(table, column, warn), categorical=self.layout == "trees")
        self.categorical_mask = np.array(mask, dtype=bool)
        return np.concatenate(blocks, axis=1) if blocks else np.zeros((len(table), 0))

    def _categories(self, table, column: str, warn: bool) -> np.ndarray:
        known = {c: i for i, c in enumerate(self.categories[column])}
        values = category_values(table.frame, column)
        codes = np.array([known.get(v, np.nan) if v is not None else np.nan for v in values], dtype=np.float64)
        unseen = [(row, v) for row, v, c in zip(table.frame.index, values, codes) if v is not None and np.isnan(c)]
        if unseen and warn:
            distinct = sorted({v for _, v in unseen})
            note = (f"{table.source}: column {column!r}: {len(unseen)} row(s) hold categor"
                    f"{'y' if len(distinct) == 1 else 'ies'} unseen in training ({', '.join(map(repr, distinct[:5]))}"
                    f"{' ...' if len(distinct) > 5 else ''}; first row {unseen[0][0]}), treated as missing")
            self.notes.append(note)
            logger.warning("%s", note)
        if self.layout == "trees":
            return codes.reshape(-1, 1)
        onehot = np.zeros((len(values), len(known)), dtype=np.float64)
        present = ~np.isnan(codes)
        onehot[np.flatnonzero(present), codes[present].astype(int)] = 1.0
        return onehot

    @property
    def feature_roles(self) -> Roles:
        """The roles of the feature groups (``groups``): here the table's own."""
        return self.roles

    # -- state -------------------------------------------------------------------------------------------------
    def save_encoders(self, folder, info: dict) -> None:
        """Each tuned encoder's own ``Graft`` artifact under ``folder/encoders/N``, its directory noted in ``info``
        (frozen encoders are named by their backbone spec and fingerprint alone)."""
        saved = {}
        for i, encoder in enumerate(dict.fromkeys(self.encoders.values())):
            if encoder.kind == "tuned":
                encoder.graft.save(folder / "encoders" / str(i))
                saved[encoder.spec] = f"encoders/{i}"
        for described in info["encoders"].values():
            if described["spec"] in saved and described["kind"] == "tuned":  # a CLIP's other tower may stay frozen
                described["dir"] = saved[described["spec"]]

    def state(self) -> tuple[dict[str, np.ndarray], dict]:
        info = {"roles": self.roles.to_dict(), "layout": self.layout, "reduce": self.reduce,
                "components": self.components, "categories": self.categories,
                "encoders": {column: self.encoders[column].describe() for column, _ in self.roles.media}}
        return dict(self.arrays), info

    @classmethod
    def from_state(cls, arrays: dict, info: dict, encoders: dict) -> Featurizer:
        featurizer = cls(Roles.from_dict(info["roles"]), encoders, layout=info["layout"], reduce=info["reduce"],
                         components=info["components"])
        featurizer.arrays = {k: np.asarray(v) for k, v in arrays.items()}
        featurizer.categories = {k: list(v) for k, v in info["categories"].items()}
        return featurizer
