"""An exponential moving average (EMA) of the network's weights, for evaluation and export.

Only what training changes is averaged: the parameters that take gradients and the BatchNorm statistics of the
modules in training mode. Frozen stages and the hand-model buffers never change, so they are read from the
network itself when the averaged weights are put together (:meth:`WeightAverage.state_dict`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class WeightAverage:
    """EMA of ``net``'s trained floating-point state, with the usual warm-up of the decay.

    After ``n`` updates the decay is ``min(decay, (1 + n) / (10 + n))``, so the first few hundred steps, whose
    weights are far from the later ones, fade out quickly.
    """

    def __init__(self, net: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        current = net.state_dict()
        self.keys = averaged_keys(net)
        self.averages = {k: current[k].detach().clone() for k in self.keys}

    def current_decay(self) -> float:
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        """Fold the network's present weights into the average (after an applied optimizer step)."""
        self.updates += 1
        current = net.state_dict()
        averages = [self.averages[k] for k in self.keys]
        torch._foreach_lerp_(averages, [current[k].detach() for k in self.keys], 1.0 - self.current_decay())

    def state_dict(self, net: nn.Module) -> dict[str, torch.Tensor]:
        """``net``'s full state_dict with the averaged entries in place of the present ones."""
        return merge_averages(net.state_dict(), self.averages)

    def to_checkpoint(self) -> dict[str, Any]:
        return {"decay": self.decay, "updates": self.updates,
                "state": {k: v.detach().cpu() for k, v in self.averages.items()}}

    def load_checkpoint(self, saved: dict[str, Any]) -> None:
        """Restore what :meth:`to_checkpoint` wrote (the same network, so the same keys)."""
        state = saved["state"]
        if set(state) != set(self.keys):
            missing, extra = sorted(set(self.keys) - set(state)), sorted(set(state) - set(self.keys))
            raise KeyError(
                f"the saved weight average does not fit: missing {missing[:4]}, unexpected {extra[:4]}"
            )
        for key in self.keys:
            self.averages[key].copy_(state[key])
        self.updates = int(saved["updates"])


def averaged_keys(net: nn.Module) -> list[str]:
    """State keys training changes: parameters with gradients, and the float buffers of BatchNorm modules
    that are in training mode (``net`` as it will train)."""
    keys = [name for name, p in net.named_parameters() if p.requires_grad]
    for prefix, module in net.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.training:
            keys += [f"{prefix}.{name}" for name, b in module.named_buffers(recurse=False)
                     if b is not None and b.is_floating_point()]
    return keys


def merge_averages(
    state: dict[str, torch.Tensor], averages: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """``state`` with ``averages`` in place of its entries (each in the entry's dtype)."""
    merged = dict(state)
    for key, value in averages.items():
        if key not in merged:
            raise KeyError(f"the weight average has a key the network lacks: {key}")
        merged[key] = value.to(merged[key].dtype)
    return merged


def averaged_state(checkpoint: dict[str, Any], state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` (a checkpoint's state_dict) with the checkpoint's EMA entries in place, when it has any."""
    ema = checkpoint.get("ema")
    if not isinstance(ema, dict) or not isinstance(ema.get("state"), dict):
        return state
    return merge_averages(state, ema["state"])
