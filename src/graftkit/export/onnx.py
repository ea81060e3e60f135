"""``graftkit export DIR --format onnx``: a fitted text model's backbone, pooling and head as one ONNX graph.

The graph takes the tokenizer's tensors (``input_ids``, ``attention_mask``[, ``token_type_ids``]) and returns the
head's raw outputs (``raw``: logits, or values for regression); the task's calibration and decoding stay in
numpy (``task.outputs`` / ``task.records``), exactly as for the PyTorch model. Every graftkit head on frozen
features is affine in the features except the MLP head, so the head is written as one linear layer read off the
head itself (``logits(0)`` and ``logits(e_j)``), then checked to reproduce the head on real features.

Before anything is written the exported graph is run with onnxruntime on check texts and compared with the
PyTorch model: fp32 must match the raw outputs within ``tolerance``; int8 (onnxruntime dynamic quantisation of
the weights) must agree on the predicted labels (regression: values within 1 %) for at least ``min_agreement`` of
the rows. A mismatch refuses
the export (nothing is written). The directory holds ``model.onnx``, ``tokenizer/`` and ``onnx.json`` (task,
calibration, input column, the check's figures).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from graftkit.backbones.onnx_text import OPSET, EmbedModule, export_graph
from graftkit.errors import ArtifactError, ConfigError
from graftkit.loading import load_model

logger = logging.getLogger(__name__)

FORMAT = "graftkit-onnx"
SPEC = "onnx.json"
GRAPH = "model.onnx"
TOKENIZER = "tokenizer"

CHECK_TEXTS = [  # varied lengths and characters; used when no --check-data is given
    "hello", "I lost my card yesterday and need a new one", "The film was wonderful, the acting superb.",
    "why was I charged twice for the same purchase?", "ok", "Can I change my PIN at an ATM?",
    "This is terrible. Worst service ever!!!", "transfer 100 EUR to my savings account please",
    "Ünïcödé tëxt with àccents and emoji 🙂", "a " * 60, "How long does delivery take to Spain?",
    "numbers 1234 5678 and symbols #$%&", "what is the exchange rate today", "I am happy", "not good at all",
    "Please close my account; I am moving abroad next month and will not need it.",
]


class ExportedModel(nn.Module):
    """Backbone ``embed`` (pooling and normalisation included) followed by the head's linear layer."""

    def __init__(self, backbone, weight: np.ndarray, bias: np.ndarray, inputs: list[str]):
        super().__init__()
        self.embed = EmbedModule(backbone, inputs)  # the graph frozen extraction exports, plus the head
        self.register_buffer("weight", torch.from_numpy(weight.astype(np.float32)))
        self.register_buffer("bias", torch.from_numpy(bias.astype(np.float32)))

    def forward(self, *tensors):
        return self.embed(*tensors) @ self.weight.T + self.bias


