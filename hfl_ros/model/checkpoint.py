"""Checkpoint I/O: the official HFL-Net checkpoint and our own format, both loaded strictly.

- Official: ``{"epoch", "network": "honet_transformer", "state_dict"}`` with keys prefixed ``honet.module.``,
  or a bare state_dict. It always describes the harmonious ResNet-50 network.
- Ours: ``{"format": "hfl_ros", "format_version", "model": net.config, "config", "state_dict", **extra}``.

Every load is strict: a missing, unexpected or misshapen key raises CheckpointError naming it. Files are read
with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hfl_ros.errors import CheckpointError
from hfl_ros.model.backbone import TRUNKS
from hfl_ros.model.hflnet import HFLNet, hflnet_resnet50

OFFICIAL_PREFIX = "honet.module."
FORMAT_NAME = "hfl_ros"
FORMAT_VERSION = 1
_MANO_PREFIX = "mano_branch.mano_layer."
_RESERVED = ("format", "format_version", "model", "config", "state_dict")
_LIST_LIMIT = 12


def read_checkpoint_file(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``; CheckpointError naming the path if missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"cannot read checkpoint {path}: the file is empty")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated file, not a torch file, or forbidden pickled objects
        raise CheckpointError(f"cannot read checkpoint {path}: {_load_failure(exc)}") from exc


def _load_failure(exc: Exception) -> str:
    """One line saying why ``torch.load(weights_only=True)`` failed.

    torch's own message for a refused global spans many lines and suggests ``weights_only=False``, which
    would run the file's code: it is replaced by the name of the refused global.
    """
    text = str(exc)
    refused = re.search(r"GLOBAL ([\w.]+)", text)
    if "Weights only load failed" in text and refused:
        return (f"it asks to import {refused.group(1)}, which a checkpoint must not hold (refused: "
                "checkpoints are read with weights_only=True, so nothing in the file was run)")
    detail = f"{type(exc).__name__}: {' '.join(text.split())}".rstrip(": ")
    return f"not a PyTorch checkpoint, or a truncated one ({detail})"


def is_our_format(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("format") == FORMAT_NAME


def official_state_dict(obj: Any, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The state_dict of an official checkpoint (dict with "state_dict", or bare), prefix stripped."""
    state = obj.get("state_dict") if isinstance(obj, dict) and "state_dict" in obj else obj
    if not isinstance(state, dict) or not state or not all(isinstance(k, str) for k in state):
        raise CheckpointError(f"{source} holds no state_dict (expected a dict of tensors)")
    return {k.removeprefix(OFFICIAL_PREFIX): v for k, v in state.items()}


def infer_architecture(keys: Any) -> dict[str, str] | None:
    """Variant and trunk of an HFL-Net state_dict from its key names (None if it is not one)."""
    keys = list(keys)

    def has(prefix: str) -> bool:
        return any(k.startswith(prefix) for k in keys)

    if not has("base_net.layer1_h.") or not has("hand_head."):
        return None
    if has("base_net.layer4_o."):
        variant = "double"
    elif has("base_net.layer2_o."):
        variant = "harmonious"
    else:
        variant = "single"
    bottleneck = has("base_net.layer1_h.0.0.conv3.")
    stage3 = {k.split(".")[3] for k in keys if k.startswith("base_net.layer3_h.0.")}
    blocks = (
        len({k.split(".")[3] for k in keys if k.startswith(f"base_net.layer{i}_h.0.")}) for i in range(1, 5)
    )
    layout = (bottleneck, tuple(blocks))
    trunk = next((name for name, spec in TRUNKS.items() if (spec.bottleneck, spec.blocks) == layout), None)
    if trunk is None:
        kind = "bottleneck" if bottleneck else "basic-block"
        trunk = f"unknown {kind} trunk with {len(stage3)} stage-3 blocks"
    return {"variant": variant, "trunk": trunk}


def _names(items: list[str]) -> str:
    shown = ", ".join(items[:_LIST_LIMIT])
    return shown + (f", ... ({len(items) - _LIST_LIMIT} more)" if len(items) > _LIST_LIMIT else "")


def load_state_dict_strict(net: nn.Module, state: dict[str, Any], source: str = "checkpoint") -> None:
    """Load ``state`` into ``net`` strictly; floating tensors are cast to the network's dtype (fp16 -> fp32).

    Raises CheckpointError listing missing, unexpected and wrongly shaped keys by name, and saying so when the
    checkpoint is for another architecture.
    """
    expected = net.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong: list[str] = []
    converted: dict[str, torch.Tensor] = {}
    for key, target in expected.items():
        value = state.get(key)
        if value is None:
            continue
        if not isinstance(value, torch.Tensor):
            wrong.append(f"{key} (not a tensor: {type(value).__name__})")
        elif value.shape != target.shape:
            wrong.append(f"{key} (checkpoint {tuple(value.shape)}, network {tuple(target.shape)})")
        elif value.dtype.is_floating_point != target.dtype.is_floating_point:
            wrong.append(f"{key} (checkpoint dtype {value.dtype}, network {target.dtype})")
        else:
            converted[key] = value.to(target.dtype)
    if missing or unexpected or wrong:
        parts = []
        ours = getattr(net, "config", None)
        theirs = infer_architecture(state.keys())
        if ours is not None and theirs is not None:
            ours_arch = {"variant": ours["variant"], "trunk": ours["trunk"]}
            if theirs != ours_arch:
                parts.append(
                    f"it is for another architecture (variant={theirs['variant']}, trunk={theirs['trunk']}; "
                    f"this network is variant={ours_arch['variant']}, trunk={ours_arch['trunk']})"
                )
        if missing:
            parts.append(f"{len(missing)} missing keys: {_names(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys: {_names(unexpected)}")
        if wrong:
            parts.append(f"{len(wrong)} wrongly shaped keys: {_names(wrong)}")
        raise CheckpointError(f"{source} does not match the network: " + "; ".join(parts))
    net.load_state_dict(converted, strict=True)


