#!/usr/bin/env python3
"""End-to-end check of the CUDA path in a few minutes on one GPU, with a JSON summary.

    PYTHONPATH=. python scripts/gpu_check.py [--budget-s 240] [--out FILE] [--quick]
    PYTHONPATH=. python scripts/gpu_check.py --device-under-test cpu --quick     # development run, no GPU

Checks, in this order (each isolated: an exception is recorded with its traceback and the next check runs):
versions; model parity of the official network (harmonious ResNet-50, 256 px, random weights, fixed seed)
between the network fused for the CPU (``fuse_for_cpu``, as the Estimator runs it there) and the device in
float32 with TF32 off, with TF32 on (reported only) and under float16 autocast; a fused CPU forward then
``.to(device)`` + ``load_state_dict`` against a fresh device model; the Estimator on the test fixtures
(stand-in hand, object models, a random-weights checkpoint) on the device in fp32 and fp16 against the CPU;
Estimator latency (first call and steady state, batch 1 and 8, fp32/fp16, cudnn.benchmark off/on);
end-to-end frame latency at 640×480 with one hand-object pair through the node's frame path (message
decoding + Estimator, no ROS); training (3 AMP steps + checkpoint, resume + 1 step, 2 steps of world-size-1
DDP, 1 deterministic step twice); the cold start of a fresh process with and without ``Estimator.warm_up``.

The summary goes to ``--out`` and, when the environment variable OUT is set, to ``$OUT/gpu_check.json``; it is
rewritten after every check, so a killed run still leaves the finished checks. Without either it is printed at
the end. One line per check goes to stdout. Exit status: 0 when every check passed (or, for ``cuda``, when no
GPU is usable: one line, nothing run), 1 otherwise.

``--budget-s``: a check starts only while the run is within the budget (later ones are recorded as skipped),
and a running check is interrupted ``GRACE_S`` past it. ``--device-under-test cpu`` runs the same checks with
the device side on the CPU (the unfused network against the fused one in the model checks, where the
Estimator checks compare the fused CPU path with itself; bfloat16 for the autocast checks; gloo for DDP), so
everything but the CUDA calls themselves can be exercised without a GPU. ``--quick`` uses a small
network (ResNet-18, 128 px) and fewer frames and repetitions.

Needs torch, torchvision, numpy, opencv and the repository (``test/test_data_ho3d.py`` writes the tiny
training set); not rclpy, rosbags, pyrender, trimesh or transforms3d.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import functools
import json
import math
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SCHEMA_VERSION = 1
GRACE_S = 20.0  # a running check may overrun the budget by this much before it is interrupted
WORKER_PREFIX = "GPU_CHECK_WORKER_RESULT "
EXTRA_AMP_STEPS = 12

# Limits (issue 17). Model parity: the device against the fused CPU network on the same weights and inputs.
FP32_LIMITS = {"joints2d_px": 0.05, "joints3d_m": 1e-5, "verts3d_m": 1e-5, "obj_vote": 1e-4, "obj_conf": 1e-4}
FP16_LIMITS = {"joints2d_px": 1.0, "joints3d_m": 2e-3, "obj_vote": 1e-2}
# The CPU stand-in for float16 autocast is bfloat16 (8 bits of mantissa against 11): 8× looser.
BF16_SCALE = 8.0
# Estimator parity: the device against the CPU on the same frames.
ESTIMATOR_LIMITS = {
    "fp32": {"joints_m": 1e-3, "verts_m": 1e-3, "rotation_deg": 1.0, "translation_m": 5e-3},
    "fp16": {"joints_m": 5e-3, "verts_m": 5e-3, "rotation_deg": 1.0, "translation_m": 5e-3},
}
LOOSE_CPU = {"joints2d_px": 1e-3, "joints3d_m": 1e-6, "verts3d_m": 1e-6, "obj_vote": 1e-5, "obj_conf": 1e-5}

# Boxes in crop px of a 256 crop: three overlapping hand/object pairs and one disjoint pair.
HAND_BOXES = [[40.0, 50, 150, 200], [60, 40, 170, 180], [30, 70, 140, 210], [10, 10, 60, 60]]
OBJECT_BOXES = [[100.0, 30, 220, 180], [110, 60, 230, 210], [90, 40, 200, 190], [150, 150, 240, 240]]

# The Estimator scene: one right hand holding the test object, seen by the test camera (640×480).
WIDTH, HEIGHT = 640, 480
SCENE_K = np.array([[600.0, 0.0, 318.0], [0.0, 605.0, 242.0], [0.0, 0.0, 1.0]])
OBJECT_ROTVEC = np.array([0.4, -0.7, 0.2])
OBJECT_T = np.array([0.03, 0.0, 0.55])
WRIST_T = np.array([-0.04, 0.03, 0.52])
HAND_BOX = np.array([200.0, 170.0, 330.0, 330.0])


# --- results -----------------------------------------------------------------------------------------------


class CheckTimeoutError(Exception):
    """The check ran past the budget plus the grace time."""


@dataclass
class Record:
    """The outcome of one check: figures, limits compared, and the error if it raised."""

    name: str
    status: str = "running"  # pass, fail, error, skipped
    seconds: float = 0.0
    summary: str = ""
    figures: dict[str, Any] = field(default_factory=dict)
    limits: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    traceback: str | None = None

    def compare(self, name: str, value: float, limit: float, reported_only: bool = False) -> bool:
        """Record ``value <= limit`` (a NaN fails); returns whether it holds."""
        value = float(value)
        ok = bool(math.isfinite(value) and value <= limit)
        self.limits.append({"name": name, "value": value, "limit": limit, "ok": ok,
                            **({"reported_only": True} if reported_only else {})})
        return ok or reported_only

    def require(self, name: str, condition: bool, detail: Any = None) -> bool:
        """Record a condition that must hold."""
        self.limits.append({"name": name, "ok": bool(condition), **({"detail": detail} if detail else {})})
        return bool(condition)

    @property
    def failed_limits(self) -> list[dict[str, Any]]:
        return [entry for entry in self.limits if not entry["ok"] and not entry.get("reported_only")]

    def as_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "status": self.status, "seconds": round(self.seconds, 3),
               "summary": self.summary, "figures": _plain(self.figures), "limits": _plain(self.limits)}
        if self.error is not None:
            out["error"] = self.error
            out["traceback"] = self.traceback
        return out


def _plain(value: Any) -> Any:
    """JSON-safe: numpy/torch scalars and arrays to Python, non-finite floats to strings."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Path):
        return str(value)
    return value


# --- context -----------------------------------------------------------------------------------------------


