"""``graftkit.rank``: score candidate backbones (and layers of one backbone) on a labelled data set with
transferability estimators, in seconds to minutes instead of adapting every candidate.

Every candidate is scored on the same stratified sample (at most ``sample`` rows) with the same features a
later ``Graft`` fit reads from the cache.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np

from graftkit.data import Table, load_data
from graftkit.errors import ConfigError
from graftkit.selection.candidates import content_keys, group_features, load_candidates, parse_candidates
from graftkit.selection.hscore import h_score
from graftkit.selection.inputs import as_labels, check_per_class, stratified_sample
from graftkit.selection.knn import knn_accuracy
from graftkit.selection.leep import leep, softmax
from graftkit.selection.linear import linear_probe_accuracy
from graftkit.selection.logme import logme, logme_targets
from graftkit.selection.nce import nce
from graftkit.tasks import infer_task

logger = logging.getLogger(__name__)

SCORES = ("logme", "leep", "nce", "hscore", "hscore_reg", "knn", "linear")
SCORE_HELP = {
    "logme": "LogME evidence per example (You et al. 2021)",
    "leep": "LEEP, needs a source classifier (Nguyen et al. 2020)",
    "nce": "NCE, needs a source classifier (Tran et al. 2019)",
    "hscore": "H-score (Bao et al. 2019)",
    "hscore_reg": "H-score with Ledoit-Wolf shrinkage (Ibrahim et al. 2022)",
    "knn": "cross-validated 5-NN accuracy",
    "linear": "cross-validated logistic-regression accuracy",
}
NEEDS_SOURCE_HEAD = ("leep", "nce")


@dataclass
class Ranking:
    """Candidates best first by ``rank_by``; each row holds its scores (None where skipped, with the reason in
    ``skipped``), extraction cost, model size and licence."""

    rows: list[dict]
    rank_by: str
    data: dict
    timings: dict = field(default_factory=dict)

    @property
    def best(self) -> dict:
        return self.rows[0]

    def scores(self, name: str) -> dict[str, float | None]:
        return {row["candidate"]: row["scores"].get(name) for row in self.rows}

    def to_dict(self) -> dict:
        return {"rank_by": self.rank_by, "data": self.data, "timings": self.timings, "rows": self.rows}


def _check_scores(scores, rank_by: str) -> tuple[str, ...]:
    scores = (scores,) if isinstance(scores, str) else tuple(scores)
    unknown = [s for s in scores if s not in SCORES]
    if unknown or not scores:
        raise ConfigError(f"unknown score(s) {', '.join(map(repr, unknown)) or '(none given)'}; choose from "
                          f"{', '.join(SCORES)} (scores= / --scores)")
    if rank_by not in scores:
        raise ConfigError(f"rank_by {rank_by!r} is not among the scores computed ({', '.join(scores)}); add it to "
                          "scores or rank by one of them (rank_by= / --rank-by)")
    return scores


def _score(name: str, item, codes: np.ndarray | None, seed: int, folds: int, targets=None,
           task_kind: str = "") -> tuple[float | None, str | None]:
    """One score of one candidate, or None and the reason it does not apply."""
    X = item.features
    if codes is None:  # a target without classes: LogME regresses on it; the other scores need classes
        if name == "logme":
            return logme_targets(X, targets), None
        return None, (f"{name} is defined for single-label classes; a {task_kind} target is ranked by LogME only "
                      "(--scores logme)")
    if name in NEEDS_SOURCE_HEAD:
        if item.source_head is None:
            if item.candidate.layer is not None and item.info["family"] == "efficientnet-lite":
                return None, f"the source classifier reads the output, not layer {item.candidate.layer}"
            return None, f"no source classifier: {item.info['family']} backbones carry no pretraining label head"
        weight, bias = item.source_head
        logits = X.astype(np.float64) @ weight.T + bias
        if name == "leep":
            return leep(softmax(logits), codes), None
        return nce(logits.argmax(axis=1), codes), None
    if name == "logme":
        return logme(X, codes), None
    if name in ("hscore", "hscore_reg"):
        return h_score(X, codes, shrinkage=name == "hscore_reg"), None
    if name == "knn":
        return knn_accuracy(X, codes, folds=folds, sample=len(codes), seed=seed), None
    return linear_probe_accuracy(X, codes, folds=folds, sample=len(codes), seed=seed), None


def scored_sample(table, target, sample: int, seed: int):
    """``(table, codes, classes, targets)``: the rows scored — a stratified sample of at most ``sample`` rows for a
    task with classes (codes: their class indices), else a seeded random one (targets: what LogME regresses on)."""
    if target.has_classes:
        target.encode(table)  # the task's own checks (blank, missing-looking labels) name the row
        classes, codes = as_labels(table.labels(), len(table))
        check_per_class(codes, classes, 2, "ranking (its estimates cross-validate within each class)")
        keep = stratified_sample(codes, sample, seed)
        return table.subset(keep), codes[keep], classes, None
    y = target.encode(table)
    keep = np.sort(np.random.default_rng(seed).permutation(len(table))[:sample])
    return table.subset(keep), None, target.labels, target.evidence_targets(y[keep])


def score_row(row: dict, item, scores, codes, seed: int, folds: int, targets, task_kind: str) -> float:
    """Fill ``row``'s scores (None + the reason where one does not apply); returns the seconds spent."""
    for name in scores:
        clock = time.perf_counter()
        value, reason = _score(name, item, codes, seed, folds, targets, task_kind)
        row["score_s"][name] = round(time.perf_counter() - clock, 4)
        row["scores"][name] = value
        if reason:
            row["skipped"][name] = reason
    logger.info("%s: %s", row["candidate"], ", ".join(f"{k} {v:.4g}" for k, v in row["scores"].items()
                                                      if v is not None))
    return sum(row["score_s"].values())


