"""The perception node's parameters: names, defaults, descriptions, validation.

The specs and the validation are plain Python (the docs and tests read them); :func:`declare_parameters` is
the only function that needs rclpy, and imports it when called.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from ..estimator_config import (
    DETECTION_PARAMS,
    ESTIMATOR_PARAMS,
    EstimatorConfig,
    detection_labels,
    estimator_config,
)
from ..param_spec import ParameterError, ParamSpec, declared_options, option, validate_values
from ..tracking.filters import FILTER_MODES

__all__ = [
    "PARAMS",
    "SPECS",
    "ParamSpec",
    "ParameterError",
    "PerceptionConfig",
    "declare_parameters",
    "parameter_values",
    "read_config",
    "tracker_config",
    "validate_config",
    "validate_value",
    "with_changes",
]

QUEUE_POLICIES = ("latest", "all")
IMAGE_TRANSPORTS = ("raw", "compressed")




@dataclass(frozen=True)
class PerceptionConfig:
    """Validated parameter values: the Estimator's options in ``estimator``, the others by their own names.

    The node-only parameters are the fields declared with :func:`~hfl_ros.param_spec.option`: a new parameter
    is one field here.
    """

    estimator: EstimatorConfig
    right_hand_labels: tuple[str, ...]
    left_hand_labels: tuple[str, ...]
    hand_labels: tuple[str, ...]
    default_hand_side: str
    num_threads: int = option(0, "torch intra-op threads; 0 keeps torch's default.", min_value=0)
    image_transport: str = option("raw", "raw: subscribe 'image' (sensor_msgs/Image); compressed: subscribe "
                                  "'image/compressed' (sensor_msgs/CompressedImage).",
                                  choices=IMAGE_TRANSPORTS)
    sync_slop: float = option(0.0, "Seconds two stamps may differ and still match; 0 = exact stamps.",
                              min_value=0.0, max_value=10.0)
    sync_queue_size: int = option(10, "Messages kept per input while waiting for a match.", min_value=1)
    sync_max_age: float = option(2.0, "Seconds (stamp time) after which an unmatched message is discarded "
                                 "and counted.", min_value=0.01)
    camera_info_wait: float = option(0.1, "Seconds a synced frame waits for a camera_info with its stamp "
                                     "before the latest camera_info is used.", min_value=0.0, max_value=10.0)
    camera_info_max_age: float = option(0.0, "Largest stamp difference (s) for using the latest camera_info "
                                        "as a fallback; 0 = any (static calibration).", min_value=0.0)
    queue_policy: str = option("latest", "latest: only the newest synced frame waits for inference, older "
                               "ones are dropped and counted (live); all: bounded queue that never drops, "
                               "the input callbacks block when it is full (replay).", choices=QUEUE_POLICIES)
    queue_size: int = option(30, "Capacity of the inference queue with queue_policy all.", min_value=1)
    publish_tf: bool = option(True, "Publish object, wrist and joint frames on /tf.", runtime=True)
    publish_joint_tf: bool = option(True, "Also publish one TF frame per hand joint.", runtime=True)
    tf_prefix: str = option("", "Prefix of every published TF frame name.", runtime=True)
    publish_mesh: bool = option(True, "Publish the hand mesh marker (TRIANGLE_LIST).", runtime=True)
    publish_vertices: bool = option(False, "Fill HandPose.vertices (778 points per hand).", runtime=True)
    publish_debug_image: bool = option(False, "Publish ~/debug_image with boxes, 2D joints and control "
                                       "points.", runtime=True)
    marker_lifetime: float = option(0.5, "Seconds a marker stays in RViz without an update; 0 = forever.",
                                    runtime=True, min_value=0.0, max_value=3600.0)
    diagnostics_period: float = option(1.0, "Seconds between /diagnostics messages.",
                                       min_value=0.05, max_value=60.0)
    temporal_filter: str = option("constant_velocity", "Online filter of each tracked hand and object pose: "
                                  "constant_velocity (alpha-beta, no lag on steady motion; the default, see "
                                  "benchmarks/bench_tracking.py), one_euro (1-euro low-pass) or none.",
                                  runtime=True, choices=FILTER_MODES)
    filter_position_gain: float = option(0.4, "constant_velocity: share of the residual taken into the pose "
                                         "each frame (1 = no smoothing).",
                                         runtime=True, min_value=0.01, max_value=1.0)
    filter_velocity_gain: float = option(0.15, "constant_velocity: share of the residual taken into the "
                                         "velocity each frame.", runtime=True, min_value=0.0, max_value=1.0)
    filter_min_cutoff: float = option(1.5, "one_euro: cut-off frequency at rest, Hz.",
                                      runtime=True, min_value=0.01, max_value=1000.0)
    filter_beta: float = option(20.0, "one_euro: cut-off rise per unit speed of the points, s/m.",
                                runtime=True, min_value=0.0)
    filter_rotation_beta: float = option(1.0, "one_euro: cut-off rise per unit angular speed of an object, "
                                         "s/rad.", runtime=True, min_value=0.0)
    filter_d_cutoff: float = option(1.0, "one_euro: cut-off of the speed estimate, Hz.",
                                    runtime=True, min_value=0.01, max_value=1000.0)
    gate_translation: float = option(0.1, "A jump of the wrist or object position beyond this (m) from the "
                                     "prediction is rejected for one frame (counted in diagnostics as "
                                     "gate_rejections).", runtime=True, min_value=0.001)
    gate_rotation: float = option(1.0, "A jump of the wrist or object rotation beyond this (rad), e.g. a "
                                  "PnP flip to a symmetric pose, is rejected likewise.",
                                  runtime=True, min_value=0.001)
    track_max_gap: float = option(0.5, "Seconds (stamp time) a track may go unseen before it is dropped; "
                                  "what it tracked gets a new id when seen again.",
                                  runtime=True, min_value=0.001)
    track_min_iou: float = option(0.1, "Least box overlap for a detection to continue a track.",
                                  runtime=True, min_value=0.0, max_value=1.0)


NODE_PARAMS: tuple[ParamSpec, ...] = declared_options(PerceptionConfig)
PARAMS: tuple[ParamSpec, ...] = (*ESTIMATOR_PARAMS, *DETECTION_PARAMS, *NODE_PARAMS)
SPECS: dict[str, ParamSpec] = {spec.name: spec for spec in PARAMS}
_ESTIMATOR_NAMES = frozenset(spec.name for spec in ESTIMATOR_PARAMS)


def validate_value(name: str, value: Any) -> Any:
    """Check one value against its spec; return it normalised or raise ParameterError saying what to do."""
    spec = SPECS.get(name)
    if spec is None:
        raise ParameterError(name, "unknown parameter")
    return spec.validate(value)


def validate_config(values: dict[str, Any]) -> PerceptionConfig:
    """Validate every parameter (missing ones take their default) and the paths they name."""
    checked = validate_values(PARAMS, values)
    estimator = estimator_config(checked)
    checked.update(detection_labels(checked))
    node_values = {name: checked[name] for name in _NODE_FIELDS}
    return PerceptionConfig(estimator=estimator, **node_values)


def with_changes(cfg: PerceptionConfig, changes: dict[str, Any]) -> PerceptionConfig:
    """``cfg`` with some (already validated) parameter values changed, e.g. runtime ones."""
    est = {k: v for k, v in changes.items() if k in _ESTIMATOR_NAMES}
    node = {k: v for k, v in changes.items() if k not in _ESTIMATOR_NAMES}
    estimator = cfg.estimator.with_changes(**est) if est else cfg.estimator
    return replace(cfg, estimator=estimator, **node)


def parameter_values(cfg: PerceptionConfig) -> dict[str, Any]:
    """Every parameter's value in ``cfg``, by parameter name."""
    values = {name: getattr(cfg, name) for name in _NODE_FIELDS}
    values.update({name: getattr(cfg.estimator, name) for name in _ESTIMATOR_NAMES})
    return values


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


_NODE_FIELDS = tuple(f.name for f in fields(PerceptionConfig) if f.name != "estimator")


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
