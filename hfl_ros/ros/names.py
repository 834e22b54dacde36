"""Node, topic and frame names, each defined once (plain Python without imports: the launch files use it too).

The perception node's own names are relative, to be remapped (inputs), or private, under the node's name
(outputs). The camera names are those the sample and test bags record, and the defaults of the labeler and
of the replay launch file.
"""

from __future__ import annotations

PERCEPTION_NODE = "hfl_perception"
BAG_PLAYER_NODE = "bag_player"

# The perception node's inputs (relative names: remap them to the camera's and the detector's topics).
IMAGE_INPUT = "image"
COMPRESSED_IMAGE_INPUT = "image/compressed"
CAMERA_INFO_INPUT = "camera_info"
DETECTIONS_INPUT = "detections"

# The perception node's private outputs and service (``~/<name>``, see :func:`private`).
POSES_OUTPUT = "hand_object_poses"
OBJECTS_OUTPUT = "objects"
MARKERS_OUTPUT = "markers"
DEBUG_IMAGE_OUTPUT = "debug_image"
RESET_SERVICE = "reset"

# Global topics.
TF_TOPIC = "/tf"
DIAGNOSTICS_TOPIC = "/diagnostics"
CLOCK_TOPIC = "/clock"

# The camera of the sample and test bags; the defaults of `hfl-ros label` and replay.launch.py.
DEFAULT_IMAGE_TOPIC = "/camera/color/image_raw"
DEFAULT_CAMERA_INFO_TOPIC = "/camera/color/camera_info"
DEFAULT_DETECTIONS_TOPIC = "/detections"
DEFAULT_CAMERA_FRAME = "camera_color_optical_frame"


def private(name: str) -> str:
    """``~/<name>``: a topic or service under the node's name."""
    return f"~/{name}"


def node_topic(name: str, namespace: str = f"/{PERCEPTION_NODE}") -> str:
    """The absolute topic ``<namespace>/<name>``, e.g. where a node's private output lands (``namespace`` ""
    or "/": the root)."""
    ns = namespace.strip("/")
    return f"/{ns}/{name}" if ns else f"/{name}"


#: Prefix of rclpy's QoS override parameters (``qos_overrides.<topic>.<entity>.<policy>``).
QOS_OVERRIDES = "qos_overrides."


def is_qos_override(name: str) -> bool:
    """Whether a parameter name (or a params file's top-level key) is one of rclpy's QoS overrides."""
    return name == QOS_OVERRIDES[:-1] or name.startswith(QOS_OVERRIDES)


def qos_override_parameters(topic: str, entity: str, **policies: object) -> dict[str, object]:
    """rclpy's QoS override parameters (``qos_overrides.<topic>.<entity>.<policy>``) of one endpoint.

    ``topic`` is the fully resolved name (after namespace and remapping), ``entity`` "publisher" or
    "subscription", ``policies`` e.g. ``reliability="reliable", depth=10``. They are read once, when the
    endpoint is created: give them at start-up (a params file, ``-p``, a launch file).
    """
    if entity not in ("publisher", "subscription"):
        raise ValueError(f"entity must be 'publisher' or 'subscription', got {entity!r}")
    return {f"{QOS_OVERRIDES}{topic}.{entity}.{policy}": value for policy, value in policies.items()}
