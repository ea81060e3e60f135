"""Which runtime embeds a pretrained backbone's frozen features: PyTorch (``backbone.embed``), onnxruntime (the
same ``embed`` exported to ONNX, ``backbones/onnx_text.py``) or onnxruntime on that graph quantised to int8, and the
feature-cache key that says which.

``auto`` (the default) takes onnxruntime for a transformers text encoder on the CPU when onnxruntime is installed
and no earlier check of this graph failed, PyTorch otherwise; ``onnx`` insists (a ConfigError where it cannot run);
``torch`` never exports. On the first batch an ONNX runtime embeds, PyTorch embeds it too and the two must agree
(max |diff| <= ``TOLERANCE`` after pooling, or every row's cosine >= ``MIN_COSINE``); a failure to export, to load
or to match falls back to PyTorch with one warning saying why, recorded beside the graph so the next process does
not try again. The runtime is part of the features' identity: ``feature_key`` is the backbone's fingerprint for
PyTorch (the key every earlier cache used) and a hash of it with the runtime's name for onnxruntime.

``onnx-int8`` is never chosen by ``auto``: int8 features are not PyTorch's, only close to them. Its first-batch check
asks every row's cosine to PyTorch's to be >= ``INT8_MIN_COSINE``; on all-MiniLM-L6-v2 it runs 1.3x the fp32
graph (2.0x sentence-transformers) with the probe's accuracy held (``bench/bench_speed.py text`` measures both). A
model fitted on it predicts on it (the manifest records the runtime), since its head learnt int8 features. Its
activations are quantised per batch, so a row's int8 features depend slightly on the rows batched with it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import torch

from graftkit.backbones import onnx_text
from graftkit.errors import ConfigError

logger = logging.getLogger(__name__)

RUNTIMES = ("auto", "torch", "onnx", "onnx-int8")
TOLERANCE = 1e-4
MIN_COSINE = 0.99999
INT8_MIN_COSINE = 0.97  # all-MiniLM-L6-v2's worst of 2,000 SST-2 sentences: 0.976 (bench_speed.py text)
GRAPHS = {"onnx": onnx_text.GRAPH, "onnx-int8": onnx_text.INT8_GRAPH}
_warned: set[str] = set()  # graphs whose recorded failure was already reported in this process


def check_runtime(runtime) -> str:
    if runtime not in RUNTIMES:
        raise ConfigError(f"extract_runtime must be one of {', '.join(RUNTIMES)}; got {runtime!r} "
                          "(--extract-runtime)")
    return runtime


class FrozenRuntime:
    """Embeds ``backbone``'s pretrained (frozen) features with ``name`` ("torch", "onnx" or "onnx-int8");
    ``embed(batch)`` is a drop-in for ``backbone.embed`` and may switch ``name`` to "torch" on its first batch (see
    the module)."""

    def __init__(self, backbone, name: str, folder: Path | None = None):
        self.backbone, self.name, self.folder = backbone, name, folder
        self._embedder: onnx_text.OnnxEmbedder | None = None

    def feature_key(self) -> str:
        fingerprint = self.backbone.fingerprint()
        if self.name == "torch":
            return fingerprint
        return hashlib.sha256(json.dumps({"features_of": fingerprint, "runtime": self.name}).encode()).hexdigest()

    def embed(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.name == "torch":
            return self.backbone.embed(batch)
        if self._embedder is None:
            return self._first_batch(batch)
        return self._embedder(batch)

    def _first_batch(self, batch) -> torch.Tensor:
        reference = self.backbone.embed(batch).to("cpu", torch.float32)
        try:
            embedder, features = self._onnx_features(batch)
        except Exception as exc:  # noqa: BLE001 - the exporter and onnxruntime raise many kinds; every one means torch
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            reason = f"the export or the onnxruntime session failed ({type(exc).__name__}: {first})"
            # an OSError (a full disk, a read-only cache) says nothing about the graph: the next process tries again
            return self._fall_back(reason, reference, record=not isinstance(exc, OSError))
        if features.shape != reference.shape:
            return self._fall_back(f"the ONNX graph gives features of shape {tuple(features.shape)}, PyTorch "
                                   f"{tuple(reference.shape)}", reference, record=True)
        diff = float((features - reference).abs().max())
        cosine = float(torch.nn.functional.cosine_similarity(features, reference, dim=1).min())
        if self.name == "onnx-int8":
            matches, wanted = cosine >= INT8_MIN_COSINE, f"min cosine {INT8_MIN_COSINE:g} for int8"
        else:
            matches, wanted = diff <= TOLERANCE or cosine >= MIN_COSINE, f"tolerance {TOLERANCE:g}"
        if not np.isfinite(diff) or not matches:
            return self._fall_back(f"its features differ from PyTorch's on the first batch ({len(reference)} rows): "
                                   f"max |diff| {diff:.1e}, min cosine {cosine:.6f} ({wanted})", reference,
                                   record=True)
        logger.info("frozen features of %s on onnxruntime%s (%d threads): first batch of %d rows matches PyTorch, "
                    "max |diff| %.1e, min cosine %.7f", self.backbone.source.spec,
                    " int8" if self.name == "onnx-int8" else "", torch.get_num_threads(), len(reference), diff, cosine)
        self._embedder = embedder
        return features

    def _onnx_features(self, batch) -> tuple[onnx_text.OnnxEmbedder, torch.Tensor]:
        """A session on the graph (exported now unless cached) and its features of ``batch``. A cached graph that no
        longer loads (damaged on disk; it was written atomically) is removed and exported again, once."""
        path = self.folder / GRAPHS[self.name]
        cached = path.is_file()
        try:
            embedder = onnx_text.OnnxEmbedder(self._ensure_graph())
            return embedder, embedder(batch)
        except Exception as exc:  # onnxruntime's load errors subclass Exception only
            if not cached:
                raise
            logger.warning("the cached ONNX graph %s does not run (%s); it is removed and exported again", path,
                           type(exc).__name__)
            path.unlink(missing_ok=True)
            embedder = onnx_text.OnnxEmbedder(self._ensure_graph())
            return embedder, embedder(batch)

    def _ensure_graph(self) -> Path:
        if self.name == "onnx-int8":
            return onnx_text.ensure_int8_graph(self.backbone, self.folder)
        return onnx_text.ensure_graph(self.backbone, self.folder)

    def _fall_back(self, reason: str, reference: torch.Tensor, record: bool) -> torch.Tensor:
        logger.warning("frozen features of %s: onnxruntime is not used, PyTorch embeds instead; %s",
                       self.backbone.source.spec, reason)
        if record:
            onnx_text.record_failure(self.folder, reason, GRAPHS[self.name])
        _warned.add(str(self.folder / GRAPHS[self.name]))
        self.name = "torch"
        return reference


def frozen_runtime(backbone, runtime: str = "auto", *, graph_dir=None) -> FrozenRuntime:
    """The runtime that embeds ``backbone``'s frozen features as ``runtime`` (auto / torch / onnx / onnx-int8) asks;
    nothing is exported until the first batch. ``graph_dir``: where graphs live (default ``cache_root()/onnx``)."""
    runtime = check_runtime(runtime)
    if runtime == "torch":
        return FrozenRuntime(backbone, "torch")
    unsupported = onnx_text.onnx_unsupported(backbone)
    if unsupported is not None:
        if runtime != "auto":
            raise ConfigError(f"extract_runtime {runtime!r} cannot embed backbone {backbone.source.spec!r}: "
                              f"{unsupported}; use --extract-runtime auto or torch")
        return FrozenRuntime(backbone, "torch")
    name = "onnx" if runtime == "auto" else runtime
    folder = onnx_text.graph_folder(backbone, graph_dir)
    failure = onnx_text.recorded_failure(folder, GRAPHS[name])
    if failure is not None:
        if str(folder / GRAPHS[name]) not in _warned:
            _warned.add(str(folder / GRAPHS[name]))
            logger.warning("frozen features of %s: onnxruntime is not used, PyTorch embeds instead; an earlier run "
                           "found %s (recorded in %s; delete it to try again)", backbone.source.spec, failure,
                           folder / onnx_text.failure_file(GRAPHS[name]))
        return FrozenRuntime(backbone, "torch")
    return FrozenRuntime(backbone, name, folder)
