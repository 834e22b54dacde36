"""Hand decoder (spec §5): hourglass heat-map head with soft-argmax, hand encoder and MANO regressor.

Module and parameter names follow the official checkpoint (hand_regHead, hand_Encoder, mano_regHead).
"""

from __future__ import annotations

import itertools

import torch
from torch import nn
from torch.nn import functional as nnf

from hfl_ros.hand_joints import NUM_JOINTS
from hfl_ros.model.rotation_utils import rot6d_to_rotmat, rotmat_to_axis_angle

LEAKY_SLOPE = 0.01
NUM_MANO_JOINTS = 16


def _leaky() -> nn.LeakyReLU:
    return nn.LeakyReLU(LEAKY_SLOPE, inplace=True)


class PreActBottleneck(nn.Module):
    """BN, LReLU, 1×1, BN, LReLU, 3×3, BN, LReLU, 1×1, plus identity (all convs with bias)."""

    def __init__(self, channels: int = 256):
        super().__init__()
        mid = channels // 2
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv1 = nn.Conv2d(channels, mid, 1)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, padding=1)
        self.bn3 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, channels, 1)
        self.act = _leaky()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.act(self.bn1(x)))
        out = self.conv2(self.act(self.bn2(out)))
        out = self.conv3(self.act(self.bn3(out)))
        return out.add_(x)


class PreActResidual(nn.Module):
    """The hand encoder's residual block: the bottleneck's computation under the names bn, conv1, bn1, ..."""

    def __init__(self, channels: int = 256):
        super().__init__()
        mid = channels // 2
        self.bn = nn.BatchNorm2d(channels)
        self.conv1 = nn.Conv2d(channels, mid, 1)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, channels, 1)
        self.act = _leaky()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.act(self.bn(x)))
        out = self.conv2(self.act(self.bn1(out)))
        out = self.conv3(self.act(self.bn2(out)))
        return out.add_(x)


class Hourglass(nn.Module):
    """Recursive hourglass; level n (depth at full size, 1 at the bottom) uses the blocks ``hg[n-1]``."""

    def __init__(self, channels: int = 256, depth: int = 4):
        super().__init__()
        self.depth = depth
        self.hg = nn.ModuleList(
            nn.ModuleList(nn.Sequential(PreActBottleneck(channels)) for _ in range(4 if level == 0 else 3))
            for level in range(depth)
        )

    def _level(self, n: int, x: torch.Tensor) -> torch.Tensor:
        blocks = self.hg[n - 1]
        up1 = blocks[0](x)
        low1 = blocks[1](nnf.max_pool2d(x, 2, stride=2))
        low2 = self._level(n - 1, low1) if n > 1 else self.hg[0][3](low1)
        return nnf.interpolate(blocks[2](low2), scale_factor=2, mode="nearest").add_(up1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._level(self.depth, x)


class ConvBnAct(nn.Module):
    """1×1 conv (bias) + BN + LReLU, under the official name ``block``."""

    def __init__(self, channels: int = 256):
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(channels, channels, 1), nn.BatchNorm2d(channels), _leaky())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


def soft_argmax(logits: torch.Tensor, betas: torch.Tensor, uu: torch.Tensor, vv: torch.Tensor):
    """Heat-maps (softmax over cells of logits × betas) and their expected (u, v) in float32.

    logits (B, J, R, R); betas (J, 1); uu, vv (R, R) cell-centre coordinates in [0, 1].
    Returns heatmaps (B, J, R, R) and uv (B, J, 2).
    """
    b, j, r, _ = logits.shape
    with torch.autocast(logits.device.type, enabled=False):
        scaled = logits.float().reshape(b, j, r * r) * betas.float()
        heatmaps = torch.softmax(scaled, dim=2)
        grid = torch.stack((uu.reshape(-1), vv.reshape(-1)), dim=1).float()  # (R*R, 2)
        uv = heatmaps @ grid
    return heatmaps.reshape(b, j, r, r), uv


