"""The perception node's classes: image + camera_info + 2D detections in; hand-object poses, TF, markers out.

:class:`PerceptionNode` is the plain node; :class:`ManagedPerceptionNode` the same as a ROS 2 lifecycle
(managed) node. The process around them (signals, executor, start-up failures) is
:mod:`hfl_ros.nodes.perception_node`. See docs/node.md for topics, parameters and behaviour.
"""

from __future__ import annotations

import functools
import gc
import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header
from std_srvs.srv import Trigger
from tf2_msgs.msg import TFMessage
from vision_msgs.msg import Detection2DArray, Detection3DArray
from visualization_msgs.msg import MarkerArray

from hfl_ros.errors import AssetError, CheckpointError, HandModelError, HflRosError, ObjectModelError
from hfl_ros.msg import HandObjectPoseArray
from hfl_ros.results import Detection, Side, Status
from hfl_ros.ros.builders import (
    RclpyMessageTypes,
    results_to_detection3d,
    results_to_markers,
    results_to_msg,
    results_to_tf,
)
from hfl_ros.ros.convert import LabelMap, rgb_to_image_data, stamp_to_ns
from hfl_ros.ros.debug_image import draw_debug_image
from hfl_ros.ros.diagnostics import PerceptionStats, diagnostics_msg
from hfl_ros.ros.frame_processor import process_frame
from hfl_ros.ros.frame_queue import FrameQueue
from hfl_ros.ros.params import (
    SPECS,
    ParameterError,
    PerceptionConfig,
    declare_parameters,
    read_config,
    tracker_config,
    validate_value,
)
from hfl_ros.ros.qos import TF_QOS, make_qos
from hfl_ros.ros.sync import CameraInfoJoiner, JoinedFrame, StampSynchronizer
from hfl_ros.tracking import Tracker

NODE_NAME = "hfl_perception"
IMAGE, DETECTIONS = 0, 1
_ASSET_PARAMETER = {CheckpointError: "checkpoint_path", HandModelError: "mano_dir",
                    ObjectModelError: "object_models_dir"}
_STEADY = Clock(clock_type=ClockType.STEADY_TIME)
#: Parameters that reconfigure the tracker.
_TRACKING_PARAMETERS = frozenset(
    {"temporal_filter", "filter_position_gain", "filter_velocity_gain", "filter_min_cutoff", "filter_beta",
     "filter_rotation_beta", "filter_d_cutoff", "gate_translation", "gate_rotation", "track_max_gap",
     "track_min_iou"})
#: Longest wait for the frame being processed when the node stops or is deactivated.
FRAME_FINISH_TIMEOUT_S = 1.0


@dataclass
class _Frame:
    """A synced frame on its way to the worker."""

    joined: JoinedFrame
    received: float  # time.monotonic() when its image arrived


class ThrottledLogger:
    """Logs at most one line per reason every ``period_s``, telling how many were suppressed meanwhile."""

    def __init__(self, logger: Any, period_s: float = 5.0) -> None:
        self._logger = logger
        self._period = period_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def log(self, level: str, reason: str, message: str) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(reason)
            if last is not None and now - last < self._period:
                self._suppressed[reason] = self._suppressed.get(reason, 0) + 1
                return
            suppressed = self._suppressed.pop(reason, 0)
            self._last[reason] = now
        if suppressed:
            message += f" ({suppressed} similar message(s) suppressed)"
        text = f"[{reason}] {message}"
        # rclpy ties each logging call site to the first severity logged there and raises ValueError on
        # another one, so each level needs a call site of its own.
        if level == "error":
            self._logger.error(text)
        elif level == "warning":
            self._logger.warning(text)
        elif level == "info":
            self._logger.info(text)
        else:
            self._logger.debug(text)


def _never_raises(method: Callable[..., None]) -> Callable[..., None]:
    """Wrap a callback: an unexpected exception is logged (throttled) instead of stopping the executor."""

    @functools.wraps(method)
    def wrapper(self: _Perception, *args: Any) -> None:
        try:
            method(self, *args)
        except Exception as exc:
            self.stats.failure("internal_error")
            self.log.log("error", f"internal_error_{method.__name__}",
                         f"{method.__name__} failed: {type(exc).__name__}: {exc}\n{traceback.format_exc()}")

    return wrapper


