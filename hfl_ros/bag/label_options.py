"""What ``hfl-ros label`` takes: :class:`LabelOptions`, with the perception node's names and defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..estimator_config import DETECTION_PARAMS, EstimatorConfig
from ..ros.params import SPECS
from ..tracking import SmootherConfig
from .label_output import OutputTopics


def _node_default(name: str) -> Any:
    """The perception node's default of a parameter the labeler shares."""
    default = SPECS[name].default
    return tuple(default) if isinstance(default, list) else default


#: Perception-node parameters the labeler takes too (flags, ``--params-file``), besides the Estimator's.
NODE_PARAMETERS: tuple[str, ...] = (*(spec.name for spec in DETECTION_PARAMS), "sync_slop", "publish_tf",
                                    "tf_prefix", "publish_joint_tf", "publish_mesh", "marker_lifetime",
                                    "publish_vertices")


@dataclass
class LabelOptions:
    """Everything ``hfl-ros label`` takes. Fields shared with the perception node have its parameter names and
    defaults; the Estimator's options are one :class:`~hfl_ros.estimator_config.EstimatorConfig`."""

    bag: Path
    out: Path
    image_topic: str | None = None
    camera_info_topic: str | None = None
    detections_topic: str | None = None
    estimator: EstimatorConfig = field(default_factory=EstimatorConfig)
    right_hand_labels: tuple[str, ...] = _node_default("right_hand_labels")
    left_hand_labels: tuple[str, ...] = _node_default("left_hand_labels")
    hand_labels: tuple[str, ...] = _node_default("hand_labels")
    default_hand_side: str = _node_default("default_hand_side")
    sync_slop: float = _node_default("sync_slop")
    publish_tf: bool = _node_default("publish_tf")
    tf_prefix: str = _node_default("tf_prefix")
    publish_joint_tf: bool = _node_default("publish_joint_tf")
    publish_mesh: bool = _node_default("publish_mesh")
    marker_lifetime: float = _node_default("marker_lifetime")
    publish_vertices: bool = _node_default("publish_vertices")
    batch_size: int = 8
    copy_inputs: bool = False
    resume: bool = False
    progress: bool = True
    output_topics: OutputTopics = field(default_factory=OutputTopics)
    #: --smooth: also write track ids and non-causally smoothed poses (None: no smoothing).
    smooth: SmootherConfig | None = None
