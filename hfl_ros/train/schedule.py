"""Learning-rate schedules and parameter groups of the trainer.

``optim.schedule: step`` is the paper's StepLR, stepped once an epoch. ``cosine`` (not in the paper) follows
half a cosine from the peak LR to ``optim.min_lr_factor`` times it over the whole run, stepped every optimizer
step; ``optim.warmup_steps`` ramps either one up. ``optim.trunk_lr_factor`` scales the LR of the trunk stages
(ImageNet-initialised) against the randomly initialised FPN and heads.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

SCHEDULES = ("step", "cosine")


def trunk_parameter_names(net: nn.Module) -> set[str]:
    """Names of the trunk stages' parameters (``base_net.layer*``), those ImageNet weights initialise."""
    return {name for name, _ in net.named_parameters() if name.startswith("base_net.layer")}


def parameter_groups(net: nn.Module, lr: float, trunk_lr_factor: float) -> list[dict]:
    """Adam parameter groups: the heads (and FPN) at ``lr``, the trunk at ``lr * trunk_lr_factor``; one group
    when the factor is 1 (the paper's single group, so older optimizer states still load)."""
    trainable = [(n, p) for n, p in net.named_parameters() if p.requires_grad]
    if trunk_lr_factor == 1.0:
        return [{"params": [p for _, p in trainable], "lr": lr}]
    trunk = trunk_parameter_names(net)
    heads = [p for n, p in trainable if n not in trunk]
    trunk_params = [p for n, p in trainable if n in trunk]
    groups = [{"params": heads, "lr": lr, "name": "heads"}]
    if trunk_params:
        groups.append({"params": trunk_params, "lr": lr * trunk_lr_factor, "name": "trunk"})
    return groups


def cosine_factor(total_steps: int, min_factor: float) -> Callable[[int], float]:
    """LR multiplier after ``step`` optimizer steps: 1 at 0, ``min_factor`` at ``total_steps`` and after."""
    total = max(1, total_steps)

    def factor(step: int) -> float:
        progress = min(step, total) / total
        return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def make_scheduler(optimizer: torch.optim.Optimizer, schedule: str, *, lr_step: int, lr_gamma: float,
                   total_steps: int, min_lr_factor: float) -> torch.optim.lr_scheduler.LRScheduler:
    """StepLR (epochs) for ``step``; a per-step LambdaLR for ``cosine``."""
    if schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=lr_step, gamma=lr_gamma)
    if schedule == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_factor(total_steps, min_lr_factor))
    raise ValueError(f"unknown schedule {schedule!r}; expected one of {SCHEDULES}")
