"""CPU inference kernels for the convolutions: the BatchNorm after a conv folded into its weights, the weights
kept pre-packed in oneDNN's layout, and the LeakyReLU fused into the same kernel.

``conv_bn_act`` / ``conv_bn_add`` compute conv -> BN -> activation (-> + other) in one call. That saves a pass
over every feature map and the weight re-layout that eager oneDNN convolutions redo at every call; the
results equal the eager modules up to float rounding. They take the ordinary modules (their parameters and
running statistics) and are meant for CPU float32 inference; :mod:`hfl_ros.model.cpu_fusion` decides where.

- Packed weights come from torch's oneDNN ops (``torch.ops.mkldnn._convolution_pointwise`` with
  ``torch._C._nn.mkldnn_reorder_conv2d_weight``, the kernels TorchInductor's CPU backend uses). They are
  checked against the eager result once per process; if the ops are missing or disagree, the kernels fall
  back to eager convolutions with folded weights.
- oneDNN picks the packed layout for an input size, and a layout packed for another spatial size can be many
  times slower, so packed weights are cached per conv and per input (channels, height, width).
- Caches are rebuilt whenever a parameter or running statistic changes (tensor version counters), e.g. after
  an optimiser step or ``load_state_dict``. They hold one extra copy of the conv weights (~160 MB for the
  official network).
"""

from __future__ import annotations

import weakref
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as nnf

_packing_works: bool | None = None
_MAX_SHAPES = 4  # packed variants kept per conv


class _Folded(NamedTuple):
    key: tuple
    weight: torch.Tensor  # dense, BN folded in
    bias: torch.Tensor


class _Packed(NamedTuple):
    key: tuple
    shapes: dict[tuple[int, int, int], torch.Tensor]  # input (C, H, W) -> oneDNN-packed weight
    bias: torch.Tensor


_folded_cache: weakref.WeakKeyDictionary[nn.Conv2d, _Folded] = weakref.WeakKeyDictionary()
_packed_cache: weakref.WeakKeyDictionary[nn.Conv2d, _Packed] = weakref.WeakKeyDictionary()


def _state_key(conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> tuple:
    tensors = [conv.weight, conv.bias]
    if bn is not None:
        tensors += [bn.weight, bn.bias, bn.running_mean, bn.running_var]
    key = tuple((t.data_ptr(), _version(t)) if t is not None else None for t in tensors)
    return (*key, bn.eps if bn is not None else None)


def _version(t: torch.Tensor) -> int:
    try:
        return t._version
    except (
        RuntimeError
    ):  # inference tensors have no version counter (and cannot change outside inference mode)
        return -1


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> tuple[torch.Tensor, torch.Tensor]:
    weight = conv.weight.detach()
    bias = conv.bias.detach() if conv.bias is not None else weight.new_zeros(conv.out_channels)
    if bn is not None:
        scale = torch.rsqrt(bn.running_var + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight.detach()
        shift = bn.bias.detach() if bn.bias is not None else torch.zeros_like(scale)
        weight = weight * scale[:, None, None, None]
        bias = (bias - bn.running_mean) * scale + shift
    return weight.contiguous(), bias.contiguous()


def _folded(conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> _Folded:
    key = _state_key(conv, bn)
    entry = _folded_cache.get(conv)
    if entry is None or entry.key != key:
        entry = _Folded(key, *_fold(conv, bn))
        _folded_cache[conv] = entry
    return entry


def _conv_args(conv: nn.Conv2d) -> tuple:
    return list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups


def _packed_weight(
    conv: nn.Conv2d, bn: nn.BatchNorm2d | None, x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    key = _state_key(conv, bn)
    entry = _packed_cache.get(conv)
    if entry is None or entry.key != key:
        entry = _Packed(key, {}, _fold(conv, bn)[1])
        _packed_cache[conv] = entry
    shape = (x.shape[1], x.shape[2], x.shape[3])
    weight = entry.shapes.get(shape)
    if weight is None:
        dense = _fold(conv, bn)[0]
        size_hint = [x.shape[0], *shape]
        weight = torch._C._nn.mkldnn_reorder_conv2d_weight(dense.to_mkldnn(), *_conv_args(conv), size_hint)
        if len(entry.shapes) >= _MAX_SHAPES:
            entry.shapes.pop(next(iter(entry.shapes)))
        entry.shapes[shape] = weight
    return weight, entry.bias


def _packed_conv(x: torch.Tensor, conv: nn.Conv2d, bn: nn.BatchNorm2d | None, slope: float | None):
    weight, bias = _packed_weight(conv, bn, x)
    attr, scalars = ("none", []) if slope is None else ("leaky_relu", [slope])
    return torch.ops.mkldnn._convolution_pointwise(x, weight, bias, *_conv_args(conv), attr, scalars, None)


def _check_packing() -> bool:
    """The packed oneDNN kernels exist and reproduce conv -> BN -> LeakyReLU on a small example."""
    try:
        if not torch.backends.mkldnn.is_available():
            return False
        gen = torch.Generator().manual_seed(0)
        conv = nn.Conv2d(8, 16, 3, padding=1)
        bn = nn.BatchNorm2d(16).eval()
        with torch.inference_mode():
            bn.running_mean.uniform_(-1, 1, generator=gen)
            bn.running_var.uniform_(0.5, 2, generator=gen)
            x = torch.rand(2, 8, 5, 7, generator=gen)
            expected = nnf.leaky_relu(bn(conv(x)), 0.01)
            result = _packed_conv(x, conv, bn, 0.01)
        _packed_cache.pop(conv, None)
        return bool(result.shape == expected.shape and torch.allclose(result, expected, atol=1e-5))
    except (AttributeError, RuntimeError, NotImplementedError, TypeError):
        return False


def packing_works() -> bool:
    """Whether this torch build's packed oneDNN convolution works (checked once per process)."""
    global _packing_works
    if _packing_works is None:
        _packing_works = _check_packing()
    return _packing_works


def conv_bn_act(
    x: torch.Tensor, conv: nn.Conv2d, bn: nn.BatchNorm2d | None = None, slope: float | None = None
) -> torch.Tensor:
    """leaky_relu(bn(conv(x)), slope) (no activation if ``slope`` is None, no BN if None)."""
    if packing_works():
        return _packed_conv(x, conv, bn, slope)
    folded = _folded(conv, bn)
    out = nnf.conv2d(x, folded.weight, folded.bias, conv.stride, conv.padding, conv.dilation, conv.groups)
    return out if slope is None else nnf.leaky_relu_(out, slope)


def conv_bn_add(
    x: torch.Tensor,
    conv: nn.Conv2d,
    bn: nn.BatchNorm2d | None,
    other: torch.Tensor,
    slope: float | None = None,
) -> torch.Tensor:
    """bn(conv(x)) + other (then leaky_relu with ``slope`` if given); ``other`` is not modified."""
    out = conv_bn_act(x, conv, bn).add_(other)
    return out if slope is None else nnf.leaky_relu_(out, slope)