class Context:
    """What the checks share: the device under test, the budget, the generated assets and cached outputs."""

    def __init__(self, args: argparse.Namespace, tmp: Path):
        self.args = args
        self.quick: bool = args.quick
        self.cpu_mode = args.device_under_test == "cpu"
        self.dut = torch.device("cpu") if self.cpu_mode else torch.device("cuda", 0)
        self.tmp = tmp
        self.start = time.monotonic()
        self.budget_s: float = args.budget_s
        self.cache: dict[str, Any] = {}

    # time
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def remaining(self) -> float:
        return self.budget_s - self.elapsed()

    # device helpers
    def sync(self) -> None:
        if self.dut.type == "cuda":
            torch.cuda.synchronize(self.dut)

    def autocast(self) -> contextlib.AbstractContextManager:
        """float16 autocast on CUDA; bfloat16 on the CPU stand-in."""
        if self.cpu_mode:
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return torch.autocast("cuda", dtype=torch.float16)

    @property
    def fp16_limit_scale(self) -> float:
        return BF16_SCALE if self.cpu_mode else 1.0

    # model configuration
    @property
    def net_config(self) -> dict[str, Any]:
        if self.quick:
            return {"variant": "harmonious", "trunk": "resnet18", "input_size": 128, "roi_res": 16,
                    "feature_channels": 64, "heads": 4}
        return {"variant": "harmonious", "trunk": "resnet50", "input_size": 256, "roi_res": 32,
                "feature_channels": 256, "heads": 4}

    # assets
    def hand_dir(self) -> Path:
        if "hand_dir" not in self.cache:
            ho3d = test_data_writers()
            self.cache["hand_dir"] = ho3d.write_standin_mano(self.tmp / "hand")
        return self.cache["hand_dir"]

    def object_models(self) -> tuple[Path, str, np.ndarray]:
        """Directory of object models, the class id and its control points (the HO3D test object)."""
        if "objects" not in self.cache:
            from hfl_ros.geometry.object_models import ObjectModelLibrary

            ho3d = test_data_writers()
            directory = self.tmp / "object_models"
            ho3d.write_models(directory)
            class_id = ho3d.OBJECT_NAME
            control = ObjectModelLibrary(directory).get(class_id).control_points
            self.cache["objects"] = (directory, class_id, control)
        return self.cache["objects"]

    def build_net(self, seed: int = 0) -> nn.Module:
        """The network with random weights from ``seed`` (eval mode, on the CPU).

        The heads get PyTorch's default initialisation instead of the official std-0.001 one, so that their
        outputs depend on the image (the official initialisation makes them nearly constant).
        """
        from hfl_ros.model.hflnet import HFLNet
        from hfl_ros.model.mano import STANDIN_FILE_NAMES

        torch.manual_seed(seed)
        net = HFLNet.from_config(self.net_config, self.hand_dir() / STANDIN_FILE_NAMES["right"])
        heads = [net.hand_head, net.obj_head, net.transformer_obj, net.transformer_hand]
        with torch.no_grad():
            for head in heads:
                for m in head.modules():
                    if isinstance(m, nn.Conv2d | nn.Linear):
                        m.reset_parameters()
        return net.eval()

    def reference_net(self) -> nn.Module:
        if "net" not in self.cache:
            self.cache["net"] = self.build_net(0)
        return self.cache["net"]

    def checkpoint(self) -> Path:
        if "checkpoint" not in self.cache:
            from hfl_ros.model.checkpoint import save_checkpoint

            self.cache["checkpoint"] = save_checkpoint(self.tmp / "random_weights.pt", self.reference_net(),
                                                       {"note": "gpu_check random weights"})
        return self.cache["checkpoint"]

    def model_inputs(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        size = self.net_config["input_size"]
        gen = torch.Generator().manual_seed(0)
        images = torch.rand(len(HAND_BOXES), 3, size, size, generator=gen)
        scale = size / 256.0
        return images, torch.tensor(HAND_BOXES) * scale, torch.tensor(OBJECT_BOXES) * scale

    def training_data(self) -> tuple[Path, Path]:
        """A tiny HO3D-layout training set (as test_train.py writes it) and the stand-in hand directory."""
        if "train_data" not in self.cache:
            from hfl_ros.model.mano import ManoLayer

            ho3d = test_data_writers()
            mano_dir = self.hand_dir()
            layer = ManoLayer(mano_dir, side="right", center_idx=0).eval()
            root = self.tmp / "ho3d"
            ho3d.write_tiny_ho3d(root, n_train=8, n_eval=0, mano_layer=layer)
            self.cache["train_data"] = (root, mano_dir)
        return self.cache["train_data"]

    def train_config(self, out_dir: Path, **run: Any) -> dict[str, Any]:
        """test_train.py's smoke configuration on the device under test (official network unless quick)."""
        root, mano_dir = self.training_data()
        model = {"imagenet_weights": False, "mano_dir": str(mano_dir)}
        model.update({"trunk": "resnet18", "input_size": 64} if self.quick else {"trunk": "resnet50"})
        return {
            "model": model,
            "data": {"kind": "ho3d", "root": str(root), "workers": 0},
            "augment": {"enabled": False},
            "optim": {"lr": 1e-3},
            "run": {"batch_size": 2, "device": str(self.dut), "out_dir": str(out_dir), "progress": False,
                    "log_every": 1, "amp": True, **run},
        }


def test_data_writers() -> types.ModuleType:
    """test/test_data_ho3d.py (the tiny-dataset writers of the tests), importable without pytest."""
    if str(REPO / "test") not in sys.path:
        sys.path.insert(0, str(REPO / "test"))
    try:
        import pytest  # noqa: F401
    except ImportError:  # the device machine has no pytest: decorators become no-ops
        sys.modules["pytest"] = _PytestStub("pytest")
    import test_data_ho3d

    return test_data_ho3d


class _Anything:
    """Any attribute, any call; a call with one function returns it (a no-op decorator)."""

    def __getattr__(self, name: str) -> _Anything:
        return _Anything()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if len(args) == 1 and callable(args[0]) and not kwargs:
            return args[0]
        return self


class _PytestStub(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        return _Anything()


@contextlib.contextmanager
def backend_flags() -> Iterator[None]:
    """Restore the global cuDNN/TF32/determinism switches after a check changed them."""
    saved = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
             torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32,
             torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled())
    try:
        yield
    finally:
        (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic, torch.backends.cudnn.allow_tf32,
         torch.backends.cuda.matmul.allow_tf32) = saved[:4]
        torch.use_deterministic_algorithms(saved[4], warn_only=saved[5])


def set_tf32(enabled: bool) -> None:
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


# --- checks ------------------------------------------------------------------------------------------------


def check_versions(ctx: Context, rec: Record) -> None:
    import cv2
    import torchvision

    figures = rec.figures
    figures.update(
        device_under_test=str(ctx.dut), cpu_mode=ctx.cpu_mode, quick=ctx.quick,
        python=platform.python_version(), platform=platform.platform(), cpu_count=os.cpu_count(),
        torch=torch.__version__, torchvision=torchvision.__version__, numpy=np.__version__,
        opencv=cv2.__version__, torch_cuda=torch.version.cuda, torch_threads=torch.get_num_threads(),
        cudnn=torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        tf32_defaults={"cuda_matmul": torch.backends.cuda.matmul.allow_tf32,
                       "cudnn": torch.backends.cudnn.allow_tf32,
                       "float32_matmul_precision": torch.get_float32_matmul_precision()},
        cudnn_benchmark_default=torch.backends.cudnn.benchmark,
        optional_modules={name: _importable(name) for name in ("rclpy", "transforms3d", "trimesh", "pytest")},
    )
    if ctx.dut.type == "cuda":
        start = time.perf_counter()
        torch.cuda.init()
        torch.zeros(1, device=ctx.dut).add_(1)
        torch.cuda.synchronize(ctx.dut)
        figures["cuda_init_s"] = time.perf_counter() - start
        props = torch.cuda.get_device_properties(ctx.dut)
        figures.update(gpu_name=props.name, gpu_capability=f"{props.major}.{props.minor}",
                       gpu_memory_gib=props.total_memory / 2**30, gpu_count=torch.cuda.device_count(),
                       multiprocessor_count=props.multi_processor_count)
        figures["nvidia_smi"] = _nvidia_smi()
        rec.summary = f"{props.name}, torch {torch.__version__}, CUDA {torch.version.cuda}, " \
                      f"cuDNN {figures['cudnn']}"
    else:
        rec.summary = f"cpu mode, torch {torch.__version__}"
    rec.require("torch imports", True)


def _importable(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _nvidia_smi() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or out.stderr.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unavailable: {exc}"


OUTPUT_KEYS = {"joints2d": "joints2d_px", "joints3d": "joints3d_m", "verts3d": "verts3d_m",
               "obj_vote": "obj_vote", "obj_conf": "obj_conf"}


def _cpu_reference(ctx: Context) -> dict[str, torch.Tensor]:
    """The outputs of the reference network fused for the CPU on the fixed inputs (computed once)."""
    from hfl_ros.model.cpu_fusion import fuse_for_cpu

    if "cpu_outputs" not in ctx.cache:
        net = fuse_for_cpu(copy.deepcopy(ctx.reference_net()))
        with torch.inference_mode():
            ctx.cache["cpu_outputs"] = {k: v.clone() for k, v in net(*ctx.model_inputs()).items()}
    return ctx.cache["cpu_outputs"]


def _dut_outputs(ctx: Context, net: nn.Module, autocast: bool = False) -> dict[str, torch.Tensor]:
    inputs = [t.to(ctx.dut) for t in ctx.model_inputs()]
    with torch.inference_mode(), (ctx.autocast() if autocast else contextlib.nullcontext()):
        out = net(*inputs)
    ctx.sync()
    return {k: v.detach().cpu() for k, v in out.items()}


def _dut_net(ctx: Context) -> nn.Module:
    """The reference network on the device, unfused (on the CPU stand-in: the other code path)."""
    if "dut_net" not in ctx.cache:
        ctx.cache["dut_net"] = copy.deepcopy(ctx.reference_net()).to(ctx.dut).eval()
    return ctx.cache["dut_net"]


def _differences(ref: dict[str, torch.Tensor], out: dict[str, torch.Tensor]) -> dict[str, float]:
    diffs = {}
    for key, name in OUTPUT_KEYS.items():
        diffs[name] = float((out[key].double() - ref[key].double()).abs().max())
    diffs["heatmaps"] = float((out["heatmaps"].double() - ref["heatmaps"].double()).abs().max())
    diffs["mano_shape"] = float((out["mano_shape"].double() - ref["mano_shape"].double()).abs().max())
    return diffs


def _parity(ctx: Context, rec: Record, limits: dict[str, float], tf32: bool | None, autocast: bool,
            reported_only: bool = False) -> None:
    ref = _cpu_reference(ctx)
    if tf32 is not None:
        set_tf32(tf32)
    out = _dut_outputs(ctx, _dut_net(ctx), autocast=autocast)
    diffs = _differences(ref, out)
    rec.figures["max_abs_difference"] = diffs
    rec.figures["config"] = ctx.net_config
    rec.figures["batch"] = len(HAND_BOXES)
    rec.figures["tf32"] = {"cuda_matmul": torch.backends.cuda.matmul.allow_tf32,
                           "cudnn": torch.backends.cudnn.allow_tf32}
    dtypes = {k: str(v.dtype) for k, v in out.items()}
    rec.figures["output_dtypes"] = dtypes
    rec.require("all outputs finite", all(bool(torch.isfinite(v).all()) for v in out.values()),
                [k for k, v in out.items() if not bool(torch.isfinite(v).all())])
    not_float32 = {k: d for k, d in dtypes.items() if out[k].is_floating_point() and d != "torch.float32"}
    rec.require("all outputs float32", not not_float32, not_float32)
    for name, limit in limits.items():
        rec.compare(name, diffs[name], limit, reported_only=reported_only)
    rec.summary = ", ".join(f"{k} {diffs[k]:.2e}" for k in limits)


def check_model_parity_fp32(ctx: Context, rec: Record) -> None:
    """The fused CPU network vs the device in float32 with TF32 off."""
    _parity(ctx, rec, FP32_LIMITS, tf32=False, autocast=False)


def check_model_parity_tf32(ctx: Context, rec: Record) -> None:
    """The same with TF32 on (reported against the float32 limits, not enforced)."""
    _parity(ctx, rec, FP32_LIMITS, tf32=True, autocast=False, reported_only=True)


def check_model_parity_fp16_autocast(ctx: Context, rec: Record) -> None:
    """float16 autocast (bfloat16 on the CPU stand-in, limits ×8): finite float32 outputs within limits."""
    scale = ctx.fp16_limit_scale
    rec.figures["autocast_dtype"] = "bfloat16" if ctx.cpu_mode else "float16"
    rec.figures["limit_scale"] = scale
    _parity(ctx, rec, {k: v * scale for k, v in FP16_LIMITS.items()}, tf32=False, autocast=True)


def check_to_device_load_state_dict(ctx: Context, rec: Record) -> None:
    """A fused network that ran on the CPU (packed-weight caches filled), moved to the device and given the
    reference weights, equals a fresh fused device copy of the reference; back on the CPU it equals the CPU
    reference."""
    from hfl_ros.model.cpu_fusion import fuse_for_cpu

    ref_net = ctx.reference_net()
    state = {k: v.clone() for k, v in ref_net.state_dict().items()}
    moved = fuse_for_cpu(ctx.build_net(seed=1))
    inputs = ctx.model_inputs()
    with torch.inference_mode():
        moved(*inputs)  # fills the CPU caches (folded/packed weights) for the seed-1 weights
    moved.to(ctx.dut)
    moved.load_state_dict(state)
    fresh = fuse_for_cpu(copy.deepcopy(ref_net)).to(ctx.dut).eval()
    a, b = _dut_outputs(ctx, moved), _dut_outputs(ctx, fresh)
    diff = max(float((a[k] - b[k]).abs().max()) for k in OUTPUT_KEYS)
    rec.figures["max_abs_difference_moved_vs_fresh"] = diff
    rec.figures["bitwise_equal"] = all(torch.equal(a[k], b[k]) for k in a)
    rec.compare("moved vs fresh on the device (max abs)", diff, 1e-6)
    moved.to("cpu")
    with torch.inference_mode():
        back = {k: v.clone() for k, v in moved(*inputs).items()}
    diffs = _differences(_cpu_reference(ctx), back)
    rec.figures["back_on_cpu_vs_cpu_reference"] = diffs
    for name in OUTPUT_KEYS.values():
        rec.compare(f"back on the CPU: {name}", diffs[name], LOOSE_CPU[name])
    rec.summary = f"moved vs fresh {diff:.1e}, back on CPU joints2d {diffs['joints2d_px']:.1e} px"


class PlantedScene(nn.Module):
    """The network, its 2D joints and object votes moved onto a known scene, for a well-posed Estimator check.

    With random weights the votes are noise and RANSAC's answer is arbitrary, so a device difference far below
    any tolerance could change the object pose completely. Here every item's 2D joints are the projection of
    the network's own 3D joints placed at ``wrist``, and the votes point at the projections of the object's
    control points; the network's own 2D joints and vote offsets add a few pixels of image-dependent noise,
    and the confidences keep the network's order (shifted above the 0.5 threshold). So the device's numerics
    still reach the vote selection, PnP and the translation fit, but the answer is well defined. It assumes
    every item is the (right) hand box ``hand_box`` of a 640×480 frame with camera ``K`` (hand_box_scale 1).
    """

    JOINT_NOISE = 0.02  # of the network's 2D joints' offset from the hand box centre, crop px
    VOTE_NOISE = 0.5  # of the network's vote offsets from their cell centres, box fractions

    def __init__(self, inner: nn.Module, K: np.ndarray, hand_box: np.ndarray, wrist: np.ndarray,
                 vote_fractions: np.ndarray):
        super().__init__()
        self.inner = inner
        self.register_buffer("K", torch.tensor(K, dtype=torch.float32))
        self.register_buffer("hand_box", torch.tensor(hand_box, dtype=torch.float32))
        self.register_buffer("wrist", torch.tensor(wrist, dtype=torch.float32))
        self.register_buffer("fractions", torch.tensor(vote_fractions, dtype=torch.float32))

    @property
    def input_size(self) -> int:
        return self.inner.input_size

    @property
    def mano_branch(self) -> nn.Module:
        return self.inner.mano_branch

    def forward(self, images: torch.Tensor, hand_boxes: torch.Tensor, object_boxes: torch.Tensor):
        out = dict(self.inner(images, hand_boxes, object_boxes))
        with torch.autocast(images.device.type, enabled=False):
            boxes = hand_boxes.float()
            s = (boxes[:, 2] - boxes[:, 0]) / (self.hand_box[2] - self.hand_box[0])  # image px -> crop px
            offset = boxes[:, :2] - s[:, None] * self.hand_box[:2]
            cam = out["joints3d"].float() + self.wrist
            px = torch.stack((self.K[0, 0] * cam[..., 0] / cam[..., 2] + self.K[0, 2],
                              self.K[1, 1] * cam[..., 1] / cam[..., 2] + self.K[1, 2]), dim=-1)
            centre = (boxes[:, None, :2] + boxes[:, None, 2:]) / 2
            joints2d = s[:, None, None] * px + offset[:, None] + self.JOINT_NOISE * (out["joints2d"] - centre)
            votes = out["obj_vote"].float()
            rows, cols = votes.shape[1:3]
            cells = torch.stack(torch.meshgrid((torch.arange(cols, device=votes.device) + 0.5) / cols,
                                               (torch.arange(rows, device=votes.device) + 0.5) / rows,
                                               indexing="xy"), dim=-1)  # (rows, cols, 2) as (x, y)
            votes = self.fractions + self.VOTE_NOISE * (votes - cells[None, :, :, None, :])
            conf = 0.7 + 0.2 * out["obj_conf"].float()
        out.update(joints2d=joints2d, obj_vote=votes, obj_conf=conf)
        return out


def _scene(ctx: Context) -> dict[str, Any]:
    """The Estimator scene: object pose, its detection box, the hand box and the frames (images differ)."""
    if "scene" not in ctx.cache:
        from hfl_ros.geometry.camera import project
        from hfl_ros.geometry.rotations import axis_angle_to_matrix

        _, class_id, control = ctx.object_models()
        R = axis_angle_to_matrix(OBJECT_ROTVEC)
        cp2d = project(control @ R.T + OBJECT_T, SCENE_K)
        object_box = np.concatenate([cp2d.min(0), cp2d.max(0)])
        fractions = (cp2d - object_box[:2]) / (object_box[2:] - object_box[:2])
        frames = []
        count = 2 if ctx.quick else 4
        for seed in range(count):
            rng = np.random.default_rng(100 + seed)
            small = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
            frames.append(np.kron(small, np.ones((16, 16, 1), dtype=np.uint8)))
        ctx.cache["scene"] = {"R": R, "t": OBJECT_T, "object_box": object_box, "fractions": fractions,
                              "class_id": class_id, "frames": frames}
    return ctx.cache["scene"]


def _detections(scene: dict[str, Any]) -> list:
    from hfl_ros.results import Detection

    return [Detection.hand(HAND_BOX, "right", 0.9),
            Detection.object(scene["object_box"], scene["class_id"], 0.8)]


def _estimator(ctx: Context, device: torch.device, fp16: bool, **kwargs: Any):
    """An Estimator over the planted scene, its network loaded from the random-weights checkpoint."""
    from hfl_ros.estimator import Estimator
    from hfl_ros.model.checkpoint import load_network

    key = f"planted_{device}"
    if key not in ctx.cache:  # loaded once per device; the Estimators on a device share it
        net, _ = load_network(ctx.checkpoint(), mano_path=None)
        ctx.cache[key] = PlantedScene(net, SCENE_K, HAND_BOX, WRIST_T, _scene(ctx)["fractions"])
    planted = ctx.cache[key]
    models, _, _ = ctx.object_models()
    return Estimator(net=planted, mano_dir=ctx.hand_dir(), object_models=models, device=str(device),
                     fp16=fp16 and device.type == "cuda", **kwargs)


def _estimate_frames(ctx: Context, estimator) -> list:
    scene = _scene(ctx)
    return estimator.estimate_batch([(image, SCENE_K, _detections(scene)) for image in scene["frames"]])


def _angle_deg(Ra: np.ndarray, Rb: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(Ra.T @ Rb) - 1) / 2, -1, 1))))


