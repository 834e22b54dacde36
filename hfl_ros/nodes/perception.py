"""The live perception node: image + camera_info + 2D detections in; hand-object poses, TF, markers out.

Run it with ``ros2 run hfl_ros perception_node --ros-args --params-file config/perception.yaml`` or through
``ros2 launch hfl_ros perception.launch.py``. See docs/node.md for topics, parameters and behaviour.
"""

from __future__ import annotations

import functools
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import rclpy
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header
from tf2_msgs.msg import TFMessage
from vision_msgs.msg import Detection2DArray, Detection3DArray
from visualization_msgs.msg import MarkerArray

from hfl_ros.errors import AssetError, CheckpointError, HandModelError, ObjectModelError
from hfl_ros.msg import HandObjectPoseArray
from hfl_ros.nodes.interrupts import interrupts_ignored
from hfl_ros.results import Side
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
from hfl_ros.ros.params import SPECS, ParameterError, PerceptionConfig, declare_parameters, validate_value
from hfl_ros.ros.qos import TF_QOS, make_qos
from hfl_ros.ros.sync import CameraInfoJoiner, JoinedFrame, StampSynchronizer

NODE_NAME = "hfl_perception"
IMAGE, DETECTIONS = 0, 1
EXIT_BAD_PARAMETER = 2
EXIT_BAD_ASSET = 3
_ASSET_PARAMETER = {CheckpointError: "checkpoint_path", HandModelError: "mano_dir",
                    ObjectModelError: "object_models_dir"}
_STEADY = Clock(clock_type=ClockType.STEADY_TIME)


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
        getattr(self._logger, level)(f"[{reason}] {message}")


def _never_raises(method: Callable[..., None]) -> Callable[..., None]:
    """Wrap a callback: an unexpected exception is logged (throttled) instead of stopping the executor."""

    @functools.wraps(method)
    def wrapper(self: PerceptionNode, *args: Any) -> None:
        try:
            method(self, *args)
        except Exception as exc:
            self.stats.failure("internal_error")
            self.log.log("error", f"internal_error_{method.__name__}",
                         f"{method.__name__} failed: {type(exc).__name__}: {exc}\n{traceback.format_exc()}")

    return wrapper


