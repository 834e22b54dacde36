"""A synced bag frame decoded for the Estimator: image, camera matrix and detections, or why it cannot be."""

from __future__ import annotations

from ..errors import HflRosError
from ..ros.convert import SUPPORTED_ENCODINGS, LabelMap, detections_from_msg, image_and_K
from .errors import MissingCameraInfoError, UnsupportedEncodingError
from .frames import SyncedFrame
from .label_output import PreparedFrame


def prepare_frame(frame: SyncedFrame, label_map: LabelMap) -> PreparedFrame:
    """Decode a synced frame for the Estimator; a frame-level problem becomes its status (never raises)."""
    prepared = PreparedFrame(frame.index, frame.stamp_ns, frame.sec, frame.nanosec, frame.frame_id)
    try:
        prepared.detections = detections_from_msg(frame.detections.deserialize(), label_map)
        if frame.camera_info is None:
            raise MissingCameraInfoError(
                f"no camera_info at or before the image stamp {frame.stamp_ns} ns on {frame.image.topic}")
        msg = frame.image.deserialize()
        compressed = frame.image.msgtype.endswith("/CompressedImage")
        encoding = "" if compressed else str(msg.encoding).strip()
        if not compressed and encoding.lower() not in SUPPORTED_ENCODINGS:
            raise UnsupportedEncodingError(
                f"unsupported image encoding {encoding!r} on {frame.image.topic}; supported: "
                f"{', '.join(SUPPORTED_ENCODINGS)} and sensor_msgs/CompressedImage")
        prepared.image, prepared.K = image_and_K(msg, frame.camera_info.deserialize(), compressed)
    except HflRosError as exc:
        prepared.status, prepared.error = exc.reason, exc
    except Exception as exc:  # a malformed message is a bad frame, not a crash
        prepared.status, prepared.error = "bad_message", exc
    return prepared
