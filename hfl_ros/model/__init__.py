"""The HFL-Net network (torch): backbone, interaction blocks, hand/object heads, MANO layer, checkpoints."""

from hfl_ros.model.checkpoint import load_network, load_official_checkpoint, save_checkpoint
from hfl_ros.model.hflnet import HFLNet
from hfl_ros.model.mano import ManoLayer

__all__ = ["HFLNet", "ManoLayer", "load_network", "load_official_checkpoint", "save_checkpoint"]
