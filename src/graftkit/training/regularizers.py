"""L2-SP: regularise fine-tuning toward the pretrained starting point.

Li, Grandvalet & Davoine 2018, "Explicit Inductive Bias for Transfer Learning with Convolutional
Networks" (ICML): instead of weight decay toward zero, penalise ``alpha / 2 · ||w − w⁰||²`` over the
pretrained weights ``w⁰`` of the backbone, which limits catastrophic forgetting on small data sets. The
paper's ``beta`` term on the new head is plain weight decay (the strategy's ``weight_decay``).
"""

from __future__ import annotations

import torch
from torch import nn


class L2SP:
    """The penalty over a fixed set of parameters, measured against a copy taken at construction.

    Build it before any checkpoint is loaded, so that the reference is the pretrained weights and a
    resumed run regularises toward the same point as the uninterrupted one. The reference is a plain
    list, not module buffers: it is neither checkpointed nor broadcast by DDP.
    """

    def __init__(self, params: list[nn.Parameter], alpha: float):
        self.alpha = float(alpha)
        self.pairs = [(p, p.detach().clone()) for p in params]

    def penalty(self) -> torch.Tensor:
        terms = []
        for i, (param, reference) in enumerate(self.pairs):
            if not param.requires_grad:
                continue
            if reference.device != param.device:
                reference = reference.to(param.device)
                self.pairs[i] = (param, reference)
            terms.append((param - reference).pow(2).sum())
        if not terms:
            device = self.pairs[0][0].device if self.pairs else "cpu"
            return torch.zeros((), device=device)
        return 0.5 * self.alpha * torch.stack(terms).sum()
