"""``hfl-ros demo``: the out-of-the-box demo, with no GPU, no MANO files and no HFL-Net checkpoint.

1. generates the stand-in hand models and the synthetic object models (``DIR/assets``);
2. writes the synthetic sample bag (``DIR/sample_bag``) unless it is there already;
3. labels it with ``hfl-ros label``'s labeler and the demo model (``DIR/labels``: output bag, labels.jsonl);
4. compares the estimates with the bag's ground-truth topic and draws them: ``DIR/summary.md``,
   ``DIR/summary.json``, ``DIR/picture_sheet.png`` and ``DIR/overlays.gif``.

The demo model knows only synthetic scenes; docs/demo.md says how to switch to the official checkpoint and
MANO.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import CheckpointError, InputError
from ..estimator_config import EstimatorConfig
from .sample_bag import IMAGE_TOPIC, parse_size, write_sample_bag

#: Where the trained demo weights live, relative to the repository (or the working directory).
DEFAULT_CHECKPOINT = Path("models/demo/hfl_demo_lite0.pt")
DEFAULT_OUT = Path("demo_output")
_REPO_ROOT = Path(__file__).resolve().parents[2]


#: The demo model's architecture (config/train_demo.yaml), used for the untrained stand-in below.
DEMO_NETWORK = {"variant": "harmonious", "trunk": "efficientnet_lite0", "heads": 4, "input_size": 128,
                "roi_res": 16, "feature_channels": 128}

UNTRAINED_NOTE = (
    "NO TRAINED DEMO MODEL IS SHIPPED YET: these estimates come from an untrained network (seeded random "
    "weights). They show that the whole pipeline runs (bag, sync, Estimator, PnP, outputs) and say nothing "
    "about accuracy. Train the demo model with `make demo-model` or pass --checkpoint PATH."
)


def find_checkpoint(path: str | Path | None) -> Path | None:
    """``path`` if given, else the shipped demo weights, else None (no demo model yet)."""
    if path is not None:
        if not Path(path).is_file():
            raise CheckpointError(f"checkpoint {path} does not exist")
        return Path(path)
    for candidate in (Path.cwd() / DEFAULT_CHECKPOINT, _REPO_ROOT / DEFAULT_CHECKPOINT):
        if candidate.is_file():
            return candidate
    return None


def write_untrained_checkpoint(path: Path, hand_dir: Path, seed: int = 0) -> Path:
    """The demo architecture with seeded random weights, for running the pipeline before a model exists."""
    import torch

    from ..model import HFLNet
    from ..model.checkpoint import save_checkpoint

    torch.manual_seed(seed)
    net = HFLNet.from_config(DEMO_NETWORK, mano_path=hand_dir)
    return save_checkpoint(path, net, {"model": DEMO_NETWORK, "note": "untrained"})


def _image_count(bag: Path) -> int | None:
    from ..bag.reader import BagReader

    try:
        with BagReader(bag) as reader:
            info = reader.topics.get(IMAGE_TOPIC)
            return None if info is None else info.count
    except Exception:  # an unreadable leftover is replaced
        return None


def prepare_sample_bag(bag: Path, *, frames: int, size: tuple[int, int], seed: int, assets: Path) -> None:
    """Write the sample bag, or keep the one at ``bag`` if it has ``frames`` images."""
    if bag.exists():
        if _image_count(bag) == frames:
            print(f"using the sample bag {bag}", file=sys.stderr)
            return
        if not (bag / "metadata.yaml").is_file():
            raise InputError(f"{bag} exists but is not a sample bag; remove it or choose another --out")
        print(f"replacing the sample bag {bag} (it does not have {frames} frames)", file=sys.stderr)
        shutil.rmtree(bag)
    print(f"writing the sample bag {bag} ({frames} frames)", file=sys.stderr)
    write_sample_bag(bag, frames=frames, image_size=size, seed=seed, assets_dir=assets)


def _clean(value: Any) -> Any:
    """JSON-safe copy: non-finite floats become None."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def run_demo(
    out: Path,
    *,
    checkpoint=None,
    frames: int = 45,
    size=(640, 480),
    seed: int = 0,
    device="cpu",
    progress: bool = True,
    sheet_rows: int = 4,
) -> dict[str, Any]:
    """Run the whole demo into ``out``; returns the summary."""
    from ..bag.label import label_bag
    from ..bag.label_options import LabelOptions
    from ..bag.label_output import BAG_DIR, JSONL, OutputTopics
    from ..data.synthetic import SyntheticScenes
    from ..geometry.object_models import ObjectModelLibrary
    from ..model.mano import find_hand_model_file, load_hand_model_file
    from ..results import Side
    from . import report

    checkpoint = find_checkpoint(checkpoint)
    untrained = checkpoint is None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    assets = out / "assets"
    with SyntheticScenes(assets):  # writes the stand-in hand models and the object models once
        pass
    hand_dir, models_dir = assets / "hand_models", assets / "object_models"
    bag = out / "sample_bag"
    prepare_sample_bag(bag, frames=frames, size=size, seed=seed, assets=assets)
    if untrained:
        print(f"WARNING: {UNTRAINED_NOTE}", file=sys.stderr)
        checkpoint = write_untrained_checkpoint(out / "untrained_demo_model.pt", hand_dir, seed)

    labels = out / "labels"
    if labels.exists():  # a previous demo run: start afresh
        shutil.rmtree(labels)
    print(f"labeling {bag} with {checkpoint} -> {labels}", file=sys.stderr)
    options = LabelOptions(
        bag=bag,
        out=labels,
        estimator=EstimatorConfig(checkpoint_path=str(checkpoint), mano_dir=str(hand_dir),
                                  object_models_dir=str(models_dir), device=device),
        publish_vertices=True,
        progress=progress,
    )
    label_bag(options)

    object_models = ObjectModelLibrary(models_dir)
    faces = {
        side: np.asarray(load_hand_model_file(find_hand_model_file(hand_dir, side.value))["f"], np.int64)
        for side in Side
    }
    demo_frames = report.load_frames(bag, labels / BAG_DIR, OutputTopics().poses)
    summary = report.score_frames(demo_frames, object_models)
    summary.update(
        {
            "note": UNTRAINED_NOTE if untrained else report.SYNTHETIC_ONLY_NOTE,
            "untrained": untrained,
            "checkpoint": str(checkpoint),
            "input_bag": str(bag),
            "labeled_bag": str(labels / BAG_DIR),
            "labels_jsonl": str(labels / JSONL),
        }
    )
    overlays = [report.overlay_image(f, faces, object_models) for f in demo_frames]
    Image.fromarray(report.picture_sheet(demo_frames, overlays, rows=sheet_rows)).save(
        out / "picture_sheet.png"
    )
    fps = (
        (len(demo_frames) - 1) * 1e9 / max(demo_frames[-1].stamp_ns - demo_frames[0].stamp_ns, 1)
        if len(demo_frames) > 1
        else 15.0
    )
    report.write_gif(out / "overlays.gif", demo_frames, overlays, fps)
    summary = _clean(summary)
    report.write_summary(out, summary)
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT})"
    )
    parser.add_argument("--frames", type=int, default=45, help="frames of the sample bag (default 45)")
    parser.add_argument(
        "--checkpoint", default=None, help=f"model checkpoint (default: the demo model, {DEFAULT_CHECKPOINT})"
    )
    parser.add_argument(
        "--size", type=parse_size, default=(640, 480), help="image size WxH (default 640x480)"
    )
    parser.add_argument("--seed", type=int, default=0, help="sample bag scene seed (default 0)")
    parser.add_argument("--device", default="cpu", help="inference device (default cpu)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    if args.frames < 1:
        raise InputError(f"--frames must be at least 1, got {args.frames}")
    summary = run_demo(
        args.out,
        checkpoint=args.checkpoint,
        frames=args.frames,
        size=args.size,
        seed=args.seed,
        device=args.device,
        progress=not args.no_progress,
    )

    def pct(v):
        return "n/a" if v is None else f"{100 * v:.0f}%"

    def mm(v):
        return "n/a" if v is None else f"{v:.1f} mm"

    print(f"demo outputs in {args.out}: summary.md, picture_sheet.png, overlays.gif, labels/")
    print(
        f"hand PA-MPJPE {mm(summary['pa_mpjpe_mm'])}, MPJPE {mm(summary['mpjpe_mm'])}, "
        f"object ADD-0.1D {pct(summary['add_0.1d'])}, REP-5 {pct(summary['rep5'])}, "
        f"hand estimated in {pct(summary['hand_detection_rate'])} of frames"
    )
    print("note: the demo model knows only synthetic scenes (see summary.md)")
    return 0
