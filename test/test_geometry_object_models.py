"""Object model files and the object model library."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh

from hfl_ros.errors import ObjectModelError, UnknownObjectClassError
from hfl_ros.geometry.control_points import control_points
from hfl_ros.geometry.object_models import ObjectModelLibrary, load_object_model

EXTENTS = np.array([0.06, 0.10, 0.2])
OFFSET = np.array([0.01, -0.02, 0.05])


def _box_mesh() -> trimesh.Trimesh:
    mesh = trimesh.creation.box(extents=EXTENTS)
    mesh.apply_translation(OFFSET)
    return mesh


def _write_xyz(path: Path, points: np.ndarray, extra_columns: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.c_[points, np.zeros((len(points), extra_columns))]
    np.savetxt(path, data, fmt="%.6f")
    return path


def _check_box_model(model, class_id: str) -> None:
    assert model.class_id == class_id
    np.testing.assert_allclose(model.extents, EXTENTS, atol=1e-6)
    np.testing.assert_allclose(model.centre, OFFSET, atol=1e-6)
    assert model.diameter == pytest.approx(np.linalg.norm(EXTENTS), abs=1e-6)
    assert model.control_points.shape == (21, 3)
    np.testing.assert_allclose(model.control_points[20], OFFSET, atol=1e-6)
    np.testing.assert_allclose(model.control_points[0], OFFSET - EXTENTS / 2, atol=1e-6)


def test_load_points_xyz(tmp_path):
    inside = OFFSET + np.random.default_rng(0).uniform(-0.5, 0.5, (500, 3)) * EXTENTS
    points = np.r_[_box_mesh().vertices, inside]
    path = _write_xyz(tmp_path / "points.xyz", points, extra_columns=3)  # normals columns are ignored
    model = load_object_model(path, "5")
    _check_box_model(model, "5")
    assert model.points.shape == (len(points), 3)
    assert model.mesh_faces is None


@pytest.mark.parametrize("suffix", [".obj", ".ply"])
def test_load_mesh(tmp_path, suffix):
    path = tmp_path / f"box{suffix}"
    _box_mesh().export(path)
    model = load_object_model(path, "mug")
    _check_box_model(model, "mug")
    assert model.mesh_faces is not None and model.mesh_faces.shape == (12, 3)
    np.testing.assert_allclose(model.control_points, control_points(model.mesh_vertices))


def test_load_point_cloud_ply(tmp_path):
    path = tmp_path / "cloud.ply"
    trimesh.PointCloud(_box_mesh().vertices).export(path)
    model = load_object_model(path, "7")
    _check_box_model(model, "7")
    assert model.mesh_faces is None


def test_millimetre_model_is_refused(tmp_path):
    path = tmp_path / "big.obj"
    mesh = _box_mesh()
    mesh.apply_scale(1000.0)
    mesh.export(path)
    with pytest.raises(ObjectModelError, match="millimetres"):
        load_object_model(path, "1")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("points.xyz", "1 2\n3 4\n", "3 columns"),
        ("points.xyz", "a b c\n", "not whitespace-separated numbers"),
        ("points.xyz", "0 0 0\n0.1 0 0\n", "only 2 points"),
        ("points.xyz", "0 0 0\n0.1 0 0\n0 nan 0\n0 0 0.1\n", "non-finite"),
        ("broken.ply", "junk", "cannot read object mesh"),
        ("model.stl2", "junk", "unsupported file type"),
    ],
)
def test_bad_model_files(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ObjectModelError, match=message):
        load_object_model(path, "1")


def test_missing_model_file(tmp_path):
    with pytest.raises(ObjectModelError, match="cannot read"):
        load_object_model(tmp_path / "points.xyz", "1")


def test_library_layout_and_preference(tmp_path):
    root = tmp_path / "models"
    _write_xyz(root / "006_mustard_bottle" / "points.xyz", _box_mesh().vertices)
    _box_mesh().export(root / "006_mustard_bottle" / "textured_simple.obj")
    (root / "025_mug").mkdir(parents=True)
    small = _box_mesh()
    small.apply_scale(0.5)
    small.export(root / "025_mug" / "a_other.ply")
    _box_mesh().export(root / "025_mug" / "textured_simple.obj")
    (root / "empty_dir").mkdir()
    (root / "readme.txt").write_text("not a class")

    library = ObjectModelLibrary(root, aliases={"5": "006_mustard_bottle"})
    assert library.class_ids == ["006_mustard_bottle", "025_mug", "5"]
    assert "025_mug" in library and "empty_dir" not in library
    mustard = library.get("006_mustard_bottle")
    assert mustard.source.name == "points.xyz" and mustard.mesh_source.name == "textured_simple.obj"
    assert mustard.mesh_faces.shape == (12, 3)
    assert library.get("006_mustard_bottle") is mustard  # cached
    mug = library.get("025_mug")
    assert mug.source.name == "textured_simple.obj"  # preferred over the .ply
    _check_box_model(mug, "025_mug")
    _check_box_model(library.get("5"), "5")


def test_library_errors(tmp_path):
    with pytest.raises(ObjectModelError, match="does not exist"):
        ObjectModelLibrary(tmp_path / "nowhere")
    root = tmp_path / "models"
    _write_xyz(root / "a" / "points.xyz", _box_mesh().vertices)
    _write_xyz(root / "b" / "points.xyz", np.zeros((2, 3)))
    library = ObjectModelLibrary(root)
    with pytest.raises(UnknownObjectClassError, match=r"no object model for class 'zebra'.*known: a, b"):
        library.get("zebra")
    with pytest.raises(ObjectModelError, match="only 2 points"):
        library.get("b")  # bad files surface when first used
    with pytest.raises(ObjectModelError, match="alias 'x' names 'c'"):
        ObjectModelLibrary(root, aliases={"x": "c"})
