"""The module the Trainer trains: a backbone (through its contract) plus a linear output layer sized by the task.

``forward`` pools with ``backbone.embed`` (so any backbone whose ``preprocess`` / ``embed`` are
differentiable trains the same way), standardises the pooled features with fixed statistics of the
pretrained features (as the linear probe does, so one head learning rate suits backbones whose features
are L2-normalised or large alike; folded into the exported head), applies the head, and returns the task's
loss (cross-entropy, binary cross-entropy, MSE on the standardised target, ...), plus the L2-SP penalty while
training. The outputs are ``z * target_scale + target_mean`` (the identity except for regression, whose layer
learns the standardised target; folded into the exported head as well). Frozen layer groups stay in eval mode even when the Trainer calls
``train()``, so their BatchNorm statistics (and dropout) stay those of the pretrained model; with
``freeze_batchnorm`` (the strategies' default) every BatchNorm layer does, trained or not: on a few hundred images
in batches of 16, running statistics re-estimated from a new domain drift away from the batch statistics the head
was trained on (EfficientNet-Lite0 fully fine-tuned on 450 CIFAR-10 images scored 0.22 test accuracy with them
moving, 0.61 with them frozen; the frozen probe scores 0.69).

``side_size`` > 0 widens the output layer by that many side features per row (the batch's ``side``, e.g. a
multi-input table's tabular columns: ``fusion/joint.py``): they are concatenated to the pooled features before the
standardisation, whose fixed statistics then cover both, so the exported head reads ``[pooled, side]`` raw.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from graftkit.errors import ConfigError
from graftkit.training.groups import LayerPlan
from graftkit.training.regularizers import L2SP


class GraftModel(nn.Module):
    # ``task.loss`` is a mean over the batch and ignores the Trainer's ``num_items_in_batch``: the Trainer must divide
    # it for gradient accumulation and must not multiply it by the process count under torchrun, which it would do
    # for a ``forward(**kwargs)`` (the Trainer's own switch, read before its signature check)
    accepts_loss_kwargs = False

    def __init__(self, backbone, task, plan: LayerPlan, *, l2_sp: float = 0.0, freeze_batchnorm: bool = False,
                 embed=None, side_size: int = 0):
        super().__init__()
        self.backbone = backbone.model  # registered: trained, checkpointed and wrapped by DDP with the head
        self.task = task
        self.side_size = side_size  # side features per row concatenated to the pooled ones (0: none)
        width = backbone.hidden_size + side_size
        self.head = nn.Linear(width, task.output_size)
        self.register_buffer("feature_mean", torch.zeros(width))
        self.register_buffer("feature_scale", torch.ones(width))
        self.register_buffer("target_mean", torch.zeros(task.output_size))
        self.register_buffer("target_scale", torch.ones(task.output_size))
        # pooled features (one per row), or per-token ones for a word task: the head reads the last axis either way
        self._embed = embed or backbone.embed
        self.plan = plan
        self.trainable_groups = len(plan)
        self.l2_sp = L2SP([p for group in plan.params for p in group], l2_sp) if l2_sp > 0 else None
        self.freeze_batchnorm = freeze_batchnorm  # BatchNorm always on its pretrained running statistics
        self.adaptation = None  # a parameter-efficient strategy's Adaptation (training/efficient.py)
        self._adaptation_modules: list[nn.Module] = []
        # auxiliary training losses on the standardised features (domain-adversarial: training/adversarial.py);
        # each is called as objective(model, features, batch) while training and returns a loss or None
        self.objectives = nn.ModuleList()

    def add_objective(self, objective: nn.Module) -> None:
        self.objectives.append(objective)

    @property
    def objective_parameters(self) -> list[nn.Parameter]:
        return list(self.objectives.parameters())

    def adapt(self, adaptation, modules: list[nn.Module]) -> None:
        """Train ``adaptation``'s parameters (whatever the layer groups do); ``modules`` follow ``train()``
        (LoRA dropout) while the pretrained layers around them stay in eval mode."""
        self.adaptation = adaptation
        self._adaptation_modules = modules
        self.set_trainable_groups(self.trainable_groups)

    @property
    def adaptation_parameters(self) -> list[nn.Parameter]:
        return self.adaptation.parameters if self.adaptation is not None else []

    def standardize_with(self, mean: np.ndarray, scale: np.ndarray) -> None:
        """Fix the feature standardisation (statistics of the pretrained features, then of the side features, on the
        training data)."""
        self.feature_mean.copy_(torch.as_tensor(mean, dtype=self.feature_mean.dtype))
        self.feature_scale.copy_(torch.as_tensor(scale, dtype=self.feature_scale.dtype))

    def scale_targets_with(self, mean: np.ndarray, scale: np.ndarray) -> None:
        """Fix the output scaling (the task's ``target_scaling`` of the training targets)."""
        self.target_mean.copy_(torch.as_tensor(mean, dtype=self.target_mean.dtype))
        self.target_scale.copy_(torch.as_tensor(scale, dtype=self.target_scale.dtype))

    def init_head(self, weight: np.ndarray, bias: np.ndarray) -> None:
        """Start from given head weights on standardised features (LP-FT: the linear probe's)."""
        with torch.no_grad():
            self.head.weight.copy_(torch.as_tensor(weight, dtype=self.head.weight.dtype))
            self.head.bias.copy_(torch.as_tensor(bias, dtype=self.head.bias.dtype))

    # -- freezing ---------------------------------------------------------------------------------
    def set_trainable_groups(self, n: int) -> None:
        """Train the head and the top ``n`` layer groups; freeze (and put in eval mode) everything else."""
        self.trainable_groups = n
        top = set(self.plan.top(n))
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        for index in top:
            for p in self.plan.params[index]:
                p.requires_grad_(True)
        for p in self.adaptation_parameters:
            p.requires_grad_(True)
        self.train(self.training)

    def frozen_modules(self) -> list[nn.Module]:
        top = set(self.plan.top(self.trainable_groups))
        return [m for i, modules in enumerate(self.plan.modules) if i not in top for m in modules]

    def train(self, mode: bool = True):
        super().train(mode)
        if mode:
            for module in self.frozen_modules():
                module.eval()
            for module in self._adaptation_modules:
                module.train()
            if self.freeze_batchnorm:  # Keras' transfer-learning advice: BatchNorm in inference mode while fine-tuning
                for module in self.backbone.modules():
                    if isinstance(module, nn.modules.batchnorm._BatchNorm):
                        module.eval()
        return self

    def export_head(self) -> tuple[np.ndarray, np.ndarray]:
        """``(weight, bias)`` on raw pooled features (then the raw side features) giving the outputs in target
        units: the feature standardisation and the target scaling folded into the linear layer."""
        weight = self.head.weight.detach().double().cpu() / self.feature_scale.double().cpu()
        bias = self.head.bias.detach().double().cpu() - weight @ self.feature_mean.double().cpu()
        scale, mean = self.target_scale.double().cpu(), self.target_mean.double().cpu()
        return (weight * scale[:, None]).float().numpy(), (bias * scale + mean).float().numpy()

    def freeze(self) -> None:
        """After training: nothing requires grad, everything in eval mode."""
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    # -- counting ---------------------------------------------------------------------------------
    def parameter_counts(self) -> dict:
        total = sum(p.numel() for p in self.parameters())
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return {"trainable": trainable, "total": total, "share": round(trainable / total, 6)}

    def penalty(self) -> torch.Tensor:
        """The L2-SP penalty now (zero when L2-SP is off)."""
        return self.l2_sp.penalty() if self.l2_sp is not None else torch.zeros((), device=self.head.weight.device)

    # -- forward ----------------------------------------------------------------------------------
    def standardized(self, inputs: dict, side: torch.Tensor | None = None) -> torch.Tensor:
        """The features the output layer reads: pooled (then the row's side features), standardised by the fixed
        statistics of the training data."""
        pooled = self._embed(inputs).to(self.head.weight.dtype)
        if self.side_size:
            if side is None:
                raise ConfigError(f"this model's output layer also reads {self.side_size} side features per row "
                                  "(a joint fusion model's tabular columns); pass them with the inputs")
            pooled = torch.cat([pooled, side.to(device=pooled.device, dtype=pooled.dtype)], dim=-1)
        return (pooled - self.feature_mean) / self.feature_scale

    def forward(self, inputs: dict, labels: torch.Tensor | None = None, side: torch.Tensor | None = None,
                **batch) -> SequenceClassifierOutput:
        features = self.standardized(inputs, side)
        z = self.head(features)
        loss = None
        if labels is not None:
            loss = self.task.loss(z, labels.to(z.device), self.target_mean, self.target_scale)
            if self.training and self.l2_sp is not None:
                loss = loss + self.l2_sp.penalty()
            if self.training:
                for objective in self.objectives:
                    extra = objective(self, features, batch)
                    if extra is not None:
                        loss = loss + extra
        return SequenceClassifierOutput(loss=loss, logits=z * self.target_scale + self.target_mean)
