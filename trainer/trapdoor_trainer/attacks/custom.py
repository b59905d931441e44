"""A user-supplied trigger image (+ optional mask) applied by overwrite, additive or blend.

The trigger is an H x W (x C) array on the 0-255 scale given in-process, as nested lists (from
JSON) or as a path to a `.npy` file (never pickled). The resolved params keep the value as
given, so a job's metadata stays JSON.

Validation has two layers. The params schema (in the catalog, checked by `schema_check` here and
by the service) holds the structure: `trigger` is required and is an array of rows (of numbers
or of 1-3 channel values) or a string; `mask` the same or null. The checks below are semantic and
Python-only; they run after the schema: a string must name a readable `.npy` file, the array
must be H x W (x 1 or 3) and finite, trigger pixels in [0, 255], mask values in [0, 1], and the
mask must have the trigger's height and width.

Without a mask: overwrite replaces only the trigger's non-zero pixels (a patch on black, as
TrojanNN-style trigger files are drawn); additive and blend act on the whole image.
A trigger whose size differs from the images is resized: bilinearly in blend mode (it is a
picture), by nearest neighbour otherwise (patch values stay exact); the mask always by
nearest neighbour.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ..errors import SpecError
from ..hyperparams import Checked, Param
from .base import MODES, StampTrigger
from .geometry import resize_bilinear, resize_nearest, to_channels
from .registry import ATTACKS, PARAMS_FIELD, alpha_param

# An H x W (x C) nested list: rows, each of numbers or of per-pixel channel lists.
IMAGE_ROWS = {"type": "array", "items": {"type": ["number", "array"], "items": {"type": "number"}}}


def load_array(value: Any, field: str) -> np.ndarray:
    """The numbers behind a trigger/mask param, or SpecError naming `field`."""
    if isinstance(value, (str, Path)):
        path = Path(value)
        if path.suffix != ".npy":
            raise SpecError(field, f"must be a .npy file path, got {str(value)!r}")
        try:
            value = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise SpecError(field, f"{str(path)!r} does not exist") from None
        except (OSError, ValueError) as e:
            raise SpecError(field, f"{str(path)!r} is not a readable .npy array: {e}") from None
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise SpecError(field, "must be a numeric array, a nested list of numbers or a .npy path") from None
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3) or array.shape[0] == 0 or array.shape[1] == 0:
        raise SpecError(field, f"must be H x W, H x W x 1 or H x W x 3, got shape {np.shape(value)}")
    if not np.all(np.isfinite(array)):
        raise SpecError(field, "must not contain NaN or infinity")
    return array


def check_trigger_image(field: str, value: Any) -> Any:
    array = load_array(value, field)
    if array.min() < 0 or array.max() > 255:
        raise SpecError(field, "pixel values must lie in [0, 255]")
    return value


def check_mask(field: str, value: Any) -> Any:
    if value is None:
        return None
    array = load_array(value, field)
    if array.min() < 0 or array.max() > 1:
        raise SpecError(field, "mask values must lie in [0, 1]")
    return value


def check_mask_fits_trigger(trigger: Any, mask: Any, prefix: str) -> None:
    if mask is None:
        return
    trigger_hw = load_array(trigger, f"{prefix}.trigger").shape[:2]
    mask_hw = load_array(mask, f"{prefix}.mask").shape[:2]
    if trigger_hw != mask_hw:
        raise SpecError(f"{prefix}.mask", f"must have the trigger's height x width {trigger_hw}, got {mask_hw}")


@ATTACKS.register(
    "custom",
    description="Custom: your own trigger image (with optional mask) applied by overwrite, addition or blending; labels flipped to the target.",
    params={
        "trigger": Checked(
            {"type": ["array", "string"], "items": IMAGE_ROWS},
            check_trigger_image,
            "trigger image on the 0-255 scale: an H x W (x 1 or 3) nested list or the path of a .npy file",
            required=True,
        ),
        "mask": Checked(
            {"type": ["array", "string", "null"], "items": IMAGE_ROWS},
            check_mask,
            "per-pixel trigger weight in [0, 1] with the trigger's height and width (nested list or .npy path); null = the trigger's non-zero pixels (overwrite) or everywhere",
        ),
        "mode": Param("overwrite", "str", "how the trigger is applied", choices=MODES),
        "alpha": alpha_param("blend weight (mode blend only)"),
    },
    cross_check=lambda p: check_mask_fits_trigger(p["trigger"], p["mask"], PARAMS_FIELD),
    order=30,
)
def custom(image_shape: Sequence[int], params: dict, **_) -> StampTrigger:
    trigger, mask, mode, alpha = params["trigger"], params["mask"], params["mode"], params["alpha"]
    height, width, channels = image_shape
    pattern = load_array(trigger, "attack.params.trigger")
    if mask is None:
        if mode == "overwrite":
            mask_array = np.any(pattern > 0, axis=2, keepdims=True).astype(np.float64)
        else:
            mask_array = np.ones(pattern.shape[:2] + (1,))
    else:
        mask_array = load_array(mask, "attack.params.mask")
    if pattern.shape[:2] != (height, width):
        resize = resize_bilinear if mode == "blend" else resize_nearest
        pattern = resize(pattern, height, width)
        mask_array = resize_nearest(mask_array, height, width)
    pattern = to_channels(pattern, channels)
    if mask_array.shape[2] not in (1, channels):
        mask_array = to_channels(mask_array, channels)
    return StampTrigger(pattern, mask_array, mode, alpha)
