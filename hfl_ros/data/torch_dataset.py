"""The training Dataset: HandObjectSamples -> network crops and loss targets (spec §1, §7).

Each item is a dict of tensors:

- ``image`` (3, S, S) float RGB in [0, 1] (no mean/std), the warped, augmented crop;
- ``hand_box`` (4,) crop px: the f=1.1 box of the hand 2D joints; ``object_box`` (4,): the f=1.0 box of the
  projected control points;
- ``joints2d`` (21, 2) crop px and ``joints2d_box`` (21, 2): the same as fractions of the hand box;
- ``control_points2d_box`` (21, 2): control points as fractions of the object box;
- ``object_mask`` (32, 32): the object mask inside the object box (NEAREST), all ones when no mask is known;
- ``mano_pose`` (48,) axis-angle with the augmentation's rotation applied to the global rotation,
  ``mano_shape`` (10,), ``joints3d`` (21, 3) wrist-relative metres (rotated), ``K`` (3, 3) of the crop;
- ``has_mano`` and ``has_mask`` (0/1), and ``index`` (the sample's index).

Left hands are mirrored (image x -> W-1-x) and their targets with them: MANO axis-angle y and z negated,
3D x negated, 2D points and masks mirrored, so the network always sees a right hand.

Items are requested as ``dataset[(index, seed)]`` (what :class:`EpochSampler` yields): the augmentation is
drawn from ``numpy.random.default_rng(seed)``, so every item is reproducible whatever the worker.
A plain ``dataset[index]`` uses the seed ``(0, index)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ..errors import BadBoxError, InputError
from ..geometry.boxes import box_from_points
from ..geometry.crop import (
    CROP_BOX_FACTOR,
    crop_for_pair,
    mirror_image,
    mirror_K,
    mirror_points_2d,
    warp_homography,
)
from ..geometry.rotations import MIRROR_X, axis_angle_to_matrix, matrix_to_axis_angle, mirror_mano_pose
from ..results import Side
from .augment import AugmentConfig, apply_homography, photometric, sample_crop
from .sample import HandObjectSample

MASK_RES = 32
HAND_BOX_FACTOR = 1.1
OBJECT_BOX_FACTOR = 1.0


class UnusableSampleError(InputError):
    """A sample that cannot give a training item (no hand annotation, degenerate crop)."""

    reason = "unusable_sample"


def _finite(a) -> bool:
    return a is not None and bool(np.all(np.isfinite(np.asarray(a, dtype=np.float64))))


def mirror_sample_targets(sample: HandObjectSample, width: int) -> dict[str, np.ndarray]:
    """The left-hand sample's geometry as seen in the mirrored image (as a right hand)."""
    return {
        "K": mirror_K(sample.K, width),
        "joints3d": np.asarray(sample.joints3d, dtype=np.float64) @ MIRROR_X,
        "joints2d": mirror_points_2d(sample.joints2d, width),
        "control_points2d": mirror_points_2d(sample.control_points2d, width),
        "mano_pose": mirror_mano_pose(sample.mano_pose),
    }


def _resize_mask(mask: np.ndarray | None, hw: tuple[int, int]) -> np.ndarray | None:
    if mask is None:
        return None
    mask = np.asarray(mask).astype(np.uint8)
    if mask.shape != hw:
        mask = cv2.resize(mask, (hw[1], hw[0]), interpolation=cv2.INTER_NEAREST)
    return mask


