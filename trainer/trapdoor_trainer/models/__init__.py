"""Model registry: `create_model(name, ...)` builds a `SplitModel` (stem, head, optional decoder).

An architecture is one module here with its builder decorated `@ARCHITECTURES.register(name)`;
the builder takes (in_channels, num_classes, image_size, *, with_decoder, norm, stem_end_block,
faithful_wrn, **options) and ignores what does not apply to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ..registry import Registry
from .base import SplitModel


@dataclass(frozen=True)
class Architecture:
    name: str
    build: Callable[..., SplitModel]
    order: int = 0  # position in listings
    options: dict = field(default_factory=dict)  # extra keyword arguments for `build`


ARCHITECTURES: Registry[Architecture] = Registry(
    "architecture", "architecture", lambda name, build, order=0, **options: Architecture(name, build, order, options), package=__name__
)


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
    architecture = ARCHITECTURES.get(name)
    return architecture.build(
        in_channels, num_classes, tuple(image_size), stem_end_block=stem_end_block, faithful_wrn=faithful_wrn, with_decoder=with_decoder,
        norm=norm, **architecture.options,
    )


__all__ = ["ARCHITECTURES", "Architecture", "SplitModel", "create_model"]
