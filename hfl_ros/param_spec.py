"""Declared options: name, default, description, constraints, and the one validation of a value.

The perception node's parameters, the labeler's flags and its ``--params-file``, and the evaluator's flags are
all checked here, so a value is accepted or refused with the same message everywhere. Plain Python: no rclpy,
no torch.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from .errors import HflRosError

_SPEC = "hfl_ros.param_spec"  # key of the option's description and constraints in a field's metadata


class ParameterError(HflRosError, ValueError):
    """A parameter value is invalid. ``name`` is the parameter; the message says what to do."""

    reason = "bad_parameter"

    def __init__(self, name: str, message: str):
        super().__init__(f"parameter '{name}': {message}")
        self.name = name


@dataclass(frozen=True)
class ParamSpec:
    """One option. ``runtime``: may be changed while the node runs (``ros2 param set``)."""

    name: str
    default: Any
    description: str
    runtime: bool = False
    choices: tuple[str, ...] | None = None
    min_value: float | None = None
    max_value: float | None = None

    @property
    def constraints(self) -> str:
        """Human-readable constraints, for the descriptor and the docs."""
        parts = []
        if self.choices:
            parts.append("one of " + ", ".join(self.choices))
        if self.min_value is not None and self.max_value is not None:
            parts.append(f"in [{self.min_value:g}, {self.max_value:g}]")
        elif self.min_value is not None:
            parts.append(f">= {self.min_value:g}")
        return "; ".join(parts)

    @property
    def flag(self) -> str:
        """The command-line flag of this option (``--hand-score-threshold``)."""
        return "--" + self.name.replace("_", "-")

    def validate(self, value: Any) -> Any:
        """The value normalised (float, tuple of strings, stripped string), or ParameterError."""
        value = self._coerce(value)
        if self.choices is not None and value not in self.choices:
            raise ParameterError(self.name, f"{value!r} is not allowed; set it to {self.constraints}")
        if self.min_value is not None and value < self.min_value:
            raise ParameterError(self.name, f"{value} is too small; set it to {self.constraints}")
        if self.max_value is not None and value > self.max_value:
            raise ParameterError(self.name, f"{value} is too large; set it to {self.constraints}")
        return value

    def _coerce(self, value: Any) -> Any:
        default = self.default
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ParameterError(self.name, f"expected true or false, got {value!r}")
            return value
        if isinstance(default, int):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ParameterError(self.name, f"expected an integer, got {value!r}")
            return value
        if isinstance(default, float):
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ParameterError(self.name, f"expected a finite number, got {value!r}")
            return float(value)
        if isinstance(default, list | tuple):
            if isinstance(value, str) or not isinstance(value, list | tuple) \
                    or not all(isinstance(v, str) for v in value):
                raise ParameterError(self.name, f"expected a list of strings, got {value!r}")
            return tuple(str(v) for v in value)
        if not isinstance(value, str):
            raise ParameterError(self.name, f"expected a string, got {value!r}")
        return value.strip()


def option(default: Any, description: str, **constraints: Any) -> Any:
    """A dataclass field that is also a declared option: the field's default, the option's description and
    constraints (``runtime``, ``choices``, ``min_value``, ``max_value``); the name is the field's."""
    return field(default=default, metadata={_SPEC: (description, constraints)})


def declared_options(config_class: type) -> tuple[ParamSpec, ...]:
    """The ParamSpec of every field of a dataclass declared with :func:`option`, in field order."""
    specs = []
    for f in fields(config_class):
        if _SPEC in f.metadata:
            description, constraints = f.metadata[_SPEC]
            specs.append(ParamSpec(f.name, f.default, description, **constraints))
    return tuple(specs)


def validate_values(specs: Iterable[ParamSpec], values: Mapping[str, Any]) -> dict[str, Any]:
    """Each spec's value in ``values`` (its default when absent), validated; other keys are ignored."""
    return {spec.name: spec.validate(values.get(spec.name, spec.default)) for spec in specs}


def add_flags(parser: Any, specs: Iterable[ParamSpec],
              aliases: Mapping[str, str] | None = None, defaults: Mapping[str, Any] | None = None) -> None:
    """One command-line flag per spec (``--hand-score-threshold``) on a parser or argument group.

    A flag left out keeps the value None (so a params file or the spec default applies), unless ``defaults``
    names a value for it; ``aliases`` adds another flag name (``{"checkpoint_path": "--checkpoint"}``).
    Values are checked by :func:`values_from_flags`.
    """
    aliases = aliases or {}
    defaults = defaults or {}
    for spec in specs:
        names = ([aliases[spec.name]] if spec.name in aliases else []) + [spec.flag]
        default = defaults.get(spec.name)
        shown = spec.default if default is None else default
        constraints = spec.constraints[:1].upper() + spec.constraints[1:] + ". " if spec.constraints else ""
        help_text = f"{spec.description} {constraints}(default {_shown(shown)})"
        kwargs: dict[str, Any] = {"dest": spec.name, "default": default, "help": help_text.replace("%", "%%")}
        if isinstance(spec.default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif isinstance(spec.default, list | tuple):
            kwargs.update(nargs="+", metavar="ID")
        else:
            kwargs["type"] = type(spec.default)
            if spec.choices:
                kwargs["choices"] = spec.choices
        parser.add_argument(*names, **kwargs)


def values_from_flags(args: argparse.Namespace, specs: Iterable[ParamSpec]) -> dict[str, Any]:
    """The validated values of the flags that were given (or have a default), by option name."""
    return {spec.name: spec.validate(getattr(args, spec.name)) for spec in specs
            if getattr(args, spec.name, None) is not None}


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple):
        return " ".join(value) or "none"
    return repr(value) if value == "" else str(value)
