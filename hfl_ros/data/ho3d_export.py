"""Write samples as a dataset in the HO3D v2/v3 layout, which :class:`hfl_ros.data.ho3d.HO3DDataset` reads.

Layout (spec §9; everything in the meta pickles in OpenGL camera axes, C = diag(1, -1, -1) from OpenCV)::

    <root>/<split>.txt                          "SEQ/ID" lines
    <root>/<split>/<SEQ>/rgb/<ID>.png|.jpg      image (png: HO3D v2, jpg: v3)
    <root>/<split>/<SEQ>/meta/<ID>.pkl          handPose (48), handBeta (10), handTrans (3),
                                                handJoints3D (21, 3), camMat, objRot (3, 1), objTrans (3,),
                                                objName, objLabel, objCorners3DRest (8, 3),
                                                objCorners3D (8, 3);
                                                evaluation split: also handBoundingBox [x1, y1, x2, y2]
    <root>/<split>/<SEQ>/seg/<ID>.png           visible masks: object green, hand blue
    <root>/models/<objName>/points.xyz          object models (+ textured_simple.obj)

``handJoints3D`` is in the [16 MANO joints, 5 tips] order that the reader maps to JOINT_NAMES order, and
``handTrans`` is the MANO translation in OpenGL axes: ManoLayer(handPose, handBeta) joints + handTrans =
handJoints3D, as HO3D defines it. The evaluation split keeps the full hand annotation (the real HO3D
evaluation split only has the wrist), so held-out synthetic frames can be scored on the hand too.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from ..geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from ..hand_joints import MANO_TO_OUTPUT_ORDER
from .sample import HandObjectSample
from .shapes import write_object_models

#: OpenCV <-> OpenGL camera axes (its own inverse).
OPENCV_TO_OPENGL = np.diag([1.0, -1.0, -1.0])
SPLITS = ("train", "evaluation")


def mano_translation(sample: HandObjectSample) -> np.ndarray:
    """The MANO translation (OpenCV axes) of a synthetic sample: joints = MANO(pose, betas) joints + it."""
    trans = sample.meta.get("mano_trans")
    if trans is None:
        raise ValueError("sample has no 'mano_trans' in its meta (only synthetic samples carry it)")
    return np.asarray(trans, np.float64)


def ho3d_meta(sample: HandObjectSample, *, with_hand_box: bool) -> dict:
    """The HO3D meta dict of a sample (OpenGL axes)."""
    C = OPENCV_TO_OPENGL
    trans_cv = mano_translation(sample)
    rest_wrist = (
        sample.joints3d[0] - trans_cv
    )  # MANO's wrist with zero translation (it is rotation-invariant)
    pose = np.asarray(sample.mano_pose, np.float64).copy()
    pose[:3] = matrix_to_axis_angle(C @ axis_angle_to_matrix(pose[:3]))
    joints_mano = np.empty((21, 3))
    joints_mano[list(MANO_TO_OUTPUT_ORDER)] = sample.joints3d
    R_gl, t_gl = C @ sample.object_R, C @ sample.object_t
    corners_rest = sample.control_points3d[:8]
    meta = {
        "handPose": pose,
        "handBeta": np.asarray(sample.mano_shape, np.float64).copy(),
        # MANO rotates about the rest wrist: C (R (M - J0) + J0 + t) = (C R)(M - J0) + J0 + (C (J0 + t) - J0)
        "handTrans": C @ (rest_wrist + trans_cv) - rest_wrist,
        "handJoints3D": joints_mano @ C,
        "camMat": np.asarray(sample.K, np.float64).copy(),
        "objRot": matrix_to_axis_angle(R_gl).reshape(3, 1),
        "objTrans": t_gl,
        "objName": sample.object_name,
        "objLabel": int(sample.class_id),
        "objCorners3DRest": corners_rest.copy(),
        "objCorners3D": corners_rest @ R_gl.T + t_gl,
    }
    if with_hand_box:
        meta["handBoundingBox"] = np.asarray(sample.hand_box, np.float64).copy()
    return meta


def segmentation_image(sample: HandObjectSample) -> np.ndarray:
    """BGR mask image as HO3D's seg folder colours it: object green, hand blue."""
    height, width = sample.image.shape[:2]
    seg = np.zeros((height, width, 3), np.uint8)
    if sample.object_mask is not None:
        seg[sample.object_mask, 1] = 255
    if sample.hand_mask is not None:
        seg[sample.hand_mask, 0] = 255
    return seg


#: Frames a written sequence folder holds (shards of a split written in parallel start at multiples of it).
FRAMES_PER_SEQUENCE = 200


def write_ho3d_index(root, split: str, keys: list[str]) -> None:
    """Write ``<split>.txt`` listing ``keys`` and the ``models/`` folder the split's meta files refer to."""
    root = Path(root)
    (root / f"{split}.txt").write_text("".join(f"{k}\n" for k in keys))
    write_object_models(root / "models", by_name=True)


def write_ho3d_split(
    root,
    split: str,
    samples: Iterable[HandObjectSample],
    *,
    frames_per_sequence: int = FRAMES_PER_SEQUENCE,
    sequence_prefix: str = "SYN",
    image_format: str = "jpg",
    jpeg_quality: int = 92,
    progress=None,
    start: int = 0,
    write_index: bool = True,
) -> list[str]:
    """Write samples as one split; returns their ``seq/frame`` keys. ``progress(count)`` follows each frame.

    ``start`` numbers the first sample (a shard of a split written by several processes starts at a multiple
    of ``frames_per_sequence``); ``write_index=False`` leaves ``<split>.txt`` and the models to the caller.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if image_format not in ("jpg", "png"):
        raise ValueError(f"image_format must be 'jpg' (HO3D v3) or 'png' (HO3D v2), got {image_format!r}")
    root = Path(root)
    keys = []
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if image_format == "jpg" else []
    for count, sample in enumerate(samples, start):
        seq, frame_id = (
            f"{sequence_prefix}{count // frames_per_sequence:03d}",
            f"{count % frames_per_sequence:04d}",
        )
        seq_dir = root / split / seq
        if count % frames_per_sequence == 0:
            for sub in ("rgb", "meta", "seg"):
                (seq_dir / sub).mkdir(parents=True, exist_ok=True)
        image = cv2.cvtColor(sample.load_image(), cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(seq_dir / "rgb" / f"{frame_id}.{image_format}"), image, params)
        cv2.imwrite(str(seq_dir / "seg" / f"{frame_id}.png"), segmentation_image(sample))
        with (seq_dir / "meta" / f"{frame_id}.pkl").open("wb") as stream:
            pickle.dump(ho3d_meta(sample, with_hand_box=split == "evaluation"), stream, protocol=2)
        keys.append(f"{seq}/{frame_id}")
        if progress is not None:
            progress(len(keys))
    if write_index:
        write_ho3d_index(root, split, keys)
    return keys
