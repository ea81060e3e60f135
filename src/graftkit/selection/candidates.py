"""Candidates for ranking: a backbone spec, optionally one of its layers, optionally randomly initialised
(the sanity-check control); their features come from graftkit's feature cache, under the same key
``Graft.features`` uses, so a later fit on the same data embeds nothing again.

The layers of one model share one forward pass (``Backbone.embed_layers``), whatever is already cached.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from graftkit.backbones import load_backbone
from graftkit.data import Table
from graftkit.errors import ConfigError, DataError
from graftkit.features.cache import FeatureCache
from graftkit.data.content import content_key
from graftkit.features.extract import extract_features, extract_layer_features
from graftkit.features.runtime import frozen_runtime

logger = logging.getLogger(__name__)

RANDOM_PREFIX = "random:"
OUTPUT_WORDS = ("out", "output", "none", "default")  # --layers words for the model's own output (layer=None)


@dataclass(frozen=True)
class Candidate:
    """``backbone`` as given; ``layer`` None = the model's output; ``random``: same architecture, weights re-drawn."""

    backbone: str
    layer: int | None = None
    random: bool = False

    @property
    def name(self) -> str:
        base = Path(self.backbone).name if Path(self.backbone).exists() else self.backbone
        return f"{RANDOM_PREFIX if self.random else ''}{base}{'' if self.layer is None else f'@{self.layer}'}"


def parse_layer(text) -> int | None:
    """A layer from the CLI / API: an integer (negative counts from the last), or out / output / none / None."""
    if text is None or (isinstance(text, str) and text.strip().lower() in OUTPUT_WORDS):
        return None
    if isinstance(text, (int, np.integer)) and not isinstance(text, bool):
        return int(text)
    try:
        return int(str(text).strip())
    except ValueError:
        raise ConfigError(f"layer must be an integer (0 = the embeddings / stem, -1 = the last) or 'out' for the "
                          f"model's output; got {text!r} (layers= / --layers)") from None


def parse_candidates(backbones, layers=None) -> list[Candidate]:
    """``backbones`` × ``layers`` (default: the output only). An entry may carry its own layer, ``SPEC@K``, and
    a ``random:`` prefix for a randomly initialised copy (``random:all-MiniLM-L6-v2@3``). Duplicates drop."""
    if isinstance(backbones, str):
        backbones = [backbones]
    if not isinstance(backbones, Iterable) or not list(backbones):
        raise ConfigError("backbones must name at least one candidate, e.g. ['all-MiniLM-L6-v2'] (--backbones)")
    default_layers = [None] if layers is None else [parse_layer(layer) for layer in
                                                     ([layers] if isinstance(layers, (int, str)) else layers)]
    if not default_layers:
        raise ConfigError("layers is empty; give layer indices or leave it out for the models' outputs (--layers)")
    found: dict[Candidate, None] = {}
    for entry in backbones:
        if not isinstance(entry, str) or not entry.strip():
            raise ConfigError(f"each backbone must be a model name, directory or Hub id; got {entry!r} (--backbones)")
        spec, random = entry.strip(), False
        if spec.startswith(RANDOM_PREFIX):
            spec, random = spec[len(RANDOM_PREFIX):], True
        entry_layers = default_layers
        if "@" in spec and not Path(spec).exists():
            spec, _, suffix = spec.rpartition("@")
            entry_layers = [parse_layer(suffix)]
        if not spec:
            raise ConfigError(f"backbone {entry!r} names no model (--backbones)")
        for layer in entry_layers:
            found.setdefault(Candidate(spec, layer, random))
    return list(found)


@contextmanager
def _flush_denormals(enabled: bool):
    """Randomly initialised conv nets shrink their activations into denormal floats, which makes CPU passes
    crawl; flushing them to zero changes nothing that matters for a control and keeps it fast."""
    if enabled:
        torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if enabled:
            torch.set_flush_denormal(False)


def randomize(model: nn.Module, seed: int) -> None:
    """Re-draw every weight: each layer's own PyTorch initialiser (``reset_parameters``, which also resets
    BatchNorm statistics), and N(0, 0.02) (the transformers convention) for parameters no layer resets
    (e.g. a ViT's CLS token). Seeded, so the control's features are reproducible and cacheable."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        reset: set[int] = set()
        for module in model.modules():
            if callable(getattr(module, "reset_parameters", None)):
                module.reset_parameters()
                reset.update(id(p) for p in module.parameters(recurse=False))
        with torch.no_grad():
            for parameter in model.parameters():
                if id(parameter) not in reset:
                    parameter.normal_(0.0, 0.02)


def licence_of(source) -> str | None:
    """The licence the source records, else the ``license:`` line of a model card's YAML front matter."""
    if source.licence:
        return source.licence
    readme = Path(source.path) / "README.md"
    if not readme.is_file():
        return None
    text = readme.read_text(encoding="utf-8", errors="replace")
    if not text.startswith("---"):
        return None
    for line in text.split("---", 2)[1].splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("license", "licence") and value.strip():
            return value.strip().strip("'\"")
    return None


@dataclass
class CandidateFeatures:
    """A candidate's features on the table's rows and what ranking reports about it."""

    candidate: Candidate
    features: np.ndarray
    info: dict
    source_head: tuple[np.ndarray, np.ndarray] | None = None  # (weight Z x d, bias Z) of the source classifier
    extraction: dict = field(default_factory=dict)


