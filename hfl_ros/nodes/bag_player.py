"""The ``bag_player`` node: replay a bag into live topics with the original header stamps and /clock.

Recorded CDR bytes are published as they are (``Publisher.publish`` of raw bytes), paced by their log time and
``rate``. Before the first message the player waits until every played topic has ``wait_for_subscribers``
matched subscriptions (at most ``wait_timeout`` seconds), so nothing is lost to discovery. /clock carries the
log time of the last published message (and is refreshed at ``clock_hz`` while waiting between messages), for
nodes run with ``use_sim_time``. At the end it waits for reliable subscribers to acknowledge what was
published.

Run as ``ros2 run hfl_ros bag_player --ros-args -p bag:=BAG -p rate:=1.0`` or ``bag_player BAG [--rate R]``
(command-line values set the parameters' defaults; ``-p`` overrides them), or through ``hfl-ros play BAG``
(the same options, then ROS arguments after ``--ros-args``, e.g. ``--ros-args -r __node:=player``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..bag.errors import BagError
from ..bag.play_cli import add_play_arguments, options_from_args
from ..bag.player import Pacer, PlayOptions, playback, python_message_module, select_topics
from ..bag.reader import BagReader
from ..errors import HflRosError
from ..ros.names import BAG_PLAYER_NODE, CLOCK_TOPIC
from ..stop_signals import Interrupted, report_stop, shutdown_rclpy, stop_signals


def _message_class(msgtype: str) -> type | None:
    module, name = python_message_module(msgtype)
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


class BagPlayerNode:
    """An rclpy node that plays one bag. Build it after ``rclpy.init``; call :meth:`play`."""

    def __init__(self, options: PlayOptions | None = None, *, node_name: str = BAG_PLAYER_NODE) -> None:
        import rclpy.node

        defaults = options or PlayOptions(bag=Path(""))
        self.node = rclpy.node.Node(node_name)
        self.options = self._declare(defaults)
        self.options.validate()
        self.published = 0
        self.publishers: dict[str, Any] = {}
        self.skipped_topics: dict[str, str] = {}
        self._clock_pub = None

    def _declare(self, d: PlayOptions) -> PlayOptions:
        from rcl_interfaces.msg import ParameterDescriptor

        def declare(name: str, value: Any, text: str) -> Any:
            # Dynamic typing lets "-p rate:=2" (an integer) set a float parameter.
            descriptor = ParameterDescriptor(description=text, dynamic_typing=isinstance(value, float))
            return self.node.declare_parameter(name, value, descriptor).value

        topics = declare("topics", list(d.topics) or [""], "Topics to play; empty: all.")
        return PlayOptions(
            bag=Path(declare("bag", str(d.bag) if str(d.bag) not in ("", ".") else "", "Bag to play.")),
            rate=float(declare("rate", float(d.rate), "Playback speed factor (> 0).")),
            topics=tuple(t for t in topics if t),
            loop=bool(declare("loop", bool(d.loop), "Play again from the start at the end.")),
            clock=bool(declare("clock", bool(d.clock), "Publish /clock (rosgraph_msgs/Clock).")),
            clock_hz=float(declare("clock_hz", float(d.clock_hz), "/clock rate while waiting, Hz.")),
            wait_for_subscribers=int(declare("wait_for_subscribers", int(d.wait_for_subscribers),
                                             "Subscriptions each topic needs before playing; 0: no wait.")),
            wait_timeout=float(declare("wait_timeout", float(d.wait_timeout),
                                       "Seconds to wait for subscribers before playing anyway.")),
        )

    # -- setup -----------------------------------------------------------------------------------------------
    def _create_publishers(self) -> list[str]:
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

        if not str(self.options.bag):
            raise HflRosError("no bag given: set the 'bag' parameter (or pass BAG)")
        with BagReader(self.options.bag) as reader:
            chosen = select_topics(reader.topics, self.options.topics)
        for name, info in chosen.items():
            cls = _message_class(info.msgtype)
            if cls is None:
                self.skipped_topics[name] = info.msgtype
                self.node.get_logger().warning(
                    f"not playing {name}: message type {info.msgtype} is not installed")
                continue
            latched = name == "/tf_static"
            durability = DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE
            qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100,
                             reliability=ReliabilityPolicy.RELIABLE, durability=durability)
            self.publishers[name] = self.node.create_publisher(cls, name, qos)
        if self.options.clock:
            from rosgraph_msgs.msg import Clock

            self._clock_pub = self.node.create_publisher(Clock, CLOCK_TOPIC, 10)
        return list(self.publishers)

    def wait_for_subscribers(self, should_stop: Callable[[], bool] = lambda: False) -> list[str]:
        """Wait until each topic has enough subscriptions (or the timeout, or ``should_stop()``); return the
        topics still short."""
        need = self.options.wait_for_subscribers
        deadline = time.monotonic() + self.options.wait_timeout
        short = list(self.publishers)
        while need > 0:
            short = [t for t, pub in self.publishers.items() if pub.get_subscription_count() < need]
            if not short or time.monotonic() >= deadline or should_stop():
                break
            time.sleep(0.02)  # polls the graph (kept up to date by the executor thread)
        if need > 0 and short and not should_stop():
            self.node.get_logger().warning(
                f"starting after {self.options.wait_timeout:g} s although these topics have fewer than "
                f"{need} subscriber(s): {', '.join(short)}")
        return short if need > 0 else []

    # -- playing ---------------------------------------------------------------------------------------------
    def _publish_clock(self, log_time_ns: int) -> None:
        if self._clock_pub is None:
            return
        from builtin_interfaces.msg import Time
        from rosgraph_msgs.msg import Clock

        self._clock_pub.publish(Clock(clock=Time(sec=log_time_ns // 1_000_000_000,
                                                 nanosec=log_time_ns % 1_000_000_000)))

    def prepare(self) -> None:
        """Read the bag's topics and create the publishers (done by :meth:`play` when not done before)."""
        if not self.publishers:
            self._create_publishers()

    def play(self, should_stop: Callable[[], bool] = lambda: False) -> int:
        """Wait for subscribers, publish every message until ``should_stop()``; return how many."""
        import rclpy
        from rclpy.duration import Duration

        self.prepare()
        self.wait_for_subscribers(should_stop)
        pacer = Pacer(self.options.rate)
        clock_period = 1.0 / self.options.clock_hz
        last_log: int | None = None
        for raw in playback(self.options, list(self.publishers)):
            if should_stop() or not rclpy.ok():
                return self.published
            if last_log is not None and raw.log_time_ns < last_log:
                pacer.restart()  # looped back to the start
            delay = pacer.delay(raw.log_time_ns)
            while delay > 0:
                time.sleep(min(delay, clock_period))
                if should_stop():
                    return self.published
                now = pacer.log_time_now()
                if now is not None:  # sim time runs between messages, never past the next one
                    self._publish_clock(min(now, raw.log_time_ns))
                delay = pacer.delay(raw.log_time_ns)
            self._publish_clock(raw.log_time_ns)
            self.publishers[raw.topic].publish(bytes(raw.data))
            self.published += 1
            last_log = raw.log_time_ns
        if should_stop():
            return self.published
        for publisher in self.publishers.values():
            publisher.wait_for_all_acked(Duration(seconds=5.0))
        return self.published

    def destroy(self) -> None:
        self.node.destroy_node()


