"""The Estimator's configuration: one dataclass whose fields are the options of node, labeler and evaluator.

Each field of :class:`EstimatorConfig` carries its :class:`~hfl_ros.param_spec.ParamSpec` (description,
constraints, whether it may change at runtime), so an option added here becomes a perception-node parameter,
an ``hfl-ros label`` / ``hfl-ros eval`` flag and a ``--params-file`` key without further code. Which detection
class ids are hands is configured alongside (:data:`DETECTION_PARAMS`): the node and the labeler turn
detections into hands and objects with them before the Estimator sees them.

:func:`hfl_ros.estimator_factory.build_estimator` builds the Estimator of a configuration.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .param_spec import ParameterError, ParamSpec, declared_options, option, validate_values

SIDES = ("right", "left")
PATH_OPTIONS = ("checkpoint_path", "mano_dir", "object_models_dir")


@dataclass(frozen=True)
class EstimatorConfig:
    """Options of :class:`hfl_ros.estimator.Estimator`. Paths: an empty string means "not set"."""

    checkpoint_path: str = option("", "HFL-Net checkpoint: the official .pth.tar or one saved by hfl-ros "
                                   "train.")
    mano_dir: str = option("", "Directory with MANO_RIGHT.pkl / MANO_LEFT.pkl (or the stand-in hand model). "
                            "Empty: use the hand model stored in the checkpoint.")
    object_models_dir: str = option("", "Object models, one sub-directory per class id holding points.xyz "
                                     "or *.obj / *.ply (YCB layout). Empty: no object poses (every object is "
                                     "an unknown class).")
    device: str = option("auto", "Inference device: auto (cuda when available), cpu, cuda or cuda:N.")
    fp16: bool = option(False, "Half-precision inference (CUDA only).")
    hand_score_threshold: float = option(0.0, "Hand detections scoring below this are ignored.",
                                          runtime=True, min_value=0.0, max_value=1.0)
    object_score_threshold: float = option(0.0, "Object detections scoring below this are ignored.",
                                            runtime=True, min_value=0.0, max_value=1.0)
    min_estimate_score: float = option(0.0, "A result that would be OK (or NO_OBJECT_PAIRED) but whose "
                                        "hand estimate score (heat-map peakedness) or object estimate score "
                                        "(RANSAC inlier fraction) is below this gets STATUS_LOW_CONFIDENCE: "
                                        "its poses are filled in, but no TF is published for it. 0 = never.",
                                        runtime=True, min_value=0.0, max_value=1.0)
    hand_box_scale: float = option(1.0, "Growth of each hand detection box about its centre for the "
                                    "network's hand box (HFL-Net's HO3D test boxes are the hand box grown by "
                                    "1.1); the crop itself is always the boxes grown by 1.5.",
                                    min_value=0.1, max_value=10.0)
    object_box_scale: float = option(1.0, "Growth of each object detection box about its centre. HFL-Net "
                                      "was trained on the box of the object's projected 3D bounding box, "
                                      "larger than a tight detector box, so a value above 1 can help tight "
                                      "boxes.",
                                      min_value=0.1, max_value=10.0)
    max_hands: int = option(10, "Most hand detections estimated per frame, the highest-scoring first; the "
                            "others get STATUS_BAD_INPUT (too_many_hands), so that a flood of detections "
                            "cannot stall the node. 0 = no limit.", min_value=0)
    max_batch: int = option(16, "Largest number of hand-object crops in one forward pass.", min_value=1)
    refine_pnp: bool = option(True, "Refine the RANSAC object pose by Levenberg-Marquardt on the inliers.")
    #: Return the 778 mesh vertices of each hand; set by the caller from its outputs, not a user option.
    with_vertices: bool = True

    def with_changes(self, **changes: Any) -> EstimatorConfig:
        """A copy with ``changes`` validated like the node's parameters (ParameterError naming the option)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        unknown = sorted(set(changes) - set(values))
        if unknown:
            raise TypeError(f"unknown Estimator option(s): {', '.join(unknown)}")
        for name, value in changes.items():
            if name in PATH_OPTIONS:
                value = "" if value is None else os.fspath(value)
            values[name] = value
        return estimator_config(values, require_checkpoint=False, check_paths=False)

    def path(self, name: str) -> Path | None:
        """The path option ``name`` expanded, or None when it is not set."""
        value = getattr(self, name)
        return Path(value).expanduser() if value else None


#: The Estimator's options as declared parameters (derived from :class:`EstimatorConfig`).
ESTIMATOR_PARAMS: tuple[ParamSpec, ...] = declared_options(EstimatorConfig)

#: Options that may change while an Estimator runs (:meth:`~hfl_ros.estimator.Estimator.reconfigure`).
RUNTIME_OPTIONS: tuple[str, ...] = tuple(spec.name for spec in ESTIMATOR_PARAMS if spec.runtime)

#: Which detection class ids are hands, and of which side.
DETECTION_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("right_hand_labels", ["right_hand"], "Detection class ids that are right hands."),
    ParamSpec("left_hand_labels", ["left_hand"], "Detection class ids that are left hands."),
    ParamSpec("hand_labels", ["hand"], "Detection class ids that are hands of unknown side "
              "(taken as default_hand_side)."),
    ParamSpec("default_hand_side", "right", "Side of hands detected without a side.", choices=SIDES),
)


def estimator_config(values: Mapping[str, Any], *, require_checkpoint: bool = True,
                     check_paths: bool = True) -> EstimatorConfig:
    """Validate the Estimator options in ``values`` (absent ones take their default; other keys are ignored).

    ``check_paths``: the checkpoint must be a file and the directories must exist. ParameterError names the
    first bad option and says what to do.
    """
    from .devices import DeviceError, check_device_name

    checked = validate_values(ESTIMATOR_PARAMS, values)
    ckpt = checked["checkpoint_path"]
    if require_checkpoint and not ckpt:
        raise checkpoint_not_set()
    if check_paths:
        if ckpt and not Path(ckpt).expanduser().is_file():
            raise ParameterError("checkpoint_path", f"file {ckpt!r} does not exist; set it to an HFL-Net "
                                 "checkpoint file")
        for name in ("mano_dir", "object_models_dir"):
            path = checked[name]
            if path and not Path(path).expanduser().is_dir():
                raise ParameterError(name, f"directory {path!r} does not exist; set it to an existing "
                                     "directory or leave it empty")
    try:
        check_device_name(checked["device"])
    except DeviceError:
        raise ParameterError("device", f"{checked['device']!r} is not a device; set it to auto, cpu, cuda or "
                             "cuda:N") from None
    for name in PATH_OPTIONS:
        if checked[name]:
            checked[name] = str(Path(checked[name]).expanduser())
    return EstimatorConfig(**checked, with_vertices=bool(values.get("with_vertices", True)))


def checkpoint_not_set() -> ParameterError:
    return ParameterError("checkpoint_path", "not set; give the path of an HFL-Net checkpoint file (node: "
                          "-p checkpoint_path:=FILE or the params file; hfl-ros label and eval: "
                          "--checkpoint FILE)")


def detection_labels(values: Mapping[str, Any]) -> dict[str, Any]:
    """The :data:`DETECTION_PARAMS` of ``values`` validated; a label may name one side only."""
    checked = validate_values(DETECTION_PARAMS, values)
    right = {s.strip().lower() for s in checked["right_hand_labels"]}
    overlap = right & {s.strip().lower() for s in checked["left_hand_labels"]}
    if overlap:
        raise ParameterError("left_hand_labels", f"{sorted(overlap)} also listed in right_hand_labels; "
                             "a label can name one side only")
    return checked
