"""The split model every architecture builds: stem, lightweight head, optional decoder.

T&R needs the split (stage 2 replaces the head and freezes the stem); the other defenses use
the same object as an ordinary classifier (`forward`).
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn
import torch.nn.functional as F


def scale_gradient(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Identity in the forward pass; multiplies the gradient flowing back through it by `scale`."""
    if scale == 0.0:
        return x.detach()
    return x.detach() + scale * (x - x.detach())


class SplitModel(nn.Module):
    def __init__(
        self,
        stem: nn.Module,
        head_factory: Callable[[float], nn.Module],
        decoder: Optional[nn.Module],
        image_size: tuple[int, int],
        padded: tuple[int, int],
    ):
        super().__init__()
        self.stem = stem
        self._head_factory = head_factory
        self.head = head_factory(0.0)
        self.decoder = decoder
        self.image_size = image_size
        # Inputs whose H or W is not a multiple of the stem's downsampling factor are zero-padded at
        # the bottom/right inside the model (and the reconstruction cropped back), so callers and
        # the exported ONNX graph always take the dataset's own H x W.
        self.padded = padded

    def set_input_normalization(self, mean: list, std: list) -> None:
        """For a model trained on (x - mean) / std (a model brought by its user): the model takes
        images in [0,1] like every other, and normalises them itself. Not in the state dict
        (config.json's `preprocessing` carries it), so the weights keep the uploaded layout."""
        shape = (1, len(mean), 1, 1)
        self.register_buffer("input_mean", torch.tensor(mean, dtype=torch.float32).view(shape), persistent=False)
        self.register_buffer("input_std", torch.tensor(std, dtype=torch.float32).view(shape), persistent=False)

    @property
    def input_normalization(self) -> Optional[dict]:
        mean = getattr(self, "input_mean", None)
        if mean is None:
            return None
        return {"mean": mean.flatten().tolist(), "std": self.input_std.flatten().tolist()}

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        if getattr(self, "input_mean", None) is not None:
            x = (x - self.input_mean.to(x.dtype)) / self.input_std.to(x.dtype)
        h, w = self.image_size
        ph, pw = self.padded
        if (ph, pw) == (h, w):
            return x
        return F.pad(x, (0, pw - w, 0, ph - h))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Stem output for images in [0,1], N x C x H x W."""
        return self.stem(self._pad(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def forward_with_reconstruction(self, x: torch.Tensor, head_grad_into_stem: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """(head logits, reconstruction). `head_grad_into_stem` scales the gradient the head's
        loss sends into the stem (1 = ordinary backprop, 0 = the stem learns only from the decoder);
        the forward values are the same either way."""
        if self.decoder is None:
            raise RuntimeError("this model was built without a decoder")
        f = self.features(x)
        h, w = self.image_size
        head_input = f if head_grad_into_stem == 1.0 else scale_gradient(f, head_grad_into_stem)
        return self.head(head_input), self.decoder(f)[:, :, :h, :w]

    def replace_head(self, drop_rate: float = 0.0) -> nn.Module:
        """Swap in a freshly initialised head of the same shape (T&R stage 2) and return it."""
        device = next(self.head.parameters()).device
        self.head = self._head_factory(drop_rate).to(device)
        return self.head

    def drop_decoder(self) -> None:
        self.decoder = None
