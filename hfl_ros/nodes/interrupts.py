"""Stopping cleanly when Ctrl-C arrives more than once."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def interrupts_ignored() -> Iterator[None]:
    """Ignore SIGINT inside the block (main thread only; the previous handler comes back after it).

    Ctrl-C on ``ros2 launch`` reaches a node twice, from the terminal's process group and then from launch
    itself: the second must not break off the clean stop that the first started.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        if previous is not None:  # None: a handler installed outside Python, which SIG_IGN replaced for good
            signal.signal(signal.SIGINT, previous)
