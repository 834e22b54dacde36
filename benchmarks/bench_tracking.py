"""Tracking and smoothing on synthetic sequences with exact ground truth: raw vs online filters vs offline.

    python benchmarks/bench_tracking.py [--frames 300] [--seed 0] [--out PATH]

Ground truth follows the sample-bag generator's motion law (``SyntheticScenes.sequence``: the object, held
by the hand, translates and turns along slow sinusoids, the fingers curl and open), at 30 Hz, with no
rendering: a hand template is attached to the object and everything is projected with a pinhole camera for
the boxes. Sequences: ``sample`` (that law), ``fast`` (3x the frequencies, 1.5x the amplitudes),
``occlusion`` (the hand and the object vanish for 0.3 s and 0.2 s, and three single object poses are PnP
flips by 180 deg about a symmetry axis), ``two_same_class`` (two hands each holding an object of the same
class; the objects' boxes cross in the image). Per-frame estimate noise is injected at the level of real
estimates: joints 5 mm per axis plus a per-hand translation error of 4 mm (x, y) and 12 mm (depth), wrist
and MANO rotations 3 deg and 0.05 rad, object rotation 3 deg, object translation 3 mm (x, y) and 10 mm
(depth); boxes get the sample bag's detector noise. Noise is white; real estimates also have slowly varying
errors, which no filter removes.

For raw, each online filter mode and the offline smoother it reports:

- jitter: RMS second difference (mm per frame^2) of the 21 joints and of the object's model points (8
  corners of its box, so rotation and translation both count);
- accuracy: MPJPE (mm) and object ADD (mm, mean model-point distance), against ground truth;
- lag (frames): the delay d minimising the squared error of the estimate against the ground truth at t - d,
  to first order in d (positive: the estimate trails);
- identity switches: changes of the track id that follows one ground-truth hand or object.

Targets (checked for the default online mode, on every sequence): jitter >= 3x lower than raw, accuracy no
worse than raw, |lag| <= 1 frame; offline error >= 15 % lower than raw and no lag added to raw's (within 0.1
frame: raw has none by construction, so its measured lag is the measure's resolution); no identity switch;
the gate rejects every flip. Also the online filter's compute per frame with two hands (with 778-vertex
meshes) and two objects. The last line printed is one JSON object with all figures.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hfl_ros.geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle  # noqa: E402
from hfl_ros.results import HandEstimate, HandObjectResult, ObjectEstimate, Side, Status  # noqa: E402
from hfl_ros.tracking import (  # noqa: E402
    FilterConfig,
    SmootherConfig,
    Tracker,
    TrackerConfig,
    smooth_poses,
)
from hfl_ros.tracking.tracker import hand_pose_blocks, set_hand_pose_blocks  # noqa: E402

FPS = 30.0
K = np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])
ONLINE_MODES = ("one_euro", "constant_velocity")
CORNERS = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]) * np.array(
    [0.04, 0.03, 0.05]
)


@dataclass
class Entity:
    """One ground-truth hand holding one object, over the sequence."""

    side: Side
    class_id: str
    joints: np.ndarray  # (T, 21, 3)
    verts: np.ndarray  # (T, V, 3)
    wrist_R: np.ndarray  # (T, 3, 3)
    mano: np.ndarray  # (T, 48)
    obj_R: np.ndarray  # (T, 3, 3)
    obj_t: np.ndarray  # (T, 3)
    hand_visible: np.ndarray  # (T,) bool
    obj_visible: np.ndarray  # (T,) bool


def _project(points: np.ndarray) -> np.ndarray:
    uvw = points @ K.T
    return uvw[..., :2] / uvw[..., 2:]


def _box(points2d: np.ndarray, factor: float = 1.0) -> np.ndarray:
    lo, hi = points2d.min(0), points2d.max(0)
    c, half = (lo + hi) / 2, (hi - lo) / 2 * factor
    return np.concatenate([c - half, c + half])


def _hand_template(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """21 joints (wrist, then 5 fingers of 4) and a point cloud standing in for the mesh, hand frame, m."""
    joints = [np.zeros(3)]
    for f in range(5):
        base = np.array([0.02 * (f - 2), 0.0, 0.0])
        direction = np.array([0.25 * (f - 2), 1.0, 0.1])
        direction /= np.linalg.norm(direction)
        for j in range(4):
            joints.append(base + direction * (0.03 + 0.022 * j) * (0.8 if f == 0 else 1.0))
    joints = np.array(joints)
    verts = joints[rng.integers(0, 21, 778)] + rng.normal(0, 0.008, (778, 3))
    return joints, verts


def make_entity(
    rng, frames: int, speed: float, centre: np.ndarray, side: Side, class_id: str, drift=None
) -> Entity:
    """The sample bag's motion law (see SyntheticScenes.sequence), with frequencies and amplitudes scaled."""
    amplitude = np.array([0.05, 0.03, 0.05]) * rng.uniform(0.6, 1.0, 3) * (1.5 if speed > 1 else 1.0)
    phase = rng.uniform(0, 2 * np.pi, 6)
    spin = rng.normal(size=3)
    spin /= np.linalg.norm(spin)
    base_R = axis_angle_to_matrix(rng.normal(0, 0.5, 3))
    joints_h, verts_h = _hand_template(rng)
    grasp_R = axis_angle_to_matrix(np.array([0.3, -0.5, 0.2]))
    grasp_t = np.array([-0.02, -0.09, 0.03])
    finger_pose = rng.normal(0, 0.3, 45)
    curl_dirs = np.zeros((21, 3))
    curl_dirs[1:, 2] = np.tile(np.arange(1, 5), 5) * 0.006
    out = {k: [] for k in ("joints", "verts", "wrist_R", "mano", "obj_R", "obj_t")}
    for k in range(frames):
        t = k / FPS
        offset = amplitude * np.sin(2 * np.pi * 0.25 * speed * t + phase[:3])
        if drift is not None:
            offset = offset + drift(t)
        angles = 0.35 * np.sin(2 * np.pi * 0.2 * speed * t + phase[3:])
        R = axis_angle_to_matrix(angles * 0.5 + spin * 0.6 * np.sin(2 * np.pi * 0.15 * speed * t)) @ base_R
        obj_t = centre + offset
        curl = 1.0 + 0.2 * np.sin(2 * np.pi * 0.5 * speed * t + phase[0])
        wrist_R = R @ grasp_R
        wrist_t = obj_t + R @ grasp_t
        local = joints_h + curl_dirs * (curl - 1.0) * 5
        out["joints"].append(local @ wrist_R.T + wrist_t)
        out["verts"].append(verts_h @ wrist_R.T + wrist_t)
        out["wrist_R"].append(wrist_R)
        out["mano"].append(np.concatenate([matrix_to_axis_angle(wrist_R), finger_pose * curl]))
        out["obj_R"].append(R)
        out["obj_t"].append(obj_t)
    arrays = {k: np.array(v) for k, v in out.items()}
    visible = np.ones(frames, bool)
    return Entity(side, class_id, hand_visible=visible, obj_visible=visible.copy(), **arrays)