def one_line(text: object) -> str:
    """``text`` on one line (a FATAL or a failed transition is reported as one line)."""
    return " ".join(str(text).split())


class _WarmUpLogFilter(logging.Filter):
    """Keeps the Estimator's tracebacks of a failed warm-up forward off stderr (the failure is reported)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return False


class _Perception:
    """What the plain and the managed node share, mixed into an rclpy node class.

    Its life: ``_init_perception`` declares the parameters; :meth:`load` validates them, resolves the device,
    builds the Estimator and warms it up; :meth:`open` creates the publishers, subscriptions, timers and the
    inference worker; :meth:`close` stops them (the frame being processed finishes, queued ones are
    dropped); :meth:`unload` frees the Estimator. A failed :meth:`load` raises ParameterError naming the
    parameter at fault.
    """

    def _init_perception(self, *, read_only: bool) -> None:
        self._read_only = read_only
        declare_parameters(self, read_only=read_only, validate=False)  # raises ParameterError
        self._warn_unknown_parameters()
        self.config: PerceptionConfig | None = None
        self.estimator: Any = None
        self._loaded_once = False
        self.types = RclpyMessageTypes()
        self.log = ThrottledLogger(self.get_logger())
        self.stats = PerceptionStats()
        self.label_map = LabelMap()
        self.queue: FrameQueue | None = None
        self._marker_cache: dict[Any, Any] = {}
        self._entities: list[tuple[str, Any]] = []  # (kind, entity) created by open()
        self._worker: threading.Thread | None = None
        self.tracker: Tracker | None = None
        self._track_lock = threading.Lock()  # the worker tracks, ~/reset and parameter changes reconfigure
        self.add_on_set_parameters_callback(self._on_set_parameters)

    @property
    def is_open(self) -> bool:
        """Whether the node subscribes and processes frames."""
        return self.queue is not None and not self.queue.closed

    # --- start-up -------------------------------------------------------------------------------------

    def _warn_unknown_parameters(self) -> None:
        overrides = getattr(self, "_parameter_overrides", {}) or {}
        unknown = sorted(k for k in overrides if k not in SPECS and k != "use_sim_time")
        if unknown:
            self.get_logger().warning(f"ignoring unknown parameter(s) {unknown} (misspelt?)")

    def load(self) -> None:
        """Validate the parameters, then build and warm up the Estimator; ParameterError when that fails."""
        cfg = read_config(self)
        device = self._resolve_device(cfg)
        if cfg.num_threads > 0:
            import torch

            torch.set_num_threads(cfg.num_threads)
        if not cfg.object_models_dir:
            self.get_logger().warning("object_models_dir is empty: no object pose will be estimated")
        from hfl_ros.estimator import Estimator

        try:
            estimator = Estimator(cfg.checkpoint_path, mano_dir=cfg.mano_dir or None,
                                  object_models=cfg.object_models_dir or None, device=device, fp16=cfg.fp16,
                                  hand_score_threshold=cfg.hand_score_threshold,
                                  object_score_threshold=cfg.object_score_threshold, with_vertices=True)
            if estimator.object_models is not None:  # read every model now: a bad file is a start-up error
                for class_id in estimator.object_models.class_ids:
                    estimator.object_models.get(class_id)
        except AssetError as exc:
            name = next((p for cls, p in _ASSET_PARAMETER.items() if isinstance(exc, cls)), "checkpoint_path")
            raise ParameterError(name, f"cannot load it: {one_line(exc)}") from None
        except HflRosError as exc:  # e.g. a network the Estimator refuses
            raise ParameterError("checkpoint_path", f"cannot use it: {one_line(exc)}") from None
        except RuntimeError as exc:  # e.g. CUDA out of memory while moving the network to the GPU
            if device == "cpu":
                raise
            raise ParameterError("device", f"cannot use {device}: {one_line(exc)}") from None
        self._warm_up(estimator, device)
        self.config, self.estimator, self._loaded_once = cfg, estimator, True
        with self._track_lock:
            self.tracker = Tracker(tracker_config(cfg))
        self.label_map = LabelMap(cfg.right_hand_labels, cfg.left_hand_labels, cfg.default_hand_side,
                                  cfg.hand_labels)

    def _resolve_device(self, cfg: PerceptionConfig) -> str:
        from hfl_ros.devices import DeviceError, resolve_device

        try:
            resolved = resolve_device(cfg.device)
        except DeviceError as exc:
            raise ParameterError("device", f"{one_line(exc)}; set it to cpu, auto or a GPU of this "
                                 "host") from None
        if resolved.fallback_reason:
            self.get_logger().warning(f"parameter 'device': auto: running on the CPU because "
                                      f"{resolved.fallback_reason}")
        if cfg.fp16 and resolved.device.type != "cuda":
            why = f" (device auto: {resolved.fallback_reason})" if resolved.fallback_reason else ""
            raise ParameterError("fp16", f"half precision needs a CUDA GPU but the node would run on the "
                                 f"CPU{why}; set fp16 to false")
        return str(resolved.device)

    def _warm_up(self, estimator: Any, device: str) -> None:
        """One frame through the whole path, so that a GPU that cannot run the network is a start-up error and
        the first real frame does not pay one-off costs; on CUDA then ``Estimator.warm_up`` (cuDNN's
        algorithm search for the batch sizes of one and two hands)."""
        size = max(2 * int(estimator.input_size), 64)
        image = np.full((size, size, 3), 128, np.uint8)
        K = np.array([[size, 0.0, size / 2], [0.0, size, size / 2], [0.0, 0.0, 1.0]])
        hand = Detection.hand(np.array([0.25, 0.25, 0.75, 0.75]) * size, Side.RIGHT)
        log_filter = _WarmUpLogFilter()
        estimator_logger = logging.getLogger("hfl_ros.estimator")
        estimator_logger.addFilter(log_filter)
        try:
            (result,) = estimator.estimate(image, K, [hand])
        finally:
            estimator_logger.removeFilter(log_filter)
        if result.status == Status.INTERNAL_ERROR:
            name = "device" if device != "cpu" else "checkpoint_path"
            raise ParameterError(name, f"the network fails on {device}: {one_line(result.status_message)}")
        if device.startswith("cuda"):
            estimator.warm_up()

    def unload(self) -> None:
        """Free the Estimator (and the GPU memory it held)."""
        device = str(getattr(self.estimator, "device", "cpu"))
        self.estimator = None
        self._marker_cache.clear()
        gc.collect()
        if device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    def stopped_text(self, dropped: int) -> str:
        """What the node had done when it stopped (for the log line saying so)."""
        if not self._loaded_once:
            return "before the model was loaded"
        text = f"{self.stats.frames_processed} frame(s) processed"
        return text + (f", {dropped} queued frame(s) dropped" if dropped else "")

    def ready_text(self) -> str:
        cfg = self.config
        return (f"device {self.estimator.device}, queue_policy {cfg.queue_policy}, "
                f"sync_slop {cfg.sync_slop} s, input '{self.resolve_topic_name('image')}'"
                + (" (compressed)" if cfg.image_transport == "compressed" else ""))

    # --- inputs and outputs ---------------------------------------------------------------------------

    def open(self) -> None:
        """Create the publishers, subscriptions and timers, and start the inference worker."""
        cfg = self.config
        # message_filters is not available as a PyPI wheel: hfl_ros.ros.sync is our own synchroniser.
        self._sync_lock = threading.Lock()
        self.sync = StampSynchronizer(2, cfg.sync_slop, cfg.sync_queue_size, max_age_s=cfg.sync_max_age,
                                      reset_on_jump_back_s=max(1.0, cfg.sync_max_age))
        self.joiner = CameraInfoJoiner(cfg.sync_slop, cfg.camera_info_wait,
                                       max_fallback_age_s=cfg.camera_info_max_age or None)
        self._received: dict[int, float] = {}  # image stamp -> monotonic receive time
        self._unmatched_reported = 0
        self._resets_reported = 0
        queue = FrameQueue(cfg.queue_policy, cfg.queue_size)
        self.queue = queue

        def publisher(msg_type: Any, topic: str, qos: Any) -> Any:
            pub = self.create_publisher(msg_type, topic, qos)
            self._entities.append(("publisher", pub))
            return pub

        out_qos = make_qos(cfg.qos_output_reliability, cfg.qos_output_depth)
        self.pub_poses = publisher(HandObjectPoseArray, "~/hand_object_poses", out_qos)
        self.pub_objects = publisher(Detection3DArray, "~/objects", out_qos)
        self.pub_markers = publisher(MarkerArray, "~/markers", out_qos)
        self.pub_debug = publisher(Image, "~/debug_image", out_qos)
        # tf2_ros is not available as a wheel: TF is published as tf2_msgs/TFMessage on /tf directly.
        self.pub_tf = publisher(TFMessage, "/tf", TF_QOS)
        self.pub_diag = publisher(DiagnosticArray, "/diagnostics", 10)

        # Inputs share one mutually exclusive group (the synchroniser sees messages one at a time). With
        # queue_policy "all" they (and the camera_info timeout timer) may block on a full queue, so the
        # executor is multi-threaded and the diagnostics timer has a group of its own: it keeps reporting.
        inputs = MutuallyExclusiveCallbackGroup()
        timers = MutuallyExclusiveCallbackGroup()
        diagnostics = MutuallyExclusiveCallbackGroup()
        in_qos = make_qos(cfg.qos_input_reliability, cfg.qos_input_depth)

        def subscription(msg_type: Any, topic: str, callback: Callable[[Any], None]) -> None:
            sub = self.create_subscription(msg_type, topic, callback, in_qos, callback_group=inputs)
            self._entities.append(("subscription", sub))

        if cfg.image_transport == "compressed":
            subscription(CompressedImage, "image/compressed", self._on_image)
        else:
            subscription(Image, "image", self._on_image)
        subscription(CameraInfo, "camera_info", self._on_camera_info)
        subscription(Detection2DArray, "detections", self._on_detections)
        service = self.create_service(Trigger, "~/reset", self._on_reset)
        self._entities.append(("service", service))
        poll_period = min(0.05, max(0.01, cfg.camera_info_wait / 2))
        for period, callback, group in ((poll_period, self._poll_camera_info, timers),
                                        (cfg.diagnostics_period, self._publish_diagnostics, diagnostics)):
            timer = self.create_timer(period, callback, callback_group=group, clock=_STEADY)
            self._entities.append(("timer", timer))

        self._worker = threading.Thread(target=self._work, args=(queue,), name="hfl_inference", daemon=True)
        self._worker.start()

    def close(self, timeout_s: float = FRAME_FINISH_TIMEOUT_S) -> int:
        """Stop processing: drop the queued frames (returns how many), let the frame being processed finish
        (at most ``timeout_s``), destroy the subscriptions, timers and publishers."""
        if self.queue is None:
            return 0
        dropped = self.queue.close(discard=True)  # also releases input callbacks blocked on a full queue
        entities, self._entities = self._entities, []
        for kind, entity in entities:  # subscriptions and timers first: nothing new comes in
            if kind == "subscription":
                self.destroy_subscription(entity)
            elif kind == "timer":
                self.destroy_timer(entity)
            elif kind == "service":
                self.destroy_service(entity)
        if self._worker is not None:
            self._worker.join(timeout=timeout_s)
            if self._worker.is_alive():
                self.get_logger().warning(f"the frame being processed did not finish within {timeout_s:g} s; "
                                          "its results are not published")
            self._worker = None
        for kind, entity in entities:
            if kind == "publisher":
                self.destroy_publisher(entity)
        return dropped

    # --- runtime parameters ---------------------------------------------------------------------------

    def _parameters_writable(self) -> bool:
        """Whether the start-up (non-runtime) parameters may change now."""
        return False

    def set_parameters_atomically(self, parameter_list: list[Any]) -> SetParametersResult:
        """rclpy's (the parameter services call it), a refusal counted in diagnostics and logged (throttled):
        rclpy refuses a read-only or out-of-range value before :meth:`_on_set_parameters` sees it."""
        result = super().set_parameters_atomically(parameter_list)
        if not result.successful and hasattr(self, "stats"):
            self.stats.failure("rejected_parameter")
            self.log.log("warning", "rejected_parameter", f"parameter change refused: {result.reason}")
        return result

    def _on_set_parameters(self, params: list[Any]) -> SetParametersResult:
        changes = {}
        for param in params:
            spec = SPECS.get(param.name)
            if spec is None:
                continue
            if not spec.runtime and not self._parameters_writable():
                reason = f"parameter '{param.name}' is read-only"
                if not self._read_only:
                    reason += (" while the node is configured; it can change in the unconfigured state "
                               f"(ros2 lifecycle set {self.get_fully_qualified_name()} cleanup)")
                return SetParametersResult(successful=False, reason=reason)
            try:
                changes[param.name] = validate_value(param.name, param.value)
            except ParameterError as exc:
                return SetParametersResult(successful=False, reason=str(exc))
        runtime = {k: v for k, v in changes.items() if SPECS[k].runtime}
        if runtime and self.config is not None:
            self.config = replace(self.config, **runtime)
            if self.estimator is not None:
                if "hand_score_threshold" in runtime:
                    self.estimator.hand_score_threshold = runtime["hand_score_threshold"]
                if "object_score_threshold" in runtime:
                    self.estimator.object_score_threshold = runtime["object_score_threshold"]
            if _TRACKING_PARAMETERS & runtime.keys():
                try:
                    new = tracker_config(self.config)
                except ValueError as exc:
                    return SetParametersResult(successful=False, reason=str(exc))
                with self._track_lock:
                    if self.tracker is not None:
                        self.tracker.config.max_gap_s = new.max_gap_s
                        self.tracker.config.min_iou = new.min_iou
                        self.tracker.set_filter_config(new.filter)
        if changes:
            self.get_logger().info(f"parameters changed: {changes}")
        return SetParametersResult(successful=True)

    # --- input callbacks ------------------------------------------------------------------------------

    @_never_raises
    def _on_image(self, msg: Any) -> None:
        self.stats.count_input("image")
        stamp = stamp_to_ns(msg.header.stamp)
        with self._sync_lock:
            self._received[stamp] = time.monotonic()
            ready = self._sync_and_join(IMAGE, stamp, msg)
        self._enqueue(ready)

    @_never_raises
    def _on_detections(self, msg: Any) -> None:
        self.stats.count_input("detections")
        with self._sync_lock:
            ready = self._sync_and_join(DETECTIONS, stamp_to_ns(msg.header.stamp), msg)
        self._enqueue(ready)

    @_never_raises
    def _on_camera_info(self, msg: Any) -> None:
        self.stats.count_input("camera_info")
        with self._sync_lock:
            ready = self.joiner.add_info(stamp_to_ns(msg.header.stamp), msg)
        self._enqueue(ready)

    @_never_raises
    def _poll_camera_info(self) -> None:
        with self._sync_lock:
            ready = self.joiner.poll(time.monotonic_ns())
        self._enqueue(ready)

    def _sync_and_join(self, index: int, stamp: int, msg: Any) -> list[JoinedFrame]:
        """Called with the sync lock held."""
        ready = []
        for set_stamp, msgs in self.sync.add(index, stamp, msg):
            ready += self.joiner.add_frame(set_stamp, msgs, time.monotonic_ns())
        if self.sync.resets > self._resets_reported:  # the synchroniser started over
            self.log.log("warning", "time_jump_back", f"input stamps jumped back (to {stamp} ns, more than "
                         f"{self.sync.jump_back_ns * 1e-9:g} s before the newest): frames waiting to be "
                         "matched were discarded (a bag replayed in a loop, or a bad clock?)")
            self.stats.failure("time_jump_back", self.sync.resets - self._resets_reported)
            self._resets_reported = self.sync.resets
        unmatched = self.sync.unmatched_per_input[DETECTIONS] + self.sync.dropped_per_input[DETECTIONS]
        if unmatched > self._unmatched_reported:
            self.log.log("warning", "unmatched_detections",
                         f"{unmatched - self._unmatched_reported} detections message(s) without an image "
                         f"of the same stamp (sync_slop {self.config.sync_slop} s); {unmatched} in total")
            self.stats.failure("unmatched_detections", unmatched - self._unmatched_reported)
            self._unmatched_reported = unmatched
        if len(self._received) > 4 * self.sync.queue_size:
            for old in sorted(self._received)[: len(self._received) - 2 * self.sync.queue_size]:
                del self._received[old]
        return ready

    def _enqueue(self, frames: list[JoinedFrame]) -> None:
        queue = self.queue
        for joined in frames:
            received = self._received.pop(joined.stamp_ns, None) or time.monotonic()
            if not joined.info_exact and joined.info is not None:
                self.log.log("info", "camera_info_fallback",
                             "no camera_info with the image's stamp: using the latest one received")
            if queue is None or not queue.put(_Frame(joined, received), on_full=self._warn_queue_full):
                return  # closed: the node is stopping or being deactivated

    def _on_reset(self, request: Any, response: Any) -> Any:
        """~/reset (std_srvs/Trigger): clear every track; ids restart at 1."""
        with self._track_lock:
            dropped = self.tracker.reset() if self.tracker is not None else 0
        response.success = True
        response.message = f"cleared {dropped} track(s)"
        self.get_logger().info(f"~/reset: {response.message}")
        return response

    def _warn_queue_full(self) -> None:
        self.log.log("warning", "queue_full", f"inference queue full ({self.queue.maxsize} frames, "
                     "queue_policy all): blocking the input callbacks until the worker catches up")

    # --- worker ---------------------------------------------------------------------------------------

    def _work(self, queue: FrameQueue) -> None:
        while True:
            frame = queue.get(timeout=None)
            if frame is None:
                return
            try:
                self._process(frame)
            except Exception as exc:  # publishing failed (e.g. during a stop): never kill the worker
                if queue.closed or not rclpy.ok():
                    return
                self.log.log("error", "publish_error", f"{type(exc).__name__}: {exc}")

    def _process(self, frame: _Frame) -> None:
        cfg = self.config
        image_msg, detections_msg = frame.joined.payload
        header = image_msg.header
        outcome = process_frame(self.estimator, image_msg, detections_msg, frame.joined.info, self.label_map,
                                compressed=cfg.image_transport == "compressed")
        results = outcome.results
        try:
            with self._track_lock:
                results = self.tracker.update(results, stamp_to_ns(header.stamp) * 1e-9)
        except Exception as exc:  # a tracking bug must not cost the frame its outputs: publish it unfiltered
            self.stats.failure("tracking_error")
            self.log.log("error", "tracking_error", f"tracking failed, frame published unfiltered: "
                         f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
        poses = results_to_msg(results, header, self.types, with_vertices=cfg.publish_vertices)
        self.pub_poses.publish(poses)
        latency = time.monotonic() - frame.received
        self.stats.frame_done(latency, outcome.inference_s)
        for reason in outcome.failure_reasons:
            self.stats.failure(reason)
        for result in results:
            self.stats.status(result.status.name.lower())
        self._log_failures(outcome, header)

        self.pub_objects.publish(results_to_detection3d(results, header, self.types,
                                                        self.estimator.object_models, cfg.tf_prefix))
        if cfg.publish_tf:
            tf = results_to_tf(results, header, self.types, cfg.tf_prefix, joints=cfg.publish_joint_tf)
            if tf.transforms:
                self.pub_tf.publish(tf)
        markers = results_to_markers(results, header, self.types, self.estimator.hand_faces,
                                     cfg.marker_lifetime, publish_mesh=cfg.publish_mesh,
                                     object_models=self.estimator.object_models, cache=self._marker_cache)
        self.pub_markers.publish(markers)
        if cfg.publish_debug_image and outcome.rgb is not None:
            overlay = draw_debug_image(outcome.rgb, outcome.detections, results)
            height, width = overlay.shape[:2]
            self.pub_debug.publish(Image(header=header, height=height, width=width, encoding="rgb8",
                                         is_bigendian=0, step=width * 3, data=rgb_to_image_data(overlay)))

    def _log_failures(self, outcome: Any, header: Any) -> None:
        stamp = f"{header.stamp.sec}.{header.stamp.nanosec:09d}"
        if outcome.frame_error is not None:
            reason = getattr(outcome.frame_error, "reason", "internal_error")
            level = "error" if reason == "internal_error" else "warning"
            detail = f"\n{outcome.traceback}" if outcome.traceback else ""
            status = outcome.results[0].status.name if outcome.results else "-"
            self.log.log(level, reason, f"frame {stamp} ({header.frame_id}): {outcome.frame_error}; "
                         f"published {len(outcome.results)} hand(s) with status {status}{detail}")
            return
        for result in outcome.results:
            if result.error is not None or result.status.name in ("BAD_INPUT", "INTERNAL_ERROR"):
                reason = result.error.reason if result.error is not None else result.status.name.lower()
                self.log.log("warning", reason, f"frame {stamp}: {Side(result.hand.side).value} hand: "
                             f"{result.status.name}: {result.status_message}")

    # --- diagnostics ----------------------------------------------------------------------------------

    @_never_raises
    def _publish_diagnostics(self) -> None:
        queue = self.queue
        with self._sync_lock:
            sync_extra = {
                "unmatched_images": self.sync.unmatched_per_input[IMAGE] + self.sync.dropped_per_input[IMAGE],
                "unmatched_detections": (self.sync.unmatched_per_input[DETECTIONS]
                                         + self.sync.dropped_per_input[DETECTIONS]),
                "waiting_for_camera_info": self.joiner.waiting,
            }
        with self._track_lock:
            tracker = self.tracker
            tracking = {"temporal_filter": tracker.config.filter.mode, "tracks_active": len(tracker.tracks),
                        "tracks_started": tracker.tracks_started, "gate_rejections": tracker.gate_rejections}
        extra = {"device": self.estimator.device, "queue_policy": self.config.queue_policy,
                 "queue_length": len(queue), "queue_blocked": queue.blocked, **sync_extra, **tracking}
        snap = self.stats.snapshot(queue.dropped, extra)
        now = self.get_clock().now().to_msg()
        header = Header(stamp=Time(sec=now.sec, nanosec=now.nanosec), frame_id="")
        self.pub_diag.publish(diagnostics_msg(snap, self.types, header, f"{self.get_name()}: hand-object "
                                              "perception", f"hfl_ros/{self.estimator.device}"))


class PerceptionNode(_Perception, Node):
    """HFL-Net hand-object pose estimation on synced image, camera_info and 2D detections.

    Construction declares and validates the parameters (ParameterError); the process then calls
    :meth:`load` and :meth:`open` (see :func:`hfl_ros.nodes.perception_node.main`).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self._init_perception(read_only=True)
        self.config = read_config(self)  # raises ParameterError


