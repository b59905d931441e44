"""Model registry: `create_model(name, ...)` builds a `SplitModel` (stem, head, optional decoder)."""

from __future__ import annotations

from typing import Callable

from .base import SplitModel
from .resnet import build_resnet
from .small import build_small_cnn
from .wrn import build_wrn16_1

ARCHITECTURES: dict[str, Callable[..., SplitModel]] = {
    "wrn16-1": lambda c, k, size, stem_end_block=5, faithful_wrn=True, with_decoder=True, norm="batch": build_wrn16_1(
        c, k, size, stem_end_block=stem_end_block, faithful_wrn=faithful_wrn, with_decoder=with_decoder, norm=norm
    ),
    "resnet18": lambda c, k, size, with_decoder=True, norm="batch", **_: build_resnet("resnet18", c, k, size, with_decoder, norm),
    "resnet34": lambda c, k, size, with_decoder=True, norm="batch", **_: build_resnet("resnet34", c, k, size, with_decoder, norm),
    "small-cnn": lambda c, k, size, with_decoder=True, norm="batch", **_: build_small_cnn(c, k, size, with_decoder, norm=norm),
}


def create_model(
    name: str,
    in_channels: int,
    num_classes: int,
    image_size: tuple[int, int],
    *,
    stem_end_block: int = 5,
    faithful_wrn: bool = True,
    with_decoder: bool = True,
    norm: str = "batch",
) -> SplitModel:
    """Build architecture `name` for C x H x W inputs in [0,1]. `stem_end_block`/`faithful_wrn` apply to WRN only;
    `norm` "group" swaps every BatchNorm for GroupNorm (DP-SGD)."""
    if name not in ARCHITECTURES:
        raise KeyError(f"unknown architecture {name!r}; known: {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[name](
        in_channels, num_classes, tuple(image_size), stem_end_block=stem_end_block, faithful_wrn=faithful_wrn, with_decoder=with_decoder,
        norm=norm,
    )


__all__ = ["ARCHITECTURES", "SplitModel", "create_model"]
