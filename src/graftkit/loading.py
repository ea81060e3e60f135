"""``load_model``: a saved model directory back into a fitted ``Graft`` (the base verified first); ``graftkit.load``
calls it, or ``fusion.load_fusion`` for a directory holding ``fusion.json``."""

from __future__ import annotations

from pathlib import Path

from graftkit.artifacts import MANIFEST, read_manifest, restore_fitted_state
from graftkit.backbones.registry import recorded_settings
from graftkit.errors import ArtifactError, BackboneError
from graftkit.graft import Graft
from graftkit.strategies.base import strategy_from_dict


FITTED_RUNTIME = {"onnx": "auto", "onnx-int8": "onnx-int8"}  # the manifest's runtime -> what predicts with it


def load_model(path, *, device: str = "cpu", cache_dir=None, use_cache: bool = True, progress: bool = True,
               adapter_name: str = "default", extract_runtime: str | None = None):
    """Load a fitted model; verifies the head files and that the backbone weights are the ones fitted on.
    ``adapter_name``: the name a peft adapter (lora, ia3) gets on the base model (see ``load_adapters``).
    ``extract_runtime``: what embeds frozen features (default: as the model was fitted — ``auto`` where its
    manifest records onnx, so PyTorch takes over where onnxruntime cannot run; ``onnx-int8`` where it records
    that, since the head learnt int8 features; ``torch`` otherwise, and for manifests written before the runtime
    was recorded)."""
    path = Path(path).expanduser()
    manifest = read_manifest(path)  # schema, digest and file hashes verified
    backbone = manifest["backbone"]
    source = backbone["source"]
    try:
        strategy = strategy_from_dict(manifest["strategy"])
    except (KeyError, TypeError) as exc:
        raise ArtifactError(f"{path / MANIFEST}: the 'strategy' entry is damaged ({exc}); refit the model") from None
    graft = Graft(backbone=source["spec"], strategy=strategy.name, revision=source.get("revision"),
                  task=manifest["task"].get("kind"),
                  batch_size=manifest["hyperparameters"]["batch_size"], seed=manifest["seed"], device=device,
                  cache_dir=cache_dir, use_cache=use_cache, progress=progress,
                  backbone_options=recorded_settings(backbone.get("family"), backbone.get("settings", {})),
                  extract_runtime=extract_runtime or FITTED_RUNTIME.get(backbone.get("runtime"), "torch"))
    graft.backbone_ = graft.loaded_backbone()
    found = graft.backbone_.source.files
    if found != source["files"]:
        differ = sorted(n for n in set(found) | set(source["files"]) if found.get(n) != source["files"].get(n))
        raise BackboneError(f"backbone {source['spec']!r} on this machine ({graft.backbone_.source.path}) has other "
                            f"weights or processing files than the model in {path} was fitted with "
                            f"({', '.join(differ[:3])}); install the same version or refit")
    graft.strategy_ = strategy
    restore_fitted_state(graft, path, manifest)
    if manifest.get("training"):
        from graftkit.training.artifact import load_finetuned

        load_finetuned(graft, path, adapter_name=adapter_name)
    return graft
