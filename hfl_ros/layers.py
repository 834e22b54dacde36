"""The package's layers and which may import which: the table of docs/architecture.md, checked by
test/test_layers.py on every import in the source (lazy ones inside functions included).

Dependencies point downward only. A layer is a sub-package, or a group of top-level modules.
"""

from __future__ import annotations

#: Top-level modules every layer may import: typed errors, result types, joint names, parameter specs,
#: device names, safe unpicklers, stop-signal handling.
BASE_MODULES: frozenset[str] = frozenset({
    "errors", "results", "hand_joints", "param_spec", "devices", "safe_pickle", "mano_pickle", "stop_signals",
    "layers",
})

#: Top-level modules that form a layer of their own.
MODULE_LAYERS: dict[str, str] = {"estimator": "estimator", "estimator_config": "estimator",
                                 "estimator_factory": "estimator", "cli": "cli"}

#: Layer -> the layers it may import (besides itself and the base modules), lowest layer first.
ALLOWED: dict[str, frozenset[str]] = {
    "base": frozenset(),
    "model": frozenset(),
    "geometry": frozenset(),
    "estimator": frozenset({"model", "geometry"}),
    "tracking": frozenset({"geometry"}),
    "data": frozenset({"model", "geometry", "estimator"}),
    "train": frozenset({"data", "model", "geometry", "estimator"}),
    "ros": frozenset({"estimator", "tracking", "geometry", "msg"}),
    "bag": frozenset({"ros", "estimator", "tracking", "geometry"}),
    "nodes": frozenset({"ros", "bag", "estimator", "tracking", "geometry", "msg"}),
    "demo": frozenset({"bag", "ros", "data", "train", "estimator", "tracking", "model", "geometry"}),
    "cli": frozenset({"demo", "nodes", "bag", "ros", "data", "train", "estimator", "tracking", "model",
                      "geometry"}),
}

#: The only layers that may import rclpy (the others run without a ROS installation).
RCLPY_LAYERS: frozenset[str] = frozenset({"ros", "nodes"})


def layer_of(module: str) -> str:
    """The layer of a module of this package, e.g. ``hfl_ros.bag.label`` -> ``bag``; ``hfl_ros.msg`` (the
    generated messages) -> ``msg``."""
    parts = module.split(".")
    if parts[0] != "hfl_ros":
        raise ValueError(f"{module} is not a module of hfl_ros")
    if len(parts) == 1:
        return "base"
    top = parts[1]
    if top in BASE_MODULES:
        return "base"
    return MODULE_LAYERS.get(top, top)


def may_import(importer: str, imported: str) -> bool:
    """Whether module ``importer`` may import module ``imported`` (both of this package)."""
    src, dst = layer_of(importer), layer_of(imported)
    return dst in ("base", src) or dst in ALLOWED.get(src, frozenset())
