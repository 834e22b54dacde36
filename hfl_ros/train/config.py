"""Training configuration: dataclasses read from YAML, with ``section.key=value`` overrides.

The defaults are the paper's HO3D recipe (spec §7); config/train_ho3d.yaml and config/train_dexycb.yaml spell
out both recipes. Unknown keys are refused with an error naming them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..data.augment import AugmentConfig
from ..errors import InputError
from .losses import LossWeights
from .schedule import SCHEDULES

DATASET_KINDS = ("ho3d", "dexycb")


@dataclass
class ModelConfig:
    """The network (hfl_ros.model.HFLNet arguments) and the hand model used for the MANO targets."""

    variant: str = "harmonious"  # "harmonious" (paper), "single", "double"
    trunk: str = "resnet50"  # "resnet50" (paper), "resnet34", "resnet18", "efficientnet_lite0/1/2"
    heads: int = 4
    input_size: int = 256
    roi_res: int = 32  # RoIAlign grid (32 paper; 16 makes the heads about 3x cheaper for small CPU models)
    feature_channels: int = 256  # FPN and head width (256 paper)
    imagenet_weights: bool = True  # the paper initialises the trunk from ImageNet (local files only)
    frozen_stages: int = 0  # trunk stages 0..n-1 (0 = stem) kept at their initial weights; 0 in the paper
    mano_dir: str | None = None  # directory with MANO_RIGHT.pkl (or the stand-in hand model)
    init_checkpoint: str | None = None  # start from these weights (ours or official; strict), not ImageNet


@dataclass
class DataConfig:
    """Which dataset to read (see hfl_ros.data.ho3d / dexycb for the layouts)."""

    kind: str = "ho3d"  # "ho3d" (also synthetic scenes written in the HO3D layout) or "dexycb"
    root: str | None = None
    split: str = "train"
    models_dir: str | None = None  # YCB models, <dir>/<name>/points.xyz (default <root>/models)
    mano_dir: str | None = None  # DexYCB: MANO_RIGHT.pkl + MANO_LEFT.pkl (default: model.mano_dir)
    version: str = "auto"  # HO3D: "v2", "v3" or "auto"
    use_json: bool | None = None  # read the official preprocessed JSON (None: when present)
    workers: int = 4  # DataLoader worker processes (0: load in the training process)


@dataclass
class OptimConfig:
    """Adam with a StepLR schedule (spec §7); a cosine schedule, a lower trunk LR and a weight average are
    options outside the paper (hfl_ros.train.schedule, hfl_ros.train.weight_average)."""

    lr: float = 1e-4
    weight_decay: float = 5e-4
    lr_step: int = 10  # epochs between decays (HO3D 10, DexYCB 5)
    lr_gamma: float = 0.7
    scheduler_stop_epoch: int | None = None  # decay only after epochs <= this (DexYCB 35); None: always
    epochs: int = 70  # HO3D 70, DexYCB 40
    clip_grad_norm: float | None = None  # not in the paper; caps the gradient norm of from-scratch runs
    warmup_steps: int = 0  # not in the paper; the LR rises linearly over the first N steps (fine-tuning)
    schedule: str = "step"  # "step" (the paper's StepLR per epoch) or "cosine" (per step, to the run's end)
    min_lr_factor: float = 0.0  # cosine: the LR at the run's end, as a share of the peak
    trunk_lr_factor: float = 1.0  # the trunk stages' LR as a share of the heads' (pretrained trunks: < 1)
    ema_decay: float = 0.0  # > 0: keep an exponential moving average of the weights (exported when present)
    fused: bool = False  # Adam's fused kernels (same update, one kernel per step)


@dataclass
class RunConfig:
    """Batching, seeds, devices, logging and checkpoints."""

    batch_size: int = 64  # global batch (split over DDP ranks)
    seed: int = 0
    device: str = "auto"  # "auto" (CUDA when available), "cpu", "cuda", "cuda:1"
    amp: bool = True  # mixed precision, on CUDA only
    out_dir: str = "runs/hflnet"
    log_every: int = 20  # steps between log lines
    checkpoint_every_epochs: int = 1
    checkpoint_every_steps: int = 0  # also write checkpoint_step<N>.pt every N steps (0: never)
    checkpoint_every_minutes: float = 0.0  # also rewrite checkpoint_last.pt every N minutes (0: never)
    max_steps: int | None = None  # stop after this many optimizer steps (smoke runs)
    progress: bool = True  # tqdm progress bars (rank 0 only)
    deterministic: bool = False  # torch.use_deterministic_algorithms (slower on CUDA)
    tf32: bool = True  # CUDA matmuls and convolutions in TF32 (Ampere and newer; about 1e-3 relative)


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    loss: LossWeights = field(default_factory=LossWeights)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (YAML/JSON/checkpoint friendly: tuples become lists)."""
        return _plain(dataclasses.asdict(self))

    def validate(self) -> TrainConfig:
        if self.data.kind not in DATASET_KINDS:
            raise InputError(f"data.kind must be one of {DATASET_KINDS}, got {self.data.kind!r}")
        if self.run.batch_size <= 0:
            raise InputError(f"run.batch_size must be positive, got {self.run.batch_size}")
        if self.optim.epochs <= 0 or self.optim.lr_step <= 0:
            raise InputError("optim.epochs and optim.lr_step must be positive")
        if not 0 <= self.model.frozen_stages <= 5:
            raise InputError(f"model.frozen_stages must be 0..5, got {self.model.frozen_stages}")
        if not isinstance(self.optim.warmup_steps, int) or self.optim.warmup_steps < 0:
            raise InputError(f"optim.warmup_steps must be an integer >= 0, got {self.optim.warmup_steps!r}")
        o = self.optim
        if o.schedule not in SCHEDULES:
            raise InputError(f"optim.schedule must be one of {SCHEDULES}, got {o.schedule!r}")
        if not 0.0 <= o.min_lr_factor <= 1.0:
            raise InputError(f"optim.min_lr_factor must be in [0, 1], got {o.min_lr_factor}")
        if not o.trunk_lr_factor > 0.0:
            raise InputError(f"optim.trunk_lr_factor must be positive, got {o.trunk_lr_factor}")
        if not 0.0 <= o.ema_decay < 1.0:
            raise InputError(f"optim.ema_decay must be in [0, 1) (0: off), got {o.ema_decay}")
        if self.run.checkpoint_every_minutes < 0:
            raise InputError(
                f"run.checkpoint_every_minutes must be >= 0, got {self.run.checkpoint_every_minutes}"
            )
        clip = self.optim.clip_grad_norm
        if clip is not None and not (isinstance(clip, int | float) and clip > 0):
            raise InputError(f"optim.clip_grad_norm must be a positive number or null, got {clip!r}")
        return self


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _section(cls, values: Any, where: str):
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise InputError(f"config section {where!r} must be a mapping, got {type(values).__name__}")
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise InputError(f"unknown config key(s) in {where}: {', '.join(unknown)}; known: {', '.join(names)}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise InputError(f"bad config section {where!r}: {exc}") from None


_SECTIONS = {
    "model": ModelConfig,
    "data": DataConfig,
    "augment": AugmentConfig,
    "loss": LossWeights,
    "optim": OptimConfig,
    "run": RunConfig,
}


def config_from_dict(values: dict[str, Any] | None) -> TrainConfig:
    """A validated TrainConfig from nested dicts (missing keys keep their defaults)."""
    values = values or {}
    if not isinstance(values, dict):
        raise InputError(f"a config must be a mapping of sections, got {type(values).__name__}")
    unknown = sorted(set(values) - set(_SECTIONS))
    if unknown:
        raise InputError(f"unknown config section(s): {', '.join(unknown)}; known: {', '.join(_SECTIONS)}")
    return TrainConfig(**{k: _section(cls, values.get(k), k) for k, cls in _SECTIONS.items()}).validate()


def _parse_value(text: str) -> Any:
    return yaml.safe_load(text)


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` strings (values parsed as YAML) to nested dicts."""
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise InputError(f"override {item!r} must look like section.key=value")
        node = values
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise InputError(f"override {item!r}: {part!r} is not a section")
        node[parts[-1]] = _parse_value(text)
    return values


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML config (None: the defaults), apply the overrides and validate."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            raise InputError(f"config file {path} not found") from None
        except yaml.YAMLError as exc:
            raise InputError(f"config file {path} is not valid YAML: {exc}") from None
    return config_from_dict(apply_overrides(values, list(overrides or [])))
