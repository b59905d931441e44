"""LCBA (label-consistent backdoor), clean-label, as T&R runs it.

Training: each target-class victim is pushed away from its own (true = target) class by an
untargeted l-inf PGD against a surrogate trained on the clean data, so the model cannot
classify it from its content and leans on the trigger; then block B is stamped at all four
corners. Test: the four-corner grid alone on clean images.

The paper used Madry et al.'s precomputed inf_16.npy for CIFAR-10; we recompute the
perturbations for any dataset (exact recipe behind that file is unknown, see the spec).
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..hyperparams import Param
from ..models.base import SplitModel
from .base import StampTrigger, check_images, to_uint8
from .patches import four_corner_grid
from .registry import ATTACKS
from .surrogate import surrogate_for_attack, surrogate_params, to_tensor

PGD_BATCH = 256


class LcbaTrigger:
    """apply(): the four-corner grid. poison(): PGD against the surrogate, then the grid.

    The surrogate is trained on first use: building the trigger only to stamp a test set
    (apply) costs no training.
    """

    def __init__(
        self,
        corners: StampTrigger,
        train_surrogate: Callable[[], SplitModel],
        *,
        target: int,
        epsilon: float,
        steps: int,
        step_size: float,
    ):
        self.corners = corners
        self._train_surrogate = train_surrogate
        self._surrogate: Optional[SplitModel] = None
        self.target = target
        self.epsilon = epsilon  # l-inf bound on the 0-255 scale
        self.steps = steps
        self.step_size = step_size  # on the 0-255 scale

    @property
    def surrogate(self) -> SplitModel:
        if self._surrogate is None:
            self._surrogate = self._train_surrogate()
        return self._surrogate

    def apply(self, images: np.ndarray) -> np.ndarray:
        return self.corners.apply(images)

    def poison(self, images: np.ndarray) -> np.ndarray:
        """Victims are target-class images (clean-label), so PGD moves them away from `target`."""
        return self.corners.apply(self.perturb(images))

    def perturb(self, images: np.ndarray) -> np.ndarray:
        check_images(images, self.corners.image_shape)
        out = images.copy()
        for start in range(0, len(images), PGD_BATCH):
            chunk = images[start : start + PGD_BATCH]
            delta = self._pgd(chunk)
            # Whole-pixel steps, rounded toward zero: with uint8 truncation a fractional step could
            # otherwise cross the bound by one level.
            out[start : start + PGD_BATCH] = to_uint8(chunk.astype(np.float64) + np.trunc(delta))
        return out

    @torch.enable_grad()  # callers may hold no_grad(); PGD needs input gradients regardless
    def _pgd(self, images: np.ndarray) -> np.ndarray:
        device = next(self.surrogate.parameters()).device
        x = to_tensor(images, device)
        y = torch.full((len(x),), self.target, dtype=torch.long, device=device)
        bound, step = self.epsilon / 255.0, self.step_size / 255.0
        delta = torch.zeros_like(x)
        for _ in range(self.steps):
            delta.requires_grad_(True)
            loss = F.cross_entropy(self.surrogate(x + delta), y)
            (grad,) = torch.autograd.grad(loss, delta)
            with torch.no_grad():
                delta = (delta + step * grad.sign()).clamp(-bound, bound)
                delta = (x + delta).clamp(0, 1) - x
        delta255 = (delta.detach() * 255.0).clamp(-self.epsilon, self.epsilon)
        return delta255.permute(0, 2, 3, 1).cpu().double().numpy()


@ATTACKS.register(
    "lcba",
    description="LCBA (clean-label): target-class images adversarially perturbed against a surrogate, then marked with a grid at all four corners, labels unchanged.",
    params={
        "epsilon": Param(16.0, "float", "l-inf bound of the PGD perturbation on the 0-255 scale", minimum=0, maximum=255),
        "pgdSteps": Param(10, "int", "PGD iterations", minimum=0, maximum=10000),
        "pgdStepSize": Param(4.0, "float", "PGD step on the 0-255 scale", minimum=0, maximum=255),
        **surrogate_params(),
    },
    clean_label=True,  # its surrogate trains lazily, on the first poison(): apply() needs no data
    order=11,
)
def lcba(
    image_shape: Sequence[int],
    params: dict,
    *,
    seed: int,
    train_images: Optional[np.ndarray],
    train_labels: Optional[np.ndarray],
    target: int,
    device: str,
) -> LcbaTrigger:
    def fit() -> SplitModel:
        if train_images is None or train_labels is None:
            raise ValueError("LCBA poisoning needs the clean training images and labels for its surrogate")
        return surrogate_for_attack(params, train_images, train_labels, target=target, seed=seed, device=device)

    return LcbaTrigger(
        four_corner_grid(image_shape),
        fit,
        target=target,
        epsilon=float(params["epsilon"]),
        steps=params["pgdSteps"],
        step_size=float(params["pgdStepSize"]),
    )
