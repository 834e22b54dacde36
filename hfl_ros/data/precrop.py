"""Pre-crop an HO3D-layout dataset around each hand-object pair, for training where reading is the cost.

    python -m hfl_ros.data.precrop SRC DST [--split train] [--side 180] [--margin 1.4] [--format webp]

Each frame's image (and seg mask) is cut to the square that the training crop can reach, clipped to the
image: the crop region of the pair (the spec's f=1.5 boxes, as inference and training build it) grown by
``margin`` (1.4 covers the augmentation's centre jitter of 0.1 and scale up to 1.2), resampled so that the
square is ``side`` pixels, with the same nearest sampler as training and inference (masks at half that).
The meta pickle is copied with ``camMat`` replaced by the camera matrix of the cut-out (A K, A the crop's
affine), so every projected target lands where it did; 3D annotations are unchanged. The result is again an
HO3D-layout folder that :class:`~hfl_ros.data.ho3d.HO3DDataset` reads.

At 180 px and WebP quality 75 a 640x480 synthetic frame shrinks about 15x, which is what lets the demo set
travel to a remote GPU, and the workers decode a small image instead of a full frame.
"""

from __future__ import annotations

import argparse
import pickle
import shutil
import signal
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from ..geometry.boxes import box_from_points
from ..geometry.crop import crop_for_pair, warp_homography
from ..safe_pickle import load_numpy_pickle
from ..stop_signals import Interrupted, install
from .ho3d import HO3DDataset

FORMATS = {"webp": (".webp", cv2.IMWRITE_WEBP_QUALITY), "jpg": (".jpg", cv2.IMWRITE_JPEG_QUALITY),
           "png": (".png", None)}


def precrop_window(
    sample, image_wh: tuple[int, int], side: int, margin: float
) -> tuple[np.ndarray, int, int]:
    """(A, width, height): the image px -> cut-out px affine (3x3) and the cut-out's size.

    The window is the sample's crop region (centre, side ``margin`` x scale) clipped to the image, so the crop
    region computed again inside the cut-out is clipped where the original one was and lands on the same
    pixels; ``side`` px stand for the unclipped window's side.
    """
    width, height = image_wh
    region = crop_for_pair(box_from_points(sample.joints2d), box_from_points(sample.control_points2d),
                           image_wh)
    half = 0.5 * margin * region.scale
    cx, cy = region.centre
    x0, y0 = max(cx - half, 0.0), max(cy - half, 0.0)
    x1, y1 = min(cx + half, float(width)), min(cy + half, float(height))
    k = side / (2.0 * half)
    A = np.array([[k, 0.0, -x0 * k], [0.0, k, -y0 * k], [0.0, 0.0, 1.0]])
    return A, max(1, round((x1 - x0) * k)), max(1, round((y1 - y0) * k))


def _cut(image: np.ndarray, A: np.ndarray, width: int, height: int) -> np.ndarray:
    return warp_homography(image, A, max(width, height))[:height, :width]


_DATASETS: dict[tuple[str, str], HO3DDataset] = {}  # one reader per worker process


