"""Pre-cut HO3D sets (hfl_ros.data.precrop): the training items they give match those of the full frames."""

from __future__ import annotations

import numpy as np
import pytest
from test_data_ho3d import write_standin_mano, write_tiny_ho3d

from hfl_ros.data.ho3d import HO3DDataset
from hfl_ros.data.precrop import main, precrop_dataset
from hfl_ros.data.torch_dataset import HandObjectTrainingDataset
from hfl_ros.model.mano import ManoLayer


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    base = tmp_path_factory.mktemp("precrop")
    layer = ManoLayer(write_standin_mano(base / "mano"), side="right", center_idx=0).eval()
    write_tiny_ho3d(base / "ho3d", n_train=6, n_eval=0, mano_layer=layer)
    return base


@pytest.mark.parametrize("fmt", ["webp", "png"])
def test_training_items_of_a_precut_set_match_the_full_frames(tiny, fmt):
    out = tiny / f"cut_{fmt}"
    assert precrop_dataset(tiny / "ho3d", out, side=160, fmt=fmt, workers=1) == 6
    full, cut = HO3DDataset(tiny / "ho3d", "train"), HO3DDataset(out, "train")
    assert cut.frame_keys == full.frame_keys and (out / "models").is_dir()
    image = cut[0].load_image()
    assert max(image.shape[:2]) <= 160 and cut[0].image_path.suffix == f".{fmt}"
    a = HandObjectTrainingDataset(full, input_size=64)
    b = HandObjectTrainingDataset(cut, input_size=64)
    for i in range(len(full)):
        x, y = a[i], b[i]
        # The crop centre is int-truncated in each frame's own pixels: about a pixel of the 64 px crop.
        assert float((x["joints2d"] - y["joints2d"]).abs().max()) < 1.5
        # Box fractions: the box centre is int-truncated too (HFL-Net's get_bbox_joints), so up to a pixel.
        side = y["object_box"][2:] - y["object_box"][:2]
        assert float(((x["control_points2d_box"] - y["control_points2d_box"]) * side).abs().max()) < 1.5
        np.testing.assert_allclose(y["joints3d"].numpy(), x["joints3d"].numpy(), atol=1e-6)
        np.testing.assert_allclose(y["mano_pose"].numpy(), x["mano_pose"].numpy(), atol=1e-5)
        assert float((x["image"] - y["image"]).abs().mean()) < 0.08
        assert float((x["object_mask"] - y["object_mask"]).abs().mean()) < 0.1
    # camMat moved with the cut: the projected joints land inside the cut-out
    sample = cut[0]
    h, w = sample.load_image().shape[:2]
    assert np.all((sample.joints2d >= -1) & (sample.joints2d <= [w + 1, h + 1]))


def test_command_line_and_bad_format(tiny, capsys):
    assert main([str(tiny / "ho3d"), str(tiny / "cli"), "--limit", "2", "--format", "jpg"]) == 0
    assert "wrote 2 pre-cropped train frames" in capsys.readouterr().out
    assert len(HO3DDataset(tiny / "cli", "train")) == 2
    with pytest.raises(ValueError, match="format must be one of"):
        precrop_dataset(tiny / "ho3d", tiny / "bad", fmt="gif")
