"""The perception node's classes: image + camera_info + 2D detections in; hand-object poses, TF, markers out.

:class:`PerceptionNode` is the plain node; :class:`ManagedPerceptionNode` the same as a ROS 2 lifecycle
(managed) node. The process around them (signals, executor, start-up failures) is
:mod:`hfl_ros.nodes.perception_node`. See docs/node.md for topics, parameters and behaviour.
"""

from __future__ import annotations

import contextlib
import gc
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import rclpy
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header
from std_srvs.srv import Trigger
from tf2_msgs.msg import TFMessage
from vision_msgs.msg import Detection2DArray, Detection3DArray
from visualization_msgs.msg import MarkerArray

from hfl_ros.msg import HandObjectPoseArray
from hfl_ros.ros import names
from hfl_ros.ros.convert import LabelMap, rgb_to_image_data, stamp_to_ns
from hfl_ros.ros.debug_image import draw_debug_image
from hfl_ros.ros.diagnostics import PerceptionStats, diagnostics_msg
from hfl_ros.ros.frame_processor import process_frame
from hfl_ros.ros.frame_queue import FrameQueue
from hfl_ros.ros.input_sync import InputSync, ReceivedFrame
from hfl_ros.ros.markers import results_to_markers
from hfl_ros.ros.message_types import RclpyMessageTypes
from hfl_ros.ros.node_logging import ThrottledLogger, log_frame_failures, never_raises, one_line
from hfl_ros.ros.params import (
    SPECS,
    ParameterError,
    PerceptionConfig,
    declare_parameters,
    read_config,
    tracker_config,
    validate_value,
    with_changes,
)
from hfl_ros.ros.pose_messages import results_to_detection3d, results_to_msg
from hfl_ros.ros.qos import (
    diagnostics_qos,
    input_qos,
    output_qos,
    overridable,
    tf_qos,
)
from hfl_ros.ros.tf_messages import results_to_tf
from hfl_ros.tracking import Tracker

if TYPE_CHECKING:  # torch is imported only when the model is loaded
    from hfl_ros.estimator import Estimator

_STEADY = Clock(clock_type=ClockType.STEADY_TIME)
#: The prefix of rclpy's QoS override parameters (see hfl_ros.ros.qos).
#: Parameters that reconfigure the tracker.
_TRACKING_PARAMETERS = frozenset(
    {"temporal_filter", "filter_position_gain", "filter_velocity_gain", "filter_min_cutoff", "filter_beta",
     "filter_rotation_beta", "filter_d_cutoff", "gate_translation", "gate_rotation", "track_max_gap",
     "track_min_iou"})
