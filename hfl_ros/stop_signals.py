"""Stopping cleanly on Ctrl-C (SIGINT) and SIGTERM, at any moment of a process's life.

An entry point calls :func:`install` first thing. From then on the first SIGINT or SIGTERM raises
:class:`Interrupted` (a KeyboardInterrupt) in the main thread, so that start-up work (imports, model loading,
warm-up) and batch work end at once. Inside :meth:`StopSignals.deferred` a signal is only recorded: a node's
main loop polls :attr:`StopSignals.requested`, and a clean stop (closing outputs) runs deferred so that a
second signal cannot cut it short (``ros2 launch`` forwards Ctrl-C once more, then escalates to SIGTERM).

The handler takes no lock and sets no ``threading.Event``: it runs between two bytecodes of the main thread,
which may hold any lock at that moment.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, NoReturn

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A SIGINT or SIGTERM asked the process to stop."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        """The shell's code for a job ended by this signal (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + self.signum


class StopSignals:
    """The process's SIGINT/SIGTERM handling (one instance: :func:`stop_signals`)."""

    def __init__(self) -> None:
        self.signum: int | None = None  # the first stop signal received
        self._deferred = 0
        self._raised = False
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        """Whether a stop signal has arrived."""
        return self.signum is not None

    @property
    def name(self) -> str:
        """Name of the first stop signal ("SIGINT"), or "" when none arrived."""
        return signal.Signals(self.signum).name if self.signum is not None else ""

    def install(self) -> StopSignals:
        """Handle SIGINT and SIGTERM from now on (main thread only; elsewhere nothing changes)."""
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                previous = signal.signal(signum, self._handle)
                self._previous.setdefault(signum, previous)
        return self

    @contextlib.contextmanager
    def handling(self) -> Iterator[StopSignals]:
        """Handle the signals inside the block, then give the previous handlers back (unless this process's
        entry point had installed them already: they stay until it exits)."""
        ours_before = bool(self._previous)
        self.install()
        try:
            yield self
        finally:
            if not ours_before:
                self.uninstall()

    def uninstall(self) -> None:
        """Give back the handlers found by :meth:`install` and forget any signal received."""
        if threading.current_thread() is threading.main_thread():
            for signum, previous in self._previous.items():
                signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()
        self.signum, self._raised, self._deferred = None, False, 0

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is None:
            self.signum = signum
        # One raise only: once the stop is under way, later signals must not break it off.
        if self._deferred == 0 and not self._raised:
            self._raised = True
            raise Interrupted(signum)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Inside the block a signal is only recorded (:attr:`requested`), never raised."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        self._deferred += 1
        try:
            yield
        finally:
            self._deferred -= 1

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        """Inside the block a signal raises :class:`Interrupted`, even within :meth:`deferred`."""
        saved, self._deferred = self._deferred, 0
        try:
            self.check()
            yield
        finally:
            self._deferred = saved

    def check(self) -> None:
        """Raise :class:`Interrupted` if a stop signal has arrived (a safe point of the main thread)."""
        if self.signum is not None:
            self._raised = True
            raise Interrupted(self.signum)

    def wait(self, timeout: float, poll_s: float = 0.05) -> bool:
        """Sleep up to ``timeout`` seconds, returning early (True) once a stop signal has arrived."""
        deadline = time.monotonic() + timeout
        while self.signum is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(poll_s, remaining))
        return True


_STOP = StopSignals()


def stop_signals() -> StopSignals:
    """The process's :class:`StopSignals` (handlers are in place only after :func:`install`)."""
    return _STOP


def install() -> StopSignals:
    """Handle SIGINT and SIGTERM in this process from now on; returns :func:`stop_signals`."""
    return _STOP.install()


def exit_process(code: int) -> NoReturn:
    """End the process now with ``code``, once the standard streams and Python logging are flushed.

    For entry points whose work is closed already: it skips the interpreter's finalisation, which takes about
    a second with torch and rclpy loaded (most of the two seconds a stop may take). Stop signals are
    ignored meanwhile, so the exit code is ``code``.
    """
    for signum in SIGNALS:
        with contextlib.suppress(ValueError):  # not the main thread
            signal.signal(signum, signal.SIG_IGN)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def report_stop(logger: Any, node_name: str, message: str) -> None:
    """The one line that says a node stopped: through its ROS logger, or on stderr in the ROS log format when
    the node stopped before rclpy was imported."""
    if logger is not None:
        logger.info(message)
    else:
        print(f"[INFO] [{node_name}]: {message}", file=sys.stderr)


def shutdown_rclpy() -> None:
    """Shut rclpy's default context down if rclpy was imported (without importing it)."""
    rclpy = sys.modules.get("rclpy")
    if rclpy is not None and hasattr(rclpy, "try_shutdown"):
        rclpy.try_shutdown()
