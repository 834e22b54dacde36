"""The hand-off between the input callbacks and the inference worker thread."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from .params import QUEUE_POLICIES


class FrameQueue:
    """A thread-safe frame queue with one of two policies.

    - ``"latest"`` (live): holds one frame; putting a new one replaces (drops) the waiting one, counted in
      :attr:`dropped`. The callbacks never block.
    - ``"all"`` (replay): holds up to ``maxsize`` frames and never drops; :meth:`put` blocks while it is full,
      calling ``on_full`` once before it waits.
    """

    def __init__(self, policy: str, maxsize: int = 30) -> None:
        if policy not in QUEUE_POLICIES:
            raise ValueError(f"queue policy {policy!r} is not one of {QUEUE_POLICIES}")
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self.policy = policy
        self.maxsize = 1 if policy == "latest" else maxsize
        self._items: deque[Any] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self.dropped = 0
        self.blocked = 0  # times a put had to wait

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def put(self, item: Any, on_full: Callable[[], None] | None = None) -> bool:
        """Queue ``item``; False if the queue is closed (the item is discarded)."""
        with self._cond:
            if self._closed:
                return False
            if self.policy == "latest":
                self.dropped += len(self._items)
                self._items.clear()
            elif len(self._items) >= self.maxsize:
                self.blocked += 1
                if on_full is not None:
                    on_full()
                self._cond.wait_for(lambda: self._closed or len(self._items) < self.maxsize)
                if self._closed:
                    return False
            self._items.append(item)
            self._cond.notify_all()
            return True

    def get(self, timeout: float | None = None) -> Any | None:
        """The oldest item, waiting up to ``timeout`` seconds; None on timeout or when closed and empty."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._closed or self._items, timeout=timeout):
                return None
            if not self._items:
                return None
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def close(self, discard: bool = False) -> int:
        """Wake every waiter; later puts are refused, gets drain what is left then return None.

        ``discard``: drop what is left instead (a stop must not wait for a backlog); returns how many.
        """
        with self._cond:
            self._closed = True
            dropped = len(self._items) if discard else 0
            if discard:
                self._items.clear()
            self._cond.notify_all()
            return dropped
