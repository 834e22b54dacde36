"""Torch device resolution: one place that turns "auto", "cpu", "cuda" or "cuda:N" into a usable device.

Every entry point (the node, the labeler, the evaluator, training) resolves its device here, so an absent or
unusable GPU gives the same clear error everywhere instead of a traceback from ``torch.cuda._lazy_init``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import InputError

if TYPE_CHECKING:
    import torch

_DEVICE = re.compile(r"^(auto|cpu|cuda)(?::(\d+))?$")


class DeviceError(InputError):
    """A device that is not a device name, or names a GPU this process cannot use."""

    reason = "bad_device"


@dataclass(frozen=True)
class ResolvedDevice:
    """The device to use and, for "auto" on a host without a usable GPU, why the CPU was chosen."""

    device: torch.device
    fallback_reason: str | None = None


def check_device_name(name: str) -> tuple[str, str | None]:
    """(kind, index) of a device name ("auto", "cpu", "cuda", "cuda:N"); :class:`DeviceError` otherwise.
    Needs no torch, so parameter validation can use it."""
    match = _DEVICE.match(str(name).strip())
    if match is None:
        raise DeviceError(f"{name!r} is not a device; use auto, cpu, cuda or cuda:N")
    kind, index = match.group(1), match.group(2)
    if kind == "cpu" and index is not None:
        raise DeviceError(f"{name!r}: the CPU takes no index; use cpu")
    if kind == "auto" and index is not None:
        raise DeviceError(f"{name!r}: auto takes no index; use auto or cuda:N")
    return kind, index


def cuda_unusable_reason() -> str | None:
    """None when CUDA can be used, else why not (CPU-only torch build, no driver, no GPU, driver error)."""
    import torch

    if torch.version.cuda is None:
        return f"this torch build ({torch.__version__}) has no CUDA support"
    try:
        count = torch.cuda.device_count()
        if count == 0 or not torch.cuda.is_available():
            return "no CUDA GPU is visible (no NVIDIA driver, or CUDA_VISIBLE_DEVICES hides them)"
        torch.cuda.init()
    except (RuntimeError, AssertionError) as exc:
        return f"CUDA cannot start: {str(exc).strip().splitlines()[0]}"
    return None


def resolve_device(name: str, *, local_rank: int | None = None) -> ResolvedDevice:
    """Resolve a device name; raises :class:`DeviceError` naming the cause when it cannot be used.

    "auto" is CUDA when usable, else the CPU (``fallback_reason`` says why). A bare "cuda" gets the current
    device's index (``local_rank`` under torchrun), so ``torch.cuda.set_device`` accepts it.
    """
    import torch

    kind, index = check_device_name(name)
    if kind == "cpu":
        return ResolvedDevice(torch.device("cpu"))
    reason = cuda_unusable_reason()
    if reason is not None:
        if kind == "auto":
            return ResolvedDevice(torch.device("cpu"), fallback_reason=reason)
        raise DeviceError(f"{name!r} asks for a GPU but {reason}")
    count = torch.cuda.device_count()
    if index is None:
        index = str(local_rank if local_rank is not None else torch.cuda.current_device())
    if int(index) >= count:
        raise DeviceError(f"{name!r}: there is no GPU {index} (GPUs here: cuda:0..cuda:{count - 1})")
    return ResolvedDevice(torch.device("cuda", int(index)))
