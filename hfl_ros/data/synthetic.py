"""Synthetic hand-object scenes with exact ground truth, rendered with pyrender + OSMesa (see render.py).

A scene is the stand-in hand model (or any MANO-format model) holding one of the synthetic YCB-like objects of
:mod:`hfl_ros.data.shapes` in a grasp-like pose (:mod:`hfl_ros.data.grasps`), seen by a random pinhole camera
over a random textured background under random lights. Every sample is a
:class:`~hfl_ros.data.sample.HandObjectSample` in the same frames as the dataset readers (OpenCV camera axes,
metres, joints in JOINT_NAMES order), with visible (occluded) hand and object masks.

Determinism: sample ``i`` of a generator with seed ``s`` depends only on (s, i) and the configuration; the
same pair gives bit-identical images and annotations (OSMesa is a deterministic software rasteriser).
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from ..geometry.camera import project
from ..geometry.control_points import control_points
from ..geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from ..results import Side
from .grasps import Grasp, HandAnatomy, hand_anatomy, sample_grasp
from .render import Light, MeshInput, SceneRenderer
from .sample import HandObjectSample
from .shapes import ObjectShape, object_shapes, write_if_changed, write_object_models
from .standin_hand import write_standin_hand_model
from .textures import jitter_texture, random_background, skin_vertex_colours

#: Seed of the stand-in hand models the synthetic data (and the demo model) is made with.
STANDIN_HAND_SEED = 0
#: Class ids of the synthetic objects: cracker box, tomato soup can, mustard bottle, mug (DexYCB numbering).
DEFAULT_CLASS_IDS: tuple[str, ...] = ("2", "4", "5", "14")


@dataclass(frozen=True)
class SceneConfig:
    """What the random scenes look like. Focal lengths are for 640 px wide images and scale with width."""

    image_size: tuple[int, int] = (640, 480)
    focal_range: tuple[float, float] = (500.0, 650.0)
    distance_range: tuple[float, float] = (0.45, 0.75)  # object centre depth, m
    # An object's up axis (its model z) points within this angle of the image's up direction, as objects held
    # in front of a robot's camera mostly do; the rotation about that axis is free. 180 allows any rotation.
    max_tilt_deg: float = 50.0
    class_ids: tuple[str, ...] = DEFAULT_CLASS_IDS
    left_hand_fraction: float = 0.0  # HO3D, and therefore the demo model, is right-hand only
    min_visible_fraction: float = 0.3  # of each of hand and object, after occlusion
    margin_px: float = 2.0  # every joint, hand vertex and control point at least this far inside the image
    max_attempts: int = 30


@dataclass
class SceneSpec:
    """Everything that defines one rendered frame (pose, appearance and camera)."""

    class_id: str
    side: Side
    betas: np.ndarray  # (10,)
    grasp: Grasp  # hand placement in the object frame
    object_R: np.ndarray
    object_t: np.ndarray  # (3,)
    K: np.ndarray  # (3, 3)
    image_size: tuple[int, int]
    texture: np.ndarray  # jittered object texture
    skin: np.ndarray  # (778, 4) vertex colours
    background: np.ndarray  # (H, W, 3) uint8
    lights: list[Light]
    ambient: float
    object_roughness: float
    noise_sigma: float
    blur_sigma: float
    noise_seed: int
    meta: dict = field(default_factory=dict)


@functools.cache
def _standin_hand_bytes(side: str) -> bytes:
    """The stand-in hand model file of a side as the current code writes it (built once a process)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = write_standin_hand_model(Path(tmp) / "hand.pkl", side=side, seed=STANDIN_HAND_SEED)
        return path.read_bytes()


def write_standin_hand_models(directory) -> Path:
    """Write (or refresh) both stand-in hand models (seed :data:`STANDIN_HAND_SEED`) in ``directory``.

    Existing files are compared with what the current stand-in code writes and replaced when they differ, so a
    cache never holds a stale hand.
    """
    from ..model.mano import STANDIN_FILE_NAMES

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for side, name in STANDIN_FILE_NAMES.items():
        write_if_changed(directory / name, _standin_hand_bytes(side))
    return directory


def _upright_rotation(rng: np.random.Generator, max_tilt_deg: float) -> np.ndarray:
    """A rotation taking model z to within ``max_tilt_deg`` of the camera's up (-y), any spin about it."""
    if max_tilt_deg >= 180.0:
        return _random_rotation(rng)
    spin = axis_angle_to_matrix(np.array([0.0, 0.0, rng.uniform(-np.pi, np.pi)]))
    z_to_up = axis_angle_to_matrix(np.array([np.pi / 2, 0.0, 0.0]))  # z -> -y
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    tilt = axis_angle_to_matrix(axis * np.deg2rad(rng.uniform(0.0, max_tilt_deg)))
    return tilt @ z_to_up @ spin


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def _tight_box(points: np.ndarray) -> np.ndarray:
    return np.concatenate([points.min(axis=0), points.max(axis=0)])


