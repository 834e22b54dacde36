"""Waiting on the ROS graph with deadlines (never fixed sleeps) for multi-process tests."""

from __future__ import annotations

import time
from collections.abc import Callable


def spin_until(node, condition: Callable[[], bool], timeout: float, what: str, executor=None) -> None:
    """Spin ``node`` until ``condition()`` holds; fail with ``what`` after ``timeout`` seconds."""
    import rclpy

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        if executor is not None:
            executor.spin_once(timeout_sec=0.05)
        else:
            rclpy.spin_once(node, timeout_sec=0.05)
