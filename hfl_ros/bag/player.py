"""What a replay publishes and when, without any ROS runtime (the rclpy side is hfl_ros.nodes.bag_player).

Messages keep their recorded CDR bytes, so header stamps are the original ones. They are paced by their log
time (the time they were recorded) divided by the rate, and the log time is what the player publishes on
/clock, so nodes with ``use_sim_time`` see the recorded time line.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..ros.names import CLOCK_TOPIC
from .errors import MissingTopicError
from .reader import BagReader, RawMessage, TopicInfo


@dataclass
class PlayOptions:
    """Options of ``hfl-ros play`` and of the ``bag_player`` node (same names as its parameters)."""

    bag: Path
    rate: float = 1.0
    topics: Sequence[str] = ()  # empty: every topic
    loop: bool = False
    clock: bool = True
    clock_hz: float = 40.0
    wait_for_subscribers: int = 1  # per topic, before starting; 0 = do not wait
    wait_timeout: float = 10.0  # seconds; then start anyway (with a warning)

    def validate(self) -> None:
        if not self.rate > 0:
            raise ValueError(f"rate must be > 0, got {self.rate}")
        if self.wait_for_subscribers < 0:
            raise ValueError(f"wait_for_subscribers must be >= 0, got {self.wait_for_subscribers}")
        if not self.clock_hz > 0:
            raise ValueError(f"clock_hz must be > 0, got {self.clock_hz}")


def select_topics(available: dict[str, TopicInfo], wanted: Sequence[str]) -> dict[str, TopicInfo]:
    """The topics to play: all of them, or the wanted ones (each must be in the bag)."""
    if not wanted:
        return {name: info for name, info in available.items() if name != CLOCK_TOPIC}
    missing = [t for t in wanted if t not in available]
    if missing:
        raise MissingTopicError(f"topic(s) not in the bag: {', '.join(missing)}; bag topics: "
                                f"{', '.join(available) or 'none'}")
    return {name: available[name] for name in wanted}


def python_message_module(msgtype: str) -> tuple[str, str]:
    """``pkg/msg/Type`` -> (``pkg.msg``, ``Type``), the rclpy import of a message type."""
    parts = msgtype.split("/")
    if len(parts) == 3:
        return f"{parts[0]}.{parts[1]}", parts[2]
    if len(parts) == 2:
        return f"{parts[0]}.msg", parts[1]
    raise ValueError(f"not a message type: {msgtype!r}")


class Pacer:
    """Maps log times to wall times: ``wall = start_wall + (log - start_log) / rate``."""

    def __init__(self, rate: float, now: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.now = now
        self.start_wall: float | None = None
        self.start_log: int | None = None

    def restart(self) -> None:
        self.start_wall = self.start_log = None

    def delay(self, log_time_ns: int) -> float:
        """Seconds to wait before publishing a message logged at ``log_time_ns`` (<= 0: publish now)."""
        if self.start_wall is None:
            self.start_wall, self.start_log = self.now(), log_time_ns
            return 0.0
        target = self.start_wall + (log_time_ns - self.start_log) / 1e9 / self.rate
        return target - self.now()

    def log_time_now(self) -> int | None:
        """The log time being played now (None before the first message)."""
        if self.start_wall is None:
            return None
        return self.start_log + int((self.now() - self.start_wall) * self.rate * 1e9)


def playback(options: PlayOptions, topics: Sequence[str]) -> Iterator[RawMessage]:
    """The messages of ``topics`` in log-time order, once or forever with ``loop``."""
    while True:
        with BagReader(options.bag) as reader:
            yield from reader.messages(topics)
        if not options.loop:
            return
