"""A text backbone's ``embed`` (encoder, pooling, normalisation) as an ONNX graph, run by onnxruntime on the CPU.

Why: eager PyTorch leaves a good share of the CPU's GEMM throughput unused on small encoders; onnxruntime ran the
same MiniLM graph 1.2x faster at one thread with features equal to 3e-7 (512 SST-2 sentences side by side, issue
17; ``bench/bench_speed.py text`` measures it).

The graph is exported once per backbone identity (``graph_key``: the backbone's fingerprint — weight hashes,
pooling, normalisation, layer — the opset and the torch / onnx / onnxruntime versions) into
``cache_root()/onnx/<key>/``, written atomically, so a second process reuses it. A failure to export or to match
PyTorch is recorded there (``failed.json``) so the next process goes straight to PyTorch; a version upgrade changes
the key and tries again. ``ensure_int8_graph`` quantises that graph to int8 beside it (opt-in, ``--extract-runtime
onnx-int8``; its features are checked against PyTorch's like the fp32 graph's, to a stated cosine). ``export_graph``
is the one ``torch.onnx.export`` call for a backbone graph: ``graftkit export`` (export/onnx.py) traces the backbone
plus its head through it too.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from torch import nn

from graftkit.atomic import write_atomic, write_text_atomic
from graftkit.paths import cache_root

logger = logging.getLogger(__name__)

OPSET = 17
GRAPH_FORMAT = 1  # what the exported graph computes; bump when EmbedModule changes
GRAPH = "embed.onnx"
INT8_GRAPH = "embed.int8.onnx"
FAILED = "failed.json"
OUTPUT = "features"
SAMPLE = ["a short text", "a somewhat longer text to trace"]  # two lengths: the traced graph keeps padding general


def default_graph_dir() -> Path:
    return cache_root() / "onnx"


def onnx_unsupported(backbone) -> str | None:
    """Why ``backbone``'s frozen features cannot run on onnxruntime here, or None when they can."""
    if backbone.family != "hf-text":
        return f"backbone family {backbone.family} (onnxruntime extraction covers transformers text encoders, hf-text)"
    if backbone.device.type != "cpu":
        return f"device {backbone.device} (onnxruntime extraction runs on the CPU; on a GPU PyTorch embeds)"
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "onnxruntime is not installed (pip install onnxruntime)"
    return None


class EmbedModule(nn.Module):
    """``backbone.embed`` taking its tensors positionally, as ``torch.onnx.export`` traces a module."""

    def __init__(self, backbone, inputs: list[str]):
        super().__init__()
        self.backbone_model = backbone.model  # registered so that the exporter sees its parameters
        self._embed = backbone.embed
        self.inputs = list(inputs)

    def forward(self, *tensors):
        return self._embed(dict(zip(self.inputs, tensors)))


def export_graph(module: nn.Module, sample: dict[str, torch.Tensor], destination, output: str) -> None:
    """Trace ``module(*sample.values())`` into ``destination`` (a path or a binary file): TorchScript exporter,
    opset ``OPSET``, every input with dynamic batch and sequence axes, the ``output`` with a dynamic batch axis."""
    inputs = list(sample)
    dynamic = {name: {0: "batch", 1: "sequence"} for name in inputs}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the tracer's notes on Python control flow it froze: the check decides
        torch.onnx.export(module.eval(), tuple(sample[name] for name in inputs), destination, input_names=inputs,
                          output_names=[output], dynamic_axes={**dynamic, output: {0: "batch"}},
                          opset_version=OPSET, dynamo=False)


