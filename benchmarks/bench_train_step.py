"""Profile of one demo-recipe training step on the CPU: today's kernels, then the training levers one by one.

    python benchmarks/bench_train_step.py [--repeats 6] [--threads 2] [--items 64] [--out PATH]

The network is ``config/train_demo.yaml``'s (EfficientNet-Lite0 trunk with its ImageNet weights, stem and C2
frozen, 128 px, 16x16 RoIs, 128 channels), on one batch of 16 augmented training items of the synthetic demo
set (``make demo-model`` writes it). Each configuration adds one lever to the previous one:

- ``today``: the inference path's kernels in training (windowed smoothing, torchvision RoIAlign, stage 4 in
  NCHW) and Adam's foreach kernels;
- ``+smoothing_full_map``: the 3x3 smoothing conv on the whole map instead of the RoIs' window;
- ``+separable_roi_align``: RoIAlign as two matrix products;
- ``+stage4_channels_last``: stage 4 kept channels-last;
- ``+fused_adam``: Adam's fused kernel.

The configurations run interleaved, ``--repeats`` rounds, each timing forward, backward and the optimizer
step (median over rounds). Ratios divide by ``today`` measured in the same run (absolute times on a shared
2-core machine vary by +-25 %). The loader's CPU per item (decode, augmented crop, targets) is measured for
the full 640x480 JPEG frames and for the pre-cut set (``python -m hfl_ros.data.precrop``) when it exists.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CONFIGS = ("today", "+smoothing_full_map", "+separable_roi_align", "+stage4_channels_last", "+fused_adam")


def set_levers(net, level: int) -> bool:
    """Switch the network's levers among the first ``level`` of CONFIGS on (0: today's kernels); returns
    whether Adam's fused kernel is among them."""
    net.windowed_smoothing = level < 1
    net.cpu_training_kernels = level >= 2
    net.base_net.channels_last_training = level >= 3
    return level >= 4


def loader_cpu_per_item(root: Path, items: int) -> float | None:
    """CPU seconds per training item (read, decode, augmented crop, targets), in this process."""
    from hfl_ros.data.ho3d import HO3DDataset
    from hfl_ros.data.torch_dataset import HandObjectTrainingDataset
    from hfl_ros.train.config import load_config

    if not (root / "train.txt").is_file():
        return None
    config = load_config(REPO / "config" / "train_demo.yaml")
    dataset = HandObjectTrainingDataset(HO3DDataset(root, "train"), input_size=config.model.input_size,
                                        augment=config.augment)
    dataset[(0, (0, 0))]  # first-use costs (readers, caches) out of the figure
    started = time.process_time()
    for i in range(1, items + 1):
        dataset[(i, (0, i))]
    return (time.process_time() - started) / items


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--items", type=int, default=64, help="items timed per loader measurement")
    parser.add_argument("--data", type=Path, default=REPO / "data_cache" / "synthetic_demo")
    parser.add_argument("--precrop", type=Path, default=REPO / "data_cache" / "demo_precrop")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "train_step.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not (args.data / "train.txt").is_file():
        print(f"bench_train_step: skipped: no demo training set at {args.data} (make demo-model writes it)")
        return 0

    from hfl_ros.data.ho3d import HO3DDataset
    from hfl_ros.data.torch_dataset import HandObjectTrainingDataset
    from hfl_ros.train.config import load_config
    from hfl_ros.train.losses import HFLNetLoss
    from hfl_ros.train.schedule import parameter_groups
    from hfl_ros.train.trainer import build_network

    config = load_config(REPO / "config" / "train_demo.yaml", [f"model.mano_dir={args.data / 'hand_models'}"])
    torch.manual_seed(0)
    net = build_network(config).train()
    initial = copy.deepcopy(net.state_dict())
    loss_fn = HFLNetLoss(net.mano_branch.mano_layer, config.loss)
    dataset = HandObjectTrainingDataset(HO3DDataset(args.data, "train"), input_size=config.model.input_size,
                                        augment=config.augment)
    items = [dataset[(i, (0, i))] for i in range(config.run.batch_size)]
    batch = {k: torch.stack([item[k] for item in items]) for k in items[0]}
    o = config.optim
    optimizers = {fused: torch.optim.Adam(parameter_groups(net, o.lr, o.trunk_lr_factor), lr=o.lr,
                                          fused=True if fused else None) for fused in (False, True)}

    def step(level: int) -> dict[str, float]:
        optimizer = optimizers[set_levers(net, level)]
        t0 = time.perf_counter()
        out = net(batch["image"], batch["hand_box"], batch["object_box"])
        loss, _ = loss_fn(out, batch, as_tensors=True)
        t1 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        t2 = time.perf_counter()
        optimizer.step()
        t3 = time.perf_counter()
        net.load_state_dict(initial)  # every configuration times the same weights
        return {"forward": t1 - t0, "backward": t2 - t1, "adam": t3 - t2, "step": t3 - t0}

    for level in range(len(CONFIGS)):  # warm-up: oneDNN primitives, allocator
        step(level)
    times: dict[str, list[dict[str, float]]] = {name: [] for name in CONFIGS}
    for _ in range(args.repeats):
        for level, name in enumerate(CONFIGS):
            times[name].append(step(level))
    figures = {name: {k: statistics.median(t[k] for t in runs) for k in runs[0]}
               for name, runs in times.items()}
    base = figures["today"]["step"]
    for values in figures.values():
        values["step_ratio"] = values["step"] / base
    loader = {"full_frames_cpu_s_per_item": loader_cpu_per_item(args.data, args.items),
              "precrop_cpu_s_per_item": loader_cpu_per_item(args.precrop, args.items)}
    if loader["full_frames_cpu_s_per_item"] and loader["precrop_cpu_s_per_item"]:
        loader["precrop_ratio"] = loader["precrop_cpu_s_per_item"] / loader["full_frames_cpu_s_per_item"]
    result = {"benchmark": "bench_train_step", "threads": args.threads, "batch_size": config.run.batch_size,
              "repeats": args.repeats, "configs": figures, "loader": loader}
    for name, values in figures.items():
        print(f"{name:24s} forward {values['forward']:.3f} s  backward {values['backward']:.3f} s  "
              f"adam {values['adam']:.3f} s  step {values['step']:.3f} s  ({values['step_ratio']:.2f}x)")
    print(json.dumps(loader))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
