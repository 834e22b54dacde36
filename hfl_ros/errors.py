"""Typed errors. Each names the offending input so that callers can log it and count it by kind."""

from __future__ import annotations


class HflRosError(Exception):
    """Base class of every error raised on purpose by hfl_ros."""

    #: Short machine-readable reason, used as the diagnostics counter key.
    reason: str = "error"


class AssetError(HflRosError):
    """A user file (checkpoint, hand model, object model) is missing, corrupt or of the wrong kind."""

    reason = "bad_asset"


class CheckpointError(AssetError):
    """A checkpoint is missing, unreadable, or does not match the network's keys and shapes."""

    reason = "bad_checkpoint"


class HandModelError(AssetError):
    """A MANO-format hand model file is missing, corrupt or contains objects the loader refuses."""

    reason = "bad_hand_model"


class ObjectModelError(AssetError):
    """An object model (points.xyz, .ply, .obj) is missing or unusable."""

    reason = "bad_object_model"


class InputError(HflRosError, ValueError):
    """Bad input data for one frame or one detection."""

    reason = "bad_input"


class BadImageError(InputError):
    """The image has the wrong dtype, shape, channel count or encoding."""

    reason = "bad_image"


class BadCameraError(InputError):
    """The camera matrix K is missing, non-finite or singular."""

    reason = "bad_camera_info"


class BadBoxError(InputError):
    """A detection box is empty, degenerate, non-finite or outside the image."""

    reason = "bad_box"


class UnknownObjectClassError(InputError):
    """An object detection names a class with no object model."""

    reason = "unknown_class"


class TooManyHandsError(InputError):
    """A frame has more hand detections than the Estimator's ``max_hands``; the lowest-scoring are skipped."""

    reason = "too_many_hands"
