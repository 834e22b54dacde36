"""The mean-prediction baseline: a network that ignores the image and always outputs the mean targets.

Run through the Estimator and the evaluation like a real network, it gives every metric the value a model
reaches without looking at the pixels (the 2D joints at their mean place in the hand box, the mean hand in
camera axes, the mean control points in the object box). A trained model has learnt from the images only
where it beats these figures.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..data.sample import HandObjectSample
from ..data.torch_dataset import HandObjectTrainingDataset
from ..model.rotation_utils import axis_angle_to_rotmat
from .losses import HFLNetLoss


class MeanPredictionNet(nn.Module):
    """HFLNet's output contract with constant outputs: the means of ``means`` (see :meth:`from_samples`)."""

    def __init__(self, mano_layer: nn.Module, input_size: int, roi_res: int, means: dict[str, torch.Tensor]):
        super().__init__()
        self.input_size = int(input_size)
        self.roi_res = int(roi_res)
        self.mano_branch = nn.Module()  # the Estimator reads the mesh faces here
        self.mano_branch.mano_layer = mano_layer
        for name, value in means.items():
            self.register_buffer(name, value.float())

    @classmethod
    def from_samples(
        cls, samples: Sequence[HandObjectSample], mano_layer: nn.Module, *, input_size: int, roi_res: int
    ) -> MeanPredictionNet:
        """Means over the un-augmented training targets of ``samples`` (right-hand frame, as the network)."""
        dataset = HandObjectTrainingDataset(samples, input_size=input_size, augment=None)
        items = [dataset.item(i, np.random.default_rng(0)) for i in range(len(dataset))]
        stack = {k: torch.stack([it[k] for it in items]) for k in
                 ("joints2d_box", "control_points2d_box", "mano_pose", "mano_shape")}
        verts, joints = HFLNetLoss(mano_layer).mano_targets(stack["mano_pose"], stack["mano_shape"])
        means = {
            "joints2d_box": stack["joints2d_box"].mean(0),
            "control_points2d_box": stack["control_points2d_box"].mean(0),
            "joints3d": (joints - joints[:, :1]).mean(0),
            "verts3d": (verts - joints[:, :1]).mean(0),
            "mano_pose": stack["mano_pose"].mean(0),
            "mano_shape": stack["mano_shape"].mean(0),
        }
        return cls(mano_layer, input_size, roi_res, means)

    def forward(self, images: torch.Tensor, hand_boxes: torch.Tensor, object_boxes: torch.Tensor):
        """The same keys and shapes as HFLNet.forward, independent of ``images``."""
        batch, r = images.shape[0], self.roi_res
        hand_boxes = hand_boxes.to(images.device, torch.float32)
        origin, size = hand_boxes[:, None, :2], hand_boxes[:, None, 2:] - hand_boxes[:, None, :2]
        uv = self.joints2d_box.expand(batch, 21, 2)
        pose = self.mano_pose.expand(batch, 48)
        return {
            "joints2d": origin + uv * size,
            "joints2d_box": uv,
            "heatmaps": torch.full((batch, 21, r, r), 1.0 / (r * r), device=images.device),
            "joints3d": self.joints3d.expand(batch, 21, 3),
            "verts3d": self.verts3d.expand(batch, *self.verts3d.shape),
            "mano_pose": pose,
            "mano_shape": self.mano_shape.expand(batch, 10),
            "mano_rotmat": axis_angle_to_rotmat(pose.reshape(batch, 16, 3)),
            "obj_vote": self.control_points2d_box.expand(batch, r, r, 21, 2),
            "obj_conf": torch.full((batch, r, r, 21), 1.0 / (r * r), device=images.device),
        }
