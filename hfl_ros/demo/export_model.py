"""Store a trained checkpoint as the shipped demo model: weights only, in fp16.

    python -m hfl_ros.demo.export_model runs/demo/checkpoint_last.pt models/demo/hfl_demo_lite0.pt

The training checkpoint (weights, optimizer state, RNG state) is reduced to the network's parameters in
float16 (the buffers, BatchNorm running statistics and the MANO model, stay float32; a parameter beyond
float16's range is refused) plus the training config, in the hfl_ros checkpoint format that ``load_network``
and the Estimator read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

#: The repository keeps every version of the demo weights forever; stay under this size.
SIZE_LIMIT_BYTES = 40 * 1024 * 1024

NOTE = (
    "hfl_ros demo model: trained only on synthetic scenes of the stand-in hand model (not MANO) holding four "
    "synthetic YCB-like objects (config/train_demo.yaml); it does not work on real images"
)


def export_demo_model(source, target, *, average: bool = True) -> Path:
    """Write ``target`` from the training checkpoint ``source``; returns the path.

    When the run kept a weight average (``optim.ema_decay``) it is what gets exported, unless ``average`` is
    False (the last weights).
    """
    import torch

    from ..model.checkpoint import load_network, save_checkpoint
    from ..train.weight_average import averaged_state

    net, meta = load_network(source)
    use_average = average and isinstance(meta.get("ema"), dict)
    if use_average:
        net.load_state_dict(averaged_state(meta, net.state_dict()))
    extra = {"note": NOTE, "weights": "moving average" if use_average else "last"}
    if isinstance(meta.get("train_state"), dict):
        extra["train_state"] = meta["train_state"]
    return save_checkpoint(target, net, meta.get("config") or {}, weights_dtype=torch.float16, **extra)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hfl_ros.demo.export_model", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="training checkpoint (hfl-ros train output)")
    parser.add_argument("target", type=Path, help="demo model file to write")
    parser.add_argument("--last", action="store_true",
                        help="export the last weights, not the run's moving average (when it kept one)")
    args = parser.parse_args(argv)
    try:
        path = export_demo_model(args.source, args.target, average=not args.last)
    except ValueError as exc:  # a parameter beyond float16's range
        print(f"error: {exc}", file=sys.stderr)
        return 1
    size = path.stat().st_size
    print(f"wrote {path} ({size / 1e6:.1f} MB)")
    if size > SIZE_LIMIT_BYTES:
        print(f"warning: {path} is larger than {SIZE_LIMIT_BYTES / 2**20:.0f} MiB", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
