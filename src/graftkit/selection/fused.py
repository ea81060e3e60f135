"""``graftkit.rank`` on a multi-input table: each candidate embeds the media columns of the modalities it reads
(an image-text model: the image and the text columns, one tower each), the other media columns keep the backbone
named for them (``COLUMN=SPEC`` / ``MODALITY=SPEC`` entries, else ``fusion.encoders.DEFAULT_BACKBONES``), the
tabular columns are added as the fusion model's dense layout has them (training-mean imputation, one-hot), and the
estimators score that fused matrix, standardised column by column so that an age in years and a unit-norm embedding
weigh alike. Features come from ``selection.candidates`` (the feature cache, ``random:`` controls, ``@layer``), so a
later fusion fit embeds nothing again.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from graftkit.backbones.registry import modalities_of
from graftkit.data.roles import Roles
from graftkit.errors import DataError
from graftkit.fusion.assign import assign_backbones, parse_entry
from graftkit.fusion.encoders import DEFAULT_BACKBONES, FrozenEncoder, column_values
from graftkit.fusion.featurize import Featurizer
from graftkit.selection.candidates import (
    CandidateFeatures,
    content_keys,
    group_features,
    load_candidates,
    parse_candidates,
)

FUSED_NO_SOURCE_HEAD = "the fused features join several columns; a source classifier reads one backbone's output"


def column_view(table, column: str, modality: str):
    """A single-input view of one media column of a multi-input table (what the candidates' code reads)."""
    frame = table.frame.copy()
    frame[column] = column_values(table, column, modality)
    return replace(table, frame=frame, modality=modality, input_column=column, roles=None, explanation=[])


def standardised(X: np.ndarray) -> np.ndarray:
    """Each column at zero mean and unit variance; constant columns dropped (they carry nothing)."""
    std = X.std(axis=0)
    keep = std > 1e-12
    return (X[:, keep] - X[:, keep].mean(axis=0)) / std[keep]


def _fixed_features(table, columns, backbones: dict, options: dict) -> dict[str, np.ndarray]:
    """Features of the media columns no candidate embeds, once for every candidate (through the cache)."""
    encoders: dict[tuple[str, str], FrozenEncoder] = {}
    out = {}
    for column, modality in columns:
        spec = backbones.get(column) or backbones.get(modality) or DEFAULT_BACKBONES.get(modality)
        if spec is None:
            raise DataError(f"{table.source}: no backbone for the {modality} column {column!r}; name one "
                            f"(--backbones {column}=SPEC)")
        if (spec, modality) not in encoders:
            encoders[spec, modality] = FrozenEncoder(spec, modality=modality, **options)
        out.update(encoders[spec, modality].encode(table, [(column, modality)]))
    return out


def rank_fused(table, target, backbones, *, layers=None, sample: int, seed: int, scores, rank_by: str, folds: int,
               batch_size: int, cache_dir, use_cache: bool, device: str, progress: bool, started: float):
    from graftkit.selection.rank import (
        NEEDS_SOURCE_HEAD,
        Ranking,
        finish,
        score_row,
        scored_sample,
    )

    entries = [backbones] if isinstance(backbones, str) else list(backbones)
    pinned = [e for e in entries if parse_entry(e)[0] is not None]
    fixed = assign_backbones(pinned, table.roles)
    candidates = parse_candidates([e for e in entries if parse_entry(e)[0] is None], layers)
    roles = table.roles
    table, codes, classes, targets = scored_sample(table, target, sample, seed)
    media = [(c, m) for c, m in roles.media if c not in fixed]  # a column named COLUMN=SPEC stays with it
    served = {}
    for candidate in candidates:
        reads = set(modalities_of(candidate.backbone))
        served[candidate] = [(c, m) for c, m in media if m in reads]
        if not served[candidate]:
            raise DataError(f"{table.source}: backbone {candidate.backbone!r} reads {', '.join(sorted(reads))}, but "
                            f"the media columns left to rank hold {', '.join(sorted({m for _, m in media})) or 'none'}"
                            "; rank backbones of those modalities (--backbones)")
    every = {cm for columns in served.values() for cm in columns}
    options = {"batch_size": batch_size, "cache_dir": cache_dir, "use_cache": use_cache, "progress": progress,
               "device": device}
    others = _fixed_features(table, [cm for cm in roles.media if cm not in every], fixed, options)
    tabular = Featurizer(Roles(numeric=roles.numeric, categorical=roles.categorical), {}, layout="dense")
    tab = tabular.fit_transform(table) if roles.tabular else np.zeros((len(table), 0))
    rows, extraction_s, scoring_s = [], 0.0, 0.0
    for candidate in candidates:
        clock, embedded, features, info = time.perf_counter(), 0, dict(others), None
        for modality in dict.fromkeys(m for _, m in served[candidate]):
            group = load_candidates([candidate], modality, table.source, seed=seed, device=device)[0]
            for column in [c for c, m in served[candidate] if m == modality]:
                view = column_view(table, column, modality)
                item = group_features(group, view, content_keys(view) if use_cache else None, seed=seed,
                                      batch_size=batch_size, cache_dir=cache_dir, progress=progress)[0]
                features[column], embedded = item.features, embedded + item.extraction["embedded"]
                info = info or item.info
            del group
        seconds = round(time.perf_counter() - clock, 3)
        extraction_s += seconds
        fused = standardised(np.concatenate([features[c].astype(np.float64) for c, _ in roles.media] + [tab], axis=1))
        item = CandidateFeatures(candidate=candidate, features=fused, info=info)
        row = {"candidate": candidate.name, "backbone": candidate.backbone, "layer": info["settings"].get("layer"),
               "random": candidate.random, **info, "dim": int(fused.shape[1]),
               "columns": [c for c, _ in served[candidate]],
               "extraction": {"seconds": seconds, "embedded": embedded, "rows": len(table), "shared_by": 1},
               "scores": {}, "skipped": {}, "score_s": {}}
        kept = [name for name in scores if name not in NEEDS_SOURCE_HEAD]
        scoring_s += score_row(row, item, kept, codes, seed, folds, targets, target.kind)
        for name in scores:
            if name in NEEDS_SOURCE_HEAD:
                row["scores"][name], row["skipped"][name] = None, FUSED_NO_SOURCE_HEAD
        rows.append(row)
    finish(rows, rank_by)
    data_info = {"source": table.source, "modality": "multi-input", "roles": roles.to_dict(), "fixed": fixed,
                 "rows": len(table), "classes": len(classes) if codes is not None else None,
                 "targets": len(classes), "task": target.kind, "sample": sample, "seed": seed,
                 "features": "fused: the candidate's columns, the other media columns, the tabular columns; "
                             "standardised"}
    timings = {"extraction_s": round(extraction_s, 3), "scores_s": round(scoring_s, 3),
               "total_s": round(time.perf_counter() - started, 3)}
    return Ranking(rows=rows, rank_by=rank_by, data=data_info, timings=timings)