class SyntheticScenes:
    """Random synthetic hand-object frames; ``sample(i)`` is deterministic in (seed, i).

    Args:
        cache_dir: where the stand-in hand models (``hand_models/``) and the object models
            (``object_models/<class_id>/``) are written on first use.
        config: scene randomisation.
        seed: dataset seed.
        hand_model_dir: use MANO-format models from this directory instead of the generated stand-ins.
    """

    def __init__(self, cache_dir, config: SceneConfig | None = None, seed: int = 0, hand_model_dir=None):
        import torch

        from ..model.mano import ManoLayer, find_hand_model_file

        self._torch = torch
        self.config = config or SceneConfig()
        self.seed = int(seed)
        self.cache_dir = Path(cache_dir)
        unknown = [c for c in self.config.class_ids if c not in object_shapes()]
        if unknown:
            raise ValueError(
                f"no synthetic object for class ids {unknown}; available: {list(object_shapes())}"
            )
        self.shapes: dict[str, ObjectShape] = {c: object_shapes()[c] for c in self.config.class_ids}
        self.object_model_dir = write_object_models(self.cache_dir / "object_models", self.config.class_ids)
        if hand_model_dir is None:
            hand_model_dir = write_standin_hand_models(self.cache_dir / "hand_models")
        self.hand_model_dir = Path(hand_model_dir)
        self._layers = {
            side: ManoLayer(
                find_hand_model_file(self.hand_model_dir, side.value),
                side=side.value,
                flat_hand_mean=True,
                center_idx=None,
            )
            for side in Side
        }
        self._renderer: SceneRenderer | None = None
        self._control_points = {c: control_points(s.points) for c, s in self.shapes.items()}

    # -- hand model ------------------------------------------------------------------------------------------
    def hand_faces(self, side: Side) -> np.ndarray:
        return self._layers[Side(side)].faces

    def mano(self, side: Side, pose: np.ndarray, betas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(verts (778, 3), joints (21, 3)) in metres, zero MANO translation (wrist at its rest place)."""
        torch = self._torch
        with torch.no_grad():
            verts, joints = self._layers[Side(side)](
                torch.as_tensor(np.asarray(pose, np.float32).reshape(1, 48)),
                torch.as_tensor(np.asarray(betas, np.float32).reshape(1, 10)),
            )
        return verts[0].double().numpy(), joints[0].double().numpy()

    def anatomy(self, side: Side, betas: np.ndarray) -> HandAnatomy:
        _, rest = self.mano(side, np.zeros(48), betas)
        return hand_anatomy(rest, side)

    # -- random scene ----------------------------------------------------------------------------------------
    def _camera(self, rng: np.random.Generator) -> np.ndarray:
        width, height = self.config.image_size
        scale = width / 640.0
        f = rng.uniform(*self.config.focal_range) * scale
        return np.array(
            [
                [f, 0.0, width / 2.0 + rng.normal(0, 4.0) * scale],
                [0.0, f * rng.uniform(0.99, 1.01), height / 2.0 + rng.normal(0, 4.0) * scale],
                [0.0, 0.0, 1.0],
            ]
        )

    def _object_pose(
        self, rng: np.random.Generator, K: np.ndarray, grasp: Grasp, distance_range, centre_range
    ) -> tuple[np.ndarray, np.ndarray]:
        width, height = self.config.image_size
        while True:  # keep the palm side of the object towards the camera more often than not
            R = _upright_rotation(rng, self.config.max_tilt_deg)
            if (R @ grasp.approach)[2] < 0.45:
                break
        depth = rng.uniform(*distance_range)
        pixel = np.array([rng.uniform(*centre_range) * width, rng.uniform(*centre_range) * height, 1.0])
        return R, depth * np.linalg.solve(K, pixel)

    def _appearance(self, rng: np.random.Generator, shape: ObjectShape, rest_verts: np.ndarray) -> dict:
        width, height = self.config.image_size
        lights = []
        for _ in range(int(rng.integers(1, 3))):
            direction = np.array([rng.uniform(-1, 1), rng.uniform(-0.3, 1.0), rng.uniform(0.4, 1.5)])
            colour = np.clip(1.0 - np.abs(rng.normal(0, 0.08, 3)), 0.0, 1.0)
            lights.append(Light(direction / np.linalg.norm(direction), colour, float(rng.uniform(0.8, 2.6))))
        return {
            "texture": jitter_texture(rng, shape.texture),
            "skin": skin_vertex_colours(rng, rest_verts),
            "background": random_background(rng, height, width),
            "lights": lights,
            "ambient": float(rng.uniform(0.1, 0.35)),
            "object_roughness": float(rng.uniform(0.35, 0.9)),
            "noise_sigma": float(rng.uniform(0.5, 4.0)),
            "blur_sigma": float(rng.uniform(0.0, 1.0)) if rng.random() < 0.4 else 0.0,
            "noise_seed": int(rng.integers(2**31)),
        }

    def random_spec(
        self, rng: np.random.Generator, *, distance_range=None, centre_range=(0.3, 0.7)
    ) -> SceneSpec:
        """A random scene whose hand and object project inside the image (not yet checked for occlusion).

        ``distance_range`` (default: the config's) bounds the object's depth, ``centre_range`` where its
        centre projects, as fractions of the image size.
        """
        distance_range = distance_range or self.config.distance_range
        class_id = str(rng.choice(list(self.config.class_ids)))
        shape = self.shapes[class_id]
        side = Side.LEFT if rng.random() < self.config.left_hand_fraction else Side.RIGHT
        betas = np.clip(rng.normal(0.0, 0.8, 10), -2.0, 2.0)
        rest_verts, rest_joints = self.mano(side, np.zeros(48), betas)
        anatomy = hand_anatomy(rest_joints, side)
        K = self._camera(rng)
        appearance = self._appearance(rng, shape, rest_verts)
        for _ in range(self.config.max_attempts):
            grasp = sample_grasp(rng, anatomy, shape)
            object_R, object_t = self._object_pose(rng, K, grasp, distance_range, centre_range)
            spec = SceneSpec(class_id, side, betas, grasp, object_R, object_t, K, self.config.image_size,
                             **appearance)
            if self._inside_image(spec):
                break
        return spec

    def _hand(self, spec: SceneSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(pose (48,), verts, joints, MANO translation) of the hand in the camera frame."""
        R_hand = spec.object_R @ spec.grasp.rotation
        pose = np.concatenate([matrix_to_axis_angle(R_hand), spec.grasp.finger_pose])
        verts, joints = self.mano(spec.side, pose, spec.betas)
        rest_wrist = joints[0]  # with zero translation the wrist stays at its rest position
        trans = spec.object_R @ (rest_wrist + spec.grasp.translation) + spec.object_t - rest_wrist
        return pose, verts + trans, joints + trans, trans

    def _inside_image(self, spec: SceneSpec) -> bool:
        _, verts, joints, _ = self._hand(spec)
        cps = self._control_points[spec.class_id] @ spec.object_R.T + spec.object_t
        points = np.concatenate([verts, joints, cps])
        if points[:, 2].min() < 0.1:
            return False
        uv = project(points, spec.K)
        width, height = spec.image_size
        m = self.config.margin_px
        return bool(np.all((uv >= m) & (uv <= np.array([width - 1 - m, height - 1 - m]))))

    # -- rendering -------------------------------------------------------------------------------------------
    def render(self, spec: SceneSpec, *, meta: dict | None = None) -> HandObjectSample:
        """Render a scene into a sample (image in memory, masks, all annotations)."""
        if self._renderer is None:
            self._renderer = SceneRenderer()
        shape = self.shapes[spec.class_id]
        pose, verts, joints, trans = self._hand(spec)
        faces = self.hand_faces(spec.side)
        obj_verts = shape.mesh.vertices @ spec.object_R.T + spec.object_t
        out = self._renderer.render(
            spec.K,
            spec.image_size,
            [
                MeshInput(verts, faces, colours=spec.skin, roughness=0.75, double_sided=True),
                MeshInput(
                    obj_verts,
                    shape.mesh.faces,
                    uv=shape.mesh.uv,
                    texture=spec.texture,
                    roughness=spec.object_roughness,
                ),
            ],
            spec.lights,
            spec.ambient,
        )
        hand_depth, object_depth = out.depths
        hand_full, object_full = hand_depth > 0, object_depth > 0
        hand_mask = hand_full & (~object_full | (hand_depth <= object_depth))
        object_mask = object_full & ~hand_mask
        image = np.where((hand_full | object_full)[..., None], out.colour, spec.background)
        image = self._camera_effects(image, spec)

        cp3d = self._control_points[spec.class_id]
        cp2d = project(cp3d @ spec.object_R.T + spec.object_t, spec.K)
        joints2d = project(joints, spec.K)
        info = {
            "dataset": "synthetic",
            "mano_trans": trans,
            "hand_visible_fraction": float(hand_mask.sum() / max(hand_full.sum(), 1)),
            "object_visible_fraction": float(object_mask.sum() / max(object_full.sum(), 1)),
            "hand_mask_full": hand_full,
            "object_mask_full": object_full,
            **spec.meta,
            **(meta or {}),
        }
        return HandObjectSample(
            image_path=None,
            K=spec.K.copy(),
            side=spec.side,
            mano_pose=pose,
            mano_shape=np.asarray(spec.betas, np.float64).copy(),
            joints3d=joints,
            joints2d=joints2d,
            class_id=spec.class_id,
            object_name=shape.name,
            object_R=spec.object_R.copy(),
            object_t=spec.object_t.copy(),
            control_points3d=cp3d.copy(),
            control_points2d=cp2d,
            hand_box=_tight_box(joints2d),
            object_box=_tight_box(cp2d),
            image=image,
            object_mask=object_mask,
            hand_mask=hand_mask,
            verts3d=verts,
            hand_translation=joints[0].copy(),
            meta=info,
        )

    @staticmethod
    def _camera_effects(image: np.ndarray, spec: SceneSpec) -> np.ndarray:
        rng = np.random.default_rng(spec.noise_seed)
        out = image.astype(np.float32)
        if spec.blur_sigma > 0.3:
            out = cv2.GaussianBlur(out, (0, 0), spec.blur_sigma)
        out += rng.normal(0.0, spec.noise_sigma, out.shape).astype(np.float32)
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)

    # -- datasets and sequences ------------------------------------------------------------------------------
    def sample(self, index: int) -> HandObjectSample:
        """Sample ``index``: the first visible enough random scene drawn from the generator (seed, index)."""
        rng = np.random.default_rng([self.seed, int(index)])
        best = None
        for attempt in range(self.config.max_attempts):
            sample = self.render(
                self.random_spec(rng), meta={"seed": self.seed, "index": int(index), "attempt": attempt}
            )
            visible = min(sample.meta["hand_visible_fraction"], sample.meta["object_visible_fraction"])
            if visible >= self.config.min_visible_fraction:
                return sample
            if best is None or visible > min(
                best.meta["hand_visible_fraction"], best.meta["object_visible_fraction"]
            ):
                best = sample
        return best

    def samples(self, count: int, start: int = 0) -> Iterator[HandObjectSample]:
        for index in range(start, start + count):
            yield self.sample(index)

    def sequence(self, num_frames: int, index: int = 0, fps: float = 15.0) -> Iterator[HandObjectSample]:
        """A smooth clip: the hand holds the object and moves it (translation, rotation, finger motion).

        Appearance, camera and grasp are fixed; the pose follows slow sinusoids starting from scene ``index``.
        """
        rng = np.random.default_rng([self.seed, int(index), 7])
        base = None
        for _ in range(self.config.max_attempts):
            base = self.random_spec(rng, distance_range=(0.38, 0.48), centre_range=(0.42, 0.58))
            test = self.render(base)
            if min(test.meta["hand_visible_fraction"], test.meta["object_visible_fraction"]) >= 0.5:
                break
        amplitude_t = np.array([0.05, 0.03, 0.05]) * rng.uniform(0.6, 1.0, 3)
        phase = rng.uniform(0, 2 * np.pi, 6)
        spin_axis = rng.normal(size=3)
        spin_axis /= np.linalg.norm(spin_axis)
        for frame in range(num_frames):
            t = frame / fps
            offset = amplitude_t * np.sin(2 * np.pi * 0.25 * t + phase[:3])
            angles = 0.35 * np.sin(2 * np.pi * 0.2 * t + phase[3:])
            R = axis_angle_to_matrix(angles * 0.5 + spin_axis * 0.6 * np.sin(2 * np.pi * 0.15 * t))
            curl = 1.0 + 0.2 * np.sin(2 * np.pi * 0.5 * t + phase[0])
            grasp = replace(base.grasp, finger_pose=base.grasp.finger_pose * curl)
            spec = replace(
                base,
                object_R=R @ base.object_R,
                object_t=base.object_t + offset,
                grasp=grasp,
                noise_seed=int(base.noise_seed + frame),
            )
            yield self.render(spec, meta={"seed": self.seed, "index": int(index), "frame": frame})

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def __enter__(self) -> SyntheticScenes:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