def _estimator_parity(ctx: Context, rec: Record, precision: str) -> None:
    from hfl_ros.results import Status

    if "estimator_cpu" not in ctx.cache:
        ctx.cache["estimator_cpu"] = _estimate_frames(ctx, _estimator(ctx, torch.device("cpu"), False))
    reference = ctx.cache["estimator_cpu"]
    fp16 = precision == "fp16"
    estimator = _estimator(ctx, ctx.dut, fp16)
    rec.figures["precision"] = "float16 autocast" if estimator.fp16 else "float32"
    if fp16 and not estimator.fp16:
        rec.figures["note"] = "cpu mode: the Estimator has no fp16 on the CPU, so this ran in float32"
    results = _estimate_frames(ctx, estimator)
    limits = ESTIMATOR_LIMITS[precision]
    scene = _scene(ctx)
    worst = {"joints_m": 0.0, "verts_m": 0.0, "rotation_deg": 0.0, "translation_m": 0.0}
    statuses, truth = [], []
    for frame_ref, frame_out in zip(reference, results):
        assert isinstance(frame_ref, list) and isinstance(frame_out, list), (frame_ref, frame_out)
        for a, b in zip(frame_ref, frame_out):
            statuses.append([a.status.name, b.status.name])
            worst["joints_m"] = max(worst["joints_m"], float(np.abs(a.hand.joints3d - b.hand.joints3d).max()))
            worst["verts_m"] = max(worst["verts_m"], float(np.abs(a.hand.verts3d - b.hand.verts3d).max()))
            if a.object is not None and b.object is not None and a.object.valid and b.object.valid:
                angle = _angle_deg(a.object.rotation, b.object.rotation)
                shift = float(np.linalg.norm(a.object.translation - b.object.translation))
                worst["rotation_deg"] = max(worst["rotation_deg"], angle)
                worst["translation_m"] = max(worst["translation_m"], shift)
            if a.object is not None and a.object.valid:
                truth.append({"cpu_object_rotation_error_deg": _angle_deg(a.object.rotation, scene["R"]),
                              "cpu_object_translation_error_m": float(np.linalg.norm(a.object.translation
                                                                                      - scene["t"])),
                              "cpu_wrist_error_m": float(np.linalg.norm(a.hand.wrist_translation - WRIST_T))})
    rec.figures["statuses_cpu_device"] = statuses
    rec.figures["tf32"] = {"cuda_matmul": torch.backends.cuda.matmul.allow_tf32,
                           "cudnn": torch.backends.cudnn.allow_tf32}  # PyTorch's defaults, as a user runs
    rec.figures["max_difference"] = worst
    rec.figures["cpu_reference_vs_scene_truth"] = truth
    rec.require("identical statuses", all(a == b for a, b in statuses), statuses)
    rec.require("the CPU reference solved the planted scene (status OK, object pose valid)",
                bool(truth) and all(a == Status.OK.name for a, _ in statuses), statuses)
    for name, limit in limits.items():
        rec.compare(name, worst[name], limit)
    rec.summary = (f"{len(statuses)} results, joints {worst['joints_m'] * 1e3:.3f} mm, "
                   f"object {worst['rotation_deg']:.3f} deg / {worst['translation_m'] * 1e3:.3f} mm")


