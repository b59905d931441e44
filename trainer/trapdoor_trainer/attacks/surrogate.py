"""The attacker's surrogate model for LCBA and LBA: a few epochs of Adam on the clean data.

Kept deliberately small: the attacks only need gradients that point roughly the right way,
and the trainer's own tests run these attacks on CPU.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..hyperparams import Param
from ..models import ARCHITECTURES, create_model
from ..models.base import SplitModel
from ..models.wrn import WrnStem

BATCH_SIZE = 128
LEARNING_RATE = 1e-3
LBA_LAYERS = (10, 12, 14)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def to_tensor(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 N x H x W x C -> float N x C x H x W in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).to(device).float().div_(255.0)


@torch.no_grad()
def _recalibrate_batchnorm(model: SplitModel, images: torch.Tensor) -> None:
    # WRN's BN momentum is 0.001, so after a few epochs its running statistics would still be
    # near their initial values and eval mode would be useless; re-estimate them exactly.
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    model.train()
    for start in range(0, len(images), 512):
        model(images[start : start + 512])
    for m, momentum in zip(norms, saved):
        m.momentum = momentum
    model.eval()


def train_surrogate(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    architecture: str,
    epochs: int,
    num_classes: int,
    seed: int,
    device: str = "cpu",
) -> SplitModel:
    """A classifier trained on clean (images, labels), returned in eval mode."""
    torch_device = resolve_device(device)
    height, width, channels = images.shape[1:]
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
        torch.manual_seed(seed)
        model = create_model(architecture, channels, num_classes, (height, width), with_decoder=False)
    model.to(torch_device)
    x = to_tensor(images, torch_device)
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(torch_device)
    optimiser = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    order_rng = np.random.default_rng(seed)
    model.train()
    for _ in range(epochs):
        order = torch.from_numpy(order_rng.permutation(len(x))).to(torch_device)
        for start in range(0, len(x), BATCH_SIZE):
            batch = order[start : start + BATCH_SIZE]
            if len(batch) < 2:  # BatchNorm needs more than one sample in train mode
                continue
            loss = F.cross_entropy(model(x[batch]), y[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    _recalibrate_batchnorm(model, x)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def layer_features(model: SplitModel, x: torch.Tensor, layer: int) -> torch.Tensor:
    """Flattened features at the input of WRN-16-1 layer `layer` (convs + fc counted as in Table 7).

    14 = input of the last linear layer (pooled head features); 12 = output of block3[0]
    (the stem at the default split 5); 10 = output of block2[1]. For architectures other than
    WRN (small-cnn, ResNets) 14 is the pooled features and 10/12 are both the stem output.
    """
    if layer == 14:
        return model.head.pooled(model.features(x))
    stem = model.stem
    if layer == 10 and isinstance(stem, WrnStem) and len(stem.blocks) >= 4:
        captured: dict[str, torch.Tensor] = {}
        hook = stem.blocks[3].register_forward_hook(lambda _m, _i, out: captured.setdefault("out", out))
        try:
            model.features(x)
        finally:
            hook.remove()
        return captured["out"].flatten(1)
    return model.features(x).flatten(1)


def surrogate_params() -> dict:
    """The params of every attack with a surrogate (LCBA, LBA)."""
    return {
        "surrogateEpochs": Param(5, "int", "epochs of Adam on the clean data for the attacker's surrogate", minimum=0, maximum=1000),
        "surrogateArchitecture": Param("small-cnn", "str", "architecture of the surrogate", choices=tuple(ARCHITECTURES)),
    }


def num_classes_of(labels: np.ndarray, target: int) -> int:
    return max(int(np.max(labels)) + 1, target + 1)


def surrogate_for_attack(params: dict, images: np.ndarray, labels: np.ndarray, *, target: int, seed: int, device: str) -> SplitModel:
    """The surrogate an attack's `surrogateArchitecture` / `surrogateEpochs` params ask for (LCBA, LBA)."""
    return train_surrogate(
        images,
        labels,
        architecture=params["surrogateArchitecture"],
        epochs=params["surrogateEpochs"],
        num_classes=num_classes_of(labels, target),
        seed=seed,
        device=device,
    )
