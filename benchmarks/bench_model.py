"""HFLNet forward speed against a torchvision ResNet-50 forward on the same input, measured in one process.

    python benchmarks/bench_model.py [--threads 2] [--repeats 10] [--batches 1 4] [--out PATH]

Issue-3 target: the full HFLNet forward (official configuration: harmonious ResNet-50, 256×256) costs at most
3.5× a torchvision ResNet-50 forward on the same 256×256 input (the official code: 4.35×). Both run in eval
mode under ``torch.inference_mode()`` with random weights (timings do not depend on them), alternating
ResNet-50 / HFLNet after a warm-up so that machine-load drift hits both alike. Reported per batch size:

- ms per image of both and their ratio (of the minima, and the median of the per-round ratios);
- the same with the boxes covering the whole crop (the worst case for the windowed FPN smoothing), with the
  windowing switched off, and with neither windowing nor the CPU fusion (the network as built, without
  ``fuse_for_cpu``'s folded / pre-packed convolutions, see hfl_ros/model/cpu_fusion.py);
- a per-stage breakdown: backbone+FPN, RoIAlign (with the windowed smoothing), interaction blocks, hand head
  (hourglass + encoder), MANO regressor + layer, object head + vote decoding, and PnP (vote selection +
  cv2.solvePnPRansac EPnP) on the object votes of one pair.

CUDA is measured too when available (synchronised; float32, no autocast) with TF32 off, so that "float32"
means float32 (PyTorch lets cuDNN convolutions use TF32 by default on Ampere and newer GPUs, ~1e-3 relative);
``--cuda-tf32`` adds a run with TF32 on, reported separately as ``cuda_tf32``. The TF32 and cudnn.benchmark
settings of each run are in the report.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# Typical crop boxes (crop px): a hand box and the object box it grasps, overlapping (the fixture's sample 0),
# and a few variations for larger batches.
TYPICAL_HAND = [[40.0, 50, 150, 200], [60, 40, 170, 180], [30, 70, 140, 210], [50, 60, 170, 200]]
TYPICAL_OBJECT = [[100.0, 30, 220, 180], [110, 60, 230, 210], [90, 40, 200, 190], [100, 20, 215, 175]]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], object], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def _summary(seconds: list[float], batch: int) -> dict[str, float]:
    per_image = [1000.0 * s / batch for s in seconds]
    return {"min_ms_per_image": min(per_image), "median_ms_per_image": statistics.median(per_image)}


def _boxes(batch: int, worst_case: bool, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    if worst_case:
        full = torch.tensor([[0.0, 0.0, size, size]]).repeat(batch, 1)
        return full, full.clone()
    hand = torch.tensor([TYPICAL_HAND[i % 4] for i in range(batch)])
    obj = torch.tensor([TYPICAL_OBJECT[i % 4] for i in range(batch)])
    return hand, obj


def compare_with_resnet50(net, plain_net, resnet, batch: int, repeats: int, device: torch.device) -> dict:
    """Alternating rounds of ResNet-50 and HFLNet (typical boxes, whole-crop boxes, no windowing, and
    neither windowing nor the CPU fusion: ``plain_net``, the same network unfused)."""
    size = net.input_size
    images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    typical = [b.to(device) for b in _boxes(batch, False, size)]
    worst = [b.to(device) for b in _boxes(batch, True, size)]

    def hfl(boxes, windowed=True, fused=True):
        model = net if fused else plain_net

        def run():
            model.windowed_smoothing = windowed
            model(images, *boxes)

        return run

    cases = {
        "resnet50": lambda: resnet(images),
        "hflnet": hfl(typical),
        "hflnet_whole_crop_boxes": hfl(worst),
        "hflnet_no_windowing": hfl(typical, windowed=False),
        "hflnet_plain_eager": hfl(typical, windowed=False, fused=False),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    with torch.inference_mode():
        for fn in cases.values():  # warm-up
            fn()
            fn()
        for _ in range(repeats):
            for name, fn in cases.items():
                times[name].append(_timed(fn, device))
    net.windowed_smoothing = plain_net.windowed_smoothing = True
    result = {name: _summary(t, batch) for name, t in times.items()}
    for name in ("hflnet", "hflnet_whole_crop_boxes", "hflnet_no_windowing", "hflnet_plain_eager"):
        ratios = [a / b for a, b in zip(times[name], times["resnet50"])]
        result[name]["ratio_of_minima"] = min(times[name]) / min(times["resnet50"])
        result[name]["median_round_ratio"] = statistics.median(ratios)
    return result


def _run_stages(net, images, hand, obj, device: torch.device) -> tuple[dict[str, float], tuple]:
    """One forward, stage by stage (as HFLNet.forward chains them); seconds per stage and the object votes."""
    from hfl_ros.model.object_head import decode_votes

    seconds: dict[str, float] = {}

    def step(name: str, fn: Callable, *args):
        _sync(device)
        start = time.perf_counter()
        out = fn(*args)
        _sync(device)
        seconds[name] = time.perf_counter() - start
        return out

    p2 = step("backbone_fpn", net.base_net.unsmoothed, images)
    rois = step("roi_align_smoothing", net.roi_features, *p2, hand, obj)
    hand_feature, object_feature = step("interaction_blocks", net.interaction_features, rois)
    heatmaps, _, encoding = step("hand_head", net.hand_head, hand_feature)
    feature = step("hand_encoder", net.hand_encoder, heatmaps, encoding)
    step("mano_regressor_and_layer", net.mano_branch, feature)
    votes = step("object_head", lambda x: decode_votes(net.obj_head(x)), object_feature)
    return seconds, votes


def stage_breakdown(net, batch: int, repeats: int, device: torch.device) -> dict[str, float]:
    """Median ms per image of each stage, run one after the other on the stage's real inputs."""
    size = net.input_size
    images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    hand, obj = (b.to(device) for b in _boxes(batch, False, size))
    stages: dict[str, list[float]] = {}
    with torch.inference_mode():
        for round_index in range(repeats + 1):  # round 0 is the warm-up
            seconds, (vote, conf) = _run_stages(net, images, hand, obj, device)
            seconds = {name: s / batch for name, s in seconds.items()}
            seconds["pnp_one_pair"] = _time_pnp(
                vote[0].cpu().numpy(), conf[0].cpu().numpy(), obj[0].cpu().numpy()
            )
            if round_index:
                for name, s in seconds.items():
                    stages.setdefault(name, []).append(1000.0 * s)
    return {name: statistics.median(values) for name, values in stages.items()}


