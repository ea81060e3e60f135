"""Running an ONNX export (``graftkit predict --runtime onnx``, ``graftkit serve --runtime onnx``) with onnxruntime:
the tokenizer saved beside the graph, the graph for the raw outputs, then the task's own calibration and records.
No torch weights are loaded."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from graftkit.errors import ArtifactError, ConfigError
from graftkit.export.onnx import FORMAT, GRAPH, SPEC, TOKENIZER


def run_session(session, tokenizer, texts: list[str], inputs: list[str], max_length: int, batch_size: int) -> np.ndarray:
    """Raw outputs of ``texts``, in batches sorted by length (little padding), in the original order."""
    order = np.argsort([len(t) for t in texts], kind="stable")
    raw = [None] * len(texts)
    for start in range(0, len(texts), batch_size):
        rows = order[start:start + batch_size]
        encoded = tokenizer([texts[i] for i in rows], truncation=True, max_length=max_length, padding=True,
                            return_tensors="np")
        feed = {name: np.asarray(encoded[name], dtype=np.int64) for name in inputs}
        (out,) = session.run(["raw"], feed)
        for i, row in zip(rows, out):
            raw[i] = row
    return np.asarray(raw, dtype=np.float64)


class _Named:
    def __init__(self, name: str):
        self.name = name


class OnnxModel:
    """An ONNX export with the ``Graft`` methods prediction needs (``predict_records``, ``predict``, ``outputs``,
    ``use_thresholds``) and the attributes ``graftkit serve`` lists (``task_``, ``input_``, ``metrics_``)."""

    runtime = "onnx"

    def __init__(self, path):
        import onnxruntime
        from transformers import AutoTokenizer

        from graftkit.tasks import task_from_dict

        path = Path(path).expanduser()
        spec_file = path / SPEC
        if not spec_file.is_file():
            raise ArtifactError(f"{str(path)!r} holds no {SPEC}; it is not an ONNX export (write one with "
                                "`graftkit export DIR --format onnx -o OUT`)")
        try:
            spec = json.loads(spec_file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ArtifactError(f"{spec_file}: not valid JSON ({exc}); export the model again") from None
        if not isinstance(spec, dict) or spec.get("format") != FORMAT:
            raise ArtifactError(f"{spec_file}: not a graftkit ONNX export (format {spec.get('format')!r}); export again")
        self.path, self.spec = path, spec
        self.task_ = task_from_dict(spec["task"], source=str(spec_file))
        self.input_ = spec["input"]
        self.metrics_ = spec.get("metrics", {})
        self.calibration_ = spec.get("calibration")
        self.backbone = spec.get("backbone")
        self.strategy_ = _Named(f"{spec.get('strategy')} (onnx{' int8' if spec.get('quantize') else ''})")
        self.batch_size = int(spec.get("batch_size") or 32)
        self.tokenizer = AutoTokenizer.from_pretrained(path / TOKENIZER)
        try:
            self.session = onnxruntime.InferenceSession(str(path / GRAPH), providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime's pybind errors (InvalidProtobuf, ...) subclass Exception only
            raise ArtifactError(f"{path / GRAPH} does not load in onnxruntime ({str(exc).splitlines()[0][:200]}); "
                                "export the model again") from None

    def _texts(self, data) -> list[str]:
        from graftkit.data import Table, load_data

        if isinstance(data, (list, tuple)):
            texts = list(data)
        else:
            table = data if isinstance(data, Table) else load_data(
                data, require_label=False, known_columns={"text": self.input_["column"]})
            if table.modality != "text":
                raise ConfigError(f"{table.source}: this ONNX model reads text, the input column holds {table.modality}")
            texts = table.items()
        bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
        if bad is not None:
            raise ConfigError(f"input {bad}: expected a text, got {type(texts[bad]).__name__}")
        return texts

    def raw(self, data) -> np.ndarray:
        texts = self._texts(data)
        if not texts:
            return np.zeros((0, self.task_.output_size))
        return run_session(self.session, self.tokenizer, texts, self.spec["inputs"], int(self.spec["max_length"]),
                           self.batch_size)

    def outputs(self, data) -> np.ndarray:
        return self.task_.outputs(self.raw(data), self.calibration_)

    def predict(self, data) -> list:
        return self.task_.decode(self.outputs(data), self.calibration_)

    def predict_records(self, data, **options) -> list[dict]:
        return self.task_.records(self.outputs(data), self.calibration_, **options)

    def use_thresholds(self, thresholds: dict, source: str = "thresholds") -> OnnxModel:
        self.calibration_ = self.task_.with_thresholds(self.calibration_, thresholds, source)
        return self


def load_onnx(path) -> OnnxModel:
    return OnnxModel(path)
