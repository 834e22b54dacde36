"""Procedural images for synthetic scenes: object textures, backgrounds and skin tones (numpy and cv2 only).

Object textures have a fixed layout per class (like a printed product label), so that an object's orientation
can be told from its appearance; each sample only jitters their colours. Backgrounds are random per sample.
"""

from __future__ import annotations

import zlib

import cv2
import numpy as np

#: RGB skin tones (0..1), light to dark, that hand colours are drawn around.
SKIN_TONES: tuple[tuple[float, float, float], ...] = (
    (0.96, 0.80, 0.69),
    (0.91, 0.72, 0.58),
    (0.82, 0.62, 0.47),
    (0.70, 0.50, 0.36),
    (0.55, 0.37, 0.25),
    (0.40, 0.26, 0.17),
)


def value_noise(
    rng: np.random.Generator, height: int, width: int, cells: int, octaves: int = 3
) -> np.ndarray:
    """Smooth noise in [0, 1], (H, W) float32: bicubic-upsampled random grids summed over octaves."""
    out = np.zeros((height, width), np.float32)
    weight_sum = 0.0
    for octave in range(octaves):
        n = max(2, cells * 2**octave)
        grid = rng.random((n, n)).astype(np.float32)
        out += cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC) / 2**octave
        weight_sum += 1.0 / 2**octave
    out /= weight_sum
    lo, hi = float(out.min()), float(out.max())
    return (out - lo) / max(hi - lo, 1e-6)


def random_colour(rng: np.random.Generator, saturation=(0.3, 1.0), value=(0.2, 1.0)) -> np.ndarray:
    """An RGB colour in [0, 255] (float) with a random hue and the given saturation and value ranges."""
    hsv = np.array(
        [[[rng.uniform(0, 180), rng.uniform(*saturation) * 255, rng.uniform(*value) * 255]]], np.float32
    )
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


