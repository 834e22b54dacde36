"""The hand translation fit on perturbed ground truth: absolute MPJPE before and after the robust fit.

    python benchmarks/bench_hand_translation.py [--frames 300] [--seed 0] [--out PATH]

Ground truth: the hands of the held-out synthetic frames' generator (seed 1, the demo dataset's evaluation
split; the first drawn scene of each index, not rendered, so no occlusion check). For each frame a
perturbation case makes "predicted" wrist-relative 3D joints and 2D joints from the truth; each fit method
places the 3D joints in the camera frame from them, K and the network's hand box; the absolute MPJPE (mm,
mean over the 21 joints, frames where the fit says ok) is scored against the truth.

Cases (the 3D errors keep the hand's shape unless said; "rot 25" is a random rotation of 25 deg about the
wrist, a wrong global pose with the correct PA shape):

- exact: the truth.
- gauss_2d: 2D joints + Gaussian noise of 27 px mean error (the demo model's 2D error).
- outliers_2d: 4 joints 20-60 px off, the others exact.
- scale_2d: the 2D hand scaled by 0.8 or 1.2 about its centroid.
- rot25_3d: 3D rotated 25 deg, exact 2D.
- model_gauss: 3D rot 25 + 8 mm per-axis joint noise, 2D as gauss_2d.
- model_softargmax: 3D as model_gauss; 2D joints pulled towards the hand box centre by a random 20-50 % each
  (what a diffuse soft-argmax heat map does) plus 15 px noise: the demo model's failure.
- mean_prediction: hfl_ros.train.baseline.MeanPredictionNet's outputs: the frames' mean camera-axes
  wrist-relative joints and the frames' mean 2D joints as fractions of the hand box, placed in each box.
- mean_pose_gauss42: the frames' mean hand (posed without global rotation) turned by the mean global
  rotation, 2D joints + Gaussian noise of 42 px mean error.

Methods: ``before`` (the fit of commit BEFORE_COMMIT, read with git), ``robust`` (the current fit without a
box: Huber-weighted joints only), ``after`` (the current fit with the network's hand box, as the Estimator
calls it). Box scenarios: ``protocol`` (the 2D joints' box grown by 1.1, the evaluation's boxes),
``detector`` (that box with the sample bag's detector noise: centre 3 %, size 5 % per axis) and
``box_15pct_large`` (the protocol box 15 % too large). The result is written as JSON to ``--out`` (default
benchmarks/results/bench_hand_translation.json) and a table is printed.

Figures (300 frames, seed 0, protocol boxes; mean absolute MPJPE before -> after): model_softargmax 484 ->
64 mm, model_gauss 119 -> 76, gauss_2d 57 -> 38, outliers_2d 33 -> 7.1, scale_2d 123 -> 37, rot25_3d 54 -> 53,
mean_pose_gauss42 1035 (151 of 300 fits failed) -> 118 (none failed); mean_prediction 198 -> 548, its 3D
"hand" being a blob with 0.13x the true bone lengths (the mean of hands in all orientations).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hfl_ros.data.synthetic import SceneConfig, SyntheticScenes  # noqa: E402
from hfl_ros.data.torch_dataset import HAND_BOX_FACTOR  # noqa: E402
from hfl_ros.demo.make_dataset import EVALUATION_SEED  # noqa: E402
from hfl_ros.demo.sample_bag import DetectionNoise, default_assets_dir  # noqa: E402
from hfl_ros.geometry.boxes import box_from_points, scale_box  # noqa: E402
from hfl_ros.geometry.camera import project  # noqa: E402
from hfl_ros.geometry.hand_translation import fit_hand_translation  # noqa: E402
from hfl_ros.geometry.rotations import axis_angle_to_matrix  # noqa: E402
from hfl_ros.hand_joints import BONES  # noqa: E402
from hfl_ros.train.metrics import pa_error  # noqa: E402

#: The last commit with the plain least-squares fit (the one that scored the demo model's 558 mm).
BEFORE_COMMIT = "98ee5faf497ad70d20694317ab0d3db6db891e42"
MODEL_2D_ERROR_PX = 27.0
BASELINE_2D_ERROR_PX = 42.0
RAYLEIGH_MEAN = np.sqrt(np.pi / 2.0)  # mean norm of a 2D Gaussian error of unit sigma


@dataclass
class Frame:
    joints: np.ndarray  # (21, 3) camera frame, m
    K: np.ndarray
    global_rotation: np.ndarray  # (3, 3) MANO global rotation
    local: np.ndarray  # (21, 3) wrist-relative joints posed without global rotation
    uv: np.ndarray  # (21, 2) px
    box: np.ndarray  # the network's hand box: the joints' box grown by HAND_BOX_FACTOR

    @property
    def rel(self) -> np.ndarray:
        return self.joints - self.joints[0]


def load_frames(count: int) -> list[Frame]:
    frames = []
    with SyntheticScenes(default_assets_dir(), SceneConfig(), seed=EVALUATION_SEED) as scenes:
        for index in range(count):
            spec = scenes.random_spec(np.random.default_rng([EVALUATION_SEED, index]))
            pose, _, joints, _ = scenes._hand(spec)  # the scene's hand, without rendering it
            _, local = scenes.mano(spec.side, np.r_[np.zeros(3), pose[3:]], spec.betas)
            uv = project(joints, spec.K)
            frames.append(Frame(joints, spec.K, axis_angle_to_matrix(pose[:3]), local - local[0], uv,
                                box_from_points(uv, HAND_BOX_FACTOR)))
    return frames


def load_before_fit() -> Callable:
    """fit_hand_translation as of BEFORE_COMMIT."""
    source = subprocess.run(["git", "show", f"{BEFORE_COMMIT}:hfl_ros/geometry/hand_translation.py"],
                            cwd=REPO, check=True, capture_output=True, text=True).stdout
    module = types.ModuleType("hand_translation_before")
    exec(compile(source, "hand_translation_before", "exec"), module.__dict__)
    return module.fit_hand_translation


def random_rotation(rng: np.random.Generator, degrees: float) -> np.ndarray:
    axis = rng.normal(size=3)
    return axis_angle_to_matrix(axis / np.linalg.norm(axis) * np.radians(degrees))


def mean_rotation(rotations: np.ndarray) -> np.ndarray:
    """The chordal L2 mean: the rotation nearest the element-wise mean."""
    u, _, vt = np.linalg.svd(rotations.mean(axis=0))
    return u @ np.diag([1.0, 1.0, np.linalg.det(u @ vt)]) @ vt


def make_cases(frames: list[Frame]) -> dict[str, Callable]:
    """Case name -> f(frame, rng) -> (predicted wrist-relative 3D joints, predicted 2D joints)."""
    mean_rel = np.mean([f.rel for f in frames], axis=0)
    fractions = np.mean([(f.uv - f.box[:2]) / (f.box[2:] - f.box[:2]) for f in frames], axis=0)
    mean_pose = np.mean([f.local for f in frames], axis=0) @ mean_rotation(
        np.array([f.global_rotation for f in frames])).T
    sigma_model, sigma_base = MODEL_2D_ERROR_PX / RAYLEIGH_MEAN, BASELINE_2D_ERROR_PX / RAYLEIGH_MEAN

    def gauss(f, rng, sigma):
        return f.uv + rng.normal(0.0, sigma, f.uv.shape)

    def outliers(f, rng):
        uv = f.uv.copy()
        idx = rng.choice(len(uv), 4, replace=False)
        angle = rng.uniform(0, 2 * np.pi, 4)
        uv[idx] += np.c_[np.cos(angle), np.sin(angle)] * rng.uniform(20, 60, (4, 1))
        return uv

    def scaled(f, rng):
        centre = f.uv.mean(axis=0)
        return centre + (f.uv - centre) * rng.choice([0.8, 1.2])

    def model_3d(f, rng):
        noise = rng.normal(0.0, 0.008, (21, 3))
        noise[0] = 0.0  # the wrist stays the origin
        return f.rel @ random_rotation(rng, 25).T + noise

    def softargmax(f, rng):
        pull = rng.uniform(0.2, 0.5, (21, 1))
        centre = (f.box[:2] + f.box[2:]) / 2.0
        return (1 - pull) * f.uv + pull * centre + rng.normal(0.0, 15.0, f.uv.shape)

    return {
        "exact": lambda f, rng: (f.rel, f.uv),
        "gauss_2d": lambda f, rng: (f.rel, gauss(f, rng, sigma_model)),
        "outliers_2d": lambda f, rng: (f.rel, outliers(f, rng)),
        "scale_2d": lambda f, rng: (f.rel, scaled(f, rng)),
        "rot25_3d": lambda f, rng: (f.rel @ random_rotation(rng, 25).T, f.uv),
        "model_gauss": lambda f, rng: (model_3d(f, rng), gauss(f, rng, sigma_model)),
        "model_softargmax": lambda f, rng: (model_3d(f, rng), softargmax(f, rng)),
        "mean_prediction": lambda f, rng: (mean_rel, f.box[:2] + fractions * (f.box[2:] - f.box[:2])),
        "mean_pose_gauss42": lambda f, rng: (mean_pose, gauss(f, rng, sigma_base)),
    }


def detector_box(box: np.ndarray, rng: np.random.Generator, noise: DetectionNoise) -> np.ndarray:
    centre, size = (box[:2] + box[2:]) / 2.0, box[2:] - box[:2]
    centre = centre + rng.normal(0.0, noise.centre_sigma, 2) * size
    size = size * np.clip(1.0 + rng.normal(0.0, noise.scale_sigma, 2), 0.7, 1.3)
    return np.r_[centre - size / 2.0, centre + size / 2.0]


BOXES: dict[str, Callable] = {
    "protocol": lambda f, rng: f.box,
    "detector": lambda f, rng: detector_box(f.box, rng, DetectionNoise()),
    "box_15pct_large": lambda f, rng: scale_box(f.box, 1.15),
}


def score(frames, case, box_of, methods, seed: int) -> dict:
    """Per method: absolute MPJPE statistics (mm), failures and the median depth ratio (fit / truth)."""
    rng = np.random.default_rng(seed)
    errors = {m: [] for m in methods}
    ratios = {m: [] for m in methods}
    failed = dict.fromkeys(methods, 0)
    err2d, pa = [], []
    for f in frames:
        rel, uv = case(f, rng)
        box = box_of(f, rng)
        err2d.append(np.linalg.norm(uv - f.uv, axis=1).mean())
        pa.append(pa_error(rel, f.rel))
        for name, fit in methods.items():
            t, _, ok = fit(rel, uv, f.K, box)
            if not ok:
                failed[name] += 1
                continue
            errors[name].append(1000.0 * np.linalg.norm(rel + t - f.joints, axis=1).mean())
            ratios[name].append((t[2] + rel[:, 2].mean()) / f.joints[:, 2].mean())
    out = {"joints2d_px": float(np.mean(err2d)), "pa_mpjpe_mm": 1000.0 * float(np.mean(pa))}
    for name in methods:
        e = np.asarray(errors[name])
        out[name] = {
            "mpjpe_mm": float(e.mean()) if len(e) else None,
            "median_mm": float(np.median(e)) if len(e) else None,
            "p90_mm": float(np.percentile(e, 90)) if len(e) else None,
            "max_mm": float(e.max()) if len(e) else None,
            "failed": failed[name],
            "depth_ratio_median": float(np.median(ratios[name])) if len(e) else None,
        }
    return out


def bone_length_ratio(rel: np.ndarray, frames: list[Frame]) -> float:
    """Mean bone length of ``rel`` over that of the true hands."""
    def length(j):
        return np.mean([np.linalg.norm(j[c] - j[p]) for p, c in BONES])
    return float(length(rel) / np.mean([length(f.rel) for f in frames]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0, help="seed of the perturbations")
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "results" / "bench_hand_translation.json"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    started = time.monotonic()
    frames = load_frames(args.frames)
    before = load_before_fit()
    methods = {
        "before": lambda rel, uv, K, box: before(rel, uv, K),
        "robust": lambda rel, uv, K, box: fit_hand_translation(rel, uv, K),
        "after": lambda rel, uv, K, box: fit_hand_translation(rel, uv, K, hand_box=box),
    }
    cases = make_cases(frames)
    results: dict = {}
    for box_name, box_of in BOXES.items():
        results[box_name] = {}
        for k, (case_name, case) in enumerate(cases.items()):
            results[box_name][case_name] = score(frames, case, box_of, methods, seed=args.seed * 1000 + k)
    mean_rel = np.mean([f.rel for f in frames], axis=0)
    out = {
        "benchmark": "bench_hand_translation",
        "frames": args.frames,
        "seed": args.seed,
        "before_commit": BEFORE_COMMIT,
        "mean_prediction_bone_length_ratio": bone_length_ratio(mean_rel, frames),
        "results": results,
        "seconds": round(time.monotonic() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"{'box':16s} {'case':18s} {'2D px':>6s} {'PA mm':>6s}  MPJPE mm mean / median (failed): "
          + "  ".join(methods))
    for box_name, per_case in results.items():
        for case_name, r in per_case.items():
            cells = "  ".join(f"{r[m]['mpjpe_mm']:6.1f} / {r[m]['median_mm']:6.1f} ({r[m]['failed']})"
                              for m in methods)
            print(f"{box_name:16s} {case_name:18s} {r['joints2d_px']:6.1f} {r['pa_mpjpe_mm']:6.1f}  {cells}")
    print(f"mean prediction's bone lengths: {out['mean_prediction_bone_length_ratio']:.2f} x the true hands'")
    print(f"wrote {args.out} ({out['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
