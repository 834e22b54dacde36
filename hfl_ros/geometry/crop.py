"""The square network crop around a hand-object pair, and left-hand mirroring (spec §1).

Point coordinates follow the usual pixel-centre convention (pixel i covers [i - 0.5, i + 0.5]).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import BadBoxError
from .boxes import scale_box, union

#: Side of the network's input crop, in pixels.
DEFAULT_CROP_SIZE = 256
#: Growth of the hand and object boxes that the crop is built from (spec: f=1.5 boxes of the points).
CROP_BOX_FACTOR = 1.5


@dataclass(frozen=True)
class CropTransform:
    """Image px -> crop px: x' = s * x + size * (0.5 - cx / scale), likewise for y, with s = size / scale."""

    centre: tuple[float, float]  # (cx, cy) image px, int-valued as in the spec
    scale: float  # side of the cropped image region, image px
    size: int = DEFAULT_CROP_SIZE  # side of the crop, crop px

    @property
    def s(self) -> float:
        return self.size / self.scale

    @property
    def offset(self) -> np.ndarray:
        return self.size * (0.5 - np.asarray(self.centre, dtype=np.float64) / self.scale)

    @property
    def matrix(self) -> np.ndarray:
        """The 2x3 affine A (image px -> crop px)."""
        ox, oy = self.offset
        return np.array([[self.s, 0.0, ox], [0.0, self.s, oy]])

    @property
    def homography(self) -> np.ndarray:
        """A as a 3x3 matrix."""
        return np.vstack([self.matrix, [0.0, 0.0, 1.0]])

    def apply(self, points) -> np.ndarray:
        """Image px (..., 2) -> crop px."""
        return np.asarray(points, dtype=np.float64) * self.s + self.offset

    def invert(self, points) -> np.ndarray:
        """Crop px (..., 2) -> image px."""
        return (np.asarray(points, dtype=np.float64) - self.offset) / self.s

    def apply_box(self, box) -> np.ndarray:
        """Image-px box (..., 4) -> crop-px box."""
        b = np.asarray(box, dtype=np.float64)
        return np.concatenate([self.apply(b[..., :2]), self.apply(b[..., 2:])], axis=-1)

    def apply_K(self, K) -> np.ndarray:
        """The camera matrix of the crop: K' = A . K (A as a 3x3)."""
        return self.homography @ np.asarray(K, dtype=np.float64)


def crop_for_pair(
    hand_box,
    object_box,
    image_wh: tuple[int, int],
    size: int = DEFAULT_CROP_SIZE,
    f: float = CROP_BOX_FACTOR,
) -> CropTransform:
    """The crop around a hand box and an optional object box (spec §1).

    Each box is grown by ``f`` about its centre (the boxes stand for the tight boxes of the points, so this
    equals the spec's f=1.5 boxes of the points). Their union is clipped to [0, W] x [0, H]; the crop centre
    is its int-truncated midpoint and the crop side is its longer side.
    """
    region = scale_box(hand_box, f)
    if object_box is not None:
        region = union(region, scale_box(object_box, f))
    width, height = image_wh
    x1, y1 = max(region[0], 0.0), max(region[1], 0.0)
    x2, y2 = min(region[2], float(width)), min(region[3], float(height))
    scale = max(x2 - x1, y2 - y1)
    if not np.isfinite(scale) or scale <= 0:
        raise BadBoxError(f"the crop region {region.tolist()} is empty inside the {width}x{height} image")
    centre = (float(np.trunc((x1 + x2) / 2.0)), float(np.trunc((y1 + y2) / 2.0)))
    return CropTransform(centre=centre, scale=float(scale), size=int(size))


def warp_image(image: np.ndarray, crop: CropTransform, size: int | None = None) -> np.ndarray:
    """Cut the crop out of an image (see :func:`warp_homography`)."""
    return warp_homography(image, crop.homography, crop.size if size is None else int(size))


def warp_homography(image: np.ndarray, H, size: int) -> np.ndarray:
    """Warp an image by the image px -> crop px homography ``H`` into a size×size crop, with nearest-neighbour
    sampling and black outside the image: the one crop sampler of training and inference.

    This reproduces PIL ``Image.transform`` with its defaults (as HFL-Net warps): output pixel (x, y) takes
    input pixel floor(H^-1 (x + 0.5, y + 0.5)). cv2.warpAffine/warpPerspective would round the source
    coordinate in 1/1024 px fixed point and pick the neighbouring pixel for up to a few percent of the
    columns at some scales, so the source indices are computed in float64 here and cv2.remap only gathers.
    An axis-aligned H (a plain crop) takes separable row and column indices. Where a source coordinate falls
    exactly on a pixel border, floating-point rounding decides in either implementation.
    """
    H = np.asarray(H, dtype=np.float64)
    height, width = image.shape[:2]
    centres = np.arange(size, dtype=np.float64) + 0.5
    if H[0, 1] == 0.0 and H[1, 0] == 0.0 and np.array_equal(H[2], [0.0, 0.0, 1.0]):
        inv_sx, inv_sy = 1.0 / H[0, 0], 1.0 / H[1, 1]
        cols = np.floor(inv_sx * centres - H[0, 2] * inv_sx)
        rows = np.floor(inv_sy * centres - H[1, 2] * inv_sy)
        cols[(cols < 0) | (cols >= width)] = -1  # sampled as the black border
        rows[(rows < 0) | (rows >= height)] = -1
        map_x = np.broadcast_to(cols.astype(np.float32)[None, :], (size, size))
        map_y = np.broadcast_to(rows.astype(np.float32)[:, None], (size, size))
    else:
        xs, ys = np.meshgrid(centres, centres)
        src = np.linalg.inv(H) @ np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)])
        cols = np.floor(src[0] / src[2]).reshape(size, size)
        rows = np.floor(src[1] / src[2]).reshape(size, size)
        outside = (cols < 0) | (cols >= width) | (rows < 0) | (rows >= height)
        cols[outside], rows[outside] = -1, -1
        map_x, map_y = cols.astype(np.float32), rows.astype(np.float32)
    return cv2.remap(
        np.ascontiguousarray(image),
        np.ascontiguousarray(map_x),
        np.ascontiguousarray(map_y),
        interpolation=cv2.INTER_NEAREST,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )


def mirror_image(image: np.ndarray) -> np.ndarray:
    """The image flipped left-right (column x -> W - 1 - x), as a contiguous array."""
    return np.ascontiguousarray(image[:, ::-1])


def mirror_points_2d(points, width: int) -> np.ndarray:
    """Mirror pixel points (..., 2) left-right: x -> W - 1 - x (the spec's x -> 639 - x at 640 px)."""
    pts = np.array(points, dtype=np.float64, copy=True)
    pts[..., 0] = (width - 1) - pts[..., 0]
    return pts


def mirror_box(box, width: int) -> np.ndarray:
    """Mirror boxes (..., 4) left-right with x -> W - 1 - x, keeping x1 < x2."""
    b = np.asarray(box, dtype=np.float64)
    return np.stack([(width - 1) - b[..., 2], b[..., 1], (width - 1) - b[..., 0], b[..., 3]], axis=-1)


def mirror_K(K, width: int) -> np.ndarray:
    """The camera matrix of the mirrored image, with a positive fx: cx -> W - 1 - cx (and skew negated).

    3D points with x negated project with it to the mirrored pixels of the original points.
    """
    Km = np.array(K, dtype=np.float64, copy=True)
    Km[0, 1] = -Km[0, 1]
    Km[0, 2] = (width - 1) - Km[0, 2]
    return Km
