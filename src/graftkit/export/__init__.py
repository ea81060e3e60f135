"""Exporting fitted models to other runtimes: ONNX (``export_onnx``) and its onnxruntime predictor (``OnnxModel``)."""

from graftkit.export.onnx import export_onnx
from graftkit.export.runtime import OnnxModel, load_onnx

__all__ = ["OnnxModel", "export_onnx", "load_onnx"]
