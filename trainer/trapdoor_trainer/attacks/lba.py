"""LBA-n, the adaptive latent backdoor attack (our reading of the T&R appendix C.1).

The attacker trains a surrogate on the clean data, then optimises a bottom-right patch so that
the surrogate's features at layer n (see `surrogate.layer_features`) of *triggered non-target*
images match the *mean* features of target-class images at that layer. The backdoor then lives
below layer n instead of only in the head, which is what an adaptive attacker against T&R's
"replace the head" wants. The patch is finally poisoned in dirty-label, all-to-one.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..hyperparams import Param
from .base import StampTrigger
from .geometry import place_span
from .registry import ATTACKS
from .surrogate import LBA_LAYERS, layer_features, surrogate_for_attack, surrogate_params, to_tensor

# Sample sizes: the target mean and the optimisation pool need not see the whole dataset.
MAX_TARGET_SAMPLES = 1024
MAX_POOL_SAMPLES = 4096
OPT_BATCH = 128


def patch_box(image_shape: Sequence[int], patch_size32: int) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a bottom-right patch of `patch_size32` px on the 32 scale."""
    height, width = image_shape[0], image_shape[1]
    top, h = place_span(32 - patch_size32, patch_size32, height)
    left, w = place_span(32 - patch_size32, patch_size32, width)
    return top, left, h, w


@ATTACKS.register(
    "lba",
    description="LBA-n (adaptive): a bottom-right patch optimised so a surrogate's layer-n features of triggered images match the target class; labels flipped to the target.",
    params={
        "layer": Param(14, "int", "WRN-16-1 layer whose input features are matched (14 = input of the last linear layer)", choices=LBA_LAYERS),
        "patchSize": Param(5, "int", "side of the square patch on the 32x32 scale", minimum=1, maximum=32),
        "optSteps": Param(200, "int", "Adam steps optimising the patch", minimum=0, maximum=100000),
        "optLr": Param(0.05, "float", "Adam learning rate for the patch (pixels in [0,1])", minimum=0, maximum=10),
        **surrogate_params(),
    },
    needs_training_data=True,
    order=20,
)
def lba(
    image_shape: Sequence[int],
    params: dict,
    *,
    seed: int,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    target: int,
    device: str,
) -> StampTrigger:
    surrogate = surrogate_for_attack(params, train_images, train_labels, target=target, seed=seed, device=device)
    torch_device = next(surrogate.parameters()).device
    rng = np.random.default_rng(seed)
    height, width, channels = image_shape
    top, left, h, w = patch_box(image_shape, params["patchSize"])
    layer = params["layer"]

    target_idx = np.flatnonzero(train_labels == target)
    other_idx = np.flatnonzero(train_labels != target)
    if len(target_idx) == 0 or len(other_idx) == 0:
        raise ValueError("LBA needs both target-class and non-target training images")
    target_idx = rng.permutation(target_idx)[:MAX_TARGET_SAMPLES]
    other_idx = rng.permutation(other_idx)[:MAX_POOL_SAMPLES]
    with torch.no_grad():
        target_mean = layer_features(surrogate, to_tensor(train_images[target_idx], torch_device), layer).mean(0)
    pool = to_tensor(train_images[other_idx], torch_device)

    mask = torch.zeros((1, 1, height, width), device=torch_device)
    mask[..., top : top + h, left : left + w] = 1.0
    # The patch lives as a full-size tensor, only its masked window matters; start from noise.
    patch = torch.from_numpy(rng.random((1, channels, height, width))).float().to(torch_device)
    patch.requires_grad_(True)
    optimiser = torch.optim.Adam([patch], lr=params["optLr"])
    for _ in range(params["optSteps"]):
        picked = rng.choice(len(pool), size=min(OPT_BATCH, len(pool)), replace=False)
        batch = pool[torch.from_numpy(picked).to(torch_device)]
        stamped = batch * (1 - mask) + patch * mask
        loss = F.mse_loss(layer_features(surrogate, stamped, layer), target_mean.expand(len(batch), -1))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        with torch.no_grad():
            patch.clamp_(0, 1)  # projected steps: pixels stay valid and keep their gradient

    values = np.floor(patch.detach().cpu().double().numpy()[0].transpose(1, 2, 0) * 255.0)
    full_mask = np.zeros((height, width, 1))
    full_mask[top : top + h, left : left + w] = 1.0
    return StampTrigger(values * full_mask, full_mask, "overwrite")