def _draw_random_shapes(rng: np.random.Generator, image: np.ndarray, count: int, max_size: float) -> None:
    """Draw random filled rectangles, circles and thick lines onto ``image`` (uint8, in place)."""
    height, width = image.shape[:2]
    for _ in range(count):
        colour = tuple(int(c) for c in random_colour(rng))
        kind = rng.integers(3)
        x, y = int(rng.uniform(0, width)), int(rng.uniform(0, height))
        size = max(2, int(rng.uniform(0.05, max_size) * max(width, height)))
        if kind == 0:
            w, h = size, max(2, int(size * rng.uniform(0.2, 1.5)))
            cv2.rectangle(image, (x - w // 2, y - h // 2), (x + w // 2, y + h // 2), colour, -1)
        elif kind == 1:
            cv2.circle(image, (x, y), size // 2, colour, -1, lineType=cv2.LINE_AA)
        else:
            angle = rng.uniform(0, np.pi)
            dx, dy = int(np.cos(angle) * size), int(np.sin(angle) * size)
            thickness = max(1, int(rng.uniform(0.005, 0.03) * max(width, height)))
            cv2.line(image, (x - dx, y - dy), (x + dx, y + dy), colour, thickness, lineType=cv2.LINE_AA)


def random_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A random textured (H, W, 3) uint8 image: a two-colour noise field, stripes or tiles, plus clutter."""
    c1, c2 = random_colour(rng, (0.0, 0.8)), random_colour(rng, (0.0, 0.8))
    style = rng.integers(3)
    if style == 0:
        t = value_noise(rng, height, width, int(rng.integers(2, 8)))
    elif style == 1:
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        angle, period = rng.uniform(0, np.pi), rng.uniform(8, 80)
        t = 0.5 + 0.5 * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
        t = 0.7 * t + 0.3 * value_noise(rng, height, width, 4)
    else:
        tile = max(4, int(rng.uniform(10, 60)))
        yy, xx = np.mgrid[0:height, 0:width]
        t = (((xx // tile) + (yy // tile)) % 2).astype(np.float32)
        t = 0.8 * t + 0.2 * value_noise(rng, height, width, 6)
    image = (c1[None, None] * (1 - t[..., None]) + c2[None, None] * t[..., None]).astype(np.uint8)
    _draw_random_shapes(rng, image, int(rng.integers(3, 12)), 0.35)
    # brightness falloff, as from a lamp, then mild blur: backgrounds are usually out of focus
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    cx, cy = rng.uniform(0, width), rng.uniform(0, height)
    falloff = 1.0 - rng.uniform(0.0, 0.5) * np.hypot(xx - cx, yy - cy) / np.hypot(width, height)
    image = np.clip(image * falloff[..., None], 0, 255).astype(np.uint8)
    sigma = rng.uniform(0.0, 2.0)
    return cv2.GaussianBlur(image, (0, 0), sigma) if sigma > 0.3 else image


def class_texture(class_id: str, size: int = 256) -> np.ndarray:
    """The fixed printed-label texture of an object class, (size, size, 3) uint8.

    Laid out as a 2x3 atlas of cells (see :mod:`hfl_ros.data.shapes`): each cell differs, and each holds an
    asymmetric motif, so every face and side of the object looks different.
    """
    rng = np.random.default_rng(zlib.crc32(f"hfl_ros.texture.{class_id}".encode()))
    base = random_colour(rng, (0.5, 1.0), (0.5, 1.0))
    accent = random_colour(rng, (0.6, 1.0), (0.3, 0.9))
    t = value_noise(rng, size, size, 6, octaves=2)[..., None]
    image = (base[None, None] * (0.85 + 0.15 * t)).astype(np.uint8)
    cell_h, cell_w = size // 2, size // 3
    for row in range(2):
        for col in range(3):
            y0, x0 = row * cell_h, col * cell_w
            cell = image[y0 : y0 + cell_h, x0 : x0 + cell_w]
            # a band off-centre, a "logo" blob and a few text-like bars, all at random fixed places
            band_y = int(rng.uniform(0.1, 0.6) * cell_h)
            cell[band_y : band_y + int(cell_h * rng.uniform(0.1, 0.25))] = accent.astype(np.uint8)
            _draw_random_shapes(rng, cell, 4, 0.25)
            for k in range(int(rng.integers(2, 6))):
                y = int(rng.uniform(0.05, 0.9) * cell_h)
                x1 = int(rng.uniform(0.05, 0.4) * cell_w)
                x2 = int(rng.uniform(0.5, 0.95) * cell_w)
                dark = (20 + 30 * k) % 120
                cv2.rectangle(cell, (x1, y), (x2, y + max(1, cell_h // 40)), (dark, dark, dark), -1)
    return image


def jitter_texture(rng: np.random.Generator, texture: np.ndarray) -> np.ndarray:
    """A colour-jittered copy of a texture: small hue shift, saturation and value scaling, pixel noise."""
    hsv = cv2.cvtColor(texture, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-8, 8)) % 180
    hsv[..., 1] *= rng.uniform(0.75, 1.2)
    hsv[..., 2] *= rng.uniform(0.75, 1.15)
    out = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    out += rng.normal(0.0, 4.0, out.shape).astype(np.float32)
    return np.clip(out, 0, 255).astype(np.uint8)


def skin_vertex_colours(rng: np.random.Generator, vertices: np.ndarray) -> np.ndarray:
    """(V, 4) float RGBA skin colours for hand vertices: a random tone with low-frequency variation."""
    tone = np.asarray(SKIN_TONES[rng.integers(len(SKIN_TONES))], np.float64)
    tone = np.clip(tone * rng.uniform(0.85, 1.1) + rng.normal(0, 0.03, 3), 0, 1)
    v = np.asarray(vertices, np.float64)
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    phase = (v - v.mean(axis=0)) @ direction * rng.uniform(20, 60)
    shade = 1.0 + 0.06 * np.sin(phase) + rng.normal(0, 0.015, len(v))
    rgb = np.clip(tone[None] * shade[:, None], 0, 1)
    return np.concatenate([rgb, np.ones((len(v), 1))], axis=1)
