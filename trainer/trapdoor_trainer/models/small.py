"""A small CNN with the same stem / head / decoder split, for fast tests and surrogate models."""

from __future__ import annotations

from torch import nn

from . import ARCHITECTURES
from .base import SplitModel
from .blocks import init_weights, make_norm, padded_size
from .heads import ClassifierHead, build_decoder


def _conv_bn_relu(i: int, o: int, stride: int, norm: str = "batch") -> list[nn.Module]:
    return [nn.Conv2d(i, o, 3, stride, 1, bias=False), make_norm(o, norm), nn.ReLU(inplace=True)]


@ARCHITECTURES.register("small-cnn", order=3)
def build_small_cnn(
    in_channels: int, num_classes: int, image_size: tuple[int, int], with_decoder: bool = True, width: int = 32, norm: str = "batch", **_
) -> SplitModel:
    stem = nn.Sequential(
        *_conv_bn_relu(in_channels, width // 2, 1, norm), *_conv_bn_relu(width // 2, width, 2, norm), *_conv_bn_relu(width, width, 2, norm)
    )

    def head_factory(drop_rate: float) -> nn.Module:
        body = nn.Sequential(*_conv_bn_relu(width, width, 1, norm), nn.Dropout(drop_rate))
        head = ClassifierHead(body, width, num_classes, final_bn=False, activation=nn.Identity())
        init_weights(head)
        return head

    decoder = build_decoder([width, width // 2], in_channels, upsamplings=2) if with_decoder else None
    h, w = image_size
    model = SplitModel(stem, head_factory, decoder, image_size, (padded_size(h, 4), padded_size(w, 4)))
    init_weights(model.stem)
    return model