def graph_key(backbone) -> str:
    import onnx
    import onnxruntime

    identity = {"features_of": backbone.fingerprint(), "opset": OPSET, "format": GRAPH_FORMAT,
                "torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def graph_folder(backbone, root: Path | None = None) -> Path:
    return Path(root if root is not None else default_graph_dir()) / graph_key(backbone)[:32]


# where a failure of each graph is recorded: apart, so that an int8 graph too coarse for one backbone does not
# switch its exact fp32 graph off
FAILURES = {GRAPH: FAILED, INT8_GRAPH: "failed.int8.json"}


def failure_file(graph: str = GRAPH) -> str:
    return FAILURES[graph]


def recorded_failure(folder: Path, graph: str = GRAPH) -> str | None:
    """The reason recorded when this graph last failed to export or to match PyTorch, or None."""
    try:
        return json.loads((folder / failure_file(graph)).read_text(encoding="utf-8"))["reason"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def record_failure(folder: Path, reason: str, graph: str = GRAPH) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_text_atomic(folder / failure_file(graph), json.dumps(
            {"reason": reason, "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}))
    except OSError as exc:  # an unwritable cache costs a retry next time, nothing else
        logger.debug("could not record the ONNX failure in %s: %s", folder, exc)


def ensure_graph(backbone, folder: Path) -> Path:
    """The exported graph of ``backbone.embed`` in ``folder``, exported now (atomically) unless it is there."""
    path = folder / GRAPH
    if path.is_file():
        logger.debug("onnx graph of %s reused from %s", backbone.source.spec, path)
        return path
    folder.mkdir(parents=True, exist_ok=True)
    # the tokenizer's own padded batch (what ``preprocess`` gives), not the contract's ``tokenize``: tracing is no
    # extraction, and a batch of two lengths keeps the traced padding general
    sample = dict(backbone.tokenizer(SAMPLE, padding=True, truncation=True, max_length=backbone.max_length,
                                     return_tensors="pt"))
    module = EmbedModule(backbone, list(sample))
    training = backbone.model.training
    try:
        write_atomic(path, lambda handle: export_graph(module, sample, handle, OUTPUT), binary=True)
    finally:
        backbone.model.train(training)
    logger.info("exported the frozen feature graph of %s to %s", backbone.source.spec, path)
    return path


@contextmanager
def _quiet_root_logger():
    """onnxruntime's quantiser logs advice ("consider to run pre-processing") on the root logger at WARNING; it
    concerns static quantisation and would reach the user's console, so it is dropped for the call's duration."""
    drop = logging.Filter("graftkit")  # a logger's filter sees only records logged on it: here those named "root"
    root = logging.getLogger()
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)


def down_projections(path) -> list[str]:
    """The MatMuls of the graph at ``path`` whose weight maps more inputs to fewer outputs: in a transformer block,
    the feed-forward's 4h -> h projection (found by shape, so no architecture's module names are assumed)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    shapes = {init.name: tuple(init.dims) for init in graph.initializer}
    return [node.name for node in graph.node if node.op_type == "MatMul" and len(node.input) == 2
            and len(shapes.get(node.input[1], ())) == 2 and shapes[node.input[1]][0] > shapes[node.input[1]][1]]


def quantize_int8(source, destination, *, keep_fp32: list[str], per_channel: bool = True) -> None:
    """onnxruntime's dynamic quantisation of ``source`` into ``destination``: int8 weights (per output channel
    unless told), activations quantised per batch at run time, the ``keep_fp32`` nodes left in float."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with warnings.catch_warnings(), _quiet_root_logger():
        warnings.simplefilter("ignore")
        quantize_dynamic(str(source), str(destination), weight_type=QuantType.QInt8, per_channel=per_channel,
                         nodes_to_exclude=keep_fp32)


def ensure_int8_graph(backbone, folder: Path) -> Path:
    """The int8 graph beside the fp32 one (``INT8_GRAPH``), quantised now (atomically) unless it is there.

    Per-channel int8 weights, with the feed-forward down-projections kept fp32: their inputs, after GELU, carry the
    outliers int8 rounds worst. ``python bench/bench_speed.py int8-recipes`` measures the choice on
    all-MiniLM-L6-v2 (bench/RESULTS.md, issue 17)."""
    path = folder / INT8_GRAPH
    if path.is_file():
        return path
    fp32 = ensure_graph(backbone, folder)
    down = down_projections(fp32)
    staging = folder / f".{INT8_GRAPH}.{os.getpid()}.tmp"
    try:
        quantize_int8(fp32, staging, keep_fp32=down)
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)
    logger.info("quantised the frozen feature graph of %s to int8 (%d down-projections kept fp32) in %s",
                backbone.source.spec, len(down), path)
    return path


class OnnxEmbedder:
    """An onnxruntime CPU session over an exported ``embed`` graph: ``embedder(batch) -> features`` as a tensor.

    Its intra-op threads follow graftkit's one thread setting: torch's intra-op count (``graftkit.set_threads``
    sizes it, with the BLAS and tokenizer pools), read at each call, so a later ``set_threads`` rebuilds the
    session with the new count; one inter-op thread, as torch runs the graph's nodes one after another."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._session, self._threads, self._inputs = None, None, []

    def session(self):
        import onnxruntime

        threads = torch.get_num_threads()
        if self._session is None or threads != self._threads:
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            self._session = onnxruntime.InferenceSession(str(self.path), options,
                                                         providers=["CPUExecutionProvider"])
            self._inputs = [node.name for node in self._session.get_inputs()]  # the exporter drops unused ones
            self._threads = threads
        return self._session

    def __call__(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        session = self.session()
        feed = {name: np.ascontiguousarray(batch[name].cpu().numpy(), dtype=np.int64) for name in self._inputs}
        (features,) = session.run([OUTPUT], feed)
        return torch.from_numpy(features)
