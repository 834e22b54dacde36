"""MANO hand layer with manopth's conventions (output in metres), and the hand model files: finding, loading
(:mod:`hfl_ros.mano_pickle` reads the pickles without chumpy or scipy) and validating them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hfl_ros.errors import HandModelError, InputError
from hfl_ros.hand_joints import (
    FINGERTIP_VERTICES,
    FINGERTIP_VERTICES_LEFT,
    MANO_KINTREE_PARENTS,
    MANO_TO_OUTPUT_ORDER,
    NUM_FACES,
    NUM_VERTICES,
)
from hfl_ros.mano_pickle import read_hand_model_pickle
from hfl_ros.model.rotation_utils import axis_angle_to_rotmat

__all__ = [
    "MODEL_FILE_NAMES",
    "STANDIN_FILE_NAMES",
    "ManoLayer",
    "find_hand_model_file",
    "load_hand_model_file",
    "validate_hand_model",
]

NUM_KINEMATIC_JOINTS = 16
NUM_BETAS = 10
NUM_POSE_FEATURES = 9 * (NUM_KINEMATIC_JOINTS - 1)
NUM_FINGER_POSE = 3 * (NUM_KINEMATIC_JOINTS - 1)

MODEL_FILE_NAMES: dict[str, str] = {"right": "MANO_RIGHT.pkl", "left": "MANO_LEFT.pkl"}
#: The file names of the generated stand-in hand (:mod:`hfl_ros.data.standin_hand`), looked for after MANO's.
STANDIN_FILE_NAMES: dict[str, str] = {"right": "STANDIN_HAND_RIGHT.pkl", "left": "STANDIN_HAND_LEFT.pkl"}

#: Keys every hand model file must hold, with their shapes.
REQUIRED_SHAPES: dict[str, tuple[int, ...]] = {
    "v_template": (NUM_VERTICES, 3),
    "f": (NUM_FACES, 3),
    "J_regressor": (NUM_KINEMATIC_JOINTS, NUM_VERTICES),
    "weights": (NUM_VERTICES, NUM_KINEMATIC_JOINTS),
    "shapedirs": (NUM_VERTICES, 3, NUM_BETAS),
    "posedirs": (NUM_VERTICES, 3, NUM_POSE_FEATURES),
    "kintree_table": (2, NUM_KINEMATIC_JOINTS),
    "hands_components": (NUM_FINGER_POSE, NUM_FINGER_POSE),
    "hands_mean": (NUM_FINGER_POSE,),
}
#: Optional keys that are checked when present (-1: any length).
OPTIONAL_SHAPES: dict[str, tuple[int, ...]] = {
    "J": (NUM_KINEMATIC_JOINTS, 3),
    "betas": (NUM_BETAS,),
    "hands_coeffs": (-1, NUM_FINGER_POSE),
}
_ROOT_PARENT_IDS = (-1, 4294967295)


def load_hand_model_file(path: str | Path) -> dict[str, np.ndarray | str]:
    """Load a MANO-format hand model pickle (official MANO or the stand-in) without chumpy or scipy.

    Returns plain arrays (``J_regressor`` dense) and strings, validated by :func:`validate_hand_model`.
    Raises HandModelError naming the file (and key) for a missing, corrupt, unsafe or wrongly shaped file.
    """
    return validate_hand_model(read_hand_model_pickle(path), source=str(Path(path)))


def validate_hand_model(arrays: Mapping[str, Any], source: str = "<arrays>") -> dict[str, np.ndarray | str]:
    """Check keys, shapes, finiteness, face indices and kinematic tree; return float64/int64 copies.

    ``source`` (usually the file path) is named in every HandModelError.
    """
    out: dict[str, np.ndarray | str] = {k: v for k, v in arrays.items() if isinstance(v, str)}
    missing = [key for key in REQUIRED_SHAPES if key not in arrays]
    if missing:
        raise HandModelError(f"hand model {source}: missing key(s) {', '.join(missing)}")
    for key, shape in (*REQUIRED_SHAPES.items(), *OPTIONAL_SHAPES.items()):
        if key not in arrays:
            continue
        try:
            value = np.asarray(arrays[key])
            if key == "betas":
                value = value.reshape(-1)
            value = value.astype(np.int64 if key in ("f", "kintree_table") else np.float64)
        except (TypeError, ValueError) as exc:
            raise HandModelError(f"hand model {source}: key '{key}' is not numeric: {exc}") from exc
        if value.ndim != len(shape) or any(want not in (-1, got) for want, got in zip(shape, value.shape)):
            raise HandModelError(
                f"hand model {source}: key '{key}' has shape {value.shape}, expected "
                f"{tuple('N' if s == -1 else s for s in shape)}"
            )
        if key not in ("f", "kintree_table") and not np.all(np.isfinite(value)):
            raise HandModelError(f"hand model {source}: key '{key}' contains non-finite values")
        out[key] = value
    faces = out["f"]
    if faces.min() < 0 or faces.max() >= NUM_VERTICES:
        raise HandModelError(f"hand model {source}: key 'f' has vertex indices outside [0, {NUM_VERTICES})")
    parents = out["kintree_table"][0]
    if int(parents[0]) not in _ROOT_PARENT_IDS or tuple(parents[1:]) != MANO_KINTREE_PARENTS[1:]:
        raise HandModelError(
            f"hand model {source}: key 'kintree_table' has parents {parents.tolist()}, expected the MANO "
            f"tree {list(MANO_KINTREE_PARENTS)}"
        )
    return out


def find_hand_model_file(directory: str | Path, side: str) -> Path:
    """The hand model file for ``side`` in ``directory``.

    ``MANO_RIGHT.pkl`` / ``MANO_LEFT.pkl`` if present, else the stand-in ``STANDIN_HAND_RIGHT.pkl`` /
    ``STANDIN_HAND_LEFT.pkl``. Raises HandModelError naming the directory and both expected file names.
    """
    if side not in MODEL_FILE_NAMES:
        raise HandModelError(f"unknown hand side {side!r}, expected 'right' or 'left'")
    directory = Path(directory)
    candidates = (MODEL_FILE_NAMES[side], STANDIN_FILE_NAMES[side])
    for name in candidates:
        if (directory / name).is_file():
            return directory / name
    if not directory.is_dir():
        raise HandModelError(
            f"hand model directory {directory} does not exist "
            f"(expected {candidates[0]} or {candidates[1]} in it)"
        )
    raise HandModelError(
        f"hand model directory {directory} holds neither {candidates[0]} nor {candidates[1]}"
    )


# ---------------------------------------------------------------------------------------------------------
# The layer
# ---------------------------------------------------------------------------------------------------------


def _as_tensor(array: Any, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(array), dtype=dtype).clone()


class ManoLayer(nn.Module):
    """Differentiable MANO hand (manopth-compatible buffers), returning vertices and 21 joints in metres.

    ``model_path`` is a MANO-format pickle (or a directory searched with :func:`find_hand_model_file`);
    ``arrays`` is an already loaded model dict (e.g. from :func:`load_hand_model_file`). With neither, all
    buffers are zeros of the right shapes, to be filled from a checkpoint (the official HFL-Net checkpoint
    stores them under ``mano_branch.mano_layer.``).
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        side: str = "right",
        use_pca: bool = False,
        ncomps: int = 45,
        flat_hand_mean: bool = True,
        center_idx: int | None = None,
        arrays: Mapping[str, Any] | None = None,
    ):
        super().__init__()
        if side not in MODEL_FILE_NAMES:
            raise HandModelError(f"unknown hand side {side!r}, expected 'right' or 'left'")
        if not 1 <= ncomps <= NUM_FINGER_POSE:
            raise ValueError(f"ncomps must be in [1, {NUM_FINGER_POSE}], got {ncomps}")
        if center_idx is not None and not 0 <= center_idx < len(MANO_TO_OUTPUT_ORDER):
            raise ValueError(f"center_idx must be None or a joint index in [0, 21), got {center_idx}")
        if model_path is not None and arrays is not None:
            raise ValueError("give either model_path or arrays, not both")
        self.side = side
        self.use_pca = use_pca
        self.ncomps = ncomps
        self.flat_hand_mean = flat_hand_mean
        self.center_idx = center_idx
        self.pose_size = 3 + (ncomps if use_pca else NUM_FINGER_POSE)

        if model_path is not None:
            path = Path(model_path)
            if path.is_dir():
                path = find_hand_model_file(path, side)
            model = load_hand_model_file(path)
        elif arrays is not None:
            model = validate_hand_model(arrays, source="<arrays>")
        else:
            model = None

        def buffer(
            key: str,
            shape: tuple[int, ...],
            convert: Callable[[np.ndarray], np.ndarray] | None = None,
            dtype: torch.dtype = torch.float32,
        ) -> torch.Tensor:
            if model is None or key not in model:
                return torch.zeros(shape, dtype=dtype)
            value = np.asarray(model[key])
            return _as_tensor(convert(value) if convert else value, dtype).reshape(shape)

        mean_source = None if flat_hand_mean else "hands_mean"
        self.register_buffer("th_betas", buffer("betas", (1, NUM_BETAS)))
        self.register_buffer("th_shapedirs", buffer("shapedirs", (NUM_VERTICES, 3, NUM_BETAS)))
        self.register_buffer("th_posedirs", buffer("posedirs", (NUM_VERTICES, 3, NUM_POSE_FEATURES)))
        self.register_buffer("th_v_template", buffer("v_template", (1, NUM_VERTICES, 3)))
        self.register_buffer("th_J_regressor", buffer("J_regressor", (NUM_KINEMATIC_JOINTS, NUM_VERTICES)))
        self.register_buffer("th_weights", buffer("weights", (NUM_VERTICES, NUM_KINEMATIC_JOINTS)))
        self.register_buffer("th_faces", buffer("f", (NUM_FACES, 3), dtype=torch.int64))
        self.register_buffer(
            "th_hands_mean",
            buffer(mean_source, (1, NUM_FINGER_POSE)) if mean_source else torch.zeros(1, NUM_FINGER_POSE),
        )
        self.register_buffer(
            "th_selected_comps", buffer("hands_components", (ncomps, NUM_FINGER_POSE), lambda c: c[:ncomps])
        )
        self._parents = list(MANO_KINTREE_PARENTS)
        tips = FINGERTIP_VERTICES_LEFT if side == "left" else FINGERTIP_VERTICES
        self.register_buffer("_tips", torch.tensor(tips), persistent=False)
        self.register_buffer("_order", torch.tensor(MANO_TO_OUTPUT_ORDER), persistent=False)

    @property
    def faces(self) -> np.ndarray:
        """Triangle vertex indices (1538, 3), int64."""
        return self.th_faces.detach().cpu().numpy().astype(np.int64)

    def extra_repr(self) -> str:
        return f"side={self.side}, use_pca={self.use_pca}, ncomps={self.ncomps}, center_idx={self.center_idx}"

    def forward(
        self, pose_coeffs: torch.Tensor, betas: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pose and shape -> (verts (B, 778, 3), joints (B, 21, 3)) in metres.

        ``pose_coeffs`` is (B, 3 + ncomps) with PCA, else (B, 48) axis-angle (root first); ``betas`` is
        (B, 10), or None for ``th_betas``. Joints are in JOINT_NAMES order; everything is centred on joint
        ``center_idx`` when it is set.
        """
        template = self.th_v_template
        if pose_coeffs.ndim != 2 or pose_coeffs.shape[1] != self.pose_size:
            raise InputError(
                f"MANO pose must have shape (B, {self.pose_size}), got {tuple(pose_coeffs.shape)}"
            )
        pose = pose_coeffs.to(dtype=template.dtype, device=template.device)
        batch = pose.shape[0]
        if betas is None:
            betas = self.th_betas.expand(batch, NUM_BETAS)
        elif betas.shape != (batch, NUM_BETAS):
            raise InputError(f"MANO betas must have shape ({batch}, {NUM_BETAS}), got {tuple(betas.shape)}")
        betas = betas.to(pose)

        finger_pose = pose[:, 3:]
        if self.use_pca:
            finger_pose = finger_pose @ self.th_selected_comps
        full_pose = torch.cat((pose[:, :3], self.th_hands_mean + finger_pose), 1)
        rotations = axis_angle_to_rotmat(full_pose.reshape(batch, NUM_KINEMATIC_JOINTS, 3))

        eye = torch.eye(3, dtype=pose.dtype, device=pose.device)
        pose_feature = (rotations[:, 1:] - eye).reshape(batch, NUM_POSE_FEATURES)
        shape_offsets = betas @ self.th_shapedirs.reshape(-1, NUM_BETAS).T
        v_shaped = template + shape_offsets.reshape(batch, NUM_VERTICES, 3)
        rest_joints = self.th_J_regressor @ v_shaped  # (B, 16, 3)
        pose_offsets = pose_feature @ self.th_posedirs.reshape(-1, NUM_POSE_FEATURES).T
        v_posed = v_shaped + pose_offsets.reshape(batch, NUM_VERTICES, 3)

        # Forward kinematics: world rotation and position of every joint.
        world_rot = [rotations[:, 0]]
        world_pos = [rest_joints[:, 0]]
        for joint in range(1, NUM_KINEMATIC_JOINTS):
            parent = self._parents[joint]
            bone = (rest_joints[:, joint] - rest_joints[:, parent]).unsqueeze(-1)
            world_rot.append(world_rot[parent] @ rotations[:, joint])
            world_pos.append(world_pos[parent] + (world_rot[parent] @ bone).squeeze(-1))
        joint_rot = torch.stack(world_rot, 1)  # (B, 16, 3, 3)
        joint_pos = torch.stack(world_pos, 1)  # (B, 16, 3)

        # Linear blend skinning with transforms relative to the rest pose: x -> R_j (x - J_j) + G_j.
        skin_trans = joint_pos - (joint_rot @ rest_joints.unsqueeze(-1)).squeeze(-1)
        vert_rot = torch.einsum("vj,bjmn->bvmn", self.th_weights, joint_rot)
        vert_trans = self.th_weights @ skin_trans
        verts = (vert_rot @ v_posed.unsqueeze(-1)).squeeze(-1) + vert_trans

        joints = torch.cat((joint_pos, verts[:, self._tips]), 1)[:, self._order]
        if self.center_idx is not None:
            centre = joints[:, self.center_idx : self.center_idx + 1]
            verts = verts - centre
            joints = joints - centre
        return verts, joints
