"""Classification heads and reconstruction decoders that sit on top of a stem."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn
import torch.nn.functional as F

from .blocks import make_norm


class ClassifierHead(nn.Module):
    """`body` (residual blocks, possibly none) -> optional BN + activation -> global average pool -> linear.

    `pooled()` returns the input of the final linear layer; defenses (fine-pruning, LBA-14) read it.
    """

    def __init__(self, body: nn.Module, channels: int, num_classes: int, final_bn: bool, activation: Callable, norm: str = "batch"):
        super().__init__()
        self.body = body
        self.bn = make_norm(channels, norm) if final_bn else None
        self.activation = activation
        self.fc = nn.Linear(channels, num_classes)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        x = self.body(x)
        if self.bn is not None:
            x = self.bn(x)
        return self.activation(x)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature_map(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pooled(x))


def leaky_relu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.1)


def build_decoder(channels: Sequence[int], out_channels: int, upsamplings: int) -> nn.Module:
    """Transposed-conv decoder from stem features back to the image in [0,1].

    `channels[i]` is the width after layer i. Each stride-2 ConvT (k4 s2 p1) doubles the spatial
    size; when the stem did not downsample as many times as there are layers, the last layers
    are k3 s1 p1 (size-preserving), as the official code does for its `stem 4` split.
    """
    layers: list[nn.Module] = []
    widths = list(channels) + [out_channels]
    n_layers = len(widths) - 1
    for i in range(n_layers):
        stride2 = i < upsamplings
        layers.append(
            nn.ConvTranspose2d(widths[i], widths[i + 1], 4 if stride2 else 3, 2 if stride2 else 1, 1)
        )
        if i < n_layers - 1:
            layers.append(nn.ReLU(inplace=True))
    layers.append(nn.Sigmoid())
    return nn.Sequential(*layers)
