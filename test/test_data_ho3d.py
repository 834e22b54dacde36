"""HO3D v2/v3 reader: tiny datasets written in the real layout (meta pickles, png/jpg, split files, seg masks,
official JSON) and read back exactly, including the OpenGL -> OpenCV conversion.

The writer helpers here are also used by test_train.py and test_eval.py.
"""

from __future__ import annotations

import json
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from hfl_ros.data.ho3d import OPENGL_TO_OPENCV, HO3DDataset, HO3DFrame
from hfl_ros.errors import AssetError, InputError
from hfl_ros.geometry.control_points import control_points
from hfl_ros.geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from hfl_ros.hand_joints import MANO_TO_OUTPUT_ORDER
from hfl_ros.results import Side

C = np.diag([1.0, -1.0, -1.0])
K = np.array([[600.0, 0.0, 320.0], [0.0, 610.0, 240.0], [0.0, 0.0, 1.0]])
OBJECT_NAME = "006_mustard_bottle"  # DexYCB class id 5
BOX_EXTENTS = np.array([0.06, 0.04, 0.10])


def box_points(extents=BOX_EXTENTS, n: int = 6) -> np.ndarray:
    """Points on a grid through a box centred at the origin (object frame, metres)."""
    axes = [np.linspace(-e / 2, e / 2, n) for e in extents]
    return np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)


def write_models(models_dir: Path, name: str = OBJECT_NAME) -> np.ndarray:
    points = box_points()
    (models_dir / name).mkdir(parents=True, exist_ok=True)
    np.savetxt(models_dir / name / "points.xyz", points, fmt="%.6f")
    return points


def write_standin_mano(directory: Path) -> Path:
    from hfl_ros.data.standin_hand import write_standin_hand_model

    directory.mkdir(parents=True, exist_ok=True)
    for side in ("right", "left"):
        path = directory / f"STANDIN_HAND_{side.upper()}.pkl"
        if not path.is_file():
            write_standin_hand_model(path, side)
    return directory


@dataclass
class Scene:
    """One frame's ground truth in the OpenCV camera frame."""

    pose: np.ndarray  # (48,) global rotation in OpenCV axes
    shape: np.ndarray  # (10,)
    joints: np.ndarray  # (21, 3) JOINT_NAMES order, camera frame
    verts: np.ndarray | None  # (778, 3) camera frame
    R: np.ndarray
    t: np.ndarray


def random_scene(rng: np.random.Generator, mano_layer=None) -> Scene:
    """A right hand near (0, 0, 0.5) m holding a box next to it; joints from ``mano_layer`` when given."""
    global_rot = np.array([np.pi * 0.9, 0.0, 0.0]) + rng.normal(0, 0.2, 3)  # palm towards the camera
    pose = np.concatenate([global_rot, rng.normal(0, 0.15, 45)])
    shape = rng.normal(0, 0.5, 10)
    wrist = np.array([0.0, 0.02, 0.5]) + rng.normal(0, 0.01, 3)
    if mano_layer is not None:
        import torch

        with torch.no_grad():
            v, j = mano_layer(torch.tensor(pose[None], dtype=torch.float32),
                              torch.tensor(shape[None], dtype=torch.float32))
        joints_rel, verts_rel = j[0].double().numpy(), v[0].double().numpy()
        joints, verts = joints_rel + wrist, verts_rel + wrist
    else:
        joints = wrist + rng.normal(0, 0.04, (21, 3)) * np.array([1.0, 1.0, 0.3])
        joints[0] = wrist
        verts = None
    R = axis_angle_to_matrix(rng.normal(0, 0.6, 3))
    t = wrist + np.array([0.03, -0.03, 0.03]) + rng.normal(0, 0.005, 3)
    return Scene(pose, shape, joints, verts, R, t)


