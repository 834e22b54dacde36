"""The ``hfl-ros`` command. Each sub-command lives in its own module, imported only when used."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import NoReturn

from .stop_signals import Interrupted, exit_process, install, stop_signals

#: sub-command -> (module, help). Each module provides ``add_arguments(parser)`` and ``run(args) -> int``.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "label": ("hfl_ros.bag.label_cli", "label a rosbag offline with hand and object poses"),
    "play": ("hfl_ros.nodes.bag_player", "replay a rosbag into live ROS 2 topics with /clock"),
    "train": ("hfl_ros.train.train_cli", "train HFL-Net on HO3D, DexYCB or synthetic data"),
    "eval": ("hfl_ros.train.eval_cli", "evaluate a checkpoint on a dataset through the Estimator"),
    "make-sample-bag": ("hfl_ros.demo.sample_bag", "write a short synthetic rosbag2 (MCAP) sequence"),
    "demo": ("hfl_ros.demo.run_demo", "run the out-of-the-box demo on the sample bag"),
}


#: Sub-commands that stop cleanly on SIGINT and SIGTERM from their first line (hfl_ros.stop_signals), with
#: exit code 0: a stopped label run says so in its summary (error_reason: interrupted) and on stderr.
STOPPABLE = frozenset({"label", "play", "train"})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hfl-ros", description=__doc__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in SUBCOMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        sp.set_defaults(_module=module)
        if name in sys.argv[1:2]:  # import only the module that is asked for
            importlib.import_module(module).add_arguments(sp)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``hfl-ros ARGV``; returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    command = argv[0] if argv else ""
    if command not in STOPPABLE:
        return _main(argv)
    with stop_signals().handling():
        try:
            return _main(argv)
        except Interrupted as exc:  # while parsing the arguments or importing the sub-command
            print(f"hfl-ros {command}: stopped ({exc.name}) before it started", file=sys.stderr)
            return 0


def entry() -> NoReturn:
    """The ``hfl-ros`` executable. The stoppable sub-commands handle stop signals before anything else and
    end without the interpreter's slow finalisation (see :func:`hfl_ros.stop_signals.exit_process`)."""
    if sys.argv[1:2] and sys.argv[1] in STOPPABLE:
        install()
        exit_process(main())
    sys.exit(main())


def _main(argv: list[str]) -> int:
    saved, sys.argv = sys.argv, [sys.argv[0], *argv]
    try:
        args = build_parser().parse_args(argv)
    finally:
        sys.argv = saved
    from .errors import HflRosError

    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except HflRosError as exc:
        print(f"hfl-ros {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        if isinstance(exc, Interrupted):  # a stop signal: main() reports it
            raise
        return 130


if __name__ == "__main__":
    entry()
