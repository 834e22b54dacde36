"""DexYCB reader: a tiny dataset in the toolkit layout (labels npz, meta.yml, intrinsics yml, jpg) read
back exactly, the s0 split rule, PCA -> axis-angle with each side's model, and left-hand mirroring."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from test_data_ho3d import box_points, write_standin_mano

from hfl_ros.data.dexycb import SERIALS, SUBJECTS, DexYCBDataset
from hfl_ros.data.torch_dataset import HandObjectTrainingDataset, mirror_sample_targets
from hfl_ros.errors import AssetError, InputError
from hfl_ros.geometry.camera import project
from hfl_ros.geometry.control_points import control_points
from hfl_ros.geometry.rotations import axis_angle_to_matrix
from hfl_ros.model.mano import ManoLayer, load_hand_model_file
from hfl_ros.results import Side

INTR = {"fx": 615.0, "fy": 616.5, "ppx": 321.0, "ppy": 238.5}
K = np.array([[615.0, 0.0, 321.0], [0.0, 616.5, 238.5], [0.0, 0.0, 1.0]])
YCB_IDS = [2, 5]  # 003_cracker_box, 006_mustard_bottle
GRASP = 1
CAMERAS = (SERIALS[0], SERIALS[3])
BETAS = np.linspace(-0.5, 0.5, 10)


def _layer(mano_dir: Path, side: str, **kwargs) -> ManoLayer:
    return ManoLayer(mano_dir, side=side, **kwargs).eval()


def seq_name(index: int) -> str:
    return f"2020{index + 1:02d}01_120000"


def write_tiny_dexycb(root: Path, mano_dir: Path, seed: int = 0) -> dict[str, dict]:
    """Subjects 01 and 03, five sequences each (index 4 is val/test under s0), two cameras, one frame each.
    Subject 03 is left-handed. Returns the ground truth by frame key."""
    rng = np.random.default_rng(seed)
    (root / "calibration" / "intrinsics").mkdir(parents=True)
    for serial in CAMERAS:
        (root / "calibration" / "intrinsics" / f"{serial}_640x480.yml").write_text(
            yaml.safe_dump({"color": INTR, "depth": INTR})
        )
    for name in ("003_cracker_box", "006_mustard_bottle"):
        (root / "models" / name).mkdir(parents=True)
        np.savetxt(root / "models" / name / "points.xyz", box_points(), fmt="%.6f")
    truth = {}
    for subject, side in ((SUBJECTS[0], "right"), (SUBJECTS[2], "left")):
        calib = root / "calibration" / f"mano_{subject}"
        calib.mkdir(parents=True)
        (calib / "mano.yml").write_text(yaml.safe_dump({"betas": BETAS.tolist()}))
        pca_layer = _layer(mano_dir, side, use_pca=True, ncomps=45, flat_hand_mean=False)
        for s in range(5):
            seq_dir = root / subject / seq_name(s)
            seq_dir.mkdir(parents=True)
            meta = {"serials": list(CAMERAS), "num_frames": 1, "ycb_ids": YCB_IDS, "ycb_grasp_ind": GRASP,
                    "mano_sides": [side], "mano_calib": [subject]}
            (seq_dir / "meta.yml").write_text(yaml.safe_dump(meta))
            for serial in CAMERAS:
                pose_m = np.concatenate([rng.normal(0, 0.5, 3), rng.normal(0, 0.8, 45), [0.01, 0.02, 0.55]])
                with torch.no_grad():
                    _, j = pca_layer(torch.tensor(pose_m[None, :48], dtype=torch.float32),
                                     torch.tensor(BETAS[None], dtype=torch.float32))
                joint_3d = j[0].double().numpy() + pose_m[48:]
                joint_2d = project(joint_3d, K)
                pose_y = np.zeros((2, 3, 4))
                for o in range(2):
                    pose_y[o, :, :3] = axis_angle_to_matrix(rng.normal(0, 0.5, 3))
                    pose_y[o, :, 3] = joint_3d[0] + [0.03 * (o + 1), -0.02, 0.02]
                seg = np.zeros((480, 640), np.uint8)
                seg[100:200, 300:400] = YCB_IDS[GRASP]
                seg[250:300, 100:150] = 255
                image = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
                cam_dir = seq_dir / serial
                cam_dir.mkdir()
                cv2.imwrite(str(cam_dir / "color_000000.jpg"), image)
                np.savez_compressed(cam_dir / "labels_000000.npz", seg=seg, pose_y=pose_y.astype(np.float32),
                                    pose_m=pose_m[None].astype(np.float32),
                                    joint_3d=joint_3d[None].astype(np.float32),
                                    joint_2d=joint_2d[None].astype(np.float32))
                key = f"{subject}/{seq_dir.name}/{serial}/000000"
                truth[key] = {
                    "pose_m": pose_m.astype(np.float32).astype(np.float64), "side": side, "seg": seg,
                    "joint_3d": joint_3d.astype(np.float32), "joint_2d": joint_2d.astype(np.float32),
                    "pose_y": pose_y.astype(np.float32)[GRASP],
                }
    return truth


@pytest.fixture(scope="module")
def dexycb(tmp_path_factory):
    base = tmp_path_factory.mktemp("dexycb")
    mano_dir = write_standin_mano(base / "mano")
    truth = write_tiny_dexycb(base / "data", mano_dir)
    return base / "data", mano_dir, truth


def test_s0_split_rule(dexycb):
    root, mano_dir, truth = dexycb
    train = DexYCBDataset(root, "train", mano_dir=mano_dir)
    val = DexYCBDataset(root, "val", mano_dir=mano_dir)
    test = DexYCBDataset(root, "test", mano_dir=mano_dir)
    assert len(train) == 2 * 4 * 2 and len(val) == 2 and len(test) == 2
    assert {tuple(k.split("/")[:2]) for k in val.frame_keys} == {(SUBJECTS[0], seq_name(4))}
    assert {tuple(k.split("/")[:2]) for k in test.frame_keys} == {(SUBJECTS[2], seq_name(4))}
    assert {k.split("/")[1] for k in train.frame_keys} == {seq_name(i) for i in range(4)}
    assert set(train.frame_keys) | set(val.frame_keys) | set(test.frame_keys) == set(truth)
    with pytest.raises(InputError, match="split"):
        DexYCBDataset(root, "s1", mano_dir=mano_dir)


def test_reads_back_exactly_with_pca_pose(dexycb):
    root, mano_dir, truth = dexycb
    ds = DexYCBDataset(root, "train", mano_dir=mano_dir)
    layers = {side: _layer(mano_dir, side, center_idx=0) for side in ("right", "left")}
    for index in (0, len(ds) - 1):  # one right-handed, one left-handed frame
        s, t = ds[index], truth[ds.frame_keys[index]]
        assert s.side is Side(t["side"]) and s.class_id == "5" and s.object_name == "006_mustard_bottle"
        np.testing.assert_allclose(s.K, K)
        np.testing.assert_allclose(s.joints3d, t["joint_3d"], atol=1e-7)
        np.testing.assert_allclose(s.joints2d, t["joint_2d"], atol=1e-4)
        np.testing.assert_allclose(s.object_R, t["pose_y"][:, :3], atol=1e-7)
        np.testing.assert_allclose(s.object_t, t["pose_y"][:, 3], atol=1e-7)
        np.testing.assert_allclose(s.control_points2d, project(
            control_points(box_points()) @ s.object_R.T + s.object_t, K), atol=1e-6)
        np.testing.assert_array_equal(s.object_mask, t["seg"] == 5)
        np.testing.assert_array_equal(s.hand_mask, t["seg"] == 255)
        np.testing.assert_allclose(s.mano_shape, BETAS)
        assert s.load_image().shape == (480, 640, 3)
        model = load_hand_model_file(mano_dir / f"STANDIN_HAND_{t['side'].upper()}.pkl")
        expected = t["pose_m"][3:48] @ model["hands_components"] + model["hands_mean"]
        np.testing.assert_allclose(s.mano_pose[3:], expected, atol=1e-9)
        # The full axis-angle pose through a flat-mean layer gives the annotated (PCA-posed) joints.
        with torch.no_grad():
            _, j = layers[t["side"]](torch.tensor(s.mano_pose[None], dtype=torch.float32),
                                     torch.tensor(s.mano_shape[None], dtype=torch.float32))
        np.testing.assert_allclose(j[0].numpy(), s.joints3d - s.joints3d[0], atol=2e-5)


def test_left_hand_mirroring_round_trip(dexycb):
    root, mano_dir, _ = dexycb
    ds = DexYCBDataset(root, "test", mano_dir=mano_dir)
    s = ds[0]
    assert s.side is Side.LEFT
    once = dataclasses.replace(s, **mirror_sample_targets(s, 640))
    assert not np.allclose(once.joints3d, s.joints3d)
    twice = mirror_sample_targets(once, 640)
    np.testing.assert_allclose(twice["joints3d"], s.joints3d, atol=1e-12)
    np.testing.assert_allclose(twice["joints2d"], s.joints2d, atol=1e-12)
    np.testing.assert_allclose(twice["mano_pose"], s.mano_pose, atol=1e-12)
    np.testing.assert_allclose(twice["K"], s.K, atol=1e-12)

    item = HandObjectTrainingDataset(ds, input_size=128)[0]
    # The mirrored targets are a right hand: the right model with the mirrored pose gives the mirrored joints.
    right = _layer(mano_dir, "right", center_idx=0)
    with torch.no_grad():
        _, j = right(item["mano_pose"][None], item["mano_shape"][None])
    mirrored_rel = (s.joints3d - s.joints3d[0]) * np.array([-1.0, 1.0, 1.0])
    np.testing.assert_allclose(item["joints3d"].numpy(), mirrored_rel, atol=1e-6)
    np.testing.assert_allclose(j[0].numpy(), mirrored_rel, atol=5e-5)
    # 2D targets: the mirrored 3D joints projected with the crop's K' (mirrored principal point inside).
    uvw = mirrored_rel + s.joints3d[0] * np.array([-1.0, 1.0, 1.0])
    proj = uvw @ item["K"].double().numpy().T
    np.testing.assert_allclose(item["joints2d"].numpy(), proj[:, :2] / proj[:, 2:], atol=2e-3)


def test_official_json(dexycb, tmp_path):
    root, mano_dir, truth = dexycb
    key = sorted(truth)[-1]
    t = truth[key]
    subject, seq, serial, _ = key.split("/")
    record = {
        "color_file": f"/data1/elsewhere/dex-ycb/{subject}/{seq}/{serial}/color_000000.jpg",
        "object_seg_file": "",
        "intrinsics": INTR,
        "mano_side": t["side"],
        "pose_m": [t["pose_m"].tolist()],
        "mano_betas": BETAS.tolist(),
        "joint_3d": [t["joint_3d"].tolist()],
        "joint_2d": [t["joint_2d"].tolist()],
        "pose_y": [np.eye(3, 4).tolist(), t["pose_y"].tolist()],
        "ycb_ids": YCB_IDS,
        "ycb_grasp_ind": GRASP,
    }
    path = tmp_path / "dex_ycb_s0_test_data.json"
    path.write_text(json.dumps({"id_1": record, "id_0": record}))
    ds = DexYCBDataset(root, "test", mano_dir=mano_dir, json_path=path, use_json=True)
    assert len(ds) == 2 and ds.frame_keys == [key, key]
    s = ds[0]
    assert s.image_path == root / subject / seq / serial / "color_000000.jpg"
    np.testing.assert_allclose(s.joints3d, t["joint_3d"], atol=1e-7)
    np.testing.assert_allclose(s.object_t, t["pose_y"][:, 3], atol=1e-7)
    reader = DexYCBDataset(root, "test", mano_dir=mano_dir)
    np.testing.assert_allclose(s.mano_pose, reader[reader.frame_keys.index(key)].mano_pose, atol=1e-9)


def test_missing_mano_dir_is_a_clear_error(dexycb):
    root, _, _ = dexycb
    with pytest.raises(AssetError, match="mano_dir"):
        DexYCBDataset(root, "val")[0]


def test_training_config_builds_the_dexycb_reader(dexycb):
    from hfl_ros.train.config import config_from_dict
    from hfl_ros.train.trainer import build_samples

    root, mano_dir, _ = dexycb
    cfg = config_from_dict({"model": {"mano_dir": str(mano_dir)},
                            "data": {"kind": "dexycb", "root": str(root)}})
    samples = build_samples(cfg)
    assert isinstance(samples, DexYCBDataset) and samples.split == "train" and len(samples) == 16