def check_estimator_parity_fp32(ctx: Context, rec: Record) -> None:
    _estimator_parity(ctx, rec, "fp32")


def check_estimator_parity_fp16(ctx: Context, rec: Record) -> None:
    _estimator_parity(ctx, rec, "fp16")


def _timed(ctx: Context, fn: Callable[[], Any]) -> float:
    ctx.sync()
    start = time.perf_counter()
    fn()
    ctx.sync()
    return time.perf_counter() - start


def _steady(ctx: Context, fn: Callable[[], Any], repeats: int, max_s: float) -> dict[str, float]:
    times: list[float] = []
    deadline = time.perf_counter() + max_s
    while len(times) < repeats and (len(times) < 3 or time.perf_counter() < deadline):
        times.append(_timed(ctx, fn))
    times.sort()
    return {"median_ms": 1e3 * statistics.median(times), "min_ms": 1e3 * times[0],
            "p90_ms": 1e3 * times[min(len(times) - 1, int(0.9 * len(times)))], "calls": len(times)}


def check_estimator_latency(ctx: Context, rec: Record) -> None:
    """First call and steady state of estimate_batch at batch 1 and 8 (1 and 2 with --quick; one pair a
    frame), per precision and cudnn.benchmark setting, in this order (later first calls find kernels loaded by
    earlier ones)."""
    scene = _scene(ctx)
    frame = (scene["frames"][0], SCENE_K, _detections(scene))
    repeats, max_s = (2, 0.3) if ctx.quick else (30, 2.0)
    batches = (1, 2) if ctx.quick else (1, 8)
    table = []
    for precision in ("fp32", "fp16"):
        for benchmark in (False, True):
            estimator = _estimator(ctx, ctx.dut, precision == "fp16", cudnn_benchmark=benchmark, max_batch=8)
            torch.backends.cudnn.benchmark = benchmark
            for batch in batches:
                run = functools.partial(estimator.estimate_batch, [frame] * batch)
                first = _timed(ctx, run)
                steady = _steady(ctx, run, repeats, max_s)
                row = {"precision": "fp16" if estimator.fp16 else "fp32", "cudnn_benchmark": benchmark,
                       "batch": batch, "first_call_ms": 1e3 * first, **steady,
                       "median_ms_per_frame": steady["median_ms"] / batch}
                table.append(row)
                rec.require(f"{precision} benchmark={benchmark} batch {batch} finite", math.isfinite(first))
    rec.figures["rows"] = table
    rec.figures["tf32"] = {"cuda_matmul": torch.backends.cuda.matmul.allow_tf32,
                           "cudnn": torch.backends.cudnn.allow_tf32}
    best = min(table, key=lambda r: r["median_ms_per_frame"])
    rec.summary = (f"best {best['median_ms_per_frame']:.1f} ms/frame ({best['precision']}, batch "
                   f"{best['batch']}, benchmark {best['cudnn_benchmark']}); batch 1 fp32 first/steady "
                   f"{table[0]['first_call_ms']:.0f}/{table[0]['median_ms']:.1f} ms")


