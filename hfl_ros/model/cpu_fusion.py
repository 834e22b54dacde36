"""CPU inference fusion of a built network, ``fuse_for_cpu(net)``, in the manner of torchvision's fuse_model.

The network's modules compute the paper's conv -> BN -> activation step by step. ``fuse_for_cpu`` gives the
conv blocks the kernels of :mod:`hfl_ros.model.packed_conv` instead (BN folded into the conv weights, weights
pre-packed for oneDNN and cached per input size, LeakyReLU fused into the conv), which is how the Estimator
runs the network on the CPU. The results equal the unfused network's up to float rounding.

- **In place.** Every conv block changes its class to a subclass of its own (e.g. :class:`FusedBottleneck`)
  that only overrides ``forward``, as ``torch.nn.utils.parametrize`` does; the same network is returned.
  Modules, parameters, buffers, hooks and the state_dict stay what they were, so checkpoints save and load
  the same way, and the packed weights follow any later change of the weights (``load_state_dict``, an
  optimiser step): they are cached per tensor version.
- **Inference only.** The fused kernels run in eval mode, with autograd off, on CPU float32 without autocast.
  Anything else (training, a GPU, autocast) runs the modules' own computation, so a fused network can still
  be moved, trained or evaluated anywhere; it is simply no faster there.
- Fusing twice changes nothing more. There is no way back: fuse a ``copy.deepcopy`` to keep a plain network.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as nnf

from hfl_ros.model.backbone import LEAKY_SLOPE, BasicBlock, Bottleneck, Stem, StreamBackbone
from hfl_ros.model.hand_head import ConvBnAct, HandEncoder, PreActBottleneck, PreActResidual
from hfl_ros.model.object_head import LEAKY_SLOPE as OBJECT_LEAKY_SLOPE
from hfl_ros.model.object_head import ObjectRegressionHead
from hfl_ros.model.packed_conv import conv_bn_act, conv_bn_add, packing_works


def runs_fused(x: torch.Tensor, module: nn.Module) -> bool:
    """Whether a fused ``module`` uses its fused kernels on input ``x`` (CPU float32 inference)."""
    return (
        not module.training
        and not torch.is_grad_enabled()
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and not torch.is_autocast_enabled("cpu")
    )


class PackedConv2d(nn.Conv2d):
    """A conv that reference modules call as a module (FPN, hand encoder input), with packed weights."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if runs_fused(x, self):
            return conv_bn_act(x, self)
        return super().forward(x)


def _identity(x: torch.Tensor, downsample: nn.Module | None) -> torch.Tensor:
    return x if downsample is None else conv_bn_act(x, downsample[0], downsample[1])


class FusedBottleneck(Bottleneck):
    """Bottleneck: conv1/2 with BN and LeakyReLU fused, conv3 with BN, the identity add and LeakyReLU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not runs_fused(x, self):
            return super().forward(x)
        out = conv_bn_act(x, self.conv1, self.bn1, LEAKY_SLOPE)
        out = conv_bn_act(out, self.conv2, self.bn2, LEAKY_SLOPE)
        return conv_bn_add(out, self.conv3, self.bn3, _identity(x, self.downsample), LEAKY_SLOPE)


class FusedBasicBlock(BasicBlock):
    """BasicBlock: conv1 with BN and LeakyReLU fused, conv2 with BN, the identity add and LeakyReLU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not runs_fused(x, self):
            return super().forward(x)
        out = conv_bn_act(x, self.conv1, self.bn1, LEAKY_SLOPE)
        return conv_bn_add(out, self.conv2, self.bn2, _identity(x, self.downsample), LEAKY_SLOPE)


