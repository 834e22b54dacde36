"""ROS messages -> numpy and Estimator inputs, without any ROS runtime.

Every function reads message attributes only (duck typing), so it accepts rclpy messages (``data`` is
``array.array``/``bytes``, arrays are lists or numpy) and ``rosbags`` messages (``data`` is numpy) alike.
``cv_bridge`` is not used: the PyPI package of that name is an unrelated ROS 1 port that breaks on NumPy 2.
"""

from __future__ import annotations

import array
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import BadCameraError, BadImageError
from ..results import Detection, Side

#: Channels and channel order of the supported 8-bit encodings. ``None`` order means grey.
_ENCODINGS: dict[str, tuple[int, tuple[int, int, int] | None]] = {
    "rgb8": (3, (0, 1, 2)),
    "bgr8": (3, (2, 1, 0)),
    "rgba8": (4, (0, 1, 2)),
    "bgra8": (4, (2, 1, 0)),
    "mono8": (1, None),
}

#: Encodings :func:`image_to_rgb` accepts, for error messages and documentation.
SUPPORTED_ENCODINGS: tuple[str, ...] = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8")


def _as_uint8(data: Any) -> np.ndarray:
    """A flat uint8 view of a message's ``data`` (numpy, array.array, bytes, or a list of ints)."""
    if isinstance(data, np.ndarray):
        flat = data.reshape(-1)
        return flat.view(np.uint8) if flat.dtype.itemsize == 1 else flat.astype(np.uint8)
    try:
        return np.frombuffer(memoryview(data), dtype=np.uint8)
    except TypeError:
        return np.asarray(list(data), dtype=np.uint8)


def image_to_rgb(msg: Any) -> np.ndarray:
    """Convert a sensor_msgs/Image to an (H, W, 3) uint8 RGB array.

    Supports rgb8, bgr8, rgba8, bgra8 and mono8 (alpha dropped, grey replicated), and row padding
    (``step`` larger than ``width * channels``). Raises BadImageError naming the problem for any other
    encoding, an empty image, a ``step`` smaller than a row, or a ``data`` size different from
    ``step * height``. The result may share memory with the message when no conversion is needed.
    """
    encoding = str(msg.encoding).strip()
    spec = _ENCODINGS.get(encoding.lower())
    if spec is None:
        raise BadImageError(
            f"unsupported image encoding {encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}")
    channels, order = spec
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise BadImageError(f"empty image: {width}x{height} ({encoding})")
    row_bytes = width * channels
    if step < row_bytes:
        raise BadImageError(
            f"image step {step} is smaller than width*channels = {width}*{channels} = {row_bytes} "
            f"({encoding})")
    data = _as_uint8(msg.data)
    if data.size != step * height:
        raise BadImageError(
            f"image data has {data.size} bytes, expected step*height = {step}*{height} = {step * height} "
            f"({width}x{height} {encoding})")
    pixels = data.reshape(height, step)[:, :row_bytes].reshape(height, width, channels)
    if order is None:
        return np.repeat(pixels, 3, axis=2)
    if order == (0, 1, 2) and channels == 3:
        return np.ascontiguousarray(pixels)
    return np.ascontiguousarray(pixels[:, :, list(order)])