def _messages(image: np.ndarray, scene: dict[str, Any]) -> tuple[Any, Any, Any]:
    """sensor_msgs/Image (bgr8), vision_msgs/Detection2DArray and sensor_msgs/CameraInfo stand-ins."""
    ns = types.SimpleNamespace
    bgr = np.ascontiguousarray(image[..., ::-1])
    image_msg = ns(encoding="bgr8", height=HEIGHT, width=WIDTH, step=3 * WIDTH, data=bgr.tobytes())

    def detection(box: np.ndarray, class_id: str, score: float) -> Any:
        centre = ns(position=ns(x=(box[0] + box[2]) / 2, y=(box[1] + box[3]) / 2), theta=0.0)
        bbox = ns(center=centre, size_x=box[2] - box[0], size_y=box[3] - box[1])
        return ns(bbox=bbox, results=[ns(hypothesis=ns(class_id=class_id, score=score))])

    detections = ns(detections=[detection(HAND_BOX, "right_hand", 0.9),
                                detection(scene["object_box"], scene["class_id"], 0.8)])
    camera = ns(k=SCENE_K.reshape(-1).tolist())
    return image_msg, detections, camera


def check_end_to_end_latency(ctx: Context, rec: Record) -> None:
    """Frame latency of the node's path (process_frame: message decoding + Estimator.estimate) at 640×480
    with one hand-object pair, fp32 and fp16 (cudnn.benchmark on, as the Estimator sets it)."""
    from hfl_ros.ros.convert import LabelMap
    from hfl_ros.ros.frame_processor import process_frame

    scene = _scene(ctx)
    messages = _messages(scene["frames"][0], scene)
    repeats, max_s = (3, 0.5) if ctx.quick else (100, 3.0)
    rows = {}
    for precision in ("fp32", "fp16"):
        estimator = _estimator(ctx, ctx.dut, precision == "fp16")
        rec.figures[f"{precision}_warm_up_s"] = estimator.warm_up()
        outcomes: list[Any] = []

        def frame(estimator=estimator, outcomes=outcomes) -> None:
            outcomes.append(process_frame(estimator, *messages, LabelMap()))

        steady = _steady(ctx, frame, repeats, max_s)
        steady["frames_per_s"] = 1e3 / steady["median_ms"]
        steady["precision"] = "fp16" if estimator.fp16 else "fp32"
        rows[precision] = steady
        last = outcomes[-1]
        rec.require(f"{precision}: one result, no frame error",
                    last.frame_error is None and len(last.results) == 1, str(last.frame_error))
        rec.require(f"{precision}: status OK", bool(last.results) and last.results[0].status.name == "OK",
                    [r.status.name for r in last.results])
    rec.figures["rows"] = rows
    rec.figures["note"] = ("message decoding (bgr8) + Estimator.estimate; the ROS message building and "
                           "publishing of the node are not included")
    rec.figures["goal_frames_per_s_fp16"] = 100
    rec.summary = ", ".join(f"{k} {v['median_ms']:.1f} ms ({v['frames_per_s']:.0f} fps)"
                            for k, v in rows.items())


