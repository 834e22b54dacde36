"""``hfl-ros train``: train HFL-Net from a YAML config (config/train_ho3d.yaml, config/train_dexycb.yaml).

Multi-GPU: ``torchrun --nproc_per_node=4 -m hfl_ros.cli train --config ...`` (DDP, batch split over ranks).

Ctrl-C or SIGTERM while training stops after the step in progress (all ranks after the same step), writes
``checkpoint_last.pt`` and exits 0; ``--resume`` on it continues exactly. Before training starts (loading the
data and the network) a stop signal ends the command at once, with nothing written.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..stop_signals import stop_signals
from .config import apply_overrides, config_from_dict, load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML training config (default: the checkpoint's when resuming)")
    parser.add_argument("--resume", help="training checkpoint to continue from (restores the exact state)")
    parser.add_argument("--out", help="output directory (overrides run.out_dir)")
    parser.add_argument("--max-steps", type=int, help="stop after this many optimizer steps in total")
    parser.add_argument("--epochs", type=int, help="override optim.epochs")
    parser.add_argument("--batch-size", type=int, help="override run.batch_size (global batch)")
    parser.add_argument("--workers", type=int, help="override data.workers")
    parser.add_argument("--device", help="override run.device (auto, cpu, cuda, cuda:1)")
    parser.add_argument("--root", help="override data.root")
    parser.add_argument("--mano-dir", help="override model.mano_dir (MANO_RIGHT.pkl directory)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
        help="override any config value, e.g. --set model.trunk=resnet18 (repeatable)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _overrides(args: argparse.Namespace) -> list[str]:
    pairs = [
        ("run.out_dir", args.out), ("run.max_steps", args.max_steps), ("optim.epochs", args.epochs),
        ("run.batch_size", args.batch_size), ("data.workers", args.workers), ("run.device", args.device),
        ("data.root", args.root), ("model.mano_dir", args.mano_dir),
    ]
    out = [f"{k}={json.dumps(v)}" for k, v in pairs if v is not None]
    if args.no_progress:
        out.append("run.progress=false")
    return out + list(args.set)


def run(args: argparse.Namespace) -> int:
    from .trainer import Trainer, config_of_checkpoint

    overrides = _overrides(args)
    if args.config is None and args.resume is not None:
        config = config_from_dict(apply_overrides(config_of_checkpoint(args.resume).to_dict(), overrides))
    else:
        config = load_config(args.config, overrides)
    stop = stop_signals()
    trainer = Trainer(config, resume=args.resume)
    try:
        with stop.deferred():  # a signal is only recorded; the trainer stops at the end of its step
            result = trainer.train(stop_when=lambda: stop.requested)
    finally:
        trainer.close()
    if trainer.dist.is_main:
        last = result.history[-1]["loss"] if result.history else float("nan")
        print(
            f"trained to step {result.state.global_step} (epoch {result.state.epoch}); last loss {last:.5g}; "
            f"checkpoint {result.checkpoint}"
        )
        if trainer.stopped_early:
            print(f"hfl-ros train: stopped ({stop.name or 'request'}) after step {result.state.global_step}; "
                  f"continue with --resume {result.checkpoint}", file=sys.stderr)
    return 0
