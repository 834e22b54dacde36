"""CPU inference fast path: each convolution with the BatchNorm after it folded into its weights, and the
activation and residual add applied in place.

The modules keep their ordinary parameters (state_dict, training and GPU runs are untouched). In eval mode,
with autograd off, on CPU float32, they call ``conv_bn_act`` / ``conv_bn_add`` instead of conv -> BN ->
activation, which saves one pass over every feature map. The results equal the eager modules up to float
rounding (the tests compare both). Folded weights are cached per conv and rebuilt whenever a parameter or
running statistic changes (tensor version counters), e.g. after an optimiser step or ``load_state_dict``.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as nnf

_enabled = True


class _Folded(NamedTuple):
    key: tuple
    weight: torch.Tensor
    bias: torch.Tensor


_cache: weakref.WeakKeyDictionary[nn.Conv2d, _Folded] = weakref.WeakKeyDictionary()


def set_enabled(enabled: bool) -> None:
    """Switch the fast path on or off for the whole process (on by default)."""
    global _enabled
    _enabled = enabled


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Run the plain eager modules inside this block (reference computations, benchmarks)."""
    previous = _enabled
    set_enabled(False)
    try:
        yield
    finally:
        set_enabled(previous)


def active(x: torch.Tensor, module: nn.Module) -> bool:
    """Use the fast path for ``module`` on input ``x``?"""
    return (
        _enabled
        and not module.training
        and not torch.is_grad_enabled()
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and not torch.is_autocast_enabled("cpu")
    )


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d | None, key: tuple) -> _Folded:
    weight = conv.weight.detach()
    bias = conv.bias.detach() if conv.bias is not None else weight.new_zeros(conv.out_channels)
    if bn is not None:
        scale = torch.rsqrt(bn.running_var + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight.detach()
        shift = bn.bias.detach() if bn.bias is not None else torch.zeros_like(scale)
        weight = weight * scale[:, None, None, None]
        bias = (bias - bn.running_mean) * scale + shift
    return _Folded(key, weight.contiguous(), bias.contiguous())


def _folded(conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> _Folded:
    tensors = [conv.weight, conv.bias]
    if bn is not None:
        tensors += [bn.weight, bn.bias, bn.running_mean, bn.running_var]
    key = tuple((t.data_ptr(), t._version) if t is not None else None for t in tensors)
    key += (bn.eps if bn is not None else None,)
    entry = _cache.get(conv)
    if entry is None or entry.key != key:
        entry = _fold(conv, bn, key)
        _cache[conv] = entry
    return entry


def _conv(x: torch.Tensor, conv: nn.Conv2d, bn: nn.BatchNorm2d | None, padding) -> torch.Tensor:
    f = _folded(conv, bn)
    pad = conv.padding if padding is None else padding
    return nnf.conv2d(x, f.weight, f.bias, conv.stride, pad, conv.dilation, conv.groups)


def conv_bn_act(
    x: torch.Tensor,
    conv: nn.Conv2d,
    bn: nn.BatchNorm2d | None = None,
    slope: float | None = None,
    padding: tuple[int, int] | None = None,
) -> torch.Tensor:
    """leaky_relu(bn(conv(x)), slope) (no activation if ``slope`` is None, no BN if None)."""
    out = _conv(x, conv, bn, padding)
    return out if slope is None else nnf.leaky_relu_(out, slope)


def conv_bn_add(
    x: torch.Tensor,
    conv: nn.Conv2d,
    bn: nn.BatchNorm2d | None,
    other: torch.Tensor,
    slope: float | None = None,
) -> torch.Tensor:
    """bn(conv(x)) + other (then leaky_relu with ``slope`` if given); ``other`` is not modified."""
    out = _conv(x, conv, bn, None).add_(other)
    return out if slope is None else nnf.leaky_relu_(out, slope)
