"""The trigger protocol and the one pixel-arithmetic routine every stamped trigger uses.

Arithmetic follows the reference code: float64 copies on the 0-255 scale, the trigger formula,
clip to [0, 255], then a cast to uint8 that truncates (never rounds).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Protocol, Sequence

import numpy as np

MODES = ("overwrite", "additive", "blend")
# Images are processed in chunks so that a 50k-image dataset never becomes one float64 copy.
CHUNK = 4096


class Trigger(Protocol):
    def apply(self, images: np.ndarray) -> np.ndarray:
        """Test-time stamping: pure, uint8 N x H x W x C in and out."""
        ...

    def poison(self, images: np.ndarray) -> np.ndarray:
        """Training-time poisoning of victims; equals apply() except for LCBA."""
        ...


def to_uint8(values: np.ndarray) -> np.ndarray:
    # After clipping every value is >= 0, so astype's truncation toward zero is a floor.
    return np.clip(values, 0, 255).astype(np.uint8)


def check_images(images: np.ndarray, image_shape: Sequence[int]) -> None:
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError("images must be a uint8 array N x H x W x C")
    if tuple(images.shape[1:]) != tuple(image_shape):
        raise ValueError(f"trigger was built for images {tuple(image_shape)}, got {tuple(images.shape[1:])}")


@dataclass(frozen=True, eq=False)  # holds arrays/models: identity, not value, equality
class StampTrigger:
    """x <- formula(x, pattern, mask) with mode:

    - overwrite: x * (1 - m) + P * m
    - additive:  x + P * m
    - blend:     x * (1 - alpha * m) + alpha * m * P   (m = 1 gives (1 - alpha) x + alpha P)

    `pattern` is H x W x C float on the 0-255 scale, `mask` H x W x 1 (or x C) in [0, 1].
    `postprocess`, if set, runs per chunk on the float result before clipping (Smooth's
    per-image min-max rescale); it needs the whole image, so it disables the region crop.
    """

    pattern: np.ndarray
    mask: np.ndarray
    mode: str
    alpha: float = 1.0
    postprocess: Optional[Callable[[np.ndarray], np.ndarray]] = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.pattern.shape)  # type: ignore[return-value]

    def _region(self) -> tuple[slice, slice]:
        """Smallest row/column window holding the whole mask: pixels outside it never change."""
        if self.postprocess is not None:
            return slice(None), slice(None)
        touched = np.any(self.mask > 0, axis=2)
        if self.mode == "additive":
            touched &= np.any(self.pattern != 0, axis=2)
        rows, cols = np.nonzero(touched)
        if rows.size == 0:
            return slice(0, 0), slice(0, 0)
        return slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1)

    def _formula(self, x: np.ndarray, pattern: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if self.mode == "overwrite":
            return x * (1 - mask) + pattern * mask
        if self.mode == "additive":
            return x + pattern * mask
        weight = self.alpha * mask
        return x * (1 - weight) + weight * pattern

    def apply(self, images: np.ndarray) -> np.ndarray:
        check_images(images, self.image_shape)
        out = images.copy()
        rows, cols = self._region()
        pattern, mask = self.pattern[rows, cols], self.mask[rows, cols]
        for start in range(0, len(images), CHUNK):
            x = images[start : start + CHUNK, rows, cols].astype(np.float64)
            y = self._formula(x, pattern, mask)
            if self.postprocess is not None:
                y = self.postprocess(y)
            out[start : start + CHUNK, rows, cols] = to_uint8(y)
        return out

    def poison(self, images: np.ndarray) -> np.ndarray:
        return self.apply(images)


def full_mask(image_shape: Sequence[int]) -> np.ndarray:
    return np.ones((image_shape[0], image_shape[1], 1), dtype=np.float64)
