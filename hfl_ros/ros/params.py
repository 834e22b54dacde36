"""The perception node's parameters: names, defaults, descriptions, validation.

The specs and the validation are plain Python (the docs and tests read them); :func:`declare_parameters` is
the only function that needs rclpy, and imports it when called.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..devices import DeviceError, check_device_name
from ..tracking.filters import FILTER_MODES

QOS_RELIABILITIES = ("best_effort", "reliable")
QUEUE_POLICIES = ("latest", "all")
IMAGE_TRANSPORTS = ("raw", "compressed")
SIDES = ("right", "left")


class ParameterError(ValueError):
    """A parameter value is invalid. ``name`` is the parameter; the message says what to do."""

    def __init__(self, name: str, message: str):
        super().__init__(f"parameter '{name}': {message}")
        self.name = name


@dataclass(frozen=True)
class ParamSpec:
    """One parameter. ``runtime``: may be changed while the node runs (``ros2 param set``)."""

    name: str
    default: Any
    description: str
    runtime: bool = False
    choices: tuple[str, ...] | None = None
    min_value: float | None = None
    max_value: float | None = None

    @property
    def constraints(self) -> str:
        """Human-readable constraints, for the descriptor and the docs."""
        parts = []
        if self.choices:
            parts.append("one of " + ", ".join(self.choices))
        if self.min_value is not None and self.max_value is not None:
            parts.append(f"in [{self.min_value:g}, {self.max_value:g}]")
        elif self.min_value is not None:
            parts.append(f">= {self.min_value:g}")
        return "; ".join(parts)


PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("checkpoint_path", "", "HFL-Net checkpoint: the official .pth.tar or one saved by hfl-ros "
              "train."),
    ParamSpec("mano_dir", "", "Directory with MANO_RIGHT.pkl / MANO_LEFT.pkl (or the stand-in hand model). "
              "Empty: use the hand model stored in the checkpoint."),
    ParamSpec("object_models_dir", "", "Object models, one sub-directory per class id holding points.xyz or "
              "*.obj / *.ply (YCB layout). Empty: no object poses (every object is an unknown class)."),
    ParamSpec("device", "auto", "Inference device: auto (cuda when available), cpu, cuda or cuda:N."),
    ParamSpec("fp16", False, "Half-precision inference (CUDA only)."),
    ParamSpec("num_threads", 0, "torch intra-op threads; 0 keeps torch's default.", min_value=0),
    ParamSpec("right_hand_labels", ["right_hand"], "Detection class ids that are right hands."),
    ParamSpec("left_hand_labels", ["left_hand"], "Detection class ids that are left hands."),
    ParamSpec("hand_labels", ["hand"], "Detection class ids that are hands of unknown side "
              "(taken as default_hand_side)."),
    ParamSpec("default_hand_side", "right", "Side of hands detected without a side.", choices=SIDES),
    ParamSpec("hand_score_threshold", 0.0, "Hand detections scoring below this are ignored.", runtime=True,
              min_value=0.0, max_value=1.0),
    ParamSpec("object_score_threshold", 0.0, "Object detections scoring below this are ignored.",
              runtime=True, min_value=0.0, max_value=1.0),
    ParamSpec("image_transport", "raw", "raw: subscribe 'image' (sensor_msgs/Image); compressed: subscribe "
              "'image/compressed' (sensor_msgs/CompressedImage).", choices=IMAGE_TRANSPORTS),
    ParamSpec("sync_slop", 0.0, "Seconds two stamps may differ and still match; 0 = exact stamps.",
              min_value=0.0, max_value=10.0),
    ParamSpec("sync_queue_size", 10, "Messages kept per input while waiting for a match.", min_value=1),
    ParamSpec("sync_max_age", 2.0, "Seconds (stamp time) after which an unmatched message is discarded "
              "and counted.", min_value=0.01),
    ParamSpec("camera_info_wait", 0.1, "Seconds a synced frame waits for a camera_info with its stamp before "
              "the latest camera_info is used.", min_value=0.0, max_value=10.0),
    ParamSpec("camera_info_max_age", 0.0, "Largest stamp difference (s) for using the latest camera_info as "
              "a fallback; 0 = any (static calibration).", min_value=0.0),
    ParamSpec("queue_policy", "latest", "latest: only the newest synced frame waits for inference, older "
              "ones are dropped and counted (live); all: bounded queue that never drops, the input callbacks "
              "block when it is full (replay).", choices=QUEUE_POLICIES),
    ParamSpec("queue_size", 30, "Capacity of the inference queue with queue_policy all.", min_value=1),
    ParamSpec("publish_tf", True, "Publish object, wrist and joint frames on /tf.", runtime=True),
    ParamSpec("publish_joint_tf", True, "Also publish one TF frame per hand joint.", runtime=True),
    ParamSpec("tf_prefix", "", "Prefix of every published TF frame name.", runtime=True),
    ParamSpec("publish_mesh", True, "Publish the hand mesh marker (TRIANGLE_LIST).", runtime=True),
    ParamSpec("publish_vertices", False, "Fill HandPose.vertices (778 points per hand).", runtime=True),
    ParamSpec("publish_debug_image", False, "Publish ~/debug_image with boxes, 2D joints and control points.",
              runtime=True),
    ParamSpec("marker_lifetime", 0.5, "Seconds a marker stays in RViz without an update; 0 = forever.",
              runtime=True, min_value=0.0, max_value=3600.0),
    ParamSpec("diagnostics_period", 1.0, "Seconds between /diagnostics messages.", min_value=0.05,
              max_value=60.0),
    ParamSpec("temporal_filter", "constant_velocity", "Online filter of each tracked hand and object pose: "
              "constant_velocity (alpha-beta, no lag on steady motion; the default, see "
              "benchmarks/bench_tracking.py), one_euro (1-euro low-pass) or none.", runtime=True,
              choices=FILTER_MODES),
    ParamSpec("filter_position_gain", 0.4, "constant_velocity: share of the residual taken into the pose "
              "each frame (1 = no smoothing).", runtime=True, min_value=0.01, max_value=1.0),
    ParamSpec("filter_velocity_gain", 0.15, "constant_velocity: share of the residual taken into the "
              "velocity each frame.", runtime=True, min_value=0.0, max_value=1.0),
    ParamSpec("filter_min_cutoff", 1.5, "one_euro: cut-off frequency at rest, Hz.", runtime=True,
              min_value=0.01, max_value=1000.0),
    ParamSpec("filter_beta", 20.0, "one_euro: cut-off rise per unit speed of the points, s/m.",
              runtime=True, min_value=0.0),
    ParamSpec("filter_rotation_beta", 1.0, "one_euro: cut-off rise per unit angular speed of an object, "
              "s/rad.", runtime=True, min_value=0.0),
    ParamSpec("filter_d_cutoff", 1.0, "one_euro: cut-off of the speed estimate, Hz.", runtime=True,
              min_value=0.01, max_value=1000.0),
    ParamSpec("gate_translation", 0.1, "A jump of the wrist or object position beyond this (m) from the "
              "prediction is rejected for one frame (counted in diagnostics as gate_rejections).",
              runtime=True, min_value=0.001),
    ParamSpec("gate_rotation", 1.0, "A jump of the wrist or object rotation beyond this (rad), e.g. a PnP "
              "flip to a symmetric pose, is rejected likewise.", runtime=True, min_value=0.001),
    ParamSpec("track_max_gap", 0.5, "Seconds (stamp time) a track may go unseen before it is dropped; what "
              "it tracked gets a new id when seen again.", runtime=True, min_value=0.001),
    ParamSpec("track_min_iou", 0.1, "Least box overlap for a detection to continue a track.",
              runtime=True, min_value=0.0, max_value=1.0),
    ParamSpec("qos_input_reliability", "best_effort", "Reliability of the input subscriptions.",
              choices=QOS_RELIABILITIES),
    ParamSpec("qos_input_depth", 5, "History depth of the input subscriptions.", min_value=1),
    ParamSpec("qos_output_reliability", "reliable", "Reliability of the output publishers.",
              choices=QOS_RELIABILITIES),
    ParamSpec("qos_output_depth", 10, "History depth of the output publishers.", min_value=1),
)

SPECS: dict[str, ParamSpec] = {spec.name: spec for spec in PARAMS}


@dataclass(frozen=True)
class PerceptionConfig:
    """Validated parameter values (field names are the parameter names)."""

    checkpoint_path: str
    mano_dir: str
    object_models_dir: str
    device: str
    fp16: bool
    num_threads: int
    right_hand_labels: tuple[str, ...]
    left_hand_labels: tuple[str, ...]
    hand_labels: tuple[str, ...]
    default_hand_side: str
    hand_score_threshold: float
    object_score_threshold: float
    image_transport: str
    sync_slop: float
    sync_queue_size: int
    sync_max_age: float
    camera_info_wait: float
    camera_info_max_age: float
    queue_policy: str
    queue_size: int
    publish_tf: bool
    publish_joint_tf: bool
    tf_prefix: str
    publish_mesh: bool
    publish_vertices: bool
    publish_debug_image: bool
    marker_lifetime: float
    diagnostics_period: float
    temporal_filter: str
    filter_position_gain: float
    filter_velocity_gain: float
    filter_min_cutoff: float
    filter_beta: float
    filter_rotation_beta: float
    filter_d_cutoff: float
    gate_translation: float
    gate_rotation: float
    track_max_gap: float
    track_min_iou: float
    qos_input_reliability: str
    qos_input_depth: int
    qos_output_reliability: str
    qos_output_depth: int


def _coerce(spec: ParamSpec, value: Any) -> Any:
    default = spec.default
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ParameterError(spec.name, f"expected true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParameterError(spec.name, f"expected an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ParameterError(spec.name, f"expected a finite number, got {value!r}")
        return float(value)
    if isinstance(default, list):
        if isinstance(value, str) or not all(isinstance(v, str) for v in value):
            raise ParameterError(spec.name, f"expected a list of strings, got {value!r}")
        return tuple(str(v) for v in value)
    if not isinstance(value, str):
        raise ParameterError(spec.name, f"expected a string, got {value!r}")
    return value.strip()


def validate_value(name: str, value: Any) -> Any:
    """Check one value against its spec; return it normalised or raise ParameterError saying what to do."""
    spec = SPECS.get(name)
    if spec is None:
        raise ParameterError(name, "unknown parameter")
    value = _coerce(spec, value)
    if spec.choices is not None and value not in spec.choices:
        raise ParameterError(name, f"{value!r} is not allowed; set it to {spec.constraints}")
    if spec.min_value is not None and value < spec.min_value:
        raise ParameterError(name, f"{value} is too small; set it to {spec.constraints}")
    if spec.max_value is not None and value > spec.max_value:
        raise ParameterError(name, f"{value} is too large; set it to {spec.constraints}")
    return value


def _validate_device(device: str) -> None:
    try:
        check_device_name(device)
    except DeviceError:
        raise ParameterError("device", f"{device!r} is not a device; set it to auto, cpu, cuda or cuda:N") \
            from None


def validate_config(values: dict[str, Any]) -> PerceptionConfig:
    """Validate every parameter (missing ones take their default) and the paths they name."""
    checked = {spec.name: validate_value(spec.name, values.get(spec.name, spec.default)) for spec in PARAMS}
    ckpt = checked["checkpoint_path"]
    if not ckpt:
        raise ParameterError("checkpoint_path", "not set; give the path of an HFL-Net checkpoint file (e.g. "
                             "--ros-args -p checkpoint_path:=/path/to/model.pth.tar, or in the params file)")
    if not Path(ckpt).expanduser().is_file():
        raise ParameterError("checkpoint_path", f"file {ckpt!r} does not exist; set it to an HFL-Net "
                             "checkpoint file")
    for name in ("mano_dir", "object_models_dir"):
        path = checked[name]
        if path and not Path(path).expanduser().is_dir():
            raise ParameterError(name, f"directory {path!r} does not exist; set it to an existing directory "
                                 "or leave it empty")
    _validate_device(checked["device"])
    right = {s.strip().lower() for s in checked["right_hand_labels"]}
    overlap = right & {s.strip().lower() for s in checked["left_hand_labels"]}
    if overlap:
        raise ParameterError("left_hand_labels", f"{sorted(overlap)} also listed in right_hand_labels; "
                             "a label can name one side only")
    for name in ("checkpoint_path", "mano_dir", "object_models_dir"):
        if checked[name]:
            checked[name] = str(Path(checked[name]).expanduser())
    return PerceptionConfig(**checked)


def config_fields() -> list[str]:
    """Names of the PerceptionConfig fields (equal to the parameter names)."""
    return [f.name for f in fields(PerceptionConfig)]


def declare_parameters(node: Any, *, read_only: bool = True,
                       validate: bool = True) -> PerceptionConfig | None:
    """Declare every parameter on an rclpy node with its description, then (``validate``) validate the values.

    Raises ParameterError for a value of the wrong type or out of range (rclpy refuses it at declaration) and
    for any check of :func:`validate_config`. ``read_only=False`` leaves the start-up parameters writable
    (a managed node accepts changes to them while unconfigured).
    """
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
    from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
    from rclpy.parameter import Parameter

    for spec in PARAMS:
        # Floats accept integers too (a YAML "1" for a double): dynamically typed, checked by validate_value.
        descriptor = ParameterDescriptor(description=spec.description,
                                         read_only=read_only and not spec.runtime,
                                         additional_constraints=spec.constraints,
                                         dynamic_typing=isinstance(spec.default, float))
        if isinstance(spec.default, float) and spec.min_value is not None:
            high = spec.max_value if spec.max_value is not None else 1e300
            descriptor.floating_point_range = [FloatingPointRange(from_value=float(spec.min_value),
                                                                  to_value=float(high), step=0.0)]
        elif type(spec.default) is int and spec.min_value is not None:
            high = int(spec.max_value) if spec.max_value is not None else 2**31 - 1
            descriptor.integer_range = [IntegerRange(from_value=int(spec.min_value), to_value=high, step=1)]
        default = spec.default
        if isinstance(default, list):
            default = Parameter.Type.STRING_ARRAY if not default else list(default)
        try:
            node.declare_parameter(spec.name, default, descriptor)
        except InvalidParameterTypeException as exc:
            raise ParameterError(spec.name, f"wrong type ({exc}); expected a value like "
                                 f"{spec.default!r}") from exc
        except InvalidParameterValueException as exc:
            raise ParameterError(spec.name, f"invalid value ({exc}); set it to {spec.constraints}") from exc
    return read_config(node) if validate else None


def read_config(node: Any) -> PerceptionConfig:
    """The node's current (declared) parameter values, validated by :func:`validate_config`."""
    values = {spec.name: node.get_parameter(spec.name).value for spec in PARAMS}
    values = {k: (list(v) if isinstance(SPECS[k].default, list) and v is not None else v)
              for k, v in values.items()}
    return validate_config(values)


def tracker_config(cfg: PerceptionConfig) -> Any:
    """The :class:`hfl_ros.tracking.TrackerConfig` these parameters give."""
    from ..tracking import FilterConfig, TrackerConfig

    return TrackerConfig(
        max_gap_s=cfg.track_max_gap, min_iou=cfg.track_min_iou,
        filter=FilterConfig(
            mode=cfg.temporal_filter, min_cutoff=cfg.filter_min_cutoff, beta=cfg.filter_beta,
            rotation_beta=cfg.filter_rotation_beta, d_cutoff=cfg.filter_d_cutoff,
            position_gain=cfg.filter_position_gain, velocity_gain=cfg.filter_velocity_gain,
            gate_translation_m=cfg.gate_translation, gate_rotation_rad=cfg.gate_rotation,
        ),
    ).validate()
