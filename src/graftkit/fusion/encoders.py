"""Encoders of media columns: what turns a column's values into one vector per row.

``FrozenEncoder`` is a pretrained backbone read through the feature cache, one cache entry per distinct value:
every column it encodes is looked up in one call, so a backbone shared by a title and a review column embeds each
distinct text once. ``TunedEncoder`` is a backbone adapted to the target (a fitted ``Graft``, e.g. LoRA: the
two-stage recipe), whose features are never cached (the cache holds pretrained features only). Each media column
names its own encoder, so an image column and a text column can each have their own backbone; one image-text model
(CLIP, SigLIP) serves both through two encoders, one per tower (``modality``: the tower that reads it).
"""

from __future__ import annotations

import numpy as np

from graftkit.backbones import load_backbone
from graftkit.data.content import content_key
from graftkit.errors import ArtifactError, DataError
from graftkit.features.cache import FeatureCache
from graftkit.features.extract import extract_features

DEFAULT_BACKBONES = {"text": "all-MiniLM-L6-v2", "image": "efficientnet-lite0"}


def column_values(table, column: str, modality: str) -> list:
    """A media column's inputs: a blank text is the empty text (a legal, missing title), media paths resolved."""
    items = table.column_items(column, modality)
    if modality == "text":
        return [v if isinstance(v, str) else "" for v in items]
    return items


class FrozenEncoder:
    kind = "frozen"

    def __init__(self, spec: str, *, batch_size: int = 32, cache_dir=None, use_cache: bool = True,
                 progress: bool = True, device: str = "cpu", fingerprint: str | None = None,
                 modality: str | None = None):
        self.spec, self.modality = spec, modality
        self.batch_size, self.cache_dir, self.use_cache, self.progress = batch_size, cache_dir, use_cache, progress
        self.backbone = load_backbone(spec).to(device)
        if modality is not None:  # an image-text model: the tower that reads this modality
            self.backbone = self.backbone.for_modality(modality).to(device)
        if fingerprint is not None and self.backbone.fingerprint() != fingerprint:
            raise ArtifactError(f"backbone {spec!r} is not the one this model was fitted with (its weights or "
                                "settings differ); install the original weights or refit")
        self.embedded = 0

    def describe(self) -> dict:
        return {"kind": self.kind, "spec": self.spec, "modality": self.backbone.modality,
                "fingerprint": self.backbone.fingerprint()}

    def encode(self, table, columns: list[tuple[str, str]]) -> dict[str, np.ndarray]:
        """Features of every row of each (column, modality), all columns in one cache lookup."""
        for column, modality in columns:
            if modality != self.backbone.modality:
                raise DataError(f"{table.source}: column {column!r} holds {modality}, but backbone {self.spec!r} "
                                f"reads {self.backbone.modality}; give that column a {modality} backbone")
        items, where = [], []
        for column, _ in columns:
            values = column_values(table, column, self.backbone.modality)
            items += values
            where += [(p, column) for p in range(len(values))]

        def compute(positions):
            return extract_features(self.backbone, [items[p] for p in positions], batch_size=self.batch_size,
                                    progress=self.progress, where=lambda i: table.where(*where[positions[i]]))

        if self.use_cache:
            keys = [content_key(item, self.backbone.modality, lambda w=w: table.where(*w)) for item, w in zip(items, where)]
            features, embedded = FeatureCache(self.cache_dir).lookup(self.backbone.fingerprint(), keys, compute)
        else:
            features, embedded = compute(list(range(len(items)))), len(items)
        self.embedded += embedded
        n = len(table)
        return {column: features[i * n:(i + 1) * n] for i, (column, _) in enumerate(columns)}


class TunedEncoder:
    """A backbone tuned on the target by a fitted ``Graft`` (its adapted backbone embeds; no cache)."""

    kind = "tuned"

    def __init__(self, graft, spec: str):
        self.graft, self.spec = graft, spec
        self.embedded = 0

    def describe(self) -> dict:
        return {"kind": self.kind, "spec": self.spec, "strategy": self.graft.strategy}

    def encode(self, table, columns: list[tuple[str, str]]) -> dict[str, np.ndarray]:
        backbone = self.graft.loaded_backbone()
        out = {}
        for column, modality in columns:
            values = column_values(table, column, modality)
            distinct = sorted(set(values)) if modality == "text" else values
            features = extract_features(backbone, distinct, batch_size=self.graft.batch_size,
                                        progress=self.graft.progress, where=lambda i, c=column: f"{table.source}, column {c!r}")
            if modality == "text":  # each distinct text once
                index = {v: i for i, v in enumerate(distinct)}
                features = features[[index[v] for v in values]]
            self.embedded += len(distinct)
            out[column] = features
        return out