class FusedStem(Stem):
    """Stem: the 7×7 conv with BN and LeakyReLU fused, then the max-pool."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not runs_fused(x, self):
            return super().forward(x)
        return self[3](conv_bn_act(x, self[0], self[1], LEAKY_SLOPE))


class FusedStreamBackbone(StreamBackbone):
    """Keeps stage 4 channels-last on the CPU: with packed weights it runs fastest so (see backbone.py)."""

    def run_stage4(self, stage: nn.Module, c4: torch.Tensor) -> torch.Tensor:
        if runs_fused(c4, stage) and packing_works():
            return stage(c4)
        return super().run_stage4(stage, c4)


def _preact(x: torch.Tensor, bn_in: nn.BatchNorm2d, layers: tuple[nn.Module, ...]) -> torch.Tensor:
    """The pre-activation block with each inner BN folded into the conv before it."""
    conv1, bn2, conv2, bn3, conv3 = layers
    out = nnf.leaky_relu_(bn_in(x), LEAKY_SLOPE)
    out = conv_bn_act(out, conv1, bn2, LEAKY_SLOPE)
    out = conv_bn_act(out, conv2, bn3, LEAKY_SLOPE)
    return conv_bn_add(out, conv3, None, x)


class FusedPreActBottleneck(PreActBottleneck):
    """PreActBottleneck: each inner BN and LeakyReLU fused into the conv before it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not runs_fused(x, self):
            return super().forward(x)
        return _preact(x, self.bn1, (self.conv1, self.bn2, self.conv2, self.bn3, self.conv3))


class FusedPreActResidual(PreActResidual):
    """PreActResidual: each inner BN and LeakyReLU fused into the conv before it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not runs_fused(x, self):
            return super().forward(x)
        return _preact(x, self.bn, (self.conv1, self.bn1, self.conv2, self.bn2, self.conv3))


class FusedConvBnAct(ConvBnAct):
    """ConvBnAct as one fused conv."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not runs_fused(x, self):
            return super().forward(x)
        return conv_bn_act(x, self.block[0], self.block[1], LEAKY_SLOPE)


class FusedObjectRegressionHead(ObjectRegressionHead):
    """ObjectRegressionHead: each conv with its BN and LeakyReLU(0.1) fused."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not runs_fused(x, self):
            return super().forward(x)
        for k in range(1, 4):
            for j in (1, 2):
                conv, bn = getattr(self, f"conv{k}_{j}"), getattr(self, f"bn{k}_{j}")
                x = conv_bn_act(x, conv, bn, OBJECT_LEAKY_SLOPE)
        return conv_bn_act(x, self.out_conv)


#: Reference class -> its fused subclass (looked up by exact type, so fused modules are left alone).
FUSED_CLASSES: dict[type[nn.Module], type[nn.Module]] = {
    Bottleneck: FusedBottleneck,
    BasicBlock: FusedBasicBlock,
    Stem: FusedStem,
    StreamBackbone: FusedStreamBackbone,
    PreActBottleneck: FusedPreActBottleneck,
    PreActResidual: FusedPreActResidual,
    ConvBnAct: FusedConvBnAct,
    ObjectRegressionHead: FusedObjectRegressionHead,
}

#: The plain convs that a module calls as modules, by the module's class: they become PackedConv2d.
_PACKED_CONVS: dict[type[nn.Module], Callable[[str], bool]] = {
    StreamBackbone: lambda name: name.startswith(("toplayer_", "latlayer", "smooth3_")),
    HandEncoder: lambda name: name in ("heatmap_conv", "encoding_conv"),
}


def fuse_for_cpu(net: nn.Module) -> nn.Module:
    """Fuse the conv blocks of ``net`` (an HFLNet or any module holding its parts) for CPU inference, in
    place; returns ``net``. See the module docstring for what changes and what does not."""
    for module in list(net.modules()):
        packed = _PACKED_CONVS.get(type(module))
        if packed is not None:
            for name, child in module.named_children():
                if type(child) is nn.Conv2d and packed(name):
                    child.__class__ = PackedConv2d
        fused = FUSED_CLASSES.get(type(module))
        if fused is not None:
            module.__class__ = fused
    return net
