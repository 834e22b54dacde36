"""The shipped demo model (models/demo/hfl_demo_lite0.pt): it loads with today's code, has the demo
architecture, stays within the size budget, and estimates held-out synthetic frames far better than a network
that ignores the image."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hfl_ros.demo import run_demo
from hfl_ros.demo.export_model import SIZE_LIMIT_BYTES
from hfl_ros.demo.make_dataset import EVALUATION_SEED
from hfl_ros.model.checkpoint import load_network, read_checkpoint_file

SHIPPED = run_demo._REPO_ROOT / run_demo.DEFAULT_CHECKPOINT
FRAMES = 12

# The weights are committed only once they meet the accuracy targets of docs/demo.md; until then `make demo`
# runs an untrained network and says so (test_demo.py covers that path).
pytestmark = pytest.mark.skipif(
    not SHIPPED.is_file(), reason=f"no demo model is shipped yet ({SHIPPED.name}; see docs/demo.md)"
)


def test_shipped_weights_load_strictly_with_the_demo_architecture():
    assert SHIPPED.stat().st_size <= SIZE_LIMIT_BYTES
    raw = read_checkpoint_file(SHIPPED)
    net, meta = load_network(SHIPPED)
    # Parameters in fp16; buffers (BatchNorm running statistics, the hand model) in float32 and finite.
    floating = {k: v for k, v in raw["state_dict"].items() if v.is_floating_point()}
    buffers = {name for name, _ in net.named_buffers()}
    assert all(v.dtype == (torch.float32 if k in buffers else torch.float16) for k, v in floating.items())
    assert all(torch.isfinite(v).all() for v in floating.values())
    assert net.config == run_demo.DEMO_NETWORK
    assert meta["config"]["model"]["trunk"] == "efficientnet_lite0"
    assert all(torch.isfinite(p).all() for p in net.parameters())


@pytest.fixture(scope="module")
def scores(tmp_path_factory):
    """Evaluation of the shipped model and of the mean-prediction baseline on held-out frames."""
    from hfl_ros.data.synthetic import SceneConfig, SyntheticScenes
    from hfl_ros.estimator import Estimator
    from hfl_ros.model.hflnet import build_mano_layer
    from hfl_ros.train.baseline import MeanPredictionNet
    from hfl_ros.train.evaluate import evaluate

    torch.set_num_threads(1)
    assets = tmp_path_factory.mktemp("assets")
    with SyntheticScenes(assets, SceneConfig(), seed=EVALUATION_SEED) as scenes:
        frames = [scenes.sample(i) for i in range(FRAMES)]
        options = {"mano_dir": scenes.hand_model_dir, "object_models": scenes.object_model_dir,
                   "device": "cpu", "hand_box_scale": 1.1}
        model = Estimator(checkpoint_path=SHIPPED, **options)
        baseline = Estimator(net=MeanPredictionNet.from_samples(
            frames, build_mano_layer(scenes.hand_model_dir), input_size=128, roi_res=16), **options)
        return {
            name: evaluate(est, frames, mano_dir=scenes.hand_model_dir, symmetric_ids=(), dataset="synthetic")
            for name, est in (("model", model), ("baseline", baseline))
        }


def test_shipped_model_beats_the_mean_prediction_on_held_out_frames(scores):
    model, baseline = (scores[k].summary for k in ("model", "baseline"))
    assert model["hand"]["missing_predictions"] == 0
    assert model["hand"]["joints2d_px"] < 0.6 * baseline["hand"]["joints2d_px"]
    assert model["hand"]["pa_mpjpe_mm"] < baseline["hand"]["pa_mpjpe_mm"]
    assert model["objects"]["summary"]["add_01d_frame_mean"] >= 0.25
    statuses = [f["status"] for f in scores["model"].frames]
    assert np.mean([s == "OK" for s in statuses]) >= 0.75, statuses
