"""Test helpers for the bag tools: synthetic bags (from hfl_ros.demo.synthetic_bag) and small model assets."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hfl_ros.demo.synthetic_bag import (  # noqa: F401 - re-exported for the tests
    DETECTIONS_TOPIC,
    FRAME_ID,
    HAND_BOX,
    IMAGE_TOPIC,
    INFO_TOPIC,
    OBJECT_BOX,
    PERIOD_NS,
    T0_NS,
    FrameSpec,
    frame_specs,
    make_camera_info,
    make_detections,
    make_image,
    write_bag,
)


def storage_file(bag: Path) -> Path:
    """The single storage file of a bag path (the path itself for a bare file)."""
    if bag.is_file():
        return bag
    return next(p for p in bag.iterdir() if p.suffix in (".mcap", ".db3"))


def write_test_assets(root: Path) -> dict[str, str]:
    """A random-weight checkpoint (resnet18, 128 px input), the stand-in hand model and an object model."""
    import torch

    from hfl_ros.data.standin_hand import write_standin_hand_model
    from hfl_ros.model.checkpoint import save_checkpoint
    from hfl_ros.model.hflnet import hflnet_resnet18

    mano = root / "hand"
    mano.mkdir(parents=True)
    write_standin_hand_model(mano / "STANDIN_HAND_RIGHT.pkl", "right", 0)
    write_standin_hand_model(mano / "STANDIN_HAND_LEFT.pkl", "left", 0)
    torch.manual_seed(0)
    net = hflnet_resnet18(mano_path=mano / "STANDIN_HAND_RIGHT.pkl", input_size=128)
    checkpoint = save_checkpoint(root / "random.pt", net, {"note": "random weights for tests"})
    objects = root / "objects" / "3"
    objects.mkdir(parents=True)
    np.savetxt(objects / "points.xyz", np.random.default_rng(0).uniform(-0.04, 0.04, (300, 3)))
    return {"checkpoint": str(checkpoint), "mano_dir": str(mano), "object_models_dir": str(objects.parent)}
