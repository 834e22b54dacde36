"""A rosbags typestore that knows hfl_ros and vision_msgs, so bags read and write them without a ROS runtime.

The standard types (sensor_msgs, geometry_msgs, tf2_msgs, visualization_msgs, rosgraph_msgs, ...) come from
the rosbags Kilted store. ``hfl_ros/msg/*`` and ``vision_msgs/msg/*`` are registered from their ``.msg`` text,
found first on ``AMENT_PREFIX_PATH`` (``share/<pkg>/msg``, what the running ROS graph uses) and else in the
source tree (``msg/`` and ``interfaces/vision_msgs/msg/``). rosbags computes RIHS01 type hashes from the same
definitions as rosidl, so a bag written with this store carries the hashes that live ROS 2 peers advertise.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from ..ros.message_types import TypestoreMessageTypes
from .errors import BagError

#: The rosbags store matching the ROS 2 distribution of the runtime wheels.
BASE_STORE = Stores.ROS2_KILTED
#: Packages registered from .msg files on top of the base store.
EXTRA_PACKAGES = ("hfl_ros", "vision_msgs")

_SOURCE_ROOT = Path(__file__).resolve().parents[2]
_SOURCE_MSG_DIRS = {
    "hfl_ros": _SOURCE_ROOT / "msg",
    "vision_msgs": _SOURCE_ROOT / "interfaces" / "vision_msgs" / "msg",
}


def message_dir(package: str) -> Path:
    """The directory holding ``package``'s ``.msg`` files (install space first, then the source tree)."""
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        candidate = Path(prefix) / "share" / package / "msg" if prefix else None
        if candidate is not None and any(candidate.glob("*.msg")):
            return candidate
    source = _SOURCE_MSG_DIRS.get(package)
    if source is not None and any(source.glob("*.msg")):
        return source
    raise BagError(f"no .msg definitions found for package {package!r} (looked in AMENT_PREFIX_PATH share/ "
                   f"and {source})")


@functools.lru_cache(maxsize=1)
def typestore() -> Typestore:
    """The shared typestore: rosbags' Kilted types plus hfl_ros and vision_msgs (built once)."""
    return build_typestore()


def build_typestore() -> Typestore:
    """A new typestore: rosbags' Kilted types plus hfl_ros and vision_msgs from their .msg files."""
    store = get_typestore(BASE_STORE)
    types: dict[str, Any] = {}
    for package in EXTRA_PACKAGES:
        for path in sorted(message_dir(package).glob("*.msg")):
            types.update(get_types_from_msg(path.read_text(), f"{package}/msg/{path.stem}"))
    store.register(types)
    return store


def normalize_type_name(name: str) -> str:
    """``pkg/Type`` or ``pkg/msg/Type`` -> ``pkg/msg/Type``."""
    parts = name.strip("/").split("/")
    if len(parts) == 2:
        return f"{parts[0]}/msg/{parts[1]}"
    return "/".join(parts)


def message_types(store: Typestore | None = None) -> TypestoreMessageTypes:
    """The :mod:`hfl_ros.ros.message_types` adapter: type name -> the typestore's message class."""
    return TypestoreMessageTypes(store or typestore())


def serialize(msg: Any, store: Typestore | None = None) -> bytes:
    """CDR bytes of a typestore message instance."""
    store = store or typestore()
    return bytes(store.serialize_cdr(msg, msg.__msgtype__))


def deserialize(data: bytes | memoryview, type_name: str, store: Typestore | None = None) -> Any:
    """A typestore message instance from CDR bytes."""
    store = store or typestore()
    return store.deserialize_cdr(data, normalize_type_name(type_name))
