"""The one sample type every dataset reader returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..results import Side


@dataclass
class HandObjectSample:
    """One annotated frame with one hand and the object it holds.

    Frames: 3D quantities are metres in the OpenCV camera frame of the *original* image (x right, y down,
    z forward); 2D quantities are pixels of the original image. Left hands are stored as they are (not
    mirrored); ``mano_pose`` is then in the left-hand model's convention.
    """

    image_path: Path | None  # where the RGB image is read from (None when ``image`` is given)
    K: np.ndarray  # (3, 3)
    side: Side
    mano_pose: np.ndarray  # (48,) axis-angle, global rotation first, flat hand mean (mean added)
    mano_shape: np.ndarray  # (10,)
    # (21, 3) in JOINT_NAMES order; NaN rows where unknown (HO3D evaluation split: all but the wrist)
    joints3d: np.ndarray
    joints2d: np.ndarray  # (21, 2)
    class_id: str  # object class id (DexYCB numbering as a string, e.g. "5")
    object_name: str  # e.g. "006_mustard_bottle"
    object_R: np.ndarray  # (3, 3) object -> camera
    object_t: np.ndarray  # (3,) metres
    control_points3d: np.ndarray  # (21, 3) object frame
    control_points2d: np.ndarray  # (21, 2)
    hand_box: np.ndarray  # (4,) [x1, y1, x2, y2]
    object_box: np.ndarray  # (4,)
    image: np.ndarray | None = None  # (H, W, 3) uint8 RGB, when held in memory
    object_mask: np.ndarray | None = None  # (H, W) bool, where available
    hand_mask: np.ndarray | None = None  # (H, W) bool, where available
    verts3d: np.ndarray | None = None  # (778, 3) camera frame, where available
    hand_translation: np.ndarray | None = None  # (3,) wrist position in the camera frame
    meta: dict = field(default_factory=dict)  # dataset, sequence, frame id, ...

    def load_image(self) -> np.ndarray:
        """The RGB image as (H, W, 3) uint8."""
        if self.image is not None:
            return self.image
        import cv2

        from ..errors import BadImageError

        bgr = cv2.imread(str(self.image_path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise BadImageError(f"cannot read image {self.image_path}")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
