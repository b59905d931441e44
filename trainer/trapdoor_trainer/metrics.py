"""CA, ASR and reconstruction MSE, evaluated in batches on device-resident data.

ASR sets never contain target-class images (they are dropped when the set is built), so ASR
here is simply the fraction classified as the target.
"""

from __future__ import annotations

import contextlib
from typing import Optional

import torch

from .data import DeviceData, to_float_nchw


def autocast_for(device: torch.device, amp_dtype: Optional[torch.dtype]):
    if amp_dtype is None or device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=amp_dtype)


@torch.no_grad()
def predict(model, data: DeviceData, batch_size: int, amp_dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    model.eval()
    out = []
    for start in range(0, len(data), batch_size):
        x = to_float_nchw(data.images[start : start + batch_size])
        with autocast_for(data.device, amp_dtype):
            out.append(model(x).argmax(dim=1))
    return torch.cat(out)


def clean_accuracy(model, data: DeviceData, batch_size: int, amp_dtype=None) -> float:
    return float((predict(model, data, batch_size, amp_dtype) == data.labels).float().mean())


def attack_success_rate(model, asr_data: DeviceData, target: int, batch_size: int, amp_dtype=None) -> float:
    return float((predict(model, asr_data, batch_size, amp_dtype) == target).float().mean())


@torch.no_grad()
def reconstruction_mse(model, data: DeviceData, batch_size: int, amp_dtype=None) -> float:
    """Mean squared error on the [0,1] scale between the decoder's output and its input."""
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(data), batch_size):
        x = to_float_nchw(data.images[start : start + batch_size])
        with autocast_for(data.device, amp_dtype):
            _, recon = model.forward_with_reconstruction(x)
        total += float(((recon.float() - x) ** 2).sum())
        count += x.numel()
    return total / max(count, 1)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Sum of squared vertical and horizontal neighbour differences over B*C*H*W (T&R's normaliser)."""
    dv = (x[:, :, 1:, :] - x[:, :, :-1, :]).pow(2).sum()
    dh = (x[:, :, :, 1:] - x[:, :, :, :-1]).pow(2).sum()
    return (dv + dh) / x.numel()
