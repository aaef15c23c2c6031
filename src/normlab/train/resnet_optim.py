"""The optimizer and learning-rate schedule of a ResNet run (He et al. 2016, section 4.2, over the
study's budget): SGD with momentum, stepped per batch along a cosine or step schedule."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable

import torch
from torch import nn

if TYPE_CHECKING:  # (normlab.train.resnet imports this module)
    from normlab.train.resnet import ResNetConfig


def build_optimizer(cfg: ResNetConfig, model: nn.Module) -> torch.optim.SGD:
    """SGD with momentum; BIN's gates get no weight decay and ``bin_gate_lr_mult`` times the lr."""
    from normlab.norms import gate_parameters

    gate_ids = {id(p) for p in gate_parameters(model)}
    gates = [p for p in model.parameters() if id(p) in gate_ids]
    others = [p for p in model.parameters() if id(p) not in gate_ids]
    groups = [{"params": others, "weight_decay": cfg.weight_decay, "lr": cfg.effective_lr}]
    if gates:
        groups.append({"params": gates, "weight_decay": 0.0, "lr": cfg.effective_lr * cfg.bin_gate_lr_mult})
    return torch.optim.SGD(groups, lr=cfg.effective_lr, momentum=cfg.momentum)


def lr_factor(cfg: ResNetConfig, steps_per_epoch: int) -> Callable[[int], float]:
    """The multiplier of the peak lr before optimizer step ``step`` (0-based), stepped per batch."""
    total = cfg.epochs * steps_per_epoch
    warm = int(round(cfg.warmup_epochs * steps_per_epoch))
    milestones = [int(cfg.epochs * f) * steps_per_epoch for f in (0.5, 0.75)]

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if cfg.schedule == "cosine":
            progress = (step - warm) / max(1, total - warm)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return 0.1 ** sum(step >= m for m in milestones)

    return factor
