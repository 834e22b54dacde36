"""Levers of the demo-model recipe: accuracy reached in the same number of steps, and the cost of a step.

    python benchmarks/bench_demo_recipe.py [--steps 400] [--frames 40] [--variant NAME ...] [--out PATH]

Each variant starts from ``config/train_demo.yaml`` (ImageNet-initialised EfficientNet-Lite0 trunk, the
synthetic demo dataset, which must exist: ``make demo-model`` writes it), changes one setting, trains
``--steps`` optimizer steps, and is scored on the first ``--frames`` held-out frames of
``benchmarks/eval_demo_model.py`` through the Estimator. Reported per variant: seconds per step (from the
trainer's own log), the training losses averaged over the last quarter of the steps, and the held-out 2D
hand-joint error, PA-MPJPE and ADD-0.1D. ``*_ratio`` figures divide by the reference variant (``recipe``)
measured in the same run, since absolute times on a shared 2-core machine vary. Short runs show the early
rate of learning, which is what a fixed CPU budget buys; they do not predict the end of a long schedule.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from eval_demo_model import HeldOutFrames, _scores  # noqa: E402

# name -> overrides of config/train_demo.yaml (SECTION.KEY=VALUE, values in JSON)
VARIANTS: dict[str, list[str]] = {
    "recipe": [],
    "input_96": ["model.input_size=96"],
    "input_160": ["model.input_size=160"],
    "roi_32": ["model.roi_res=32"],
    "trunk_unfrozen": ["model.frozen_stages=0"],
    "trunk_frozen_4": ["model.frozen_stages=4"],
    "from_scratch": ["model.imagenet_weights=false", "model.frozen_stages=0"],
    "no_augment": ["augment.enabled=false"],
    "lr_1e-3": ["optim.lr=0.001"],
}
LOSS_KEYS = ("loss/joints2d", "loss/mano_joints", "loss/obj_vote")


def train_variant(name: str, steps: int, out: Path) -> tuple[Path, dict]:
    """Trains one variant; returns its checkpoint and the figures read from its training log."""
    from hfl_ros.train.config import load_config
    from hfl_ros.train.trainer import Trainer

    run = [f"run.out_dir={json.dumps(str(out))}", "run.progress=false", "run.log_every=10"]
    config = load_config(REPO / "config" / "train_demo.yaml", [*VARIANTS[name], *run])
    trainer = Trainer(config)
    started = time.perf_counter()
    result = trainer.train(max_steps=steps)
    wall = time.perf_counter() - started
    with open(out / "log.csv") as f:
        rows = list(csv.DictReader(f))
    tail = rows[-max(1, len(rows) // 4):]
    samples_per_s = sum(float(r["speed/samples_per_s"]) for r in rows) / len(rows)
    figures = {
        "steps": result.state.global_step,
        "s_per_step": config.run.batch_size / samples_per_s,
        "wall_s": round(wall, 1),
        **{k.split("/")[1]: sum(float(r[k]) for r in tail) / len(tail) for k in LOSS_KEYS},
    }
    return result.checkpoint, figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--frames", type=int, default=40, help="held-out frames scored per variant")
    parser.add_argument("--variant", action="append", choices=sorted(VARIANTS),
                        help="variants to run (repeatable; default all); 'recipe' is always run first")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "demo_recipe.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from hfl_ros.data.synthetic import SceneConfig, SyntheticScenes
    from hfl_ros.demo.make_dataset import EVALUATION_SEED
    from hfl_ros.demo.sample_bag import default_assets_dir
    from hfl_ros.estimator import Estimator

    names = ["recipe", *[n for n in (args.variant or VARIANTS) if n != "recipe"]]
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp, \
            SyntheticScenes(default_assets_dir(), SceneConfig(), seed=EVALUATION_SEED) as scenes:
        frames = HeldOutFrames(scenes, args.frames)
        for name in names:
            checkpoint, figures = train_variant(name, args.steps, Path(tmp) / name)
            estimator = Estimator(checkpoint_path=checkpoint, mano_dir=scenes.hand_model_dir,
                                  object_models=scenes.object_model_dir, device="cpu", hand_box_scale=1.1)
            scores = _scores(estimator, frames, scenes)
            figures.update({k: scores[k] for k in ("joints2d_px", "pa_mpjpe_mm", "add_0.1d")})
            results[name] = figures
            print(name, json.dumps(figures), flush=True)
    reference = results["recipe"]
    for figures in results.values():
        for key in ("s_per_step", "joints2d_px", "joints2d", "obj_vote"):
            figures[f"{key}_ratio"] = figures[key] / reference[key]
    out = {"benchmark": "bench_demo_recipe", "steps": args.steps, "frames": args.frames,
           "threads": args.threads, "variants": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