def render(scene: Scene, K_: np.ndarray = K, size=(640, 480)) -> tuple[np.ndarray, np.ndarray]:
    """A simple RGB image (object as a filled polygon, hand as thick bones) and the object mask."""
    from hfl_ros.geometry.camera import project
    from hfl_ros.hand_joints import BONES

    width, height = size
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.stack([(xx * 255 // width), (yy * 255 // height), np.full_like(xx, 90)], -1).astype(np.uint8)
    cp2d = project(control_points(box_points()) @ scene.R.T + scene.t, K_)
    hull = cv2.convexHull(np.round(cp2d[:8]).astype(np.int32))
    mask = np.zeros((height, width), np.uint8)
    cv2.fillConvexPoly(mask, hull, 1)
    # A colour ramp across the object's box: the texture tells the network where a pixel sits on the object.
    x1, y1 = cp2d.min(0)
    x2, y2 = cp2d.max(0)
    ramp = np.stack([(xx - x1) / max(x2 - x1, 1.0), (yy - y1) / max(y2 - y1, 1.0)], -1).clip(0, 1)
    image[mask > 0] = np.concatenate([ramp * 255, np.full((*ramp.shape[:2], 1), 40.0)], -1)[mask > 0]
    j2d = np.round(project(scene.joints, K_)).astype(int)
    for a, b in BONES:
        cv2.line(image, tuple(j2d[a]), tuple(j2d[b]), (250, 200, 170), 5)
    return image, mask.astype(bool)


def ho3d_meta(scene: Scene, *, wrist_only: bool, hand_box=None) -> dict:
    """The HO3D meta dict of a scene, in OpenGL axes, as HO3D stores it."""
    pose_gl = scene.pose.copy()
    pose_gl[:3] = matrix_to_axis_angle(C @ axis_angle_to_matrix(scene.pose[:3]))
    joints_mano = np.empty((21, 3))
    joints_mano[list(MANO_TO_OUTPUT_ORDER)] = scene.joints
    R_gl, t_gl = C @ scene.R, C @ scene.t
    meta = {
        "camMat": K.copy(),
        "objRot": matrix_to_axis_angle(R_gl).reshape(3, 1),
        "objTrans": t_gl,
        "objName": OBJECT_NAME,
        "objLabel": 5,
        "objCorners3DRest": control_points(box_points())[:8],
    }
    if wrist_only:
        meta.update(handJoints3D=(joints_mano @ C)[0], handBoundingBox=np.asarray(hand_box, np.float64),
                    handPose=None, handBeta=None, handTrans=None)
    else:
        meta.update(handJoints3D=joints_mano @ C, handPose=pose_gl, handBeta=scene.shape.copy(),
                    handTrans=np.zeros(3))
    return meta


def write_frame(root: Path, split: str, seq: str, fid: str, scene: Scene, *, suffix: str, wrist_only: bool,
                seg: bool = True) -> tuple[np.ndarray, np.ndarray]:
    from hfl_ros.geometry.camera import project

    seq_dir = root / split / seq
    for sub in ("rgb", "meta", "seg"):
        (seq_dir / sub).mkdir(parents=True, exist_ok=True)
    image, mask = render(scene)
    j2d = project(scene.joints, K)
    hand_box = np.concatenate([j2d.min(0) - 3, j2d.max(0) + 3])
    assert cv2.imwrite(str(seq_dir / "rgb" / f"{fid}{suffix}"), image[..., ::-1])
    if seg:
        seg_img = np.zeros(image.shape, np.uint8)
        seg_img[mask, 1] = 255  # object green (BGR order: channel 1 is green either way)
        cv2.imwrite(str(seq_dir / "seg" / f"{fid}.png"), seg_img)
    with (seq_dir / "meta" / f"{fid}.pkl").open("wb") as f:
        pickle.dump(ho3d_meta(scene, wrist_only=wrist_only, hand_box=hand_box), f, protocol=2)
    return image, hand_box


def write_tiny_ho3d(root: Path, *, n_train: int = 2, n_eval: int = 1, version: str = "v2", seed: int = 0,
                    mano_layer=None) -> dict:
    """A tiny HO3D dataset; returns the scenes and images by frame key."""
    rng = np.random.default_rng(seed)
    suffix = ".png" if version == "v2" else ".jpg"
    write_models(root / "models")
    info: dict[str, dict] = {}
    for split, count, wrist_only in (("train", n_train, False), ("evaluation", n_eval, True)):
        keys = []
        for i in range(count):
            seq, fid = f"SEQ{i % 2}", f"{i:04d}"
            scene = random_scene(rng, mano_layer)
            image, hand_box = write_frame(root, split, seq, fid, scene, suffix=suffix, wrist_only=wrist_only)
            keys.append(f"{seq}/{fid}")
            info[f"{split}:{seq}/{fid}"] = {"scene": scene, "image": image, "hand_box": hand_box}
        (root / f"{split}.txt").write_text("".join(k + "\n" for k in keys))
    return info


def _project_opengl(points_gl: np.ndarray) -> np.ndarray:
    """HO3D's own projection of OpenGL-axes points: u = fx x / -z + cx, v = -fy y / -z + cy."""
    x, y, z = points_gl.T
    return np.stack([K[0, 0] * x / -z + K[0, 2], -K[1, 1] * y / -z + K[1, 2]], 1)


def test_v2_train_split_reads_back_exactly(tmp_path):
    info = write_tiny_ho3d(tmp_path, n_train=3, n_eval=1, version="v2")
    ds = HO3DDataset(tmp_path, "train")
    assert ds.frame_keys == ["SEQ0/0000", "SEQ1/0001", "SEQ0/0002"]
    for index, key in enumerate(ds.frame_keys):
        s, truth = ds[index], info[f"train:{key}"]
        scene = truth["scene"]
        assert s.side is Side.RIGHT and s.class_id == "5" and s.object_name == OBJECT_NAME
        assert s.image_path.suffix == ".png"
        np.testing.assert_array_equal(s.load_image(), truth["image"])  # png is lossless
        np.testing.assert_allclose(s.K, K)
        np.testing.assert_allclose(s.joints3d, scene.joints, atol=1e-12)
        np.testing.assert_allclose(s.object_R, scene.R, atol=1e-12)
        np.testing.assert_allclose(s.object_t, scene.t, atol=1e-12)
        np.testing.assert_allclose(
            axis_angle_to_matrix(s.mano_pose[:3]), axis_angle_to_matrix(scene.pose[:3]), atol=1e-9
        )
        np.testing.assert_allclose(s.mano_pose[3:], scene.pose[3:], atol=1e-12)
        np.testing.assert_allclose(s.mano_shape, scene.shape)
        np.testing.assert_allclose(s.control_points3d, control_points(box_points()), atol=1e-6)
        # The 2D points follow HO3D's own OpenGL projection of the raw annotations.
        meta = ho3d_meta(scene, wrist_only=False)
        R_gl = axis_angle_to_matrix(meta["objRot"].ravel())
        cp_gl = control_points(box_points()) @ R_gl.T + meta["objTrans"]
        np.testing.assert_allclose(s.control_points2d, _project_opengl(cp_gl), atol=1e-4)
        joints_gl_out = meta["handJoints3D"][list(MANO_TO_OUTPUT_ORDER)]
        np.testing.assert_allclose(s.joints2d, _project_opengl(joints_gl_out), atol=1e-6)
        np.testing.assert_allclose(s.hand_box, [*s.joints2d.min(0), *s.joints2d.max(0)])
        np.testing.assert_allclose(s.hand_translation, scene.joints[0])
        _, mask = render(scene)
        np.testing.assert_array_equal(s.object_mask, mask)
        assert s.meta["frame_key"] == key and s.meta["dataset"] == "ho3d"


def test_v3_jpg_and_evaluation_split_with_wrist_only(tmp_path):
    info = write_tiny_ho3d(tmp_path, n_train=1, n_eval=2, version="v3")
    train = HO3DDataset(tmp_path, "train")
    assert train[0].image_path.suffix == ".jpg"
    diff = np.abs(train[0].load_image().astype(int) - info["train:SEQ0/0000"]["image"].astype(int))
    assert diff.mean() < 3.0  # jpeg
    assert HO3DDataset(tmp_path, "train", version="v2")[0].image_path.suffix == ".png"  # forced, absent
    with pytest.raises(AssetError, match="no image"):
        train.image_path(HO3DFrame("SEQ0", "9999"))

    ev = HO3DDataset(tmp_path, "evaluation")
    assert len(ev) == 2
    for index, key in enumerate(ev.frame_keys):
        s, truth = ev[index], info[f"evaluation:{key}"]
        np.testing.assert_allclose(s.hand_box, truth["hand_box"])
        np.testing.assert_allclose(s.joints3d[0], truth["scene"].joints[0], atol=1e-12)
        assert np.isnan(s.joints3d[1:]).all() and np.isnan(s.mano_pose).all() and np.isnan(s.mano_shape).all()
        np.testing.assert_allclose(s.object_t, truth["scene"].t, atol=1e-12)


def test_listing_without_split_files_and_bad_input(tmp_path):
    write_tiny_ho3d(tmp_path, n_train=2, n_eval=0)
    os.remove(tmp_path / "train.txt")
    assert HO3DDataset(tmp_path, "train").frame_keys == ["SEQ0/0000", "SEQ1/0001"]
    with pytest.raises(InputError, match="split"):
        HO3DDataset(tmp_path, "test")
    with pytest.raises(AssetError, match="does not exist"):
        HO3DDataset(tmp_path / "missing", "train")
    (tmp_path / "train.txt").write_text("SEQ0-0000\n")
    with pytest.raises(AssetError, match="SEQ/ID"):
        HO3DDataset(tmp_path, "train")


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_meta_pickle_with_foreign_objects_is_refused(tmp_path):
    write_tiny_ho3d(tmp_path, n_train=1, n_eval=0)
    meta = tmp_path / "train" / "SEQ0" / "meta" / "0000.pkl"
    meta.write_bytes(pickle.dumps({"camMat": _Evil()}, protocol=2))
    with pytest.raises(AssetError, match="refusing to load"):
        HO3DDataset(tmp_path, "train")[0]


def test_official_json_records(tmp_path):
    info = write_tiny_ho3d(tmp_path, n_train=2, n_eval=0)
    scene = info["train:SEQ1/0001"]["scene"]
    meta = ho3d_meta(scene, wrist_only=False)
    cp2d = np.arange(42, dtype=float).reshape(21, 2)
    record = {
        "seqName_id": "SEQ1/0001",
        "K": K.tolist(),
        "joints_3d": (meta["handJoints3D"] @ C).tolist(),  # OpenCV axes, MANO order
        "mano_params": [*meta["handPose"], *scene.shape],
        "obj_p2ds": cp2d.tolist(),
    }
    (tmp_path / "ho3d_train_data.json").write_text(json.dumps([record]))
    ds = HO3DDataset(tmp_path, "train")
    assert ds.frame_keys == ["SEQ1/0001"]
    s = ds[0]
    assert s.meta["from_json"]
    np.testing.assert_allclose(s.joints3d, scene.joints, atol=1e-12)
    np.testing.assert_allclose(axis_angle_to_matrix(s.mano_pose[:3]), axis_angle_to_matrix(scene.pose[:3]),
                               atol=1e-9)
    np.testing.assert_allclose(s.control_points2d, cp2d)
    np.testing.assert_allclose(s.object_R, scene.R, atol=1e-12)
    assert len(HO3DDataset(tmp_path, "train", use_json=False)) == 2


def test_opengl_conversion_matrix():
    np.testing.assert_array_equal(OPENGL_TO_OPENCV, C)