@dataclass
class Sequence:
    name: str
    entities: list[Entity]
    flip_frames: tuple[int, ...] = ()  # object poses replaced by a PnP flip (single frames)


def make_sequences(frames: int, seed: int) -> list[Sequence]:
    rng = np.random.default_rng(seed)
    centre = np.array([0.0, 0.0, 0.43])
    seqs = [
        Sequence("sample", [make_entity(rng, frames, 1.0, centre, Side.RIGHT, "3")]),
        Sequence("fast", [make_entity(rng, frames, 3.0, centre, Side.RIGHT, "3")]),
    ]
    occluded = make_entity(rng, frames, 1.0, centre, Side.RIGHT, "3")
    occluded.hand_visible[frames // 3 : frames // 3 + 9] = False  # 0.3 s
    occluded.obj_visible[2 * frames // 3 : 2 * frames // 3 + 6] = False  # 0.2 s
    flips = tuple(int(frames * f) for f in (0.17, 0.5, 0.83))  # clear of the occlusions
    seqs.append(Sequence("occlusion", [occluded], flip_frames=flips))
    duration = frames / FPS

    # Two hands, each with an object of class "3", sweeping past each other in x: the object boxes cross.
    def sweep(sign):
        return lambda t: np.array([sign * 0.12 * (1 - 2 * t / duration), 0.0, 0.0])

    seqs.append(
        Sequence(
            "two_same_class",
            [
                make_entity(
                    rng, frames, 1.0, centre + np.array([0, 0.02, 0]), Side.RIGHT, "3", drift=sweep(-1)
                ),
                make_entity(
                    rng, frames, 1.0, centre + np.array([0, -0.02, 0.05]), Side.LEFT, "3", drift=sweep(1)
                ),
            ],
        )
    )
    return seqs


def _noisy_box(rng, box):
    size = box[2:] - box[:2]
    c = (box[:2] + box[2:]) / 2 + rng.normal(0, 0.03, 2) * size
    size = size * np.clip(1 + rng.normal(0, 0.05, 2), 0.7, 1.3)
    return np.concatenate([c - size / 2, c + size / 2])


def noisy_frames(seq: Sequence, seed: int) -> list[list[tuple[int, HandObjectResult]]]:
    """Per frame: (entity index, raw estimate) for every visible entity."""
    rng = np.random.default_rng([seed, 99])
    frames = len(seq.entities[0].joints)
    out = []
    for k in range(frames):
        items = []
        for e_idx, e in enumerate(seq.entities):
            if not e.hand_visible[k]:
                continue
            offset = rng.normal(0, [0.004, 0.004, 0.012])
            joints = e.joints[k] + offset + rng.normal(0, 0.005, (21, 3))
            verts = e.verts[k] + offset
            wrist_R = e.wrist_R[k] @ axis_angle_to_matrix(rng.normal(0, np.radians(3), 3))
            mano = e.mano[k] + rng.normal(0, 0.05, 48)
            hand = HandEstimate(
                side=e.side,
                box=_noisy_box(rng, _box(_project(e.joints[k]), 1.1)),
                detection_score=0.9,
                estimate_score=0.8,
                joints3d=joints,
                verts3d=verts,
                wrist_rotation=wrist_R,
                wrist_translation=joints[0].copy(),
                translation_valid=True,
                mano_pose=mano,
            )
            obj = None
            if e.obj_visible[k]:
                R = e.obj_R[k] @ axis_angle_to_matrix(rng.normal(0, np.radians(3), 3))
                if k in seq.flip_frames:
                    R = R @ axis_angle_to_matrix(np.array([0.0, 0.0, np.pi]))
                corners = CORNERS @ e.obj_R[k].T + e.obj_t[k]
                obj = ObjectEstimate(
                    class_id=e.class_id,
                    box=_noisy_box(rng, _box(_project(corners))),
                    score=0.9,
                    valid=True,
                    rotation=R,
                    translation=e.obj_t[k] + rng.normal(0, [0.003, 0.003, 0.010]),
                )
            items.append((e_idx, HandObjectResult(Status.OK, hand, obj)))
        out.append(items)
    return out


def run_online(frames, mode: str) -> tuple[list[list[tuple[int, HandObjectResult]]], Tracker]:
    tracker = Tracker(TrackerConfig(filter=FilterConfig(mode=mode)))
    out = []
    for k, items in enumerate(frames):
        results = tracker.update([r for _, r in items], k / FPS)
        out.append([(e, r) for (e, _), r in zip(items, results, strict=True)])
    return out, tracker


def run_offline(tracked) -> list[list[tuple[int, HandObjectResult]]]:
    """The smoother over each track of the raw tracked results (as ``hfl-ros label --smooth`` does)."""
    out = copy.deepcopy(tracked)
    groups: dict[tuple[str, int], list] = {}
    for k, items in enumerate(out):
        for _, r in items:
            groups.setdefault(("hand", r.hand.track_id), []).append((k, r.hand))
            if r.object is not None:
                groups.setdefault(("object", r.object.track_id), []).append((k, r.object))
    cfg = SmootherConfig()
    for (kind, _), members in groups.items():
        times = np.array([k / FPS for k, _ in members])
        if kind == "hand":
            poses = [hand_pose_blocks(h) for _, h in members]
            p, R = smooth_poses(times, np.array([x[0] for x in poses]), np.array([x[1] for x in poses]), cfg)
            for (_, h), pi, Ri in zip(members, p, R, strict=True):
                set_hand_pose_blocks(h, pi, Ri)
        else:
            p, R = smooth_poses(
                times,
                np.array([o.translation[None] for _, o in members]),
                np.array([o.rotation[None] for _, o in members]),
                cfg,
            )
            for (_, o), pi, Ri in zip(members, p, R, strict=True):
                o.translation, o.rotation = pi[0], Ri[0]
    return out


def _series(seq: Sequence, frames_out, e_idx: int, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frame indices, points (F, P, 3), track ids) of one entity's hand joints or object corners."""
    ks, pts, ids = [], [], []
    for k, items in enumerate(frames_out):
        for e, r in items:
            if e != e_idx:
                continue
            if kind == "hand":
                ks.append(k), pts.append(r.hand.joints3d), ids.append(r.hand.track_id)
            elif r.object is not None:
                ks.append(k), pts.append(CORNERS @ r.object.rotation.T + r.object.translation)
                ids.append(r.object.track_id)
    return np.array(ks), np.array(pts), np.array(ids)


def _truth(e: Entity, kind: str) -> np.ndarray:
    return e.joints if kind == "hand" else np.einsum("pj,tij->tpi", CORNERS, e.obj_R) + e.obj_t[:, None]


def _jitter(ks: np.ndarray, pts: np.ndarray) -> list[np.ndarray]:
    ok = (ks[2:] - ks[:-2]) == 2
    d2 = pts[2:] - 2 * pts[1:-1] + pts[:-2]
    return [np.linalg.norm(d2[ok], axis=-1).ravel()]


def _lag(ks: np.ndarray, pts: np.ndarray, truth: np.ndarray) -> float:
    """The least-squares delay d (frames) with est(t) ~ truth(t - d) ~ truth(t) - d * truth'(t).

    Linearised, so it uses only the error component along the motion: white noise does not bias it, and it
    resolves fractions of a frame where a search over shifted copies would be flat.
    """
    velocity = np.gradient(truth, axis=0)
    inner = (ks >= 2) & (ks < len(truth) - 2)
    err = pts[inner] - truth[ks[inner]]
    v = velocity[ks[inner]]
    return round(float(-np.sum(err * v) / np.sum(v * v)), 2)


def evaluate(seq: Sequence, frames_out) -> dict:
    figures = {}
    for kind, name in (("hand", "joints"), ("object", "object")):
        jit, err, lags, switches = [], [], [], 0
        for e_idx, e in enumerate(seq.entities):
            ks, pts, ids = _series(seq, frames_out, e_idx, kind)
            truth = _truth(e, kind)
            jit += _jitter(ks, pts)
            err.append(np.linalg.norm(pts - truth[ks], axis=-1).mean(-1))
            lags.append(_lag(ks, pts, truth))
            switches += int(np.count_nonzero(np.diff(ids) != 0))
        figures[f"{name}_jitter_mm"] = round(1000 * float(np.sqrt(np.mean(np.concatenate(jit) ** 2))), 3)
        figures["mpjpe_mm" if kind == "hand" else "object_add_mm"] = round(
            1000 * float(np.concatenate(err).mean()), 3
        )
        figures[f"{name}_lag_frames"] = max(lags, key=abs)
        figures[f"{name}_id_switches"] = switches
    return figures


def time_online(frames, mode: str) -> float:
    """Median ms per frame of Tracker.update (association + filters) on frames with 2 hands and 2 objects."""
    tracker = Tracker(TrackerConfig(filter=FilterConfig(mode=mode)))
    samples = []
    for k, items in enumerate(frames):
        results = [r for _, r in items]
        start = time.perf_counter()
        tracker.update(results, k / FPS)
        samples.append(time.perf_counter() - start)
    return round(1000 * float(np.median(samples[10:])), 3)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "bench_tracking.json")
    args = parser.parse_args(argv)
    default_mode = FilterConfig().mode
    result: dict = {"fps": FPS, "frames": args.frames, "default_online_mode": default_mode, "sequences": {}}
    checks: dict[str, bool] = {}
    for seq in make_sequences(args.frames, args.seed):
        raw_frames = noisy_frames(seq, args.seed)
        raw, _ = run_online(raw_frames, "none")
        figs = {"raw": evaluate(seq, raw)}
        for mode in ONLINE_MODES:
            online, tracker = run_online(raw_frames, mode)
            figs[mode] = evaluate(seq, online) | {"gate_rejections": tracker.gate_rejections}
        figs["flips_injected"] = len(seq.flip_frames)
        figs["offline"] = evaluate(seq, run_offline(raw))
        r, on, off = figs["raw"], figs[default_mode], figs["offline"]
        figs["ratios"] = {
            "online_joints_jitter_reduction": round(r["joints_jitter_mm"] / on["joints_jitter_mm"], 2),
            "online_object_jitter_reduction": round(r["object_jitter_mm"] / on["object_jitter_mm"], 2),
            "offline_mpjpe_reduction": round(1 - off["mpjpe_mm"] / r["mpjpe_mm"], 3),
            "offline_add_reduction": round(1 - off["object_add_mm"] / r["object_add_mm"], 3),
        }
        ra = figs["ratios"]
        checks[f"{seq.name}_online_jitter_3x"] = (
            min(ra["online_joints_jitter_reduction"], ra["online_object_jitter_reduction"]) >= 3
        )
        checks[f"{seq.name}_online_accuracy"] = (
            on["mpjpe_mm"] <= r["mpjpe_mm"] and on["object_add_mm"] <= r["object_add_mm"]
        )
        # Raw estimates have no lag by construction: their measured lag is the measure's resolution on this
        # noise draw, so the filters' lag is also reported as added to it (same draw).
        for name, figures in (("online", on), ("offline", off)):
            ra[f"{name}_added_lag_frames"] = round(
                max(
                    figures["joints_lag_frames"] - r["joints_lag_frames"],
                    figures["object_lag_frames"] - r["object_lag_frames"],
                    key=abs,
                ),
                2,
            )
        checks[f"{seq.name}_online_lag"] = (
            max(abs(on["joints_lag_frames"]), abs(on["object_lag_frames"])) <= 1
        )
        checks[f"{seq.name}_offline_error_15pc"] = (
            min(ra["offline_mpjpe_reduction"], ra["offline_add_reduction"]) >= 0.15
        )
        checks[f"{seq.name}_offline_zero_lag"] = abs(ra["offline_added_lag_frames"]) <= 0.1
        checks[f"{seq.name}_no_id_switch"] = all(
            figs[m]["joints_id_switches"] == 0 and figs[m]["object_id_switches"] == 0
            for m in ("raw", default_mode)
        )
        rejected = figs[default_mode]["gate_rejections"]
        checks[f"{seq.name}_gate_rejects_every_flip"] = rejected == len(seq.flip_frames)
        result["sequences"][seq.name] = figs
        if seq.name == "two_same_class":
            result["ms_per_frame_2_hands_2_objects"] = {m: time_online(raw_frames, m) for m in ONLINE_MODES}
    checks["online_under_1ms"] = result["ms_per_frame_2_hands_2_objects"][default_mode] < 1.0
    result["checks"] = checks
    result["all_targets_met"] = all(checks.values())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
