"""Trunk stages (ResNet, or EfficientNet-Lite from hfl_ros.model.efficientnet_lite) and the two-stream FPN of
HFL-Net (spec §2).

The official network ("harmonious") shares the stem, stage 1 and stage 4 between the hand and the object
stream and duplicates stages 2 and 3. Two ablation layouts use the same code: "single" (one stream for both)
and "double" (two complete trunks). Every activation of the trunk is a LeakyReLU(0.01).

Module names follow the official checkpoint: ``layer0_h`` (stem), ``layer{1..4}_{h,o}`` (each stage wrapped in
one extra Sequential, so torchvision's ``layer2.3.conv1`` becomes ``layer2_h.0.3.conv1``), ``toplayer_s``,
``latlayer{1,2,3}_s`` and ``smooth3_s``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as nnf

from hfl_ros.errors import AssetError
from hfl_ros.model.efficientnet_lite import LITE_TRUNKS, LiteStem, imagenet_key, make_lite_layer

LEAKY_SLOPE = 0.01

VARIANTS = ("harmonious", "single", "double")


@dataclass(frozen=True)
class TrunkSpec:
    """A torchvision ResNet layout: block type, blocks per stage and the output channels of C2..C5."""

    bottleneck: bool
    blocks: tuple[int, int, int, int]

    @property
    def channels(self) -> tuple[int, int, int, int]:
        expansion = 4 if self.bottleneck else 1
        return tuple(64 * 2**i * expansion for i in range(4))  # type: ignore[return-value]


TRUNKS: dict[str, TrunkSpec] = {
    "resnet18": TrunkSpec(bottleneck=False, blocks=(2, 2, 2, 2)),
    "resnet34": TrunkSpec(bottleneck=False, blocks=(3, 4, 6, 3)),
    "resnet50": TrunkSpec(bottleneck=True, blocks=(3, 4, 6, 3)),
}

#: Every trunk name: the ResNets (the paper's is resnet50) and the ImageNet-pretrained EfficientNet-Lites.
ALL_TRUNKS = (*TRUNKS, *LITE_TRUNKS)

# Which stages the object stream owns (the others are run with the hand stream's modules).
_OBJECT_STAGES = {"harmonious": (2, 3), "double": (0, 1, 2, 3, 4), "single": ()}


def _leaky() -> nn.LeakyReLU:
    return nn.LeakyReLU(LEAKY_SLOPE, inplace=True)


class Bottleneck(nn.Module):
    """torchvision's ResNet-50 block (stride on the 3×3 conv) with LeakyReLU activations."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        width = planes
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = _leaky()
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out.add_(identity))


class BasicBlock(nn.Module):
    """torchvision's ResNet-18/34 block with LeakyReLU activations."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = _leaky()
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out.add_(identity))


# Memory formats, as measured on CPU (oneDNN, 1 thread): the stem conv runs 3× faster channels-last and the
# FPN's bilinear upsampling 40× faster, while stage 4 of these modules is 1.8× faster in NCHW (with the packed
# weights of hfl_ros.model.cpu_fusion every stage is faster channels-last, and its backbone keeps stage 4 so).
# So on the CPU all is channels-last but stage 4. These are CPU measurements: on other devices the tensors
# keep the layout they come in (NCHW, like the weights), which is what cuDNN is tuned for here.
_CHANNELS_LAST = torch.channels_last


def _cpu_channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=_CHANNELS_LAST) if x.device.type == "cpu" else x


def _stem(stem: nn.Module, images: torch.Tensor) -> torch.Tensor:
    return stem(_cpu_channels_last(images))


class Stem(nn.Sequential):
    """conv 7×7/2 (no bias), BN, LeakyReLU, max-pool 3×3/2: ``layer0`` (keys ``.0`` and ``.1``)."""

    def __init__(self):
        super().__init__(
            nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(64),
            _leaky(),
            nn.MaxPool2d(3, stride=2, padding=1),
        )


def make_stage(spec: TrunkSpec, index: int) -> nn.Sequential:
    """ResNet stage ``index`` (1..4), wrapped in one extra Sequential as the official checkpoint names it."""
    block = Bottleneck if spec.bottleneck else BasicBlock
    planes = 64 * 2 ** (index - 1)
    inplanes = 64 if index == 1 else spec.channels[index - 2]
    stride = 1 if index == 1 else 2
    downsample = None
    if stride != 1 or inplanes != planes * block.expansion:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes * block.expansion, 1, stride=stride, bias=False),
            nn.BatchNorm2d(planes * block.expansion),
        )
    blocks = [block(inplanes, planes, stride, downsample)]
    blocks += [block(planes * block.expansion, planes) for _ in range(1, spec.blocks[index - 1])]
    return nn.Sequential(nn.Sequential(*blocks))


def _init_trunk(module: nn.Module) -> None:
    """torchvision's ResNet initialisation (used when no ImageNet weights are loaded)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def upsample_add(top: torch.Tensor, lateral: torch.Tensor) -> torch.Tensor:
    """Bilinear resize (align_corners=False) of ``top`` to the lateral's size, plus the lateral."""
    return nnf.interpolate(top, size=lateral.shape[-2:], mode="bilinear", align_corners=False).add_(lateral)


