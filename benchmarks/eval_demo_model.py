"""Accuracy of the shipped demo model on a fixed held-out synthetic set.

The held-out frames are rendered deterministically (generator seed 1, the seed of the demo dataset's
evaluation split, disjoint from the training seed 0) and JPEG-compressed as the dataset writer stores them,
then scored with the evaluation function behind ``hfl-ros eval`` (hfl_ros.train.evaluate.evaluate) through
the Estimator, with the ground-truth boxes of the HFL-Net protocol (hand box grown by 1.1).

    python benchmarks/eval_demo_model.py [--checkpoint models/demo/hfl_demo_lite0.pt] [--frames 300]

The last line printed is one JSON object: pa_mpjpe_mm, mpjpe_mm (camera frame, fitted translation),
joints2d_px (mean 2D hand-joint error at 640x480), add_0.1d and rep5 (fractions of frames), and more. The
same metrics of the baseline end in ``_baseline``: the mean-prediction network (hfl_ros.train.baseline: the
mean targets of these frames, whatever the image) through the same Estimator and evaluation, except
``pa_mpjpe_mm_baseline``, which is the stronger mean-pose reference (the frames' mean hand without its global
rotation). ``--json PATH`` also writes the object to a file.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hfl_ros.data.sample import HandObjectSample  # noqa: E402
from hfl_ros.data.synthetic import SceneConfig, SyntheticScenes  # noqa: E402
from hfl_ros.demo.make_dataset import EVALUATION_SEED  # noqa: E402
from hfl_ros.demo.run_demo import find_checkpoint  # noqa: E402
from hfl_ros.demo.sample_bag import default_assets_dir  # noqa: E402

JPEG_QUALITY = 92  # as hfl_ros.data.ho3d_export writes the dataset


class HeldOutFrames(Sequence[HandObjectSample]):
    """The held-out frames, rendered when first indexed and then kept."""

    def __init__(self, scenes: SyntheticScenes, count: int):
        self.scenes, self.count = scenes, count
        self.hands: dict[int, tuple] = {}  # index -> (side, finger pose, betas, GT joints)
        self.cache: dict[int, HandObjectSample] = {}

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index):  # type: ignore[override]
        if not 0 <= index < self.count:
            raise IndexError(index)
        if index in self.cache:
            return self.cache[index]
        sample = self.scenes.sample(index)
        ok, jpeg = cv2.imencode(
            ".jpg", cv2.cvtColor(sample.image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
        )
        assert ok
        sample.image = cv2.cvtColor(cv2.imdecode(jpeg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        sample.meta["frame_key"] = f"heldout/{index:04d}"
        self.hands[index] = (sample.side, sample.mano_pose[3:], sample.mano_shape, sample.joints3d)
        self.cache[index] = sample
        return sample

    def mean_pose_baseline_mm(self) -> float:
        """PA-MPJPE of one constant hand: the mean of the frames' hands posed without global rotation.

        A model has learnt something about the hand only if it does better than this.
        """
        from hfl_ros.train.metrics import pa_error

        local = []
        for side, fingers, betas, _ in self.hands.values():
            _, joints = self.scenes.mano(side, np.concatenate([np.zeros(3), fingers]), betas)
            local.append(joints - joints[0])
        mean = np.mean(local, axis=0)
        return 1000.0 * float(np.mean([pa_error(mean, gt) for *_, gt in self.hands.values()]))


BASELINE_KEYS = ("pa_mpjpe_mm", "mpjpe_mm", "joints2d_px", "add_0.1d", "rep5")


def _scores(estimator, frames: HeldOutFrames, scenes: SyntheticScenes) -> dict:
    """The evaluation summary of ``estimator`` on the frames, flattened to the benchmark's keys."""
    from hfl_ros.train.evaluate import evaluate

    result = evaluate(estimator, frames, mano_dir=scenes.hand_model_dir, symmetric_ids=(),
                      dataset="synthetic", progress=True)
    hand = result.summary["hand"] or {}
    objects = result.summary["objects"]
    return {
        "pa_mpjpe_mm": hand.get("pa_mpjpe_mm"),
        "mpjpe_mm": hand.get("mpjpe_fitted_mm"),
        "joints2d_px": hand.get("joints2d_px"),
        "mpjpe_wrist_aligned_mm": hand.get("mpjpe_wrist_aligned_mm"),
        "pa_mpvpe_mm": hand.get("pa_mpvpe_mm"),
        "f_5mm": hand.get("f_5mm"),
        "f_15mm": hand.get("f_15mm"),
        "hand_missing": hand.get("missing_predictions"),
        "add_0.1d": objects["summary"]["add_01d_frame_mean"],
        "add_0.1d_class_mean": objects["summary"]["add_01d_class_mean"],
        "rep5": objects["summary"]["rep5_frame_mean"],
        "rep5_class_mean": objects["summary"]["rep5_class_mean"],
        "per_class": {
            cid: {k: c[k] for k in ("name", "frames", "invalid_poses", "add_mm", "add_01d", "rep5")}
            for cid, c in objects["per_class"].items()
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", help="default: the demo model, models/demo/hfl_demo_lite0.pt")
    parser.add_argument("--frames", type=int, default=300, help="held-out frames (default 300)")
    parser.add_argument(
        "--assets",
        type=Path,
        default=default_assets_dir(),
        help="cache of the generated stand-in hand and object models",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--json", type=Path, help="also write the result to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from hfl_ros.estimator import Estimator
    from hfl_ros.model.hflnet import build_mano_layer
    from hfl_ros.train.baseline import MeanPredictionNet

    checkpoint = find_checkpoint(args.checkpoint)
    if checkpoint is None:
        raise SystemExit("eval_demo_model: no demo model yet (models/demo/hfl_demo_lite0.pt); "
                         "train it with `make demo-model` or pass --checkpoint PATH")
    started = time.monotonic()
    with SyntheticScenes(args.assets, SceneConfig(), seed=EVALUATION_SEED) as scenes:
        frames = HeldOutFrames(scenes, args.frames)
        options = {"mano_dir": scenes.hand_model_dir, "object_models": scenes.object_model_dir,
                   "device": "cpu", "hand_box_scale": 1.1}
        estimator = Estimator(checkpoint_path=checkpoint, **options)
        model = _scores(estimator, frames, scenes)
        baseline_net = MeanPredictionNet.from_samples(
            frames, build_mano_layer(scenes.hand_model_dir), input_size=estimator.input_size,
            roi_res=int(getattr(estimator.net, "roi_res", 32)),
        )
        baseline = _scores(Estimator(net=baseline_net, **options), frames, scenes)
        baseline["pa_mpjpe_mm"] = frames.mean_pose_baseline_mm()
    out = {
        "benchmark": "eval_demo_model",
        "checkpoint": str(checkpoint),
        "frames": args.frames,
        "heldout_seed": EVALUATION_SEED,
        **{k: v for k, v in model.items() if k != "per_class"},
        **{f"{k}_baseline": v for k, v in baseline.items() if k in BASELINE_KEYS},
        "per_class": model["per_class"],
        "seconds": round(time.monotonic() - started, 1),
    }
    line = json.dumps(out)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(line + "\n")
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
