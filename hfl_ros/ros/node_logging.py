"""How the perception node reports problems without flooding its log or stopping (no rclpy import).

- :class:`ThrottledLogger`: at most one line per reason every few seconds;
- :func:`never_raises`: a callback's unexpected exception is logged and counted, never raised to the executor;
- :func:`log_frame_failures`: why a frame, or a hand of it, got no estimate;
- :func:`one_line`: a message on one line (a FATAL line, a failed transition).
"""

from __future__ import annotations

import functools
import threading
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from ..results import Side

if TYPE_CHECKING:
    from .frame_processor import FrameOutcome


def one_line(text: object) -> str:
    """``text`` on one line (a FATAL or a failed transition is reported as one line)."""
    return " ".join(str(text).split())


class ThrottledLogger:
    """Logs at most one line per reason every ``period_s``, telling how many were suppressed meanwhile."""

    def __init__(self, logger: Any, period_s: float = 5.0) -> None:
        self._logger = logger
        self._period = period_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def log(self, level: str, reason: str, message: str) -> None:
        """Log ``message`` at ``level`` (error, warning, info, debug) unless ``reason`` was logged lately."""
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


class _FailureCounter(Protocol):
    def failure(self, reason: str, count: int = 1) -> None: ...


class ReportsFailures(Protocol):
    """What :func:`never_raises` needs of the object whose methods it wraps."""

    stats: _FailureCounter
    log: ThrottledLogger


def never_raises(method: Callable[..., None]) -> Callable[..., None]:
    """Wrap a callback method: an unexpected exception is counted as ``internal_error`` in ``self.stats`` and
    logged (throttled) through ``self.log`` instead of stopping the executor."""

    @functools.wraps(method)
    def wrapper(self: ReportsFailures, *args: Any) -> None:
        try:
            method(self, *args)
        except Exception as exc:
            self.stats.failure("internal_error")
            self.log.log("error", f"internal_error_{method.__name__}",
                         f"{method.__name__} failed: {type(exc).__name__}: {exc}\n{traceback.format_exc()}")

    return wrapper


def log_frame_failures(log: ThrottledLogger, outcome: FrameOutcome, header: Any) -> None:
    """Log (throttled, by reason) what failed in the frame of image ``header``: the whole frame, or each hand
    with a bad input or an internal error."""
    stamp = f"{header.stamp.sec}.{header.stamp.nanosec:09d}"
    if outcome.frame_error is not None:
        reason = getattr(outcome.frame_error, "reason", "internal_error")
        level = "error" if reason == "internal_error" else "warning"
        detail = f"\n{outcome.traceback}" if outcome.traceback else ""
        status = outcome.results[0].status.name if outcome.results else "-"
        log.log(level, reason, f"frame {stamp} ({header.frame_id}): {outcome.frame_error}; "
                f"published {len(outcome.results)} hand(s) with status {status}{detail}")
        return
    for result in outcome.results:
        if result.error is not None or result.status.name in ("BAD_INPUT", "INTERNAL_ERROR"):
            reason = result.error.reason if result.error is not None else result.status.name.lower()
            log.log("warning", reason, f"frame {stamp}: {Side(result.hand.side).value} hand: "
                    f"{result.status.name}: {result.status_message}")