class StreamBackbone(nn.Module):
    """ResNet trunk(s) plus one FPN per stream; returns the stride-4 maps P2_h and P2_o.

    For ``variant="single"`` there is one stream and ``forward`` returns ``(P2, P2)``.
    """

    def __init__(self, variant: str = "harmonious", trunk: str = "resnet50", channels: int = 256):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
        if trunk not in ALL_TRUNKS:
            raise ValueError(f"unknown trunk {trunk!r}; expected one of {ALL_TRUNKS}")
        self.variant = variant
        self.trunk = trunk
        self.frozen_stages = 0
        self.channels_last_training = True  # False: CPU training runs stage 4 in NCHW as inference does
        if trunk in LITE_TRUNKS:
            lite = LITE_TRUNKS[trunk]
            c2, c3, c4, c5 = lite.channels
            make_stem, make_layer = LiteStem, lambda i: make_lite_layer(lite, i)
        else:
            spec = TRUNKS[trunk]
            c2, c3, c4, c5 = spec.channels
            make_stem, make_layer = Stem, lambda i: make_stage(spec, i)
        object_stages = _OBJECT_STAGES[variant]
        two_streams = variant != "single"

        # Registration order reproduces the official state_dict order.
        self.toplayer_h = nn.Conv2d(c5, channels, 1)
        if two_streams:
            self.toplayer_o = nn.Conv2d(c5, channels, 1)
        self.layer0_h = make_stem()
        for i in range(1, 5):
            setattr(self, f"layer{i}_h", make_layer(i))
        for i in object_stages:
            setattr(self, f"layer{i}_o", make_stem() if i == 0 else make_layer(i))
        streams = ("h", "o") if two_streams else ("h",)
        for s in streams:
            setattr(self, f"smooth3_{s}", nn.Conv2d(channels, channels, 3, padding=1))
        for s in streams:
            for i, c in ((1, c4), (2, c3), (3, c2)):
                setattr(self, f"latlayer{i}_{s}", nn.Conv2d(c, channels, 1))
        _init_trunk(self)
        for m in self.modules():  # FPN convs keep PyTorch's default init, like the official code
            if isinstance(m, nn.Conv2d) and m.bias is not None:
                m.reset_parameters()

    def load_imagenet_state_dict(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Copy an ImageNet state_dict (torchvision ResNet, or a published EfficientNet-Lite file) into every
        trunk (the object stream gets deep copies).

        Strict: every trunk tensor must be filled with a tensor of its shape, and every file tensor must be
        used (only the classifier's are skipped); otherwise AssetError names the keys.
        """
        renamed, unused = {}, []
        for key, value in state_dict.items():
            ours = self._imagenet_key(key)
            if ours is None:
                continue
            if ours == "":
                unused.append(key)
            else:
                renamed[ours] = value
        own = self.state_dict()
        trunk_h = [k for k in own if k.startswith("layer") and k.split(".")[0].endswith("_h")]
        missing = sorted(set(trunk_h) - set(renamed))
        unexpected = sorted(set(renamed) - set(trunk_h))
        wrong = sorted(k for k in set(renamed) & set(trunk_h) if renamed[k].shape != own[k].shape)
        if missing or unexpected or wrong or unused:
            raise AssetError(
                f"ImageNet weights do not fit the {self.trunk} trunk: missing {missing[:5]}, "
                f"unexpected {(unexpected + unused)[:5]}, wrong shapes {wrong[:5]}"
            )
        self.load_state_dict(renamed, strict=False)
        for i in _OBJECT_STAGES[self.variant]:
            getattr(self, f"layer{i}_o").load_state_dict(
                copy.deepcopy(getattr(self, f"layer{i}_h").state_dict())
            )

    def _imagenet_key(self, key: str) -> str | None:
        """Our key for an ImageNet key; None for the classifier's keys, "" for keys that fit nowhere."""
        if self.trunk in LITE_TRUNKS:
            try:
                return imagenet_key(LITE_TRUNKS[self.trunk], key)
            except (KeyError, ValueError):
                return ""
        head, _, rest = key.partition(".")
        if head in ("conv1", "bn1"):
            return f"layer0_h.{0 if head == 'conv1' else 1}.{rest}"
        if head in ("layer1", "layer2", "layer3", "layer4"):
            return f"{head}_h.0.{rest}"
        return None  # torchvision's fc

    def freeze(self, stages: int) -> None:
        """Freeze trunk stages 0..stages-1 (stem = 0) of every stream: no gradients, BatchNorm in eval mode.

        With ImageNet weights the early stages already give general features; freezing them saves their
        backward pass. 0 trains everything (the paper).
        """
        if not 0 <= stages <= 5:
            raise ValueError(f"frozen stages must be 0..5, got {stages}")
        self.frozen_stages = stages
        for name, module in self.named_children():
            frozen = name.startswith("layer") and int(name[5]) < stages
            for p in module.parameters():
                p.requires_grad_(not frozen)
        self.train(self.training)

    def train(self, mode: bool = True) -> StreamBackbone:
        super().train(mode)
        for name, module in self.named_children():
            if name.startswith("layer") and int(name[5]) < self.frozen_stages:
                module.eval()
        return self

    def _top_down(self, stream: str, c2: torch.Tensor, c3: torch.Tensor, c4: torch.Tensor, c5: torch.Tensor):
        p = _cpu_channels_last(getattr(self, f"toplayer_{stream}")(c5))
        p = upsample_add(p, getattr(self, f"latlayer1_{stream}")(c4))
        p = upsample_add(p, getattr(self, f"latlayer2_{stream}")(c3))
        return upsample_add(p, getattr(self, f"latlayer3_{stream}")(c2))

    def run_stage4(self, stage: nn.Module, c4: torch.Tensor) -> torch.Tensor:
        """``stage`` (``layer4_h`` or ``layer4_o``) on C4; CPU inference runs it in NCHW, where its forward
        alone is fastest, while CPU training keeps channels-last, where forward plus backward is."""
        nchw = c4.device.type == "cpu" and not (
            self.training and torch.is_grad_enabled() and self.channels_last_training
        )
        return stage(c4.contiguous() if nchw else c4)

    def smooth(self, stream: str) -> nn.Conv2d:
        """The 3×3 conv that turns the top-down map p2 of ``stream`` into P2."""
        return getattr(self, f"smooth3_{stream}")

    def unsmoothed(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The top-down maps p2_h, p2_o before the 3×3 smoothing (P2 = smooth(p2)); the same for "single"."""
        c2_h = self.layer1_h(_stem(self.layer0_h, images))
        c3_h = self.layer2_h(c2_h)
        c4_h = self.layer3_h(c3_h)
        if self.variant == "single":
            p2 = self._top_down("h", c2_h, c3_h, c4_h, self.run_stage4(self.layer4_h, c4_h))
            return p2, p2
        if self.variant == "double":
            c2_o = self.layer1_o(_stem(self.layer0_o, images))
            c3_o = self.layer2_o(c2_o)
            c4_o = self.layer3_o(c3_o)
            c5_h, c5_o = self.run_stage4(self.layer4_h, c4_h), self.run_stage4(self.layer4_o, c4_o)
        else:
            c2_o = c2_h  # the object FPN takes its C2 lateral from the shared stage 1
            c3_o = self.layer2_o(c2_h)
            c4_o = self.layer3_o(c3_o)
            c5_h, c5_o = self._shared_stage4(c4_h, c4_o)
        return self._top_down("h", c2_h, c3_h, c4_h, c5_h), self._top_down("o", c2_o, c3_o, c4_o, c5_o)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Full P2_h, P2_o maps (B, 256, S/4, S/4); for "single" both are the one stream's P2."""
        p2_h, p2_o = self.unsmoothed(images)
        if self.variant == "single":
            p2 = self.smooth3_h(p2_h)
            return p2, p2
        return self.smooth3_h(p2_h), self.smooth3_o(p2_o)

    def _shared_stage4(self, c4_h: torch.Tensor, c4_o: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training:
            # Separate calls keep the official per-call BatchNorm batch statistics in training.
            return self.run_stage4(self.layer4_h, c4_h), self.run_stage4(self.layer4_h, c4_o)
        c5 = self.run_stage4(self.layer4_h, torch.cat((c4_h, c4_o)))
        return c5.chunk(2)