class HandHeatmapHead(nn.Module):
    """``hand_regHead``: hourglass, bottleneck, 1×1 conv+BN+LReLU ("encoding"), 21 logits, soft-argmax."""

    def __init__(self, roi_res: int = 32, channels: int = 256, joints: int = NUM_JOINTS):
        super().__init__()
        self.betas = nn.Parameter(torch.ones(joints, 1))
        centres = (torch.arange(roi_res, dtype=torch.float32) + 0.5) / roi_res
        vv, uu = torch.meshgrid(centres, centres, indexing="ij")
        self.register_buffer("uu", uu.contiguous())
        self.register_buffer("vv", vv.contiguous())
        self.hg = nn.ModuleList([Hourglass(channels, 4)])
        self.res = nn.ModuleList([nn.Sequential(PreActBottleneck(channels))])
        self.fc = nn.ModuleList([ConvBnAct(channels)])
        self.score = nn.ModuleList([nn.Conv2d(channels, joints, 1)])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B,256,R,R) -> heatmaps (B,21,R,R), uv (B,21,2) in box fractions, encoding (B,256,R,R)."""
        encoding = self.fc[0](self.res[0](self.hg[0](x)))
        heatmaps, uv = soft_argmax(self.score[0](encoding), self.betas, self.uu, self.vv)
        return heatmaps, uv, encoding


class HandEncoder(nn.Module):
    """``hand_Encoder``: heat-maps + encoding -> 4 × (2 residual blocks, max-pool 2) -> flat feature."""

    def __init__(
        self, joints: int = NUM_JOINTS, channels: int = 256, stages: int = 4, blocks_per_stage: int = 2
    ):
        super().__init__()
        self.stages = stages
        self.blocks_per_stage = blocks_per_stage
        self.heatmap_conv = nn.Conv2d(joints, channels, 1)
        self.encoding_conv = nn.Conv2d(channels, channels, 1)
        self.reg = nn.ModuleList(PreActResidual(channels) for _ in range(stages * blocks_per_stage))

    def forward(self, heatmaps: torch.Tensor, encoding: torch.Tensor) -> torch.Tensor:
        x = self.heatmap_conv(heatmaps.to(encoding.dtype)) + self.encoding_conv(encoding)
        for stage in range(self.stages):
            for block in range(self.blocks_per_stage):
                x = self.reg[stage * self.blocks_per_stage + block](x)
            x = nnf.max_pool2d(x, 2, stride=2)
        return x.flatten(1)


class ManoRegressor(nn.Module):
    """``mano_regHead``: feature -> MLP -> 16 × 6D rotations + 10 betas -> MANO (metres, wrist-relative).

    There is no camera, translation or scale output.
    """

    def __init__(
        self, mano_layer: nn.Module, feature_size: int = 1024, neurons: tuple[int, ...] = (1024, 512)
    ):
        super().__init__()
        self.register_buffer("coord_change_mat", torch.diag(torch.tensor([1.0, -1.0, -1.0])))
        sizes = (feature_size, *neurons)
        layers: list[nn.Module] = []
        for n_in, n_out in itertools.pairwise(sizes):
            layers += [nn.Linear(n_in, n_out), _leaky()]
        self.mano_base_layer = nn.Sequential(*layers)
        self.pose_reg = nn.Linear(sizes[-1], NUM_MANO_JOINTS * 6)
        self.shape_reg = nn.Linear(sizes[-1], 10)
        self.mano_layer = mano_layer

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        hidden = self.mano_base_layer(features)
        pose_6d = self.pose_reg(hidden)
        shape = self.shape_reg(hidden)
        with torch.autocast(features.device.type, enabled=False):
            pose_6d, shape = pose_6d.float(), shape.float()
            rotmat = rot6d_to_rotmat(pose_6d.reshape(-1, NUM_MANO_JOINTS, 6))
            pose = rotmat_to_axis_angle(rotmat).reshape(-1, NUM_MANO_JOINTS * 3)
            verts, joints = self.mano_layer(pose, shape)
        return {
            "mano_pose_6d": pose_6d,
            "mano_rotmat": rotmat,
            "mano_pose": pose,
            "mano_shape": shape,
            "verts3d": verts,
            "joints3d": joints,
        }