def _precrop_frame(job: tuple) -> None:
    src_root, dst_root, split, index, side, margin, fmt, quality = job
    dataset = _DATASETS.get((src_root, split))
    if dataset is None:
        dataset = _DATASETS[(src_root, split)] = HO3DDataset(src_root, split)
    frame = dataset.frames[index]
    sample = dataset[index]
    image = cv2.imread(str(sample.image_path), cv2.IMREAD_COLOR)
    if image is None:
        raise OSError(f"cannot read image {sample.image_path}")
    height, width = image.shape[:2]
    A, cut_w, cut_h = precrop_window(sample, (width, height), side, margin)
    seq = Path(dst_root) / split / frame.seq
    suffix, flag = FORMATS[fmt]
    params = [] if flag is None else [flag, int(quality)]
    (seq / "rgb").mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(seq / "rgb" / f"{frame.frame_id}{suffix}"), _cut(image, A, cut_w, cut_h), params)
    seg_src = dataset.seq_dir(frame) / "seg" / f"{frame.frame_id}.png"
    if seg_src.is_file():
        (seq / "seg").mkdir(exist_ok=True)
        seg = cv2.imread(str(seg_src), cv2.IMREAD_COLOR)
        seg = cv2.resize(seg, (width, height), interpolation=cv2.INTER_NEAREST)
        half = np.diag([0.5, 0.5, 1.0]) @ A  # masks at half the image's resolution (the loader resizes them)
        cv2.imwrite(str(seq / "seg" / f"{frame.frame_id}.png"),
                    _cut(seg, half, max(1, cut_w // 2), max(1, cut_h // 2)))
    meta = dict(load_numpy_pickle(dataset.meta_path(frame), "HO3D meta pickle"))
    meta["camMat"] = A @ np.asarray(meta["camMat"], dtype=np.float64)
    if meta.get("handBoundingBox") is not None:
        box = np.asarray(meta["handBoundingBox"], dtype=np.float64).reshape(2, 2)
        meta["handBoundingBox"] = (box * A[0, 0] + A[:2, 2]).reshape(4)
    meta = {k: v.astype(np.float32) if isinstance(v, np.ndarray) and v.dtype == np.float64 else v
            for k, v in meta.items()}  # float32 as HO3D's own pickles: half the bytes, 1e-7 relative
    (seq / "meta").mkdir(exist_ok=True)
    with open(seq / "meta" / f"{frame.frame_id}.pkl", "wb") as f:
        pickle.dump(meta, f, protocol=4)


def _leave_interrupts_to_parent() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def precrop_dataset(
    src: str | Path, dst: str | Path, *, split: str = "train", side: int = 180, margin: float = 1.4,
    fmt: str = "webp", quality: int = 75, workers: int = 1, limit: int | None = None,
) -> int:
    """Write the pre-cut ``split`` of ``src`` to ``dst`` (object models copied); returns its frame count."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {sorted(FORMATS)}, got {fmt!r}")
    src, dst = Path(src), Path(dst)
    frames = HO3DDataset(src, split).frames[:limit]
    dst.mkdir(parents=True, exist_ok=True)
    if (src / "models").is_dir() and not (dst / "models").exists():
        shutil.copytree(src / "models", dst / "models")
    jobs = [(str(src), str(dst), split, i, side, margin, fmt, quality) for i in range(len(frames))]
    if workers > 1:
        pool = ProcessPoolExecutor(workers, initializer=_leave_interrupts_to_parent)
        try:
            list(pool.map(_precrop_frame, jobs, chunksize=64))
        finally:  # on a stop, the chunks not started are dropped instead of run
            pool.shutdown(wait=True, cancel_futures=True)
    else:
        for job in jobs:
            _precrop_frame(job)
    # the index last: a split whose <split>.txt exists is complete (scripts skip the step on it)
    (dst / f"{split}.txt").write_text("".join(f"{f.key}\n" for f in frames))
    return len(frames)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hfl_ros.data.precrop", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", help="HO3D-layout dataset folder")
    parser.add_argument("dst", help="output folder")
    parser.add_argument("--split", default="train")
    parser.add_argument("--side", type=int, default=180, help="side of the cut-outs, px")
    parser.add_argument("--margin", type=float, default=1.4, help="cut-out side / crop region side")
    parser.add_argument("--format", dest="fmt", choices=sorted(FORMATS), default="webp")
    parser.add_argument("--quality", type=int, default=75, help="webp/jpg quality")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--limit", type=int, help="only the first N frames")
    args = parser.parse_args(argv)
    try:
        n = precrop_dataset(args.src, args.dst, split=args.split, side=args.side, margin=args.margin,
                            fmt=args.fmt, quality=args.quality, workers=args.workers, limit=args.limit)
    except Interrupted as exc:
        print(f"stopped ({exc.name}); {args.dst} is incomplete (the frames being written may be cut): run "
              "the command again", file=sys.stderr)
        return 0
    print(f"wrote {n} pre-cropped {args.split} frames to {args.dst}")
    return 0


if __name__ == "__main__":
    install()  # Ctrl-C or SIGTERM: a clean stop, exit 0
    sys.exit(main())
