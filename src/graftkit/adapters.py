"""Many tasks on one base model: several fitted peft adapters (lora or ia3) loaded on one shared backbone.

``load_adapters({"intent": DIR1, "sentiment": DIR2})`` loads the base once (verifying its hashes), then
each adapter with ``PeftModel.load_adapter`` under its name; ``predict(name, data)`` activates the named
adapter (``set_adapter``) and runs that task's head, without reloading anything. Every artifact must name
the same base model (spec, weight hashes and preprocessing settings), or loading fails saying which.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from graftkit.artifacts import read_manifest, restore_fitted_state
from graftkit.loading import load_model
from graftkit.errors import ArtifactError, ConfigError


def tensor_bytes(module: torch.nn.Module) -> int:
    """Bytes of the distinct tensors (parameters and buffers) a module holds: what it costs in memory."""
    seen, total = set(), 0
    for tensor in [*module.parameters(), *module.buffers()]:
        key = (tensor.untyped_storage().data_ptr(), tensor.dtype)
        if key not in seen:
            seen.add(key)
            total += tensor.untyped_storage().nbytes()
    return total


def _named(models) -> dict[str, Path]:
    if isinstance(models, dict):
        named = {str(name): Path(path).expanduser() for name, path in models.items()}
    else:
        named = {}
        for path in map(lambda p: Path(p).expanduser(), models):
            if path.name in named:
                raise ConfigError(f"two model directories are both named {path.name!r}; pass a dict of names to "
                                  "directories to tell them apart")
            named[path.name] = path
    if not named:
        raise ConfigError("load_adapters needs at least one model directory")
    return named


def base_identity(manifest: dict) -> tuple:
    """What must match for two artifacts to share one loaded base: the spec, weight hashes and settings."""
    backbone = manifest["backbone"]
    return backbone["source"]["spec"], backbone["source"]["files"], backbone.get("settings", {})


class AdapterSet:
    """Fitted adapters sharing one base backbone; each name answers with its own adapter and head."""

    def __init__(self, base, members: dict, peft_model):
        self._base = base
        self._members = members
        self._peft = peft_model

    @property
    def names(self) -> list[str]:
        return list(self._members)

    @property
    def backbone(self):
        return self._base.backbone_

    def model(self, name: str):
        """The named task as a fitted ``Graft`` (its adapter is activated whenever it predicts through here)."""
        if name not in self._members:
            raise ConfigError(f"no adapter named {name!r}; loaded: {', '.join(self._members)}")
        self._peft.set_adapter(name)
        for p in self._peft.parameters():  # set_adapter marks the adapter trainable; this is inference only
            p.requires_grad_(False)
        return self._members[name]

    def predict(self, name: str, data) -> list[str]:
        return self.model(name).predict(data)

    def predict_proba(self, name: str, data):
        return self.model(name).predict_proba(data)

    def evaluate(self, name: str, data, **options) -> dict:
        return self.model(name).evaluate(data, **options)

    def memory_bytes(self) -> int:
        """Bytes of the shared backbone with every adapter in it."""
        return tensor_bytes(self.backbone.model)


def load_adapters(models, *, device: str = "cpu", progress: bool = True) -> AdapterSet:
    """Load the adapters in ``models`` (a dict name → model directory, or a list of directories named by
    their folder) onto one base model."""
    named = _named(models)
    first_name, first_path = next(iter(named.items()))
    manifests = {name: read_manifest(path) for name, path in named.items()}  # verifies every file's hash first
    for name, manifest in manifests.items():
        kind = manifest["strategy"]["name"]
        if kind not in ("lora", "ia3"):
            raise ConfigError(f"{named[name]}: a {kind} model cannot share a base with others; only lora and ia3 "
                              "adapters (saved through peft) load side by side")
        if kind != manifests[first_name]["strategy"]["name"]:
            raise ConfigError(f"{named[name]} is a {kind} adapter but {first_path} is "
                              f"{manifests[first_name]['strategy']['name']}; load adapters of one kind together")
        if base_identity(manifest) != base_identity(manifests[first_name]):
            spec = manifest["backbone"]["source"]["spec"]
            raise ArtifactError(f"{named[name]} was fitted on base {spec!r} with other weights or settings than "
                                f"{first_path} ({manifests[first_name]['backbone']['source']['spec']!r}); adapters "
                                "share one base model only when they were fitted on the same one")
    base = load_model(first_path, device=device, progress=progress, adapter_name=first_name)
    peft_model = base.adaptation_.peft_model
    members = {first_name: base}
    for name, path in list(named.items())[1:]:
        member = _member(base, path, manifests[name])
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            try:
                peft_model.load_adapter(str(path / "adapter"), adapter_name=name)
            except (RuntimeError, ValueError, OSError, KeyError) as exc:
                raise ArtifactError(f"{path}: its adapter does not fit the shared base "
                                    f"({str(exc).splitlines()[0]}); refit it on the same base model") from None
        members[name] = member
    for p in peft_model.parameters():
        p.requires_grad_(False)
    peft_model.eval()
    return AdapterSet(base, members, peft_model)


def _member(base, path: Path, manifest: dict):
    """A fitted ``Graft`` for one more adapter, sharing ``base``'s backbone object."""
    from graftkit.strategies.base import strategy_from_dict

    member = base.clone(strategy=manifest["strategy"]["name"], batch_size=manifest["hyperparameters"]["batch_size"],
                        seed=manifest["seed"], task=manifest["task"]["kind"])
    member.backbone_ = base.backbone_
    member.strategy_ = strategy_from_dict(manifest["strategy"])
    restore_fitted_state(member, path, manifest)
    member.adaptation_ = base.adaptation_
    member.finetuned_ = True  # features come from the adapted backbone, never from the pretrained cache
    return member
