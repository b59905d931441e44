"""ResNet-18/34 split as T&R splits ResNet-34: the stem ends before the last block of the last
stage, the head is that block + global average pool + linear.

Small images (min side < 128) get the CIFAR-style entry (3x3 conv, stride 1, no max-pool, total
downsampling 8); larger ones the ImageNet entry (7x7/2 conv + max-pool, total downsampling 32).
The decoder is a chain of stride-2 transposed convs halving the width each time; the official
ImageNet decoder's paired ConvTs with InstanceNorm are not reproduced (see README).
"""

from __future__ import annotations

import math

from torch import nn

from . import ARCHITECTURES
from .base import SplitModel
from .blocks import ResNetBasicBlock, init_weights, make_norm, padded_size
from .heads import ClassifierHead, build_decoder

STAGE_WIDTHS = (64, 128, 256, 512)


@ARCHITECTURES.register("resnet18", order=1, stage_blocks=(2, 2, 2, 2))
@ARCHITECTURES.register("resnet34", order=2, stage_blocks=(3, 4, 6, 3))
def build_resnet(
    in_channels: int, num_classes: int, image_size: tuple[int, int], with_decoder: bool = True, norm: str = "batch", *,
    stage_blocks: tuple[int, int, int, int], **_,
) -> SplitModel:
    counts = stage_blocks
    large = min(image_size) >= 128
    if large:
        entry = [nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False), make_norm(64, norm), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
        downsampling = 32
    else:
        entry = [nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False), make_norm(64, norm), nn.ReLU(inplace=True)]
        downsampling = 8
    layers: list[nn.Module] = list(entry)
    in_ch = 64
    for stage, (count, width) in enumerate(zip(counts, STAGE_WIDTHS)):
        for b in range(count):
            is_last_block = stage == 3 and b == count - 1
            if is_last_block:
                break
            stride = 2 if (b == 0 and stage > 0) else 1
            layers.append(ResNetBasicBlock(in_ch, width, stride, norm=norm))
            in_ch = width
    stem = nn.Sequential(*layers)

    def head_factory(drop_rate: float) -> nn.Module:
        body = ResNetBasicBlock(512, 512, 1, drop_rate=drop_rate, norm=norm)
        head = ClassifierHead(body, 512, num_classes, final_bn=False, activation=nn.Identity())
        init_weights(head)
        return head

    decoder = None
    if with_decoder:
        ups = int(math.log2(downsampling))
        decoder = build_decoder([512 >> i for i in range(ups)], in_channels, upsamplings=ups)
    h, w = image_size
    model = SplitModel(stem, head_factory, decoder, image_size, (padded_size(h, downsampling), padded_size(w, downsampling)))
    init_weights(model.stem)
    return model
