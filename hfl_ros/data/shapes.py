"""Synthetic stand-ins for a few YCB objects: textured meshes with YCB-like sizes, written as object models.

Each shape is built in its own object frame (metres, origin at the centre of its bounds, z along its long or
upright axis) with texture coordinates into its class texture (:func:`hfl_ros.data.textures.class_texture`),
a 2x3 atlas: cells (row 0, col 0..2) hold the sides, row 1 the caps, the other box faces and the mug handle.
The class ids are those of the similar YCB objects in DexYCB numbering (spec §9), so models written with
:func:`write_object_models` load with :class:`~hfl_ros.geometry.object_models.ObjectModelLibrary`.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .textures import class_texture
from .ycb import name_for_class_id

#: Points written to points.xyz, as many as in the YCB models HFL-Net uses.
NUM_MODEL_POINTS = 2621
#: Angular segments of surfaces of revolution.
SEGMENTS = 48


@dataclass(frozen=True)
class ShapeMesh:
    """A triangle mesh with per-vertex texture coordinates into the class texture atlas."""

    vertices: np.ndarray  # (V, 3) float64, m, object frame
    faces: np.ndarray  # (F, 3) int64
    uv: np.ndarray  # (V, 2) float64 in [0, 1]

    @staticmethod
    def concatenate(parts: list[ShapeMesh]) -> ShapeMesh:
        offsets = np.cumsum([0] + [len(p.vertices) for p in parts[:-1]])
        return ShapeMesh(
            np.concatenate([p.vertices for p in parts]),
            np.concatenate([p.faces + o for p, o in zip(parts, offsets)]),
            np.concatenate([p.uv for p in parts]),
        )


def _cell_uv(u, v, row: int, col: int) -> np.ndarray:
    """Map local (u, v) in [0, 1] into atlas cell (row, col) of the 2x3 atlas."""
    u, v = np.asarray(u, np.float64), np.asarray(v, np.float64)
    return np.stack([(col + u) / 3.0, (row + v) / 2.0], axis=-1)


def _grid_faces(rows: int, cols: int) -> np.ndarray:
    """Two triangles per quad of a (rows, cols) vertex grid, counter-clockwise seen from outside."""
    i, j = np.meshgrid(np.arange(rows - 1), np.arange(cols - 1), indexing="ij")
    a = (i * cols + j).ravel()
    b, c, d = a + 1, a + cols, a + cols + 1
    return np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)]).astype(np.int64)


def revolution(profile, scale_xy=(1.0, 1.0), cells=((0, 0), (0, 2))) -> ShapeMesh:
    """Surface of revolution about z from a profile of (z, radius) rows (bottom to top), closed by flat caps.

    ``scale_xy`` stretches the section into an ellipse. The side wraps once around the atlas row 0 (u from 0
    to 1 over 360°), the bottom and top caps use cells (1, 0) and (1, 1).
    """
    prof = np.asarray(profile, np.float64)
    theta = np.linspace(0.0, 2 * np.pi, SEGMENTS + 1)
    z, r = prof[:, 0], prof[:, 1]
    x = r[:, None] * np.cos(theta)[None] * scale_xy[0]
    y = r[:, None] * np.sin(theta)[None] * scale_xy[1]
    verts = np.stack([x, y, np.broadcast_to(z[:, None], x.shape)], -1).reshape(-1, 3)
    arc = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(z), np.diff(r)))])
    u, v = np.meshgrid(theta / (2 * np.pi), arc / arc[-1], indexing="xy")
    side_uv = np.stack([u, v * 0.999], -1).reshape(-1, 2) / np.array([1.0, 2.0])  # atlas row 0
    side = ShapeMesh(verts, _grid_faces(len(prof), SEGMENTS + 1), side_uv)
    caps = [side]
    for end, cell_col, flip in ((0, 0, True), (-1, 1, False)):
        if r[end] <= 0:
            continue
        ring = side.vertices.reshape(len(prof), SEGMENTS + 1, 3)[end, :-1]
        centre = np.array([[0.0, 0.0, z[end]]])
        cap_verts = np.concatenate([centre, ring])
        uv_local = 0.5 + 0.5 * np.concatenate(
            [[[0.0, 0.0]], np.stack([np.cos(theta[:-1]), np.sin(theta[:-1])], 1)]
        )
        idx = np.arange(SEGMENTS)
        faces = np.stack([np.zeros(SEGMENTS, np.int64), 1 + idx, 1 + (idx + 1) % SEGMENTS], 1)
        faces = faces[:, ::-1] if flip else faces
        caps.append(ShapeMesh(cap_verts, faces.copy(), _cell_uv(uv_local[:, 0], uv_local[:, 1], 1, cell_col)))
    return ShapeMesh.concatenate(caps)


def box(size) -> ShapeMesh:
    """An axis-aligned box centred at the origin; each of its 6 faces uses its own atlas cell."""
    half = np.asarray(size, np.float64) / 2.0
    parts = []
    # (normal axis, sign, atlas cell): +-y are the large label faces, +-x the narrow sides, +-z the ends
    faces_spec = (
        (1, -1, (0, 0)),
        (0, 1, (0, 1)),
        (1, 1, (0, 2)),
        (0, -1, (1, 0)),
        (2, 1, (1, 1)),
        (2, -1, (1, 2)),
    )
    for axis, sign, (row, col) in faces_spec:
        a, b = [k for k in range(3) if k != axis]
        s, t = np.meshgrid(np.linspace(-1, 1, 2), np.linspace(-1, 1, 2), indexing="ij")
        verts = np.zeros((4, 3))
        verts[:, axis] = sign * half[axis]
        verts[:, a], verts[:, b] = s.ravel() * half[a], t.ravel() * half[b]
        faces = np.array([[0, 2, 3], [0, 3, 1]], np.int64)
        normal = np.cross(verts[faces[0, 1]] - verts[faces[0, 0]], verts[faces[0, 2]] - verts[faces[0, 0]])
        if normal[axis] * sign < 0:
            faces = faces[:, ::-1].copy()
        parts.append(ShapeMesh(verts, faces, _cell_uv((s.ravel() + 1) / 2, (t.ravel() + 1) / 2, row, col)))
    return ShapeMesh.concatenate(parts)


def handle(centre_x: float, reach: float, half_height: float, tube_radius: float) -> ShapeMesh:
    """A mug handle: a tube along a half-ellipse in the x-z plane, bulging towards +x (atlas cell (1, 2))."""
    sweep = np.linspace(-np.pi / 2, np.pi / 2, 17)
    ring = np.linspace(0.0, 2 * np.pi, 13)
    spine = np.stack([centre_x + reach * np.cos(sweep), np.zeros_like(sweep), half_height * np.sin(sweep)], 1)
    tangent = np.gradient(spine, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    binormal = np.tile([0.0, 1.0, 0.0], (len(sweep), 1))
    normal = np.cross(binormal, tangent)
    verts = (
        spine[:, None]
        + tube_radius
        * (np.cos(ring)[None, :, None] * normal[:, None] + np.sin(ring)[None, :, None] * binormal[:, None])
    ).reshape(-1, 3)
    u, v = np.meshgrid(ring / (2 * np.pi), np.linspace(0, 1, len(sweep)), indexing="xy")
    return ShapeMesh(verts, _grid_faces(len(sweep), len(ring)), _cell_uv(u.ravel(), v.ravel(), 1, 2))


@dataclass(frozen=True)
class ObjectShape:
    """One synthetic object class."""

    class_id: str
    kind: str  # "box" or "round" (wrapped around z)
    mesh: ShapeMesh
    #: For round shapes: azimuths (radians, about z from +x) a hand may not take, e.g. where a handle is.
    blocked_azimuth: tuple[float, float] | None = None

    @property
    def name(self) -> str:
        return name_for_class_id(self.class_id)

    @functools.cached_property
    def texture(self) -> np.ndarray:
        return class_texture(self.class_id)

    @functools.cached_property
    def points(self) -> np.ndarray:
        """(NUM_MODEL_POINTS, 3) points on the surface, area-weighted, fixed per class."""
        # rounded as written to points.xyz, so that control points computed from either are identical
        return np.round(sample_surface(self.mesh, NUM_MODEL_POINTS, seed=int(self.class_id)), 6)

    def support(self, direction) -> float:
        """How far the surface reaches along a unit direction: max over the model points of p . direction."""
        return float((self.points @ np.asarray(direction, np.float64)).max())


def _centred(mesh: ShapeMesh) -> ShapeMesh:
    lo, hi = mesh.vertices.min(0), mesh.vertices.max(0)
    return ShapeMesh(mesh.vertices - (lo + hi) / 2.0, mesh.faces, mesh.uv)


def _can(radius: float, height: float, rim: float = 0.003) -> ShapeMesh:
    h = height / 2
    return revolution([(-h, radius - rim), (-h + rim, radius), (h - rim, radius), (h, radius - rim)])


def _bottle() -> ShapeMesh:
    # mustard-bottle-like: an elliptical body (9.5 x 5.8 cm), a shoulder, a neck and a cap; 19 cm tall
    profile = [
        (0.0, 0.85),
        (0.008, 1.0),
        (0.115, 1.0),
        (0.135, 0.8),
        (0.148, 0.42),
        (0.152, 0.34),
        (0.17, 0.34),
        (0.172, 0.3),
        (0.19, 0.26),
    ]
    return _centred(revolution(profile, scale_xy=(0.0475, 0.029)))


def _mug() -> ShapeMesh:
    radius, height = 0.04, 0.082
    body = revolution([(-height / 2, radius - 0.002), (-height / 2 + 0.003, radius), (height / 2, radius)])
    return _centred(ShapeMesh.concatenate([body, handle(radius - 0.004, 0.028, 0.026, 0.0065)]))


@functools.cache
def object_shapes() -> dict[str, ObjectShape]:
    """The synthetic object classes by class id: a cracker box, a soup can, a mustard bottle and a mug."""
    shapes = [
        ObjectShape("2", "box", box((0.158, 0.060, 0.210))),  # 003_cracker_box
        ObjectShape("4", "round", _can(0.0335, 0.1015)),  # 005_tomato_soup_can
        ObjectShape("5", "round", _bottle()),  # 006_mustard_bottle
        ObjectShape("14", "round", _mug(), blocked_azimuth=(-1.0, 1.0)),  # 025_mug, handle towards +x
    ]
    return {s.class_id: s for s in shapes}


def sample_surface(mesh: ShapeMesh, count: int, seed: int) -> np.ndarray:
    """``count`` points uniformly on the mesh surface (area-weighted triangles, uniform barycentrics)."""
    rng = np.random.default_rng(seed)
    tri = mesh.vertices[mesh.faces]
    areas = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    face = rng.choice(len(tri), size=count, p=areas / areas.sum())
    a, b = rng.random(count), rng.random(count)
    flip = a + b > 1
    a[flip], b[flip] = 1 - a[flip], 1 - b[flip]
    t = tri[face]
    return t[:, 0] + a[:, None] * (t[:, 1] - t[:, 0]) + b[:, None] * (t[:, 2] - t[:, 0])


def write_if_changed(path: Path, data: bytes) -> bool:
    """Write ``data`` to ``path`` unless the file already holds exactly it; atomic (via a temporary file).

    Caches of generated assets use this, so that they follow changes of the generating code.
    """
    path = Path(path)
    if path.is_file() and path.read_bytes() == data:
        return False
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return True


def write_obj(path: Path, mesh: ShapeMesh, texture: np.ndarray) -> None:
    """Write a textured Wavefront OBJ with its .mtl and texture PNG next to it (files that differ only)."""
    path = Path(path)
    tex_name, mtl_name = f"{path.stem}.png", f"{path.stem}.mtl"
    ok, png = cv2.imencode(".png", cv2.cvtColor(np.flipud(texture), cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"cannot encode the texture of {path}")
    write_if_changed(path.with_name(tex_name), png.tobytes())
    mtl = f"newmtl material_0\nKa 1 1 1\nKd 1 1 1\nKs 0 0 0\nmap_Kd {tex_name}\n"
    write_if_changed(path.with_name(mtl_name), mtl.encode())
    lines = [f"mtllib {mtl_name}", "usemtl material_0"]
    lines += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in mesh.vertices]
    lines += [f"vt {u:.6f} {v:.6f}" for u, v in mesh.uv]
    lines += [f"f {a}/{a} {b}/{b} {c}/{c}" for a, b, c in mesh.faces + 1]
    write_if_changed(path, ("\n".join(lines) + "\n").encode())


def write_object_models(directory, class_ids=None, *, by_name: bool = False) -> Path:
    """Write ``points.xyz`` and ``textured_simple.obj`` of the synthetic classes under ``directory``.

    Sub-directories are named by class id (``<dir>/5/``, the ObjectModelLibrary layout) or, with ``by_name``,
    by YCB name (``<dir>/006_mustard_bottle/``, the HO3D models layout). Returns ``directory``; files that
    already hold the same content are left alone.
    """
    directory = Path(directory)
    wanted = None if class_ids is None else {str(c) for c in class_ids}
    for cid, shape in object_shapes().items():
        if wanted is not None and cid not in wanted:
            continue
        sub = directory / (shape.name if by_name else cid)
        sub.mkdir(parents=True, exist_ok=True)
        text = "\n".join(f"{x:.6f} {y:.6f} {z:.6f}" for x, y, z in shape.points) + "\n"
        write_if_changed(sub / "points.xyz", text.encode())
        write_obj(sub / "textured_simple.obj", shape.mesh, shape.texture)
    return directory
