"""The replay options as command-line flags, shared by ``hfl-ros play BAG`` and the ``bag_player`` executable.

No rclpy: the player node that uses them is :mod:`hfl_ros.nodes.bag_player`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .player import PlayOptions


def add_play_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of :class:`~hfl_ros.bag.player.PlayOptions` (the player node's parameters) as flags."""
    defaults = PlayOptions(bag=Path(""))
    parser.add_argument("bag", nargs="?", type=Path, help="rosbag2 directory or .mcap / .db3 file")
    parser.add_argument("--rate", type=float, default=defaults.rate, help="playback speed factor (default 1)")
    parser.add_argument("--topics", nargs="+", default=(), help="play only these topics")
    parser.add_argument("--loop", action="store_true", help="play again from the start at the end")
    parser.add_argument("--no-clock", action="store_true", help="do not publish /clock")
    parser.add_argument("--clock-hz", type=float, default=defaults.clock_hz,
                        help="/clock rate between messages (Hz)")
    parser.add_argument("--wait-for-subscribers", type=int, default=defaults.wait_for_subscribers,
                        metavar="N",
                        help="wait until each topic has N subscribers before playing (0: do not wait)")
    parser.add_argument("--wait-timeout", type=float, default=defaults.wait_timeout,
                        help="seconds to wait for subscribers, then play anyway (default 10)")


def options_from_args(args: argparse.Namespace) -> PlayOptions:
    """The options :func:`add_play_arguments` parsed (not validated: see :meth:`PlayOptions.validate`)."""
    return PlayOptions(bag=args.bag if args.bag is not None else Path(""), rate=args.rate,
                       topics=tuple(args.topics), loop=args.loop, clock=not args.no_clock,
                       clock_hz=args.clock_hz, wait_for_subscribers=args.wait_for_subscribers,
                       wait_timeout=args.wait_timeout)
