"""Typed errors for bad bags, each a one-line reason that the CLI prints as ``hfl-ros <cmd>: error: ...``."""

from __future__ import annotations

from ..errors import HflRosError, InputError


class BagError(HflRosError):
    """A bag cannot be used: missing, unreadable, or not a rosbag2 directory / .mcap / .db3 file."""

    reason = "bad_bag"


class CorruptBagError(BagError):
    """The bag file is truncated or corrupted; messages up to the damage were read."""

    reason = "corrupt_bag"


class MissingTopicError(BagError, InputError):
    """A required topic is absent from the bag (or its type is not the expected one)."""

    reason = "missing_topic"


class MessageTypeError(BagError, InputError):
    """Messages on an input topic do not deserialise as the type the bag declares for it."""

    reason = "wrong_message_type"


class UnsupportedEncodingError(BagError, InputError):
    """Images in the bag use an encoding the labeler cannot decode."""

    reason = "unsupported_encoding"


class StampOrderError(BagError, InputError):
    """Header stamps on an input topic go backwards (or repeat), so those frames cannot be synchronised."""

    reason = "stamps_out_of_order"


class MissingCameraInfoError(BagError, InputError):
    """Images were found with no CameraInfo at or before their stamp, so they could not be labeled."""

    reason = "no_camera_info"


class OutputError(BagError):
    """The output directory cannot be written, or already holds labels (without --resume)."""

    reason = "bad_output"
