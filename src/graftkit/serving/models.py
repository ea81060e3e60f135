"""The models a server answers for: each directory loaded once, peft adapters on one shared base.

Directories holding lora / ia3 adapters of one kind fitted on the same base (spec, weight hashes, settings) are
loaded together by ``load_adapters``, so N task variants cost one base model plus N small adapters. Everything
else is loaded on its own with ``graftkit.load``. The feature cache is off: a server must not write a disk
shard per request.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from graftkit.adapters import base_identity, load_adapters
from graftkit.artifacts import read_manifest
from graftkit.errors import ConfigError
from graftkit.loading import load_model

logger = logging.getLogger(__name__)

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
ADAPTER_KINDS = ("lora", "ia3")


@dataclass
class ServedModel:
    """One name in ``/v1/models``: its fitted ``Graft`` (through its adapter set when it shares a base)."""

    name: str
    path: Path
    graft: object
    adapters: object = None            # the AdapterSet holding it, or None
    shares_base_with: list = field(default_factory=list)

    def fitted(self):
        """The Graft to predict with; activates this model's adapter on the shared base first. Called only on the
        server's single inference thread, so switching adapters cannot race."""
        return self.adapters.model(self.name) if self.adapters is not None else self.graft

    @property
    def modality(self) -> str:
        return self.graft.input_["modality"]

    @property
    def input_keys(self) -> tuple[str, ...]:
        """The keys a request row may name its input by: the modality, or the column the model was fitted on."""
        return tuple(dict.fromkeys((self.modality, self.graft.input_["column"])))

    def predict(self, inputs: list, options: dict) -> list[dict]:
        return self.fitted().predict_records(list(inputs), **options)

    def info(self) -> dict:
        graft = self.graft
        task = graft.task_
        return {"name": self.name, "task": task.kind, "labels": list(task.labels), "input": self.input_keys[0],
                "input_column": graft.input_["column"], "backbone": graft.backbone, "strategy": graft.strategy_.name,
                "runtime": getattr(graft, "runtime", "torch"),
                "metrics": graft.metrics_, "shares_base_with": self.shares_base_with}


def parse_model_args(args: list[str]) -> dict[str, Path]:
    """``DIR`` (named by its folder) or ``NAME=DIR`` -> {name: path}; names are URL-safe and unique."""
    named: dict[str, Path] = {}
    for arg in args:
        name, sep, rest = arg.partition("=")
        if sep and NAME.fullmatch(name):
            path = Path(rest).expanduser()
        else:
            path = Path(arg).expanduser()
            name = path.resolve().name
        if not NAME.fullmatch(name):
            raise ConfigError(f"model name {name!r} (from {arg!r}) is not usable in a URL; serve it as NAME=DIR with "
                              "letters, digits, '.', '_' or '-'")
        if name in named:
            raise ConfigError(f"two models are both named {name!r}; serve them as NAME=DIR with distinct names")
        named[name] = path
    if not named:
        raise ConfigError("give at least one model directory to serve")
    return named


def load_served(named: dict[str, Path], *, device: str = "cpu", runtime: str = "torch",
                batch_rows: int | None = None) -> dict[str, ServedModel]:
    """Load every model once; adapters fitted on one base share it. ``runtime="onnx"``: every directory is an
    ONNX export (``graftkit export``), run by onnxruntime. ``batch_rows``: forward passes take at least this many
    rows (a micro-batch of 64 requests would otherwise be cut into the fitted batch size, 16 for a LoRA fit)."""
    served = _load(named, device=device, runtime=runtime)
    for model in served.values():
        if batch_rows is not None and model.graft.batch_size < batch_rows:
            model.graft.batch_size = batch_rows
    return served


def _load(named: dict[str, Path], *, device: str, runtime: str) -> dict[str, ServedModel]:
    if runtime == "onnx":
        from graftkit.export import load_onnx

        return {name: ServedModel(name, path, load_onnx(path)) for name, path in named.items()}
    manifests = {name: read_manifest(path) for name, path in named.items()}  # every file's hash, before loading
    groups: dict[tuple, list[str]] = {}
    for name, manifest in manifests.items():
        kind = manifest["strategy"]["name"]
        if kind in ADAPTER_KINDS:
            key = (kind, repr(base_identity(manifest)))
            groups.setdefault(key, []).append(name)
    served: dict[str, ServedModel] = {}
    for members in groups.values():
        if len(members) < 2:
            continue
        adapter_set = load_adapters({m: named[m] for m in members}, device=device, progress=False)
        for m in members:
            graft = adapter_set.model(m)
            graft.use_cache, graft.progress = False, False
            served[m] = ServedModel(m, named[m], graft, adapter_set, [o for o in members if o != m])
        logger.info("models %s share one base (%s)", ", ".join(members), manifests[members[0]]["backbone"]["source"]["spec"])
    for name, path in named.items():
        if name not in served:
            served[name] = ServedModel(name, path, load_model(path, device=device, use_cache=False, progress=False))
    return {name: served[name] for name in named}
