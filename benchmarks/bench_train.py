"""Training throughput: samples/s of full training steps and the share of step time spent waiting for data.

    python benchmarks/bench_train.py [--frames 16] [--steps 6] [--batch-size 8] [--trunk resnet18]
                                     [--input-size 128] [--workers 0] [--threads 1] [--paper] [--out PATH]

Synthetic frames (hfl_ros.data.synthetic) are written in the HO3D layout and read back by the HO3D reader,
so a step includes what real training does: meta pickle + JPEG decode, the augmented crop (jitter, scale,
rotation, blur, colour jitter), targets, forward, the losses (MANO targets included), backward and Adam.
``data_share`` = time waiting for the next batch / wall time of the step loop. With ``--workers 0`` the data
is prepared in the training process, so the share is the cost of the data pipeline itself; with workers it
shows whether they keep up. ``--paper`` adds the paper's network (harmonious ResNet-50, 256 px).
CUDA is measured too when available (AMP on). Random initial weights: speed does not depend on them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def write_dataset(root: Path, frames: int) -> Path:
    """Synthetic frames in the HO3D layout; returns the stand-in hand model directory."""
    from hfl_ros.data.ho3d_export import write_ho3d_split
    from hfl_ros.data.synthetic import SyntheticScenes

    with SyntheticScenes(root / "cache", seed=0) as scenes:
        write_ho3d_split(root / "ho3d", "train", scenes.samples(frames), image_format="jpg")
        return scenes.hand_model_dir


def measure(
    root: Path, mano_dir: Path, args, *, trunk: str, input_size: int, batch: int, device: str
) -> dict:
    from hfl_ros.train.config import config_from_dict
    from hfl_ros.train.trainer import Trainer

    cfg = config_from_dict({
        "model": {"trunk": trunk, "input_size": input_size, "imagenet_weights": False,
                  "mano_dir": str(mano_dir)},
        "data": {"kind": "ho3d", "root": str(root / "ho3d"), "workers": args.workers},
        "run": {"batch_size": batch, "device": device, "out_dir": str(root / "run"), "progress": False},
    })
    trainer = Trainer(cfg)
    trainer.model.train()
    steps, data_time, total_time, done = args.steps, 0.0, 0.0, 0
    epoch = 0
    while done < steps + args.warmup:
        trainer.sampler.set_epoch(epoch)
        tick = time.perf_counter()
        for batch_items in trainer._loader():
            loaded = time.perf_counter()
            trainer.train_step(batch_items)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            finished = time.perf_counter()
            if done >= args.warmup:
                data_time += loaded - tick
                total_time += finished - tick
            done += 1
            tick = time.perf_counter()
            if done >= steps + args.warmup:
                break
        epoch += 1
    # The data pipeline alone, per sample (augmented item, no network).
    items = min(len(trainer.dataset), 8)
    start = time.perf_counter()
    for i in range(items):
        trainer.dataset[(i, (0, 0, i))]
    per_item = (time.perf_counter() - start) / items
    return {
        "trunk": trunk,
        "input_size": input_size,
        "batch_size": batch,
        "device": device,
        "amp": trainer.amp,
        "steps_timed": steps,
        "samples_per_s": steps * batch / total_time,
        "seconds_per_step": total_time / steps,
        "data_share": data_time / total_time,
        "data_ms_per_sample_in_process": 1000 * per_item,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--trunk", default="resnet18")
    parser.add_argument("--input-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--paper", action="store_true", help="also time resnet50 / 256 px (batch 2)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "bench_train.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    report = {
        "benchmark": "bench_train",
        "machine": {
            "platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
            "threads": args.threads,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
        "settings": {"frames": args.frames, "workers": args.workers, "augmentation": "paper (HO3D)"},
        "results": [],
    }
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        mano_dir = write_dataset(root, args.frames)
        configs = [(args.trunk, args.input_size, args.batch_size)]
        if args.paper:
            configs.append(("resnet50", 256, 2))
        for device in devices:
            for trunk, size, batch in configs:
                batch = min(batch, args.frames)
                result = measure(
                    root, mano_dir, args, trunk=trunk, input_size=size, batch=batch, device=device
                )
                report["results"].append(result)
                print(json.dumps(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
