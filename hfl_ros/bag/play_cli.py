"""``hfl-ros play BAG``: replay a bag into live ROS 2 topics with the original stamps and /clock.

Same options as the ``bag_player`` executable (see :mod:`hfl_ros.nodes.bag_player`). ROS arguments may follow
``--ros-args`` (e.g. ``--ros-args -r __node:=player``).
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..nodes.bag_player import add_play_arguments

    add_play_arguments(parser)
    parser.add_argument("--ros-args", dest="ros_args", nargs=argparse.REMAINDER, default=None,
                        help="ROS arguments for the player node (remappings, -p name:=value, ...)")


def run(args: argparse.Namespace) -> int:
    from ..nodes.bag_player import options_from_args, run_player
    from .errors import BagError

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
