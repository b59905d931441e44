"""WRN-16-1 as used by T&R, split into stem / head / decoder at a configurable block.

Blocks are numbered 1..6 in order: block1[0], block1[1], block2[0], block2[1], block3[0],
block3[1]. `stem_end_block` = k puts blocks 1..k in the stem and the rest in the head; the
paper's split is 5 (stem output 64 x H/4 x W/4).
"""

from __future__ import annotations

import torch
from torch import nn

from . import ARCHITECTURES
from .base import SplitModel
from .blocks import WideBasicBlock, init_weights, padded_size
from .heads import ClassifierHead, build_decoder, leaky_relu

WIDTHS = (16, 16, 32, 64)
# (in, out, stride) of the six blocks of WRN-16-1.
BLOCKS = ((16, 16, 1), (16, 16, 1), (16, 32, 2), (32, 32, 1), (32, 64, 2), (64, 64, 1))


class WrnStem(nn.Module):
    def __init__(self, in_channels: int, end_block: int, faithful: bool, norm: str = "batch"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, WIDTHS[0], 3, 1, 1, bias=True)
        self.blocks = nn.Sequential(
            *[WideBasicBlock(i, o, s, faithful=faithful, norm=norm) for (i, o, s) in BLOCKS[:end_block]]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.conv1(x))


@ARCHITECTURES.register("wrn16-1", order=0)
def build_wrn16_1(
    in_channels: int,
    num_classes: int,
    image_size: tuple[int, int],
    stem_end_block: int = 5,
    faithful_wrn: bool = True,
    with_decoder: bool = True,
    norm: str = "batch",
) -> SplitModel:
    if stem_end_block not in (4, 5, 6):
        raise ValueError("stem_end_block must be 4, 5 or 6")
    stem = WrnStem(in_channels, stem_end_block, faithful_wrn, norm)
    feature_ch = BLOCKS[stem_end_block - 1][1]
    downsampling = 2 if stem_end_block == 4 else 4

    def head_factory(drop_rate: float) -> nn.Module:
        body = nn.Sequential(
            *[WideBasicBlock(i, o, s, drop_rate=drop_rate, faithful=faithful_wrn, norm=norm) for (i, o, s) in BLOCKS[stem_end_block:]]
        )
        head = ClassifierHead(body, WIDTHS[-1], num_classes, final_bn=True, activation=leaky_relu, norm=norm)
        init_weights(head)
        return head

    decoder = None
    if with_decoder:
        if stem_end_block == 4:
            decoder = build_decoder([32, 32], in_channels, upsamplings=1)
        else:
            decoder = build_decoder([64, 32], in_channels, upsamplings=2)
    h, w = image_size
    model = SplitModel(stem, head_factory, decoder, image_size, (padded_size(h, 4), padded_size(w, 4)))
    init_weights(model.stem)
    return model
