"""The HO3D CodaLab submission: ``pred.json`` = [xyz_list, verts_list], zipped as ``pred.zip``.

Each entry is one frame of the evaluation split in evaluation.txt order: 21 joints in HO3D's (MANO) joint
order and 778 vertices, in metres in the OpenGL camera frame (y up, z backward). The network predicts
wrist-relative joints in OpenCV axes; the GT wrist position the split provides is added **in metres**
(the official script adds it to millimetres, spec §10.5), then the axes are flipped with diag(1, -1, -1).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from ..data.ho3d import OPENGL_TO_OPENCV
from ..hand_joints import MANO_TO_OUTPUT_ORDER

#: JOINT_NAMES order -> HO3D / MANO order (argsort of the MANO -> output map).
OUTPUT_TO_HO3D_ORDER: tuple[int, ...] = tuple(int(i) for i in np.argsort(MANO_TO_OUTPUT_ORDER))


def ho3d_submission_entry(joints_rel, verts_rel, root) -> tuple[list, list]:
    """(xyz, verts) lists of one frame from wrist-relative OpenCV-frame joints (21, 3) in JOINT_NAMES order,
    vertices (778, 3) and the GT wrist (3,) in the OpenCV camera frame, all in metres."""
    root = np.asarray(root, dtype=np.float64).reshape(1, 3)
    joints = (np.asarray(joints_rel, dtype=np.float64) + root) @ OPENGL_TO_OPENCV
    verts = (np.asarray(verts_rel, dtype=np.float64) + root) @ OPENGL_TO_OPENCV
    return joints[list(OUTPUT_TO_HO3D_ORDER)].tolist(), verts.tolist()


def write_ho3d_submission(out_dir: str | Path, xyz: list, verts: list, *, zip_it: bool = True) -> Path:
    """Write ``pred.json`` (and ``pred.zip`` holding it); returns the JSON path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if len(xyz) != len(verts):
        raise ValueError(f"{len(xyz)} joint entries but {len(verts)} vertex entries")
    path = out_dir / "pred.json"
    path.write_text(json.dumps([xyz, verts]))
    if zip_it:
        with zipfile.ZipFile(out_dir / "pred.zip", "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.write(path, arcname="pred.json")
    return path


def read_ho3d_submission(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(xyz (N, 21, 3), verts (N, 778, 3)) of a pred.json or pred.zip; ValueError if malformed."""
    path = Path(path)
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as zf:
            data = json.loads(zf.read("pred.json"))
    else:
        data = json.loads(path.read_text())
    if not isinstance(data, list) or len(data) != 2:
        raise ValueError(f"{path}: expected [xyz_list, verts_list]")
    xyz, verts = (np.asarray(d, dtype=np.float64) for d in data)
    if (len(xyz) and xyz.shape[1:] != (21, 3)) or (len(verts) and verts.shape[1:] != (778, 3)):
        raise ValueError(f"{path}: entries must be 21 x 3 joints and 778 x 3 vertices")
    return xyz.reshape(-1, 21, 3), verts.reshape(-1, 778, 3)
