"""Building blocks shared by the architectures: the WRN basic block, initialisation, padding."""

from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

# The FixMatch-style WRN that T&R copies uses BN momentum 0.001, tuned for its 200-epoch runs.
# With the shorter budgets a service runs, running statistics that slow stay near their
# initial values and eval-mode accuracy collapses to chance (Fashion-MNIST, 2 epochs: 10 % in
# eval mode vs 74 % in train mode), so we use PyTorch's default. Stage 2 freezes them either way.
BN_MOMENTUM = 0.1

NORMS = ("batch", "group")


def make_norm(channels: int, norm: str = "batch") -> nn.Module:
    """BatchNorm (default) or GroupNorm with gcd(32, channels) groups, Opacus's replacement for
    BN: DP-SGD needs per-sample gradients, which batch statistics would couple."""
    if norm == "batch":
        return nn.BatchNorm2d(channels, momentum=BN_MOMENTUM)
    if norm == "group":
        return nn.GroupNorm(math.gcd(32, channels), channels)
    raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")


class WideBasicBlock(nn.Module):
    """Pre-activation residual block of the FixMatch-style WRN used by T&R.

    When `faithful` is on and the block changes its channel count, the first BN+activation is
    computed but its result is discarded: conv1 and the 1x1 shortcut read the raw input. That is
    how the official T&R model behaves (its bn1 still updates running stats but gets no gradient),
    and results are only comparable to the paper with the same quirk.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int, drop_rate: float = 0.0, faithful: bool = True, norm: str = "batch"):
        super().__init__()
        self.bn1 = make_norm(in_ch, norm)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=True)
        self.bn2 = make_norm(out_ch, norm)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=True)
        self.equal_in_out = in_ch == out_ch
        self.shortcut = None if self.equal_in_out else nn.Conv2d(in_ch, out_ch, 1, stride, 0, bias=True)
        self.drop_rate = drop_rate
        self.faithful = faithful

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = F.leaky_relu(self.bn1(x), 0.1)
        conv_input = x if (not self.equal_in_out and self.faithful) else activated
        out = self.conv1(conv_input)
        out = F.leaky_relu(self.bn2(out), 0.1)
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        out = self.conv2(out)
        residual = x if self.equal_in_out else self.shortcut(conv_input)
        return residual + out


class ResNetBasicBlock(nn.Module):
    """Post-activation torchvision-style basic block (ResNet-18/34)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, drop_rate: float = 0.0, norm: str = "batch"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = make_norm(out_ch, norm)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = make_norm(out_ch, norm)
        self.drop_rate = drop_rate
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), make_norm(out_ch, norm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


def init_weights(module: nn.Module) -> None:
    """T&R's WRN initialisation; transposed convs keep PyTorch's default, as in the official code."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="leaky_relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            if m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.xavier_normal_(m.weight)
            nn.init.zeros_(m.bias)


def padded_size(size: int, multiple: int) -> int:
    return int(math.ceil(size / multiple) * multiple)
