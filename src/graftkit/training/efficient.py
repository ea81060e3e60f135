"""Applying, saving, loading and merging the parameter-efficient strategies (``strategies/efficient.py``).

LoRA and IA3 go through ``peft``: ``get_peft_model`` injects the adapter layers into the backbone's own
model object in place, so the backbone contract (``embed``) runs through them unchanged, and
``PeftModel.save_pretrained`` writes ``adapter/`` (``adapter_config.json`` + ``adapter_model.safetensors``)
that plain ``PeftModel.from_pretrained(base, DIR/adapter)`` loads. Bottleneck adapters and BitFit write
``adapter.safetensors`` (the adapters' tensors, or the trained biases) under their names in the backbone.

Target modules default per backbone family (``DEFAULT_TARGETS``; peft's own table first for LoRA / IA3);
names are matched as peft matches them: the full dotted name or a suffix after a dot.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from graftkit.errors import ArtifactError, ConfigError, GraftkitError
from graftkit.strategies.efficient import split_names
from graftkit.training.bottleneck import Adapted, adapter_state, insert_adapters

logger = logging.getLogger(__name__)

PEFT_DIR = "adapter"
ADAPTER_FILE = "adapter.safetensors"
ADAPTABLE = (nn.Linear, nn.Conv2d, nn.Conv1d)

# family → (lora / ia3 targets, ia3 feed-forward targets, bottleneck-adapter targets). EfficientNet-Lite's
# k×k convolutions pad with a module of their own, which peft's Conv2d LoRA cannot reproduce: only its
# 1×1 (expand / project / head) convolutions are targets.
DEFAULT_TARGETS = {
    "bert": (["query", "value"], ["output.dense"], ["output.dense"]),
    "roberta": (["query", "value"], ["output.dense"], ["output.dense"]),
    "xlm-roberta": (["query", "value"], ["output.dense"], ["output.dense"]),
    "electra": (["query", "value"], ["output.dense"], ["output.dense"]),
    "mpnet": (["q", "v"], ["output.dense"], ["output.dense"]),
    "distilbert": (["q_lin", "v_lin"], ["lin2"], ["lin2"]),
    "vit": (["query", "value"], ["output.dense"], ["output.dense"]),
    "deit": (["query", "value"], ["output.dense"], ["output.dense"]),
    "beit": (["query", "value"], ["output.dense"], ["output.dense"]),
    "swin": (["query", "value"], ["output.dense"], ["output.dense"]),
    "dinov2": (["query", "value"], ["fc2"], ["fc2"]),
    "clip_vision_model": (["q_proj", "v_proj"], ["fc2"], ["fc2"]),
    "clip": (["q_proj", "v_proj"], ["fc2"], ["fc2"]),
    # the hf-clip family's towers (peft's own table has no CLIP / SigLIP entry; q_proj / v_proj as for CLIP)
    "clip_text_model": (["q_proj", "v_proj"], ["fc2"], ["fc2"]),
    "siglip_vision_model": (["q_proj", "v_proj"], ["fc2"], ["fc2"]),
    "siglip_text_model": (["q_proj", "v_proj"], ["fc2"], ["fc2"]),
    "convnext": (["pwconv1", "pwconv2"], ["pwconv2"], ["pwconv2"]),
    "wav2vec2": (["q_proj", "v_proj"], ["output_dense"], ["output_dense"]),
    "hubert": (["q_proj", "v_proj"], ["output_dense"], ["output_dense"]),
    "wavlm": (["q_proj", "v_proj"], ["output_dense"], ["output_dense"]),
    "data2vec-audio": (["q_proj", "v_proj"], ["output_dense"], ["output_dense"]),
    "whisper": (["q_proj", "v_proj"], ["fc2"], ["fc2"]),
    "efficientnet-lite": (["_expand_conv", "_project_conv", "_conv_head"], ["_project_conv"], ["_project_conv"]),
}
# ``output.dense`` also names the attention output projection in BERT-like blocks; the adapters and IA3's
# feed-forward scaling belong on the feed-forward one only.
EXCLUDE = ("attention.output.dense",)


def family(backbone) -> str:
    """The transformers ``model_type`` (the key of peft's tables), else the backbone contract's family."""
    return getattr(getattr(backbone.model, "config", None), "model_type", None) or backbone.family


def _matches(name: str, target: str) -> bool:
    return name == target or name.endswith("." + target)


def _layers(model: nn.Module) -> dict[str, nn.Module]:
    return {name: m for name, m in model.named_modules() if name and isinstance(m, ADAPTABLE)}


def resolve_targets(model: nn.Module, wanted: list[str], *, strategy: str, flag: str = "--target-modules") -> list[str]:
    """The full names of the adaptable layers ``wanted`` selects; a name that selects none fails listing
    the names this model has (the last name components of its Linear / Conv layers)."""
    layers = _layers(model)
    chosen, missing = [], []
    for target in wanted:
        hits = [n for n in layers if _matches(n, target) and not any(_matches(n, x) for x in EXCLUDE if x != target)]
        (chosen.extend(hits) if hits else missing.append(target))
    if missing:
        candidates = sorted({n.split(".")[-1] for n in layers} | {".".join(n.split(".")[-2:]) for n in layers})
        raise ConfigError(f"{strategy}: target module {missing[0]!r} matches no Linear / Conv layer of this backbone; "
                          f"candidates: {', '.join(candidates[:40])}{' …' if len(candidates) > 40 else ''} ({flag})")
    return sorted(set(chosen), key=list(layers).index)


def default_targets(backbone, strategy) -> tuple[list[str], list[str]]:
    """``(targets, feedforward targets)`` for ``strategy`` on this backbone's family."""
    kind = family(backbone)
    if strategy.uses_peft:
        from peft.utils.constants import (TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING,
                                          TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING,
                                          TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING)
        if strategy.name == "lora" and kind in TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING:
            return list(TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING[kind]), []
        if strategy.name == "ia3" and kind in TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING:
            return (list(TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING[kind]),
                    list(TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING.get(kind, [])))
    if kind not in DEFAULT_TARGETS:
        raise ConfigError(f"{strategy.name}: graftkit has no default target modules for backbone family {kind!r}; "
                          "name them with --target-modules (target_modules=...)")
    attention, feedforward, adapters = DEFAULT_TARGETS[kind]
    if strategy.name == "adapters":
        return adapters, []
    if strategy.name == "ia3":
        return sorted(set(attention) | set(feedforward), key=(attention + feedforward).index), feedforward
    return attention, []


@dataclass
class Adaptation:
    """What a parameter-efficient strategy added to a backbone: the trainable parameters and, for the peft
    strategies, the ``PeftModel`` wrapper that saves them (the backbone's model is changed in place)."""

    kind: str
    parameters: list[nn.Parameter]
    peft_model: object | None = None
    targets: list[str] = field(default_factory=list)

    def describe(self) -> dict:
        return {"kind": self.kind, "targets": self.targets,
                "trainable_parameters": int(sum(p.numel() for p in self.parameters))}


def _peft_config(strategy, targets: list[str], feedforward: list[str]):
    from peft import IA3Config, LoraConfig

    if strategy.name == "lora":
        return LoraConfig(r=strategy.rank, lora_alpha=strategy.alpha, lora_dropout=strategy.dropout,
                          target_modules=targets, bias="none")
    return IA3Config(target_modules=targets, feedforward_modules=feedforward)


def apply_adaptation(backbone, strategy) -> Adaptation:
    """Add ``strategy``'s parameters to ``backbone.model`` in place and return them (they require grad; every
    pretrained weight is frozen)."""
    model = backbone.model
    if strategy.name == "bitfit":
        biases = [p for name, p in model.named_parameters() if name.endswith("bias")]
        if not biases:
            raise ConfigError("bitfit: this backbone has no bias terms to train; use lora or adapters")
        for p in model.parameters():
            p.requires_grad_(False)
        for p in biases:
            p.requires_grad_(True)
        return Adaptation("bitfit", biases, targets=["*.bias"])
    wanted, feedforward = (strategy.targets(), split_feedforward(strategy)) if strategy.targets() else \
        default_targets(backbone, strategy)
    targets = resolve_targets(model, wanted, strategy=strategy.name)
    if strategy.name == "ia3":
        feedforward = resolve_targets(model, feedforward or [], strategy="ia3", flag="--feedforward-modules")
        stray = sorted(set(feedforward) - set(targets))
        if stray:
            raise ConfigError(f"ia3: feed-forward module {stray[0]!r} is not among the target modules; add it to "
                              "--target-modules or drop it from --feedforward-modules")
    for p in model.parameters():
        p.requires_grad_(False)
    if strategy.name == "adapters":
        params = insert_adapters(model, targets, strategy.bottleneck)
        return Adaptation("adapters", params, targets=targets)
    from peft import get_peft_model

    plain_pointwise_convolutions(model, targets, strategy.name)

    with warnings.catch_warnings():  # peft still asks transformers for is_gradient_checkpointing (deprecated in 5)
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        peft_model = get_peft_model(model, _peft_config(strategy, targets, feedforward))
    params = [p for p in model.parameters() if p.requires_grad]
    return Adaptation(strategy.name, params, peft_model=peft_model, targets=targets)


def split_feedforward(strategy) -> list[str]:
    return split_names(getattr(strategy, "feedforward_modules", None)) or []


def plain_pointwise_convolutions(model: nn.Module, names: list[str], strategy: str) -> None:
    """peft builds a LoRA convolution as ``type(base_layer)(...)``, which a Conv2d subclass with its own
    constructor (EfficientNet-Lite's same-padding convolution needs an image size) cannot take. A 1×1 stride-1
    convolution pads nothing, so such a layer is swapped, in place, for a plain ``nn.Conv2d`` holding the same
    weight and bias tensors: the same function and the same state-dict keys."""
    modules = dict(model.named_modules())
    for name in names:
        layer = modules.get(name)
        if not isinstance(layer, nn.Conv2d) or type(layer) is nn.Conv2d:
            continue
        if layer.kernel_size != (1, 1) or layer.stride != (1, 1):
            raise ConfigError(f"{strategy}: {name} is a {layer.kernel_size[0]}×{layer.kernel_size[1]} "
                              f"{type(layer).__name__}, which peft cannot wrap; target its 1×1 convolutions or "
                              "Linear layers (--target-modules)")
        plain = nn.Conv2d(layer.in_channels, layer.out_channels, 1, groups=layer.groups, bias=layer.bias is not None)
        plain.weight, plain.bias = layer.weight, layer.bias
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, plain)


