"""Reading a SplitModel's internal features: where its stages end, their outputs during a forward
pass, and the input of the final linear layer.

Post-training defenses look inside the backdoored network: fine-pruning ranks the channels that
feed the final linear layer, NAD distils attention at the ends of the last three stages.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional, Sequence

import torch
from torch import nn

from ..data import DeviceData, to_float_nchw
from ..metrics import autocast_for
from ..models.blocks import ResNetBasicBlock, WideBasicBlock

RESIDUAL_BLOCKS = (WideBasicBlock, ResNetBasicBlock)
ACTIVATIONS = (nn.ReLU, nn.LeakyReLU)


def computation_units(model: nn.Module) -> list[nn.Module]:
    """The modules whose outputs count as "layer outputs", in forward order through stem and head body.

    Residual blocks where the architecture has them (WRN, ResNet); otherwise the activations
    (small-cnn, whose layers are conv-BN-ReLU).
    """
    modules = list(model.stem.modules()) + list(model.head.body.modules())
    blocks = [m for m in modules if isinstance(m, RESIDUAL_BLOCKS)]
    return blocks or [m for m in modules if isinstance(m, ACTIVATIONS)]


@contextlib.contextmanager
def captured_outputs(modules: Sequence[nn.Module]) -> Iterator[list]:
    """Within the block, `outputs[i]` is the latest output of `modules[i]` (autograd intact)."""
    outputs: list[Optional[torch.Tensor]] = [None] * len(modules)

    def keeper(i: int):
        def hook(module, inputs, output):  # noqa: ARG001 - forward-hook signature
            outputs[i] = output

        return hook

    handles = [m.register_forward_hook(keeper(i)) for i, m in enumerate(modules)]
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def stage_ends(model: nn.Module, example: torch.Tensor, count: int = 3) -> list[nn.Module]:
    """The units that end the model's last `count` stages.

    A stage is a maximal run of consecutive units with the same output shape, so its end is
    where the next unit changes the width or the resolution. WRN-16-1: block1[1], block2[1],
    block3[1] at any split (the outputs of its three groups, before the final BN); ResNet:
    the ends of layer2, layer3, layer4; small-cnn: its three conv-BN-ReLU resolutions.
    `example` is any input batch of the right shape; it runs in eval mode.
    """
    units = computation_units(model)
    was_training = model.training
    model.eval()
    with captured_outputs(units) as outputs:
        model(example)
    model.train(was_training)
    shapes = [tuple(o.shape[1:]) for o in outputs]
    ends = [u for i, u in enumerate(units) if i + 1 == len(units) or shapes[i + 1] != shapes[i]]
    if len(ends) < count:
        raise ValueError(f"the model has {len(ends)} stages; {count} are needed")
    return ends[-count:]


def module_names(model: nn.Module, modules: Sequence[nn.Module]) -> list[str]:
    """Qualified names (as in the state dict) of `modules` inside `model`, for the job's record."""
    names = {id(m): name for name, m in model.named_modules()}
    return [names[id(m)] for m in modules]


@torch.no_grad()
def final_layer_inputs(model, data: DeviceData, batch_size: int, amp_dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """N x C float32: the pooled features the final linear layer reads (eval mode), for every image in `data`."""
    model.eval()
    out = []
    for start in range(0, len(data), batch_size):
        x = to_float_nchw(data.images[start : start + batch_size])
        with autocast_for(data.device, amp_dtype):
            out.append(model.head.pooled(model.features(x)).float())
    return torch.cat(out)
