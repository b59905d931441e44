"""Small patch triggers with exact reference numbers (tnr-reference.md section 2.4).

Positions are (row, col) of the top-left pixel on the 32 x 32 reference; `geometry` maps them
to other sizes keeping the distance from the nearest edge.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from .base import StampTrigger
from .geometry import stamp_layout
from .registry import ATTACKS


def _grey(rows: list[list[int]]) -> np.ndarray:
    values = np.asarray(rows, dtype=np.float64)[:, :, None]
    return np.repeat(values, 3, axis=2)


# BadNet-Grid block "B": rows top to bottom, same value in R, G, B.
GRID_BLOCK = _grey([[0, 0, 255], [0, 255, 0], [255, 0, 255]])

WHITE_SQUARE = np.full((4, 4, 3), 255.0)

# l0-Invisible: the mask covers row 31, cols 23..31; the pattern is black at col 23 and these
# RGB values at cols 24..31, so the whole strip is overwritten.
L0_COLOURS = [
    (255, 0, 255), (0, 0, 255), (255, 255, 0), (255, 255, 255),
    (0, 255, 255), (0, 255, 255), (255, 0, 0), (255, 255, 255),
]  # fmt: skip
L0_STRIP = np.asarray([[(0, 0, 0)] + L0_COLOURS], dtype=np.float64)  # 1 x 9 x 3

# Trojan-SQ 3x3 additive patch, per channel, row by row (the PNG's truncated values).
TROJAN_SQ = np.stack(
    [
        np.asarray([[207, 175, 29], [79, 137, 248], [131, 6, 246]]),
        np.asarray([[131, 243, 232], [8, 0, 113], [40, 145, 250]]),
        np.asarray([[181, 120, 179], [126, 32, 146], [4, 61, 246]]),
    ],
    axis=2,
).astype(np.float64)


def _overwrite(image_shape: Sequence[int], patches: Sequence[tuple[int, int, np.ndarray]]) -> StampTrigger:
    pattern, mask = stamp_layout(image_shape, patches)
    return StampTrigger(pattern, mask, "overwrite")


@ATTACKS.register(
    "badnet_grid",
    description="BadNet-Grid: a 3x3 black-and-white checker block overwritten at the bottom-right corner; labels flipped to the target.",
)
def badnet_grid(image_shape: Sequence[int], params: Optional[dict] = None, **_) -> StampTrigger:
    """Block B overwritten at rows/cols 29-31 (bottom-right corner, no margin)."""
    return _overwrite(image_shape, [(29, 29, GRID_BLOCK)])


@ATTACKS.register(
    "badnet_white",
    description="BadNet-White: a 4x4 white square overwritten one pixel from the bottom-right corner; labels flipped to the target.",
)
def badnet_white(image_shape: Sequence[int], params: Optional[dict] = None, **_) -> StampTrigger:
    """A 4x4 white square at rows/cols 27-30 (1-pixel margin to the bottom/right edges)."""
    return _overwrite(image_shape, [(27, 27, WHITE_SQUARE)])


@ATTACKS.register(
    "l0_invisible",
    description="l0-Invisible: nine pixels of the bottom row overwritten with a fixed colour code; labels flipped to the target.",
)
def l0_invisible(image_shape: Sequence[int], params: Optional[dict] = None, **_) -> StampTrigger:
    """x (1 - M) + T on the strip row 31, cols 23-31."""
    return _overwrite(image_shape, [(31, 23, L0_STRIP)])


def four_corner_grid(image_shape: Sequence[int]) -> StampTrigger:
    """Block B at all four corners, translated (same orientation each time), full 0/255 (LCBA)."""
    corners = [(0, 0), (0, 29), (29, 0), (29, 29)]
    return _overwrite(image_shape, [(r, c, GRID_BLOCK) for r, c in corners])


@ATTACKS.register(
    "trojan_sq",
    description="Trojan-SQ: a 3x3 coloured square added near the bottom-right corner; labels flipped to the target.",
)
def trojan_sq(image_shape: Sequence[int], params: Optional[dict] = None, **_) -> StampTrigger:
    """clip(x + T) with T the 3x3 patch at rows/cols 25-27 (4-pixel margin)."""
    pattern, mask = stamp_layout(image_shape, [(25, 25, TROJAN_SQ)])
    return StampTrigger(pattern, mask, "additive")
