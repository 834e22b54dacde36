"""The Estimator end to end on the CPU with a small random-weight network and the stand-in hand model.

Random weights say nothing about accuracy; these tests check the plumbing: crops, batching, mirroring of
left hands, the mapping back to image pixels, PnP and the translation fit (with a scripted network whose
outputs are made consistent with a known scene), and the handling of bad input.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import trimesh
from torch import nn

from hfl_ros.data.standin_hand import write_standin_hand_model
from hfl_ros.errors import (
    BadBoxError,
    BadCameraError,
    BadImageError,
    CheckpointError,
    HandModelError,
    UnknownObjectClassError,
)
from hfl_ros.estimator import Estimator, ReducedPrecisionNetworkError, pair_object
from hfl_ros.geometry.boxes import scale_box
from hfl_ros.geometry.camera import project
from hfl_ros.geometry.crop import mirror_box, mirror_image, mirror_K, mirror_points_2d
from hfl_ros.geometry.object_models import ObjectModelLibrary
from hfl_ros.geometry.rotations import MIRROR_X, axis_angle_to_matrix, mirror_mano_pose
from hfl_ros.model.hflnet import HFLNet, hflnet_resnet18
from hfl_ros.param_spec import ParameterError
from hfl_ros.results import Detection, Side, Status

torch.set_num_threads(1)

WIDTH, HEIGHT = 640, 480
K = np.array([[600.0, 0.0, 318.0], [0.0, 605.0, 242.0], [0.0, 0.0, 1.0]])
RIGHT_BOX = np.array([100.0, 150.0, 220.0, 300.0])
LEFT_BOX = np.array([400.0, 140.0, 530.0, 310.0])
MUG_BOX = np.array([180.0, 180.0, 460.0, 320.0])  # overlaps both hands
INPUT_SIZE = 128


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("assets")
    mano = root / "mano"
    mano.mkdir()
    write_standin_hand_model(mano / "STANDIN_HAND_RIGHT.pkl", "right", 0)
    models = root / "models"
    (models / "mug").mkdir(parents=True)
    trimesh.creation.box(extents=(0.08, 0.1, 0.12)).export(models / "mug" / "textured_simple.obj")
    (models / "can").mkdir()
    can = np.random.default_rng(0).uniform(-1, 1, (200, 3)) * [0.03, 0.03, 0.05]
    np.savetxt(models / "can" / "points.xyz", can)
    return {"root": root, "mano": mano, "models": models}


@pytest.fixture(scope="module")
def net(assets) -> HFLNet:
    torch.manual_seed(0)
    net = hflnet_resnet18(mano_path=assets["mano"] / "STANDIN_HAND_RIGHT.pkl", input_size=INPUT_SIZE)
    # The official head init (std 0.001) gives nearly constant outputs; PyTorch's default init makes the
    # heat maps, votes and confidences depend on the image, which the mirroring checks need.
    with torch.no_grad():
        for head in (net.hand_head, net.obj_head, net.transformer_obj, net.transformer_hand):
            for m in head.modules():
                if isinstance(m, nn.Conv2d | nn.Linear):
                    m.reset_parameters()
    return net.eval()


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(1)
    small = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    return np.kron(small, np.ones((16, 16, 1), dtype=np.uint8))  # 480 x 640 blocks: structure at crop scale


def _estimator(net, assets, **kwargs) -> Estimator:
    return Estimator(net=net, mano_dir=assets["mano"], object_models=assets["models"], device="cpu", **kwargs)


def _detections():
    return [
        Detection.hand(RIGHT_BOX, "right", 0.9),
        Detection.hand(LEFT_BOX, "left", 0.8),
        Detection.object(MUG_BOX, "mug", 0.7),
    ]


def _assert_well_formed(result, with_vertices=True):
    hand = result.hand
    assert hand.joints3d.shape == (21, 3) and hand.joints2d.shape == (21, 2)
    assert hand.verts3d.shape == ((778, 3) if with_vertices else (0, 3))
    assert hand.mano_pose.shape == (48,) and hand.mano_shape.shape == (10,)
    for array in (
        hand.joints3d,
        hand.joints2d,
        hand.verts3d,
        hand.wrist_rotation,
        hand.mano_pose,
        hand.mano_shape,
    ):
        assert np.all(np.isfinite(array))
    np.testing.assert_allclose(hand.wrist_rotation @ hand.wrist_rotation.T, np.eye(3), atol=1e-5)
    assert np.linalg.det(hand.wrist_rotation) == pytest.approx(1.0, abs=1e-5)
    assert 0.0 <= hand.estimate_score <= 1.0
    if hand.translation_valid:
        np.testing.assert_allclose(hand.joints3d[0], hand.wrist_translation, atol=1e-9)
        assert hand.wrist_translation[2] > 0 and np.isfinite(hand.reprojection_error_px)
    else:
        np.testing.assert_allclose(hand.joints3d[0], 0.0, atol=1e-9)
        assert result.status in (Status.TRANSLATION_FAILED, Status.PNP_FAILED, Status.BAD_INPUT)
    obj = result.object
    if obj is None:
        assert result.status in (Status.NO_OBJECT_PAIRED, Status.TRANSLATION_FAILED)
        return
    assert obj.control_points_2d.shape == (21, 2) and np.all(np.isfinite(obj.control_points_2d))
    if obj.valid:
        np.testing.assert_allclose(obj.rotation @ obj.rotation.T, np.eye(3), atol=1e-9)
        assert obj.translation[2] > 0
        assert 4 <= obj.inlier_count <= obj.vote_count <= 210
        assert obj.estimate_score == pytest.approx(obj.inlier_count / obj.vote_count)
    else:
        assert result.status in (Status.PNP_FAILED, Status.BAD_INPUT)
        assert obj.estimate_score == 0.0
    if result.status is Status.OK:
        assert obj.valid and hand.translation_valid


# --- end to end with random weights -----------------------------------------------------------------------


def test_end_to_end_random_weights(net, assets, image):
    estimator = _estimator(net, assets)
    assert estimator.device == "cpu"
    results = estimator.estimate(image, K, _detections())
    assert [r.hand.side for r in results] == [Side.RIGHT, Side.LEFT]
    for result, box, score in zip(results, (RIGHT_BOX, LEFT_BOX), (0.9, 0.8)):
        _assert_well_formed(result)
        np.testing.assert_array_equal(result.hand.box, box)
        assert result.hand.detection_score == pytest.approx(score)
        assert result.object is not None and result.object.class_id == "mug"  # one object serves both hands
        assert result.error is None
    assert estimator.hand_faces("right").shape == (1538, 3)
    # no left model file in the directory: the left faces are the right ones with flipped winding
    np.testing.assert_array_equal(estimator.hand_faces(Side.LEFT), estimator.hand_faces("right")[:, ::-1])


def test_without_vertices_and_thresholds(net, assets, image):
    estimator = _estimator(
        net, assets, with_vertices=False, hand_score_threshold=0.85, object_score_threshold=0.75
    )
    results = estimator.estimate(image, K, _detections())
    assert len(results) == 1 and results[0].hand.side is Side.RIGHT  # the 0.8 left hand is skipped
    assert results[0].object is None  # the 0.7 object is ignored
    assert results[0].status in (Status.NO_OBJECT_PAIRED, Status.TRANSLATION_FAILED)
    assert "no object box overlaps the hand" in results[0].status_message
    _assert_well_formed(results[0], with_vertices=False)


def test_left_faces_from_the_left_model_file(net, assets, tmp_path):
    mano = tmp_path / "mano"
    mano.mkdir()
    write_standin_hand_model(mano / "STANDIN_HAND_LEFT.pkl", "left", 0)
    from hfl_ros.model.mano import load_hand_model_file

    estimator = Estimator(net=net, mano_dir=mano, device="cpu")
    expected = load_hand_model_file(mano / "STANDIN_HAND_LEFT.pkl")["f"]
    np.testing.assert_array_equal(estimator.hand_faces("left"), expected)


# --- mirroring -------------------------------------------------------------------------------------------


class SpyNet(nn.Module):
    """Runs the real network and records every batch it sees."""

    def __init__(self, inner: HFLNet):
        super().__init__()
        self.inner = inner
        self.calls: list[dict] = []

    @property
    def input_size(self) -> int:
        return self.inner.input_size

    @property
    def mano_branch(self) -> nn.Module:
        return self.inner.mano_branch

    def forward(self, images, hand_boxes, object_boxes):
        out = dict(self.inner(images, hand_boxes, object_boxes))
        self.calls.append(
            {"images": images.clone(), "hand_boxes": hand_boxes.clone(), "object_boxes": object_boxes.clone()}
        )
        return out


def test_left_hand_is_the_mirrored_right_hand(net, assets, image):
    spy = SpyNet(net)
    estimator = _estimator(spy, assets)
    (left,) = estimator.estimate(
        image, K, [Detection.hand(LEFT_BOX, "left"), Detection.object(MUG_BOX, "mug")]
    )
    mirrored = estimator.estimate(
        mirror_image(image),
        mirror_K(K, WIDTH),
        [
            Detection.hand(mirror_box(LEFT_BOX, WIDTH), "right"),
            Detection.object(mirror_box(MUG_BOX, WIDTH), "mug"),
        ],
    )[0]
    first, second = spy.calls
    assert torch.equal(first["images"], second["images"])  # the very same crop reaches the network
    assert torch.allclose(first["hand_boxes"], second["hand_boxes"])
    assert torch.allclose(first["object_boxes"], second["object_boxes"])
    assert left.hand.side is Side.LEFT and mirrored.hand.side is Side.RIGHT

    a, b = left.hand, mirrored.hand
    np.testing.assert_allclose(a.joints2d, mirror_points_2d(b.joints2d, WIDTH), atol=1e-6)
    np.testing.assert_allclose(a.joints3d, b.joints3d * [-1, 1, 1], atol=1e-6)
    np.testing.assert_allclose(a.verts3d, b.verts3d * [-1, 1, 1], atol=1e-6)
    np.testing.assert_allclose(a.wrist_rotation, MIRROR_X @ b.wrist_rotation @ MIRROR_X, atol=1e-6)
    np.testing.assert_allclose(a.mano_pose, mirror_mano_pose(b.mano_pose), atol=1e-6)
    assert a.translation_valid == b.translation_valid
    assert a.estimate_score == pytest.approx(b.estimate_score)
    assert left.object.vote_count == mirrored.object.vote_count > 0
    if not left.object.valid and not mirrored.object.valid:
        np.testing.assert_allclose(
            left.object.control_points_2d,
            mirror_points_2d(mirrored.object.control_points_2d, WIDTH),
            atol=1e-6,
        )


# --- geometry through the whole path, with a scripted network ---------------------------------------------


class ScriptedNet(SpyNet):
    """The real network, its 2D joints and object votes replaced by the exact projections of a known scene.

    For each batch item (in the order the Estimator sends pairs) ``scene`` gives the hand's camera-frame wrist
    position and side, and the object pose. The hand's 3D shape is whatever the network predicts; the 2D
    joints are made consistent with it, so the Estimator must recover the wrist position exactly.
    """

    def __init__(self, inner: HFLNet, scene: list[dict], hand_box_scale: float):
        super().__init__(inner)
        self.scene = scene
        self.hand_box_scale = hand_box_scale
        self.truth: list[dict] = []

    def forward(self, images, hand_boxes, object_boxes):
        out = super().forward(images, hand_boxes, object_boxes)
        joints2d, votes, conf = out["joints2d"].clone(), out["obj_vote"].clone(), out["obj_conf"].clone()
        for i, item in enumerate(self.scene[: len(images)]):
            left = item["side"] == "left"
            # crop transform from the hand box: image px (network frame, mirrored for left) -> crop px
            box_img = scale_box(item["hand_box"], self.hand_box_scale)
            box_img = mirror_box(box_img, WIDTH) if left else box_img
            box_crop = hand_boxes[i].double().numpy()
            s = (box_crop[2] - box_crop[0]) / (box_img[2] - box_img[0])
            offset = box_crop[:2] - s * box_img[:2]

            def to_crop(points_cam, left=left, s=s, offset=offset):
                px = project(points_cam, K)
                return s * (mirror_points_2d(px, WIDTH) if left else px) + offset

            flip = np.array([-1.0, 1.0, 1.0]) if left else np.ones(3)
            joints_cam = out["joints3d"][i].double().numpy() * flip + item["wrist"]
            joints2d[i] = torch.from_numpy(to_crop(joints_cam))
            truth = {"joints_cam": joints_cam, "joints2d": project(joints_cam, K)}
            truth["verts_cam"] = out["verts3d"][i].double().numpy() * flip + item["wrist"]
            rot = out["mano_rotmat"][i, 0].double().numpy()
            truth["wrist_rotation"] = MIRROR_X @ rot @ MIRROR_X if left else rot
            if "object" in item:
                R, t, cp = item["object"]
                ob = object_boxes[i].double().numpy()
                frac = (to_crop(cp @ R.T + t) - ob[:2]) / (ob[2:] - ob[:2])
                votes[i] = torch.from_numpy(frac).float().expand_as(votes[i])
                conf[i] = 0.9
            self.truth.append(truth)
        self.scene = self.scene[len(images) :]
        out.update(joints2d=joints2d, obj_vote=votes, obj_conf=conf)
        return out


def _angle_deg(Ra, Rb) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(Ra.T @ Rb) - 1) / 2, -1, 1))))


def test_scripted_scene_is_recovered(net, assets, image):
    library = ObjectModelLibrary(assets["models"])
    mug_cp = library.get("mug").control_points
    R_obj, t_obj = axis_angle_to_matrix([0.4, -0.7, 0.2]), np.array([0.02, -0.01, 0.55])
    scene = [
        {
            "side": "right",
            "hand_box": RIGHT_BOX,
            "wrist": np.array([-0.12, 0.01, 0.5]),
            "object": (R_obj, t_obj, mug_cp),
        },
        {
            "side": "left",
            "hand_box": LEFT_BOX,
            "wrist": np.array([0.11, -0.02, 0.52]),
            "object": (R_obj, t_obj, mug_cp),
        },
    ]
    scripted = ScriptedNet(net, scene, hand_box_scale=1.1)
    estimator = Estimator(
        net=scripted,
        mano_dir=assets["mano"],
        object_models=library,
        device="cpu",
        object_box_scale=1.25,
        hand_box_scale=1.1,
    )
    results = estimator.estimate(image, K, _detections())
    assert [r.status for r in results] == [Status.OK, Status.OK], [r.status_message for r in results]
    for result, item, truth in zip(results, scene, scripted.truth):
        hand, obj = result.hand, result.object
        assert hand.side.value == item["side"]
        assert np.linalg.norm(hand.wrist_translation - item["wrist"]) < 1e-5
        np.testing.assert_allclose(hand.joints3d, truth["joints_cam"], atol=1e-5)
        np.testing.assert_allclose(hand.verts3d, truth["verts_cam"], atol=1e-5)
        np.testing.assert_allclose(hand.joints2d, truth["joints2d"], atol=1e-3)
        np.testing.assert_allclose(hand.wrist_rotation, truth["wrist_rotation"], atol=1e-6)
        assert hand.reprojection_error_px < 1e-3
        assert obj.valid and obj.inlier_count == obj.vote_count == 210
        assert np.linalg.norm(obj.translation - t_obj) < 1e-3
        assert _angle_deg(obj.rotation, R_obj) < 0.1
        np.testing.assert_allclose(obj.control_points_2d, project(mug_cp @ R_obj.T + t_obj, K), atol=1e-2)


# --- bad input -------------------------------------------------------------------------------------------


def test_bad_pairs_do_not_affect_the_others(net, assets, image):
    estimator = _estimator(net, assets)
    detections = [
        Detection.hand(RIGHT_BOX, "right"),
        Detection.hand([np.nan, 10, 50, 60], "right"),
        Detection.hand([50, 50, 50, 90], "left"),
        Detection.hand([700, 10, 760, 90], "right"),
        Detection.hand([300, 380, 380, 470], "left"),  # paired with the unknown class only
        Detection.hand([600, 20, 660, 120], "right"),  # paired with a 1 px wide object box
        Detection.object(MUG_BOX, "mug"),
        Detection.object([320, 400, 420, 470], "zebra"),
        Detection.object([639, 30, 700, 100], "can"),
    ]
    results = estimator.estimate(image, K, detections)
    assert len(results) == 6
    alone = estimator.estimate(image, K, [detections[0], detections[6]])[0]
    assert results[0].status == alone.status
    np.testing.assert_allclose(results[0].hand.joints2d, alone.hand.joints2d, atol=1e-3)  # float32 batches
    np.testing.assert_allclose(results[0].hand.joints3d, alone.hand.joints3d, atol=1e-5)
    _assert_well_formed(results[0])

    for result, message in zip(results[1:4], ("non-finite", "empty or inverted", "entirely outside")):
        assert result.status is Status.BAD_INPUT
        assert isinstance(result.error, BadBoxError)
        assert "hand box" in str(result.error) and message in str(result.error)
        assert result.status_message == str(result.error)
        np.testing.assert_array_equal(result.hand.joints3d, 0.0)  # not estimated
    assert results[2].hand.side is Side.LEFT

    unknown = results[4]
    assert unknown.status is Status.BAD_INPUT and isinstance(unknown.error, UnknownObjectClassError)
    assert "'zebra'" in str(unknown.error) and "can, mug" in str(unknown.error)
    assert unknown.object is not None and unknown.object.class_id == "zebra" and not unknown.object.valid
    assert np.abs(unknown.hand.joints3d).max() > 0  # the hand is still estimated
    _assert_well_formed(unknown)

    thin = results[5]
    assert thin.status is Status.BAD_INPUT and isinstance(thin.error, BadBoxError)
    assert "object box (class can)" in str(thin.error) and "below the minimum of 2 px" in str(thin.error)
    _assert_well_formed(thin)


def test_objects_without_a_library(net, assets, image):
    estimator = Estimator(net=net, device="cpu")
    (result,) = estimator.estimate(
        image, K, [Detection.hand(RIGHT_BOX, "right"), Detection.object(MUG_BOX, "mug")]
    )
    assert result.status is Status.BAD_INPUT and isinstance(result.error, UnknownObjectClassError)
    assert "no object models are configured" in str(result.error)


@pytest.mark.parametrize(
    ("bad_image", "bad_K", "error", "message"),
    [
        (np.zeros((480, 640, 3), np.float32), K, BadImageError, "dtype float32"),
        (np.zeros((480, 640, 4), np.uint8), K, BadImageError, r"3 channels \(RGB\), got 4"),
        (np.zeros((480, 640), np.uint8), K, BadImageError, "2 dimensions"),
        ("not an image", K, BadImageError, "numpy array"),
        (None, np.zeros((3, 3)), BadCameraError, "positive focal"),
        (None, np.array([[600.0, 600, 320], [600, 600, 240], [0, 0, 1]]), BadCameraError, "singular"),
        (None, np.full((3, 3), np.nan), BadCameraError, "non-finite"),
    ],
)
def test_bad_frames(net, assets, image, bad_image, bad_K, error, message):
    estimator = _estimator(net, assets)
    frame_image = image if bad_image is None else bad_image
    with pytest.raises(error, match=message):
        estimator.estimate(frame_image, bad_K, _detections())


def test_estimate_batch_equals_estimate(net, assets, image):
    estimator = _estimator(net, assets, max_batch=2)
    frames = [
        (image, K, _detections()),
        (image[:, ::-1].copy(), K, [Detection.hand(LEFT_BOX, "right"), Detection.object(MUG_BOX, "can")]),
        (image, K, []),
        (image.astype(np.float32), K, _detections()),
        (image, np.eye(3) * [1, 1, 0], _detections()),
    ]
    batched = estimator.estimate_batch(frames)
    assert isinstance(batched[3], BadImageError) and isinstance(batched[4], BadCameraError)
    assert batched[2] == []
    for frame, results in zip(frames[:3], batched[:3]):
        single = estimator.estimate(*frame)
        assert len(single) == len(results)
        for a, b in zip(single, results):
            assert a.status == b.status and a.hand.side == b.hand.side
            np.testing.assert_allclose(a.hand.joints2d, b.hand.joints2d, atol=1e-4)
            np.testing.assert_allclose(a.hand.joints3d, b.hand.joints3d, atol=1e-4)
            assert (a.object is None) == (b.object is None)
            if a.object is not None:
                assert a.object.valid == b.object.valid and a.object.vote_count == b.object.vote_count
                np.testing.assert_allclose(a.object.control_points_2d, b.object.control_points_2d, atol=1e-3)


def test_pairing_rule():
    hand = np.array([0.0, 0.0, 10.0, 10.0])
    objects = np.array(
        [[5.0, 5.0, 15.0, 15.0], [0.0, 0.0, 10.0, 10.0], [np.nan, 0, 1, 1], [20, 20, 30, 30.0]]
    )
    assert pair_object(hand, objects) == 1
    assert pair_object(hand, objects[[0, 2, 3]]) == 0
    assert pair_object(hand, objects[[2, 3]]) is None
    assert pair_object(hand, np.zeros((0, 4))) is None
    # equal IoU: the larger overlap wins
    tie = np.array([[0.0, 0.0, 5.0, 10.0], [0.0, 0.0, 10.0, 20.0]])  # IoU 0.5 each, overlap 50 vs 100
    assert pair_object(hand, tie) == 1


# --- construction ------------------------------------------------------------------------------------------


def test_constructor_errors(net, assets, tmp_path):
    with pytest.raises(CheckpointError, match="needs a checkpoint"):
        Estimator(device="cpu")
    with pytest.raises(CheckpointError, match="not found"):
        Estimator(checkpoint_path=tmp_path / "missing.pth.tar", device="cpu")
    corrupt = tmp_path / "corrupt.pth.tar"
    corrupt.write_bytes(b"\x80\x02 not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        Estimator(checkpoint_path=corrupt, device="cpu")
    with pytest.raises(HandModelError, match="does not exist"):
        Estimator(net=net, mano_dir=tmp_path / "no_mano", device="cpu")
    with pytest.warns(RuntimeWarning, match="fp16 needs CUDA"):
        assert Estimator(net=net, device="cpu", fp16=True).fp16 is False


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_half_precision_network_is_refused(net, assets, dtype):
    half = copy.deepcopy(net).to(dtype)
    with pytest.raises(ReducedPrecisionNetworkError, match=r"float32 network.*fp16=True") as info:
        _estimator(half, assets)
    assert str(dtype) in str(info.value) and info.value.reason == "reduced_precision_network"
    half.mano_branch.float()  # MANO alone in float32 is not enough either
    with pytest.raises(ReducedPrecisionNetworkError, match="base_net"):
        _estimator(half, assets)


def test_warm_up_runs_the_whole_path_and_changes_nothing(net, assets, image):
    spy = SpyNet(net)
    estimator = _estimator(spy, assets, max_batch=2)
    before = estimator.estimate(image, K, _detections())
    seconds = estimator.warm_up(batch_sizes=(1, 2, 5), repeats=1)
    assert seconds > 0
    assert [len(call["images"]) for call in spy.calls[1:]] == [1, 2, 2]  # batches capped at max_batch
    after = estimator.estimate(image, K, _detections())
    for a, b in zip(before, after):
        assert a.status == b.status
        np.testing.assert_array_equal(a.hand.joints3d, b.hand.joints3d)
        np.testing.assert_array_equal(a.object.control_points_2d, b.object.control_points_2d)
    calls = len(spy.calls)
    _estimator(spy, assets, warm_up=True)
    assert len(spy.calls) == calls + 4  # the default: batches of 1 and 2, twice each


def test_outputs_come_to_the_host_in_one_packed_copy_with_exact_values(net, assets):
    estimator = _estimator(net, assets)
    gen = torch.Generator().manual_seed(0)
    tensors = {
        "a": torch.randn(3, 21, 2, generator=gen),
        "b": torch.randn(3, generator=gen).half(),  # autocast outputs may be float16
        "c": torch.randn(3, 4, 5, 6, generator=gen).double(),
        "d": torch.randn(3, 1, generator=gen).bfloat16(),
    }
    out = estimator._to_host(tensors, 3)
    assert list(out) == list(tensors)
    for key, value in tensors.items():
        expected = value.float().cpu().numpy().astype(np.float64)
        assert out[key].dtype == np.float64 and out[key].shape == expected.shape
        np.testing.assert_array_equal(out[key], expected)


def test_checkpoint_round_trip_and_other_architecture(net, assets, image, tmp_path):
    from hfl_ros.model.checkpoint import save_checkpoint

    path = save_checkpoint(tmp_path / "ours.pt", net, {})
    loaded = Estimator(checkpoint_path=path, mano_dir=assets["mano"], object_models=assets["models"],
                       device="cpu")
    reference = _estimator(net, assets)
    for a, b in zip(loaded.estimate(image, K, _detections()), reference.estimate(image, K, _detections())):
        np.testing.assert_allclose(a.hand.joints2d, b.hand.joints2d, atol=1e-5)
        np.testing.assert_allclose(a.hand.joints3d, b.hand.joints3d, atol=1e-5)
    # A bare (official-layout) state_dict always means the ResNet-50 network, so a ResNet-18 one is refused.
    official = tmp_path / "official.pth.tar"
    torch.save({"state_dict": {f"honet.module.{k}": v for k, v in net.state_dict().items()}}, official)
    with pytest.raises(CheckpointError, match="another architecture"):
        Estimator(checkpoint_path=official, device="cpu")


def test_min_estimate_score_marks_low_confidence_and_changes_at_runtime(net, assets, image):
    library = ObjectModelLibrary(assets["models"])
    pose = (axis_angle_to_matrix([0.4, -0.7, 0.2]), np.array([0.02, -0.01, 0.55]),
            library.get("mug").control_points)
    scene = [{"side": "right", "hand_box": RIGHT_BOX, "wrist": np.array([-0.12, 0.01, 0.5]), "object": pose},
             {"side": "left", "hand_box": LEFT_BOX, "wrist": np.array([0.11, -0.02, 0.52]), "object": pose}]
    estimator = Estimator(net=ScriptedNet(net, scene * 2, hand_box_scale=1.1), mano_dir=assets["mano"],
                          object_models=library, device="cpu", object_box_scale=1.25, hand_box_scale=1.1)
    before = estimator.estimate(image, K, _detections())
    assert [r.status for r in before] == [Status.OK, Status.OK]  # the default 0 never marks a result
    assert all(r.hand.estimate_score < 1.0 for r in before)  # heat maps are never a single cell
    threshold = 1.0
    estimator.reconfigure(estimator.config.with_changes(min_estimate_score=threshold, max_batch=1))
    assert estimator.config.min_estimate_score == threshold
    assert estimator.config.max_batch == 16  # not a runtime option: unchanged
    after = estimator.estimate(image, K, _detections())
    assert [r.status for r in after] == [Status.LOW_CONFIDENCE, Status.LOW_CONFIDENCE]
    for old, new in zip(before, after):
        assert f"below min_estimate_score {threshold:g}" in new.status_message
        np.testing.assert_allclose(new.hand.joints3d, old.hand.joints3d, atol=1e-6)  # poses still filled in
        np.testing.assert_allclose(new.object.translation, old.object.translation, atol=1e-6)
    with pytest.raises(ParameterError, match="min_estimate_score"):
        estimator.config.with_changes(min_estimate_score=1.5)


def test_max_hands_estimates_the_best_scoring_and_reports_the_others(net, assets, image):
    spy = SpyNet(net)
    estimator = _estimator(spy, assets, max_hands=1)
    results = estimator.estimate(image, K, _detections())  # right hand 0.9, left hand 0.8
    assert len(spy.calls) == 1 and len(spy.calls[0]["images"]) == 1  # one crop went through the network
    right, left = results
    assert right.status is not Status.BAD_INPUT and right.hand.joints3d.shape == (21, 3)
    assert left.status is Status.BAD_INPUT and left.error.reason == "too_many_hands"
    assert "2 hand detections, max_hands 1" in left.status_message and left.hand.side is Side.LEFT
    flipped = [Detection.hand(RIGHT_BOX, "right", 0.5), Detection.hand(LEFT_BOX, "left", 0.8)]
    assert [r.status is Status.BAD_INPUT for r in estimator.estimate(image, K, flipped)] == [True, False]
    unlimited = _estimator(net, assets, max_hands=0).estimate(image, K, _detections())
    assert Status.BAD_INPUT not in [r.status for r in unlimited]
    with pytest.raises(ParameterError, match="max_hands"):
        _estimator(net, assets, max_hands=-1)
