"""The demo model's synthetic dataset in the HO3D layout: ``python -m hfl_ros.demo.make_dataset --out DIR``.

DIR/train (seed 0) and DIR/evaluation (seed 1, disjoint scenes) hold 640x480 JPEG frames (HO3D v3 style) with
meta pickles and masks, DIR/models the object models by YCB name, and DIR/hand_models the stand-in hand models
the MANO targets are computed with (config/train_demo.yaml points model.mano_dir there). The same arguments
give the same files. Rendering takes about 0.1 s a frame on one core.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from pathlib import Path

from ..data.ho3d_export import FRAMES_PER_SEQUENCE, write_ho3d_index, write_ho3d_split
from ..data.synthetic import SceneConfig, SyntheticScenes, write_standin_hand_models
from .sample_bag import parse_size

TRAIN_SEED = 0
EVALUATION_SEED = 1


def _write_shard(out: Path, split: str, seed: int, image_size, image_format: str, start: int, count: int,
                 progress: bool) -> list[str]:
    """Render frames ``start .. start+count-1`` of a split (whole sequences) and return their keys."""
    started = time.monotonic()

    def report(done: int) -> None:
        if progress and (done % 100 == 0 or done == count):
            rate = done / max(time.monotonic() - started, 1e-6)
            print(f"{split}[{start}:]: {done}/{count} frames ({rate:.1f}/s)", file=sys.stderr, flush=True)

    # The cache holds the stand-in hand models used for the MANO targets: DIR/hand_models.
    with SyntheticScenes(out, SceneConfig(image_size=image_size), seed=seed) as scenes:
        return write_ho3d_split(
            out,
            split,
            scenes.samples(count, start),
            image_format=image_format,
            sequence_prefix=f"S{seed}_",
            progress=report,
            start=start,
            write_index=False,
        )


def make_dataset(
    out,
    *,
    train: int,
    evaluation: int,
    image_size=(640, 480),
    progress: bool = True,
    image_format: str = "jpg",
    workers: int = 1,
) -> dict[str, int]:
    """Render and write both splits; returns the frame count of each.

    Frame ``i`` of a split depends only on (split seed, i), so any ``workers`` count writes the same files.
    """
    out = Path(out)
    write_standin_hand_models(out / "hand_models")  # before the workers, which would race to write them
    jobs = []
    for split, count, seed in (("train", train, TRAIN_SEED), ("evaluation", evaluation, EVALUATION_SEED)):
        for start in range(0, max(count, 0), FRAMES_PER_SEQUENCE):
            size = min(FRAMES_PER_SEQUENCE, count - start)
            jobs.append((out, split, seed, tuple(image_size), image_format, start, size, progress))
    if workers > 1 and len(jobs) > 1:
        with multiprocessing.get_context("spawn").Pool(min(workers, len(jobs))) as pool:
            keys = pool.starmap(_write_shard, jobs)
    else:
        keys = [_write_shard(*job) for job in jobs]
    by_split: dict[str, list[str]] = {}
    for job, shard_keys in zip(jobs, keys, strict=True):
        by_split.setdefault(job[1], []).extend(shard_keys)
    for split, split_keys in by_split.items():
        write_ho3d_index(out, split, split_keys)
    return {split: len(split_keys) for split, split_keys in by_split.items()}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="dataset root to write")
    parser.add_argument("--train", type=int, default=2400, help="training frames (default 2400)")
    parser.add_argument("--evaluation", type=int, default=300, help="held-out frames (default 300)")
    parser.add_argument(
        "--size", type=parse_size, default=(640, 480), help="image size WxH (default 640x480)"
    )
    parser.add_argument("--png", action="store_true", help="write PNG images (HO3D v2) instead of JPEG")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.add_argument(
        "--workers", type=int, default=1, help="rendering processes (same files for any count; default 1)"
    )


def run(args: argparse.Namespace) -> int:
    counts = make_dataset(
        args.out,
        train=args.train,
        evaluation=args.evaluation,
        image_size=args.size,
        progress=not args.quiet,
        image_format="png" if args.png else "jpg",
        workers=args.workers,
    )
    print(f"wrote {args.out}: " + ", ".join(f"{k} {v} frames" for k, v in counts.items()))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hfl_ros.demo.make_dataset", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    import torch

    torch.set_num_threads(1)
    sys.exit(main())
