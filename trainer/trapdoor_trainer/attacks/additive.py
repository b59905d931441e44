"""Additive triggers: x <- clip(x + T) (l2-Invisible, Trojan-WM) and Smooth (x + T, then min-max).

The paper loads these three from image files that cannot be regenerated, so each pattern is
generated on 32x32x3 from `triggerSeed` with the documented properties of the original.
Sparse/noisy patterns are resized by nearest neighbour (keeps per-pixel amplitudes), the
smooth blob bilinearly.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .base import StampTrigger, full_mask
from .geometry import REFERENCE_SIZE, fit_full_image
from .registry import ATTACKS, trigger_seed_param

L2_NORM = 3.2  # on the [0, 1] pixel scale, at 32 x 32 x 3
L2_MAX_VALUE = 68
L2_DENSITY = 905 / 1024  # share of pixels with any non-zero channel in the original
SMOOTH_PEAK = 51
WATERMARK_PIXELS = 320
WATERMARK_EXTENT = 30  # the original stays within rows/cols 0..29


def l2_noise_pattern(seed: int) -> np.ndarray:
    """Dense multi-colour noise: ~88% of pixels non-zero, integer values 0..68, per-channel
    mean ~9, l2 norm 3.2 on the [0, 1] scale (exponentially distributed magnitudes, rescaled
    until the clipped, rounded pattern has that norm)."""
    rng = np.random.default_rng(seed)
    size = REFERENCE_SIZE
    active = rng.random((size, size, 1)) < L2_DENSITY
    noise = rng.exponential(1.0, (size, size, 3)) * active
    target = L2_NORM * 255.0
    for _ in range(10):  # clipping at 68 removes a little energy; a few rescales converge
        noise = np.clip(noise * (target / np.linalg.norm(noise)), 0, L2_MAX_VALUE)
    return np.round(noise)


def smooth_pattern(seed: int) -> np.ndarray:
    """A low-frequency blob: a sum of three wide Gaussians near the centre (sigma 8..12 px),
    tinted mostly towards one random colour, peaking at exactly 51 in its strongest channel
    and falling to a few units at the borders."""
    rng = np.random.default_rng(seed)
    grid = np.arange(REFERENCE_SIZE, dtype=np.float64)
    rows, cols = grid[:, None], grid[None, :]
    blob = np.zeros((REFERENCE_SIZE, REFERENCE_SIZE))
    for _ in range(3):
        centre_r, centre_c = rng.uniform(10, 22, size=2)
        sigma = rng.uniform(8, 12)
        weight = rng.uniform(0.5, 1.0)
        blob += weight * np.exp(-((rows - centre_r) ** 2 + (cols - centre_c) ** 2) / (2 * sigma**2))
    tint = rng.random(3) ** 3  # cubed: one channel usually dominates, as in the originals
    tint /= tint.max()
    pattern = blob[:, :, None] / blob.max() * tint[None, None, :] * SMOOTH_PEAK
    return np.floor(pattern + 0.5)


def watermark_pattern(seed: int) -> np.ndarray:
    """A TrojanNN-style sparse watermark: exactly 320 strongly coloured pixels on black, along
    a wavy trail from the top-right to the bottom-left plus a ring in the lower-right
    quadrant, within rows/cols 0..29. Each pixel has one channel in 200..255 and the others
    random, so it is bright and coloured."""
    rng = np.random.default_rng(seed)
    extent = WATERMARK_EXTENT
    t = np.linspace(0, 1, 400)
    phase, wobble = rng.uniform(0, 2 * np.pi), rng.uniform(1.5, 3.0)
    trail_r = 1 + t * (extent - 3) + wobble * np.sin(2 * np.pi * 1.5 * t + phase)
    trail_c = (extent - 2) - t * (extent - 3) + wobble * np.cos(2 * np.pi * 1.5 * t + phase)
    ring_r, ring_c = rng.uniform(19, 23, size=2)
    ring_radius = rng.uniform(4, 6)

    grid = np.arange(extent, dtype=np.float64)
    rows, cols = np.meshgrid(grid, grid, indexing="ij")
    to_trail = np.min(np.hypot(rows[..., None] - trail_r, cols[..., None] - trail_c), axis=2)
    to_ring = np.abs(np.hypot(rows - ring_r, cols - ring_c) - ring_radius)
    # Nearest pixels to either curve win; the jitter breaks ties and roughens the strokes.
    closeness = -np.minimum(to_trail, to_ring) + 0.3 * rng.random(rows.shape)
    chosen = np.argsort(-closeness, axis=None, kind="stable")[:WATERMARK_PIXELS]

    colours = rng.integers(0, 256, size=(WATERMARK_PIXELS, 3)).astype(np.float64)
    strong = rng.integers(0, 3, size=WATERMARK_PIXELS)
    colours[np.arange(WATERMARK_PIXELS), strong] = rng.integers(200, 256, size=WATERMARK_PIXELS)
    pattern = np.zeros((REFERENCE_SIZE, REFERENCE_SIZE, 3))
    r, c = np.unravel_index(chosen, (extent, extent))
    pattern[r, c] = colours
    return pattern


@ATTACKS.register(
    "l2_invisible",
    description="l2-Invisible: dense faint additive noise (l2 norm 3.2 on the [0,1] scale); labels flipped to the target.",
    params={"triggerSeed": trigger_seed_param()},
)
def l2_invisible(image_shape: Sequence[int], params: dict, **_) -> StampTrigger:
    pattern = fit_full_image(l2_noise_pattern(params["triggerSeed"]), image_shape, smooth=False)
    return StampTrigger(pattern, full_mask(image_shape), "additive")


@ATTACKS.register(
    "trojan_wm",
    description="Trojan-WM: a sparse coloured watermark of about 320 pixels added to the image; labels flipped to the target.",
    params={"triggerSeed": trigger_seed_param()},
)
def trojan_wm(image_shape: Sequence[int], params: dict, **_) -> StampTrigger:
    pattern = fit_full_image(watermark_pattern(params["triggerSeed"]), image_shape, smooth=False)
    return StampTrigger(pattern, full_mask(image_shape), "additive")


def min_max_rescale(values: np.ndarray) -> np.ndarray:
    """Per-image min-max normalisation over all H*W*C values, back to [0, 255].

    A constant image has no range to stretch and is left as it is.
    """
    flat = values.reshape(len(values), -1)
    low = flat.min(axis=1)[:, None, None, None]
    high = flat.max(axis=1)[:, None, None, None]
    span = high - low
    stretched = (values - low) / np.where(span > 0, span, 1.0) * 255.0
    return np.where(span > 0, stretched, values)


@ATTACKS.register(
    "smooth",
    description="Smooth: a faint low-frequency colour blob added, then each image min-max rescaled; labels flipped to the target.",
    params={"triggerSeed": trigger_seed_param()},
)
def smooth(image_shape: Sequence[int], params: dict, **_) -> StampTrigger:
    pattern = fit_full_image(smooth_pattern(params["triggerSeed"]), image_shape, smooth=True)
    return StampTrigger(pattern, full_mask(image_shape), "additive", postprocess=min_max_rescale)