def check_training_amp(ctx: Context, rec: Record) -> None:
    """3 training steps (AMP on CUDA): finite losses, parameters change, checkpoint written; then resume from
    that checkpoint and take 1 more step.

    GradScaler skips the steps whose scaled float16 gradients overflow, halving its scale each time; if it
    skipped all 3, the same trainer continues (up to ``EXTRA_AMP_STEPS`` more) until a step applies, and the
    count is reported, so that a slow scaler start and a broken update are told apart.
    """
    from hfl_ros.model.checkpoint import read_checkpoint_file
    from hfl_ros.train.config import config_from_dict
    from hfl_ros.train.trainer import Trainer

    out = ctx.tmp / "train_amp"
    trainer = Trainer(config_from_dict(ctx.train_config(out, max_steps=3)))
    applied: list[bool] = []
    step = trainer.train_step

    def recording_step(batch: Any) -> Any:
        result = step(batch)
        applied.append(bool(result[2]))
        return result

    trainer.train_step = recording_step
    before = {k: v.detach().clone() for k, v in trainer.net.named_parameters()}
    try:
        result = trainer.train()
        changed = sum(not torch.equal(before[k], v.detach()) for k, v in trainer.net.named_parameters())
        checkpoint = None
        if result.checkpoint is not None and Path(result.checkpoint).is_file():
            checkpoint = ctx.tmp / "train_amp_step3.pt"
            checkpoint.write_bytes(Path(result.checkpoint).read_bytes())
        extra: dict[str, Any] = {}
        if not any(applied):
            more = trainer.train(max_steps=3 + EXTRA_AMP_STEPS)
            extra = {"steps_applied": applied[3:], "losses": [h["loss"] for h in more.history]}
    finally:
        trainer.close()
    changed_later = sum(not torch.equal(before[k], v.detach()) for k, v in trainer.net.named_parameters())
    losses = [h["loss"] for h in result.history]
    rec.figures.update(amp=trainer.amp, device=str(trainer.device), losses=losses, steps_applied=applied[:3],
                       parameters_changed=changed, parameters=len(before),
                       grad_scale=float(trainer.scaler.get_scale()) if trainer.amp else None)
    if extra:
        rec.figures["after_3_skipped_steps"] = {**extra, "parameters_changed": changed_later}
    rec.require("3 steps", len(losses) == 3, losses)
    rec.require("finite losses", all(math.isfinite(x) for x in losses), losses)
    rec.require("parameters changed (within 3 steps, or the scaler's first applied step)", changed_later > 0,
                {"steps_applied": applied})
    rec.require("checkpoint written", checkpoint is not None)
    if ctx.dut.type == "cuda":
        rec.require("AMP on", trainer.amp)
    if checkpoint is None:
        return
    saved = read_checkpoint_file(checkpoint)
    rec.require("checkpoint at step 3", saved["train_state"]["global_step"] == 3, saved["train_state"])

    resumed = Trainer(config_from_dict(ctx.train_config(ctx.tmp / "train_resumed", max_steps=4)),
                      resume=checkpoint)
    try:
        again = resumed.train()
    finally:
        resumed.close()
    steps = [h["step"] for h in again.history]
    rec.figures["resumed"] = {"steps": steps, "losses": [h["loss"] for h in again.history]}
    rec.require("resume: exactly step 4", steps == [4], steps)
    rec.require("resume: finite loss", all(math.isfinite(h["loss"]) for h in again.history))
    rec.require("resume: checkpoint written",
                again.checkpoint is not None and Path(again.checkpoint).is_file())
    rec.summary = (f"losses {', '.join(f'{x:.3g}' for x in losses)}; applied {applied[:3]}; "
                   f"{changed_later}/{len(before)} parameters changed; resumed step {steps}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_worker(ctx: Context, rec: Record, kind: str, payload: dict[str, Any],
                env: dict[str, str] | None = None, limit_s: float = 150.0) -> dict[str, Any]:
    """Run ``gpu_check.py --worker kind`` in a fresh process; its result (last marked stdout line)."""
    spec = ctx.tmp / f"worker_{kind}.json"
    spec.write_text(json.dumps(payload))
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join([str(REPO), full_env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    full_env.update(env or {})
    timeout = max(10.0, min(limit_s, ctx.remaining() + GRACE_S))
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, "--worker-spec", str(spec)]
    start = time.perf_counter()
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=full_env,
                              cwd=REPO)
    except subprocess.TimeoutExpired as exc:
        rec.figures["worker_output_tail"] = _tail((exc.stdout or b"").decode(errors="replace")
                                                  if isinstance(exc.stdout, bytes) else (exc.stdout or ""))
        raise CheckTimeoutError(f"worker {kind} did not finish within {timeout:.0f} s") from None
    rec.figures["worker_seconds"] = time.perf_counter() - start
    rec.figures["worker_exit_code"] = proc.returncode
    lines = [line for line in proc.stdout.splitlines() if line.startswith(WORKER_PREFIX)]
    if proc.returncode != 0 or not lines:
        rec.figures["worker_output_tail"] = _tail(proc.stdout + "\n" + proc.stderr)
        raise RuntimeError(f"worker {kind} exited with {proc.returncode}: {_tail(proc.stderr, 1500)}")
    return json.loads(lines[-1][len(WORKER_PREFIX):])


