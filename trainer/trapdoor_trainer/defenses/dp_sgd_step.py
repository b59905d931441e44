"""One DP-SGD step as a surrogate loss for the shared training loop.

Every sample's gradient is clipped to L2 norm C over all parameters together, Gaussian noise
N(0, σ²C²) is added to the sum, and the result is divided by the batch size (Abadi et al. 2016).
The clipped sum is the gradient of Σ_i c_i·L_i with the clip factors c_i (from exact per-sample
gradient norms, per_sample_gradients.py) held constant, and the noise is the gradient of
Σ_p <p, σC·z_p>; both go into one surrogate loss, so the loop's plain
`loss.backward(); optimizer.step()` performs the DP-SGD step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .per_sample_gradients import PerSampleGradients


def clip_factors(norms: torch.Tensor, clip_norm: float) -> torch.Tensor:
    """min(1, C / ||g_i||): scaling each sample's gradient to norm at most C."""
    return (clip_norm / (norms + 1e-6)).clamp(max=1.0)


def noise_surrogate(parameters: list[nn.Parameter], std: float, generator: torch.Generator) -> torch.Tensor:
    """A scalar whose gradient with respect to each parameter p is std * z_p, z_p ~ N(0, I).

    The draw is seeded from the step's generator, so a resumed run adds the same noise."""
    if std == 0 or not parameters:
        return torch.zeros((), device=parameters[0].device if parameters else "cpu")
    device = parameters[0].device
    device_generator = torch.Generator(device=device).manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
    total = torch.zeros((), device=device)
    for p in parameters:
        z = torch.randn(p.shape, generator=device_generator, device=device, dtype=torch.float32)
        total = total + (p.float() * z).sum() * std
    return total


def dp_sgd_loss(model: nn.Module, clip_norm: float, noise_multiplier: float):
    """The shared loop's loss_fn for one DP-SGD step: its gradient is
    (Σ_i clip_C(g_i) + N(0, σ²C²I)) / B, with B the batch size."""
    per_sample = PerSampleGradients(model)

    def loss_fn(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator):
        x = x.contiguous()  # GroupNorm on channels-last tensors is several times slower (torch 1.13 CPU)
        with per_sample.capture():
            losses = F.cross_entropy(model(x).float(), y, reduction="none")
        factors = clip_factors(per_sample.squared_norms(losses).sqrt(), clip_norm).detach()
        noise = noise_surrogate(per_sample.used_parameters(), noise_multiplier * clip_norm, generator)
        per_sample.release()
        surrogate = ((factors * losses).sum() + noise) / x.shape[0]
        return surrogate, {"ce": losses.mean(), "clipped": (factors < 1).float().mean()}

    return loss_fn
