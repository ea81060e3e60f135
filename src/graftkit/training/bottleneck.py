"""Bottleneck adapters (Houlsby et al. 2019; Pfeiffer et al. 2021 placement), wrapped around chosen layers.

``Adapted(layer)`` returns ``y + up(gelu(down(y)))`` with ``y = layer(x)``: a residual bottleneck on the
layer's output. ``up`` starts at zero, so an adapted model computes exactly the pretrained function until
training moves it. Linear layers get Linear projections over the last dimension; Conv2d layers get 1×1
convolutions over channels (the same bottleneck, per pixel). The wrapped layer keeps its own parameters
under ``layer.``, so the pretrained state dict maps onto the adapted model with that one prefix.
"""

from __future__ import annotations

import torch
from torch import nn

ADAPTER_PREFIX = "adapter_"  # parameters named like this are the adapter's own (saved in the artifact)


class Adapted(nn.Module):
    def __init__(self, layer: nn.Module, bottleneck: int):
        super().__init__()
        self.layer = layer
        if isinstance(layer, nn.Conv2d):
            channels = layer.out_channels
            self.adapter_down = nn.Conv2d(channels, bottleneck, kernel_size=1)
            self.adapter_up = nn.Conv2d(bottleneck, channels, kernel_size=1)
        elif isinstance(layer, nn.Linear):
            channels = layer.out_features
            self.adapter_down = nn.Linear(channels, bottleneck)
            self.adapter_up = nn.Linear(bottleneck, channels)
        else:
            raise TypeError(f"bottleneck adapters wrap Linear or Conv2d layers, not {type(layer).__name__}")
        nn.init.normal_(self.adapter_down.weight, std=1e-2)
        nn.init.zeros_(self.adapter_down.bias)
        nn.init.zeros_(self.adapter_up.weight)
        nn.init.zeros_(self.adapter_up.bias)

    def forward(self, *args, **kwargs) -> torch.Tensor:
        y = self.layer(*args, **kwargs)
        return y + self.adapter_up(nn.functional.gelu(self.adapter_down(y)))


def insert_adapters(model: nn.Module, names: list[str], bottleneck: int) -> list[nn.Parameter]:
    """Wrap each named submodule of ``model`` in place; returns the new (trainable) parameters."""
    new = []
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        adapted = Adapted(getattr(parent, child), bottleneck)
        first = next(adapted.layer.parameters())
        adapted.adapter_down.to(device=first.device, dtype=first.dtype)
        adapted.adapter_up.to(device=first.device, dtype=first.dtype)
        setattr(parent, child, adapted)
        new.extend(p for n, p in adapted.named_parameters() if n.startswith(ADAPTER_PREFIX))
    return new


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapters' own tensors, by their name in ``model``."""
    return {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()
            if name.split(".")[-2].startswith(ADAPTER_PREFIX)}