def box_mask(mask_crop: np.ndarray, box, res: int = MASK_RES) -> np.ndarray:
    """The mask inside a box resampled to res x res with NEAREST: cell (r, c) reads the pixel under its centre
    (pixels outside the crop count as background)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    xs = np.floor(x1 + (np.arange(res) + 0.5) * (x2 - x1) / res).astype(int)
    ys = np.floor(y1 + (np.arange(res) + 0.5) * (y2 - y1) / res).astype(int)
    h, w = mask_crop.shape
    inside = (ys[:, None] >= 0) & (ys[:, None] < h) & (xs[None] >= 0) & (xs[None] < w)
    values = mask_crop[np.clip(ys, 0, h - 1)[:, None], np.clip(xs, 0, w - 1)[None]]
    return ((values > 0) & inside).astype(np.float32)


class HandObjectTrainingDataset(Dataset):
    """Crops and targets for training from a sequence of :class:`HandObjectSample` (HO3D, DexYCB, synthetic).

    Args:
        samples: the reader (indexable, with ``len``).
        input_size: side of the network crop (256 as published).
        augment: the augmentation, or None for plain crops (evaluation-style targets).
        max_retries: an unusable sample (no hand annotation, or a hand box that is degenerate once clipped to
            the image, which DexYCB training drops) is replaced by the next index, up to this many times.
    """

    def __init__(
        self,
        samples: Sequence[HandObjectSample],
        *,
        input_size: int = 256,
        augment: AugmentConfig | None = None,
        max_retries: int = 64,
    ):
        self.samples = samples
        self.input_size = int(input_size)
        self.augment = augment if augment is not None and augment.enabled else None
        self.max_retries = max_retries

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key) -> dict[str, torch.Tensor]:
        index, seed = key if isinstance(key, tuple) else (int(key), (0, int(key)))
        last_error: UnusableSampleError | None = None
        for attempt in range(min(self.max_retries, len(self)) + 1):
            i = (int(index) + attempt) % len(self)
            try:
                return self.item(i, np.random.default_rng([*np.atleast_1d(seed).tolist(), attempt]))
            except UnusableSampleError as exc:
                last_error = exc
        raise UnusableSampleError(f"no usable sample near index {index}: {last_error}")

    def item(self, index: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """The crop and targets of sample ``index`` with augmentation drawn from ``rng``."""
        sample = self.samples[index]
        if not (_finite(sample.joints2d) and _finite(sample.control_points2d)):
            raise UnusableSampleError(f"sample {index} has no complete 2D hand or object annotation")
        image = sample.load_image()
        height, width = image.shape[:2]
        K = np.asarray(sample.K, dtype=np.float64)
        joints3d = np.asarray(sample.joints3d, dtype=np.float64)
        joints2d = np.asarray(sample.joints2d, dtype=np.float64)
        cp2d = np.asarray(sample.control_points2d, dtype=np.float64)
        pose = np.asarray(sample.mano_pose, dtype=np.float64).reshape(48)
        object_mask = _resize_mask(sample.object_mask, (height, width))
        if sample.side is Side.LEFT:
            image = mirror_image(image)
            m = mirror_sample_targets(sample, width)
            K, joints3d, joints2d, pose = m["K"], m["joints3d"], m["joints2d"], m["mano_pose"]
            cp2d = m["control_points2d"]
            object_mask = None if object_mask is None else np.ascontiguousarray(object_mask[:, ::-1])

        S = self.input_size
        try:  # the f=1.5 boxes of the points (spec §1), as inference builds the crop from the f=1.0 boxes
            region = crop_for_pair(box_from_points(joints2d), box_from_points(cp2d), (width, height), size=S)
        except BadBoxError as exc:
            raise UnusableSampleError(f"sample {index}: {exc}") from None
        hand_clip = box_from_points(joints2d, CROP_BOX_FACTOR)
        clipped = np.minimum(hand_clip[2:], (width, height)) - np.maximum(hand_clip[:2], 0.0)
        if region.scale <= 1.0 or np.any(clipped <= 0):
            raise UnusableSampleError(f"sample {index}: the hand box is degenerate inside the image")
        augmented = sample_crop(rng if self.augment else None, region, K, self.augment)
        H = augmented.homography(K)
        R_aug = augmented.rotation

        crop = warp_homography(image, H, S)
        if self.augment is not None:
            crop = photometric(crop, rng, self.augment)
        joints2d_c = apply_homography(H, joints2d)
        cp2d_c = apply_homography(H, cp2d)
        hand_box = box_from_points(joints2d_c, HAND_BOX_FACTOR)
        object_box = box_from_points(cp2d_c, OBJECT_BOX_FACTOR)
        if object_mask is not None:
            mask32 = box_mask(warp_homography(object_mask, H, S), object_box)
        else:
            mask32 = np.ones((MASK_RES, MASK_RES), np.float32)

        has_mano = _finite(pose) and _finite(sample.mano_shape) and _finite(joints3d)
        if has_mano:
            pose = pose.copy()
            pose[:3] = matrix_to_axis_angle(R_aug @ axis_angle_to_matrix(pose[:3]))
            joints_rel = (joints3d - joints3d[0]) @ R_aug.T
            shape = np.asarray(sample.mano_shape, dtype=np.float64)
        else:
            pose, shape, joints_rel = np.zeros(48), np.zeros(10), np.zeros((21, 3))

        def box_fraction(points, box):
            return (points - box[:2]) / np.maximum(box[2:] - box[:2], 1e-6)

        f32 = torch.float32
        return {
            "image": torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1))).to(f32) / 255.0,
            "hand_box": torch.tensor(hand_box, dtype=f32),
            "object_box": torch.tensor(object_box, dtype=f32),
            "joints2d": torch.tensor(joints2d_c, dtype=f32),
            "joints2d_box": torch.tensor(box_fraction(joints2d_c, hand_box), dtype=f32),
            "control_points2d_box": torch.tensor(box_fraction(cp2d_c, object_box), dtype=f32),
            "object_mask": torch.from_numpy(mask32),
            "mano_pose": torch.tensor(pose, dtype=f32),
            "mano_shape": torch.tensor(shape, dtype=f32),
            "joints3d": torch.tensor(joints_rel, dtype=f32),
            "K": torch.tensor(augmented.crop.apply_K(K), dtype=f32),
            "has_mano": torch.tensor(float(has_mano)),
            "has_mask": torch.tensor(float(object_mask is not None)),
            "index": torch.tensor(index),
        }


class EpochSampler(Sampler):
    """Shuffled, rank-sharded indices with their augmentation seeds, reproducible from (seed, epoch).

    The order is DistributedSampler's (``randperm`` with a generator seeded ``seed + epoch``, padded by
    wrapping around to a multiple of the world size, every ``world_size``-th index from ``rank``). Each item
    is ``(index, (seed, epoch, position))``. ``skip`` drops the first items of the epoch, so that a resumed
    run continues with exactly the batches it had not seen.
    """

    def __init__(
        self, length: int, *, seed: int = 0, shuffle: bool = True, rank: int = 0, world_size: int = 1
    ):
        if length <= 0:
            raise InputError("the training set is empty")
        self.length, self.seed, self.shuffle = length, int(seed), shuffle
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.skip = 0
        self.per_rank = math.ceil(length / world_size)

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = int(epoch), int(skip)

    def indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.length, generator=g).tolist()
        else:
            order = list(range(self.length))
        total = self.per_rank * self.world_size
        order = (order * math.ceil(total / len(order)))[:total]
        return order[self.rank : total : self.world_size]

    def __iter__(self) -> Iterator[tuple[int, tuple[int, int, int]]]:
        for position, index in enumerate(self.indices()):
            if position >= self.skip:
                yield index, (self.seed, self.epoch, position * self.world_size + self.rank)

    def __len__(self) -> int:
        return self.per_rank - self.skip
