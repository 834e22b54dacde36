"""Drawing estimates over images with OpenCV: a shaded hand mesh, the hand skeleton, object axes and 3D box.

Meshes are drawn as flat-shaded triangles, far to near (painter's algorithm), blended over the image. This
needs no OpenGL, so pictures can be made anywhere the labels can be read.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..geometry.camera import project
from ..hand_joints import BONES

#: Control-point corner pairs that are the 12 edges of the object's 3D bounding box (spec §6 corner order).
BOX_EDGES: tuple[tuple[int, int], ...] = (
    (0, 1),
    (2, 3),
    (4, 5),
    (6, 7),
    (0, 2),
    (1, 3),
    (4, 6),
    (5, 7),
    (0, 4),
    (1, 5),
    (2, 6),
    (3, 7),
)
HAND_COLOUR = np.array([90.0, 170.0, 255.0])  # RGB
SKELETON_COLOUR = (255, 255, 255)
AXIS_COLOURS = ((255, 40, 40), (40, 220, 40), (60, 90, 255))  # x red, y green, z blue
BOX_COLOUR = (255, 220, 0)


def draw_mesh(
    image: np.ndarray,
    vertices: np.ndarray,
    faces: np.ndarray,
    K: np.ndarray,
    colour=HAND_COLOUR,
    alpha: float = 0.65,
) -> np.ndarray:
    """Blend a flat-shaded mesh (camera-frame vertices, metres) into an RGB image; returns a new image."""
    verts = np.asarray(vertices, np.float64)
    if len(verts) == 0 or not np.all(np.isfinite(verts)) or verts[:, 2].min() <= 1e-3:
        return image.copy()
    tri = verts[np.asarray(faces)]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    centres = tri.mean(axis=1)
    view = -centres / np.linalg.norm(centres, axis=1, keepdims=True)
    shade = 0.35 + 0.65 * np.abs(np.sum(normals * view, axis=1))
    uv = project(verts, K)
    layer = image.copy()
    mask = np.zeros(image.shape[:2], np.uint8)
    fixed = (uv[np.asarray(faces)] * 16).round().astype(np.int32)  # 4 fractional bits for sub-pixel edges
    for index in np.argsort(-centres[:, 2]):
        pts = fixed[index]
        c = tuple(float(v) for v in np.clip(colour * shade[index], 0, 255))
        cv2.fillConvexPoly(layer, pts, c, lineType=cv2.LINE_AA, shift=4)
        cv2.fillConvexPoly(mask, pts, 255, shift=4)
    blend = (alpha * (mask[..., None] / 255.0)).astype(np.float32)
    return (image * (1 - blend) + layer * blend).round().astype(np.uint8)


def _pt(p) -> tuple[int, int]:
    return round(float(p[0])), round(float(p[1]))


def _finite(points) -> bool:
    return bool(np.all(np.isfinite(np.asarray(points, np.float64))))


def draw_skeleton(
    image: np.ndarray, joints2d: np.ndarray, colour=SKELETON_COLOUR, thickness: int = 1
) -> None:
    """Draw the 20 bones and 21 joints (image px) in place."""
    if not _finite(joints2d):
        return
    for a, b in BONES:
        cv2.line(image, _pt(joints2d[a]), _pt(joints2d[b]), colour, thickness, cv2.LINE_AA)
    for p in joints2d:
        cv2.circle(image, _pt(p), max(1, thickness + 1), colour, -1, cv2.LINE_AA)


def draw_object(
    image: np.ndarray,
    R: np.ndarray,
    t: np.ndarray,
    K: np.ndarray,
    control_points3d: np.ndarray,
    axis_length: float = 0.05,
    box_colour=BOX_COLOUR,
    thickness: int = 2,
) -> None:
    """Draw an object pose in place: its 3D bounding box and its frame axes (x red, y green, z blue)."""
    R, t = np.asarray(R, np.float64), np.asarray(t, np.float64).reshape(3)
    if not (_finite(R) and _finite(t)) or t[2] <= 1e-3:
        return
    corners = project(np.asarray(control_points3d, np.float64)[:8] @ R.T + t, K)
    if _finite(corners):
        for a, b in BOX_EDGES:
            cv2.line(image, _pt(corners[a]), _pt(corners[b]), box_colour, max(1, thickness - 1), cv2.LINE_AA)
    axes = project(np.vstack([np.zeros(3), np.eye(3) * axis_length]) @ R.T + t, K)
    if _finite(axes):
        for k in range(3):
            cv2.line(image, _pt(axes[0]), _pt(axes[k + 1]), AXIS_COLOURS[k], thickness + 1, cv2.LINE_AA)


def draw_caption(image: np.ndarray, lines: list[str]) -> None:
    """Small white text with a dark outline, top-left, in place."""
    scale = max(0.35, image.shape[1] / 1400.0)
    y = int(16 * scale / 0.45)
    for line in lines:
        for colour, width in (((0, 0, 0), 3), ((255, 255, 255), 1)):
            cv2.putText(image, line, (6, y), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, width, cv2.LINE_AA)
        y += int(18 * scale / 0.45)