#: Longest wait for the frame being processed when the node stops or is deactivated.
FRAME_FINISH_TIMEOUT_S = 1.0


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
        self._unused_overrides_reported = False
        self.config: PerceptionConfig | None = None
        self.estimator: Estimator | None = None
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
        """Parameters given at start-up that nothing reads (``qos_overrides`` are checked by :meth:`open`)."""
        unknown = sorted(k for k in self._parameter_overrides
                         if k not in SPECS and k != "use_sim_time" and not names.is_qos_override(k))
        if unknown:
            self.get_logger().warning(f"ignoring unknown parameter(s) {unknown} (misspelt?)")

    def load(self) -> None:
        """Validate the parameters, then build and warm up the Estimator; ParameterError when that fails."""
        cfg = read_config(self)
        if cfg.num_threads > 0:
            import torch

            torch.set_num_threads(cfg.num_threads)
        if not cfg.estimator.object_models_dir:
            self.get_logger().warning("object_models_dir is empty: no object pose will be estimated")
        from hfl_ros.estimator_factory import build_estimator

        estimator = build_estimator(cfg.estimator, warn=self.get_logger().warning)
        self.config, self.estimator, self._loaded_once = cfg, estimator, True
        with self._track_lock:
            self.tracker = Tracker(tracker_config(cfg))
        self.label_map = LabelMap(cfg.right_hand_labels, cfg.left_hand_labels, cfg.default_hand_side,
                                  cfg.hand_labels)

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
                f"sync_slop {cfg.sync_slop} s, input '{self.resolve_topic_name(names.IMAGE_INPUT)}'"
                + (" (compressed)" if cfg.image_transport == "compressed" else ""))

    # --- inputs and outputs ---------------------------------------------------------------------------

    def open(self) -> None:
        """Create the publishers, subscriptions and timers, and start the inference worker."""
        cfg = self.config
        # message_filters is not available as a PyPI wheel: hfl_ros.ros.sync is our own synchroniser.
        self.inputs = InputSync(self.log, self.stats, slop_s=cfg.sync_slop, queue_size=cfg.sync_queue_size,
                                max_age_s=cfg.sync_max_age, camera_info_wait_s=cfg.camera_info_wait,
                                camera_info_max_age_s=cfg.camera_info_max_age)
        queue = FrameQueue(cfg.queue_policy, cfg.queue_size)
        self.queue = queue
        # Inputs share one mutually exclusive group (the synchroniser sees messages one at a time). With
        # queue_policy "all" they (and the camera_info timeout timer) may block on a full queue, so the
        # executor is multi-threaded and the diagnostics timer has a group of its own: it keeps reporting.
        inputs = MutuallyExclusiveCallbackGroup()
        timers = MutuallyExclusiveCallbackGroup()
        diagnostics = MutuallyExclusiveCallbackGroup()
        try:
            self._create_endpoints(inputs)
        except ParameterError:  # a bad qos_overrides parameter
            self.close()
            raise
        self._warn_unused_qos_overrides()
        poll_period = min(0.05, max(0.01, cfg.camera_info_wait / 2))
        for period, callback, group in ((poll_period, self._poll_camera_info, timers),
                                        (cfg.diagnostics_period, self._publish_diagnostics, diagnostics)):
            timer = self.create_timer(period, callback, callback_group=group, clock=_STEADY)
            self._entities.append(("timer", timer))

        self._worker = threading.Thread(target=self._work, args=(queue,), name="hfl_inference", daemon=True)
        self._worker.start()

    def _create_endpoints(self, inputs: MutuallyExclusiveCallbackGroup) -> None:
        """The publishers, the subscriptions (in callback group ``inputs``) and the ~/reset service."""
        private = names.private
        self.pub_poses = self._publisher(HandObjectPoseArray, private(names.POSES_OUTPUT), output_qos())
        self.pub_objects = self._publisher(Detection3DArray, private(names.OBJECTS_OUTPUT), output_qos())
        self.pub_markers = self._publisher(MarkerArray, private(names.MARKERS_OUTPUT), output_qos())
        self.pub_debug = self._publisher(Image, private(names.DEBUG_IMAGE_OUTPUT), output_qos())
        # tf2_ros is not available as a wheel: TF is published as tf2_msgs/TFMessage on /tf directly.
        self.pub_tf = self._publisher(TFMessage, names.TF_TOPIC, tf_qos())
        self.pub_diag = self._publisher(DiagnosticArray, names.DIAGNOSTICS_TOPIC, diagnostics_qos())
        if self.config.image_transport == "compressed":
            self._subscription(CompressedImage, names.COMPRESSED_IMAGE_INPUT, self._on_image, inputs)
        else:
            self._subscription(Image, names.IMAGE_INPUT, self._on_image, inputs)
        self._subscription(CameraInfo, names.CAMERA_INFO_INPUT, self._on_camera_info, inputs)
        self._subscription(Detection2DArray, names.DETECTIONS_INPUT, self._on_detections, inputs)
        service = self.create_service(Trigger, private(names.RESET_SERVICE), self._on_reset)
        self._entities.append(("service", service))

    def _publisher(self, msg_type: Any, topic: str, qos: QoSProfile) -> Any:
        with self._qos_overrides_checked(topic, "publisher"):
            publisher = self.create_publisher(msg_type, topic, qos, qos_overriding_options=overridable())
        self._entities.append(("publisher", publisher))
        return publisher

    def _subscription(self, msg_type: Any, topic: str, callback: Callable[[Any], None],
                      group: MutuallyExclusiveCallbackGroup) -> None:
        options = overridable()
        with self._qos_overrides_checked(topic, "subscription"):
            subscription = self.create_subscription(
                msg_type, topic, callback, input_qos(), callback_group=group, qos_overriding_options=options)
        self._entities.append(("subscription", subscription))

    @contextlib.contextmanager
    def _qos_overrides_checked(self, topic: str, entity: str) -> Iterator[None]:
        """An endpoint that its ``qos_overrides`` parameters fail to create: a ParameterError naming them."""
        prefix = f"{names.QOS_OVERRIDES}{self.resolve_topic_name(topic)}.{entity}."
        try:
            yield
        except Exception as exc:
            given = sorted(k for k in self._parameter_overrides if k.startswith(prefix))
            if not given:
                raise
            raise ParameterError(given[0] if len(given) == 1 else f"{prefix}*",
                                 f"not a usable QoS: {one_line(exc)}") from None

    def _warn_unused_qos_overrides(self) -> None:
        unused = sorted(k for k in self._parameter_overrides
                        if names.is_qos_override(k) and not self.has_parameter(k))
        if unused and not self._unused_overrides_reported:
            self.get_logger().warning(f"ignoring QoS override(s) {unused}: no publisher or subscription of "
                                      "this node has that topic (the name after remapping) and kind")
        self._unused_overrides_reported = True

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
            self.config = with_changes(self.config, runtime)
            if self.estimator is not None:
                self.estimator.reconfigure(self.config.estimator)
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

    @never_raises
    def _on_image(self, msg: Any) -> None:
        self._enqueue(self.inputs.add_image(msg))

    @never_raises
    def _on_detections(self, msg: Any) -> None:
        self._enqueue(self.inputs.add_detections(msg))

    @never_raises
    def _on_camera_info(self, msg: Any) -> None:
        self._enqueue(self.inputs.add_camera_info(msg))

    @never_raises
    def _poll_camera_info(self) -> None:
        self._enqueue(self.inputs.poll())

    def _enqueue(self, frames: list[ReceivedFrame]) -> None:
        queue = self.queue
        for frame in frames:
            if queue is None or not queue.put(frame, on_full=self._warn_queue_full):
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

    def _process(self, frame: ReceivedFrame) -> None:
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
        log_frame_failures(self.log, outcome, header)

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

    # --- diagnostics ----------------------------------------------------------------------------------

    @never_raises
    def _publish_diagnostics(self) -> None:
        queue = self.queue
        sync_extra = self.inputs.counts()
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
        super().__init__(names.PERCEPTION_NODE, **kwargs)
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
        super().__init__(names.PERCEPTION_NODE, **kwargs)
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
        try:
            self.open()
        except ParameterError as exc:
            self.get_logger().error(f"activate failed, still inactive: {one_line(exc)}")
            return TransitionCallbackReturn.FAILURE
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
