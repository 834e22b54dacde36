"""Object models (points and optional mesh, metres, object frame) and a directory library of them."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ObjectModelError, UnknownObjectClassError
from .control_points import bbox_diagonal, control_points

#: A model whose bounds exceed this is taken to be in millimetres and refused.
MAX_EXTENT_M = 5.0
POINT_FILE = "points.xyz"
PREFERRED_MESH = "textured_simple.obj"
MESH_SUFFIXES = (".obj", ".ply")


@dataclass
class ObjectModel:
    """One object model. ``points`` drive the control points; the mesh (if any) is for display."""

    class_id: str
    points: np.ndarray  # (N, 3) m, object frame
    control_points: np.ndarray  # (21, 3) m, spec §6 order
    diameter: float  # bbox diagonal, m
    extents: np.ndarray  # (3,) bbox side lengths, m
    centre: np.ndarray  # (3,) bbox centre, m
    source: Path
    mesh_vertices: np.ndarray | None = None  # (V, 3) m
    mesh_faces: np.ndarray | None = None  # (F, 3) int
    mesh_source: Path | None = field(default=None)

    @classmethod
    def from_points(
        cls, class_id: str, points, source: Path | str, mesh=None, mesh_source=None
    ) -> ObjectModel:
        """Build a model from (N, 3) points in metres; ``mesh`` is an optional (vertices, faces) pair."""
        pts = _checked_points(points, Path(source))
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        vertices, faces = mesh if mesh is not None else (None, None)
        return cls(
            class_id=str(class_id),
            points=pts,
            control_points=control_points(pts),
            diameter=bbox_diagonal(pts),
            extents=hi - lo,
            centre=(lo + hi) / 2.0,
            source=Path(source),
            mesh_vertices=vertices,
            mesh_faces=faces,
            mesh_source=None if mesh_source is None else Path(mesh_source),
        )


def _checked_points(points, source: Path) -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ObjectModelError(f"object model {source}: expected (N, 3) points, got shape {pts.shape}")
    if pts.shape[0] < 4:
        raise ObjectModelError(f"object model {source}: only {pts.shape[0]} points, need at least 4")
    if not np.all(np.isfinite(pts)):
        raise ObjectModelError(f"object model {source}: has non-finite coordinates")
    extent = float((pts.max(axis=0) - pts.min(axis=0)).max())
    if extent > MAX_EXTENT_M:
        raise ObjectModelError(
            f"object model {source}: spans {extent:g} units, which looks like millimetres; "
            "object models must be in metres (divide the coordinates by 1000)"
        )
    if extent <= 0:
        raise ObjectModelError(f"object model {source}: all points coincide")
    return pts


def read_xyz(path: Path) -> np.ndarray:
    """Points from a whitespace-separated text file, one a line; extra columns (e.g. normals) are ignored."""
    try:
        with warnings.catch_warnings():  # an empty file: numpy warns, the error below says it
            warnings.simplefilter("ignore", UserWarning)
            data = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except OSError as exc:
        raise ObjectModelError(f"cannot read object points {path}: {exc}") from None
    except ValueError as exc:
        raise ObjectModelError(f"object points {path} are not whitespace-separated numbers: {exc}") from None
    if data.size == 0:
        raise ObjectModelError(f"object model {path}: only 0 points (the file holds no numbers), "
                               "need at least 4")
    if data.shape[1] < 3:
        raise ObjectModelError(f"object points {path}: need 3 columns (x y z), got {data.shape[1]}")
    return data[:, :3]


def read_mesh(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(vertices, faces or None) of an .obj/.ply mesh or point cloud, via trimesh, without processing."""
    import trimesh

    if not path.is_file():
        raise ObjectModelError(f"object mesh {path} does not exist")
    kwargs = {"skip_materials": True} if path.suffix.lower() == ".obj" else {}
    try:
        geometry = trimesh.load(path, process=False, **kwargs)
    except Exception as exc:  # trimesh raises many kinds of errors for bad files
        raise ObjectModelError(f"cannot read object mesh {path}: {exc}") from None
    if isinstance(geometry, trimesh.Scene):
        geometry = geometry.to_geometry() if len(geometry.geometry) else None
    if isinstance(geometry, trimesh.Trimesh):
        faces = np.asarray(geometry.faces, dtype=np.int64)
        vertices, faces = np.asarray(geometry.vertices, dtype=np.float64), (faces if len(faces) else None)
    elif isinstance(geometry, trimesh.PointCloud):
        vertices, faces = np.asarray(geometry.vertices, dtype=np.float64), None
    else:
        raise ObjectModelError(f"object mesh {path} holds no mesh or point cloud")
    if len(vertices) == 0:
        raise ObjectModelError(f"object mesh {path} has no vertices")
    return vertices, faces


