"""A minimal PNG writer (8-bit grayscale or RGB) and an image tiler, so previews need no PIL."""

from __future__ import annotations

import os
import struct
import zlib
from typing import Union

import numpy as np

PathLike = Union[str, "os.PathLike[str]"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPE = {1: 0, 3: 2}  # channels -> PNG colour type (0 grayscale, 2 truecolour)


def _as_hwc(image: np.ndarray) -> np.ndarray:
    """H x W or H x W x C uint8 -> H x W x C with C in (1, 3)."""
    if image.dtype != np.uint8:
        raise TypeError(f"expected uint8 pixels, got {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in _COLOR_TYPE:
        raise ValueError(f"expected H x W, H x W x 1 or H x W x 3, got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError("PNG images must be at least 1 x 1")
    return image


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)


def encode_png(image: np.ndarray, compression: int = 6) -> bytes:
    """PNG bytes for a uint8 image (H x W, H x W x 1 or H x W x 3)."""
    image = _as_hwc(image)
    height, width, channels = image.shape
    ihdr = struct.pack(">IIBBBBB", width, height, 8, _COLOR_TYPE[channels], 0, 0, 0)
    # Filter type 0 (None) on every scanline: simple and deterministic; zlib does the work.
    rows = np.ascontiguousarray(image).reshape(height, width * channels)
    raw = np.concatenate([np.zeros((height, 1), dtype=np.uint8), rows], axis=1).tobytes()
    return PNG_SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw, compression)) + _chunk(b"IEND", b"")


def write_png(path: PathLike, image: np.ndarray) -> None:
    with open(path, "wb") as f:
        f.write(encode_png(image))


def image_grid(rows: list[list[np.ndarray]], pad: int = 2, background: int = 255) -> np.ndarray:
    """Tile uint8 images into one H x W x C image, `pad` pixels of `background` around each tile.

    Cells are sized to the largest tile; grayscale tiles are promoted to RGB when any tile is
    RGB; short rows are left blank on the right.
    """
    tiles = [[_as_hwc(img) for img in row] for row in rows]
    flat = [t for row in tiles for t in row]
    if not flat:
        raise ValueError("image_grid needs at least one image")
    channels = max(t.shape[2] for t in flat)
    cell_h = max(t.shape[0] for t in flat)
    cell_w = max(t.shape[1] for t in flat)
    n_cols = max(len(row) for row in tiles)
    grid = np.full(
        (pad + len(tiles) * (cell_h + pad), pad + n_cols * (cell_w + pad), channels), background, dtype=np.uint8
    )
    for r, row in enumerate(tiles):
        for c, tile in enumerate(row):
            top, left = pad + r * (cell_h + pad), pad + c * (cell_w + pad)
            grid[top : top + tile.shape[0], left : left + tile.shape[1]] = tile  # broadcasts 1 -> 3 channels
    return grid
