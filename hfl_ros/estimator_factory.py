"""The one way the node, the labeler and the evaluator build the Estimator: :func:`build_estimator`.

It resolves the device, reads every asset and runs one synthetic frame, so that a bad option fails at
start-up, and reports any failure as a :class:`~hfl_ros.param_spec.ParameterError` naming the option.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from .devices import DeviceError, resolve_device
from .errors import AssetError, CheckpointError, HandModelError, HflRosError, ObjectModelError
from .estimator import Estimator
from .estimator_config import EstimatorConfig, checkpoint_not_set
from .geometry.object_models import ObjectModelLibrary
from .param_spec import ParameterError
from .results import Detection, Side, Status

logger = logging.getLogger(__name__)


def build_estimator(config: EstimatorConfig, *, object_models: ObjectModelLibrary | None = None,
                    check_forward: bool = True, warn: Callable[[str], None] = logger.warning) -> Estimator:
    """The Estimator of ``config``, ready to run: how the node, the labeler and the evaluator build it.

    - the device is resolved (``auto`` falling back to the CPU is reported through ``warn``);
    - the checkpoint, hand models and every object model are read now, so a bad file is a start-up error;
    - ``check_forward``: one synthetic frame runs through the whole path, so that a device that cannot run
      the network fails here and the first real frame pays no one-off costs; on CUDA the batch shapes are
      then warmed up (:meth:`~hfl_ros.estimator.Estimator.warm_up`).

    ``object_models`` replaces ``config.object_models_dir`` (e.g. a library with dataset class aliases).
    Every failure is a ParameterError naming the option to change.
    """
    if not config.checkpoint_path:
        raise checkpoint_not_set()
    try:
        resolved = resolve_device(config.device)
    except DeviceError as exc:
        raise ParameterError("device", f"{_one_line(exc)}; set it to cpu, auto or a GPU of this host") \
            from None
    if resolved.fallback_reason:
        warn(f"parameter 'device': auto: running on the CPU because {resolved.fallback_reason}")
    device = str(resolved.device)
    if config.fp16 and resolved.device.type != "cuda":
        why = f" (device auto: {resolved.fallback_reason})" if resolved.fallback_reason else ""
        raise ParameterError("fp16", f"half precision needs a CUDA GPU but it would run on the CPU{why}; set "
                             "fp16 to false")
    asset_option = {CheckpointError: "checkpoint_path", HandModelError: "mano_dir",
                    ObjectModelError: "object_models_dir"}
    try:
        estimator = Estimator(config.with_changes(device=device), object_models=object_models)
        if estimator.object_models is not None:
            for class_id in estimator.object_models.class_ids:
                estimator.object_models.get(class_id)
    except ParameterError:
        raise
    except AssetError as exc:
        name = next((p for cls, p in asset_option.items() if isinstance(exc, cls)), "checkpoint_path")
        raise ParameterError(name, f"cannot load it: {_one_line(exc)}") from None
    except HflRosError as exc:  # e.g. a network the Estimator refuses
        raise ParameterError("checkpoint_path", f"cannot use it: {_one_line(exc)}") from None
    except RuntimeError as exc:  # e.g. CUDA out of memory while moving the network to the GPU
        if device == "cpu":
            raise
        raise ParameterError("device", f"cannot use {device}: {_one_line(exc)}") from None
    if check_forward:
        _check_forward(estimator, device)
    return estimator


def _check_forward(estimator: Estimator, device: str) -> None:
    size = max(2 * int(estimator.input_size), 64)
    image = np.full((size, size, 3), 128, np.uint8)
    K = np.array([[size, 0.0, size / 2], [0.0, size, size / 2], [0.0, 0.0, 1.0]])
    hand = Detection.hand(np.array([0.25, 0.25, 0.75, 0.75]) * size, Side.RIGHT)
    estimator_logger = logging.getLogger("hfl_ros.estimator")
    silence = _Silence()
    estimator_logger.addFilter(silence)
    try:
        (result,) = estimator.estimate(image, K, [hand])
    finally:
        estimator_logger.removeFilter(silence)
    if result.status == Status.INTERNAL_ERROR:
        name = "device" if device != "cpu" else "checkpoint_path"
        raise ParameterError(name, f"the network fails on {device}: {_one_line(result.status_message)}")
    if device.startswith("cuda"):
        estimator.warm_up()


class _Silence(logging.Filter):
    """Keeps the Estimator's traceback of a failed check forward off stderr (the failure is reported)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return False


def _one_line(exc: BaseException | str) -> str:
    return " ".join(str(exc).split())
