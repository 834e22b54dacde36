"""Boxes, camera validation, the network crop and left-hand mirroring."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from hfl_ros.errors import BadBoxError, BadCameraError
from hfl_ros.geometry.boxes import box_from_points, intersection_area, iou, scale_box, union, validate_box
from hfl_ros.geometry.camera import project, validate_K
from hfl_ros.geometry.crop import (
    CropTransform,
    crop_for_pair,
    mirror_box,
    mirror_image,
    mirror_K,
    mirror_points_2d,
    warp_homography,
    warp_image,
)

K = np.array([[600.0, 0.0, 321.5], [0.0, 610.0, 239.0], [0.0, 0.0, 1.0]])
WH = (640, 480)


# --- camera -------------------------------------------------------------------------------------------------


def test_validate_K_accepts_flat_and_square():
    np.testing.assert_array_equal(validate_K(K.reshape(-1).tolist()), K)
    assert validate_K(K).dtype == np.float64


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (None, "missing"),
        (np.eye(2), "9 values"),
        (np.where(np.eye(3) > 0, np.nan, 0.0), "non-finite"),
        (np.zeros((3, 3)), "positive focal"),
        (np.diag([-1.0, 1.0, 1.0]), "positive focal"),
        (np.array([[1.0, 0, 0], [0, 1, 0], [0, 0, 0]]), "last row"),
        (np.array([[1.0, 1.0, 0], [1.0, 1.0, 0], [0, 0, 1]]), "singular"),
    ],
)
def test_validate_K_refuses(bad, message):
    with pytest.raises(BadCameraError, match=message):
        validate_K(bad)


def test_project_pinhole():
    uv = project([[0.1, -0.2, 2.0]], K)
    np.testing.assert_allclose(uv, [[600 * 0.05 + 321.5, 610 * -0.1 + 239.0]])


# --- boxes --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("box", "message"),
    [
        ([np.nan, 0, 10, 10], "non-finite"),
        ([0, 0, np.inf, 10], "non-finite"),
        ([10, 10, 10, 20], "empty or inverted"),
        ([10, 30, 20, 20], "empty or inverted"),
        ([700, 10, 720, 30], "entirely outside the 640x480 image"),
        ([-30, 10, -5, 30], "entirely outside"),
        ([10, 480, 20, 490], "entirely outside"),
        ([10, 10, 11.5, 40], "below the minimum of 2 px"),
        ([639, 10, 650, 40], "below the minimum of 2 px"),
        ([1, 2, 3], "4 values"),
    ],
)
def test_validate_box_refuses(box, message):
    with pytest.raises(BadBoxError, match=message):
        validate_box(box, WH)


def test_validate_box_clips_partly_outside():
    np.testing.assert_array_equal(validate_box([-10, -5, 100, 500], WH), [0, 0, 100, 480])
    np.testing.assert_array_equal(validate_box([5, 6, 7.5, 9], WH), [5, 6, 7.5, 9])


def test_box_from_points_truncates_centre():
    pts = np.array([[10.0, 20.0], [15.0, 31.0], [12.0, 25.0]])  # centre (12.5, 25.5) -> (12, 25)
    np.testing.assert_allclose(box_from_points(pts, 1.0), [12 - 2.5, 25 - 5.5, 12 + 2.5, 25 + 5.5])
    np.testing.assert_allclose(box_from_points(pts, 1.5), [12 - 3.75, 25 - 8.25, 12 + 3.75, 25 + 8.25])


def test_union_intersection_iou():
    a, b = np.array([0, 0, 10, 10.0]), np.array([5, 5, 15, 20.0])
    np.testing.assert_array_equal(union(a, b), [0, 0, 15, 20])
    assert intersection_area(a, b) == 25
    assert iou(a, b) == pytest.approx(25 / (100 + 150 - 25))
    assert iou(a, [20, 20, 30, 30]) == 0
    matrix = iou(np.stack([a, b])[:, None], np.stack([a, b, [20, 20, 30, 30.0]])[None])
    assert matrix.shape == (2, 3)
    np.testing.assert_allclose(np.diag(matrix[:, :2]), [1, 1])
    np.testing.assert_allclose(scale_box([10, 20, 30, 60], 1.5), [5, 10, 35, 70])


# --- crop ---------------------------------------------------------------------------------------------------


def test_crop_for_pair_follows_spec():
    hand, obj = np.array([100.0, 120.0, 180.0, 200.0]), np.array([150.0, 100.0, 300.0, 190.0])
    crop = crop_for_pair(hand, obj, WH, size=256)
    # f=1.5 boxes: hand [80,100,200,220], object [112.5,77.5,337.5,212.5]; union [80,77.5,337.5,220]
    assert crop.centre == (208.0, 148.0)  # trunc(208.75), trunc(148.75)
    assert crop.scale == pytest.approx(257.5)
    s, ox, oy = 256 / 257.5, 256 * (0.5 - 208 / 257.5), 256 * (0.5 - 148 / 257.5)
    np.testing.assert_allclose(crop.matrix, [[s, 0, ox], [0, s, oy]])


def test_crop_is_clipped_to_the_image():
    crop = crop_for_pair([600.0, 400.0, 640.0, 480.0], None, WH)
    # f=1.5 box [590,380,650,500] clipped to [590,380,640,480]
    assert crop.centre == (615.0, 430.0)
    assert crop.scale == pytest.approx(100.0)


def test_crop_round_trip_points_and_K():
    crop = crop_for_pair([100.0, 120.0, 180.0, 200.0], [150.0, 100.0, 300.0, 190.0], WH)
    pts = np.random.default_rng(0).uniform(0, 640, (50, 2))
    np.testing.assert_allclose(crop.invert(crop.apply(pts)), pts, atol=1e-9)
    # K' = A K: projecting with K' equals cropping the projection with K.
    p3 = np.random.default_rng(1).uniform([-0.2, -0.2, 0.4], [0.2, 0.2, 1.0], (30, 3))
    np.testing.assert_allclose(project(p3, crop.apply_K(K)), crop.apply(project(p3, K)), atol=1e-9)
    box = np.array([110.0, 130.0, 170.0, 190.0])
    np.testing.assert_allclose(crop.apply_box(box), np.r_[crop.apply(box[:2]), crop.apply(box[2:])])


def _pil_crop(image: np.ndarray, crop: CropTransform) -> np.ndarray:
    A = np.vstack([crop.matrix, [0, 0, 1]])
    inv = np.linalg.inv(A)
    data = tuple(inv[:2].reshape(-1))
    return np.asarray(Image.fromarray(image).transform((crop.size, crop.size), Image.AFFINE, data))


@pytest.mark.parametrize(
    "boxes",
    [
        ([100.0, 120.0, 180.0, 200.0], [150.0, 100.0, 300.0, 190.0]),  # downscale
        ([300.0, 200.0, 340.0, 250.0], None),  # upscale
        ([560.0, 400.0, 639.0, 479.0], [500.0, 380.0, 620.0, 470.0]),  # at the image corner: black fill
    ],
)
def test_warp_matches_pil_nearest(boxes):
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    crop = crop_for_pair(*boxes, WH, size=256)
    ours, pil = warp_image(image, crop), _pil_crop(image, crop)
    assert ours.shape == pil.shape == (256, 256, 3)
    np.testing.assert_array_equal(ours, pil)


def test_warp_matches_pil_on_random_crops():
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    for _ in range(40):
        x1, y1 = rng.uniform(-50, 600), rng.uniform(-50, 440)
        w, h = rng.uniform(5, 300, 2)
        crop = crop_for_pair([x1, y1, x1 + w, y1 + h], None, WH, size=int(rng.integers(64, 300)))
        ours, pil = warp_image(image, crop), _pil_crop(image, crop)
        # Source coordinates exactly on a pixel border are rounding-dependent in both implementations.
        centres = np.arange(crop.size) + 0.5
        on_border = [np.abs(u - np.round(u)) < 1e-9 for u in (crop.invert(np.c_[centres, centres]).T)]
        rows, cols = ~on_border[1], ~on_border[0]
        assert (~rows).sum() <= 2 and (~cols).sum() <= 2
        np.testing.assert_array_equal(ours[rows][:, cols], pil[rows][:, cols], err_msg=str(crop))
    exact = CropTransform(centre=(300.0, 200.0), scale=256.0, size=256)  # s = 1: borders hit exactly
    np.testing.assert_array_equal(warp_image(image, exact), image[72:328, 172:428])
    np.testing.assert_array_equal(warp_image(image, exact), _pil_crop(image, exact))


def test_rotated_warp_matches_pil_perspective_transform():
    rng = np.random.default_rng(8)
    image = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    c, s = np.cos(0.4), np.sin(0.4)
    H = np.array([[0.7 * c, -0.7 * s, 100.0], [0.7 * s, 0.7 * c, 60.0], [0.0, 0.0, 1.0]])
    ours = warp_homography(image, H, 200)
    inverse = np.linalg.inv(H)
    pil = np.asarray(Image.fromarray(image).transform(
        (200, 200), Image.Transform.PERSPECTIVE, tuple((inverse / inverse[2, 2]).ravel()[:8])
    ))
    # PIL samples in float32: a few pixels whose source lies on a pixel border may differ.
    assert np.mean(np.any(ours != pil, axis=-1)) < 0.002
    xs, ys = np.meshgrid(np.arange(200) + 0.5, np.arange(200) + 0.5)
    src = inverse @ np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)])
    outside = ((src[0] < 0) | (src[0] >= 640) | (src[1] < 0) | (src[1] >= 480)).reshape(200, 200)
    assert outside.sum() > 1000 and np.all(ours[outside] == 0)  # black outside the image


def test_warp_fills_outside_black():
    image = np.full((480, 640, 3), 200, np.uint8)
    crop = CropTransform(centre=(630.0, 470.0), scale=100.0, size=100)  # half of the crop is outside
    out = warp_image(image, crop)
    assert np.all(out[:50, :50] == 200)
    assert np.all(out[-40:, :] == 0) and np.all(out[:, -40:] == 0)


# --- mirroring ----------------------------------------------------------------------------------------------


def test_mirroring_is_consistent():
    image = np.random.default_rng(3).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    mirrored = mirror_image(image)
    assert mirrored.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(mirrored[:, 639 - 17], image[:, 17])
    np.testing.assert_allclose(mirror_points_2d([[0.0, 5.0], [639.0, 7.0]], 640), [[639, 5], [0, 7]])
    np.testing.assert_allclose(mirror_box([10.0, 20.0, 110.0, 60.0], 640), [529, 20, 629, 60])
    # 3D points with x negated project with the mirrored K onto the mirrored pixels.
    p3 = np.random.default_rng(4).uniform([-0.2, -0.2, 0.4], [0.2, 0.2, 1.0], (20, 3))
    Km = mirror_K(K, 640)
    np.testing.assert_allclose(project(p3 * [-1, 1, 1], Km), mirror_points_2d(project(p3, K), 640), atol=1e-9)