def run_player(options: PlayOptions, args: Sequence[str] | None = None) -> int:
    """Init rclpy, play the bag (the node spins in a background thread), shut down; return messages played.

    SIGINT or SIGTERM stops it at any moment (see :mod:`hfl_ros.stop_signals`): during start-up at once,
    while playing after the message being published; it then logs one line saying so and returns.
    """
    stop = stop_signals().install()
    player = None
    executor = None
    done = threading.Event()
    spinner = None
    logger = None
    try:
        import rclpy
        import rclpy.logging
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.signals import SignalHandlerOptions

        logger = rclpy.logging.get_logger(BAG_PLAYER_NODE)
        # rclpy's own handlers would shut the context down under the player: the stop is ours.
        rclpy.init(args=list(args) if args is not None else None,
                   signal_handler_options=SignalHandlerOptions.NO)
        player = BagPlayerNode(options)
        logger = player.node.get_logger()
        player.prepare()
        executor = SingleThreadedExecutor()
        executor.add_node(player.node)
        with stop.deferred():
            spinner = threading.Thread(target=_spin, args=(executor, done), daemon=True)
            spinner.start()
            count = player.play(lambda: stop.requested)
        if not stop.requested:
            logger.info(f"played {count} message(s) from {player.options.bag}")
        return count
    except Interrupted:
        return player.published if player is not None else 0
    finally:
        with stop.deferred():  # a second Ctrl-C (ros2 launch sends one) must not break off the stop
            done.set()
            if spinner is not None:
                spinner.join(timeout=1.0)
            if executor is not None:
                executor.shutdown(timeout_sec=1.0)
            if stop.requested:
                played = f"after {player.published} message(s) from {player.options.bag}" if player else \
                    "before playing"
                report_stop(logger, BAG_PLAYER_NODE, f"stopped ({stop.name}) {played}")
            if player is not None:
                player.destroy()
            shutdown_rclpy()


def _spin(executor: Any, done: threading.Event) -> None:
    try:
        while not done.is_set():
            executor.spin_once(timeout_sec=0.05)
    except Exception:  # the context was shut down under us at exit
        pass


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``hfl-ros play``: the player's options, then ROS arguments after ``--ros-args``."""
    add_play_arguments(parser)
    parser.add_argument("--ros-args", dest="ros_args", nargs=argparse.REMAINDER, default=None,
                        help="ROS arguments for the player node (remappings, -p name:=value, ...)")


def run(args: argparse.Namespace) -> int:
    """``hfl-ros play BAG``: replay a bag into live ROS 2 topics with the original stamps and /clock."""
    if args.bag is None:
        raise BagError("no bag given: hfl-ros play BAG")
    options = options_from_args(args)
    try:
        options.validate()
    except ValueError as exc:
        raise BagError(str(exc)) from None
    ros_args = ["--ros-args", *args.ros_args] if args.ros_args is not None else []
    count = run_player(options, ["hfl-ros", *ros_args])
    print(f"played {count} message(s) from {options.bag}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``ros2 run hfl_ros bag_player``; exit code 0 also when stopped by SIGINT / SIGTERM."""
    stop = stop_signals().install()  # first: from here on Ctrl-C and SIGTERM end the process cleanly
    try:
        from rclpy.utilities import remove_ros_args

        argv = list(sys.argv if argv is None else argv)
        parser = argparse.ArgumentParser(prog="bag_player",
                                         description="Replay a rosbag into live ROS 2 topics.")
        add_play_arguments(parser)
        args = parser.parse_args(remove_ros_args(argv)[1:])
        run_player(options_from_args(args), argv)
    except Interrupted:
        print(f"[INFO] [{BAG_PLAYER_NODE}]: stopped ({stop.name}) before playing", file=sys.stderr)
    except (HflRosError, ValueError) as exc:
        print(f"bag_player: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    from ..stop_signals import exit_process

    exit_process(main())