def _tail(text: str, chars: int = 4000) -> str:
    return text[-chars:]


def check_training_ddp(ctx: Context, rec: Record) -> None:
    """2 steps of a world-size-1 DDP run as torchrun sets it up (NCCL on CUDA, gloo on the CPU)."""
    config = ctx.train_config(ctx.tmp / "train_ddp", max_steps=2)
    env = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(_free_port()), "NCCL_DEBUG": "WARN"}
    result = _run_worker(ctx, rec, "ddp", {"config": config}, env=env, limit_s=75.0)
    rec.figures.update(result)
    expected = "gloo" if ctx.cpu_mode else "nccl"
    rec.require(f"backend {expected}", result.get("backend") == expected, result.get("backend"))
    rec.require("2 steps, finite losses", len(result["losses"]) == 2
                and all(math.isfinite(x) for x in result["losses"]), result["losses"])
    rec.require("checkpoint written without the DDP prefix", bool(result.get("checkpoint_ok")))
    rec.require("process group closed", not result.get("still_initialized", True))
    rec.summary = f"{result.get('backend')}: losses {result['losses']}"


def check_training_deterministic(ctx: Context, rec: Record) -> None:
    """1 step with run.deterministic, twice in a fresh process: the same loss and the same weights."""
    payload = {"configs": [ctx.train_config(ctx.tmp / f"train_det{i}", max_steps=1, deterministic=True)
                           for i in range(2)]}
    result = _run_worker(ctx, rec, "deterministic", payload, limit_s=90.0)
    rec.figures.update(result)
    rec.require("both runs finished with a finite loss", len(result["losses"]) == 2
                and all(math.isfinite(x) for x in result["losses"]), result["losses"])
    rec.require("identical losses", result["losses"][0] == result["losses"][1], result["losses"])
    # The FPN's bilinear upsampling has no deterministic CUDA backward (allowed with a warning), so the
    # weights after the step may differ in the last bits: reported.
    rec.compare("max abs weight difference between the runs", result["max_weight_difference"], 0.0,
                reported_only=True)
    rec.summary = f"losses {result['losses']}, weight difference {result['max_weight_difference']:.1e}"


def check_cold_start(ctx: Context, rec: Record) -> None:
    """A fresh process as the node starts it (fp16 on CUDA): first-frame latency without/with warm_up()."""
    payload = {"checkpoint": str(ctx.checkpoint()), "hand_dir": str(ctx.hand_dir()),
               "models": str(ctx.object_models()[0]), "device": str(ctx.dut), "fp16": not ctx.cpu_mode,
               "frames": 3 if ctx.quick else 20}
    rows = {}
    for warm in (False, True):
        rows["with_warm_up" if warm else "without_warm_up"] = _run_worker(
            ctx, rec, "cold-start", {**payload, "warm_up": warm}, limit_s=90.0)
    rec.figures["rows"] = rows
    for name, row in rows.items():
        rec.require(f"{name}: frames processed", row["frames"] > 0)
    cold, warm = rows["without_warm_up"], rows["with_warm_up"]
    rec.summary = (f"first frame {cold['first_frame_ms']:.0f} ms without warm-up, "
                   f"{warm['first_frame_ms']:.0f} ms after a {warm['warm_up_s']:.1f} s warm-up; "
                   f"steady {cold['steady_median_ms']:.1f} ms")


CHECKS: list[tuple[str, Callable[[Context, Record], None]]] = [
    ("versions", check_versions),
    ("model_parity_fp32_tf32_off", check_model_parity_fp32),
    ("model_parity_tf32_on", check_model_parity_tf32),
    ("model_parity_fp16_autocast", check_model_parity_fp16_autocast),
    ("to_device_load_state_dict", check_to_device_load_state_dict),
    ("estimator_parity_fp32", check_estimator_parity_fp32),
    ("estimator_parity_fp16", check_estimator_parity_fp16),
    ("estimator_latency", check_estimator_latency),
    ("end_to_end_latency_640x480", check_end_to_end_latency),
    ("training_amp_and_resume", check_training_amp),
    ("training_ddp_world_size_1", check_training_ddp),
    ("training_deterministic", check_training_deterministic),
    ("cold_start", check_cold_start),
]


# --- workers (fresh processes) -----------------------------------------------------------------------------


def worker_ddp(spec: dict[str, Any]) -> dict[str, Any]:
    import torch.distributed as dist

    from hfl_ros.model.checkpoint import read_checkpoint_file
    from hfl_ros.train.config import config_from_dict
    from hfl_ros.train.trainer import Trainer

    trainer = Trainer(config_from_dict(spec["config"]))
    try:
        backend = dist.get_backend() if dist.is_initialized() else None
        wrapped = type(trainer.model).__name__
        result = trainer.train()
    finally:
        trainer.close()
    saved = read_checkpoint_file(result.checkpoint)
    return {"backend": backend, "model_wrapper": wrapped, "losses": [h["loss"] for h in result.history],
            "checkpoint_ok": saved["train_state"]["global_step"] == 2
            and not any(k.startswith("module.") for k in saved["state_dict"]),
            "still_initialized": dist.is_initialized()}


def worker_deterministic(spec: dict[str, Any]) -> dict[str, Any]:
    from hfl_ros.train.config import config_from_dict
    from hfl_ros.train.trainer import Trainer

    losses, weights = [], []
    for config in spec["configs"]:
        trainer = Trainer(config_from_dict(config))
        try:
            result = trainer.train()
        finally:
            trainer.close()
        losses.append(result.history[-1]["loss"])
        weights.append({k: v.detach().cpu().clone() for k, v in trainer.net.state_dict().items()})
    diff = max(float((weights[0][k].double() - weights[1][k].double()).abs().max())
               for k in weights[0] if weights[0][k].is_floating_point())
    return {"losses": losses, "max_weight_difference": diff,
            "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled()}


def worker_cold_start(spec: dict[str, Any]) -> dict[str, Any]:
    """Construct the Estimator as the node does, optionally warm it up, then time frames."""
    from hfl_ros.estimator import Estimator
    from hfl_ros.ros.convert import LabelMap
    from hfl_ros.ros.frame_processor import process_frame

    device = torch.device(spec["device"])

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    start = time.perf_counter()
    estimator = Estimator(checkpoint_path=spec["checkpoint"], mano_dir=spec["hand_dir"],
                          object_models=spec["models"], device=spec["device"], fp16=spec["fp16"],
                          with_vertices=True)
    sync()
    construct_s = time.perf_counter() - start
    warm_up_s = estimator.warm_up() if spec["warm_up"] else 0.0
    rng = np.random.default_rng(7)
    image = np.kron(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8), np.ones((16, 16, 1), np.uint8))
    object_box = np.array([330.0, 150.0, 450.0, 330.0])
    scene = {"object_box": object_box, "class_id": "006_mustard_bottle"}
    messages = _messages(image, scene)
    times = []
    for _ in range(max(3, spec["frames"])):
        sync()
        tick = time.perf_counter()
        process_frame(estimator, *messages, LabelMap())
        sync()
        times.append(time.perf_counter() - tick)
    return {"construct_s": construct_s, "warm_up_s": warm_up_s, "first_frame_ms": 1e3 * times[0],
            "second_frame_ms": 1e3 * times[1], "steady_median_ms": 1e3 * statistics.median(times[2:]),
            "frames": len(times), "fp16": estimator.fp16, "device": estimator.device}


