"""The synthetic scene generator: determinism, self-consistent ground truth and the HO3D-layout export."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from hfl_ros.data.ho3d import HO3DDataset
from hfl_ros.data.ho3d_export import write_ho3d_split
from hfl_ros.data.shapes import object_shapes
from hfl_ros.data.synthetic import SceneConfig, SyntheticScenes
from hfl_ros.geometry.camera import project
from hfl_ros.geometry.object_models import ObjectModelLibrary
from hfl_ros.hand_joints import MANO_TO_OUTPUT_ORDER
from hfl_ros.model.mano import ManoLayer
from hfl_ros.safe_pickle import load_numpy_pickle

SIZE = (224, 168)
#: How far (px) a projected point may lie outside the mask it belongs to (rasterisation at silhouette edges).
TOLERANCE_PX = 2.0


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    torch.set_num_threads(1)
    with SyntheticScenes(tmp_path_factory.mktemp("assets"), SceneConfig(image_size=SIZE), seed=7) as gen:
        yield gen


@pytest.fixture(scope="module")
def samples(scenes):
    return [scenes.sample(i) for i in range(6)]


def _distance_outside(mask: np.ndarray) -> np.ndarray:
    """Per pixel, the distance (px) to the nearest pixel of ``mask`` (0 inside it)."""
    return cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 5)


def _max_distance(mask: np.ndarray, points: np.ndarray) -> float:
    dist = _distance_outside(mask)
    height, width = mask.shape
    px = np.clip(np.rint(points).astype(int), 0, [width - 1, height - 1])
    return float(dist[px[:, 1], px[:, 0]].max())


def test_same_seed_gives_identical_pixels_and_annotations(scenes, samples, tmp_path):
    with SyntheticScenes(tmp_path / "other_cache", SceneConfig(image_size=SIZE), seed=7) as again:
        repeat = again.sample(2)
    first = samples[2]
    assert repeat.image.tobytes() == first.image.tobytes()
    assert np.array_equal(repeat.hand_mask, first.hand_mask) and np.array_equal(
        repeat.object_mask, first.object_mask
    )
    for name in (
        "K",
        "mano_pose",
        "mano_shape",
        "joints3d",
        "joints2d",
        "object_R",
        "object_t",
        "control_points2d",
        "hand_box",
        "object_box",
        "verts3d",
    ):
        assert np.array_equal(getattr(repeat, name), getattr(first, name)), name
    assert repeat.class_id == first.class_id


def test_different_indices_and_seeds_differ(scenes, samples, tmp_path):
    assert samples[0].image.tobytes() != samples[1].image.tobytes()
    assert not np.allclose(samples[0].joints3d, samples[1].joints3d)
    with SyntheticScenes(tmp_path / "cache", SceneConfig(image_size=SIZE), seed=8) as other:
        assert other.sample(2).image.tobytes() != samples[2].image.tobytes()


def test_sample_fields_and_frames(samples):
    for s in samples:
        assert s.image.shape == (SIZE[1], SIZE[0], 3) and s.image.dtype == np.uint8
        assert s.joints3d.shape == (21, 3) and s.verts3d.shape == (778, 3)
        assert s.mano_pose.shape == (48,) and s.mano_shape.shape == (10,)
        assert s.class_id in object_shapes()
        assert np.allclose(s.object_R @ s.object_R.T, np.eye(3), atol=1e-9) and np.linalg.det(s.object_R) > 0
        assert np.all(s.joints3d[:, 2] > 0.2)  # in front of the camera, OpenCV axes (z forward)
        assert np.allclose(s.joints2d, project(s.joints3d, s.K))
        assert np.allclose(s.control_points2d, project(s.control_points3d @ s.object_R.T + s.object_t, s.K))
        assert np.allclose(s.hand_box, [*s.joints2d.min(0), *s.joints2d.max(0)])
        assert np.allclose(s.hand_translation, s.joints3d[0])


def test_objects_are_held_upright_within_the_configured_tilt(samples):
    up = np.array([0.0, -1.0, 0.0])  # OpenCV camera axes: image up is -y
    limit = SceneConfig().max_tilt_deg
    for s in samples:
        tilt = np.degrees(np.arccos(np.clip((s.object_R @ [0.0, 0.0, 1.0]) @ up, -1.0, 1.0)))
        assert tilt <= limit + 1e-6, f"object up axis tilted {tilt:.1f} deg > {limit} deg"


def test_upright_rotation_spans_the_tilt_cone_and_every_spin():
    from hfl_ros.data.synthetic import _upright_rotation

    rng = np.random.default_rng(3)
    rotations = [_upright_rotation(rng, 50.0) for _ in range(400)]
    tilts = [np.degrees(np.arccos(-(R @ [0.0, 0.0, 1.0])[1])) for R in rotations]
    assert max(tilts) <= 50.0 + 1e-6 and max(tilts) > 40.0
    # the spin about the up axis is free: the model x axis points both towards and away from the camera
    towards = [(R @ [1.0, 0.0, 0.0])[2] for R in rotations]
    assert min(towards) < -0.8 and max(towards) > 0.8
    assert all(np.allclose(R @ R.T, np.eye(3), atol=1e-9) and np.linalg.det(R) > 0 for R in rotations)


def test_projected_joints_and_control_points_fall_in_the_rendered_masks(scenes, samples):
    for s in samples:
        hand_full, object_full = s.meta["hand_mask_full"], s.meta["object_mask_full"]
        # visible masks: inside the un-occluded ones, disjoint, and together covering both
        assert not np.any(s.hand_mask & ~hand_full) and not np.any(s.object_mask & ~object_full)
        assert not np.any(s.hand_mask & s.object_mask)
        assert np.array_equal(s.hand_mask | s.object_mask, hand_full | object_full)
        assert s.hand_mask.sum() > 0 and s.object_mask.sum() > 0
        assert _max_distance(hand_full, s.joints2d[1:]) <= TOLERANCE_PX
        # the stand-in hand's wrist joint sits at its open wrist end, up to about 1 cm outside the mesh
        wrist_tolerance = TOLERANCE_PX + s.K[0, 0] * 0.01 / s.joints3d[0, 2]
        assert _max_distance(hand_full, s.joints2d[:1]) <= wrist_tolerance
        points = scenes.shapes[s.class_id].points @ s.object_R.T + s.object_t
        assert _max_distance(object_full, project(points, s.K)) <= TOLERANCE_PX
        assert _max_distance(object_full, s.control_points2d[20:]) <= TOLERANCE_PX  # the centre
        # the hand holds the object: some hand vertex is within 2 cm of the object's surface
        gaps = np.linalg.norm(s.verts3d[:, None] - points[None, ::20], axis=2)
        assert gaps.min() < 0.02


def test_box_corners_are_on_the_rendered_box(tmp_path):
    with SyntheticScenes(tmp_path, SceneConfig(image_size=SIZE, class_ids=("2",)), seed=3) as gen:
        for i in range(3):
            s = gen.sample(i)
            assert s.class_id == "2"
            assert _max_distance(s.meta["object_mask_full"], s.control_points2d) <= TOLERANCE_PX


def test_mano_parameters_reproduce_the_joints_and_vertices(scenes, samples):
    layer = ManoLayer(scenes.hand_model_dir, side="right", center_idx=None)
    for s in samples:
        with torch.no_grad():
            verts, joints = layer(
                torch.tensor(s.mano_pose[None], dtype=torch.float32),
                torch.tensor(s.mano_shape[None], dtype=torch.float32),
            )
        trans = s.meta["mano_trans"]
        assert np.abs(joints[0].numpy() + trans - s.joints3d).max() < 1e-5
        assert np.abs(verts[0].numpy() + trans - s.verts3d).max() < 1e-5


def test_object_models_load_with_the_library(scenes, samples):
    library = ObjectModelLibrary(scenes.object_model_dir)
    assert sorted(library.class_ids) == sorted(object_shapes())
    for s in samples:
        model = library.get(s.class_id)
        assert np.allclose(model.control_points, s.control_points3d, atol=1e-9)
    # YCB-like sizes (m): cracker box 16 x 6 x 21 cm, soup can 6.7 x 10 cm
    assert np.allclose(sorted(library.get("2").extents), [0.06, 0.158, 0.21], atol=0.002)
    assert np.allclose(sorted(library.get("4").extents), [0.067, 0.067, 0.1015], atol=0.002)


def test_ho3d_export_reads_back_with_the_ho3d_reader(scenes, samples, tmp_path):
    root = tmp_path / "ho3d"
    keys = write_ho3d_split(root, "train", samples[:4], frames_per_sequence=3, image_format="png")
    assert keys == ["SYN000/0000", "SYN000/0001", "SYN000/0002", "SYN001/0000"]
    assert len(write_ho3d_split(root, "evaluation", samples[4:], image_format="jpg")) == 2
    train = HO3DDataset(root, "train")
    assert train.frame_keys == ["SYN000/0000", "SYN000/0001", "SYN000/0002", "SYN001/0000"]
    for s, r in zip(samples, train):
        for name in (
            "K",
            "mano_pose",
            "mano_shape",
            "joints3d",
            "joints2d",
            "object_R",
            "object_t",
            "control_points3d",
            "control_points2d",
            "hand_box",
            "object_box",
        ):
            assert np.allclose(getattr(r, name), getattr(s, name), atol=1e-9), name
        assert (r.class_id, r.object_name) == (s.class_id, s.object_name)
        assert np.array_equal(r.load_image(), s.image)  # png is lossless
        assert np.array_equal(r.hand_mask, s.hand_mask) and np.array_equal(r.object_mask, s.object_mask)
    # HO3D's definition: MANO(handPose, handBeta) joints + handTrans = handJoints3D, all in OpenGL axes
    layer = ManoLayer(scenes.hand_model_dir, side="right", center_idx=None)
    for frame in train.frames:
        meta = load_numpy_pickle(train.meta_path(frame))
        with torch.no_grad():
            _, joints = layer(
                torch.tensor(meta["handPose"][None], dtype=torch.float32),
                torch.tensor(meta["handBeta"][None], dtype=torch.float32),
            )
        in_mano_order = np.empty((21, 3))
        in_mano_order[list(MANO_TO_OUTPUT_ORDER)] = joints[0].numpy() + meta["handTrans"]
        assert np.abs(in_mano_order - meta["handJoints3D"]).max() < 1e-5
    evaluation = HO3DDataset(root, "evaluation")
    for s, r in zip(samples[4:], evaluation):
        assert np.allclose(r.hand_box, s.hand_box) and np.allclose(r.joints3d, s.joints3d)  # full hand kept
        assert np.allclose(r.object_t, s.object_t)
        assert r.image_path.suffix == ".jpg"
        assert np.abs(r.load_image().astype(int) - s.image).mean() < 4.0  # jpeg


def test_unknown_class_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no synthetic object for class ids"):
        SyntheticScenes(tmp_path, SceneConfig(class_ids=("2", "99")))


def test_stale_cached_assets_are_replaced(tmp_path):
    hand = tmp_path / "hand_models" / "STANDIN_HAND_RIGHT.pkl"
    points = tmp_path / "object_models" / "4" / "points.xyz"
    for path in (hand, points):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"left over from an older version")
    with SyntheticScenes(tmp_path, SceneConfig(image_size=SIZE)) as gen:
        assert gen.sample(0).joints3d.shape == (21, 3)  # would fail to load the stale hand model
    assert hand.read_bytes() != b"left over from an older version"
    assert np.loadtxt(points).shape == (2621, 3)


def test_make_dataset_writes_the_same_files_for_any_worker_count(tmp_path):
    from hfl_ros.demo.make_dataset import make_dataset

    trees = {}
    for workers in (1, 2):
        root = tmp_path / f"workers{workers}"
        counts = make_dataset(root, train=3, evaluation=2, image_size=SIZE, progress=False, workers=workers)
        assert counts == {"train": 3, "evaluation": 2}
        trees[workers] = {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    assert trees[1].keys() == trees[2].keys() and trees[1] == trees[2]
    keys = (tmp_path / "workers1" / "train.txt").read_text().split()
    assert keys == ["S0_000/0000", "S0_000/0001", "S0_000/0002"]
