"""Blend-type triggers: x <- (1 - alpha) x + alpha P over the whole image (Blend, SIG)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .base import StampTrigger, full_mask
from .geometry import REFERENCE_SIZE, fit_full_image, to_channels
from .registry import ATTACKS, alpha_param, trigger_seed_param

# Amplitude ~ 1/f^1.4: natural photographs sit near 1/f; slightly steeper reads as objects
# and shading rather than texture at 32 x 32.
SPECTRAL_SLOPE = 1.4


def natural_pattern(seed: int) -> np.ndarray:
    """A 32x32x3 'natural-looking' picture standing in for the paper's Hello-Kitty blend.png.

    Properties: ~1/f amplitude spectrum (the statistics of natural photographs), so it shows
    smooth blobs and soft edges rather than pixel noise; one shared luminance field plus
    weaker per-channel colour fields and a random overall tint, so colours vary but stay
    coherent; rescaled to use the
    full 0..255 range. Deterministic in `seed`.
    """
    rng = np.random.default_rng(seed)
    fy = np.fft.fftfreq(REFERENCE_SIZE)[:, None]
    fx = np.fft.fftfreq(REFERENCE_SIZE)[None, :]
    radius = np.sqrt(fx**2 + fy**2)
    radius[0, 0] = 1.0  # the DC term is dropped below anyway

    def field() -> np.ndarray:
        spectrum = (rng.normal(size=radius.shape) + 1j * rng.normal(size=radius.shape)) / radius**SPECTRAL_SLOPE
        spectrum[0, 0] = 0
        values = np.real(np.fft.ifft2(spectrum))
        return values / values.std()

    luminance = field()
    tint = rng.normal(0, 0.75, size=3)  # an overall hue, so the three channel means differ
    channels = np.stack([luminance + 0.5 * field() + tint[k] for k in range(3)], axis=2)
    low, high = channels.min(), channels.max()
    return np.floor((channels - low) / (high - low) * 255.0)


@ATTACKS.register(
    "blend",
    description="Blend: a natural-looking picture blended over the whole image at alpha 0.2; labels flipped to the target.",
    params={"alpha": alpha_param("blend weight of the trigger picture"), "triggerSeed": trigger_seed_param()},
)
def blend(image_shape: Sequence[int], params: dict, **_) -> StampTrigger:
    pattern = fit_full_image(natural_pattern(params["triggerSeed"]), image_shape, smooth=True)
    return StampTrigger(pattern, full_mask(image_shape), "blend", params["alpha"])


def sig_stripes(width: int) -> np.ndarray:
    """ABL's SIG 'signal' row: S[c] = trunc(20 sin(0.8 c)) stored as two's-complement uint8.

    Negative values wrap to 256 + v, so the stripes read ~0..20 on positive lobes and
    ~236..255 on negative ones (period ~7.85 px). For widths other than 32 the column is
    sampled at c * 32 / width, keeping the number of stripes per image.
    """
    columns = np.arange(width) * (REFERENCE_SIZE / width)
    values = np.trunc(20 * np.sin(0.8 * columns)).astype(np.int64)
    return np.where(values < 0, values + 256, values).astype(np.float64)


@ATTACKS.register(
    "sig",
    description="SIG (clean-label): a vertical stripe signal blended at alpha 0.2 into target-class training images, labels unchanged.",
    params={"alpha": alpha_param("blend weight of the stripe signal")},
    clean_label=True,
    order=10,
)
def sig(image_shape: Sequence[int], params: dict, **_) -> StampTrigger:
    """Clean-label SIG as T&R runs it: x <- 0.8 x + 0.2 S, S constant down each column."""
    height, width, channels = image_shape
    stripes = np.broadcast_to(sig_stripes(width)[None, :, None], (height, width, 1))
    pattern = to_channels(np.array(stripes), channels)
    return StampTrigger(pattern, full_mask(image_shape), "blend", params["alpha"])