def load_object_model(path, class_id: str, *, mesh_path=None) -> ObjectModel:
    """Load a model from points.xyz (or any .xyz/.txt) or an .obj/.ply file, in metres.

    ``mesh_path`` optionally adds a display mesh to a point file.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".xyz", ".txt"):
        mesh = read_mesh(Path(mesh_path)) if mesh_path is not None else None
        if mesh is not None:
            _checked_points(mesh[0], Path(mesh_path))
        return ObjectModel.from_points(class_id, read_xyz(path), path, mesh=mesh, mesh_source=mesh_path)
    if suffix in MESH_SUFFIXES:
        vertices, faces = read_mesh(path)
        return ObjectModel.from_points(class_id, vertices, path, mesh=(vertices, faces), mesh_source=path)
    raise ObjectModelError(f"object model {path}: unsupported file type {suffix!r} (use .xyz, .obj or .ply)")


class ObjectModelLibrary:
    """Object models in ``<directory>/<class_id>/``, loaded on first use.

    Each class directory holds ``points.xyz`` and/or a mesh: ``textured_simple.obj`` (YCB) is preferred,
    then any other .obj, then any .ply. The points come from points.xyz when present, else from the mesh.
    ``aliases`` maps further class ids (for example DexYCB's "5") to directory names ("006_mustard_bottle").
    """

    def __init__(self, directory, aliases: Mapping[str, str] | None = None):
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise ObjectModelError(f"object model directory {self.directory} does not exist")
        self._files: dict[str, tuple[Path | None, Path | None]] = {}
        for sub in sorted(p for p in self.directory.iterdir() if p.is_dir()):
            points, mesh = self._model_files(sub)
            if points is not None or mesh is not None:
                self._files[sub.name] = (points, mesh)
        self._aliases = {str(k): str(v) for k, v in (aliases or {}).items()}
        for alias, name in self._aliases.items():
            if name not in self._files:
                raise ObjectModelError(
                    f"alias {alias!r} names {name!r}, which has no model in {self.directory}"
                )
        self._cache: dict[str, ObjectModel] = {}

    @staticmethod
    def _model_files(sub: Path) -> tuple[Path | None, Path | None]:
        points = sub / POINT_FILE
        meshes = sorted(p for p in sub.iterdir() if p.is_file() and p.suffix.lower() in MESH_SUFFIXES)
        meshes.sort(key=lambda p: (p.name != PREFERRED_MESH, p.suffix.lower() != ".obj", p.name))
        return (points if points.is_file() else None), (meshes[0] if meshes else None)

    @property
    def class_ids(self) -> list[str]:
        """Known class ids: the directory names, then the aliases."""
        return [*self._files, *(a for a in self._aliases if a not in self._files)]

    def __contains__(self, class_id: object) -> bool:
        return str(class_id) in self._files or str(class_id) in self._aliases

    def get(self, class_id) -> ObjectModel:
        """The model of a class; UnknownObjectClassError (listing the known ids) when there is none."""
        key = str(class_id)
        name = key if key in self._files else self._aliases.get(key)
        if name is None:
            known = ", ".join(self.class_ids) or "none"
            raise UnknownObjectClassError(
                f"no object model for class {key!r} in {self.directory}; known: {known}"
            )
        if key not in self._cache:
            points, mesh = self._files[name]
            if points is not None:
                self._cache[key] = load_object_model(points, key, mesh_path=mesh)
            else:
                self._cache[key] = load_object_model(mesh, key)
        return self._cache[key]