class ManagedPerceptionNode(_Perception, LifecycleNode):
    """The perception node as a ROS 2 lifecycle (managed) node.

    - configure: validate the parameters, load the model and assets, warm up (on failure it stays
      unconfigured and logs the reason);
    - activate: create the subscriptions and publishers and start processing;
    - deactivate: stop processing (queued frames are dropped), keep the model;
    - cleanup: free the model; the start-up parameters may be changed again;
    - shutdown: all of the above.

    ``run_on_main`` runs the loading (given as a function) where a stop signal can interrupt it: on the
    process's main thread (see :func:`hfl_ros.nodes.perception_node.main`).
    """

    def __init__(self, run_on_main: Callable[[Callable[[], Any]], Any] | None = None, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self._run_on_main = run_on_main or (lambda fn: fn())
        self._init_perception(read_only=False)

    def _parameters_writable(self) -> bool:
        return self.estimator is None

    def stopped_text(self, dropped: int) -> str:
        return f"in state {self._state_machine.current_state[1]}, {super().stopped_text(dropped)}"

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._run_on_main(self.load)
        except ParameterError as exc:
            self.get_logger().error(f"configure failed, still unconfigured: {one_line(exc)}")
            return TransitionCallbackReturn.FAILURE
        except KeyboardInterrupt:  # the process is stopping
            self.get_logger().info("configure interrupted: the node is stopping")
            return TransitionCallbackReturn.FAILURE
        self.get_logger().info(f"configured: device {self.estimator.device}, model loaded")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.open()
        self.get_logger().info(f"active: {self.ready_text()}")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        dropped = self.close()
        self.get_logger().info("inactive: not processing (model kept)"
                               + (f"; {dropped} queued frame(s) dropped" if dropped else ""))
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.unload()
        self.config = None
        self.get_logger().info("unconfigured: model freed")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.close()
        self.unload()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.close()
        self.unload()
        self.config = None
        return TransitionCallbackReturn.SUCCESS
