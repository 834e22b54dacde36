"""``hfl-ros label BAG --out DIR``: label a rosbag offline with hand and object poses.

Estimator flags mirror the perception node's parameters; ``--params-file`` reads them from the node's YAML
(``/**:`` or ``<node>:`` then ``ros__parameters:``), and flags given on the command line override the file.

Ctrl-C or SIGTERM stops a run cleanly (outputs closed and readable, summary saved with ``error_reason:
interrupted``); the command then exits with 0, like every process of the project that is stopped, and running
it again with ``--resume`` finishes the job.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from ..errors import HflRosError
from ..stop_signals import Interrupted
from ..tracking import SmootherConfig
from .label import DEFAULT_DETECTIONS_TOPIC, DEFAULT_IMAGE_TOPIC, Labeler, LabelOptions
from .label_output import NODE_NAMESPACE, OutputTopics
from .reader import BagReader, list_topics_text


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {value!r}")
    return value


def _path(value: Any) -> str | None:
    """A path parameter; the node's empty-string default means "not set"."""
    if not isinstance(value, str):
        raise TypeError(f"expected a path string, got {value!r}")
    return value or None


def _labels(value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise TypeError(f"expected a list of strings, got {value!r}")
    return tuple(str(x) for x in value)


#: Node parameter name -> (LabelOptions field, converter). Other node parameters are ignored here.
NODE_PARAMETERS: dict[str, tuple[str, Any]] = {
    "checkpoint_path": ("checkpoint_path", _path),
    "mano_dir": ("mano_dir", _path),
    "object_models_dir": ("object_models_dir", _path),
    "device": ("device", str),
    "fp16": ("fp16", _bool),
    "right_hand_labels": ("right_hand_labels", _labels),
    "left_hand_labels": ("left_hand_labels", _labels),
    "hand_labels": ("hand_labels", _labels),
    "default_hand_side": ("default_hand_side", str),
    "hand_score_threshold": ("hand_score_threshold", float),
    "object_score_threshold": ("object_score_threshold", float),
    "sync_slop": ("sync_slop", float),
    "publish_tf": ("publish_tf", _bool),
    "tf_prefix": ("tf_prefix", str),
    "publish_joint_tf": ("tf_joints", _bool),
    "publish_mesh": ("publish_mesh", _bool),
    "marker_lifetime": ("marker_lifetime_s", float),
    "publish_vertices": ("with_vertices", _bool),
}


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


def options_from_params(params: dict[str, Any], source: str | Path = "params file") -> dict[str, Any]:
    """Map node parameters to LabelOptions keyword arguments; ``source`` (the file) is named in errors."""
    out: dict[str, Any] = {}
    for name, value in params.items():
        if name in NODE_PARAMETERS and value is not None:
            field_name, convert = NODE_PARAMETERS[name]
            try:
                out[field_name] = convert(value)
            except (TypeError, ValueError):
                raise ParamsFileError(f"{source}: parameter {name}: cannot use value {value!r}") from None
    return out


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
    est = parser.add_argument_group("estimator (same names as the perception node's parameters)")
    est.add_argument("--params-file", type=Path, help="the node's parameter YAML; flags override it")
    est.add_argument("--checkpoint", dest="checkpoint_path", help="HFL-Net checkpoint (.pth.tar or ours)")
    est.add_argument("--mano-dir", help="directory with MANO_RIGHT.pkl / MANO_LEFT.pkl")
    est.add_argument("--object-models-dir", help="directory of object models, <dir>/<class_id>/...")
    est.add_argument("--device", help="auto, cpu, cuda, cuda:N (default auto)")
    est.add_argument("--fp16", action=argparse.BooleanOptionalAction, default=None,
                     help="half precision on GPU")
    est.add_argument("--right-hand-labels", nargs="+", help="detection class ids of right hands")
    est.add_argument("--left-hand-labels", nargs="+", help="detection class ids of left hands")
    est.add_argument("--default-hand-side", choices=("right", "left"),
                     help="side of a plain 'hand' detection")
    est.add_argument("--hand-score-threshold", type=float, help="ignore hand detections scoring below")
    est.add_argument("--object-score-threshold", type=float, help="ignore object detections scoring below")
    est.add_argument("--sync-slop", type=float, help="seconds between image and detection stamps (default 0)")
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
    values: dict[str, Any] = {}
    if args.params_file is not None:
        values.update(options_from_params(read_params_file(args.params_file), args.params_file))
    for name in ("checkpoint_path", "mano_dir", "object_models_dir", "device", "fp16", "default_hand_side",
                 "hand_score_threshold", "object_score_threshold", "sync_slop"):
        value = getattr(args, name)
        if value is not None:
            values[name] = value
    for name in ("right_hand_labels", "left_hand_labels"):
        if getattr(args, name) is not None:
            values[name] = tuple(getattr(args, name))
    return LabelOptions(
        bag=args.bag, out=args.out, image_topic=args.image_topic, camera_info_topic=args.camera_info_topic,
        detections_topic=args.detections_topic, batch_size=args.batch_size, copy_inputs=args.copy_inputs,
        resume=args.resume, progress=not args.no_progress,
        smooth=SmootherConfig(half_window_s=args.smooth_window) if args.smooth else None,
        output_topics=OutputTopics.in_namespace(args.output_namespace), **values)


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
