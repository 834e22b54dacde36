"""Training crops, augmentation and losses: the spec's weights, geometric consistency of the rotation
augmentation (image, 2D, 3D and MANO global rotation), determinism, and the sampler's data order."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_data_ho3d import write_standin_mano, write_tiny_ho3d
from torch.utils.data import DistributedSampler

from hfl_ros.data.augment import AugmentConfig, photometric, sample_rotation
from hfl_ros.data.ho3d import HO3DDataset
from hfl_ros.data.torch_dataset import EpochSampler, HandObjectTrainingDataset
from hfl_ros.geometry.boxes import box_from_points
from hfl_ros.geometry.crop import crop_for_pair, warp_image
from hfl_ros.geometry.rotations import axis_angle_to_matrix
from hfl_ros.model.mano import ManoLayer
from hfl_ros.train.losses import HFLNetLoss, LossWeights

BONE_RGB = (250, 200, 170)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("aug")
    mano_dir = write_standin_mano(base / "mano")
    layer = ManoLayer(mano_dir, side="right", center_idx=0).eval()
    write_tiny_ho3d(base / "ho3d", n_train=2, n_eval=0, mano_layer=layer)
    return HO3DDataset(base / "ho3d", "train"), layer


def _geometric_only(**kw) -> AugmentConfig:
    return AugmentConfig(blur_radius=0.0, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0, **kw)


def test_rotation_augmentation_is_consistent(setup):
    samples, layer = setup
    ds = HandObjectTrainingDataset(samples, input_size=128, augment=_geometric_only())
    sample = samples[0]
    angles = []
    for seed in range(4):
        item = ds[(0, (7, 0, seed))]
        R_aug = axis_angle_to_matrix(item["mano_pose"][:3].double().numpy()) @ axis_angle_to_matrix(
            sample.mano_pose[:3]).T
        # The augmentation is a rotation about the camera's optical axis.
        np.testing.assert_allclose(R_aug[2], [0, 0, 1], atol=1e-5)
        angles.append(math.atan2(R_aug[1, 0], R_aug[0, 0]))
        # 3D targets rotate with it, and MANO with the rotated global rotation reproduces them.
        rel = (sample.joints3d - sample.joints3d[0]) @ R_aug.T
        np.testing.assert_allclose(item["joints3d"].numpy(), rel, atol=1e-5)
        with torch.no_grad():
            _, j = layer(item["mano_pose"][None], item["mano_shape"][None])
        np.testing.assert_allclose(j[0].numpy(), rel, atol=5e-5)
        # The 2D targets are the rotated 3D joints projected with the crop's K'.
        uvw = (sample.joints3d @ R_aug.T) @ item["K"].double().numpy().T
        np.testing.assert_allclose(item["joints2d"].numpy(), uvw[:, :2] / uvw[:, 2:], atol=2e-3)
        # The warped image agrees: the hand's wrist pixel shows the bone colour.
        x, y = np.round(item["joints2d"][0].numpy()).astype(int)
        if 0 <= x < 128 and 0 <= y < 128:
            pixel = (item["image"][:, y, x].numpy() * 255).round()
            np.testing.assert_allclose(pixel, BONE_RGB, atol=1)
        # Boxes: f=1.1 of the joints, f=1.0 of the control points; targets are fractions of them.
        np.testing.assert_allclose(item["hand_box"].numpy(), box_from_points(item["joints2d"].numpy(), 1.1),
                                   atol=1e-3)
        hb = item["hand_box"].numpy()
        np.testing.assert_allclose(item["joints2d_box"].numpy(),
                                   (item["joints2d"].numpy() - hb[:2]) / (hb[2:] - hb[:2]), atol=1e-5)
        assert 0.0 < item["object_mask"].mean() < 1.0
    assert len({round(a, 6) for a in angles}) == 4 and max(abs(a) for a in angles) <= math.pi


def test_items_are_deterministic_per_seed(setup):
    samples, _ = setup
    ds = HandObjectTrainingDataset(samples, input_size=128, augment=AugmentConfig())
    a, b, c = ds[(1, (0, 3, 5))], ds[(1, (0, 3, 5))], ds[(1, (0, 3, 6))]
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert not torch.equal(a["image"], c["image"])
    plain = HandObjectTrainingDataset(samples, input_size=128, augment=None)[1]
    np.testing.assert_allclose(plain["mano_pose"].numpy(), samples[1].mano_pose, atol=1e-6)


def test_training_crop_without_augmentation_is_the_inference_crop(setup):
    samples, _ = setup
    item = HandObjectTrainingDataset(samples, input_size=128, augment=None).item(0, np.random.default_rng(0))
    sample = samples[0]
    image = sample.load_image()
    # The Estimator's crop of the same boxes (the tight boxes of the joints and control points).
    crop = crop_for_pair(box_from_points(sample.joints2d), box_from_points(sample.control_points2d),
                         (image.shape[1], image.shape[0]), size=128)
    expected = warp_image(image, crop)
    np.testing.assert_array_equal((item["image"].numpy() * 255).round().astype(np.uint8).transpose(1, 2, 0),
                                  expected)
    np.testing.assert_allclose(item["K"].numpy(), crop.apply_K(sample.K), atol=1e-3)


def test_crop_region_and_rotation_distributions():
    hand = np.array([[100.0, 100.0], [140.0, 160.0]])
    obj = np.array([[130.0, 90.0], [200.0, 120.0]])
    crop = crop_for_pair(box_from_points(hand), box_from_points(obj), (640, 480))
    centre, scale = crop.centre, crop.scale
    # f=1.5 boxes: hand centre (120, 130) half (30, 45); object centre (165, 105) half (52.5, 22.5).
    assert scale == pytest.approx(max(217.5 - 90.0, 175.0 - 82.5))
    np.testing.assert_allclose(centre, [np.trunc((90 + 217.5) / 2), np.trunc((82.5 + 175) / 2)])
    rng = np.random.default_rng(0)
    dex = [sample_rotation(rng, AugmentConfig.for_dataset("dexycb")) for _ in range(2000)]
    assert 0.33 < np.mean(np.array(dex) == 0.0) < 0.47  # 40 % unrotated
    assert max(abs(a) for a in dex) <= math.radians(60) + 1e-12
    ho3d = [sample_rotation(rng, AugmentConfig.for_dataset("ho3d")) for _ in range(2000)]
    assert min(ho3d) < -2.9 and max(ho3d) > 2.9 and all(abs(a) <= math.pi for a in ho3d)


def test_photometric_changes_colours_deterministically():
    image = np.random.default_rng(1).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    cfg = AugmentConfig()
    a = photometric(image, np.random.default_rng(5), cfg)
    b = photometric(image, np.random.default_rng(5), cfg)
    np.testing.assert_array_equal(a, b)
    assert a.shape == image.shape and a.dtype == np.uint8 and np.abs(a.astype(int) - image).mean() > 1.0


def _targets(layer, batch: int = 2):
    rng = np.random.default_rng(0)
    pose = torch.tensor(rng.normal(0, 0.3, (batch, 48)), dtype=torch.float32)
    shape = torch.tensor(rng.normal(0, 0.5, (batch, 10)), dtype=torch.float32)
    mask = torch.zeros(batch, 32, 32)
    mask[:, 8:20, 10:30] = 1.0
    batch_d = {
        "joints2d_box": torch.rand(batch, 21, 2),
        "mano_pose": pose,
        "mano_shape": shape,
        "control_points2d_box": torch.rand(batch, 21, 2),
        "object_mask": mask,
        "has_mano": torch.ones(batch),
    }
    with torch.no_grad():
        verts, joints = layer(pose, shape)
    from hfl_ros.model.rotation_utils import axis_angle_to_rotmat

    out = {
        "joints2d_box": batch_d["joints2d_box"].clone(),
        "verts3d": verts,
        "joints3d": joints,
        "mano_rotmat": axis_angle_to_rotmat(pose.reshape(batch, 16, 3)),
        "mano_shape": shape.clone(),
        "obj_vote": batch_d["control_points2d_box"][:, None, None].expand(batch, 32, 32, 21, 2).clone(),
        "obj_conf": mask[..., None].expand(batch, 32, 32, 21).clone(),
    }
    return out, batch_d


def test_losses_vanish_at_the_targets_and_use_the_spec_weights(setup):
    _, layer = setup
    loss_fn = HFLNetLoss(layer)
    assert LossWeights().as_dict() == {"joints2d": 100.0, "mano_verts": 1e4, "mano_joints": 1e4,
                                       "mano_rotmat": 10.0, "mano_shape": 0.1, "obj_vote": 500.0,
                                       "obj_conf": 100.0}
    out, batch = _targets(layer)
    total, terms = loss_fn(out, batch)
    assert float(total) == pytest.approx(0.0, abs=1e-8) and max(terms.values()) < 1e-9

    off = dict(out, joints2d_box=out["joints2d_box"] + 0.1, mano_shape=out["mano_shape"] + 0.2)
    total, terms = loss_fn(off, batch)
    assert terms["joints2d"] == pytest.approx(0.01, rel=1e-4)
    assert terms["mano_shape"] == pytest.approx(0.04, rel=1e-4)
    assert float(total) == pytest.approx(100 * 0.01 + 0.1 * 0.04, rel=1e-4)

    # Votes off the object do not count; on it, L1 per coordinate.
    vote = out["obj_vote"].clone()
    vote[..., 0] += 0.02
    total, terms = loss_fn(dict(out, obj_vote=vote), batch)
    assert terms["obj_vote"] == pytest.approx(0.02 * float(batch["object_mask"].mean()), rel=1e-4)
    # Confidence target exp(-0.02) on the object; the unmasked confidence is pushed to 0 elsewhere.
    conf_err = float(batch["object_mask"].mean()) * (1 - math.exp(-0.02))
    assert terms["obj_conf"] == pytest.approx(conf_err, rel=1e-3)


def test_confidence_target_is_detached_and_mano_terms_respect_has_mano(setup):
    _, layer = setup
    out, batch = _targets(layer)
    vote = (out["obj_vote"] + 0.05).requires_grad_(True)
    conf = out["obj_conf"].clone().requires_grad_(True)
    weights = LossWeights(**{k: 0.0 for k in LossWeights().as_dict()} | {"obj_conf": 1.0})
    total, _ = HFLNetLoss(layer, weights)(dict(out, obj_vote=vote, obj_conf=conf), batch)
    grad_vote, grad_conf = torch.autograd.grad(total, (vote, conf))
    assert float(grad_vote.abs().max()) == 0.0  # no gradient reaches the votes through the target
    assert float(grad_conf.abs().max()) > 0.0
    verts = (out["verts3d"] + 0.01).requires_grad_(True)
    total, terms = HFLNetLoss(layer)(dict(out, verts3d=verts), dict(batch, has_mano=torch.zeros(2)))
    assert terms["mano_verts"] == 0.0


def test_epoch_sampler_matches_distributed_sampler_and_skips():
    data = list(range(10))
    for rank in (0, 1):
        ours = EpochSampler(10, seed=3, rank=rank, world_size=2)
        theirs = DistributedSampler(data, num_replicas=2, rank=rank, shuffle=True, seed=3)
        ours.set_epoch(4)
        theirs.set_epoch(4)
        assert [i for i, _ in ours] == list(theirs)
    sampler = EpochSampler(10, seed=3)
    sampler.set_epoch(1)
    full = list(sampler)
    sampler.set_epoch(1, skip=4)
    assert list(sampler) == full[4:] and len(sampler) == 6
    assert len({seed for _, seed in full}) == 10


def test_items_do_not_depend_on_worker_processes(setup):
    samples, _ = setup
    ds = HandObjectTrainingDataset(samples, input_size=64, augment=AugmentConfig())
    batches = {}
    for workers in (0, 1):
        sampler = EpochSampler(len(ds), seed=1)
        sampler.set_epoch(2)
        loader = torch.utils.data.DataLoader(ds, batch_size=2, sampler=sampler, num_workers=workers)
        batches[workers] = next(iter(loader))
    for key, value in batches[0].items():
        assert torch.equal(value, batches[1][key]), key
