"""Exact per-sample gradients, or just their norms, without torch.func.

Forward hooks keep each layer's input and output, one autograd pass gives every sample's
gradient with respect to each layer's output, and per-layer formulas turn those into per-sample
gradient norms (materialised per-sample weight gradients, or the "ghost" Gram-matrix identity
when that is cheaper). Conv2d, Linear and GroupNorm are supported; BatchNorm mixes the samples
of a batch, so a model with it is refused. DP-SGD's clipping (dp_sgd_step.py) is built on this.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Optional

import torch
import torch.nn.functional as F
from torch import nn

# Per-sample work is done in slices of the batch holding about this many float32 elements.
_CHUNK_ELEMENTS = 1 << 24
_SUPPORTED = (nn.Conv2d, nn.Linear, nn.GroupNorm)


@dataclass
class _Captured:
    input: torch.Tensor
    output: torch.Tensor
    input_version: int


class PerSampleGradients:
    """Exact per-sample gradients (or just their norms) for models built from Conv2d, Linear and
    GroupNorm layers: every trainable parameter must belong to one of them, and nothing may mix
    samples (no BatchNorm).

        psg = PerSampleGradients(model)
        with psg.capture():
            losses = per_sample_losses(model(x), y)     # shape (B,)
        norms2 = psg.squared_norms(losses)              # (B,), over all parameters together
    """

    def __init__(self, model: nn.Module):
        self.model = model
        mixing = [name for name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if mixing:
            raise ValueError(f"per-sample gradients need a model without BatchNorm (found {mixing[0]}); build it with norm='group'")
        self.layers = [m for m in model.modules() if isinstance(m, _SUPPORTED) and any(p.requires_grad for p in m.parameters(recurse=False))]
        covered = {id(p) for m in self.layers for p in m.parameters(recurse=False)}
        for name, p in model.named_parameters():
            if p.requires_grad and id(p) not in covered:
                raise ValueError(f"parameter {name} is not in a Conv2d, Linear or GroupNorm layer; per-sample gradients cannot be computed for it")
        for m in self.layers:
            if isinstance(m, nn.Conv2d) and (m.groups != 1 or m.padding_mode != "zeros" or isinstance(m.padding, str)):
                raise ValueError("per-sample gradients support only ungrouped, zero-padded Conv2d with numeric padding")
        self._captured: dict[nn.Module, _Captured] = {}
        self._output_grads: dict[nn.Module, Optional[torch.Tensor]] = {}

    @contextmanager
    def capture(self) -> Iterator[None]:
        """Record every layer's input and output during one forward pass."""
        self._captured, self._output_grads = {}, {}

        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
            if module in self._captured:
                raise ValueError("a layer ran twice in one forward pass (shared weights are not supported)")
            self._captured[module] = _Captured(inputs[0], output, inputs[0]._version)
            # Differentiate against this exact tensor: a later in-place op (ReLU(inplace=True))
            # then modifies the copy the network goes on with, not the one we keep.
            return output.clone()

        handles = [m.register_forward_hook(hook) for m in self.layers]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def backward(self, losses: torch.Tensor) -> None:
        """Every sample's gradient with respect to each layer's output. Samples do not interact,
        so the gradient of the summed losses at sample i's slice is sample i's own gradient.
        The graph is kept for the caller's own backward pass."""
        if losses.dim() != 1:
            raise ValueError("pass one loss per sample")
        layers = [m for m in self.layers if m in self._captured]
        outputs = [self._captured[m].output for m in layers]
        grads = torch.autograd.grad(losses.sum(), outputs, retain_graph=True, allow_unused=True)
        # Layers whose output the loss never reads (the faithful WRN's discarded bn1) have no gradient.
        self._output_grads = dict(zip(layers, grads))
        for m in layers:
            if self._captured[m].input._version != self._captured[m].input_version:
                raise RuntimeError("a layer's input was modified in place after the layer ran; per-sample gradients would be wrong")

    def used_parameters(self) -> list[nn.Parameter]:
        """Parameters the last backward pass reached (those the optimiser will update)."""
        return [p for m, g in self._output_grads.items() if g is not None for p in m.parameters(recurse=False) if p.requires_grad]

    def release(self) -> None:
        """Drop the stored activations and gradients so they do not outlive the step."""
        self._captured, self._output_grads = {}, {}

    def squared_norms(self, losses: torch.Tensor) -> torch.Tensor:
        """Squared L2 norm of each sample's full gradient (all parameters together), shape (B,)."""
        self.backward(losses)
        total = torch.zeros(losses.shape[0], device=losses.device, dtype=torch.float32)
        with _full_precision(losses.device):
            for m, g in self._output_grads.items():
                if g is not None:
                    total += _layer_squared_norms(m, self._captured[m].input, g)
        return total

    def gradients(self, losses: torch.Tensor) -> dict[nn.Parameter, torch.Tensor]:
        """Materialised per-sample gradients {parameter: (B, *shape)}; for checks and small models."""
        self.backward(losses)
        out: dict[nn.Parameter, torch.Tensor] = {}
        with _full_precision(losses.device):
            for m, g in self._output_grads.items():
                if g is not None:
                    out.update(_layer_gradients(m, self._captured[m].input, g))
        return out


def _full_precision(device: torch.device):
    """Per-sample norms in float32 even inside the training loop's bf16 autocast."""
    return torch.autocast(device_type=device.type, enabled=False)


