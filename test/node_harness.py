"""A test-side rclpy session on its own ROS domain: publishers, collecting subscriptions, service calls and
waits on conditions with deadlines (never fixed sleeps). Used by the perception node and launch tests."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
#: Seconds without a response after which an idempotent service request is sent again (see RosSession.call).
RESEND_S = 10.0


class NodeDiedError(AssertionError):
    """The node process under test exited while the test waited for it."""


def process_output(log_dir: Path) -> str:
    """What a node process wrote (stdout + stderr files of :func:`start_process`)."""
    parts = []
    for name in ("stdout.txt", "stderr.txt"):
        path = log_dir / name
        if path.exists():
            parts.append(f"--- {name}\n{path.read_text(errors='replace')[-6000:]}")
    return "\n".join(parts)


def start_process(cmd: list[str], env: dict[str, str], log_dir: Path) -> subprocess.Popen:
    """Start ``cmd`` with its output in ``log_dir``/stdout.txt and stderr.txt (files: pipes could fill up)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    out = open(log_dir / "stdout.txt", "w")  # noqa: SIM115 - closed with the process by the caller
    err = open(log_dir / "stderr.txt", "w")  # noqa: SIM115
    proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, text=True)
    proc.log_dir = log_dir  # type: ignore[attr-defined]
    return proc


class RosSession:
    """One rclpy context and node on ``domain_id``, spun by a background thread."""

    def __init__(self, domain_id: int, name: str = "test_harness") -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        with contextlib.suppress(ExternalShutdownException, rclpy.executors.ShutdownException):
            self.executor.spin()

    def subscribe(self, msg_type: Any, topic: str, qos: QoSProfile = RELIABLE,
                  timestamps: bool = False) -> tuple[Any, list[Any]]:
        """A subscription whose messages are appended to the returned list (as (time.perf_counter() at
        arrival, message) pairs with ``timestamps``)."""
        received: list[Any] = []

        def on_msg(msg: Any) -> None:
            arrival = time.perf_counter()
            with self._cond:
                received.append((arrival, msg) if timestamps else msg)
                self._cond.notify_all()

        sub = self.node.create_subscription(msg_type, topic, on_msg, qos)
        return sub, received

    def wait_for(self, condition: Callable[[], Any], timeout: float, what: str,
                 proc: subprocess.Popen | None = None) -> Any:
        """Wait until ``condition()`` is truthy and return its value; fail after ``timeout`` s, or at once if
        ``proc`` exits."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = condition()
                if value:
                    return value
                if proc is not None and proc.poll() is not None:
                    raise NodeDiedError(f"node exited with {proc.returncode} while waiting for {what}\n"
                                   + process_output(proc.log_dir))
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    extra = process_output(proc.log_dir) if proc is not None else ""
                    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}\n{extra}")
                # Woken by each received message; the short cap re-checks graph conditions and the process.
                self._cond.wait(min(remaining, 0.05))

    def call(self, srv_type: Any, name: str, request: Any, timeout: float = 60.0,
             idempotent: bool = True) -> Any:
        """Call a service and return its response.

        Right after a service appears, DDS may drop its response ("failed to send response (timeout)" in the
        server's log: the client's reply reader was not matched yet). An ``idempotent`` request is then sent
        again every :data:`RESEND_S` seconds until ``timeout``.
        """
        client = self.node.create_client(srv_type, name)
        deadline = time.monotonic() + timeout
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                raise TimeoutError(f"service {name} not available after {timeout:.0f} s")
            while True:
                future = client.call_async(request)
                left = deadline - time.monotonic()
                wait = min(RESEND_S, left) if idempotent and left > RESEND_S else max(left, 0.1)
                try:
                    self.wait_for(future.done, wait, f"the response of {name}")
                    return future.result()
                except TimeoutError:
                    client.remove_pending_request(future)
                    if time.monotonic() >= deadline - 0.1:
                        raise
        finally:
            self.node.destroy_client(client)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._thread.join(timeout=5.0)


def stop_process(proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """Stop a node as Ctrl-C would (SIGINT), killing it if it does not exit within ``timeout``."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def get_parameters(session: RosSession, node: str, names: list[str], timeout: float = 60.0) -> dict[str, Any]:
    """Values of ``names`` read through ``<node>/get_parameters`` (None for a parameter that is not set)."""
    from rcl_interfaces.srv import GetParameters
    from rclpy.parameter import parameter_value_to_python

    request = GetParameters.Request(names=names)
    response = session.call(GetParameters, f"{node}/get_parameters", request, timeout)
    return {n: parameter_value_to_python(v) for n, v in zip(names, response.values, strict=True)}


def set_parameters(session: RosSession, node: str, values: dict[str, Any],
                   timeout: float = 20.0) -> list[Any]:
    """Set parameters through ``<node>/set_parameters``; returns the SetParametersResult of each."""
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    request = SetParameters.Request(parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in
                                                values.items()])
    return list(session.call(SetParameters, f"{node}/set_parameters", request, timeout).results)


def publish_hand_frames(session: RosSession, count: int, first_sec: int) -> list[int]:
    """Publish ``count`` frames of 160 x 120 px (camera_info, image, and detections of one right hand) on the
    node's default input topics, once the node subscribes to them all; returns their stamps (whole seconds
    from ``first_sec``)."""
    import numpy as np
    from builtin_interfaces.msg import Time
    from sensor_msgs.msg import CameraInfo, Image
    from std_msgs.msg import Header
    from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose

    from hfl_ros.ros.convert import rgb_to_image_data

    if not hasattr(session, "frame_publishers"):
        topics = ((CameraInfo, "/camera_info"), (Image, "/image"), (Detection2DArray, "/detections"))
        session.frame_publishers = [session.node.create_publisher(t, n, RELIABLE) for t, n in topics]
    pubs = session.frame_publishers
    session.wait_for(lambda: all(p.get_subscription_count() > 0 for p in pubs), 60.0, "the node's inputs")
    rgb = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    stamps = []
    for sec in range(first_sec, first_sec + count):
        header = Header(stamp=Time(sec=sec), frame_id="cam")
        det = Detection2D(header=header, results=[ObjectHypothesisWithPose()])
        det.results[0].hypothesis.class_id, det.results[0].hypothesis.score = "right_hand", 0.9
        det.bbox.center.position.x, det.bbox.center.position.y = 55.0, 60.0
        det.bbox.size_x, det.bbox.size_y = 50.0, 60.0
        pubs[0].publish(CameraInfo(header=header, k=[200.0, 0, 80, 0, 200, 60, 0, 0, 1]))
        pubs[1].publish(Image(header=header, height=120, width=160, encoding="rgb8", step=480,
                              data=rgb_to_image_data(rgb)))
        pubs[2].publish(Detection2DArray(header=header, detections=[det]))
        stamps.append(sec)
    return stamps
