"""The HFL-Net network (torch): backbone, interaction blocks, hand/object heads, MANO layer, checkpoints."""

from hfl_ros.model.checkpoint import load_network, load_official_checkpoint, save_checkpoint
from hfl_ros.model.cpu_fusion import fuse_for_cpu
from hfl_ros.model.hflnet import (
    HFLNet,
    hflnet_efficientnet_lite0,
    hflnet_efficientnet_lite1,
    hflnet_efficientnet_lite2,
    hflnet_resnet18,
    hflnet_resnet34,
    hflnet_resnet50,
)
from hfl_ros.model.mano import ManoLayer

__all__ = [
    "HFLNet",
    "ManoLayer",
    "fuse_for_cpu",
    "hflnet_efficientnet_lite0",
    "hflnet_efficientnet_lite1",
    "hflnet_efficientnet_lite2",
    "hflnet_resnet18",
    "hflnet_resnet34",
    "hflnet_resnet50",
    "load_network",
    "load_official_checkpoint",
    "save_checkpoint",
]
