"""Object decoder (spec §6): regression head and vote layer (official obj_regHead and Pose2DLayer)."""

from __future__ import annotations

import torch
from torch import nn

NUM_CONTROL_POINTS = 21
LEAKY_SLOPE = 0.1  # the object head uses 0.1, unlike the rest of the network
VOTE_SCALE = 10.0  # the raw offsets are predicted in units of 1/10 of the box


class ObjectRegressionHead(nn.Module):
    """``obj_regHead``: 3 × [1×1 256→128, BN, LReLU(0.1); 3×3 128→256, BN, LReLU(0.1)], 1×1 256→63."""

    def __init__(self, channels: int = 256, inter_channels: int = 128, points: int = NUM_CONTROL_POINTS):
        super().__init__()
        for k in range(1, 4):
            setattr(self, f"conv{k}_1", nn.Conv2d(channels, inter_channels, 1))
            setattr(self, f"bn{k}_1", nn.BatchNorm2d(inter_channels))
            setattr(self, f"conv{k}_2", nn.Conv2d(inter_channels, channels, 3, padding=1))
            setattr(self, f"bn{k}_2", nn.BatchNorm2d(channels))
        self.out_conv = nn.Conv2d(channels, 3 * points, 1)
        self.act = nn.LeakyReLU(LEAKY_SLOPE, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for k in range(1, 4):
            x = self.act(getattr(self, f"bn{k}_1")(getattr(self, f"conv{k}_1")(x)))
            x = self.act(getattr(self, f"bn{k}_2")(getattr(self, f"conv{k}_2")(x)))
        return self.out_conv(x)


def decode_votes(raw: torch.Tensor, points: int = NUM_CONTROL_POINTS) -> tuple[torch.Tensor, torch.Tensor]:
    """Head output (B, 3·K, R, R) -> votes (B, R, R, K, 2) and confidences (B, R, R, K), [b, row, col, k].

    Channel k is the confidence logit of control point k; channels K+k and 2K+k are its x and y offsets. The
    vote of cell (row r, column c) is offset/10 + cell centre, as a fraction of the object box.
    """
    b, _, rows, cols = raw.shape
    raw = raw.float().permute(0, 2, 3, 1).reshape(b, rows, cols, 3, points)
    conf = torch.sigmoid(raw[..., 0, :])
    col_centre = (torch.arange(cols, device=raw.device, dtype=raw.dtype) + 0.5) / cols
    row_centre = (torch.arange(rows, device=raw.device, dtype=raw.dtype) + 0.5) / rows
    px = raw[..., 1, :] / VOTE_SCALE + col_centre.view(1, 1, cols, 1)
    py = raw[..., 2, :] / VOTE_SCALE + row_centre.view(1, rows, 1, 1)
    return torch.stack((px, py), dim=-1), conf
