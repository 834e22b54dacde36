"""Test helpers shared by the ROS conversion, builder and node tests (no pytest fixtures here)."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from hfl_ros.results import HandEstimate, HandObjectResult, ObjectEstimate, Side, Status

REPO = Path(__file__).resolve().parents[1]


@functools.lru_cache(maxsize=1)
def rosbags_typestore():
    """A rosbags Kilted typestore with vision_msgs and hfl_ros registered from the repository's .msg files."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    extra = {}
    sources = (("vision_msgs", REPO / "interfaces" / "vision_msgs" / "msg"), ("hfl_ros", REPO / "msg"))
    for pkg, directory in sources:
        for path in sorted(directory.glob("*.msg")):
            extra.update(get_types_from_msg(path.read_text(), f"{pkg}/msg/{path.stem}"))
    store.register(extra)
    return store


def module_domain_id(module_name: str) -> int:
    """A ROS_DOMAIN_ID in 1..100 for one test module, spread by pid so that parallel runs differ."""
    return 1 + (os.getpid() * 11 + sum(map(ord, module_name)) * 3 + 50) % 100


def rotation_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def make_result(side: str = "right", *, status: Status = Status.OK, translation_valid: bool = True,
                with_object: bool = True, object_valid: bool = True, class_id: str = "3",
                object_box=(60.0, 40.0, 120.0, 110.0), seed: int = 0) -> HandObjectResult:
    """A synthetic, fully populated result with distinct values in every field."""
    rng = np.random.default_rng(seed)
    wrist_t = np.array([0.05, -0.02, 0.6]) + rng.normal(0, 0.01, 3)
    joints = wrist_t + rng.normal(0, 0.04, (21, 3))
    joints[0] = wrist_t
    hand = HandEstimate(
        side=Side(side), box=np.array([10.0, 20.0, 70.0, 100.0]) + seed, detection_score=0.9,
        estimate_score=0.7, joints3d=joints, verts3d=wrist_t + rng.normal(0, 0.05, (778, 3)),
        joints2d=rng.uniform(0, 150, (21, 2)), wrist_rotation=rotation_z(0.3 + seed),
        wrist_translation=wrist_t, translation_valid=translation_valid, reprojection_error_px=1.5,
        mano_pose=rng.normal(0, 0.3, 48), mano_shape=rng.normal(0, 1, 10))
    obj = None
    if with_object:
        obj = ObjectEstimate(
            class_id=class_id, box=np.asarray(object_box, dtype=float), score=0.8, valid=object_valid,
            rotation=rotation_z(-0.5), translation=np.array([0.1, 0.0, 0.7]),
            control_points_2d=rng.uniform(0, 150, (21, 2)), inlier_count=15, vote_count=20,
            reprojection_error_px=2.0, estimate_score=0.75)
    return HandObjectResult(status=status, hand=hand, object=obj, status_message="" if status is Status.OK
                            else f"status {status.name}")


# ---------------------------------------------------------------------------------------------------------
# Node test assets and frames

#: Camera of the synthetic frames: 160 x 120 pixels.
IMAGE_W, IMAGE_H = 160, 120
K_TEST = np.array([[200.0, 0.0, 80.0], [0.0, 200.0, 60.0], [0.0, 0.0, 1.0]])

#: The poses the rigged node (rigged_perception_node.py) makes its network's 2D outputs agree with.
HAND_T = np.array([0.01, 0.02, 0.5])
OBJECT_R = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # 90 degrees about z
OBJECT_T = np.array([-0.02, 0.01, 0.45])

#: The object model of class "3": a 10 x 6 x 4 cm box (points, plus a 12-triangle mesh).
OBJECT_EXTENTS = np.array([0.10, 0.06, 0.04])


def write_object_models(directory: Path) -> Path:
    """``<directory>/3/points.xyz`` and ``<directory>/3/box.obj``: a box of OBJECT_EXTENTS, centred."""
    rng = np.random.default_rng(5)
    half = OBJECT_EXTENTS / 2
    points = rng.uniform(-half, half, (400, 3))
    corners = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]) * half
    points = np.vstack([points, corners])
    model_dir = directory / "3"
    model_dir.mkdir(parents=True, exist_ok=True)
    np.savetxt(model_dir / "points.xyz", points, fmt="%.6f")
    faces = [(0, 1, 3), (0, 3, 2), (4, 6, 7), (4, 7, 5), (0, 4, 5), (0, 5, 1),
             (2, 3, 7), (2, 7, 6), (0, 2, 6), (0, 6, 4), (1, 5, 7), (1, 7, 3)]
    lines = [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in corners] + [f"f {a + 1} {b + 1} {c + 1}"
                                                                     for a, b, c in faces]
    (model_dir / "box.obj").write_text("\n".join(lines) + "\n")
    return directory


def make_node_assets(directory: Path) -> dict[str, str]:
    """Stand-in hand models, a random-weight checkpoint of the smallest network and the object models."""
    import torch

    from hfl_ros.data.standin_hand import write_standin_hand_model
    from hfl_ros.model.checkpoint import save_checkpoint
    from hfl_ros.model.hflnet import hflnet_resnet18

    torch.manual_seed(0)
    mano_dir = directory / "hand_model"
    right = write_standin_hand_model(mano_dir / "STANDIN_HAND_RIGHT.pkl", "right", 0)
    write_standin_hand_model(mano_dir / "STANDIN_HAND_LEFT.pkl", "left", 0)
    net = hflnet_resnet18(mano_path=right, variant="single", input_size=128)
    checkpoint = save_checkpoint(directory / "random_weights.pt", net, {"purpose": "test"})
    objects = write_object_models(directory / "objects")
    return {"checkpoint_path": str(checkpoint), "mano_dir": str(mano_dir), "object_models_dir": str(objects)}


def reliable_inputs(image: str = "/image", camera_info: str = "/camera_info", detections: str = "/detections",
                    depth: int = 10) -> dict[str, object]:
    """``qos_overrides`` parameters making the perception node's three input subscriptions (their topics after
    remapping) reliable and ``depth`` deep, so that a test loses no message to the sensor-data default."""
    from hfl_ros.ros.names import qos_override_parameters

    return {name: value for topic in (image, camera_info, detections)
            for name, value in qos_override_parameters(topic, "subscription", reliability="reliable",
                                                       depth=depth).items()}


def write_params_file(path: Path, values: dict, node_name: str = "/**") -> Path:
    """A ROS 2 params file setting ``values`` for ``node_name``."""
    import yaml

    path.write_text(yaml.safe_dump({node_name: {"ros__parameters": values}}, sort_keys=False))
    return path
