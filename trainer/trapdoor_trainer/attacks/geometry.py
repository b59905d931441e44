"""Trigger geometry: positions and patterns defined on 32x32 RGB, mapped to any H x W x C.

Rules (one place, so every attack scales alike):
- A length of n pixels on the 32 scale becomes max(1, round_half_up(n * dim / 32)).
- A patch in the lower/right half keeps its distance from the bottom/right edge (scaled the
  same way); a patch in the upper/left half keeps its distance from the top/left edge. At
  32 x 32 both rules give back the exact reference positions.
- Small exact patterns (grid, squares, the l0 strip) are resized by nearest neighbour, so
  their values stay exact (the BadNet grid stays 0/255). Smooth full-image patterns are
  resized bilinearly (half-pixel centres, no antialiasing: same numbers on every platform).
- One-channel images get the per-pixel mean of R, G and B (not luminance): a grey pattern
  such as the 0/255 grid is thereby kept exactly.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

REFERENCE_SIZE = 32


def round_half_up(x: float) -> int:
    # Python's round() is banker's rounding (round(2.5) == 2); half-up is easier to explain.
    return int(math.floor(x + 0.5))


def scaled_length(length32: int, dim: int) -> int:
    return max(1, round_half_up(length32 * dim / REFERENCE_SIZE))


def place_span(start32: int, length32: int, dim: int) -> tuple[int, int]:
    """(start, length) on an axis of `dim` pixels for a span given on the 32 scale."""
    length = min(scaled_length(length32, dim), dim)
    centre = start32 + length32 / 2
    if centre <= REFERENCE_SIZE / 2:
        start = round_half_up(start32 * dim / REFERENCE_SIZE)
    else:
        gap = REFERENCE_SIZE - (start32 + length32)
        start = dim - round_half_up(gap * dim / REFERENCE_SIZE) - length
    return min(max(start, 0), dim - length), length


def resize_nearest(pattern: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of an h x w x C array (values are copied, never mixed)."""
    h, w = pattern.shape[:2]
    rows = np.minimum(((np.arange(height) + 0.5) * h / height).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * w / width).astype(np.int64), w - 1)
    return pattern[rows][:, cols]


def _bilinear_weights(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pos = np.clip((np.arange(dst) + 0.5) * src / dst - 0.5, 0, src - 1)
    low = np.floor(pos).astype(np.int64)
    high = np.minimum(low + 1, src - 1)
    return low, high, pos - low


def resize_bilinear(pattern: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize (half-pixel centres, edge clamped) of an h x w x C float array."""
    h, w = pattern.shape[:2]
    if (h, w) == (height, width):
        return pattern.astype(np.float64)
    pattern = pattern.astype(np.float64)
    r0, r1, fr = _bilinear_weights(h, height)
    c0, c1, fc = _bilinear_weights(w, width)
    fr = fr[:, None, None]
    fc = fc[None, :, None]
    top = pattern[r0][:, c0] * (1 - fc) + pattern[r0][:, c1] * fc
    bottom = pattern[r1][:, c0] * (1 - fc) + pattern[r1][:, c1] * fc
    return top * (1 - fr) + bottom * fr


def to_channels(pattern: np.ndarray, channels: int) -> np.ndarray:
    """h x w x 3 (or x 1) -> h x w x `channels`: RGB mean for grey images, grey broadcast for RGB."""
    pattern = pattern.astype(np.float64)
    if pattern.shape[2] == channels:
        return pattern
    if channels == 1:
        return pattern.mean(axis=2, keepdims=True)
    if pattern.shape[2] == 1:
        return np.repeat(pattern, channels, axis=2)
    raise ValueError(f"cannot map a {pattern.shape[2]}-channel pattern to {channels} channels")


def fit_full_image(pattern32: np.ndarray, image_shape: Sequence[int], *, smooth: bool) -> np.ndarray:
    """A full-image pattern made on 32 x 32 x 3, resized and channel-mapped to `image_shape`."""
    height, width, channels = image_shape
    resized = resize_bilinear(pattern32, height, width) if smooth else resize_nearest(pattern32, height, width)
    return to_channels(resized, channels)


def stamp_layout(
    image_shape: Sequence[int], patches: Sequence[tuple[int, int, np.ndarray]]
) -> tuple[np.ndarray, np.ndarray]:
    """Full-size (pattern, mask) for small patches given as (top32, left32, h32 x w32 x 3 values).

    The mask is 1 where a patch lies, 0 elsewhere; later patches win where patches overlap.
    """
    height, width, channels = image_shape
    pattern = np.zeros((height, width, channels), dtype=np.float64)
    mask = np.zeros((height, width, 1), dtype=np.float64)
    for top32, left32, values in patches:
        top, h = place_span(top32, values.shape[0], height)
        left, w = place_span(left32, values.shape[1], width)
        pattern[top : top + h, left : left + w] = to_channels(resize_nearest(values, h, w), channels)
        mask[top : top + h, left : left + w] = 1.0
    return pattern, mask
