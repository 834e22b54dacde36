"""Counters of the perception node and their diagnostic_msgs/DiagnosticArray (no rclpy import).

The message is built through a :class:`~hfl_ros.ros.message_types.MessageTypes` adapter like every other
message.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .message_types import MessageTypes, new_message

OK, WARN, ERROR, STALE = 0, 1, 2, 3


@dataclass
class StatsSnapshot:
    """Rates over the last window and totals since the start."""

    window_s: float
    input_rates_hz: dict[str, float]
    processed_rate_hz: float
    latency_mean_ms: float
    latency_max_ms: float
    inference_mean_ms: float
    frames_processed: int
    dropped_frames: int
    failures: dict[str, int]
    window_failures: dict[str, int]
    statuses: dict[str, int]
    extra: dict[str, Any] = field(default_factory=dict)


class PerceptionStats:
    """Thread-safe counters fed by the callbacks and the worker, read by the diagnostics timer."""

    def __init__(self, inputs: tuple[str, ...] = ("image", "detections", "camera_info")) -> None:
        self._lock = threading.Lock()
        self._inputs = inputs
        self._window_start = time.monotonic()
        self._window_inputs: Counter[str] = Counter()
        self._window_processed = 0
        self._window_latencies: list[float] = []
        self._window_inference: list[float] = []
        self._window_failures: Counter[str] = Counter()
        self.frames_processed = 0
        self.failures: Counter[str] = Counter()
        self.statuses: Counter[str] = Counter()

    def count_input(self, name: str) -> None:
        with self._lock:
            self._window_inputs[name] += 1

    def frame_done(self, latency_s: float, inference_s: float) -> None:
        with self._lock:
            self._window_processed += 1
            self.frames_processed += 1
            self._window_latencies.append(latency_s)
            self._window_inference.append(inference_s)

    def failure(self, reason: str, count: int = 1) -> None:
        with self._lock:
            self.failures[reason] += count
            self._window_failures[reason] += count

    def status(self, name: str) -> None:
        with self._lock:
            self.statuses[name] += 1

    def snapshot(self, dropped_frames: int, extra: dict[str, Any] | None = None) -> StatsSnapshot:
        """Summarise the window since the previous snapshot and start a new one."""
        with self._lock:
            now = time.monotonic()
            window = max(now - self._window_start, 1e-6)
            lat = self._window_latencies or [float("nan")]
            inf = self._window_inference or [float("nan")]
            snap = StatsSnapshot(
                window_s=window,
                input_rates_hz={name: self._window_inputs[name] / window for name in self._inputs},
                processed_rate_hz=self._window_processed / window,
                latency_mean_ms=1e3 * sum(lat) / len(lat),
                latency_max_ms=1e3 * max(lat),
                inference_mean_ms=1e3 * sum(inf) / len(inf),
                frames_processed=self.frames_processed,
                dropped_frames=dropped_frames,
                failures=dict(self.failures),
                window_failures=dict(self._window_failures),
                statuses=dict(self.statuses),
                extra=dict(extra or {}),
            )
            self._window_start = now
            self._window_inputs.clear()
            self._window_processed = 0
            self._window_latencies = []
            self._window_inference = []
            self._window_failures.clear()
            return snap


def _level_and_message(snap: StatsSnapshot) -> tuple[int, str]:
    if snap.window_failures:
        worst = max(snap.window_failures, key=snap.window_failures.get)
        return WARN, f"{sum(snap.window_failures.values())} failure(s) in the last {snap.window_s:.1f} s " \
                     f"(most: {worst})"
    if snap.input_rates_hz.get("image", 0.0) > 0 and snap.processed_rate_hz == 0:
        return WARN, "images arrive but no frame was processed (missing detections or camera_info?)"
    if snap.processed_rate_hz == 0:
        return OK, "idle: no input"
    return OK, f"processing {snap.processed_rate_hz:.1f} Hz"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if value != value else f"{value:.3f}"
    return str(value)


def diagnostics_values(snap: StatsSnapshot) -> list[tuple[str, str]]:
    """The key/value pairs of the diagnostic status, in a fixed order."""
    values = [(f"input_rate_{name}_hz", _fmt(rate)) for name, rate in snap.input_rates_hz.items()]
    values += [
        ("processed_rate_hz", _fmt(snap.processed_rate_hz)),
        ("latency_mean_ms", _fmt(snap.latency_mean_ms)),
        ("latency_max_ms", _fmt(snap.latency_max_ms)),
        ("inference_mean_ms", _fmt(snap.inference_mean_ms)),
        ("frames_processed", str(snap.frames_processed)),
        ("dropped_frames", str(snap.dropped_frames)),
    ]
    values += [(f"failures_{reason}", str(n)) for reason, n in sorted(snap.failures.items())]
    values += [(f"status_{name}", str(n)) for name, n in sorted(snap.statuses.items())]
    values += [(key, _fmt(value)) for key, value in snap.extra.items()]
    return values


def diagnostics_msg(snap: StatsSnapshot, types: MessageTypes, header: Any, name: str,
                    hardware_id: str) -> Any:
    """A diagnostic_msgs/DiagnosticArray with one status named ``name``."""
    level, message = _level_and_message(snap)
    key_value = types.get("diagnostic_msgs/msg/KeyValue")
    status = new_message(types, "diagnostic_msgs/msg/DiagnosticStatus",
                         level=bytes([level]) if _wants_bytes(types) else level, name=name, message=message,
                         hardware_id=hardware_id,
                         values=[key_value(key=k, value=v) for k, v in diagnostics_values(snap)])
    return new_message(types, "diagnostic_msgs/msg/DiagnosticArray", header=header, status=[status])


def _wants_bytes(types: MessageTypes) -> bool:
    """rclpy maps ``byte`` fields (DiagnosticStatus.level) to bytes of length 1; rosbags to int."""
    cls = types.get("diagnostic_msgs/msg/DiagnosticStatus")
    return hasattr(cls, "get_fields_and_field_types") and cls.get_fields_and_field_types()["level"] == "octet"