def compressed_to_rgb(msg: Any) -> np.ndarray:
    """Decode a sensor_msgs/CompressedImage (JPEG, PNG, ...) to (H, W, 3) uint8 RGB (BadImageError)."""
    import cv2

    data = _as_uint8(msg.data)
    fmt = str(getattr(msg, "format", ""))
    if data.size == 0:
        raise BadImageError(f"empty compressed image (format {fmt!r})")
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None:
        raise BadImageError(f"cannot decode compressed image of format {fmt!r} ({data.size} bytes)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def rgb_to_image_data(rgb: np.ndarray) -> array.array:
    """Pack a uint8 image array as an ``array('B')`` for an rclpy Image ``data`` (fast: no per-byte loop)."""
    out = array.array("B")
    out.frombytes(np.ascontiguousarray(rgb, dtype=np.uint8).data)
    return out


def camera_info_to_K(msg: Any) -> np.ndarray:
    """The 3x3 intrinsic matrix of a sensor_msgs/CameraInfo (field ``k``, or ``K`` for ROS 1 style).

    Raises BadCameraError when K is missing, non-finite, all zero, or has non-positive focal lengths.
    """
    if msg is None:
        raise BadCameraError("camera_info missing: no CameraInfo received for this image")
    values = getattr(msg, "k", None)
    if values is None:
        values = getattr(msg, "K", None)
    if values is None:
        raise BadCameraError("camera_info has no field 'k'")
    k = np.asarray(values, dtype=np.float64).reshape(-1)
    if k.size != 9:
        raise BadCameraError(f"camera_info k has {k.size} values, expected 9")
    K = k.reshape(3, 3)
    if not np.all(np.isfinite(K)):
        raise BadCameraError(f"camera_info K has non-finite values: {K.tolist()}")
    if not np.any(K):
        raise BadCameraError("camera_info K is all zero (camera not calibrated?)")
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise BadCameraError(f"camera_info K has non-positive focal lengths fx={K[0, 0]}, fy={K[1, 1]}")
    if K[2, 2] == 0:
        raise BadCameraError("camera_info K[2][2] is zero")
    if K[1, 0] != 0 or K[2, 0] != 0 or K[2, 1] != 0:
        raise BadCameraError(f"camera_info K is not upper triangular (a pinhole camera matrix): {K.tolist()}")
    return K


def check_camera_info_size(msg: Any, width: int, height: int) -> None:
    """BadCameraError when a camera_info names an image size (non-zero) other than ``width`` x ``height``:
    its K belongs to another resolution. A size of 0 x 0 (not filled in by the driver) is accepted."""
    info_w, info_h = int(getattr(msg, "width", 0) or 0), int(getattr(msg, "height", 0) or 0)
    if info_w and info_h and (info_w, info_h) != (width, height):
        raise BadCameraError(f"camera_info is for {info_w}x{info_h} images but the image is "
                             f"{width}x{height}; its K does not apply (wrong camera_info topic, or a resized "
                             "image?)")


def image_and_K(
    image_msg: Any, camera_info_msg: Any, compressed: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """The RGB image of a sensor_msgs Image (or CompressedImage) and the camera matrix that applies to it; a
    BadImageError or BadCameraError names the problem. The node and the labeler decode frames with it."""
    rgb = compressed_to_rgb(image_msg) if compressed else image_to_rgb(image_msg)
    K = camera_info_to_K(camera_info_msg)
    check_camera_info_size(camera_info_msg, rgb.shape[1], rgb.shape[0])
    return rgb, K


def stamp_to_ns(stamp: Any) -> int:
    """builtin_interfaces/Time (``sec``, ``nanosec``) -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def _normalise_labels(labels: Iterable[str]) -> frozenset[str]:
    return frozenset(str(label).strip().lower() for label in labels if str(label).strip())


@dataclass(frozen=True)
class LabelMap:
    """Which detection class ids are hands, and of which side. Comparison ignores case and surrounding spaces.

    A class id in ``right_hand_labels`` / ``left_hand_labels`` is a right / left hand; one in ``hand_labels``
    is a hand of ``default_hand_side`` (for detectors that do not tell the side). Any other class id is an
    object.
    """

    right_hand_labels: tuple[str, ...] = ("right_hand",)
    left_hand_labels: tuple[str, ...] = ("left_hand",)
    default_hand_side: Side | str = Side.RIGHT
    hand_labels: tuple[str, ...] = ("hand",)
    _right: frozenset[str] = field(init=False, repr=False, compare=False)
    _left: frozenset[str] = field(init=False, repr=False, compare=False)
    _any: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "default_hand_side", Side(self.default_hand_side))
        object.__setattr__(self, "_right", _normalise_labels(self.right_hand_labels))
        object.__setattr__(self, "_left", _normalise_labels(self.left_hand_labels))
        object.__setattr__(self, "_any", _normalise_labels(self.hand_labels))
        both = self._right & self._left
        if both:
            raise ValueError(f"labels listed as both right and left hand: {sorted(both)}")

    def side_of(self, class_id: str) -> Side | None:
        """The hand side of a class id, or None when it is an object class."""
        key = str(class_id).strip().lower()
        if key in self._right:
            return Side.RIGHT
        if key in self._left:
            return Side.LEFT
        if key in self._any:
            return Side(self.default_hand_side)
        return None


def box_from_bbox2d(bbox: Any) -> np.ndarray:
    """vision_msgs/BoundingBox2D (centre + size, Humble+ layout) -> [x1, y1, x2, y2] float64."""
    cx, cy = float(bbox.center.position.x), float(bbox.center.position.y)
    hw, hh = float(bbox.size_x) / 2.0, float(bbox.size_y) / 2.0
    return np.array([cx - hw, cy - hh, cx + hw, cy + hh], dtype=np.float64)


def detections_from_msg(msg: Any, label_map: LabelMap) -> list[Detection]:
    """vision_msgs/Detection2DArray -> Estimator detections, in message order.

    Each Detection2D uses its best-scoring hypothesis; its class id decides hand (and side) or object
    through ``label_map``. A detection without hypotheses becomes an object with class id "" (reported by
    the Estimator as an unknown class). Boxes are not validated here: the Estimator reports bad boxes.
    """
    out: list[Detection] = []
    for det in msg.detections:
        results = list(det.results)
        if results:
            best = max(results, key=lambda r: float(r.hypothesis.score))
            class_id, score = str(best.hypothesis.class_id), float(best.hypothesis.score)
        else:
            class_id, score = "", 0.0
        box = box_from_bbox2d(det.bbox)
        side = label_map.side_of(class_id)
        if side is not None:
            out.append(Detection.hand(box, side, score))
        else:
            out.append(Detection.object(box, class_id, score))
    return out


__all__ = [
    "SUPPORTED_ENCODINGS",
    "LabelMap",
    "box_from_bbox2d",
    "camera_info_to_K",
    "check_camera_info_size",
    "compressed_to_rgb",
    "detections_from_msg",
    "image_and_K",
    "image_to_rgb",
    "rgb_to_image_data",
    "stamp_to_ns",
]