WORKERS = {"ddp": worker_ddp, "deterministic": worker_deterministic, "cold-start": worker_cold_start}


# --- driver ------------------------------------------------------------------------------------------------


class Summary:
    """The JSON summary, rewritten (atomically) to every destination after each check."""

    def __init__(self, ctx: Context, destinations: list[Path]):
        self.ctx = ctx
        self.destinations = destinations
        self.records: list[Record] = []
        self.started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")

    def as_dict(self, finished: bool) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for rec in self.records:
            counts[rec.status] = counts.get(rec.status, 0) + 1
        failed = [r.name for r in self.records if r.status in ("fail", "error")]
        skipped = [r.name for r in self.records if r.status == "skipped"]
        if not finished:
            status = "running"
        else:
            status = "pass" if not failed and not skipped else "fail"
        return {
            "schema": SCHEMA_VERSION, "script": "scripts/gpu_check.py", "started_utc": self.started,
            "device_under_test": str(self.ctx.dut), "cpu_mode": self.ctx.cpu_mode, "quick": self.ctx.quick,
            "budget_s": self.ctx.budget_s, "elapsed_s": round(self.ctx.elapsed(), 3), "status": status,
            "counts": counts, "failed": failed, "skipped": skipped,
            "checks": [r.as_dict() for r in self.records],
        }

    def write(self, finished: bool = False) -> None:
        text = json.dumps(self.as_dict(finished), indent=2, allow_nan=False) + "\n"
        for path in self.destinations:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(path.name + ".tmp")
                tmp.write_text(text)
                os.replace(tmp, path)
            except OSError as exc:
                print(f"gpu_check: cannot write {path}: {exc}", file=sys.stderr, flush=True)


def _on_alarm(signum: int, frame: Any) -> None:
    raise CheckTimeoutError("the check ran past the time budget")


def run_check(ctx: Context, name: str, fn: Callable[[Context, Record], None]) -> Record:
    rec = Record(name)
    if ctx.remaining() <= 0:
        rec.status = "skipped"
        rec.summary = f"time budget of {ctx.budget_s:.0f} s used up"
        return rec
    start = time.perf_counter()
    use_alarm = hasattr(signal, "SIGALRM")
    if use_alarm:
        signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, max(1.0, ctx.remaining() + GRACE_S))
    try:
        with backend_flags():
            fn(ctx, rec)
        failed = rec.failed_limits
        rec.status = "fail" if failed else "pass"
        if failed:
            rec.summary = "FAILED " + "; ".join(_describe(entry) for entry in failed) + " | " + rec.summary
    except Exception as exc:  # a check must never stop the others
        rec.status = "error"
        rec.error = f"{type(exc).__name__}: {exc}"
        rec.traceback = traceback.format_exc()
        rec.summary = rec.error.splitlines()[0][:300] if rec.error else ""
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
        rec.seconds = time.perf_counter() - start
    return rec


def _describe(entry: dict[str, Any]) -> str:
    if "value" in entry:
        return f"{entry['name']} = {entry['value']:.3g} > {entry['limit']:.3g}"
    return entry["name"] + (f" ({entry['detail']})" if entry.get("detail") else "")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget-s", type=float, default=240.0,
                        help="start no check after this many seconds (default 240)")
    parser.add_argument("--out", type=Path, help="JSON summary file (also written to $OUT/gpu_check.json)")
    parser.add_argument("--device-under-test", choices=("cuda", "cpu"), default="cuda",
                        help="cuda (default) or cpu: the development mode without a GPU")
    parser.add_argument("--quick", action="store_true",
                        help="small network (ResNet-18, 128 px), fewer frames and repetitions")
    parser.add_argument("--only", help="comma-separated check names to run (default: all)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--worker-spec", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker:
        result = WORKERS[args.worker](json.loads(args.worker_spec.read_text()))
        print(WORKER_PREFIX + json.dumps(_plain(result)), flush=True)
        return 0
    if args.device_under_test == "cuda":
        from hfl_ros.devices import cuda_unusable_reason

        reason = cuda_unusable_reason()
        if reason is not None:
            print(f"gpu_check: no usable CUDA GPU ({reason}); nothing checked", flush=True)
            return 0
    names = [name for name, _ in CHECKS]
    selected = names if not args.only else [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(selected) - set(names))
    if unknown:
        print(f"gpu_check: unknown checks {unknown}; known: {', '.join(names)}", file=sys.stderr)
        return 2
    destinations = [args.out] if args.out else []
    if os.environ.get("OUT"):
        destinations.append(Path(os.environ["OUT"]) / "gpu_check.json")
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        ctx = Context(args, Path(tmp))
        summary = Summary(ctx, destinations)
        print(f"gpu_check: device under test {ctx.dut}{' (cpu mode)' if ctx.cpu_mode else ''}, "
              f"budget {ctx.budget_s:.0f} s, {'quick' if ctx.quick else 'official network'}", flush=True)
        for name, fn in CHECKS:
            if name not in selected:
                continue
            rec = run_check(ctx, name, fn)
            summary.records.append(rec)
            summary.write()
            print(f"gpu_check: {name:<28} {rec.status.upper():<7} {rec.seconds:6.1f} s  {rec.summary}",
                  flush=True)
        summary.write(finished=True)
        result = summary.as_dict(finished=True)
    if not destinations:
        print(json.dumps(result, indent=2))
    print(f"gpu_check: {result['status'].upper()} in {result['elapsed_s']:.0f} s: {result['counts']}"
          + (f"; failed: {', '.join(result['failed'])}" if result["failed"] else "")
          + (f"; skipped: {', '.join(result['skipped'])}" if result["skipped"] else ""), flush=True)
    return 0 if result["status"] == "pass" else 1


if __name__ == "__main__":
    sys.exit(main())