def finish(rows: list[dict], rank_by: str) -> list[dict]:
    rows.sort(key=_order_key(rank_by))
    for position, row in enumerate(rows, start=1):
        row["rank"] = position
    return rows


def _order_key(rank_by: str):
    """Best first; candidates without the score (skipped, or not finite) last."""
    def key(row):
        value = row["scores"].get(rank_by)
        present = value is not None and math.isfinite(value)
        return (not present, -value if present else 0.0)
    return key


def rank(data, backbones, layers=None, sample: int = 2000, seed: int = 0, *, scores=SCORES, rank_by: str = "logme",
         folds: int = 5, batch_size: int = 32, cache_dir=None, use_cache: bool = True, device: str = "cpu",
         progress: bool = True, task: str | None = None, task_options: dict | None = None,
         extract_runtime: str = "auto", **data_options) -> Ranking:
    """Rank ``backbones`` for the labelled ``data`` by transferability scores; best first by ``rank_by``.

    ``data``: a Table, or anything ``load_data`` reads (``data_options`` such as ``text=`` / ``label=`` pass on).
    ``backbones``: packaged names, local directories or Hub ids; ``SPEC@K`` for layer K of a model and
    ``random:SPEC`` for a randomly initialised copy (a sanity-check control). ``layers``: layers scored for
    every backbone without its own (``None`` / ``"out"`` = the model's output, the default).
    ``sample``: the stratified subsample scored (features are extracted for these rows only).
    ``task``, ``extract_runtime``: as ``Graft`` takes them (the task inferred by default; a candidate of its own,
    pretrained, embeds on the runtime ``Graft.features`` would use, so a later fit reads these features). Every
    score applies to single-label classification; multi-label and regression targets get LogME (on the label
    columns / the standardised target), and the other scores say why they are absent.

    >>> ranking = graftkit.rank("train.csv", backbones=["all-MiniLM-L6-v2", "random:all-MiniLM-L6-v2"])
    >>> ranking.best["candidate"]
    """
    from graftkit.features.runtime import check_runtime
    from graftkit.graft import check_device

    started = time.perf_counter()
    scores = _check_scores(scores, rank_by)
    candidates = parse_candidates(backbones, layers)
    check_device(device)
    check_runtime(extract_runtime)
    table = data if isinstance(data, Table) else load_data(data, **data_options)
    target = infer_task(table, task, **(task_options or {}))
    if table.roles is not None:  # a multi-input table: candidates scored on the fused features
        from graftkit.selection.fused import rank_fused

        return rank_fused(table, target, backbones, layers=layers, sample=sample, seed=seed, scores=scores,
                          rank_by=rank_by, folds=folds, batch_size=batch_size, cache_dir=cache_dir,
                          use_cache=use_cache, device=device, progress=progress, started=started)
    table, codes, classes, targets = scored_sample(table, target, sample, seed)
    groups = load_candidates(candidates, table.modality, table.source, seed=seed, device=device)
    keys = content_keys(table) if use_cache else None
    rows, extraction_s, scoring_s = [], 0.0, 0.0
    while groups:
        group = groups.pop(0)  # dropped after scoring, so only one group's weights are held past here
        extracted = group_features(group, table, keys, seed=seed, batch_size=batch_size, cache_dir=cache_dir,
                                   progress=progress, extract_runtime=extract_runtime)
        extraction_s += extracted[0].extraction["seconds"]
        for item in extracted:
            row = {"candidate": item.candidate.name, "backbone": item.candidate.backbone,
                   "layer": item.info["settings"].get("layer"), "random": item.candidate.random, **item.info,
                   "extraction": item.extraction, "scores": {}, "skipped": {}, "score_s": {}}
            scoring_s += score_row(row, item, scores, codes, seed, folds, targets, target.kind)
            rows.append(row)
        del group, extracted
    finish(rows, rank_by)
    data_info = {"source": table.source, "modality": table.modality, "rows": len(table),
                 "classes": len(classes) if codes is not None else None, "targets": len(classes),
                 "task": target.kind,
                 "sample": sample, "seed": seed}
    timings = {"extraction_s": round(extraction_s, 3), "scores_s": round(scoring_s, 3),
               "total_s": round(time.perf_counter() - started, 3)}
    return Ranking(rows=rows, rank_by=rank_by, data=data_info, timings=timings)


def kendall_tau(x, y) -> float:
    """Kendall's tau-b between two equally long score lists, over the pairs where both are present
    (None / NaN dropped); NaN when fewer than two remain or one side is constant."""
    from scipy.stats import kendalltau

    if len(x) != len(y):
        raise ConfigError(f"kendall_tau needs two lists of equal length; got {len(x)} and {len(y)}")
    pairs = [(float(a), float(b)) for a, b in zip(x, y)
             if a is not None and b is not None and math.isfinite(float(a)) and math.isfinite(float(b))]
    if len(pairs) < 2 or len({a for a, _ in pairs}) < 2 or len({b for _, b in pairs}) < 2:
        return float("nan")
    return float(kendalltau(*zip(*pairs)).statistic)
