"""``hfl-ros eval``: score a checkpoint on HO3D or DexYCB through the Estimator.

Writes to ``--out``: results.json (summary, per-class table, conventions), results.md (the tables),
frames.jsonl (one record per frame) and, for HO3D, pred.json + pred.zip (the CodaLab submission).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..data.ycb import OFFICIAL_SYMMETRIC_IDS, SYMMETRIC_IDS_WITH_LARGE_CLAMP, YCB_CLASSES
from ..errors import InputError
from ..estimator_config import ESTIMATOR_PARAMS, EstimatorConfig, estimator_config
from ..param_spec import add_flags, values_from_flags

DEFAULT_SPLIT = {"ho3d": "evaluation", "dexycb": "test"}
SYMMETRIC_CHOICES = {"official": OFFICIAL_SYMMETRIC_IDS, "with-large-clamp": SYMMETRIC_IDS_WITH_LARGE_CLAMP}

CONVENTIONS = {
    "units": "hand errors in mm; ADD/ADD-S in mm; rates in [0, 1]",
    "mpjpe_wrist_aligned": "predicted wrist-relative joints + GT wrist vs GT joints (DexYCB protocol)",
    "mpjpe_fitted": "camera-frame joints with the Estimator's fitted translation (where the fit worked)",
    "pa": "similarity Procrustes (scale, rotation, translation) of the prediction onto the GT",
    "f_score": "on the Procrustes-aligned mesh, thresholds 5 mm and 15 mm",
    "add_01d": "ADD (ADD-S for symmetric_ids) <= 0.1 x diameter, diameter = bounding-box diagonal",
    "rep5": "mean reprojection error of the model points <= 5 px, in image pixels (HO3D official: crop px)",
    "invalid_poses": "PnP failures count as failures of ADD-0.1D and REP-5",
}


#: Estimator options whose default differs in evaluation: HFL-Net's HO3D test boxes are the hand box x 1.1.
EVAL_DEFAULTS = {"hand_box_scale": 1.1}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, choices=("ho3d", "dexycb"))
    parser.add_argument("--root", required=True, help="dataset folder")
    parser.add_argument("--split", help="ho3d: train|evaluation (default evaluation); dexycb: train|val|test")
    parser.add_argument("--boxes", default="gt", help="'gt' (paper protocol) or a detections JSON file")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--version", default="auto", help="HO3D version: v2, v3 or auto")
    parser.add_argument("--limit", type=int, help="evaluate only the first N frames")
    parser.add_argument("--batch-frames", type=int, default=8, help="frames per Estimator batch")
    parser.add_argument("--symmetric-ids", choices=tuple(SYMMETRIC_CHOICES), default="official",
                        help="classes scored with ADD-S: official (13,16,20,21) or with-large-clamp (+19)")
    parser.add_argument("--no-progress", action="store_true")
    est = parser.add_argument_group("estimator (the perception node's parameters, same names); the mano_dir "
                                    "also gives DexYCB's ground-truth meshes, object models default to "
                                    "<root>/models")
    add_flags(est, ESTIMATOR_PARAMS, aliases={"checkpoint_path": "--checkpoint"}, defaults=EVAL_DEFAULTS)


def build_samples(args: argparse.Namespace):
    split = args.split or DEFAULT_SPLIT[args.dataset]
    if args.dataset == "ho3d":
        from ..data.ho3d import HO3DDataset

        return HO3DDataset(args.root, split, models_dir=args.object_models_dir, version=args.version), split
    from ..data.dexycb import DexYCBDataset

    return DexYCBDataset(args.root, split, mano_dir=args.mano_dir, models_dir=args.object_models_dir), split


def estimator_options(args: argparse.Namespace) -> EstimatorConfig:
    """The Estimator options of the command line, validated as the node validates its parameters."""
    return estimator_config(values_from_flags(args, ESTIMATOR_PARAMS))


def object_library(models_dir: Path):
    """An ObjectModelLibrary of the YCB models by name, reachable by DexYCB class id."""
    from ..geometry.object_models import ObjectModelLibrary

    aliases = {str(cid): name for cid, name in YCB_CLASSES.items() if (models_dir / name).is_dir()}
    return ObjectModelLibrary(models_dir, aliases=aliases)


def run(args: argparse.Namespace) -> int:
    from ..estimator_factory import build_estimator
    from .evaluate import evaluate, markdown_report, read_detections_file
    from .submission import write_ho3d_submission

    if args.limit is not None and args.limit <= 0:
        raise InputError(f"--limit must be positive, got {args.limit}")
    config = estimator_options(args)
    samples, split = build_samples(args)
    models_dir = config.path("object_models_dir") or Path(args.root) / "models"
    library = object_library(models_dir) if models_dir.is_dir() else None
    estimator = build_estimator(config, object_models=library)
    detections = None if args.boxes == "gt" else read_detections_file(args.boxes)
    result = evaluate(
        estimator,
        samples,
        detections=detections,
        mano_dir=args.mano_dir,
        symmetric_ids=SYMMETRIC_CHOICES[args.symmetric_ids],
        dataset=args.dataset,
        limit=args.limit,
        batch_frames=args.batch_frames,
        progress=not args.no_progress,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {
        "checkpoint": config.checkpoint_path,
        "dataset": args.dataset,
        "split": split,
        "boxes": args.boxes,
        **result.summary,
        "conventions": CONVENTIONS,
    }
    if args.dataset == "ho3d":
        path = write_ho3d_submission(out, result.submission_xyz, result.submission_verts)
        summary["submission"] = str(path)
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    (out / "results.md").write_text(markdown_report(summary, f"HFL-Net on {args.dataset} {split}"))
    with (out / "frames.jsonl").open("w") as f:
        for record in result.frames:
            f.write(json.dumps(record, default=float) + "\n")
    hand = summary["hand"]
    obj = summary["objects"]["summary"]
    print(f"evaluated {summary['frames']} frames of {args.dataset} {split}; results in {out}")
    if hand:
        print(f"  PA-MPJPE {hand['pa_mpjpe_mm']} mm, MPJPE wrist-aligned {hand['mpjpe_wrist_aligned_mm']} mm")
    print(f"  ADD-0.1D (class mean) {obj['add_01d_class_mean']}, REP-5 {obj['rep5_class_mean']}")
    return 0