def load_official_checkpoint(net: nn.Module, path: str | Path) -> dict[str, Any]:
    """Strictly load an official HFL-Net checkpoint (or a bare state_dict) into ``net``; returns its metadata.

    A file in our own format is accepted too (its state_dict is used).
    """
    obj = read_checkpoint_file(path)
    if is_our_format(obj):
        state = obj["state_dict"]
        meta = {k: v for k, v in obj.items() if k != "state_dict"}
    else:
        state = official_state_dict(obj, str(path))
        meta = {"format": "official"}
        if isinstance(obj, dict) and "state_dict" in obj:
            meta.update({k: v for k, v in obj.items() if k != "state_dict"})
    load_state_dict_strict(net, state, f"checkpoint {path}")
    return meta


def save_checkpoint(
    path: str | Path,
    net: HFLNet,
    config: dict[str, Any],
    *,
    weights_dtype: torch.dtype | None = None,
    **extra: Any,
) -> Path:
    """Save ``net`` in our format with its architecture, ``config`` and ``extra`` (epoch, optimizer, ...).

    ``weights_dtype`` (e.g. torch.float16) stores the floating parameters in that dtype to halve the file.
    Buffers (BatchNorm running statistics, the MANO model) always stay float32: a running variance above
    float16's 65504 would become inf and silently zero its channel. A parameter that is not finite in
    ``weights_dtype`` raises ValueError naming it. Values must be loadable with ``weights_only=True``
    (tensors, containers of str, numbers, bools and None). The file is written atomically.
    """
    clash = [k for k in extra if k in _RESERVED]
    if clash:
        raise ValueError(f"save_checkpoint: reserved keys {clash} cannot be passed as extra values")
    parameters = {name for name, _ in net.named_parameters()}
    state = {}
    for key, value in net.state_dict().items():
        value = value.detach().cpu()
        if (
            weights_dtype is not None
            and value.is_floating_point()
            and key in parameters
            and not key.startswith(_MANO_PREFIX)
        ):
            value = _cast_finite(key, value, weights_dtype)
        state[key] = value
    payload = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "model": dict(net.config),
        "config": dict(config),
        "state_dict": state,
        **extra,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _cast_finite(key: str, value: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``value`` in ``dtype``; ValueError naming ``key`` when a finite value does not stay finite."""
    cast = value.to(dtype)
    overflow = torch.isfinite(value) & ~torch.isfinite(cast)
    if overflow.any():
        largest = float(value[overflow].abs().max())
        raise ValueError(
            f"save_checkpoint: {key} holds {largest:.6g}, beyond the range of {dtype} "
            f"(largest finite {torch.finfo(dtype).max:.6g}); save it without weights_dtype"
        )
    return cast


def load_network(
    path: str | Path, *, mano_path: str | Path | None = None, map_location: str | torch.device = "cpu"
) -> tuple[HFLNet, dict[str, Any]]:
    """Build the network a checkpoint describes and load it strictly.

    Official checkpoints give the harmonious ResNet-50 network; ours carry their architecture. ``mano_path``
    only seeds the MANO buffers before loading (checkpoints carry them). Returns (net in eval mode, metadata).
    """
    obj = read_checkpoint_file(path)
    if is_our_format(obj):
        model_config = obj.get("model") or obj.get("config", {}).get("model")
        if not isinstance(model_config, dict):
            raise CheckpointError(f"checkpoint {path} has no model configuration")
        try:
            net = HFLNet.from_config(model_config, mano_path)
        except ValueError as exc:
            raise CheckpointError(f"checkpoint {path} describes an unsupported network: {exc}") from exc
        state = obj.get("state_dict")
        if not isinstance(state, dict):
            raise CheckpointError(f"checkpoint {path} holds no state_dict")
        meta = {k: v for k, v in obj.items() if k != "state_dict"}
    else:
        net = hflnet_resnet50(mano_path=mano_path)
        state = official_state_dict(obj, f"checkpoint {path}")
        meta = {"format": "official", "model": net.config}
        if isinstance(obj, dict) and "state_dict" in obj:
            meta.update({k: v for k, v in obj.items() if k != "state_dict"})
    load_state_dict_strict(net, state, f"checkpoint {path}")
    return net.to(map_location).eval(), meta
