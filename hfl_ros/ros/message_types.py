"""Message classes by type name, for two back-ends, and building messages that both accept (no ROS runtime).

A :class:`MessageTypes` adapter gives the classes: :class:`RclpyMessageTypes` those of the rclpy generated
packages (live node), :class:`TypestoreMessageTypes` those of a ``rosbags`` typestore (offline labeler). Both
back-ends accept what :func:`new_message` builds because every message is constructed with a keyword argument
for every field, fixed-size primitive arrays are numpy arrays of the exact dtype, and unbounded primitive
sequences are numpy for ``rosbags`` and ``array.array`` for rclpy (:func:`byte_sequence`).
"""

from __future__ import annotations

import array
import dataclasses
import importlib
from typing import Any, Protocol

import numpy as np


class MessageTypes(Protocol):
    """Returns message classes by full name, e.g. ``"hfl_ros/msg/HandPose"``."""

    def get(self, name: str) -> type: ...


def _split_type_name(name: str) -> tuple[str, str]:
    parts = name.split("/")
    if len(parts) == 3 and parts[1] == "msg":
        return parts[0], parts[2]
    if len(parts) == 2:
        return parts[0], parts[1]
    raise ValueError(f"not a message type name: {name!r} (expected 'pkg/msg/Type')")


class RclpyMessageTypes:
    """Message classes of the rclpy generated packages (``pkg.msg.Type``), imported on first use."""

    def __init__(self) -> None:
        self._cache: dict[str, type] = {}

    def get(self, name: str) -> type:
        cls = self._cache.get(name)
        if cls is None:
            pkg, typ = _split_type_name(name)
            cls = getattr(importlib.import_module(f"{pkg}.msg"), typ)
            self._cache[name] = cls
        return cls


class TypestoreMessageTypes:
    """Message classes of a ``rosbags`` typestore (its ``types`` mapping, keyed ``pkg/msg/Type``)."""

    def __init__(self, typestore: Any) -> None:
        self._types = typestore.types

    def get(self, name: str) -> type:
        pkg, typ = _split_type_name(name)
        return self._types[f"{pkg}/msg/{typ}"]


_FIELDS: dict[type, tuple[str, ...]] = {}


def _is_rclpy(cls: type) -> bool:
    return hasattr(cls, "get_fields_and_field_types")


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELDS.get(cls)
    if names is None:
        if _is_rclpy(cls):
            names = tuple(cls.get_fields_and_field_types())
        else:  # rosbags dataclass: message fields have no default (constants and __msgtype__ do)
            names = tuple(f.name for f in dataclasses.fields(cls)
                          if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
        _FIELDS[cls] = names
    return names


def new_message(types: MessageTypes, name: str, /, **values: Any) -> Any:
    """Build message ``name`` from keyword values; every field of the class must be given.

    Values for fields the class does not have are ignored, so one call serves message versions that differ by
    optional additions (e.g. Marker's texture fields, absent before Iron).
    """
    cls = types.get(name)
    names = _field_names(cls)
    missing = [n for n in names if n not in values]
    if missing:
        raise TypeError(f"{name}: no value given for field(s) {missing}")
    return cls(**{n: values[n] for n in names})


def byte_sequence(cls: type, data: bytes = b"") -> Any:
    """An unbounded uint8[] value for a field of a message of class ``cls``."""
    if _is_rclpy(cls):
        return array.array("B", data)
    return np.frombuffer(data, dtype=np.uint8).copy()
