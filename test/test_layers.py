"""Dependencies point one way: every import inside hfl_ros (lazy ones included) follows hfl_ros/layers.py,
and only the ROS layers import rclpy or ROS message packages."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from hfl_ros import layers

PACKAGE = Path(__file__).resolve().parents[1] / "hfl_ros"
#: Python packages that exist only with a ROS installation (rclpy and the generated message packages).
ROS_ONLY = {"rclpy", "rcl_interfaces", "builtin_interfaces", "std_msgs", "sensor_msgs", "vision_msgs",
            "geometry_msgs", "tf2_msgs", "visualization_msgs", "diagnostic_msgs", "std_srvs",
            "lifecycle_msgs"}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, root: Path) -> list[tuple[str, int]]:
    """(imported module, line) of every import statement in the file, relative ones resolved."""
    module = module_name(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # "from hfl_ros.model import hflnet" imports the module hfl_ros.model.hflnet
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                sub = root.parent / candidate.replace(".", "/")
                is_module = sub.with_suffix(".py").is_file() or (sub / "__init__.py").is_file()
                found.append((candidate if is_module else target, node.lineno))
    return found


def violations(root: Path) -> list[str]:
    """Every import of the source tree under ``root`` that the layer table does not allow."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        importer = module_name(path, root)
        layer = layers.layer_of(importer)
        for imported, line in imports_of(path, root):
            where = f"{path.relative_to(root.parent)}:{line}"
            top = imported.split(".")[0]
            if top == "hfl_ros" and not layers.may_import(importer, imported):
                problems.append(f"{where}: {layer} imports {imported} ({layers.layer_of(imported)})")
            elif top in ROS_ONLY and layer not in layers.RCLPY_LAYERS:
                problems.append(f"{where}: {layer} imports {imported} (ROS only)")
    return problems


def test_no_import_goes_against_the_layers():
    assert violations(PACKAGE) == []


def test_every_package_has_a_layer():
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert packages - set(layers.ALLOWED) == set()
    assert modules - layers.BASE_MODULES - set(layers.MODULE_LAYERS) == set()


@pytest.mark.parametrize("source, expected", [
    ("from ..data import synthetic\n", "model imports hfl_ros.data.synthetic (data)"),
    ("from hfl_ros.train.trainer import Trainer\n", "model imports hfl_ros.train.trainer (train)"),
    ("def f():\n    import rclpy\n", "model imports rclpy (ROS only)"),
    ("from ..estimator import Estimator\n", "model imports hfl_ros.estimator (estimator)"),
])
def test_an_upward_import_is_reported(tmp_path, source, expected):
    root = tmp_path / "hfl_ros"
    for package in ("model", "data", "train"):
        (root / package).mkdir(parents=True)
        (root / package / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "data" / "synthetic.py").write_text("")
    (root / "train" / "trainer.py").write_text("")
    (root / "estimator.py").write_text("")
    (root / "model" / "net.py").write_text(source)
    assert [v.split(": ", 1)[1] for v in violations(root)] == [expected]


def test_a_downward_import_is_allowed(tmp_path):
    assert layers.may_import("hfl_ros.train.trainer", "hfl_ros.data.torch_dataset")
    assert layers.may_import("hfl_ros.bag.label", "hfl_ros.errors")
    assert not layers.may_import("hfl_ros.bag.play_cli", "hfl_ros.nodes.bag_player")
    assert not layers.may_import("hfl_ros.data.torch_dataset", "hfl_ros.train.augment")
