"""Bounded adversarial perturbations, as I-BAU and ANP use them.

I-BAU searches one universal input perturbation inside an l2 ball; ANP perturbs every BN
channel's scale and shift inside an l-infinity box and moves them by signed-gradient ascent.
Both keep the perturbation inside its bound after every step, so the bound means what it says.
"""

from __future__ import annotations

from typing import Sequence

import torch


@torch.no_grad()
def project_l2_ball(delta: torch.Tensor, radius: float) -> torch.Tensor:
    """Scale `delta` in place onto the l2 ball of `radius` when it lies outside; returns it."""
    norm = float(delta.norm())
    if norm > radius:
        delta.mul_(radius / norm)
    return delta


def uniform_in_box(like: torch.Tensor, bound: float, generator: torch.Generator) -> torch.Tensor:
    """Uniform draws in [-bound, bound] shaped like `like`, from a CPU generator (resumable on any device)."""
    draw = torch.rand(like.shape, generator=generator, dtype=like.dtype)
    return (draw * 2 - 1).mul_(bound).to(like.device)


@torch.no_grad()
def signed_ascent_step(tensors: Sequence[torch.Tensor], grads: Sequence[torch.Tensor], step: float, bound: float) -> None:
    """One step of `step` * sign(gradient) up the loss, then clamp into [-bound, bound], in place."""
    for tensor, grad in zip(tensors, grads):
        tensor.add_(grad.sign(), alpha=step).clamp_(-bound, bound)