def affine_head(head, hidden: int, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(weight, bias)`` with ``X @ weight.T + bias == head.logits(X)``; a ConfigError for a non-affine head."""
    probe = np.vstack([np.zeros((1, hidden)), np.eye(hidden)])
    out = np.asarray(head.logits(probe), dtype=np.float64)
    bias = out[0]
    weight = (out[1:] - bias).T
    expected = np.asarray(head.logits(features), dtype=np.float64)
    got = features.astype(np.float64) @ weight.T + bias
    if not np.allclose(got, expected, atol=1e-4 * max(1.0, float(np.abs(expected).max()))):
        raise ConfigError(f"the model's {head.info.get('kind', 'head')!r} head is not linear in the features, so it "
                          "cannot be written as one ONNX layer; export a linear-probe / fine-tuned model (not --head mlp)")
    return weight, bias


def _check_exportable(model) -> None:
    side = (getattr(model, "training_", None) or {}).get("side_features")
    if side:
        raise ConfigError(f"this model's output layer also reads {side} side features per row (the encoder of a joint "
                          "fusion model); ONNX export covers models that read text alone")
    backbone = model.loaded_backbone()
    if backbone.modality != "text" or not hasattr(backbone, "tokenizer"):
        raise ConfigError(f"ONNX export covers text models (a transformers encoder and its tokenizer); this model's "
                          f"backbone {model.backbone!r} reads {backbone.modality}")
    if getattr(backbone, "layer", None) is not None:
        raise ConfigError("ONNX export pools the last layer; this model pools an inner layer (layer=) and is not "
                          "exported")


def _check_texts(check_data) -> list[str]:
    if check_data is None:
        return list(CHECK_TEXTS)
    texts = [t for t in check_data if isinstance(t, str) and t.strip()]
    if len(texts) < 4:
        raise ConfigError("the check data holds fewer than 4 texts; give more rows (--check-data)")
    return texts[:256]


def _torch_raw(model, texts: list[str]) -> np.ndarray:
    return np.asarray(model.head_.logits(model.features(model.as_table(texts, require_label=False))), np.float64)


def export_onnx(model_dir, out, *, quantize: str | None = None, overwrite: bool = False, check_data=None,
                tolerance: float = 1e-3, min_agreement: float = 0.9) -> dict:
    """Export the model in ``model_dir`` to the directory ``out``; returns the check record (also in onnx.json)."""
    import onnxruntime

    if quantize not in (None, "int8"):
        raise ConfigError(f"--quantize {quantize!r} is not supported; use int8 (or leave it out for fp32)")
    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not (out / SPEC).is_file():
            raise ArtifactError(f"output {str(out)!r} exists and is not an ONNX export; choose a new -o DIR")
        if not overwrite:
            raise ArtifactError(f"output {str(out)!r} already holds an ONNX export; pass --overwrite or choose "
                                "another -o DIR")
    model = load_model(model_dir, use_cache=False, progress=False)
    _check_exportable(model)
    backbone = model.loaded_backbone()
    backbone.model.eval()
    texts = _check_texts(check_data)
    reference = _torch_raw(model, texts)
    features = model.features(model.as_table(texts, require_label=False))
    weight, bias = affine_head(model.head_, backbone.hidden_size, features)
    sample = backbone.preprocess(texts[:2])
    inputs = list(sample)
    wrapper = ExportedModel(backbone, weight, bias, inputs).eval()

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        fp32 = staging / ("model.fp32.onnx" if quantize else GRAPH)
        export_graph(wrapper, sample, str(fp32), "raw")
        if quantize:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantize_dynamic(str(fp32), str(staging / GRAPH), weight_type=QuantType.QInt8)
            fp32.unlink()
        backbone.tokenizer.save_pretrained(staging / TOKENIZER)
        session = onnxruntime.InferenceSession(str(staging / GRAPH), providers=["CPUExecutionProvider"])
        from graftkit.export.runtime import run_session

        raw = run_session(session, backbone.tokenizer, texts, inputs, backbone.max_length, batch_size=32)
        check = _compare(model, reference, raw, quantize, tolerance, min_agreement)
        spec = {"format": FORMAT, "format_version": 1, "source": str(Path(model_dir).expanduser().resolve()),
                "quantize": quantize, "opset": OPSET, "inputs": inputs, "max_length": backbone.max_length,
                "batch_size": model.batch_size, "task": model.task_.to_dict(), "input": model.input_,
                "calibration": model.active_calibration(), "metrics": model.metrics_,
                "backbone": model.backbone, "strategy": model.strategy_.name, "check": check}
        (staging / SPEC).write_text(json.dumps(spec, indent=2, ensure_ascii=False, default=float))
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return check


def _same(ours, theirs) -> bool:
    """Equal labels (label sets); numbers (regression) agree within 1 % of their size."""
    if isinstance(theirs, (float, int, np.floating)) and not isinstance(theirs, bool):
        return abs(float(ours) - float(theirs)) <= 0.01 * max(1.0, abs(float(theirs)))
    return ours == theirs


def _compare(model, reference: np.ndarray, raw: np.ndarray, quantize, tolerance: float, min_agreement: float) -> dict:
    task, calibration = model.task_, model.active_calibration()
    ours = task.decode(task.outputs(raw, calibration), calibration)
    theirs = task.decode(task.outputs(reference, calibration), calibration)
    agreement = float(np.mean([_same(a, b) for a, b in zip(ours, theirs)]))
    max_diff = float(np.abs(raw - reference).max())
    check = {"rows": len(reference), "max_abs_diff_raw": max_diff, "prediction_agreement": agreement,
             "tolerance": tolerance if not quantize else None, "min_agreement": min_agreement if quantize else None}
    if not quantize and max_diff > tolerance:
        raise ArtifactError(f"the ONNX graph's outputs differ from PyTorch's by up to {max_diff:.2e} on "
                            f"{len(reference)} check rows (tolerance {tolerance:g}); nothing was written")
    if quantize and agreement < min_agreement:
        raise ArtifactError(f"the int8 graph agrees with PyTorch on {agreement:.0%} of {len(reference)} check rows "
                            f"(at least {min_agreement:.0%} required); nothing was written: export fp32 instead")
    logger.info("ONNX %s graph checked on %d rows: max |raw diff| %.2e, predictions agree on %.1f%%",
                quantize or "fp32", len(reference), max_diff, 100 * agreement)
    return check