def _matmul_operands(module: nn.Module, a: torch.Tensor, g: torch.Tensor, start: int, end: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples start..end as (U: B x K x L, G: B x O x L) with per-sample weight gradient G @ U^T."""
    a, g = a[start:end].float(), g[start:end].float()
    n = a.shape[0]
    if isinstance(module, nn.Conv2d):
        return _patches(module, a), g.reshape(n, g.shape[1], -1)
    # Linear over any leading dims: each position is one more column of the product.
    return a.reshape(n, -1, a.shape[-1]).transpose(1, 2), g.reshape(n, -1, g.shape[-1]).transpose(1, 2)


def _patches(conv: nn.Conv2d, a: torch.Tensor) -> torch.Tensor:
    """im2col, B x (C·kh·kw) x L, in the weight's (C, kh, kw) order: a strided view of the padded
    input copied once. F.unfold computes the same but is many times slower on CPU."""
    (kh, kw), (sh, sw), (dh, dw), (ph, pw) = conv.kernel_size, conv.stride, conv.dilation, conv.padding
    padded = F.pad(a, (pw, pw, ph, ph))
    windows = padded.unfold(2, (kh - 1) * dh + 1, sh).unfold(3, (kw - 1) * dw + 1, sw)[..., ::dh, ::dw]
    n, c, h, w = windows.shape[:4]
    return windows.permute(0, 1, 4, 5, 2, 3).reshape(n, c * kh * kw, h * w)


def _weight_shape_sizes(module: nn.Module, g: torch.Tensor) -> tuple[int, int, int]:
    """(O, K, L) of the per-sample product G (O x L) @ U^T (L x K)."""
    out_features = module.weight.shape[0]
    return out_features, module.weight.numel() // out_features, g[0].numel() // out_features


def _chunks(batch: int, per_sample_elements: int) -> Iterator[tuple[int, int]]:
    step = max(1, _CHUNK_ELEMENTS // max(per_sample_elements, 1))
    for start in range(0, batch, step):
        yield start, min(start + step, batch)


def matmul_weight_squared_norms(module: nn.Module, a: torch.Tensor, g: torch.Tensor, ghost: Optional[bool] = None) -> torch.Tensor:
    """Per-sample ||G_i U_i^T||^2 for a Conv2d / Linear weight.

    Materialising G_i U_i^T costs O*K per sample; the ghost identity
    ||G U^T||^2 = <G^T G, U^T U> costs L*L. `ghost=None` picks the cheaper one."""
    o, k, positions = _weight_shape_sizes(module, g)
    if ghost is None:
        ghost = positions * positions < o * k
    per_sample = k * positions + o * positions + (positions * positions if ghost else o * k)
    parts = []
    for start, end in _chunks(a.shape[0], per_sample):
        u, gg = _matmul_operands(module, a, g, start, end)
        if ghost:
            parts.append((torch.bmm(gg.transpose(1, 2), gg) * torch.bmm(u.transpose(1, 2), u)).sum(dim=(1, 2)))
        else:
            parts.append(torch.bmm(gg, u.transpose(1, 2)).pow(2).sum(dim=(1, 2)))
    return torch.cat(parts)


def _bias_gradients(module: nn.Module, g: torch.Tensor) -> torch.Tensor:
    """Per-sample bias gradient: the output gradient summed over positions, (B, channels)."""
    g = g.float()
    if isinstance(module, nn.Linear):
        return g.reshape(g.shape[0], -1, g.shape[-1]).sum(dim=1)
    return g.reshape(g.shape[0], g.shape[1], -1).sum(dim=2)


def _group_norm_weight_gradients(module: nn.GroupNorm, a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Per-sample GroupNorm scale gradient: Σ_positions g·(a − mean_group)·rstd_group, (B, C).

    Group statistics come from per-channel sums, which works in any memory format (torch's own
    group_norm is slow on channels-last CPU tensors)."""
    a, g = a.float(), g.float()
    n, c = a.shape[:2]
    per_group = c // module.num_groups
    positions = tuple(range(2, a.dim()))
    count = per_group * a[0, 0].numel()
    broadcast = (n, c) + (1,) * len(positions)

    def group_mean(per_channel_sums: torch.Tensor) -> torch.Tensor:
        means = per_channel_sums.reshape(n, module.num_groups, per_group).sum(dim=2) / count
        return means.repeat_interleave(per_group, dim=1)  # back to (B, C)

    centred = a - group_mean(a.sum(dim=positions)).reshape(broadcast)
    rstd = torch.rsqrt(group_mean(centred.pow(2).sum(dim=positions)) + module.eps)
    return (g * centred).sum(dim=positions) * rstd


def _layer_squared_norms(module: nn.Module, a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    total = torch.zeros(g.shape[0], device=g.device, dtype=torch.float32)
    if isinstance(module, nn.GroupNorm):
        if module.weight is not None and module.weight.requires_grad:
            total += _group_norm_weight_gradients(module, a, g).pow(2).sum(dim=1)
    elif module.weight.requires_grad:
        total += matmul_weight_squared_norms(module, a, g)
    if module.bias is not None and module.bias.requires_grad:
        total += _bias_gradients(module, g).pow(2).sum(dim=1)
    return total


def _layer_gradients(module: nn.Module, a: torch.Tensor, g: torch.Tensor) -> dict[nn.Parameter, torch.Tensor]:
    out: dict[nn.Parameter, torch.Tensor] = {}
    n = g.shape[0]
    if isinstance(module, nn.GroupNorm):
        if module.weight is not None and module.weight.requires_grad:
            out[module.weight] = _group_norm_weight_gradients(module, a, g)
    elif module.weight.requires_grad:
        u, gg = _matmul_operands(module, a, g, 0, n)
        out[module.weight] = torch.bmm(gg, u.transpose(1, 2)).reshape(n, *module.weight.shape)
    if module.bias is not None and module.bias.requires_grad:
        out[module.bias] = _bias_gradients(module, g)
    return out
