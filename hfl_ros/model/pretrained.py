"""ImageNet trunk weights through torchvision's weights API, from the local cache only (never downloaded)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torchvision.models import ResNet18_Weights, ResNet34_Weights, ResNet50_Weights

from hfl_ros.errors import CheckpointError

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
