"""Offscreen rendering of hand and object meshes with pyrender on OSMesa (software OpenGL, no GPU or display).

pyrender + OSMesa is used because it is a real rasteriser with textures, lighting and per-pixel depth (hence
masks and occlusion), runs headless on one CPU core, and gives bit-identical pixels for the same scene.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

#: OpenCV / ROS optical camera axes -> OpenGL camera axes (y up, looking down -z).
OPENCV_TO_OPENGL = np.diag([1.0, -1.0, -1.0, 1.0])


def import_pyrender():
    """Import pyrender for offscreen use (OSMesa unless PYOPENGL_PLATFORM says otherwise).

    torchvision is imported first: loading its C extension after OSMesa's libraries crashes the process.
    """
    os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")
    import pyrender
    import torchvision  # noqa: F401  (import order matters, see the docstring)

    return pyrender


@dataclass
class Light:
    """A directional light: ``direction`` (3,) the light travels along, in the camera frame (OpenCV axes)."""

    direction: np.ndarray
    colour: np.ndarray  # (3,) in [0, 1]
    intensity: float


@dataclass
class MeshInput:
    """One mesh to draw: camera-frame positions (OpenCV axes) with either UVs + texture or vertex colours."""

    vertices: np.ndarray  # (V, 3)
    faces: np.ndarray  # (F, 3), counter-clockwise seen from outside
    uv: np.ndarray | None = None  # (V, 2)
    texture: np.ndarray | None = None  # (H, W, 3) uint8
    colours: np.ndarray | None = None  # (V, 4) float in [0, 1]
    roughness: float = 0.7
    double_sided: bool = False  # draw back faces too (open meshes such as the hand at the wrist)


@dataclass
class RenderOutput:
    """Colour (scene only, background black) and each mesh's depth rendered alone (0 where it is absent)."""

    colour: np.ndarray  # (H, W, 3) uint8
    depths: list[np.ndarray]  # one (H, W) float32 per mesh, un-occluded


def _vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    tri = vertices[faces]
    face_normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # area-weighted
    normals = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(normals, faces[:, k], face_normals)
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)


def _look_along(direction: np.ndarray) -> np.ndarray:
    """A 4x4 pose (OpenGL camera-frame) whose -z axis points along ``direction`` given in OpenCV axes."""
    d = OPENCV_TO_OPENGL[:3, :3] @ np.asarray(direction, np.float64)
    z = -d / np.linalg.norm(d)
    helper = np.array([0.0, 1.0, 0.0]) if abs(z[1]) < 0.9 else np.array([1.0, 0.0, 0.0])
    x = np.cross(helper, z)
    x /= np.linalg.norm(x)
    pose = np.eye(4)
    pose[:3, :3] = np.stack([x, np.cross(z, x), z], axis=1)
    return pose


class SceneRenderer:
    """Renders a few meshes seen by a pinhole camera at the origin of the OpenCV camera frame."""

    def __init__(self) -> None:
        self._pyrender = import_pyrender()
        self._renderers: dict[tuple[int, int], object] = {}

    def _renderer(self, width: int, height: int):
        key = (int(width), int(height))
        if key not in self._renderers:
            self._renderers[key] = self._pyrender.OffscreenRenderer(*key)
        return self._renderers[key]

    def _mesh(self, item: MeshInput):
        pr = self._pyrender
        vertices = np.asarray(item.vertices, np.float64)
        # the scene is built in OpenGL camera axes: flipping y and z keeps the winding order (det = +1)
        positions = (vertices @ OPENCV_TO_OPENGL[:3, :3]).astype(np.float32)
        normals = _vertex_normals(positions.astype(np.float64), item.faces).astype(np.float32)
        kwargs = {}
        if item.texture is not None:
            texture = pr.Texture(source=np.ascontiguousarray(item.texture), source_channels="RGB")
            material = pr.MetallicRoughnessMaterial(
                baseColorTexture=texture,
                metallicFactor=0.0,
                roughnessFactor=item.roughness,
                doubleSided=item.double_sided,
            )
            kwargs["texcoord_0"] = np.asarray(item.uv, np.float32)
        else:
            material = pr.MetallicRoughnessMaterial(
                baseColorFactor=[1.0, 1.0, 1.0, 1.0],
                metallicFactor=0.0,
                roughnessFactor=item.roughness,
                doubleSided=item.double_sided,
            )
            kwargs["color_0"] = np.asarray(item.colours, np.float32)
        primitive = pr.Primitive(
            positions=positions,
            normals=normals,
            indices=np.asarray(item.faces, np.uint32),
            material=material,
            **kwargs,
        )
        return pr.Mesh([primitive])

    def render(
        self,
        K: np.ndarray,
        size: tuple[int, int],
        meshes: list[MeshInput],
        lights: list[Light],
        ambient: float,
    ) -> RenderOutput:
        """Colour of all meshes together, and the depth of each mesh rendered on its own."""
        pr = self._pyrender
        width, height = size
        scene = pr.Scene(bg_color=[0.0, 0.0, 0.0, 0.0], ambient_light=[ambient] * 3)
        camera = pr.IntrinsicsCamera(fx=K[0, 0], fy=K[1, 1], cx=K[0, 2], cy=K[1, 2], znear=0.02, zfar=10.0)
        scene.add(camera, pose=np.eye(4))
        for light in lights:
            scene.add(
                pr.DirectionalLight(color=light.colour, intensity=light.intensity),
                pose=_look_along(light.direction),
            )
        nodes = [scene.add(self._mesh(m)) for m in meshes]
        renderer = self._renderer(width, height)
        colour, _ = renderer.render(scene)
        depths = []
        for node in nodes:
            for other in nodes:
                other.mesh.is_visible = other is node
            depths.append(renderer.render(scene, flags=pr.RenderFlags.DEPTH_ONLY).astype(np.float32))
        return RenderOutput(np.ascontiguousarray(colour[..., :3]), depths)

    def close(self) -> None:
        for renderer in self._renderers.values():
            renderer.delete()
        self._renderers.clear()
