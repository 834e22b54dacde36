"""Training augmentation (spec §1): crop jitter and scale, rotation about the optical axis, blur and colour
jitter. The crop is inference's :class:`~hfl_ros.geometry.crop.CropTransform`, moved and rescaled; the crop
region it starts from and the image warp are those of inference too (hfl_ros.geometry.crop).

The rotation is applied to the 3D scene: points X -> Rz X with Rz a rotation about the camera's z axis. Its
image is the homography K Rz K^-1, which for fx = fy is the spec's rotation of the image about the principal
point; the crop's K' = A K then projects the rotated 3D targets onto the warped image exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from ..geometry.crop import CropTransform


@dataclass
class AugmentConfig:
    """Augmentation parameters; the defaults are the spec's (HO3D rotation)."""

    enabled: bool = True
    centre_jitter: float = 0.1  # crop centre + U(-c, c) * scale on each axis
    scale_jitter: float = 0.2  # crop scale * clip(1 + s * N(0, 1), *scale_clip)
    scale_clip: tuple[float, float] = (0.8, 1.2)
    rotation: str = "uniform"  # "uniform": U(-max, max) (HO3D); "gaussian": DexYCB's; "none"
    rotation_max_deg: float = 180.0
    rotation_sigma_deg: float = 30.0  # gaussian: clip(N(0, 1), +-clip_sigmas) * sigma with probability prob
    rotation_clip_sigmas: float = 2.0
    rotation_prob: float = 0.6
    blur_radius: float = 0.5  # Gaussian blur radius U(0, r)
    brightness: float = 0.5
    contrast: float = 0.5
    saturation: float = 0.5
    hue: float = 0.15

    def __post_init__(self) -> None:
        if self.rotation not in ("uniform", "gaussian", "none"):
            raise ValueError(f"rotation must be 'uniform', 'gaussian' or 'none', got {self.rotation!r}")
        self.scale_clip = tuple(float(v) for v in self.scale_clip)  # type: ignore[assignment]

    @classmethod
    def for_dataset(cls, kind: str, **overrides) -> AugmentConfig:
        """The spec's settings for "ho3d" (uniform rotation) or "dexycb" (gaussian rotation)."""
        rotation = "gaussian" if kind == "dexycb" else "uniform"
        return cls(**{"rotation": rotation, **overrides})


def sample_rotation(rng: np.random.Generator, cfg: AugmentConfig) -> float:
    """The augmentation's rotation angle about the camera z axis (radians), drawn as ``cfg.rotation`` says."""
    if cfg.rotation == "uniform":
        return float(rng.uniform(-1.0, 1.0) * math.radians(cfg.rotation_max_deg))
    if cfg.rotation == "gaussian":
        angle = np.clip(rng.standard_normal(), -cfg.rotation_clip_sigmas, cfg.rotation_clip_sigmas)
        angle = float(angle) * math.radians(cfg.rotation_sigma_deg)
        return angle if rng.uniform() <= cfg.rotation_prob else 0.0
    return 0.0


def rotation_z(angle: float) -> np.ndarray:
    """Rotation by ``angle`` about the camera z axis (x right, y down: clockwise on screen for angle > 0)."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rotation_homography(K, angle: float) -> np.ndarray:
    """Image px -> image px of the scene rotated about the camera z axis: K Rz K^-1."""
    K = np.asarray(K, dtype=np.float64)
    return K @ rotation_z(angle) @ np.linalg.inv(K)


def apply_homography(H, points) -> np.ndarray:
    """Points (..., 2) -> their images under the 3x3 homography ``H``, as (N, 2)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    uvw = np.concatenate([pts, np.ones((len(pts), 1))], axis=1) @ np.asarray(H).T
    return uvw[:, :2] / uvw[:, 2:3]


@dataclass(frozen=True)
class AugmentedCrop:
    """The training crop: the scene rotated by ``angle`` about the camera z axis, then cut by ``crop``.

    ``crop`` is placed in the rotated image; ``crop.apply_K(K)`` is the camera matrix that projects the
    rotated 3D targets onto the crop.
    """

    crop: CropTransform
    angle: float  # radians, about the camera z axis

    @property
    def rotation(self) -> np.ndarray:
        """The rotation applied to the 3D scene."""
        return rotation_z(self.angle)

    def homography(self, K) -> np.ndarray:
        """Image px -> crop px (rotation, then the crop affine)."""
        A = self.crop.homography
        return A @ rotation_homography(K, self.angle) if self.angle else A


def sample_crop(
    rng: np.random.Generator | None, region: CropTransform, K, cfg: AugmentConfig | None
) -> AugmentedCrop:
    """Jitter the crop region's centre and scale and draw the rotation; the centre moves with the rotated
    image. Without ``rng`` or an enabled ``cfg``, the region itself, unrotated."""
    if rng is None or cfg is None or not cfg.enabled:
        return AugmentedCrop(region, 0.0)
    jitter = rng.uniform(-cfg.centre_jitter, cfg.centre_jitter, 2) * region.scale
    c = np.asarray(region.centre, dtype=np.float64) + jitter
    lo, hi = cfg.scale_clip
    scale = region.scale * float(np.clip(1.0 + cfg.scale_jitter * rng.standard_normal(), lo, hi))
    angle = sample_rotation(rng, cfg)
    if angle:
        c = apply_homography(rotation_homography(K, angle), c)[0]
    return AugmentedCrop(CropTransform((float(c[0]), float(c[1])), float(scale), region.size), angle)


def photometric(image: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """Gaussian blur with radius U(0, r), then brightness / contrast / saturation / hue jitter in random order
    (torchvision ColorJitter's factor ranges), drawn from ``rng``."""
    from torchvision.transforms import functional as tvf

    img = Image.fromarray(image)
    if cfg.blur_radius > 0:
        img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.0, cfg.blur_radius))))
    ops = [
        (tvf.adjust_brightness, cfg.brightness, False),
        (tvf.adjust_contrast, cfg.contrast, False),
        (tvf.adjust_saturation, cfg.saturation, False),
        (tvf.adjust_hue, cfg.hue, True),
    ]
    for i in rng.permutation(len(ops)):
        fn, amount, is_hue = ops[i]
        if amount <= 0:
            continue
        factor = rng.uniform(-amount, amount) if is_hue else rng.uniform(max(0.0, 1 - amount), 1 + amount)
        img = fn(img, float(factor))
    return np.asarray(img, dtype=np.uint8)
