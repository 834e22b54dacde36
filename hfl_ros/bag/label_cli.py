"""``hfl-ros label BAG --out DIR``: label a rosbag offline with hand and object poses.

Estimator flags mirror the perception node's parameters; ``--params-file`` reads them from the node's YAML
(``/**:`` or ``<node>:`` then ``ros__parameters:``), and flags given on the command line override the file.

Ctrl-C or SIGTERM stops a run cleanly (outputs closed and readable, summary saved with ``error_reason:
interrupted``); the command then exits with 0, like every process of the project that is stopped, and running
it again with ``--resume`` finishes the job.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import yaml

from ..errors import HflRosError
from ..estimator_config import ESTIMATOR_PARAMS, detection_labels, estimator_config
from ..param_spec import ParameterError, ParamSpec, add_flags, values_from_flags
from ..ros.names import DEFAULT_DETECTIONS_TOPIC, DEFAULT_IMAGE_TOPIC, is_qos_override
from ..ros.params import SPECS
from ..stop_signals import Interrupted
from ..tracking import SmootherConfig
from .label import Labeler
from .label_options import NODE_PARAMETERS, LabelOptions
from .label_output import NODE_NAMESPACE, OutputTopics
from .reader import BagReader, list_topics_text

logger = logging.getLogger(__name__)


class ParamsFileError(HflRosError):
    """The --params-file cannot be read or has no ros__parameters."""

    reason = "bad_params_file"


def read_params_file(path: str | Path) -> dict[str, Any]:
    """The ``ros__parameters`` of a node YAML: the ``/**`` section first, then the first node section."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ParamsFileError(f"cannot read params file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ParamsFileError(f"params file {path} is not valid YAML: {' '.join(str(exc).split())}") from None
    sections = _parameter_sections(data)
    if not sections:
        raise ParamsFileError(f"params file {path} has no '<node>: ros__parameters:' section")
    merged: dict[str, Any] = {}
    for _, params in sorted(sections, key=lambda s: s[0] != "/**"):
        for key, value in params.items():
            merged.setdefault(key, value)
    return merged


def _parameter_sections(data: Any, prefix: str = "") -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(data, dict):
        for key, value in data.items():
            if key == "ros__parameters" and isinstance(value, dict):
                found.append((prefix or "/**", value))
            else:
                name = f"{prefix}/{key}".replace("//", "/") if prefix else str(key)
                found += _parameter_sections(value, name)
    return found


#: Every option the labeler reads from a params file or its flags, by node parameter name.
LABELER_SPECS: tuple[ParamSpec, ...] = (*ESTIMATOR_PARAMS, *(SPECS[name] for name in NODE_PARAMETERS))


def options_from_params(params: dict[str, Any], source: str | Path = "params file") -> dict[str, Any]:
    """The labeler's options in a node's parameters, validated as the node validates them; ``source`` (the
    file) is named in errors. Node parameters the labeler does not use are ignored, unknown ones reported."""
    unknown = sorted(k for k in params if k not in SPECS and k != "use_sim_time" and not is_qos_override(k))
    if unknown:
        logger.warning("%s: ignoring unknown parameter(s) %s (misspelt?)", source, unknown)
    given = {spec.name: params[spec.name] for spec in LABELER_SPECS if params.get(spec.name) is not None}
    try:
        return {name: SPECS[name].validate(value) for name, value in given.items()}
    except ParameterError as exc:
        raise ParamsFileError(f"{source}: {exc}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bag", type=Path, help="rosbag2 directory (sqlite3 or MCAP) or a .mcap / .db3 file")
    parser.add_argument("--out", type=Path,
                        help="output directory (bag/, labels.jsonl, labels.npz, summary.json)")
    parser.add_argument("--list-topics", action="store_true", help="print the bag's topics, types and counts")
    topics = parser.add_argument_group("input topics (default or auto-detected when the bag has exactly one)")
    topics.add_argument("--image-topic",
                        help=f"sensor_msgs/Image or CompressedImage (default {DEFAULT_IMAGE_TOPIC})")
    topics.add_argument("--camera-info-topic",
                        help="sensor_msgs/CameraInfo (default: camera_info beside the image)")
    topics.add_argument("--detections-topic",
                        help=f"vision_msgs/Detection2DArray (default {DEFAULT_DETECTIONS_TOPIC})")
    est = parser.add_argument_group("estimator and outputs (the perception node's parameters, same names)")
    est.add_argument("--params-file", type=Path, help="the node's parameter YAML; flags override it")
    add_flags(est, LABELER_SPECS, aliases={"checkpoint_path": "--checkpoint"})
    run = parser.add_argument_group("run")
    run.add_argument("--batch-size", type=int, default=8, help="frames per Estimator call (default 8)")
    run.add_argument("--copy-inputs", action="store_true",
                     help="also copy the input topics into the output bag")
    run.add_argument("--resume", action="store_true", help="skip frames already in DIR/labels.jsonl")
    run.add_argument("--output-namespace", default=NODE_NAMESPACE,
                     help=f"namespace of the output topics (default {NODE_NAMESPACE}, the node's name)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--smooth", action="store_true",
                     help="also track the hands and objects and write their poses smoothed with past and "
                     "future frames (track_id and smoothed in labels.jsonl/npz, "
                     "<namespace>/smoothed/hand_object_poses in the bag); the raw poses stay")
    run.add_argument("--smooth-window", type=float, default=SmootherConfig.half_window_s, metavar="S",
                     help="--smooth: seconds of past and of future frames each pose is fitted to "
                     f"(default {SmootherConfig.half_window_s})")


def options_from_args(args: argparse.Namespace) -> LabelOptions:
    """The LabelOptions of the command line: the params file's values, then the flags given."""
    values: dict[str, Any] = {}
    if args.params_file is not None:
        values.update(options_from_params(read_params_file(args.params_file), args.params_file))
    values.update(values_from_flags(args, LABELER_SPECS))
    estimator = estimator_config(values, require_checkpoint=False)  # checked once the topics are
    detection_labels(values)
    shared = {name: values[name] for name in NODE_PARAMETERS if name in values}
    return LabelOptions(
        bag=args.bag, out=args.out, image_topic=args.image_topic, camera_info_topic=args.camera_info_topic,
        detections_topic=args.detections_topic, estimator=estimator, batch_size=args.batch_size,
        copy_inputs=args.copy_inputs, resume=args.resume, progress=not args.no_progress,
        smooth=SmootherConfig(half_window_s=args.smooth_window) if args.smooth else None,
        output_topics=OutputTopics.in_namespace(args.output_namespace), **shared)


def run(args: argparse.Namespace) -> int:
    if args.list_topics:
        with BagReader(args.bag) as reader:
            print(list_topics_text(reader))
        return 0
    if args.out is None:
        print("hfl-ros label: error: --out DIR is required (or --list-topics)", file=sys.stderr)
        return 2
    if args.smooth_window <= 0:
        print(f"hfl-ros label: error: --smooth-window must be > 0, got {args.smooth_window}", file=sys.stderr)
        return 2
    if args.batch_size < 1:
        print(f"hfl-ros label: error: --batch-size must be >= 1, got {args.batch_size}", file=sys.stderr)
        return 2
    options = options_from_args(args)
    labeler = Labeler(options)
    try:
        summary = labeler.run()
    except Interrupted as exc:
        if not labeler.summary_saved:
            print(f"hfl-ros label: stopped ({exc.name}) before labeling started; nothing was written",
                  file=sys.stderr)
            return 0
        s = labeler.summary
        print(s.text())
        print(f"hfl-ros label: stopped ({exc.name}) after labeling {s.labeled_frames} frame(s) "
              f"({s.total_labeled_frames} in {options.out}); outputs closed: run the same command with "
              "--resume to finish", file=sys.stderr)
        return 0
    except HflRosError:
        if labeler.summary_saved:
            print(labeler.summary.text())
        raise
    print(summary.text())
    print(f"outputs in {options.out}: bag/ (rosbag2, MCAP), labels.jsonl, labels.npz, summary.json")
    return 0
