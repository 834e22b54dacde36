"""HFL-Net's training losses with the official weights (spec §7). Every term is an element mean.

- 2D joints: MSE of the box-fraction joints against the GT in the f=1.1 hand box, weight 100.
- MANO: the GT vertices and joints come from the GT parameters through the same MANO layer (wrist-centred,
  metres); verts MSE 1e4, joints MSE 1e4, MSE of the 16 rotation matrices 10, betas MSE 0.1.
- Object votes: target = the 21 control points as fractions of the object box, broadcast to every cell; votes
  and target are multiplied by the 32x32 object mask; L1(x) + L1(y), weight 500.
- Vote confidence: L1(sigmoid conf, exp(-||vote - target||) * mask) with the target detached and the predicted
  confidence unmasked, weight 100.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as nnf

from ..model.rotation_utils import axis_angle_to_rotmat


@dataclass
class LossWeights:
    """Loss weights; the defaults are the official ones."""

    joints2d: float = 100.0
    mano_verts: float = 1e4
    mano_joints: float = 1e4
    mano_rotmat: float = 10.0
    mano_shape: float = 0.1
    obj_vote: float = 500.0
    obj_conf: float = 100.0

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _masked_mean_mse(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Element-mean MSE over the samples with weight 1 (weight (B,) of 0/1); 0 when no sample counts."""
    per_sample = ((pred - target) ** 2).flatten(1).mean(dim=1)
    return (per_sample * weight).sum() / weight.sum().clamp(min=1.0)


class HFLNetLoss(nn.Module):
    """Total loss and its terms from the network outputs and a batch of training items.

    ``mano_layer`` generates the GT vertices and joints (use the network's own layer, so that GT and
    prediction come from the same hand model).
    """

    def __init__(self, mano_layer: nn.Module, weights: LossWeights | None = None):
        super().__init__()
        self.mano_layer = mano_layer
        self.weights = weights or LossWeights()

    @torch.no_grad()
    def mano_targets(self, pose: torch.Tensor, shape: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        verts, joints = self.mano_layer(pose.float(), shape.float())
        return verts, joints

    def forward(
        self, out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], *, as_tensors: bool = False
    ) -> tuple[torch.Tensor, dict[str, float] | dict[str, torch.Tensor]]:
        """(total, terms): floats, or with ``as_tensors`` detached 0-d tensors (no host sync)."""
        w = self.weights
        terms: dict[str, torch.Tensor] = {}
        terms["joints2d"] = nnf.mse_loss(out["joints2d_box"].float(), batch["joints2d_box"])

        has_mano = batch["has_mano"].float()
        gt_verts, gt_joints = self.mano_targets(batch["mano_pose"], batch["mano_shape"])
        gt_rotmat = axis_angle_to_rotmat(batch["mano_pose"].reshape(-1, 16, 3))
        terms["mano_verts"] = _masked_mean_mse(out["verts3d"].float(), gt_verts, has_mano)
        terms["mano_joints"] = _masked_mean_mse(out["joints3d"].float(), gt_joints, has_mano)
        terms["mano_rotmat"] = _masked_mean_mse(out["mano_rotmat"].float(), gt_rotmat, has_mano)
        terms["mano_shape"] = _masked_mean_mse(out["mano_shape"].float(), batch["mano_shape"], has_mano)

        vote = out["obj_vote"].float()  # (B, R, R, 21, 2), R = 32 in the official network
        mask = batch["object_mask"]  # (B, 32, 32)
        if mask.shape[-1] != vote.shape[2]:  # a network with a smaller RoI grid
            mask = nnf.interpolate(mask[:, None].float(), size=vote.shape[1:3], mode="nearest")[:, 0]
        mask = mask[:, :, :, None, None].to(vote.dtype)  # (B, R, R, 1, 1)
        target = batch["control_points2d_box"][:, None, None]  # (B, 1, 1, 21, 2)
        vote_m, target_m = vote * mask, target * mask
        target_m = target_m.expand_as(vote_m)
        terms["obj_vote"] = nnf.l1_loss(vote_m[..., 0], target_m[..., 0]) + nnf.l1_loss(
            vote_m[..., 1], target_m[..., 1]
        )
        with torch.no_grad():
            conf_target = torch.exp(-(vote_m - target_m).norm(dim=-1)) * mask[..., 0]
        terms["obj_conf"] = nnf.l1_loss(out["obj_conf"].float(), conf_target)

        weights = w.as_dict()
        total = sum(weights[k] * v for k, v in terms.items())
        detached = {k: v.detach() for k, v in terms.items()}
        if as_tensors:
            return total, detached
        return total, dict(zip(detached, torch.stack(list(detached.values())).tolist(), strict=True))
