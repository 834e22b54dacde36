"""Evaluation through the Estimator on a tiny HO3D dataset: the CLI's outputs, the CodaLab submission (joint
order, OpenGL axes, metres), and the metric plumbing with a perfect stand-in estimator."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from test_data_ho3d import write_standin_mano, write_tiny_ho3d

from hfl_ros.cli import main
from hfl_ros.data.ho3d import HO3DDataset
from hfl_ros.errors import AssetError
from hfl_ros.model.checkpoint import save_checkpoint
from hfl_ros.model.hflnet import hflnet_resnet18
from hfl_ros.model.mano import ManoLayer
from hfl_ros.results import Detection, HandEstimate, HandObjectResult, ObjectEstimate, Status
from hfl_ros.train.eval_cli import object_library
from hfl_ros.train.evaluate import GroundTruthHandMesh, evaluate, read_detections_file
from hfl_ros.train.submission import OUTPUT_TO_HO3D_ORDER, read_ho3d_submission


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.manual_seed(0)
    base = tmp_path_factory.mktemp("eval")
    mano_dir = write_standin_mano(base / "mano")
    layer = ManoLayer(mano_dir, side="right", center_idx=0).eval()
    write_tiny_ho3d(base / "ho3d", n_train=3, n_eval=2, mano_layer=layer)
    net = hflnet_resnet18(mano_path=mano_dir, input_size=64)
    checkpoint = save_checkpoint(base / "random.pt", net, {"model": net.config})
    return base / "ho3d", mano_dir, checkpoint


def _eval(tiny, out: Path, *extra: str) -> int:
    root, mano_dir, checkpoint = tiny
    return main(["eval", "--checkpoint", str(checkpoint), "--dataset", "ho3d", "--root", str(root),
                 "--mano-dir", str(mano_dir), "--out", str(out), "--device", "cpu", "--no-progress", *extra])


def _meta(root: Path, split: str, key: str) -> dict:
    seq, fid = key.split("/")
    with (root / split / seq / "meta" / f"{fid}.pkl").open("rb") as f:
        return pickle.load(f)


def test_evaluation_split_writes_a_valid_submission(tiny, tmp_path):
    torch.set_num_threads(1)
    root = tiny[0]
    assert _eval(tiny, tmp_path) == 0
    xyz, verts = read_ho3d_submission(tmp_path / "pred.zip")
    xyz_json, _ = read_ho3d_submission(tmp_path / "pred.json")
    np.testing.assert_array_equal(xyz, xyz_json)
    keys = HO3DDataset(root, "evaluation").frame_keys
    assert xyz.shape == (2, 21, 3) and verts.shape == (2, 778, 3)
    assert np.all(np.isfinite(xyz)) and np.all(np.isfinite(verts))
    for i, key in enumerate(keys):
        root_gl = _meta(root, "evaluation", key)["handJoints3D"]  # the given wrist, OpenGL axes, metres
        np.testing.assert_allclose(xyz[i, 0], root_gl, atol=1e-9)  # HO3D joint 0 is the wrist
        # Metres around the given root (the official script's mm + m mix-up would put them ~metres away).
        assert np.abs(xyz[i] - root_gl).max() < 0.3 and np.abs(verts[i] - root_gl).max() < 0.3
        assert xyz[i, :, 2].mean() < 0  # OpenGL: the hand is in front of the camera at negative z
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["hand"] is None  # the evaluation split has no hand ground truth
    assert results["objects"]["per_class"]["5"]["frames"] == 2
    assert results["symmetric_ids"] == [13, 16, 20, 21]
    assert "ADD-0.1D" in (tmp_path / "results.md").read_text()
    assert len((tmp_path / "frames.jsonl").read_text().splitlines()) == 2


def test_train_split_reports_hand_metrics(tiny, tmp_path):
    torch.set_num_threads(1)
    assert _eval(tiny, tmp_path, "--split", "train", "--limit", "2") == 0
    results = json.loads((tmp_path / "results.json").read_text())
    hand = results["hand"]
    assert hand["frames"] == 2 and hand["missing_predictions"] == 0
    for key in ("mpjpe_wrist_aligned_mm", "pa_mpjpe_mm", "pa_mpvpe_mm"):
        assert 0.0 < hand[key] < 1000.0, key
    assert 0.0 <= hand["f_5mm"] <= hand["f_15mm"] <= 1.0
    assert "006_mustard_bottle" in (tmp_path / "results.md").read_text()


class PerfectEstimator:
    """Returns the ground truth as its estimate, to check the metric and submission plumbing end to end."""

    def __init__(self, samples, mano_dir, models):
        self.samples, self.mesh, self.object_models = iter(samples), GroundTruthHandMesh(mano_dir), models
        self.seen_detections: list[list[Detection]] = []

    def estimate_batch(self, frames):
        out = []
        for _, _, detections in frames:
            self.seen_detections.append(list(detections))
            s = next(self.samples)
            hand = HandEstimate(side=s.side, box=s.hand_box, detection_score=1.0, joints3d=s.joints3d.copy(),
                                verts3d=self.mesh.vertices(s), translation_valid=True)
            obj = ObjectEstimate(class_id=s.class_id, box=s.object_box, score=1.0, valid=True,
                                 rotation=s.object_R, translation=s.object_t)
            out.append([HandObjectResult(Status.OK, hand, obj)])
        return out


def test_perfect_estimates_score_perfectly_and_submit_the_ground_truth(tiny):
    root, mano_dir, _ = tiny
    samples = HO3DDataset(root, "train")
    models = object_library(root / "models")
    estimator = PerfectEstimator(samples, mano_dir, models)
    result = evaluate(estimator, samples, mano_dir=mano_dir, dataset="ho3d", batch_frames=2)
    hand = result.summary["hand"]
    assert hand["frames"] == 3
    for key in ("mpjpe_wrist_aligned_mm", "mpjpe_fitted_mm", "pa_mpjpe_mm", "pa_mpvpe_mm"):
        assert hand[key] == pytest.approx(0.0, abs=1e-6), key
    assert hand["f_5mm"] == 1.0 and hand["f_15mm"] == 1.0
    obj = result.summary["objects"]["per_class"]["5"]
    assert obj["add_mm"] == pytest.approx(0.0, abs=1e-9) and obj["add_01d"] == 1.0 and obj["rep5"] == 1.0
    # GT boxes: the hand box of the annotation and the tight box of the projected control points.
    first = estimator.seen_detections[0]
    np.testing.assert_allclose(first[0].box, samples[0].hand_box)
    np.testing.assert_allclose(first[1].box, [*samples[0].control_points2d.min(0),
                                              *samples[0].control_points2d.max(0)])
    assert first[1].class_id == "5"
    # The submission holds HO3D's own annotation: MANO joint order, OpenGL axes, metres.
    for i, key in enumerate(samples.frame_keys):
        np.testing.assert_allclose(result.submission_xyz[i], _meta(root, "train", key)["handJoints3D"],
                                   atol=1e-9)
    assert sorted(OUTPUT_TO_HO3D_ORDER) == list(range(21))


def test_detections_file(tiny, tmp_path):
    root, mano_dir, _ = tiny
    samples = HO3DDataset(root, "train")
    s = samples[1]
    path = tmp_path / "dets.json"
    path.write_text(json.dumps({"frames": {s.meta["frame_key"]: [
        {"box": s.hand_box.tolist(), "score": 0.9, "side": "right"},
        {"box": [*s.control_points2d.min(0), *s.control_points2d.max(0)], "score": 0.8, "class_id": "5"},
    ]}}))
    dets = read_detections_file(path)
    assert list(dets) == [s.meta["frame_key"]] and dets[s.meta["frame_key"]][1].class_id == "5"

    class OnlyDetected(PerfectEstimator):
        def estimate_batch(self, frames):
            results = super().estimate_batch(frames)
            return [r if dets_ else [] for r, (_, _, dets_) in zip(results, frames)]

    estimator = OnlyDetected(samples, mano_dir, object_library(root / "models"))
    result = evaluate(estimator, samples, detections=dets, mano_dir=mano_dir)
    assert [len(d) for d in estimator.seen_detections] == [0, 2, 0]
    assert result.summary["hand"]["missing_predictions"] == 2
    assert result.summary["objects"]["per_class"]["5"]["invalid_poses"] == 2

    path.write_text(json.dumps({"frames": {"SEQ0/0000": [{"box": [1, 2, 3], "side": "right"}]}}))
    with pytest.raises(AssetError, match=r"SEQ0/0000.*detection 0"):
        read_detections_file(path)


def test_cli_reports_bad_input_in_one_line(tiny, tmp_path, capsys):
    bad = tmp_path / "dets.json"
    bad.write_text("[1, 2]")
    assert _eval(tiny, tmp_path / "out", "--boxes", str(bad)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hfl-ros eval: error:") and "dets.json" in err[0]


def test_dexycb_left_hands_through_the_cli(tiny, tmp_path):
    """The DexYCB s0 test split of the tiny toolkit dataset (left hands, PCA poses) through the Estimator."""
    from test_data_dexycb import write_tiny_dexycb

    torch.set_num_threads(1)
    _, mano_dir, checkpoint = tiny
    root = tmp_path / "dexycb"
    write_tiny_dexycb(root, mano_dir)
    out = tmp_path / "out"
    args = ["eval", "--checkpoint", str(checkpoint), "--dataset", "dexycb", "--root", str(root),
            "--mano-dir", str(mano_dir), "--out", str(out), "--device", "cpu", "--no-progress"]
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["split"] == "test" and results["frames"] == 2
    hand = results["hand"]
    assert hand["frames"] == 2 and hand["missing_predictions"] == 0
    assert 0.0 < hand["pa_mpjpe_mm"] < 1000.0 and hand["pa_mpvpe_mm"] is not None
    assert results["objects"]["per_class"]["5"]["frames"] == 2
    assert not (out / "pred.json").exists()  # the CodaLab submission is HO3D's