def _time_pnp(vote: np.ndarray, conf: np.ndarray, box: np.ndarray) -> float:
    """Vote selection + EPnP-RANSAC for one pair, on votes mapped to crop px (camera K of the crop)."""
    from hfl_ros.geometry.pnp import select_votes, solve_pnp

    rng = np.random.default_rng(0)
    control_points = rng.uniform(-0.05, 0.05, (21, 3))
    K = np.array([[600.0, 0, 128], [0, 600.0, 128], [0, 0, 1]])
    start = time.perf_counter()
    vote_px = box[:2] + vote * (box[2:] - box[:2])
    points2d, keypoints = select_votes(vote_px, conf, best_count=10, threshold=0.5)
    solve_pnp(control_points[keypoints], points2d, K, refine=False)
    return time.perf_counter() - start


def set_tf32(enabled: bool) -> None:
    """TF32 for CUDA matmuls and cuDNN convolutions (explicit: cuDNN's default is on)."""
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def backend_settings(device: torch.device) -> dict:
    """The numeric settings a run was measured with."""
    if device.type != "cuda":
        return {"dtype": "float32", "threads": torch.get_num_threads()}
    return {
        "dtype": "float32",
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "gpu": torch.cuda.get_device_name(device),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
    }


def build(device: torch.device, hand_dir: Path):
    """The official network fused for the CPU (as the Estimator runs it), the same unfused, and ResNet-50."""
    import torchvision

    from hfl_ros.data.standin_hand import write_standin_hand_model
    from hfl_ros.model import fuse_for_cpu, hflnet_resnet50

    hand_path = write_standin_hand_model(hand_dir / "STANDIN_HAND_RIGHT.pkl", "right", 0)
    torch.manual_seed(0)
    plain_net = hflnet_resnet50(mano_path=hand_path).eval().to(device)
    net = fuse_for_cpu(copy.deepcopy(plain_net))  # on a GPU it computes as plain_net does
    resnet = torchvision.models.resnet50(weights=None).eval().to(device)
    return net, plain_net, resnet


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--repeats", type=int, default=10, help="timed rounds per measurement (default 10)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4], help="batch sizes (default 1 4)")
    parser.add_argument("--no-cuda", action="store_true", help="skip CUDA even when available")
    parser.add_argument("--cuda-tf32", action="store_true",
                        help="also measure CUDA with TF32 on (as cuda_tf32; the float32 run has it off)")
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "results" / "bench_model.json", help="JSON output"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    runs = [("cpu", torch.device("cpu"), False)]
    if torch.cuda.is_available() and not args.no_cuda:
        runs.append(("cuda", torch.device("cuda"), False))
        if args.cuda_tf32:
            runs.append(("cuda_tf32", torch.device("cuda"), True))
    report: dict = {
        "benchmark": "HFLNet forward vs torchvision ResNet-50 forward, same input, one process",
        "target_ratio": 3.5,
        "official_code_ratio": 4.35,
        "config": {"variant": "harmonious", "trunk": "resnet50", "input_size": 256, "weights": "random"},
        "environment": {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
            "threads": args.threads,
            "load_average_before": os.getloadavg(),
        },
        "results": {},
    }
    with tempfile.TemporaryDirectory(prefix="bench_model_") as tmp:
        for name, device, tf32 in runs:
            set_tf32(tf32)
            net, plain_net, resnet = build(device, Path(tmp))
            per_device: dict = {"settings": backend_settings(device)}
            for batch in args.batches:
                per_device[f"batch_{batch}"] = {
                    "forward": compare_with_resnet50(net, plain_net, resnet, batch, args.repeats, device),
                    "stages_ms_per_image": stage_breakdown(net, batch, max(3, args.repeats // 2), device),
                }
                fwd = per_device[f"batch_{batch}"]["forward"]
                print(
                    f"{name} batch {batch}: "
                    f"resnet50 {fwd['resnet50']['min_ms_per_image']:.1f} ms/img, "
                    f"hflnet {fwd['hflnet']['min_ms_per_image']:.1f} ms/img, "
                    f"ratio {fwd['hflnet']['ratio_of_minima']:.2f} "
                    f"(median round {fwd['hflnet']['median_round_ratio']:.2f}; whole-crop boxes "
                    f"{fwd['hflnet_whole_crop_boxes']['ratio_of_minima']:.2f}; no windowing "
                    f"{fwd['hflnet_no_windowing']['ratio_of_minima']:.2f}; plain eager "
                    f"{fwd['hflnet_plain_eager']['ratio_of_minima']:.2f})"
                )
            report["results"][name] = per_device
    set_tf32(False)
    report["environment"]["load_average_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
