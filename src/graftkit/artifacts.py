"""Model artifacts: a directory with ``manifest.json``, ``head.safetensors``, ``labels.json`` and a
``README.md`` model card. Written to a temporary sibling and moved into place, so a crash never
leaves a half-written model, and an existing model is replaced only when asked."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tempfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np

from graftkit.atomic import check_output_directory, output_lock, swap_directory
from graftkit.errors import ArtifactError
from graftkit.manifest import (
    FORMAT,
    HEAD,
    LABELS,
    MANIFEST,
    SCHEMA_VERSION,
    sign,
    validate,
)

CARD = "README.md"


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def library_versions() -> dict:
    packages = ("graftkit", "torch", "transformers", "huggingface_hub", "scikit-learn", "numpy", "safetensors",
                "onnxruntime")
    return {"python": platform.python_version(), **{p: _version(p) for p in packages}}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_destination(path: Path, overwrite: bool) -> None:
    check_output_directory(path, overwrite, holds=lambda p: (p / MANIFEST).is_file(), what="model")


def build_manifest(graft) -> dict:
    return {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "task": graft.task_.to_dict(),
        "input": graft.input_,
        # the runtime that embeds the features the head reads (loading runs the same; absent in older manifests: torch)
        "backbone": {**graft.backbone_.describe(), "runtime": graft.extraction_runtime()},
        "strategy": graft.strategy_.to_dict(),
        "head": graft.head_.info,
        "hyperparameters": {"batch_size": graft.batch_size, "seed": graft.seed},
        "seed": graft.seed,
        "versions": library_versions(),
        "data": graft.data_,
        "timings": graft.timings_,
        "metrics": graft.metrics_,
        "calibration": getattr(graft, "calibration_", None),  # the temperature predict_proba applies
        **({"training": graft.training_} if getattr(graft, "training_", None) else {}),
    }


def save_model(graft, path, overwrite: bool = False) -> Path:
    """Write ``graft``'s artifact into ``path`` (staged, then swapped in), holding the output lock."""
    path = Path(path).expanduser()
    if int(os.environ.get("RANK", "0")) != 0:  # data-parallel run (torchrun): only the main process writes
        return path
    with output_lock(path):
        return _save_locked(graft, path, overwrite)


def _save_locked(graft, path: Path, overwrite: bool) -> Path:
    from safetensors.numpy import save_file

    from graftkit.model_card import render_card

    check_destination(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        save_file({k: np.ascontiguousarray(v) for k, v in graft.head_.arrays.items()}, str(staging / HEAD))
        (staging / LABELS).write_text(json.dumps(list(graft.task_.labels), indent=1, ensure_ascii=False))
        weights = []
        if getattr(graft, "finetuned_", False):  # fine-tuned backbone weights travel with the head
            from graftkit.training.artifact import save_finetuned

            weights = save_finetuned(graft, staging)
        manifest = build_manifest(graft)
        manifest["files"] = {name: _sha256(staging / name) for name in (HEAD, LABELS, *weights)}
        manifest["digest"] = sign(manifest)  # the label order and every setting, not only the files
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
        (staging / CARD).write_text(render_card(manifest))
        swap_directory(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return path


def read_manifest(path) -> dict:
    """The manifest of the model in ``path``, validated against the schema (``graftkit.manifest``), its digest and
    every file's hash verified; any failure is one ``ArtifactError`` naming the field or the file."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise ArtifactError(f"model directory {str(path)!r} does not exist; give the -o DIR of `graftkit fit`")
    manifest_file = path / MANIFEST
    if not manifest_file.is_file():
        raise ArtifactError(f"{str(path)!r} holds no {MANIFEST}; it is not a graftkit model directory")
    try:
        parsed = json.loads(manifest_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{manifest_file} is corrupt ({exc}); restore it or refit the model") from None
    manifest = validate(parsed, manifest_file).as_dict()
    for name, digest in manifest["files"].items():
        file = path / name
        if not file.is_file():
            raise ArtifactError(f"{path}: {name} is missing; the model directory is incomplete, refit it")
        if _sha256(file) != digest:
            raise ArtifactError(f"{path}: {name} does not match its hash in {MANIFEST}; the file was changed or "
                                "damaged, refit the model")
    return manifest


def read_labels(path: Path, task) -> None:
    """``labels.json`` read back and compared with the task's label order: the file and the manifest must agree, or
    class ids would map to the wrong names."""
    try:
        labels = json.loads((path / LABELS).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path / LABELS} cannot be read ({exc}); restore it or refit the model") from None
    if labels != list(task.labels):
        raise ArtifactError(f"{path / LABELS} and {MANIFEST}'s 'task' give different labels or a different order "
                            f"({str(labels)[:60]} vs {str(list(task.labels))[:60]}); predictions would be named "
                            "wrongly: restore the model or refit it")


def restore_fitted_state(graft, path: Path, manifest: dict) -> None:
    """The head, task, calibration and records of the model in ``path`` onto ``graft`` (not the backbone)."""
    from safetensors.numpy import load_file

    from graftkit.tasks import task_from_dict
    from graftkit.tasks.heads import head_from_state

    graft.task_ = task_from_dict(manifest["task"], source=str(path / MANIFEST))
    read_labels(path, graft.task_)
    graft.adaptation_ = None  # a parameter-efficient model's adapter is put on by load_finetuned
    graft.head_ = head_from_state(load_file(str(path / HEAD)), manifest["head"])
    graft.training_ = manifest.get("training")
    graft.input_ = manifest["input"]
    graft.data_ = manifest["data"]
    graft.metrics_ = manifest["metrics"]
    graft.calibration_ = manifest.get("calibration")
    graft.timings_ = manifest.get("timings", {})
    graft.manifest_ = manifest