def adaptation_modules(model: nn.Module) -> list[nn.Module]:
    """The modules an adaptation added (they follow ``train()`` while the pretrained ones stay in eval mode)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [m for m in model.modules() if isinstance(m, (BaseTunerLayer, Adapted))]


# -- artifacts ------------------------------------------------------------------------------------------
def save_adaptation(graft, staging: Path) -> list[str]:
    """Write only the adaptation (not the base model) into ``staging``; returns the files written."""
    from safetensors.torch import save_file

    adaptation: Adaptation = graft.adaptation_
    if adaptation.peft_model is not None:
        folder = staging / PEFT_DIR
        adaptation.peft_model.save_pretrained(str(folder), safe_serialization=True)
        return sorted(p.relative_to(staging).as_posix() for p in folder.rglob("*") if p.is_file())
    model = graft.backbone_.model
    if adaptation.kind == "bitfit":
        tensors = {name: p.detach().contiguous() for name, p in model.named_parameters() if name.endswith("bias")}
    else:
        tensors = adapter_state(model)
    save_file(tensors, str(staging / ADAPTER_FILE), metadata={"graftkit_strategy": adaptation.kind})
    return [ADAPTER_FILE]


def load_adaptation(graft, path: Path, *, adapter_name: str = "default") -> None:
    """Put the adaptation saved in ``path`` onto ``graft``'s pretrained backbone (verified by the caller)."""
    from safetensors.torch import load_file

    strategy = graft.strategy_
    model = graft.backbone_.model
    try:
        if strategy.uses_peft:
            from peft import PeftModel

            config = json.loads((path / PEFT_DIR / "adapter_config.json").read_text())
            targets = config.get("target_modules")  # peft saves them shortened to name suffixes
            targets = targets if isinstance(targets, list) else []
            plain_pointwise_convolutions(model, [n for n in _layers(model) if any(_matches(n, t) for t in targets)],
                                         strategy.name)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
                peft_model = PeftModel.from_pretrained(model, str(path / PEFT_DIR), adapter_name=adapter_name)
            graft.adaptation_ = Adaptation(strategy.name, [], peft_model=peft_model)
        else:
            tensors = load_file(str(path / ADAPTER_FILE))
            targets = sorted({name.rsplit(".", 2)[0] for name in tensors}) if strategy.name == "adapters" else []
            if strategy.name == "adapters":
                insert_adapters(model, targets, strategy.bottleneck)
            missing = sorted(set(tensors) - set(model.state_dict()))
            if missing:
                raise ArtifactError(f"{path}: {ADAPTER_FILE} names {missing[0]!r}, which backbone "
                                    f"{graft.backbone!r} does not have; the adapter belongs to another base model")
            model.load_state_dict(tensors, strict=False)
            graft.adaptation_ = Adaptation(strategy.name, [], targets=targets)
    except (RuntimeError, OSError, ValueError, KeyError) as exc:
        if isinstance(exc, GraftkitError):
            raise
        raise ArtifactError(f"{path}: the {strategy.name} adapter does not fit backbone {graft.backbone!r} "
                            f"({str(exc).splitlines()[0]}); it belongs to another base model, refit it") from None
    for p in model.parameters():
        p.requires_grad_(False)
    model.to(graft.backbone_.device).eval()


def merge_adaptation(graft) -> None:
    """Fold the adaptation into the backbone's weights, so that the model saves as a plain fine-tuned one."""
    adaptation: Adaptation | None = getattr(graft, "adaptation_", None)
    if adaptation is None:
        raise ConfigError("this model has no adapter to merge; it is already a standalone model")
    if adaptation.kind == "adapters":
        raise ConfigError("bottleneck adapters are non-linear (down → GELU → up) and cannot be folded into the "
                          "pretrained weights; serve the adapter artifact as it is, or refit with --strategy lora")
    if adaptation.peft_model is not None:
        merged = adaptation.peft_model.merge_and_unload()
        if merged is not graft.backbone_.model:  # peft merges in place; keep the contract's reference right
            graft.backbone_.model = merged
    graft.adaptation_ = None
    with torch.no_grad():
        graft.backbone_.model.eval()