def _load(candidate: Candidate):
    options = {} if candidate.layer is None else {"layer": candidate.layer}
    try:
        backbone = load_backbone(candidate.backbone, **options)
    except TypeError as exc:  # a family without a layer setting
        if "layer" not in str(exc):
            raise
        raise ConfigError(f"backbone {candidate.backbone!r} has no layer setting; rank it without a layer") from None
    return backbone


def _group_key(candidate: Candidate, backbone) -> str:
    settings = {k: v for k, v in backbone.settings().items() if k != "layer"}
    return json.dumps([candidate.backbone, candidate.random, backbone.family, settings], sort_keys=True, default=str)


def _cache_key(backbone, random_seed: int | None) -> str:
    if random_seed is None:
        return backbone.fingerprint()  # the key Graft.features uses: later fits reuse these features
    identity = {"random_init": random_seed, "architecture_of": backbone.fingerprint()}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def load_candidates(candidates: list[Candidate], modality: str, source: str, *, seed: int = 0,
                    device: str = "cpu") -> list[list[tuple[Candidate, object]]]:
    """Load every candidate (so a bad name or layer fails before any extraction), grouped so that the layers of
    one model share its weights and one forward pass. Random candidates get their weights re-drawn."""
    groups: dict[str, list[tuple[Candidate, object]]] = {}
    for candidate in candidates:
        backbone = _load(candidate).for_modality(modality)  # an image-text model: the tower that reads the data
        if backbone.modality != modality:
            raise DataError(f"{source}: the input column holds {modality}, but backbone {candidate.backbone!r} reads "
                            f"{backbone.modality}; rank {modality} backbones on this data (--backbones)")
        members = groups.setdefault(_group_key(candidate, backbone), [])
        if members:
            backbone.model = members[0][1].model  # same weights: keep one copy
        elif candidate.random:
            randomize(backbone.model, seed)
        members.append((candidate, backbone.to(device)))
    return list(groups.values())


def _group_runtime(group: list[tuple[Candidate, object]], extract_runtime: str):
    """The frozen runtime of a group of one pretrained candidate (``Graft.features``' runtime, so a later probe reads
    these features from the cache), or None: the layers of one model share a PyTorch pass, and a random control's
    weights are not the ones an exported graph is keyed by."""
    if len(group) != 1 or group[0][0].random:
        return None
    return frozen_runtime(group[0][1], extract_runtime)


def group_features(group: list[tuple[Candidate, object]], table: Table, keys: list[str] | None, *, seed: int = 0,
                   batch_size: int = 32, cache_dir=None, progress: bool = True,
                   extract_runtime: str = "auto") -> list[CandidateFeatures]:
    """Features of each member of a group on ``table``'s rows, from the cache where present (``keys`` = the
    rows' content keys; None = no cache), else from one shared forward pass per batch."""
    started = time.perf_counter()
    leader = group[0][1]
    runtime = _group_runtime(group, extract_runtime)
    layers = [backbone.layer if hasattr(backbone, "layer") else None for _, backbone in group]
    items = table.items()
    memo: list[dict[int, np.ndarray]] = [{} for _ in group]
    spent = {"embedded": 0}
    random = group[0][0].random

    def run_pass(positions: list[int]) -> None:
        with _flush_denormals(random):
            batch = [items[p] for p in positions]
            where = lambda i: table.where(positions[i], table.input_column)  # noqa: E731
            if runtime is not None or not hasattr(leader, "embed_layers"):  # one candidate, or no layer support
                arrays = [extract_features(leader, batch, batch_size=batch_size, progress=progress, where=where,
                                           runtime=runtime)]
            else:
                arrays = extract_layer_features(leader, batch, layers, batch_size=batch_size, progress=progress,
                                                where=where)
        for store, array in zip(memo, arrays):
            store.update(zip(positions, array))
        spent["embedded"] += len(positions)

    def compute_for(index: int):
        def compute(positions) -> np.ndarray:
            todo = [int(p) for p in positions if int(p) not in memo[index]]
            if todo:
                run_pass(todo)
            return np.stack([memo[index][int(p)] for p in positions])
        return compute

    results = []
    cache = FeatureCache(cache_dir)
    for index, (candidate, backbone) in enumerate(group):
        if keys is None:
            features = compute_for(index)(list(range(len(items))))
        else:
            key = runtime.feature_key if runtime is not None else _cache_key(backbone, seed if random else None)
            features, _ = cache.lookup(key, keys, compute_for(index))
        head = backbone.source_head()
        results.append(CandidateFeatures(
            candidate=candidate, features=features,
            info={"family": backbone.family, "modality": backbone.modality, "dim": int(features.shape[1]),
                  "params": int(sum(p.numel() for p in backbone.model.parameters())),
                  "licence": licence_of(backbone.source), "settings": backbone.settings(),
                  "source": {"kind": backbone.source.kind, "path": backbone.source.path}},
            source_head=None if head is None else _head_arrays(head)))
    seconds = round(time.perf_counter() - started, 3)  # the shared pass plus cache reads, for the whole group
    for result in results:
        result.extraction = {"seconds": seconds, "embedded": spent["embedded"], "rows": len(items),
                             "shared_by": len(group)}
    return results


def _head_arrays(head: nn.Module) -> tuple[np.ndarray, np.ndarray]:
    weight = head.weight.detach().cpu().numpy().astype(np.float64)
    bias = head.bias.detach().cpu().numpy().astype(np.float64) if head.bias is not None else np.zeros(len(weight))
    return weight, bias


def content_keys(table: Table) -> list[str]:
    return [content_key(item, table.modality, lambda p=p: table.where(p, table.input_column))
            for p, item in enumerate(table.items())]
