"""The ``hfl-ros`` command. Each sub-command lives in its own module, imported only when used."""

from __future__ import annotations

import argparse
import importlib
import sys

#: sub-command -> (module, help). Each module provides ``add_arguments(parser)`` and ``run(args) -> int``.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "label": ("hfl_ros.bag.label_cli", "label a rosbag offline with hand and object poses"),
    "play": ("hfl_ros.bag.play_cli", "replay a rosbag into live ROS 2 topics with /clock"),
    "train": ("hfl_ros.train.train_cli", "train HFL-Net on HO3D, DexYCB or synthetic data"),
    "eval": ("hfl_ros.train.eval_cli", "evaluate a checkpoint on a dataset through the Estimator"),
    "make-sample-bag": ("hfl_ros.demo.sample_bag", "write a short synthetic rosbag2 (MCAP) sequence"),
    "demo": ("hfl_ros.demo.run_demo", "run the out-of-the-box demo on the sample bag"),
}


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
    argv = sys.argv[1:] if argv is None else argv
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
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