class PerceptionNode(Node):
    """HFL-Net hand-object pose estimation on synced image, camera_info and 2D detections."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self.config: PerceptionConfig = declare_parameters(self)  # raises ParameterError
        self._warn_unknown_parameters()
        cfg = self.config
        self.types = RclpyMessageTypes()
        self.log = ThrottledLogger(self.get_logger())
        self.stats = PerceptionStats()
        self.label_map = LabelMap(cfg.right_hand_labels, cfg.left_hand_labels, cfg.default_hand_side,
                                  cfg.hand_labels)
        self.estimator = self._load_estimator(cfg)  # raises AssetError
        self._marker_cache: dict[Any, Any] = {}

        # message_filters is not available as a PyPI wheel: hfl_ros.ros.sync is our own synchroniser.
        self._sync_lock = threading.Lock()
        self.sync = StampSynchronizer(2, cfg.sync_slop, cfg.sync_queue_size, max_age_s=cfg.sync_max_age,
                                      reset_on_jump_back_s=max(1.0, cfg.sync_max_age))
        self.joiner = CameraInfoJoiner(cfg.sync_slop, cfg.camera_info_wait,
                                       max_fallback_age_s=cfg.camera_info_max_age or None)
        self._received: dict[int, float] = {}  # image stamp -> monotonic receive time
        self._unmatched_reported = 0
        self.queue = FrameQueue(cfg.queue_policy, cfg.queue_size)

        out_qos = make_qos(cfg.qos_output_reliability, cfg.qos_output_depth)
        self.pub_poses = self.create_publisher(HandObjectPoseArray, "~/hand_object_poses", out_qos)
        self.pub_objects = self.create_publisher(Detection3DArray, "~/objects", out_qos)
        self.pub_markers = self.create_publisher(MarkerArray, "~/markers", out_qos)
        self.pub_debug = self.create_publisher(Image, "~/debug_image", out_qos)
        # tf2_ros is not available as a wheel: TF is published as tf2_msgs/TFMessage on /tf directly.
        self.pub_tf = self.create_publisher(TFMessage, "/tf", TF_QOS)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)

        # Inputs share one mutually exclusive group (the synchroniser sees messages one at a time). With
        # queue_policy "all" they (and the camera_info timeout timer) may block on a full queue, so the
        # executor is multi-threaded and the diagnostics timer has a group of its own: it keeps reporting.
        inputs = MutuallyExclusiveCallbackGroup()
        timers = MutuallyExclusiveCallbackGroup()
        diagnostics = MutuallyExclusiveCallbackGroup()
        in_qos = make_qos(cfg.qos_input_reliability, cfg.qos_input_depth)
        if cfg.image_transport == "compressed":
            self.create_subscription(CompressedImage, "image/compressed", self._on_image, in_qos,
                                     callback_group=inputs)
        else:
            self.create_subscription(Image, "image", self._on_image, in_qos, callback_group=inputs)
        self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, in_qos,
                                 callback_group=inputs)
        self.create_subscription(Detection2DArray, "detections", self._on_detections, in_qos,
                                 callback_group=inputs)
        poll_period = min(0.05, max(0.01, cfg.camera_info_wait / 2))
        self.create_timer(poll_period, self._poll_camera_info, callback_group=timers, clock=_STEADY)
        self.create_timer(cfg.diagnostics_period, self._publish_diagnostics, callback_group=diagnostics,
                          clock=_STEADY)
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self._worker = threading.Thread(target=self._work, name="hfl_inference", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"ready: device {self.estimator.device}, queue_policy {cfg.queue_policy}, "
            f"sync_slop {cfg.sync_slop} s, input '{self.resolve_topic_name('image')}'"
            + (" (compressed)" if cfg.image_transport == "compressed" else ""))

    # --- start-up -------------------------------------------------------------------------------------

    def _warn_unknown_parameters(self) -> None:
        overrides = getattr(self, "_parameter_overrides", {}) or {}
        unknown = sorted(k for k in overrides if k not in SPECS and k != "use_sim_time")
        if unknown:
            self.get_logger().warning(f"ignoring unknown parameter(s) {unknown} (misspelt?)")

    def _load_estimator(self, cfg: PerceptionConfig) -> Any:
        from hfl_ros.estimator import Estimator

        if cfg.num_threads > 0:
            import torch

            torch.set_num_threads(cfg.num_threads)
        if not cfg.object_models_dir:
            self.get_logger().warning("object_models_dir is empty: no object pose will be estimated")
        return Estimator(cfg.checkpoint_path, mano_dir=cfg.mano_dir or None,
                         object_models=cfg.object_models_dir or None, device=cfg.device, fp16=cfg.fp16,
                         hand_score_threshold=cfg.hand_score_threshold,
                         object_score_threshold=cfg.object_score_threshold, with_vertices=True)

    # --- runtime parameters ---------------------------------------------------------------------------

    def _on_set_parameters(self, params: list[Any]) -> SetParametersResult:
        changes = {}
        for param in params:
            spec = SPECS.get(param.name)
            if spec is None:
                continue
            if not spec.runtime:
                return SetParametersResult(successful=False, reason=f"parameter '{param.name}' is read-only")
            try:
                changes[param.name] = validate_value(param.name, param.value)
            except ParameterError as exc:
                return SetParametersResult(successful=False, reason=str(exc))
        if changes:
            self.config = replace(self.config, **changes)
            if "hand_score_threshold" in changes:
                self.estimator.hand_score_threshold = changes["hand_score_threshold"]
            if "object_score_threshold" in changes:
                self.estimator.object_score_threshold = changes["object_score_threshold"]
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
        for joined in frames:
            received = self._received.pop(joined.stamp_ns, None) or time.monotonic()
            if not joined.info_exact and joined.info is not None:
                self.log.log("info", "camera_info_fallback",
                             "no camera_info with the image's stamp: using the latest one received")
            self.queue.put(_Frame(joined, received), on_full=self._warn_queue_full)

    def _warn_queue_full(self) -> None:
        self.log.log("warning", "queue_full", f"inference queue full ({self.queue.maxsize} frames, "
                     "queue_policy all): blocking the input callbacks until the worker catches up")

    # --- worker ---------------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            frame = self.queue.get(timeout=None)
            if frame is None:
                return
            try:
                self._process(frame)
            except Exception as exc:  # publishing failed (e.g. during shutdown): never kill the worker
                if not rclpy.ok():
                    return
                self.log.log("error", "publish_error", f"{type(exc).__name__}: {exc}")

    def _process(self, frame: _Frame) -> None:
        cfg = self.config
        image_msg, detections_msg = frame.joined.payload
        header = image_msg.header
        outcome = process_frame(self.estimator, image_msg, detections_msg, frame.joined.info, self.label_map,
                                compressed=cfg.image_transport == "compressed")
        results = outcome.results
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
        with self._sync_lock:
            sync_extra = {
                "unmatched_images": self.sync.unmatched_per_input[IMAGE] + self.sync.dropped_per_input[IMAGE],
                "unmatched_detections": (self.sync.unmatched_per_input[DETECTIONS]
                                         + self.sync.dropped_per_input[DETECTIONS]),
                "waiting_for_camera_info": self.joiner.waiting,
            }
        extra = {"device": self.estimator.device, "queue_policy": self.config.queue_policy,
                 "queue_length": len(self.queue), "queue_blocked": self.queue.blocked, **sync_extra}
        snap = self.stats.snapshot(self.queue.dropped, extra)
        now = self.get_clock().now().to_msg()
        header = Header(stamp=Time(sec=now.sec, nanosec=now.nanosec), frame_id="")
        self.pub_diag.publish(diagnostics_msg(snap, self.types, header, f"{self.get_name()}: hand-object "
                                              "perception", f"hfl_ros/{self.estimator.device}"))

    # --- shutdown -------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop the worker (the frame being processed finishes first)."""
        self.queue.close()
        self._worker.join(timeout=10.0)


def main(args: list[str] | None = None) -> int:
    """Entry point of ``ros2 run hfl_ros perception_node``; returns the process exit code."""
    rclpy.init(args=args)
    logger = rclpy.logging.get_logger(NODE_NAME)
    try:
        node = PerceptionNode()
    except ParameterError as exc:
        logger.fatal(f"{exc}")
        rclpy.try_shutdown()
        return EXIT_BAD_PARAMETER
    except AssetError as exc:
        name = next((p for cls, p in _ASSET_PARAMETER.items() if isinstance(exc, cls)), "checkpoint_path")
        logger.fatal(f"parameter '{name}': cannot load it: {exc}")
        rclpy.try_shutdown()
        return EXIT_BAD_ASSET
    executor = MultiThreadedExecutor(num_threads=4)
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass  # Ctrl-C or SIGTERM: a normal stop
    except _rclpy.RCLError:
        # rclpy's signal handler shut the context down while the executor was building its wait set: the
        # same normal stop, reported as an error by rclpy.
        if rclpy.ok():
            raise
    finally:
        with interrupts_ignored():
            node.stop()
            executor.shutdown()
            node.destroy_node()
            rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
