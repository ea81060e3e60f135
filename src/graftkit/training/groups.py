"""Layer groups, freezing and the optimiser's parameter groups.

The backbone contract lists its blocks input → output (``layer_groups()``). Only the groups that
actually feed the pooled features count: a probe forward/backward on one real batch finds them, so an
unused pooler (a BERT read by mean pooling) is neither "the top group" nor left dangling for DDP.
Parameters outside every listed group but on the feature path train with the top group.

Learning rates are discriminative (Howard & Ruder 2018, ULMFiT): the head at the strategy's
``learning_rate``, the backbone groups below it at ``group_learning_rate(depth)``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from torch import nn

logger = logging.getLogger(__name__)


@dataclass
class LayerPlan:
    """The backbone's trainable layer groups, input → output, each with its modules and parameters."""

    names: list[str]
    modules: list[list[nn.Module]]
    params: list[list[nn.Parameter]]
    unused: list[nn.Parameter] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.names)

    def top(self, n: int) -> range:
        """Indices of the top ``n`` groups."""
        return range(len(self) - n, len(self))

    def parameter_count(self, n: int) -> int:
        return sum(p.numel() for i in self.top(n) for p in self.params[i])


def _used_parameters(backbone, batch: dict) -> set[int]:
    """ids of the backbone parameters that receive a gradient from the pooled features."""
    model = backbone.model
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    was_training = model.training
    model.eval()
    try:
        for p in params:
            p.requires_grad_(True)
            p.grad = None
        with torch.enable_grad():
            backbone.embed(batch).float().sum().backward()
        return {id(p) for p in params if p.grad is not None}
    finally:
        for p, flag in zip(params, flags, strict=True):
            p.grad = None
            p.requires_grad_(flag)
        model.train(was_training)


def plan_layers(backbone, batch: dict) -> LayerPlan:
    """Group the backbone's parameters by ``layer_groups()``, keeping the groups on the feature path."""
    model = backbone.model
    module_names = {id(m): n or "model" for n, m in model.named_modules()}
    used = _used_parameters(backbone, batch)
    seen: set[int] = set()
    names, modules, params = [], [], []
    for module in backbone.layer_groups():
        own = [p for p in module.parameters() if id(p) not in seen]
        seen.update(id(p) for p in own)
        live = [p for p in own if id(p) in used]
        if live:
            names.append(module_names.get(id(module), type(module).__name__))
            modules.append([module])
            params.append(live)
        elif own:
            logger.info("layer group %s does not feed the pooled features; it stays frozen",
                        module_names.get(id(module), type(module).__name__))
    rest = [p for p in model.parameters() if id(p) not in seen]
    if not params:
        names, modules, params = ["model"], [[model]], [[p for p in rest if id(p) in used]]
        rest = []
    params[-1].extend(p for p in rest if id(p) in used)
    unused = [p for p in model.parameters() if id(p) not in used]
    return LayerPlan(names=names, modules=modules, params=params, unused=unused)


def no_decay(param: nn.Parameter) -> bool:
    """Biases and normalisation weights (1-d tensors) get no weight decay (the timm / BERT convention)."""
    return param.ndim <= 1


def optimizer_groups(head: nn.Module, plan: LayerPlan, strategy, adaptation: list[nn.Parameter] = (),
                     auxiliary: list[nn.Parameter] = ()) -> list[dict]:
    """AdamW parameter groups: the head first (so the logged learning rate is the head's), then each
    backbone group that ever trains, top first, at its discriminative learning rate, then the parameters a
    parameter-efficient strategy added (``adaptation``) at ``learning_rate × backbone_lr_ratio``, then an auxiliary
    objective's layers (``auxiliary``: the domain classifier) at the head's rate."""
    backbone_decay = 0.0 if strategy.l2_sp > 0 else strategy.weight_decay
    groups = []

    def add(name: str, params: list, lr: float, weight_decay: float) -> None:
        for suffix, chosen, decay in (("", [p for p in params if not no_decay(p)], weight_decay),
                                      (".no_decay", [p for p in params if no_decay(p)], 0.0)):
            if chosen:
                groups.append({"name": name + suffix, "params": chosen, "lr": lr, "weight_decay": decay})

    add("head", list(head.parameters()), strategy.learning_rate, strategy.weight_decay)
    for depth, index in enumerate(reversed(plan.top(strategy.groups_to_train(len(plan))))):
        add(f"backbone.{plan.names[index]}", plan.params[index], strategy.group_learning_rate(depth), backbone_decay)
    if adaptation:
        add(f"{strategy.name}", list(adaptation), strategy.learning_rate * strategy.backbone_lr_ratio, backbone_decay)
    if auxiliary:  # an auxiliary objective's own layers (the domain classifier) learn as the head does
        add("objectives", list(auxiliary), strategy.learning_rate, strategy.weight_decay)
    return groups


def describe_groups(groups: list[dict]) -> list[dict]:
    """The optimiser's groups as data for the manifest (no tensors; the peak learning rate of each)."""
    return [{"name": g["name"], "lr": g.get("initial_lr", g["lr"]), "weight_decay": g["weight_decay"],
             "parameters": sum(p.numel() for p in g["params"])} for g in groups]
